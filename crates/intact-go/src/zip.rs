//! Module zip files (`golang.org/x/mod/zip`): checking an uploaded or fetched zip, and
//! building one from a directory the way the go command would.
//!
//! Every name in a module zip is `module@version/` followed by a valid file path (see
//! [`crate::module_path::check_file_path`]); no two names may differ only in case; a go.mod
//! may only be at the root; sizes are bounded. These rules exist so that a zip extracts the
//! same way on every file system, and a proxy that serves a zip breaking them serves a
//! module the go command refuses.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ::zip::result::ZipError;
use ::zip::write::SimpleFileOptions;
use ::zip::{CompressionMethod, DateTime, System, ZipArchive, ZipWriter};
use sha2::{Digest, Sha256};

use crate::{GoError, dirhash, gomod, module_path};

/// The largest a module zip may be, and the largest its contents may be in total.
pub const MAX_ZIP_FILE: u64 = 500 << 20;
/// The largest a module's go.mod may be.
pub const MAX_GO_MOD: u64 = 16 << 20;
/// The largest a module's root LICENSE file may be.
pub const MAX_LICENSE: u64 = 16 << 20;

/// What [`check_zip`] learned about a valid module zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipSummary {
    /// Number of file entries (directory entries not counted).
    pub files: usize,
    /// Total uncompressed size of the entries, counted while reading them.
    pub uncompressed_size: u64,
    /// The root go.mod, if the zip has one; its module directive (if any) names the module.
    pub go_mod: Option<Vec<u8>>,
}

/// What [`create_from_dir`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedZip {
    /// The included files, relative to the module root, in the order written (sorted).
    pub files: Vec<String>,
    /// The `h1:` hash of the zip, as [`dirhash::hash_zip`] would compute it from the bytes.
    pub h1: String,
}

/// Checks a module zip for `module@version` and reads every byte of it.
///
/// Beyond x/mod's `CheckZip` (prefix, file path rules, case-insensitive collisions, go.mod
/// placement and case, size limits), this reads every entry, directories included, to
/// verify its CRC and that its content has exactly the declared size, so lying headers
/// cannot smuggle more data than was accounted for, and a zip that passes also hashes
/// ([`dirhash::hash_zip`]). It also refuses entries marked as symbolic links and entries whose
/// name is overridden by an Info-ZIP Unicode path field (Go ignores such fields, so the two
/// readers would disagree about the name), and a root go.mod that declares another module.
pub fn check_zip<R: Read + Seek>(r: R, module: &str, version: &str) -> Result<ZipSummary, GoError> {
    module_path::check_canonical(module, version)?;
    let mut archive = open_archive(r)?;
    if archive.has_duplicate_names() {
        return Err(GoError::zip("multiple entries with the same name"));
    }
    let prefix = format!("{module}@{version}/");

    // First pass: names and declared sizes only, so nothing is decompressed from a zip
    // whose directory already breaks the rules.
    let mut collisions = CollisionChecker::default();
    let mut declared_total: u64 = 0;
    // Every entry, directories included: Go's hash reads them all, so a zip that passes
    // here must not fail there.
    let mut to_read = Vec::new();
    let mut files = 0;
    let metadata = archive.metadata();
    for index in 0..metadata.len() {
        let entry = metadata.entry(index).map_err(zip_error)?;
        let name = entry_name(entry.name_raw())?;
        let Some(rel) = name.strip_prefix(&prefix) else {
            return Err(GoError::zip(format!("{name:?}: path does not have prefix {prefix:?}")));
        };
        check_storage(&name, entry.compression(), entry.encrypted())?;
        let size = entry.size();
        declared_total = declared_total
            .checked_add(size)
            .filter(|&t| t <= MAX_ZIP_FILE)
            .ok_or_else(|| GoError::TooLarge {
                what: "total uncompressed size of module contents".into(),
                limit: MAX_ZIP_FILE,
            })?;
        to_read.push((index, rel == "go.mod"));
        if rel.is_empty() {
            continue;
        }
        let (rel, is_dir) = match rel.strip_suffix('/') {
            Some(dir) => (dir, true),
            None => (rel, false),
        };
        module_path::check_file_path(rel).map_err(|e| GoError::zip(format!("{name:?}: {e}")))?;
        collisions
            .check(rel, is_dir)
            .map_err(|e| GoError::zip(format!("{name:?}: {e}")))?;
        if is_dir {
            continue;
        }
        files += 1;
        if entry.is_symlink() {
            return Err(GoError::zip(format!("{name:?}: symbolic links are not allowed")));
        }
        let base = rel.rsplit('/').next().unwrap_or(rel);
        if base.eq_ignore_ascii_case("go.mod") {
            if base != rel {
                return Err(GoError::zip(format!(
                    "{name:?}: go.mod file not in module root directory"
                )));
            }
            if rel != "go.mod" {
                return Err(GoError::zip(format!(
                    "{name:?}: go.mod files must have lowercase names"
                )));
            }
        }
        if rel == "go.mod" && size > MAX_GO_MOD {
            return Err(GoError::TooLarge {
                what: "go.mod file".into(),
                limit: MAX_GO_MOD,
            });
        }
        if rel == "LICENSE" && size > MAX_LICENSE {
            return Err(GoError::TooLarge {
                what: "LICENSE file".into(),
                limit: MAX_LICENSE,
            });
        }
    }

    // Second pass: read everything, trusting no header.
    let mut go_mod = None;
    let mut total = 0;
    for &(index, is_go_mod) in &to_read {
        let mut content = Vec::new();
        let (_, n) = read_entry(&mut archive, index, &mut |chunk: &[u8]| {
            if is_go_mod {
                content.extend_from_slice(chunk);
            }
        })?;
        total += n;
        if is_go_mod {
            go_mod = Some(content);
        }
    }

    if let Some(bytes) = &go_mod {
        match gomod::parse_module_path(bytes) {
            Ok(Some(declared)) if declared != module => {
                return Err(GoError::zip(format!(
                    "go.mod declares module {declared:?}, not {module:?}"
                )));
            }
            // No module directive: the go command uses the path it asked for.
            Ok(_) => {}
            Err(e) => return Err(GoError::zip(format!("{prefix}go.mod: {e}"))),
        }
    }
    Ok(ZipSummary {
        files,
        uncompressed_size: total,
        go_mod,
    })
}

