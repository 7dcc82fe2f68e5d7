//! A filesystem that loses power: an in-memory FUSE filesystem (as LazyFS does for Jepsen)
//! that keeps, beside what processes see, what a disk would still hold after a power cut, and
//! can cut the power: every write not fsynced and every directory entry (create, rename,
//! unlink) not made durable by an fsync of its directory is thrown away. `SIGKILL` keeps the
//! page cache; this does not.
//!
//! A power cut unmounts the filesystem (the processes using it must be dead: the power took
//! them too), replaces the live tree with the durable one, and mounts it again at the same
//! place, so no page, attribute or dentry cached by the kernel survives either.
//!
//! Mounting needs `/dev/fuse` and the right to mount (root: the mount is made with `mount(2)`
//! directly, no libfuse or `fusermount` needed).

mod data;
mod model;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, BsdFileFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use model::{Attr, Kind, Model, New, SetAttr};
pub use model::{CutReport, Stats};

/// How long the kernel may cache attributes and names. Every change goes through this one
/// kernel, and a power cut remounts, so caching cannot show stale state.
const TTL: Duration = Duration::from_secs(1);

/// A mounted lossy filesystem. Dropping it unmounts it (and the contents are gone).
pub struct LossyFs {
    model: Arc<Mutex<Model>>,
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
}

impl std::fmt::Debug for LossyFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LossyFs")
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LossyFs {
    /// Mounts an empty lossy filesystem on `mountpoint` (an existing, empty directory).
    pub fn mount(mountpoint: &Path) -> std::io::Result<LossyFs> {
        let model = Arc::new(Mutex::new(Model::new()));
        let session = Self::mount_model(&model, mountpoint)?;
        Ok(LossyFs {
            model,
            mountpoint: mountpoint.to_owned(),
            session: Some(session),
        })
    }

    fn mount_model(model: &Arc<Mutex<Model>>, mountpoint: &Path) -> std::io::Result<BackgroundSession> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("intact-lossyfs".into()),
            MountOption::Subtype("lossyfs".into()),
            MountOption::NoAtime,
        ];
        // Several request loops: a process blocked in one (say, an fsync) must not stall all.
        config.n_threads = Some(4);
        let fs = Adapter {
            model: model.clone(),
            dirs: Mutex::default(),
            next_handle: AtomicU64::new(1),
        };
        fuser::spawn_mount(fs, mountpoint, &config)
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Cuts the power: unmounts, throws away everything not durable, mounts again. Every
    /// process that had a file open here must be dead (unmounting fails with `EBUSY`
    /// otherwise).
    pub fn power_cut(&mut self) -> std::io::Result<CutReport> {
        if let Some(session) = self.session.take() {
            unmount_when_released(&self.mountpoint)?;
            // Unmounted: the kernel's DESTROY ends the request loops.
            ended(session.join())?;
        }
        let report = lock(&self.model).power_cut();
        self.session = Some(Self::mount_model(&self.model, &self.mountpoint)?);
        Ok(report)
    }

    pub fn stats(&self) -> Stats {
        lock(&self.model).stats()
    }
}

impl Drop for LossyFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = unmount(session);
        }
    }
}

