//! Blobs as plain files: `blobs/sha256/<first two hex>/<64 hex>`. Plain files keep the door
//! open for zero-copy sending and hardlink/reflink imports.
//!
//! Durability order: write a temp file in the same filesystem, fsync it, rename into place,
//! fsync the directory. Only then is a blob durable, and only durable blobs are ever named by
//! a catalog commit. A blob found already in place (deduplication) is made durable the same
//! way before `persist` returns, and every directory the store creates is fsynced into its
//! parent. The power-loss suite (`crates/intact/tests/it/power_loss.rs`) checks all three on a
//! filesystem that drops whatever was not fsynced.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use intact_core::{Digest, DigestHasher, Timestamp};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Adopted, BlobRead, BlobStore, ImportMode, PendingBlob, PendingHandle, Progress};
use crate::{Error, Result};

const WRITE_BUFFER: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct FsBlobStore {
    blobs: PathBuf,
    tmp: PathBuf,
    /// Pieces of resumable uploads (`uploads/<piece name>`), out of `tmp`'s sweep: an upload
    /// may sit idle between two requests for as long as its transaction lives.
    uploads: PathBuf,
    /// Damaged blobs, moved aside under `<digest>.<ms>` (never read again, kept to inspect).
    quarantine: PathBuf,
    /// Held while a blob is checked and moved aside: one quarantine at a time, so that two
    /// reports of the same damage cannot both pass the check before either moves the file.
    quarantining: Arc<Mutex<()>>,
    /// Names of the temp files of pending blobs still held in this process: not leftovers,
    /// however old (a staging run holds its first files while it downloads the rest).
    held: Arc<Mutex<HashSet<OsString>>>,
}

/// A pending blob's temp file: deleted, and no longer held, when dropped.
#[derive(Debug)]
struct FsPending {
    /// `None` once `persist` took it.
    temp: Option<tempfile::TempPath>,
    /// Made immutable by a hardlink import (it is the source's own inode): the flag is
    /// cleared before the file is renamed or removed, and set again once it is stored.
    frozen: bool,
    /// Where a moved file came from (its directory and name there): put back under that name
    /// if the import fails before the file is stored, so a refused move loses nothing.
    origin: Option<(std::os::fd::OwnedFd, OsString)>,
    /// A moved file's journal (`<temp>.origin`, holding the path it came from), written
    /// durably before the move: if the process dies before the file is stored, start-up
    /// recovery puts it back instead of sweeping it away. Removed once the file is stored or
    /// put back.
    journal: Option<PathBuf>,
    _held: Option<Held>,
}

impl PendingHandle for FsPending {}

/// The journal of a file moved into `temp` (see [`FsPending::journal`]).
fn journal_of(temp: &Path) -> PathBuf {
    let mut name = temp.as_os_str().to_owned();
    name.push(".origin");
    PathBuf::from(name)
}

/// Puts a moved file whose import never finished back where its journal says it came from
/// (a file the caller put there meanwhile stays; then it goes beside it, `.intact-restored`),
/// and removes the journal. Start-up recovery and the pending sweep call this.
fn restore_moved(temp: &Path, journal: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let origin = PathBuf::from(std::ffi::OsStr::from_bytes(&std::fs::read(journal)?));
    if temp.exists() {
        use std::os::unix::fs::MetadataExt;
        let mut dest = origin.clone();
        let here = std::fs::symlink_metadata(temp)?;
        if let Ok(there) = std::fs::symlink_metadata(&dest) {
            if (there.dev(), there.ino()) == (here.dev(), here.ino()) {
                // Put back already (the process died before it removed its own name).
                std::fs::remove_file(temp)?;
                return std::fs::remove_file(journal);
            }
            let mut name = dest.into_os_string();
            name.push(format!(".intact-restored-{:08x}", rand::random::<u32>()));
            dest = PathBuf::from(name);
        }
        std::fs::hard_link(temp, &dest)?;
        if let Some(parent) = dest.parent() {
            fsync_dir(parent)?;
        }
        tracing::warn!(path = %dest.display(), "a file moved in by an import that never finished was put back");
        std::fs::remove_file(temp)?;
    }
    std::fs::remove_file(journal)
}

impl Drop for FsPending {
    fn drop(&mut self) {
        let Some(temp) = &self.temp else {
            return;
        };
        if self.frozen
            && let Err(e) = super::adopt::clear_immutable(temp)
        {
            tracing::warn!(path = %temp.display(), error = %e, "an imported file could not be made writable again");
        }
        if let Some((dir, name)) = &self.origin {
            // Linked back, not renamed: a new file the caller put there meanwhile stays.
            let temp_path: &Path = temp;
            if let Err(e) = rustix::fs::linkat(
                rustix::fs::CWD,
                temp_path,
                dir,
                name.as_os_str(),
                rustix::fs::AtFlags::empty(),
            ) {
                tracing::warn!(path = %temp.display(), error = %e, "a moved file could not be put back where it came from");
                // The journal stays: the next sweep tries again rather than lose the file.
                self.journal = None;
                if let Some(temp) = self.temp.take() {
                    let _ = temp.keep();
                }
                return;
            }
        }
        if let Some(journal) = &self.journal {
            let _ = std::fs::remove_file(journal);
        }
        // `temp` is removed as it drops, after this.
    }
}