/// Opens a zip after checking that the archive itself is within [`MAX_ZIP_FILE`].
pub(crate) fn open_archive<R: Read + Seek>(mut r: R) -> Result<ZipArchive<R>, GoError> {
    let size = r.seek(SeekFrom::End(0))?;
    if size > MAX_ZIP_FILE {
        return Err(GoError::TooLarge {
            what: format!("module zip file ({size} bytes)"),
            limit: MAX_ZIP_FILE,
        });
    }
    r.seek(SeekFrom::Start(0))?;
    ZipArchive::new(r).map_err(zip_error)
}

/// Reads entry `index` to its end, handing each chunk to `sink`; returns the entry's name and
/// size. Fails unless the content has exactly the declared size and the right CRC.
pub(crate) fn read_entry<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    index: usize,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<(String, u64), GoError> {
    let file = archive.by_index(index).map_err(zip_error)?;
    let name = entry_name(file.name_raw())?;
    check_storage(&name, file.compression(), file.encrypted())?;
    if file
        .extra_data_fields()
        .any(|f| matches!(f, ::zip::ExtraField::UnicodePath(_)))
    {
        return Err(GoError::zip(format!(
            "{name:?}: entry carries a unicode path field, which go ignores"
        )));
    }
    let declared = file.size();
    // One byte past the declared size is enough to know it lied.
    let mut limited = file.take(declared.saturating_add(1));
    let mut buf = vec![0u8; 64 * 1024];
    let mut n: u64 = 0;
    loop {
        let got = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(&name, e)),
        };
        n += got as u64;
        if n > declared {
            return Err(GoError::zip(format!(
                "{name:?}: content is larger than its declared size ({declared} bytes)"
            )));
        }
        sink(&buf[..got]);
    }
    if n != declared {
        return Err(GoError::zip(format!(
            "{name:?}: content is shorter ({n} bytes) than its declared size ({declared} bytes)"
        )));
    }
    Ok((name, n))
}

/// Go's archive/zip reads only stored and deflated entries, and no encrypted ones: any other
/// entry makes the zip unusable to the go command, so it is the zip's fault, never an I/O one.
fn check_storage(name: &str, method: CompressionMethod, encrypted: bool) -> Result<(), GoError> {
    if encrypted {
        return Err(GoError::zip(format!(
            "{name:?}: entry is encrypted, which a module zip cannot be"
        )));
    }
    match method {
        CompressionMethod::Stored | CompressionMethod::Deflated => Ok(()),
        other => Err(GoError::zip(format!(
            "{name:?}: compression method {other} is not allowed in a module zip (only store and deflate)"
        ))),
    }
}

fn entry_name(raw: &[u8]) -> Result<String, GoError> {
    String::from_utf8(raw.to_vec()).map_err(|_| {
        GoError::zip(format!(
            "entry name {:?} is not valid UTF-8",
            String::from_utf8_lossy(raw)
        ))
    })
}

/// Corrupt data shows up as I/O errors from the decompressor or CRC check, and a compression
/// method or feature the reader lacks as `Unsupported`; those are the zip's fault. Anything
/// else is the reader's.
fn is_zip_fault(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::Unsupported
    )
}

fn read_error(name: &str, e: io::Error) -> GoError {
    if is_zip_fault(e.kind()) {
        GoError::zip(format!("{name:?}: {e}"))
    } else {
        GoError::Io(e)
    }
}

