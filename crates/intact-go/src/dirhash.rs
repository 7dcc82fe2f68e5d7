//! The `h1:` hashes of go.sum and the checksum database (`golang.org/x/mod/sumdb/dirhash`).
//!
//! `h1:` is base64(sha256(summary)) where the summary has one line per file, sorted by name:
//! `hex(sha256(content))  name\n`. Only names and contents count, so two zips with different
//! compression or timestamps but the same files hash the same.

use std::io::{Read, Seek};

use sha2::{Digest, Sha256};

use crate::GoError;
use crate::zip::{MAX_ZIP_FILE, open_archive, read_entry, zip_error};

/// `dirhash.Hash1` over `(name, sha256 of content)` pairs, in any order.
///
/// Names must not contain a newline: the summary would be ambiguous, so Go refuses them.
/// [`hash_zip`] and [`crate::zip::create_from_dir`] guarantee that; other callers must too.
pub fn hash1<I: IntoIterator<Item = (String, [u8; 32])>>(files: I) -> String {
    let mut files: Vec<(String, [u8; 32])> = files.into_iter().collect();
    // Byte order, as Go's sort.Strings; equal names keep their order (stable sort).
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut summary = Sha256::new();
    for (name, digest) in &files {
        summary.update(hex::encode(digest));
        summary.update(b"  ");
        summary.update(name.as_bytes());
        summary.update(b"\n");
    }
    format!("h1:{}", base64_std(&summary.finalize()))
}

/// The `h1:` hash of a module zip, as in the `module version h1:...` go.sum line
/// (`dirhash.HashZip`). Names are the full entry names including the `module@version/`
/// prefix; directory entries count as empty files, as in Go.
///
/// Refuses what Go would hash ambiguously or not at all: duplicate names, names with a
/// newline or invalid UTF-8, entries whose content disagrees with the declared size or
/// CRC, and content past [`MAX_ZIP_FILE`] in total.
pub fn hash_zip<R: Read + Seek>(r: R) -> Result<String, GoError> {
    let mut archive = open_archive(r)?;
    if archive.has_duplicate_names() {
        return Err(GoError::zip("multiple entries with the same name"));
    }
    // Declared sizes first, so nothing is decompressed from a zip that is too large;
    // read_entry then makes sure no entry holds more than it declares.
    let metadata = archive.metadata();
    let mut declared: u64 = 0;
    for index in 0..metadata.len() {
        let size = metadata.entry(index).map_err(zip_error)?.size();
        declared = declared
            .checked_add(size)
            .filter(|&t| t <= MAX_ZIP_FILE)
            .ok_or_else(|| GoError::TooLarge {
                what: "total uncompressed size of module contents".into(),
                limit: MAX_ZIP_FILE,
            })?;
    }
    let mut files = Vec::with_capacity(metadata.len());
    for index in 0..metadata.len() {
        let mut digest = Sha256::new();
        let (name, _) = read_entry(&mut archive, index, &mut |chunk: &[u8]| digest.update(chunk))?;
        if name.contains('\n') {
            return Err(GoError::zip(format!("file name {name:?} contains a newline")));
        }
        files.push((name, digest.finalize().into()));
    }
    Ok(hash1(files))
}

/// The `h1:` hash of a go.mod file, as in the `module version/go.mod h1:...` go.sum line:
/// Hash1 of a single file named `go.mod`.
pub fn hash_go_mod(go_mod: &[u8]) -> String {
    hash1([("go.mod".to_owned(), Sha256::digest(go_mod).into())])
}

/// Standard base64 with padding; all this crate ever encodes is 32-byte digests.
fn base64_std(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn h(s: &str) -> [u8; 32] {
        Sha256::digest(s.as_bytes()).into()
    }

    fn htop(s: &str) -> String {
        format!("h1:{}", base64_std(&Sha256::digest(s.as_bytes())))
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_std(input.as_bytes()), want);
        }
    }

    #[test]
    fn hash1_sorts_and_formats_like_go() {
        // TestHash1 from x/mod/sumdb/dirhash/hash_test.go.
        let want = htop(&format!(
            "{}  abc\n{}  xyz\n",
            hex::encode(h("data for abc")),
            hex::encode(h("data for xyz"))
        ));
        let got = hash1([
            ("xyz".to_owned(), h("data for xyz")),
            ("abc".to_owned(), h("data for abc")),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn hash_go_mod_matches_go_sum() {
        // rsc.io/quote v1.5.2/go.mod h1:LzX7hefJvL54yjefDEDHNONDjII0t9xZLPXsUe+TKr0= in the
        // public checksum database; its go.mod is exactly this line.
        assert_eq!(
            hash_go_mod(b"module \"rsc.io/quote\"\n\nrequire \"rsc.io/sampler\" v1.3.0\n"),
            "h1:LzX7hefJvL54yjefDEDHNONDjII0t9xZLPXsUe+TKr0="
        );
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ::zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            if let Some(dir) = name.strip_suffix('/') {
                w.add_directory(dir, ::zip::write::SimpleFileOptions::default())
                    .unwrap();
            } else {
                w.start_file(*name, ::zip::write::SimpleFileOptions::default()).unwrap();
                w.write_all(data).unwrap();
            }
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn hash_zip_matches_go_vector() {
        // TestHashZip from x/mod/sumdb/dirhash/hash_test.go.
        let z = zip_of(&[("prefix/xyz", b"data for xyz"), ("prefix/abc", b"data for abc")]);
        let want = htop(&format!(
            "{}  prefix/abc\n{}  prefix/xyz\n",
            hex::encode(h("data for abc")),
            hex::encode(h("data for xyz"))
        ));
        assert_eq!(hash_zip(Cursor::new(z)).unwrap(), want);
    }

    #[test]
    fn hash_zip_counts_directories_as_empty_files() {
        let z = zip_of(&[("m@v1.0.0/d/", b""), ("m@v1.0.0/d/f", b"x")]);
        let want = hash1([("m@v1.0.0/d/".to_owned(), h("")), ("m@v1.0.0/d/f".to_owned(), h("x"))]);
        assert_eq!(hash_zip(Cursor::new(z)).unwrap(), want);
    }

    #[test]
    fn hash_zip_rejects_garbage() {
        assert!(matches!(
            hash_zip(Cursor::new(b"not a zip".to_vec())),
            Err(GoError::InvalidZip { .. })
        ));
    }
}