/// Marks a pending blob's temp file as held until dropped.
#[derive(Debug)]
struct Held {
    held: Arc<Mutex<HashSet<OsString>>>,
    name: OsString,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(&self.name);
        }
    }
}

impl FsBlobStore {
    /// Opens (creating if needed) a blob store rooted at `root`.
    pub async fn open(root: &Path) -> Result<Self> {
        let blobs = root.join("blobs").join("sha256");
        let tmp = root.join("tmp");
        let uploads = root.join("uploads");
        let (root_clone, blobs_clone, tmp_clone, uploads_clone) =
            (root.to_owned(), blobs.clone(), tmp.clone(), uploads.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            create_dir_all_durable(&blobs_clone)?;
            create_dir_all_durable(&tmp_clone)?;
            create_dir_all_durable(&uploads_clone)?;
            // Create every shard directory once, up front, and fsync the parent: a shard
            // created lazily by a later write would need its own parent fsync to be durable.
            let mut created = false;
            for i in 0..=255u8 {
                let shard = blobs_clone.join(format!("{i:02x}"));
                if !shard.exists() {
                    std::fs::create_dir(&shard)?;
                    created = true;
                }
            }
            if created {
                fsync_dir(&blobs_clone)?;
            }
            // The root's own entries, whoever created them: SQLite syncs the directory when it
            // creates a journal or WAL, never for the database file itself, so a catalog
            // created just before this call is only durable by name once this returns.
            fsync_dir(&root_clone)
        })
        .await
        .map_err(|e| {
            Error::io(
                format!("creating blob store in {}", root.display()),
                std::io::Error::other(e),
            )
        })?
        .map_err(|e| Error::io(format!("creating blob store in {}", root.display()), e))?;
        Ok(Self {
            blobs,
            tmp,
            uploads,
            quarantine: root.join("quarantine"),
            quarantining: Arc::default(),
            held: Arc::default(),
        })
    }

    /// Where a blob lives (or would live). Derived from the digest only, never from a name.
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.blobs.join(&hex[..2]).join(hex)
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }
}

/// Marks the temp file at `path` as held by this process until the returned guard drops.
fn hold(held: &Arc<Mutex<HashSet<OsString>>>, path: &Path) -> Option<Held> {
    path.file_name().map(|name| {
        let name = name.to_owned();
        if let Ok(mut set) = held.lock() {
            set.insert(name.clone());
        }
        Held {
            held: held.clone(),
            name,
        }
    })
}

/// Stores a hardlink import's immutable file under its digest. An immutable file cannot be
/// renamed, so the flag is lifted for the rename and set again on the stored name; a writer
/// of the source could slip in between, so the stored bytes are hashed once more under the
/// flag, and moved aside (never left under a digest they do not match) if they changed.
fn persist_frozen(temp: tempfile::TempPath, target: &Path, digest: &Digest, quarantine: &Path) -> std::io::Result<()> {
    use super::adopt::{clear_immutable, hash_file, open_no_follow, set_immutable};
    clear_immutable(&temp)?;
    temp.persist(target).map_err(|e| e.error)?;
    let checked = open_no_follow(target).and_then(|stored| {
        set_immutable(&stored, true)?;
        Ok(hash_file(&stored)?.0)
    });
    match checked {
        Ok(actual) if actual == *digest => Ok(()),
        outcome => {
            let aside = quarantine.join(format!(
                "{}.{}",
                digest.to_hex(),
                Timestamp::from_system(SystemTime::now()).millis()
            ));
            let moved = std::fs::create_dir_all(quarantine)
                .and_then(|()| clear_immutable(target))
                .and_then(|()| std::fs::rename(target, &aside));
            if let Err(e) = moved {
                tracing::error!(blob = %digest, error = %e, "a hardlinked blob that changed could not be moved aside");
            }
            Err(match outcome {
                Ok(actual) => std::io::Error::other(format!(
                    "the source was written while it was being stored (it hashed to {actual}); nothing was stored"
                )),
                Err(e) => e,
            })
        }
    }
}

/// How a local file came into the tmp dir, before it is hashed.
enum Placed {
    /// Brought in; its bytes are read from this file.
    Pending(FsPending, std::fs::File),
    /// Immutable already (imported by hardlink before) and its bytes stored: nothing to bring
    /// in, only to stage by digest.
    Stored(Digest, u64),
    /// `auto` found no way without copying.
    CopyInstead(super::LocalSource),
}