pub(crate) fn zip_error(e: ZipError) -> GoError {
    match e {
        ZipError::Io(e) if is_zip_fault(e.kind()) => GoError::zip(e.to_string()),
        ZipError::Io(e) => GoError::Io(e),
        other => GoError::zip(other.to_string()),
    }
}

/// Finds names equal under case folding, and names used both as a file and a directory
/// (x/mod's `collisionChecker`).
#[derive(Default)]
struct CollisionChecker {
    /// Folded path -> (original path, is a directory).
    seen: HashMap<String, (String, bool)>,
}

impl CollisionChecker {
    fn check(&mut self, path: &str, is_dir: bool) -> Result<(), String> {
        let mut path = path;
        let mut is_dir = is_dir;
        loop {
            let folded = fold(path);
            match self.seen.get(&folded) {
                Some((other, other_is_dir)) => {
                    if other != path {
                        return Err(format!("case-insensitive file name collision: {other:?} and {path:?}"));
                    }
                    if *other_is_dir != is_dir {
                        return Err(format!("entry {path:?} is both a file and a directory"));
                    }
                    if !is_dir {
                        return Err(format!("multiple entries for file {path:?}"));
                    }
                    // A directory seen before had its parents checked then.
                    return Ok(());
                }
                None => {
                    self.seen.insert(folded, (path.to_owned(), is_dir));
                }
            }
            match path.rsplit_once('/') {
                Some((parent, _)) => {
                    path = parent;
                    is_dir = true;
                }
                None => return Ok(()),
            }
        }
    }
}

/// A key equal for two names exactly when Go's `strings.EqualFold` says they are equal, up
/// to a few exotic letters (dotless i) where this key is stricter. Go folds with Unicode
/// simple folding; lowercasing, uppercasing and lowercasing again (keeping a character
/// whose mapping is not a single character) reaches the same representative for the
/// letters file names may contain: K and the Kelvin sign, s and long s, the three sigmas.
fn fold(s: &str) -> String {
    if s.bytes().all(|c| c.is_ascii() && !c.is_ascii_uppercase()) {
        return s.to_owned();
    }
    fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
        let c = it.next()?;
        it.next().is_none().then_some(c)
    }
    s.chars()
        .map(|c| {
            if c.is_ascii() {
                return c.to_ascii_lowercase();
            }
            let lower = single(c.to_lowercase()).unwrap_or(c);
            single(lower.to_uppercase())
                .and_then(|upper| single(upper.to_lowercase()))
                .unwrap_or(lower)
        })
        .collect()
}

/// Directories the go command never puts in a zip.
const VCS_DIRS: &[&str] = &[".bzr", ".git", ".hg", ".svn"];

/// x/mod's `isVendoredPackage`: whether `name` is a file of a vendored package.
///
/// This keeps x/mod's historical bug, which the sums of existing modules depend on (Go
/// issues 31562 and 37397): after a non-leading `/vendor/` it looks for a `/` from byte 8 of
/// the whole name, not from after `/vendor/`, so every file below a nested `vendor`
/// directory counts as vendored, `pkg/vendor/vendor.go` included.
/// From Go 1.24 (as declared by the module's go.mod) `vendor/modules.txt` is vendored too
/// (Go issue 63395); the offset bug stays.
fn is_vendored_package(name: &str, go_1_24: bool) -> bool {
    if go_1_24 && name == "vendor/modules.txt" {
        return true;
    }
    let start = if name.starts_with("vendor/") {
        "vendor/".len()
    } else if name.contains("/vendor/") {
        "/vendor/".len()
    } else {
        return false;
    };
    name[start..].contains('/')
}

