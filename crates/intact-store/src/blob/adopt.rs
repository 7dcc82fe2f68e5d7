//! Import by path: a file already on a filesystem the server reads becomes a pending blob
//! without its bytes passing through a request. The caller (the server's import route) has
//! opened and checked the source; this module brings it into a blob store's pending area by
//! the cheapest means the filesystem allows and hashes the bytes the store will hold.
//!
//! What each mode promises about the stored bytes once the file is adopted:
//! * `reflink`: a copy-on-write clone (FICLONE). The clone shares blocks with the source
//!   but is another inode: later writes to the source never reach it.
//! * `move`: the source's inode itself, renamed into the store; refused when the inode has
//!   other names (which could still change it). The source path is gone afterwards.
//! * `hardlink`: the source's inode, linked into the store and made immutable
//!   (`FS_IMMUTABLE_FL`, `chattr +i`) *before* it is hashed, so no writer can change what the
//!   store holds (the source cannot be written, renamed or deleted either while the store
//!   holds it). Refused where the flag cannot be set.
//! * `copy`: the bytes read and written again; works everywhere.
//!
//! `auto` is reflink, else copy: it never moves (that takes the caller's file away) nor
//! hardlinks (that freezes it); those side effects are had only by asking.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use intact_core::{Digest, DigestHasher};
use serde::{Deserialize, Serialize};

use crate::Error;

/// How an import brings a file's bytes into the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportMode {
    /// Reflink, else copy: no data copied where the filesystem clones, and never a side
    /// effect on the source (never moves it, never hardlinks and freezes it).
    #[default]
    Auto,
    /// A copy-on-write clone (same filesystem, one that supports it: XFS, btrfs...).
    Reflink,
    /// The file itself, renamed into the store (same filesystem); the source path is gone.
    Move,
    /// The file's inode linked into the store and made immutable (same filesystem, and the
    /// server must be allowed to set `FS_IMMUTABLE_FL`).
    Hardlink,
    /// The bytes copied (any filesystem, any blob store).
    Copy,
}

impl ImportMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Reflink => "reflink",
            Self::Move => "move",
            Self::Hardlink => "hardlink",
            Self::Copy => "copy",
        }
    }
}

impl std::fmt::Display for ImportMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A local file an import adopts, opened and checked by the caller.
///
/// The caller opened `dir` (the directory holding the file, checked to lie inside the
/// allowed roots) and `file` relative to it without following a symlink, and checked that
/// `file` is a regular file. A move or link names the file as `name` in `dir` (never by a
/// path walked again, which a swapped directory could redirect); the backend then checks that
/// what it moved or linked is `file`'s inode, and undoes the step if not.
#[derive(Debug)]
pub struct LocalSource {
    pub dir: OwnedFd,
    pub name: std::ffi::OsString,
    pub file: File,
    /// How the caller refers to the source in messages (the path it sent).
    pub shown: String,
}

/// A file adopted as a pending blob, and the mode that did it (`auto` resolved).
#[derive(Debug)]
pub struct Adopted {
    pub pending: super::PendingBlob,
    pub mode: ImportMode,
}

/// A refusal of the import of `source`, naming it and the reason (a 400).
pub(crate) fn refused(source: &str, message: impl std::fmt::Display) -> Error {
    Error::BadRequest {
        field: "files",
        message: format!("{source}: {message}"),
    }
}

/// A mode this backend cannot honour (a 400 naming the mode and the backend).
pub(crate) fn mode_unavailable(mode: ImportMode, backend: &str) -> Error {
    Error::BadRequest {
        field: "mode",
        message: format!(
            "mode {mode} is not available with blobs stored in {backend}: only copy (or auto, which copies) is"
        ),
    }
}

const READ_BUFFER: usize = 1 << 20;

/// The sha256 and length of what `file` holds from its start.
pub(crate) fn hash_file(file: &File) -> std::io::Result<(Digest, u64)> {
    use std::io::{Seek, SeekFrom};
    let mut reader = file;
    reader.seek(SeekFrom::Start(0))?;
    let mut hasher = DigestHasher::new();
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let size = hasher.len();
    Ok((hasher.finish(), size))
}

/// Whether two metadata describe the same inode.
pub(crate) fn same_inode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Sets or clears `FS_IMMUTABLE_FL` on the open file.
pub(crate) fn set_immutable(file: impl AsFd, on: bool) -> std::io::Result<()> {
    use rustix::fs::IFlags;
    let flags = rustix::fs::ioctl_getflags(&file)?;
    let wanted = if on {
        flags | IFlags::IMMUTABLE
    } else {
        flags - IFlags::IMMUTABLE
    };
    if wanted != flags {
        rustix::fs::ioctl_setflags(&file, wanted)?;
    }
    Ok(())
}

/// Opens `path` to read or change its flags, without following a symlink or blocking.
pub(crate) fn open_no_follow(path: &Path) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// Clears `FS_IMMUTABLE_FL` on the file at `path` (absent is fine): before a stored blob
/// that an import made immutable can be deleted or moved aside.
pub(crate) fn clear_immutable(path: &Path) -> std::io::Result<()> {
    match open_no_follow(path) {
        Ok(f) => set_immutable(&f, false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs `op` on `path`; when it is refused with EPERM (an immutable blob), clears the flag
/// and runs it once more.
pub(crate) fn retry_unfrozen<T>(path: &Path, mut op: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    match op() {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
            clear_immutable(path)?;
            op()
        }
        other => other,
    }
}

/// Why a clone, link or rename failed, in words an operator can act on.
pub(crate) fn explain(e: &std::io::Error) -> String {
    use rustix::io::Errno;
    match e.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::XDEV) => "the source is on another filesystem than the store".to_owned(),
        Some(Errno::OPNOTSUPP | Errno::NOTTY | Errno::INVAL | Errno::NOSYS) => {
            format!("the filesystem does not support it ({e})")
        }
        Some(Errno::PERM) => format!("the server is not permitted to ({e})"),
        _ => e.to_string(),
    }
}