/// A step of an adoption that could not be done (the mode is unavailable for this file).
struct Cannot(String);

impl Cannot {
    fn because(what: &str, e: &std::io::Error) -> Self {
        Self(format!("{what}: {}", super::adopt::explain(e)))
    }
}

impl FsBlobStore {
    /// A fresh name in the tmp dir for a file linked or moved in, absolute (what `TempPath`
    /// removes when dropped, so nothing is left if the import stops anywhere).
    fn import_name(&self) -> std::result::Result<tempfile::TempPath, Cannot> {
        tempfile::TempPath::try_from_path(self.tmp.join(format!("import-{:016x}", rand::random::<u64>())))
            .map_err(|e| Cannot::because("cannot name a file in the store's tmp dir", &e))
    }

    /// A copy-on-write clone of the source in the tmp dir.
    fn place_reflink(&self, source: &super::LocalSource) -> std::result::Result<Placed, Cannot> {
        let named = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)
            .map_err(|e| Cannot::because("cannot create a file in the store's tmp dir", &e))?;
        rustix::fs::ioctl_ficlone(named.as_file(), &source.file)
            .map_err(|e| Cannot::because("cannot be cloned (reflink)", &e.into()))?;
        let (file, temp) = named.into_parts();
        let held = hold(&self.held, &temp);
        Ok(Placed::Pending(
            FsPending {
                temp: Some(temp),
                frozen: false,
                origin: None,
                journal: None,
                _held: held,
            },
            file,
        ))
    }

    /// The source's inode linked into the tmp dir and made immutable.
    fn place_hardlink(&self, source: &super::LocalSource) -> std::result::Result<Placed, Cannot> {
        use super::adopt::{open_no_follow, same_inode, set_immutable};
        let temp = self.import_name()?;
        let path: PathBuf = temp.to_path_buf();
        if let Err(e) = rustix::fs::linkat(
            &source.dir,
            source.name.as_os_str(),
            rustix::fs::CWD,
            &path,
            rustix::fs::AtFlags::empty(),
        ) {
            // An immutable inode takes no new link: most likely imported by hardlink before
            // (a re-publish of unchanged files), its bytes stored already.
            let frozen = rustix::fs::ioctl_getflags(&source.file)
                .is_ok_and(|flags| flags.contains(rustix::fs::IFlags::IMMUTABLE));
            if e == rustix::io::Errno::PERM && frozen {
                let (digest, size) = super::adopt::hash_file(&source.file)
                    .map_err(|e| Cannot::because("cannot read the immutable source", &e))?;
                if self.path_of(&digest).exists() {
                    return Ok(Placed::Stored(digest, size));
                }
                return Err(Cannot(
                    "is immutable (FS_IMMUTABLE_FL) and its bytes are not stored: it cannot be linked (use copy or reflink)"
                        .to_owned(),
                ));
            }
            return Err(Cannot::because("cannot be hard-linked into the store", &e.into()));
        }
        let mut pending = FsPending {
            temp: Some(temp),
            frozen: false,
            origin: None,
            journal: None,
            _held: hold(&self.held, &path),
        };
        let linked = open_no_follow(&path).map_err(|e| Cannot::because("cannot open the linked file", &e))?;
        check_same_file(&linked, source, same_inode)?;
        // Frozen before a byte is hashed: from here no writer can change the inode.
        set_immutable(&linked, true).map_err(|e| {
            Cannot::because(
                "cannot be made immutable (FS_IMMUTABLE_FL needs CAP_LINUX_IMMUTABLE and a filesystem with the flag), so a hardlink could not keep the stored bytes from changing with the source",
                &e,
            )
        })?;
        pending.frozen = true;
        Ok(Placed::Pending(pending, linked))
    }

    /// The source itself renamed into the tmp dir (put back if the import fails).
    fn place_move(&self, source: &super::LocalSource) -> std::result::Result<Placed, Cannot> {
        use super::adopt::{open_no_follow, same_inode};
        use std::os::unix::fs::MetadataExt;
        let temp = self.import_name()?;
        let path: PathBuf = temp.to_path_buf();
        let origin = source
            .dir
            .try_clone()
            .map_err(|e| Cannot::because("cannot hold the source's directory", &e))?;
        // Where it came from, durably, before it moves: a crash before it is stored must not
        // take the caller's only copy with it.
        let journal = journal_of(&path);
        write_journal(&journal, source).map_err(|e| Cannot::because("cannot journal the move", &e))?;
        let held = hold(&self.held, &path);
        if let Err(e) = rustix::fs::renameat(&source.dir, source.name.as_os_str(), rustix::fs::CWD, &path) {
            let _ = std::fs::remove_file(&journal);
            return Err(Cannot::because("cannot be moved into the store (use copy)", &e.into()));
        }
        if let Err(e) = fsync_dir(&self.tmp) {
            tracing::warn!(error = %e, "the store's tmp dir could not be synced after a move");
        }
        let pending = FsPending {
            temp: Some(temp),
            frozen: false,
            origin: Some((origin, source.name.clone())),
            journal: Some(journal),
            _held: held,
        };
        let moved = open_no_follow(&path).map_err(|e| Cannot::because("cannot open the moved file", &e))?;
        check_same_file(&moved, source, same_inode)?;
        // Another name of the inode could still write to it once it is stored.
        let links = moved
            .metadata()
            .map_err(|e| Cannot::because("cannot read the moved file", &e))?
            .nlink();
        if links != 1 {
            return Err(Cannot(format!(
                "has {links} hard links: the others could still change it once stored, so it was not moved (use copy, reflink or hardlink)"
            )));
        }
        Ok(Placed::Pending(pending, moved))
    }

    /// Brings `source` into the tmp dir by `mode` (blocking).
    fn place(&self, source: super::LocalSource, mode: ImportMode) -> Result<(Placed, ImportMode)> {
        let placed = match mode {
            ImportMode::Copy => return Ok((Placed::CopyInstead(source), ImportMode::Copy)),
            ImportMode::Reflink => self.place_reflink(&source),
            ImportMode::Hardlink => self.place_hardlink(&source),
            ImportMode::Move => self.place_move(&source),
            // Never hardlink on its own: that freezes the caller's file for as long as the
            // store keeps it (in a hosted repo, for ever), a side effect only asked for.
            ImportMode::Auto => {
                let tried = self.place_reflink(&source).map(|p| (p, ImportMode::Reflink));
                return Ok(tried.unwrap_or((Placed::CopyInstead(source), ImportMode::Copy)));
            }
        };
        match placed {
            Ok(placed) => Ok((placed, mode)),
            Err(Cannot(why)) => Err(super::adopt::refused(&source.shown, format!("{mode}: {why}"))),
        }
    }
}

