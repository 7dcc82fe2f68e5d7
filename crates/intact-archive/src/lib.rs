//! Safe, streaming extraction of untrusted archives into a private staging directory.
//!
//! intact's staging proxy downloads a build artifact such as `test_suites.tar.bz2`, extracts
//! it with [`extract`], and turns every extracted file into a file of one version that the
//! caller then commits atomically. This crate's part of the promise is narrow: write only
//! inside `dest`, under names that pass [`intact_core::FilePath`]; hash each file while
//! writing it; stay within [`Limits`] counted on real bytes; and fail with a clear
//! [`ArchiveError`] on anything hostile, truncated or unsupported. On error the caller deletes
//! `dest`; a half-extracted archive never becomes visible.
//!
//! Everything is sync (run it in `spawn_blocking`), streams through fixed buffers, and is
//! pure Rust: gzip (flate2/miniz_oxide), bzip2 (libbz2-rs-sys), xz (lzma-rust2), zstd
//! (ruzstd), zip (zip, deflate via zlib-rs).

mod error;
mod path;
mod source;
mod tree;
mod untar;
mod unzip;
mod zstd;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use intact_core::{Digest, FilePath};

pub use error::ArchiveError;

/// The archive formats intact extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    TarBz2,
    TarXz,
    TarZst,
    Zip,
}

impl ArchiveKind {
    /// Every kind, for callers that list what they accept.
    pub const ALL: [ArchiveKind; 6] = [
        Self::Tar,
        Self::TarGz,
        Self::TarBz2,
        Self::TarXz,
        Self::TarZst,
        Self::Zip,
    ];

    /// Recognizes `.tar .tar.gz .tgz .tar.bz2 .tbz2 .tar.xz .txz .tar.zst .tzst .zip`
    /// (ASCII case-insensitive); `None` for anything else, including a bare `.gz`.
    pub fn from_file_name(name: &str) -> Option<Self> {
        const SUFFIXES: [(&str, ArchiveKind); 10] = [
            (".tar", ArchiveKind::Tar),
            (".tar.gz", ArchiveKind::TarGz),
            (".tgz", ArchiveKind::TarGz),
            (".tar.bz2", ArchiveKind::TarBz2),
            (".tbz2", ArchiveKind::TarBz2),
            (".tar.xz", ArchiveKind::TarXz),
            (".txz", ArchiveKind::TarXz),
            (".tar.zst", ArchiveKind::TarZst),
            (".tzst", ArchiveKind::TarZst),
            (".zip", ArchiveKind::Zip),
        ];
        let lower = name.to_ascii_lowercase();
        SUFFIXES
            .iter()
            .find(|(suffix, _)| lower.len() > suffix.len() && lower.ends_with(suffix))
            .map(|&(_, kind)| kind)
    }
}

/// Bounds on what one archive may produce. All byte limits count bytes actually written
/// (or, for entries whose data is skipped, read), never sizes declared in headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes extracted in total.
    pub max_total_bytes: u64,
    /// Bytes of any one file.
    pub max_file_bytes: u64,
    /// Archive entries of every kind (files, directories, links...).
    pub max_entries: u64,
    /// Bytes extracted per byte of the (compressed) archive file; enforced only once more than
    /// 1 MiB has been extracted, so tiny archives of compressible files pass. 0 disables it.
    pub max_ratio: u64,
    /// Largest window or dictionary a decoder may allocate (xz dictionary, zstd window); the
    /// decoders' memory is otherwise fixed. xz -9 needs 64 MiB, zstd's default cap is 128 MiB.
    pub max_decoder_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        const GIB: u64 = 1024 * 1024 * 1024;
        Self {
            max_total_bytes: 64 * GIB,
            max_file_bytes: 32 * GIB,
            max_entries: 1_000_000,
            max_ratio: 200,
            max_decoder_memory: 256 * 1024 * 1024,
        }
    }
}

/// One file written by [`extract`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedFile {
    /// The entry's path inside the archive, normalized (no leading `./`).
    pub path: FilePath,
    /// Bytes written, which is the file's size.
    pub size: u64,
    /// SHA-256 of those bytes, computed while writing them.
    pub sha256: Digest,
    /// Where the bytes are: `dest` joined with `path`'s segments.
    pub local: PathBuf,
}

/// Extracts `archive` (of `kind`) into `dest`, which must be an existing, empty directory
/// private to the caller. Returns the extracted regular files, unique and sorted by path.
/// Directories are implicit. Links become copies: a hardlink of the file extracted earlier
/// that it names, a symlink of the regular file its target names once the whole archive is in
/// (targets are resolved lexically and must stay inside the archive).
///
/// `progress` is called with the number of archive bytes read so far (at most the archive's
/// size) as extraction moves on.
///
/// On error, `dest` may hold part of the archive; the caller deletes it. Nothing outside
/// `dest` is ever created or modified.
pub fn extract(
    archive: &Path,
    kind: ArchiveKind,
    dest: &Path,
    limits: &Limits,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<ExtractedFile>, ArchiveError> {
    let dest_meta = fs::symlink_metadata(dest)?;
    if !dest_meta.is_dir() || fs::read_dir(dest)?.next().is_some() {
        return Err(ArchiveError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("destination {} is not an empty directory", dest.display()),
        )));
    }
    let file = File::open(archive)?;
    let archive_len = file.metadata()?.len();
    let state = Rc::new(source::SourceState::default());
    let source = source::Source::new(file, state.clone());
    let mut tree = tree::Tree::new(dest, limits, archive_len, state, progress);
    match kind {
        ArchiveKind::Zip => unzip::extract(source, &mut tree)?,
        _ => untar::extract(kind, source, &mut tree)?,
    }
    tree.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_file_names() {
        let cases = [
            ("a.tar", Some(ArchiveKind::Tar)),
            ("test_suites.tar.bz2", Some(ArchiveKind::TarBz2)),
            ("x.TGZ", Some(ArchiveKind::TarGz)),
            ("x.tar.gz", Some(ArchiveKind::TarGz)),
            ("x.tbz2", Some(ArchiveKind::TarBz2)),
            ("x.tar.xz", Some(ArchiveKind::TarXz)),
            ("x.txz", Some(ArchiveKind::TarXz)),
            ("x.tar.zst", Some(ArchiveKind::TarZst)),
            ("x.tzst", Some(ArchiveKind::TarZst)),
            ("x.zip", Some(ArchiveKind::Zip)),
            ("x.gz", None),
            ("x.tar.lz", None),
            (".tar", None),
            ("tar", None),
        ];
        for (name, kind) in cases {
            assert_eq!(ArchiveKind::from_file_name(name), kind, "{name}");
        }
    }
}