/// Builds the module zip for `module@version` from `dir`, as `zip.CreateFromDir` selects
/// files: version control directories (`.bzr`, `.git`, `.hg`, `.svn`), nested modules
/// (directories with their own go.mod), vendored packages, `.hg_archival.txt`, symbolic
/// links and other irregular files are left out; anything else must be a valid module file.
///
/// The output is deterministic: files in sorted order, fixed timestamps and permissions, so
/// the same directory always yields the same bytes. The files are hashed as they are
/// written, and the returned `h1` equals [`dirhash::hash_zip`] of the output.
///
/// A directory without go.mod is allowed: the go command then serves
/// [`synthesized_go_mod`] as the `.mod` file. Stricter than Go in two ways: a root go.mod
/// must not declare another module (so the result passes [`check_zip`]), and file names
/// that are not valid UTF-8 are refused even where Go would leave the file out (for example
/// inside `vendor/`).
pub fn create_from_dir<W: Write + Seek>(dir: &Path, module: &str, version: &str, w: W) -> Result<CreatedZip, GoError> {
    module_path::check_canonical(module, version)?;

    // The go directive decides the vendoring rules; a go.mod too large to be valid is
    // refused below anyway, so reading a bounded prefix is enough here.
    let root_go_mod = match fs::File::open(dir.join("go.mod")) {
        Ok(f) => {
            let mut head = Vec::new();
            f.take(MAX_GO_MOD + 1).read_to_end(&mut head)?;
            Some(head)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let go_1_24 = root_go_mod
        .as_deref()
        .is_some_and(|m| gomod::go_version_at_least(m, 1, 24));

    let mut listed = Vec::new();
    list_files(dir, "", go_1_24, &mut listed)?;
    listed.sort_by(|a, b| a.rel.cmp(&b.rel));
    let files = select_files(listed, go_1_24)?;

    // Stricter than Go, to match check_zip: a zip whose go.mod names another module would
    // be refused when served, so refuse to build it.
    if let Some(go_mod) = &root_go_mod
        && files.iter().any(|f| f.rel == "go.mod")
    {
        match gomod::parse_module_path(go_mod) {
            Ok(Some(declared)) if declared != module => {
                return Err(GoError::zip(format!(
                    "go.mod declares module {declared:?}, not {module:?}"
                )));
            }
            Ok(_) => {}
            Err(e) => return Err(GoError::zip(format!("go.mod: {e}"))),
        }
    }

    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .system(System::Unix)
        .unix_permissions(0o644);
    let prefix = format!("{module}@{version}/");
    let mut zw = ZipWriter::new(w);
    let mut hashes = Vec::with_capacity(files.len());
    let mut buf = vec![0u8; 64 * 1024];
    for file in &files {
        zw.start_file(format!("{prefix}{}", file.rel), options)
            .map_err(write_error)?;
        let mut src = fs::File::open(&file.abs)?.take(file.size.saturating_add(1));
        let mut digest = Sha256::new();
        let mut n: u64 = 0;
        loop {
            let got = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            n += got as u64;
            if n > file.size {
                break;
            }
            digest.update(&buf[..got]);
            zw.write_all(&buf[..got])?;
        }
        if n != file.size {
            return Err(GoError::zip(format!(
                "{:?}: file changed size while being zipped",
                file.rel
            )));
        }
        hashes.push((format!("{prefix}{}", file.rel), digest.finalize().into()));
    }
    zw.finish().map_err(write_error)?;
    Ok(CreatedZip {
        files: files.into_iter().map(|f| f.rel).collect(),
        h1: dirhash::hash1(hashes),
    })
}

/// The go.mod the go command serves for a module version that has none: `module M\n`.
pub fn synthesized_go_mod(module: &str) -> Vec<u8> {
    // modfile.AutoQuote: valid module paths never need quotes, others get Go quoting.
    let needs_quotes = module.is_empty()
        || module.contains("//")
        || module.contains("/*")
        || module
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '(' | ')' | '[' | ']' | '{' | '}' | ','));
    if needs_quotes {
        format!("module {module:?}\n").into_bytes()
    } else {
        format!("module {module}\n").into_bytes()
    }
}

fn write_error(e: ZipError) -> GoError {
    match e {
        ZipError::Io(e) => GoError::Io(e),
        other => GoError::Io(io::Error::other(other)),
    }
}

/// A regular file found under the module directory.
struct DirFile {
    /// Slash-separated path relative to the module root.
    rel: String,
    abs: std::path::PathBuf,
    size: u64,
}

/// x/mod's `listFilesInDir`: walks `dir`, skipping VCS directories, nested modules,
/// vendored files and anything that is not a regular file.
fn list_files(dir: &Path, rel_dir: &str, go_1_24: bool, out: &mut Vec<DirFile>) -> Result<(), GoError> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let os_name = entry.file_name();
        let Some(name) = os_name.to_str() else {
            return Err(GoError::zip(format!(
                "file name {:?} in {:?} is not valid UTF-8",
                os_name.to_string_lossy(),
                if rel_dir.is_empty() { "." } else { rel_dir }
            )));
        };
        let rel = if rel_dir.is_empty() {
            name.to_owned()
        } else {
            format!("{rel_dir}/{name}")
        };
        // Not following symbolic links: a link is neither a directory nor a regular file.
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if VCS_DIRS.contains(&name) {
                continue;
            }
            match fs::symlink_metadata(entry.path().join("go.mod")) {
                Ok(m) if !m.is_dir() => continue,
                _ => {}
            }
            list_files(&entry.path(), &rel, go_1_24, out)?;
            continue;
        }
        if is_vendored_package(&rel, go_1_24) || !file_type.is_file() {
            continue;
        }
        let size = entry.metadata()?.len();
        out.push(DirFile {
            rel,
            abs: entry.path(),
            size,
        });
    }
    Ok(())
}