/// Refuses a linked or moved file that is not the inode the caller checked (a file swapped in
/// between the check and the link or rename).
fn check_same_file(
    placed: &std::fs::File,
    source: &super::LocalSource,
    same_inode: fn(&std::fs::Metadata, &std::fs::Metadata) -> bool,
) -> std::result::Result<(), Cannot> {
    let (a, b) = match (placed.metadata(), source.file.metadata()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Err(Cannot::because("cannot read the file's metadata", &e)),
    };
    if same_inode(&a, &b) {
        Ok(())
    } else {
        Err(Cannot(
            "was replaced while it was being imported (the file found is not the one checked)".to_owned(),
        ))
    }
}

/// Writes where `source` is (its directory as the kernel knows it, and its name) to
/// `journal`, durably.
fn write_journal(journal: &Path, source: &super::LocalSource) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let dir = std::fs::read_link(format!("/proc/self/fd/{}", source.dir.as_raw_fd()))?;
    let origin = dir.join(&source.name);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(journal)?;
    f.write_all(origin.as_os_str().as_bytes())?;
    f.sync_all()?;
    if let Some(parent) = journal.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// `create_dir_all` whose result survives a power loss: each directory it creates is made
/// durable in its parent (an fsync of the parent), from the first one that already existed
/// down. Without it a new data dir, or its `blobs` or `tmp`, can vanish with everything in it.
pub fn create_dir_all_durable(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut existing = dir;
    while !existing.is_dir() {
        missing.push(existing);
        existing = match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
    }
    for new in missing.into_iter().rev() {
        match std::fs::create_dir(new) {
            Ok(()) => {}
            // Created meanwhile by someone else: still make its entry durable below.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && new.is_dir() => {}
            Err(e) => return Err(e),
        }
        fsync_dir(
            new.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )?;
    }
    Ok(())
}

