//! The transfer archive (docs/transfer.md): a plain tar of
//!
//! * `intact-export.json` first: the [`Header`] (repo, its kind and format, the event range);
//! * per version, in commit order: each of its blobs not already in the archive, as
//!   `blobs/sha256/<hex>`, then the version itself, `versions/<n>.json` ([`ArchivedVersion`]);
//! * `intact-export-end.json` last: the [`Trailer`] (counts, versions that could not be read).
//!
//! A reader that finds no trailer knows the archive was cut short.

use std::io::{self, Read};

use intact_core::{Digest, DigestHasher, FileEntry, Timestamp};
use serde::{Deserialize, Serialize};

pub const HEADER_ENTRY: &str = "intact-export.json";
pub const TRAILER_ENTRY: &str = "intact-export-end.json";
pub const BLOB_PREFIX: &str = "blobs/sha256/";
pub const VERSION_PREFIX: &str = "versions/";
/// What `format` says in every archive's header.
pub const FORMAT: &str = "intact-export";
/// Raised when a reader of an older release could not read the archive right.
pub const FORMAT_VERSION: u32 = 1;

/// The first entry: what the archive holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub format_version: u32,
    /// The exported repo, and its kind (`hosted`, `proxy`) and format (`generic`, `go`).
    pub repo: String,
    pub kind: String,
    pub repo_format: String,
    /// The archive holds the versions committed by events `since < seq <= until` and not
    /// deleted by an event up to `until`: the next incremental export starts at `until`.
    pub since: i64,
    pub until: i64,
    /// The server it was exported from, as the exporter named it.
    pub server: String,
    pub created_at: Timestamp,
}

/// One version: everything `intact import` needs to commit it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivedVersion {
    /// As the store holds it; internal names (`@sumdb/...`) included.
    pub name: String,
    pub version: String,
    pub metadata: serde_json::Value,
    pub files: Vec<FileEntry>,
    /// When and by which event the exporting server committed it.
    pub created_at: Timestamp,
    pub seq: i64,
}

/// The last entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    pub versions: u64,
    pub blobs: u64,
    /// Bytes of blobs in the archive (each distinct blob once).
    pub blob_bytes: u64,
    /// Versions of the snapshot that could not be read while exporting (deleted since, such
    /// as a proxy cache's evictions): not in the archive.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    pub name: String,
    pub version: String,
    pub reason: String,
}

/// The events an archive covers, for people: `events 4..=9`, or `no event after 9` when the
/// log did not move since the previous export.
pub fn event_range(since: i64, until: i64) -> String {
    if until > since {
        format!("events {}..={until}", since + 1)
    } else {
        format!("no event after {since}")
    }
}

/// The entry name of a blob.
pub fn blob_entry(digest: &Digest) -> String {
    format!("{BLOB_PREFIX}{}", digest.to_hex())
}

/// The entry name of the `index`th version of an archive.
pub fn version_entry(index: u64) -> String {
    format!("{VERSION_PREFIX}{index:08}.json")
}

/// Passes `inner` through while hashing it, and fails the read that would end it unless
/// exactly `size` bytes hashing to `digest` came: a short, long or damaged body is an error,
/// never a complete-looking entry.
pub struct VerifyingReader<R> {
    inner: R,
    what: String,
    size: u64,
    digest: Digest,
    hasher: DigestHasher,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, what: String, size: u64, digest: Digest) -> Self {
        Self {
            inner,
            what,
            size,
            digest,
            hasher: DigestHasher::new(),
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        let seen = self.hasher.len();
        if seen > self.size {
            return Err(io::Error::other(format!(
                "{}: more than the {} bytes its manifest says",
                self.what, self.size
            )));
        }
        if n == 0 && !buf.is_empty() {
            // The end: judge what came.
            if seen != self.size {
                return Err(io::Error::other(format!(
                    "{}: {seen} bytes where its manifest says {}",
                    self.what, self.size
                )));
            }
            let got = self.hasher.clone().finish();
            if got != self.digest {
                return Err(io::Error::other(format!(
                    "{}: the bytes hash to sha256 {}, not {} (damaged)",
                    self.what,
                    got.to_hex(),
                    self.digest.to_hex()
                )));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], size: u64, digest: Digest) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        VerifyingReader::new(data, "blob".into(), size, digest).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn only_the_promised_bytes_read_to_the_end() {
        let data = b"hello archive";
        let digest = Digest::of(data);
        assert_eq!(read_all(data, 13, digest).expect("good"), data);
        assert!(read_all(&data[..12], 13, digest).is_err(), "short");
        assert!(read_all(data, 12, digest).is_err(), "long");
        let mut damaged = data.to_vec();
        damaged[3] ^= 1;
        let err = read_all(&damaged, 13, digest).expect_err("damaged");
        assert!(err.to_string().contains("damaged"), "{err}");
        assert!(read_all(b"", 0, Digest::of(b"")).is_ok(), "empty");
    }

    #[test]
    fn event_ranges_read_naturally() {
        assert_eq!(event_range(0, 9), "events 1..=9");
        assert_eq!(event_range(9, 9), "no event after 9");
    }

    #[test]
    fn entry_names_sort_in_archive_order() {
        assert!(version_entry(9) < version_entry(10));
        assert_eq!(version_entry(3), "versions/00000003.json");
    }
}