/// x/mod's `checkFiles`: drops files the zip leaves out and refuses the listing if any
/// remaining file breaks a rule; the error names the file.
fn select_files(listed: Vec<DirFile>, go_1_24: bool) -> Result<Vec<DirFile>, GoError> {
    // Directories holding a go.mod of any case start another module.
    let mut module_dirs = HashSet::new();
    for f in &listed {
        if let Some((dir, base)) = f.rel.rsplit_once('/')
            && base.eq_ignore_ascii_case("go.mod")
        {
            module_dirs.insert(dir.to_owned());
        }
    }
    let in_submodule = |rel: &str| {
        let mut p = rel;
        while let Some((parent, _)) = p.rsplit_once('/') {
            if module_dirs.contains(parent) {
                return true;
            }
            p = parent;
        }
        false
    };

    let mut collisions = CollisionChecker::default();
    let mut total: u64 = 0;
    let mut selected = Vec::with_capacity(listed.len());
    for f in listed {
        if is_vendored_package(&f.rel, go_1_24) || in_submodule(&f.rel) {
            continue;
        }
        // Inserted by `hg archive`; the go command drops it whatever the VCS.
        if f.rel == ".hg_archival.txt" {
            continue;
        }
        module_path::check_file_path(&f.rel).map_err(|e| GoError::zip(e.to_string()))?;
        if f.rel.eq_ignore_ascii_case("go.mod") && f.rel != "go.mod" {
            return Err(GoError::zip(format!(
                "{:?}: go.mod files must have lowercase names",
                f.rel
            )));
        }
        collisions
            .check(&f.rel, false)
            .map_err(|e| GoError::zip(format!("{:?}: {e}", f.rel)))?;
        total = total
            .checked_add(f.size)
            .filter(|&t| t <= MAX_ZIP_FILE)
            .ok_or_else(|| GoError::TooLarge {
                what: "module source tree".into(),
                limit: MAX_ZIP_FILE,
            })?;
        if f.rel == "go.mod" && f.size > MAX_GO_MOD {
            return Err(GoError::TooLarge {
                what: "go.mod file".into(),
                limit: MAX_GO_MOD,
            });
        }
        if f.rel == "LICENSE" && f.size > MAX_LICENSE {
            return Err(GoError::TooLarge {
                what: "LICENSE file".into(),
                limit: MAX_LICENSE,
            });
        }
        selected.push(f);
    }
    Ok(selected)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::io::Cursor;

    const M: &str = "example.com/m";
    const V: &str = "v1.0.0";

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            if let Some(dir) = name.strip_suffix('/') {
                w.add_directory(dir, SimpleFileOptions::default()).unwrap();
            } else {
                w.start_file(*name, SimpleFileOptions::default()).unwrap();
                w.write_all(data).unwrap();
            }
        }
        w.finish().unwrap().into_inner()
    }

    fn check(entries: &[(&str, &[u8])]) -> Result<ZipSummary, GoError> {
        check_zip(Cursor::new(zip_of(entries)), M, V)
    }

    fn assert_invalid(entries: &[(&str, &[u8])], needle: &str) {
        match check(entries) {
            Err(GoError::InvalidZip { reason }) => {
                assert!(reason.contains(needle), "{reason:?} should mention {needle:?}")
            }
            other => panic!("{entries:?}: want InvalidZip mentioning {needle:?}, got {other:?}"),
        }
    }

    /// `zip` with every entry's compression method set to `method` and `flags` or-ed into
    /// its general purpose flags, in the local headers and the central directory alike.
    fn patched(mut zip: Vec<u8>, method: u16, flags: u16) -> Vec<u8> {
        let mut i = 0;
        while i + 12 <= zip.len() {
            let (method_at, flags_at) = match &zip[i..i + 4] {
                b"PK\x03\x04" => (i + 8, i + 6),
                b"PK\x01\x02" => (i + 10, i + 8),
                _ => {
                    i += 1;
                    continue;
                }
            };
            zip[method_at..method_at + 2].copy_from_slice(&method.to_le_bytes());
            let old = u16::from_le_bytes([zip[flags_at], zip[flags_at + 1]]);
            zip[flags_at..flags_at + 2].copy_from_slice(&(old | flags).to_le_bytes());
            i += 4;
        }
        zip
    }

    #[test]
    fn only_store_and_deflate_are_allowed() {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        w.start_file("example.com/m@v1.0.0/go.mod", stored).unwrap();
        w.write_all(b"module example.com/m\n").unwrap();
        w.start_file("example.com/m@v1.0.0/m.go", stored).unwrap();
        w.write_all(b"package m\n").unwrap();
        let plain = w.finish().unwrap().into_inner();
        assert!(check_zip(Cursor::new(&plain), M, V).is_ok());
        // bzip2, LZMA, zstd, xz, AES; then store and deflate marked encrypted.
        for (method, flags, needle) in [
            (12, 0, "compression method Bzip2"),
            (14, 0, "compression method Lzma"),
            (93, 0, "compression method Zstd"),
            (95, 0, "compression method Xz"),
            (99, 1, ""),
            (0, 1, "encrypted"),
            (8, 1, "encrypted"),
        ] {
            let zip = patched(plain.clone(), method, flags);
            match check_zip(Cursor::new(&zip), M, V) {
                Err(GoError::InvalidZip { reason }) => assert!(reason.contains(needle), "{method}: {reason}"),
                other => panic!("method {method}, flags {flags}: want InvalidZip, got {other:?}"),
            }
            // Hashing on its own refuses it as the zip's fault too (never an I/O error).
            match dirhash::hash_zip(Cursor::new(&zip)) {
                Err(GoError::InvalidZip { .. }) => {}
                other => panic!("hash, method {method}, flags {flags}: want InvalidZip, got {other:?}"),
            }
        }
    }

    #[test]
    fn accepts_a_plain_module() {
        let s = check(&[
            ("example.com/m@v1.0.0/", b""),
            ("example.com/m@v1.0.0/go.mod", b"module example.com/m\n\ngo 1.21\n"),
            ("example.com/m@v1.0.0/m.go", b"package m\n"),
            ("example.com/m@v1.0.0/sub/", b""),
            ("example.com/m@v1.0.0/sub/s.go", b"package sub\n"),
            ("example.com/m@v1.0.0/LICENSE", b"license"),
        ])
        .unwrap();
        assert_eq!(s.files, 4);
        assert_eq!(s.uncompressed_size, 30 + 10 + 12 + 7);
        assert_eq!(s.go_mod.as_deref(), Some(&b"module example.com/m\n\ngo 1.21\n"[..]));
    }

    #[test]
    fn accepts_missing_go_mod_and_go_mod_without_module() {
        assert_eq!(
            check(&[("example.com/m@v1.0.0/m.go", b"package m\n")]).unwrap().go_mod,
            None
        );
        assert!(check(&[("example.com/m@v1.0.0/go.mod", b"// empty\n")]).is_ok());
    }

    #[test]
    fn rejects_wrong_prefix() {
        assert_invalid(&[("example.com/other@v1.0.0/m.go", b"")], "prefix");
        assert_invalid(&[("example.com/m@v1.0.1/m.go", b"")], "prefix");
        assert_invalid(&[("m.go", b"")], "prefix");
        // The prefix is the module path as is, not its escaped form.
        let z = zip_of(&[("example.com/!m@v1.0.0/x.go", b"")]);
        assert!(check_zip(Cursor::new(z), "example.com/M", V).is_err());
        let z = zip_of(&[("example.com/M@v1.0.0/x.go", b"")]);
        assert!(check_zip(Cursor::new(z), "example.com/M", V).is_ok());
    }

    #[test]
    fn rejects_zip_slip_and_bad_names() {
        assert_invalid(
            &[("example.com/m@v1.0.0/../../etc/passwd", b"x")],
            "invalid path element",
        );
        assert_invalid(&[("example.com/m@v1.0.0/a/../b.go", b"x")], "..");
        assert_invalid(&[("example.com/m@v1.0.0//abs", b"x")], "empty path element");
        assert_invalid(&[("example.com/m@v1.0.0/./x.go", b"x")], "invalid path element");
        assert_invalid(&[("example.com/m@v1.0.0/a\\b.go", b"x")], "invalid char");
        assert_invalid(&[("example.com/m@v1.0.0/c:x.go", b"x")], "invalid char");
        assert_invalid(&[("example.com/m@v1.0.0/aux.go", b"x")], "Windows");
        assert_invalid(&[("example.com/m@v1.0.0/x.", b"x")], "trailing dot");
    }

    #[test]
    fn rejects_case_collisions_and_duplicates() {
        assert_invalid(
            &[
                ("example.com/m@v1.0.0/README", b"a"),
                ("example.com/m@v1.0.0/readme", b"b"),
            ],
            "case-insensitive file name collision",
        );
        assert_invalid(
            &[
                ("example.com/m@v1.0.0/Dir/a.go", b"a"),
                ("example.com/m@v1.0.0/dir/b.go", b"b"),
            ],
            "case-insensitive file name collision",
        );
        assert_invalid(
            &[
                ("example.com/m@v1.0.0/K.go", b"a"),
                ("example.com/m@v1.0.0/\u{212a}.go", b"b"),
            ],
            "case-insensitive",
        );
        assert_invalid(
            &[("example.com/m@v1.0.0/a", b"a"), ("example.com/m@v1.0.0/a/b", b"b")],
            "both a file and a directory",
        );
        // Exact duplicates: the writer refuses them, so patch a second name into the first.
        let z = zip_of(&[
            ("example.com/m@v1.0.0/x.go", b"package m\n"),
            ("example.com/m@v1.0.0/y.go", b"package m\n"),
        ]);
        let z = replace_all(z, b"example.com/m@v1.0.0/y.go", b"example.com/m@v1.0.0/x.go");
        let e = check_zip(Cursor::new(z.clone()), M, V).unwrap_err();
        assert!(e.to_string().contains("multiple entries"), "{e}");
        let e = dirhash::hash_zip(Cursor::new(z)).unwrap_err();
        assert!(e.to_string().contains("multiple entries"), "{e}");
    }

    fn replace_all(mut z: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let mut i = 0;
        while i + from.len() <= z.len() {
            if &z[i..i + from.len()] == from {
                z[i..i + from.len()].copy_from_slice(to);
            }
            i += 1;
        }
        z
    }

    #[test]
    fn go_mod_rules() {
        assert_invalid(
            &[("example.com/m@v1.0.0/sub/go.mod", b"module x\n")],
            "not in module root",
        );
        assert_invalid(&[("example.com/m@v1.0.0/GO.MOD", b"module x\n")], "lowercase");
        assert_invalid(
            &[("example.com/m@v1.0.0/go.mod", b"module example.com/other\n")],
            "declares module \"example.com/other\"",
        );
        assert_invalid(
            &[("example.com/m@v1.0.0/go.mod", b"module a.b/c\nmodule a.b/d\n")],
            "repeated",
        );
    }

    #[test]
    fn rejects_bad_module_or_version() {
        let z = zip_of(&[("example.com/m@v1.0.0/x.go", b"")]);
        for (m, v) in [
            ("example.com/m", "v1.0"),
            ("example.com/m", "v2.0.0"),
            ("Example.com/m", "v1.0.0"),
            ("example.com/m", "latest"),
        ] {
            let e = check_zip(Cursor::new(z.clone()), m, v).unwrap_err();
            assert!(
                matches!(e, GoError::InvalidPath { .. } | GoError::InvalidVersion { .. }),
                "{m}@{v}: {e}"
            );
        }
    }

    #[test]
    fn rejects_oversized_contents() {
        // A declared size past the limit is refused before anything is decompressed.
        let big = vec![0u8; (MAX_GO_MOD + 1) as usize];
        let z = zip_of(&[("example.com/m@v1.0.0/go.mod", &big)]);
        assert!(matches!(
            check_zip(Cursor::new(z), M, V),
            Err(GoError::TooLarge { limit: MAX_GO_MOD, .. })
        ));
        let z = zip_of(&[("example.com/m@v1.0.0/LICENSE", &big)]);
        assert!(matches!(
            check_zip(Cursor::new(z), M, V),
            Err(GoError::TooLarge { limit: MAX_LICENSE, .. })
        ));
        // The same size is fine for any other file.
        let z = zip_of(&[("example.com/m@v1.0.0/data.bin", &big)]);
        assert!(check_zip(Cursor::new(z), M, V).is_ok());
    }

    /// Rewrites the uncompressed size of every entry, in local and central headers, the way
    /// a zip bomb lies about it.
    fn lie_about_sizes(mut z: Vec<u8>, size: u32) -> Vec<u8> {
        let mut i = 0;
        while i + 4 <= z.len() {
            match z[i..i + 4] {
                [0x50, 0x4b, 0x03, 0x04] => {
                    z[i + 22..i + 26].copy_from_slice(&size.to_le_bytes());
                    i += 30;
                }
                [0x50, 0x4b, 0x01, 0x02] => {
                    z[i + 24..i + 28].copy_from_slice(&size.to_le_bytes());
                    i += 46;
                }
                _ => i += 1,
            }
        }
        z
    }

    #[test]
    fn counts_actual_bytes_against_lying_headers() {
        let data = vec![b'a'; 100_000];
        let z = zip_of(&[("example.com/m@v1.0.0/bomb.txt", &data)]);
        let z = lie_about_sizes(z, 10);
        let e = check_zip(Cursor::new(z), M, V).unwrap_err();
        assert!(matches!(e, GoError::InvalidZip { .. }), "{e}");
        // And a header claiming more than the content holds.
        let z = zip_of(&[("example.com/m@v1.0.0/short.txt", b"abc")]);
        let z = lie_about_sizes(z, 1000);
        let e = check_zip(Cursor::new(z), M, V).unwrap_err();
        assert!(matches!(e, GoError::InvalidZip { .. }), "{e}");
    }

    /// A compression method the reader does not implement is the zip's problem (a 400 for an
    /// upload, a bad upstream for a fetch), not an I/O failure of this side.
    #[test]
    fn unsupported_compression_is_invalid_not_io() {
        let mut z = zip_of(&[("example.com/m@v1.0.0/m.go", b"package m\n")]);
        let deflated = 8u16.to_le_bytes();
        let lzma = 14u16.to_le_bytes();
        // The method field of the local header (offset 8) and the central header (offset 10).
        let local = 0;
        let central = z
            .windows(4)
            .position(|w| w == b"PK\x01\x02")
            .expect("central directory");
        for at in [local + 8, central + 10] {
            assert_eq!(z[at..at + 2], deflated);
            z[at..at + 2].copy_from_slice(&lzma);
        }
        let e = check_zip(Cursor::new(z), M, V).unwrap_err();
        assert!(matches!(e, GoError::InvalidZip { .. }), "{e:?}");
        assert!(e.to_string().contains("compression method"), "{e}");
    }

    #[test]
    fn rejects_symlink_entries() {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        w.add_symlink("example.com/m@v1.0.0/link", "/etc/passwd", SimpleFileOptions::default())
            .unwrap();
        let z = w.finish().unwrap().into_inner();
        let e = check_zip(Cursor::new(z), M, V).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[test]
    fn garbage_is_invalid_not_io() {
        for bytes in [&b""[..], b"PK\x03\x04", b"PK\x05\x06", &[0u8; 100]] {
            let e = check_zip(Cursor::new(bytes.to_vec()), M, V).unwrap_err();
            assert!(matches!(e, GoError::InvalidZip { .. }), "{bytes:?}: {e}");
        }
    }

    /// Found by the `go_proxy_http` fuzz target: an entry whose compression method the zip
    /// reader does not support failed with an `Unsupported` I/O error, which the Go front-end
    /// answers with a 500 although the upload is at fault.
    #[test]
    fn an_unknown_compression_method_is_invalid_not_io() {
        let mut bytes = zip_of(&[
            ("example.com/m@v1.0.0/go.mod", b"module example.com/m\n"),
            ("example.com/m@v1.0.0/m.go", b"package m\n"),
        ]);
        // Method 3336 in every local header (offset 8) and central directory entry (offset 10).
        for (signature, offset) in [(b"PK\x03\x04", 8), (b"PK\x01\x02", 10)] {
            let starts: Vec<usize> = bytes
                .windows(4)
                .enumerate()
                .filter(|(_, w)| w == signature)
                .map(|(i, _)| i)
                .collect();
            assert!(!starts.is_empty());
            for i in starts {
                bytes[i + offset..i + offset + 2].copy_from_slice(&3336u16.to_le_bytes());
            }
        }
        for result in [
            check_zip(Cursor::new(&bytes), M, V).map(|_| ()),
            crate::dirhash::hash_zip(Cursor::new(&bytes)).map(|_| ()),
        ] {
            assert!(matches!(result, Err(GoError::InvalidZip { .. })), "{result:?}");
        }
    }

    #[test]
    fn vendored_package_rule() {
        // After TestIsVendoredPackage in x/mod/zip/vendor_test.go.
        for (name, old, new) in [
            ("vendor/foo/foo.go", true, true),
            ("pkg/vendor/foo/foo.go", true, true),
            ("longpackagename/vendor/foo/foo.go", true, true),
            ("vendor/vendor.go", false, false),
            ("vendor/foo/modules.txt", true, true),
            ("modules.txt", false, false),
            ("vendor/amodules.txt", false, false),
            ("vendor/modules.txt", false, true),
            // False positives kept for the sake of existing checksums.
            ("pkg/vendor/vendor.go", true, true),
            ("longpackagename/vendor/vendor.go", true, true),
            ("sub/vendor/sub.txt", true, true),
            ("a/vendor/b", true, true),
            // The slash ending a non-leading "/vendor/" is always past byte 8.
            ("longpackagename/vendor/b", true, true),
            ("vendors/x.go", false, false),
            ("myvendor/x/y.go", false, false),
            ("vendor", false, false),
        ] {
            assert_eq!(is_vendored_package(name, false), old, "pre-1.24 {name}");
            assert_eq!(is_vendored_package(name, true), new, "1.24 {name}");
        }
    }

    #[test]
    fn folding() {
        assert_eq!(fold("abc/def"), "abc/def");
        assert_eq!(fold("ABC/Def"), "abc/def");
        assert_eq!(fold("\u{212a}"), fold("k"));
        assert_eq!(fold("\u{17f}"), fold("S"));
        assert_eq!(fold("Σ"), fold("ς"));
        assert_eq!(fold("σ"), fold("ς"));
        assert_eq!(fold("ß"), fold("\u{1e9e}"));
        assert_ne!(fold("ß"), fold("ss"));
        assert_eq!(fold("Ǆ"), fold("ǅ"));
        assert_eq!(fold("ÄÖÜ"), "äöü");
    }

    #[test]
    fn synthesized() {
        assert_eq!(synthesized_go_mod("golang.org/x/text"), b"module golang.org/x/text\n");
        // golang.org/x/text v0.3.0/go.mod h1:NqM8... in the public checksum database: that
        // version has no go.mod, so the hash is of the synthesized one.
        assert_eq!(
            dirhash::hash_go_mod(&synthesized_go_mod("golang.org/x/text")),
            "h1:NqM8EUOU14njkJ3fqMW+pc6Ldnwhi/IjpwHt7yyuwOQ="
        );
        assert_eq!(synthesized_go_mod("a b"), b"module \"a b\"\n");
    }
}