/// Reads `body` into `buf` until it is full or the body ends; how many
/// bytes. An upload arrives in frames of the connection's buffer size (tens of KiB); writing
/// each one on its own would be a trip to the blocking pool per frame.
async fn fill(body: &mut (dyn AsyncRead + Send + Unpin), buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = body.read(&mut buf[filled..]).await.map_err(Error::Body)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn write(
        &self,
        body: &mut (dyn AsyncRead + Send + Unpin),
        progress: Option<Progress<'_>>,
    ) -> Result<PendingBlob> {
        let tmp_dir = self.tmp.clone();
        let named = tokio::task::spawn_blocking(move || tempfile::Builder::new().prefix("blob-").tempfile_in(tmp_dir))
            .await
            .map_err(|e| Error::io("creating temp file", std::io::Error::other(e)))?
            .map_err(|e| Error::io("creating temp file", e))?;
        let (std_file, temp_path) = named.into_parts();
        let held = hold(&self.held, &temp_path);
        let mut writeback = super::writeback::Writeback::new(&std_file)?;
        let mut write = super::temp_write::TempWrite::new(std_file);
        let mut buf = vec![0u8; WRITE_BUFFER];
        let mut received = 0u64;
        loop {
            let n = fill(body, &mut buf).await?;
            if n == 0 {
                break;
            }
            received += n as u64;
            buf = write.write(buf, n).await?;
            writeback.written(write.written()).await?;
            if let Some(p) = progress {
                p(received);
            }
        }
        let (file, hasher) = write.finish().await?;
        writeback.finish().await?;
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| Error::io("fsync temp blob", std::io::Error::other(e)))?
            .map_err(|e| Error::io("fsync temp blob", e))?;
        let size = hasher.len();
        Ok(PendingBlob {
            digest: hasher.finish(),
            size,
            handle: Box::new(FsPending {
                temp: Some(temp_path),
                frozen: false,
                origin: None,
                journal: None,
                _held: held,
            }),
        })
    }

    async fn persist(&self, pending: PendingBlob) -> Result<()> {
        let digest = pending.digest;
        let target = self.path_of(&digest);
        let handle = pending.into_handle::<FsPending>()?;
        let quarantine = self.quarantine.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            // Held until the temp file is renamed or removed: `sweep_pending` leaves it alone.
            // A moved file is put back by `handle`'s drop until it is stored.
            let mut handle = *handle;
            match std::fs::File::open(&target) {
                // Same content already stored: no second copy (the temp file is removed when
                // `handle` drops). But the file may be another upload's, renamed into place and
                // not yet made durable by that upload's directory fsync; the caller may commit
                // as soon as this returns. So make it durable here too, bytes and name.
                Ok(existing) => existing.sync_all()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let Some(temp) = handle.temp.take() else {
                        // Found stored when it was imported, deleted since: import it again.
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "the stored blob this import named was deleted meanwhile; import the file again",
                        ));
                    };
                    if handle.frozen {
                        persist_frozen(temp, &target, &digest, &quarantine)?;
                    } else if let Err(e) = temp.persist(&target) {
                        // Not stored: back to the handle, which puts a moved file back.
                        handle.temp = Some(e.path);
                        return Err(e.error);
                    }
                }
                Err(e) => return Err(e),
            }
            if let Some(parent) = target.parent() {
                fsync_dir(parent)?;
            }
            // Stored, durably: a moved file is the store's now, never put back.
            handle.origin = None;
            if let Some(journal) = handle.journal.take() {
                let _ = std::fs::remove_file(&journal);
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::io(format!("persisting blob {digest}"), std::io::Error::other(e)))?
        .map_err(|e| Error::io(format!("persisting blob {digest}"), e))
    }

    fn backend_name(&self) -> &'static str {
        "files"
    }

    async fn adopt(&self, source: super::LocalSource, mode: ImportMode) -> Result<Adopted> {
        let store = self.clone();
        let shown = source.shown.clone();
        let placed = tokio::task::spawn_blocking(move || -> Result<_> {
            let (placed, used) = store.place(source, mode)?;
            let (pending, file) = match placed {
                Placed::CopyInstead(source) => return Ok(Err(source)),
                Placed::Stored(digest, size) => {
                    // Nothing pending: `persist` finds the blob stored (and syncs it).
                    let nothing = FsPending {
                        temp: None,
                        frozen: false,
                        origin: None,
                        journal: None,
                        _held: None,
                    };
                    return Ok(Ok((nothing, digest, size, used)));
                }
                Placed::Pending(pending, file) => (pending, file),
            };
            // The bytes the store will hold (the clone, the moved or frozen inode), never the
            // request's word for them; durable before a commit may name them.
            let context = |e| Error::io(format!("reading {shown} as imported"), e);
            let (digest, size) = super::adopt::hash_file(&file).map_err(context)?;
            file.sync_all().map_err(context)?;
            Ok(Ok((pending, digest, size, used)))
        })
        .await
        .map_err(|e| Error::io("importing a file", std::io::Error::other(e)))??;
        match placed {
            Ok((pending, digest, size, mode)) => Ok(Adopted {
                pending: PendingBlob {
                    digest,
                    size,
                    handle: Box::new(pending),
                },
                mode,
            }),
            Err(source) => {
                let mut reader = tokio::fs::File::from_std(source.file);
                Ok(Adopted {
                    pending: self.write(&mut reader, None).await?,
                    mode: ImportMode::Copy,
                })
            }
        }
    }

    async fn make_durable(&self, digest: &Digest) -> Result<Option<u64>> {
        let target = self.path_of(digest);
        let digest = *digest;
        tokio::task::spawn_blocking(move || -> std::io::Result<Option<u64>> {
            let file = match std::fs::File::open(&target) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            // Bytes and name, as `persist` does for content already stored.
            file.sync_all()?;
            let size = file.metadata()?.len();
            if let Some(parent) = target.parent() {
                fsync_dir(parent)?;
            }
            Ok(Some(size))
        })
        .await
        .map_err(|e| Error::io(format!("syncing blob {digest}"), std::io::Error::other(e)))?
        .map_err(|e| Error::io(format!("syncing blob {digest}"), e))
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.path_of(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("stat blob {digest}"), e)),
        }
    }

    async fn read(&self, digest: &Digest, range: Option<std::ops::Range<u64>>) -> Result<BlobRead> {
        let path = self.path_of(digest);
        let (size, body) = match super::local_read::open(path.clone(), range).await {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::BlobMissing { digest: *digest }),
            Err(e) => return Err(Error::io(format!("opening blob {digest}"), e)),
        };
        Ok(BlobRead {
            size,
            body,
            local_path: Some(path),
        })
    }

    async fn quarantine(&self, digest: &Digest) -> Result<bool> {
        let from = self.path_of(digest);
        let dir = self.quarantine.clone();
        let name = format!(
            "{}.{}",
            digest.to_hex(),
            Timestamp::from_system(SystemTime::now()).millis()
        );
        let (expected, one_at_a_time) = (*digest, self.quarantining.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
            use std::io::Read;
            let _one = one_at_a_time.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // The damage was seen earlier, maybe in a file that has since been moved aside and
            // replaced by a good copy of the same content (a re-upload heals): only bytes that
            // are still wrong are moved. A good copy can only appear where none is (`persist`
            // never overwrites), so it cannot slip in between this check and the rename.
            let mut file = match std::fs::File::open(&from) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            let mut hasher = DigestHasher::new();
            let mut buf = vec![0u8; WRITE_BUFFER];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            if hasher.finish() == expected {
                return Ok(false);
            }
            std::fs::create_dir_all(&dir)?;
            let aside = dir.join(name);
            match super::adopt::retry_unfrozen(&from, || std::fs::rename(&from, &aside)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
            fsync_dir(&dir)?;
            if let Some(parent) = from.parent() {
                fsync_dir(parent)?;
            }
            Ok(true)
        })
        .await
        .map_err(|e| Error::io(format!("quarantining blob {digest}"), std::io::Error::other(e)))?
        .map_err(|e| Error::io(format!("quarantining blob {digest}"), e))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let path = self.path_of(digest);
        // A blob a hardlink import made immutable is made deletable first.
        let removed =
            tokio::task::spawn_blocking(move || super::adopt::retry_unfrozen(&path, || std::fs::remove_file(&path)))
                .await
                .map_err(|e| Error::io(format!("deleting blob {digest}"), std::io::Error::other(e)))?;
        match removed {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("deleting blob {digest}"), e)),
        }
    }

    fn list(&self, after: Option<Digest>) -> BoxStream<'_, Result<Digest>> {
        // One shard (1/256 of the store) in memory at a time, sorted; shards before the one
        // `after` falls in are not read at all.
        let first = after.map_or(0, |d| d.as_bytes()[0]);
        futures::stream::iter(first..=255u8)
            .then(move |i| list_shard(self.blobs.join(format!("{i:02x}")), after))
            .flat_map(|shard| {
                futures::stream::iter(match shard {
                    Ok(digests) => digests.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e)],
                })
            })
            .boxed()
    }

    async fn check_writable(&self) -> Result<()> {
        // A real write of some size, made durable: a nearly full disk fails it.
        let tmp = self.tmp.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let mut probe = tempfile::Builder::new().prefix("probe-").tempfile_in(tmp)?;
            probe.write_all(&[0u8; 1 << 20])?;
            probe.as_file().sync_all()
        })
        .await
        .map_err(|e| Error::io("probing free space", std::io::Error::other(e)))?
        .map_err(|e| Error::io("probing free space", e))
    }

    async fn sweep_pending(&self, older_than: Duration) -> Result<u64> {
        let tmp = self.tmp.clone();
        let held = self.held.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let cutoff = SystemTime::now()
                .checked_sub(older_than)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let mut removed = 0;
            for entry in std::fs::read_dir(&tmp)? {
                let entry = entry?;
                if held.lock().is_ok_and(|h| h.contains(&entry.file_name())) {
                    continue;
                }
                // A moved file's journal: handled with its file (below), or, alone, dropped
                // once old (its file was stored or put back and the removal was cut short).
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "origin") {
                    let file = path.with_extension("");
                    let stale = entry.metadata().and_then(|m| m.modified()).map(|m| m <= cutoff).unwrap_or(true);
                    let live = file
                        .file_name()
                        .is_some_and(|n| held.lock().is_ok_and(|h| h.contains(n)));
                    if !file.exists() && stale && !live {
                        let _ = std::fs::remove_file(&path);
                    }
                    continue;
                }
                let journal = journal_of(&path);
                if journal.exists() {
                    if held.lock().is_ok_and(|h| h.contains(path.file_name().unwrap_or_default())) {
                        continue;
                    }
                    match restore_moved(&path, &journal) {
                        Ok(()) => removed += 1,
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "a file moved in by an unfinished import could not be put back; it stays in the store's tmp dir");
                        }
                    }
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    // Persisted (renamed into place) or dropped since the listing: not ours.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if meta.modified().map(|m| m <= cutoff).unwrap_or(true) {
                    let res = if meta.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        // A hardlink import's file is immutable until stored.
                        super::adopt::retry_unfrozen(&path, || std::fs::remove_file(&path))
                    };
                    if res.is_ok() {
                        removed += 1;
                    }
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|e| Error::io("sweeping temp files", std::io::Error::other(e)))?
        .map_err(|e| Error::io("sweeping temp files", e))
    }

    async fn put_piece(&self, upload: &str, bytes: bytes::Bytes) -> Result<String> {
        let name = super::new_piece_name(upload)?;
        let (dir, file_name) = (self.uploads.clone(), name.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let path = dir.join(&file_name);
            // A fresh name, never an existing file: a piece is written once.
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
            let written = file.write_all(&bytes).and_then(|()| file.sync_all());
            if let Err(e) = written {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
            // The name, too, before the catalog counts the piece.
            fsync_dir(&dir)
        })
        .await
        .map_err(|e| Error::io(format!("writing upload piece {name}"), std::io::Error::other(e)))?
        .map_err(|e| Error::io(format!("writing upload piece {name}"), e))?;
        Ok(name)
    }

    async fn read_piece(&self, piece: &str) -> Result<super::BlobBody> {
        super::check_piece_name(piece)?;
        match super::local_read::open(self.uploads.join(piece), None).await {
            Ok((_, body)) => Ok(body),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
                what: format!("upload piece {piece}"),
            }),
            Err(e) => Err(Error::io(format!("reading upload piece {piece}"), e)),
        }
    }

    async fn delete_piece(&self, piece: &str) -> Result<()> {
        super::check_piece_name(piece)?;
        match tokio::fs::remove_file(self.uploads.join(piece)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("deleting upload piece {piece}"), e)),
        }
    }

    async fn delete_pieces(&self, upload: &str) -> Result<u64> {
        super::check_upload_id(upload)?;
        let (dir, prefix) = (self.uploads.clone(), format!("{upload}-"));
        tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut removed = 0;
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                if !entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
                    continue;
                }
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|e| {
            Error::io(
                format!("deleting the pieces of upload {upload}"),
                std::io::Error::other(e),
            )
        })?
        .map_err(|e| Error::io(format!("deleting the pieces of upload {upload}"), e))
    }
}