/// Unmounts `mountpoint`, waiting while it is busy. A killed process's files are closed by
/// the time `wait` returns, but the kernel keeps the mount busy until this filesystem has
/// answered their `RELEASE` requests, which it sends without waiting: an unmount right after a
/// kill can meet `EBUSY` for a moment (seen in CI). `umount(8)`, not `umount(2)`, so no
/// `unsafe` is needed.
fn unmount_when_released(mountpoint: &Path) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = std::process::Command::new("umount").arg(mountpoint).output()?;
        if out.status.success() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                format!(
                    "unmounting {} for a power cut: {}",
                    mountpoint.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Unmounts and waits for every request loop to end. With several loops, only the one handed
/// the kernel's DESTROY ends cleanly; another may instead find the connection already torn
/// down and read `ECONNABORTED` (seen once in a few thousand power cuts). The unmount itself
/// succeeded by then, so that is the session ending, not a failure.
fn unmount(session: BackgroundSession) -> std::io::Result<()> {
    ended(session.umount_and_join())
}

/// How the request loops ended, an `ECONNABORTED` read after the unmount counting as ending.
fn ended(outcome: std::io::Result<()>) -> std::io::Result<()> {
    match outcome {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => Ok(()),
        other => other,
    }
}

/// A directory's entries as `opendir` saw them: name, inode, kind.
type Listing = Vec<(std::ffi::OsString, u64, Kind)>;

/// The FUSE side: translates requests into model operations.
struct Adapter {
    model: Arc<Mutex<Model>>,
    /// Directory listings taken at `opendir`, so entries removed during a listing (a sweep
    /// deleting as it reads) never make `readdir` skip others.
    dirs: Mutex<std::collections::HashMap<u64, Listing>>,
    next_handle: AtomicU64,
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn time_of(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Adapter {
    fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }

    fn entry(&self, reply: ReplyEntry, result: model::Result<Attr>) {
        match result {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn empty(reply: ReplyEmpty, result: model::Result<()>) {
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl Filesystem for Adapter {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = self.model().lookup(parent.0, name);
        self.entry(reply, result);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model().attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            perm: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            size,
            atime: atime.map(time_of),
            mtime: mtime.map(time_of),
        };
        match self.model().set_attr(ino.0, set) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.model().readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let perm = (mode & !umask & 0o7777) as u16;
        let result = self
            .model()
            .create(parent.0, name, New::File, perm, req.uid(), req.gid());
        self.entry(reply, result);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let perm = (mode & !umask & 0o7777) as u16;
        let result = self
            .model()
            .create(parent.0, name, New::Dir, perm, req.uid(), req.gid());
        self.entry(reply, result);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(reply, self.model().unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(reply, self.model().rmdir(parent.0, name));
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let new = New::Symlink(target.as_os_str().as_bytes().to_vec());
        let result = self
            .model()
            .create(parent.0, link_name, new, 0o777, req.uid(), req.gid());
        self.entry(reply, result);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let result = self.model().rename(
            parent.0,
            name,
            newparent.0,
            newname,
            flags.contains(RenameFlags::RENAME_NOREPLACE),
            flags.contains(RenameFlags::RENAME_EXCHANGE),
        );
        Self::empty(reply, result);
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let result = self.model().link(ino.0, newparent.0, newname);
        self.entry(reply, result);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.model().open(ino.0) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model().read(ino.0, offset, u64::from(size)) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.model().write(ino.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.model().release(ino.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        Self::empty(reply, self.model().sync(ino.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let listing = self.model().list(ino.0);
        match listing {
            Ok(entries) => {
                let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
                self.dirs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(fh, entries);
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let dirs = self.dirs.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entries) = dirs.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let dots = [
            (OsStr::new("."), ino.0, Kind::Dir),
            (OsStr::new(".."), ino.0, Kind::Dir),
        ];
        let all = dots
            .into_iter()
            .chain(entries.iter().map(|(n, i, k)| (n.as_os_str(), *i, *k)));
        for (index, (name, child, kind)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), index as u64 + 1, file_type(kind), name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.dirs.lock().unwrap_or_else(PoisonError::into_inner).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        Self::empty(reply, self.model().sync(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Plenty of room: the suites must not fail on a disk-space check.
        reply.statfs(1 << 28, 1 << 27, 1 << 27, 1 << 24, 1 << 23, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let mut model = self.model();
        let result = model
            .create(parent.0, name, New::File, perm, req.uid(), req.gid())
            .and_then(|a| model.open(a.ino).map(|()| a));
        match result {
            Ok(a) => reply.created(&TTL, &file_attr(&a), Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        let mut model = self.model();
        let result = model.attr(ino.0).and_then(|a| {
            let end = offset.saturating_add(length);
            if end > a.size {
                model
                    .set_attr(
                        ino.0,
                        SetAttr {
                            size: Some(end),
                            ..SetAttr::default()
                        },
                    )
                    .map(|_| ())
            } else {
                Ok(())
            }
        });
        Self::empty(reply, result);
    }
}