#[async_trait]
impl super::BlobTestHooks for FsBlobStore {
    async fn store_raw(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let path = self.path_of(digest);
        tokio::fs::write(&path, bytes)
            .await
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    async fn pending_count(&self) -> Result<usize> {
        let mut entries = tokio::fs::read_dir(&self.tmp)
            .await
            .map_err(|e| Error::io(format!("listing {}", self.tmp.display()), e))?;
        let mut n = 0;
        while let Some(_entry) = entries
            .next_entry()
            .await
            .map_err(|e| Error::io(format!("listing {}", self.tmp.display()), e))?
        {
            n += 1;
        }
        Ok(n)
    }

    async fn piece_count(&self) -> Result<usize> {
        let mut entries = tokio::fs::read_dir(&self.uploads)
            .await
            .map_err(|e| Error::io(format!("listing {}", self.uploads.display()), e))?;
        let mut n = 0;
        while entries
            .next_entry()
            .await
            .map_err(|e| Error::io(format!("listing {}", self.uploads.display()), e))?
            .is_some()
        {
            n += 1;
        }
        Ok(n)
    }
}

/// The digests stored in one shard directory (none when it is missing).
async fn list_shard(shard: PathBuf, after: Option<Digest>) -> Result<Vec<Digest>> {
    let context = format!("listing blobs in {}", shard.display());
    tokio::task::spawn_blocking(move || -> std::io::Result<Vec<Digest>> {
        let entries = match std::fs::read_dir(&shard) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            if let Some(d) = entry?.file_name().to_str().and_then(|n| Digest::parse(n).ok())
                && after.is_none_or(|a| d > a)
            {
                out.push(d);
            }
        }
        out.sort_unstable();
        Ok(out)
    })
    .await
    .map_err(|e| Error::io(context.clone(), std::io::Error::other(e)))?
    .map_err(|e| Error::io(context, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hardlinked source written while the flag was lifted for the rename into place: the
    /// bytes under the digest no longer match it, so they are moved aside, never left there.
    #[test]
    fn a_frozen_blob_that_changed_on_its_way_into_place_is_moved_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let temp_path = dir.path().join("import-x");
        std::fs::write(&temp_path, b"written by the source meanwhile").expect("write");
        let temp = tempfile::TempPath::try_from_path(&temp_path).expect("temp path");
        let claimed = Digest::of(b"what was hashed under the flag");
        let target = dir.path().join(claimed.to_hex());
        let quarantine = dir.path().join("quarantine");
        let err = persist_frozen(temp, &target, &claimed, &quarantine).expect_err("changed bytes are refused");
        assert!(
            err.to_string().contains("written while it was being stored") || err.raw_os_error().is_some(),
            "{err}"
        );
        assert!(!target.exists(), "nothing is left under the digest");
        let aside: Vec<_> = std::fs::read_dir(&quarantine).expect("quarantine").collect();
        assert_eq!(aside.len(), 1);
        let _ = std::process::Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(dir.path())
            .status();

        // Unchanged: stored under the digest, immutable where the flag can be set.
        let temp_path = dir.path().join("import-y");
        std::fs::write(&temp_path, b"steady bytes").expect("write");
        let temp = tempfile::TempPath::try_from_path(&temp_path).expect("temp path");
        let digest = Digest::of(b"steady bytes");
        let target = dir.path().join(digest.to_hex());
        match persist_frozen(temp, &target, &digest, &quarantine) {
            Ok(()) => {
                assert_eq!(std::fs::read(&target).expect("stored"), b"steady bytes");
                assert!(
                    std::fs::OpenOptions::new().write(true).open(&target).is_err(),
                    "immutable"
                );
            }
            // Where the flag cannot be set the blob is not kept either.
            Err(e) => assert!(!target.exists(), "{e}"),
        }
        let _ = std::process::Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(dir.path())
            .status();
    }

    /// A file moved in by an import whose process died before it was stored (no drop ran:
    /// the pending blob is forgotten) is put back where it came from by the next sweep of
    /// pending files, which start-up recovery runs; it is never swept away.
    #[tokio::test]
    async fn a_moved_file_is_put_back_after_a_crash_before_it_was_stored() {
        use crate::BlobStore;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(&dir.path().join("data")).await.expect("open");
        let renders = dir.path().join("renders");
        std::fs::create_dir_all(&renders).expect("mkdir");
        let source_path = renders.join("frame.exr");
        std::fs::write(&source_path, b"the only copy of a frame").expect("write");
        let source = || {
            let dir_fd = rustix::fs::open(
                &renders,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .expect("open dir");
            super::super::LocalSource {
                dir: dir_fd,
                name: "frame.exr".into(),
                file: std::fs::File::open(&source_path).expect("open file"),
                shown: source_path.display().to_string(),
            }
        };
        let adopted = store.adopt(source(), ImportMode::Move).await.expect("move");
        assert!(!source_path.exists(), "moved into the store");
        // The process dies here; the next one sweeps at start-up.
        std::mem::forget(adopted);
        let restarted = FsBlobStore::open(&dir.path().join("data")).await.expect("open");
        restarted.sweep_pending(Duration::ZERO).await.expect("sweep");
        assert_eq!(
            std::fs::read(&source_path).expect("put back"),
            b"the only copy of a frame"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("data/tmp")).expect("tmp").collect();
        assert!(left.is_empty(), "nothing left in tmp: {left:?}");

        // Stored, then the process dies: the file is the store's, and no journal lingers.
        let adopted = store.adopt(source(), ImportMode::Move).await.expect("move");
        let digest = adopted.pending.digest;
        store.persist(adopted.pending).await.expect("persist");
        store.sweep_pending(Duration::ZERO).await.expect("sweep");
        assert!(!source_path.exists());
        assert_eq!(
            std::fs::read(store.path_of(&digest)).expect("stored"),
            b"the only copy of a frame"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("data/tmp")).expect("tmp").collect();
        assert!(left.is_empty(), "nothing left in tmp: {left:?}");
    }

    #[test]
    fn create_dir_all_durable_creates_every_missing_level_and_accepts_existing_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a/b/c");
        create_dir_all_durable(&deep).expect("create");
        assert!(deep.is_dir());
        create_dir_all_durable(&deep).expect("again");
        std::fs::write(dir.path().join("file"), b"x").expect("write");
        assert!(create_dir_all_durable(&dir.path().join("file/below")).is_err());
    }
}
