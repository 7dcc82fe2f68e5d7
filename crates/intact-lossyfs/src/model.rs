//! The filesystem model, without FUSE: a *live* tree (what processes see) and a *durable* tree
//! (what a disk would still hold after losing power).
//!
//! The durability rules are the ones POSIX promises and no more:
//! * `fsync` of a file makes its contents and attributes durable, not its name;
//! * `fsync` of a directory makes its entries durable (creations, renames into or out of it,
//!   unlinks), not the contents of the files they name;
//! * a new inode is durable as an empty file or directory until it is fsynced itself.
//!
//! A power cut replaces the live tree with what is reachable from the durable root. A rename
//! fsynced in its target directory only is therefore still present in its source directory
//! too, as on a filesystem that does not journal renames atomically.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use crate::data::Data;

pub(crate) const ROOT: u64 = 1;

/// An errno value.
pub(crate) type Errno = i32;
pub(crate) type Result<T> = std::result::Result<T, Errno>;

/// Durable inodes no tree reaches any more are forgotten every this many fsyncs.
const GC_EVERY: u64 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone)]
enum Content {
    File(Data),
    Dir(BTreeMap<OsString, u64>),
    Symlink(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Meta {
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
}

#[derive(Debug, Clone)]
struct Node {
    content: Content,
    meta: Meta,
}

impl Node {
    fn kind(&self) -> Kind {
        match self.content {
            Content::File(_) => Kind::File,
            Content::Dir(_) => Kind::Dir,
            Content::Symlink(_) => Kind::Symlink,
        }
    }

    fn entries(&self) -> Result<&BTreeMap<OsString, u64>> {
        match &self.content {
            Content::Dir(e) => Ok(e),
            _ => Err(libc::ENOTDIR),
        }
    }
}

/// What `stat` shows of an inode.
#[derive(Debug, Clone)]
pub(crate) struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// Attribute changes of a `setattr`.
#[derive(Debug, Default)]
pub(crate) struct SetAttr {
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

/// What a new inode is.
#[derive(Debug)]
pub(crate) enum New {
    File,
    Dir,
    Symlink(Vec<u8>),
}

/// What one power cut threw away.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CutReport {
    /// Inodes visible before the cut that no longer exist (never made reachable durably).
    pub inodes_lost: u64,
    /// Files that still exist but lost writes (back to their last fsynced contents).
    pub files_reverted: u64,
    /// Directories whose entries went back to their last fsync.
    pub dirs_reverted: u64,
}

/// Counters since the filesystem was created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub power_cuts: u64,
    pub inodes_lost: u64,
    pub files_reverted: u64,
    pub dirs_reverted: u64,
}

#[derive(Debug)]
pub(crate) struct Model {
    live: HashMap<u64, Node>,
    durable: HashMap<u64, Node>,
    /// Names pointing at each live file (hard links).
    links: HashMap<u64, u32>,
    /// Open handles per live inode: an unlinked file stays readable while open.
    open: HashMap<u64, u32>,
    next_ino: u64,
    stats: Stats,
}

fn now() -> SystemTime {
    SystemTime::now()
}

impl Model {
    pub(crate) fn new() -> Self {
        let t = now();
        let root = Node {
            content: Content::Dir(BTreeMap::new()),
            meta: Meta {
                perm: 0o755,
                uid: 0,
                gid: 0,
                atime: t,
                mtime: t,
                ctime: t,
            },
        };
        Model {
            live: HashMap::from([(ROOT, root.clone())]),
            durable: HashMap::from([(ROOT, root)]),
            links: HashMap::new(),
            open: HashMap::new(),
            next_ino: ROOT + 1,
            stats: Stats::default(),
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    fn node(&self, ino: u64) -> Result<&Node> {
        self.live.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node> {
        self.live.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>> {
        let node = self.node_mut(ino)?;
        let t = now();
        node.meta.mtime = t;
        node.meta.ctime = t;
        match &mut node.content {
            Content::Dir(e) => Ok(e),
            _ => Err(libc::ENOTDIR),
        }
    }

    pub(crate) fn attr(&self, ino: u64) -> Result<Attr> {
        let node = self.node(ino)?;
        let (size, nlink) = match &node.content {
            Content::File(d) => (d.len(), self.links.get(&ino).copied().unwrap_or(0)),
            Content::Dir(e) => (e.len() as u64, 2),
            Content::Symlink(t) => (t.len() as u64, self.links.get(&ino).copied().unwrap_or(0)),
        };
        Ok(Attr {
            ino,
            kind: node.kind(),
            size,
            perm: node.meta.perm,
            nlink,
            uid: node.meta.uid,
            gid: node.meta.gid,
            atime: node.meta.atime,
            mtime: node.meta.mtime,
            ctime: node.meta.ctime,
        })
    }

    pub(crate) fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr> {
        let ino = *self.node(parent)?.entries()?.get(name).ok_or(libc::ENOENT)?;
        self.attr(ino)
    }

    /// Creates `name` in `parent`. The new inode is durable at once, empty; its name is not.
    pub(crate) fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        new: New,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Attr> {
        if self.node(parent)?.entries()?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let t = now();
        let meta = Meta {
            perm,
            uid,
            gid,
            atime: t,
            mtime: t,
            ctime: t,
        };
        let (live, durable) = match new {
            New::File => (Content::File(Data::default()), Content::File(Data::default())),
            New::Dir => (Content::Dir(BTreeMap::new()), Content::Dir(BTreeMap::new())),
            New::Symlink(target) => (Content::Symlink(target.clone()), Content::Symlink(target)),
        };
        let is_dir = matches!(live, Content::Dir(_));
        self.live.insert(
            ino,
            Node {
                content: live,
                meta: meta.clone(),
            },
        );
        self.durable.insert(ino, Node { content: durable, meta });
        if !is_dir {
            self.links.insert(ino, 1);
        }
        self.dir_mut(parent)?.insert(name.to_owned(), ino);
        self.attr(ino)
    }

    pub(crate) fn link(&mut self, ino: u64, parent: u64, name: &OsStr) -> Result<Attr> {
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(libc::EPERM);
        }
        if self.node(parent)?.entries()?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        self.dir_mut(parent)?.insert(name.to_owned(), ino);
        *self.links.entry(ino).or_default() += 1;
        self.node_mut(ino)?.meta.ctime = now();
        self.attr(ino)
    }

    /// One name less for `ino`; the inode goes once no name and no handle is left.
    fn drop_link(&mut self, ino: u64) {
        let left = match self.links.get_mut(&ino) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left == 0 {
            self.links.remove(&ino);
            if self.open.get(&ino).copied().unwrap_or(0) == 0 {
                self.live.remove(&ino);
            }
        }
    }

    pub(crate) fn unlink(&mut self, parent: u64, name: &OsStr) -> Result<()> {
        let ino = *self.node(parent)?.entries()?.get(name).ok_or(libc::ENOENT)?;
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(libc::EISDIR);
        }
        self.dir_mut(parent)?.remove(name);
        self.drop_link(ino);
        Ok(())
    }

    pub(crate) fn rmdir(&mut self, parent: u64, name: &OsStr) -> Result<()> {
        let ino = *self.node(parent)?.entries()?.get(name).ok_or(libc::ENOENT)?;
        if !self.node(ino)?.entries()?.is_empty() {
            return Err(libc::ENOTEMPTY);
        }
        self.dir_mut(parent)?.remove(name);
        self.live.remove(&ino);
        Ok(())
    }

    pub(crate) fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
        exchange: bool,
    ) -> Result<()> {
        let src = *self.node(parent)?.entries()?.get(name).ok_or(libc::ENOENT)?;
        let dst = self.node(new_parent)?.entries()?.get(new_name).copied();
        if exchange {
            let dst = dst.ok_or(libc::ENOENT)?;
            self.dir_mut(parent)?.insert(name.to_owned(), dst);
            self.dir_mut(new_parent)?.insert(new_name.to_owned(), src);
            return Ok(());
        }
        if let Some(dst) = dst {
            if no_replace {
                return Err(libc::EEXIST);
            }
            if dst == src {
                return Ok(());
            }
            match (self.node(src)?.kind(), self.node(dst)?.kind()) {
                (Kind::Dir, Kind::Dir) => {
                    if !self.node(dst)?.entries()?.is_empty() {
                        return Err(libc::ENOTEMPTY);
                    }
                    self.live.remove(&dst);
                }
                (Kind::Dir, _) => return Err(libc::ENOTDIR),
                (_, Kind::Dir) => return Err(libc::EISDIR),
                _ => self.drop_link(dst),
            }
        }
        self.dir_mut(parent)?.remove(name);
        self.dir_mut(new_parent)?.insert(new_name.to_owned(), src);
        self.node_mut(src)?.meta.ctime = now();
        Ok(())
    }

    pub(crate) fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        match &self.node(ino)?.content {
            Content::Symlink(t) => Ok(t.clone()),
            _ => Err(libc::EINVAL),
        }
    }

    /// The entries of a directory: name, inode, kind.
    pub(crate) fn list(&self, ino: u64) -> Result<Vec<(OsString, u64, Kind)>> {
        let entries = self.node(ino)?.entries()?;
        Ok(entries
            .iter()
            .filter_map(|(name, child)| self.live.get(child).map(|n| (name.clone(), *child, n.kind())))
            .collect())
    }

    pub(crate) fn open(&mut self, ino: u64) -> Result<()> {
        self.node(ino)?;
        *self.open.entry(ino).or_default() += 1;
        Ok(())
    }

    pub(crate) fn release(&mut self, ino: u64) {
        let left = match self.open.get_mut(&ino) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left == 0 {
            self.open.remove(&ino);
            let named = self.links.contains_key(&ino) || self.live.get(&ino).is_some_and(|n| n.kind() == Kind::Dir);
            if !named {
                self.live.remove(&ino);
            }
        }
    }

    pub(crate) fn read(&self, ino: u64, offset: u64, size: u64) -> Result<Vec<u8>> {
        match &self.node(ino)?.content {
            Content::File(d) => Ok(d.read(offset, size)),
            Content::Dir(_) => Err(libc::EISDIR),
            Content::Symlink(_) => Err(libc::EINVAL),
        }
    }

    pub(crate) fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<()> {
        let node = self.node_mut(ino)?;
        let t = now();
        node.meta.mtime = t;
        node.meta.ctime = t;
        match &mut node.content {
            Content::File(d) => {
                d.write(offset, bytes);
                Ok(())
            }
            Content::Dir(_) => Err(libc::EISDIR),
            Content::Symlink(_) => Err(libc::EINVAL),
        }
    }

    pub(crate) fn set_attr(&mut self, ino: u64, set: SetAttr) -> Result<Attr> {
        let node = self.node_mut(ino)?;
        if let Some(size) = set.size {
            match &mut node.content {
                Content::File(d) => d.set_len(size),
                Content::Dir(_) => return Err(libc::EISDIR),
                Content::Symlink(_) => return Err(libc::EINVAL),
            }
            node.meta.mtime = now();
        }
        if let Some(p) = set.perm {
            node.meta.perm = p;
        }
        if let Some(u) = set.uid {
            node.meta.uid = u;
        }
        if let Some(g) = set.gid {
            node.meta.gid = g;
        }
        if let Some(t) = set.atime {
            node.meta.atime = t;
        }
        if let Some(t) = set.mtime {
            node.meta.mtime = t;
        }
        node.meta.ctime = now();
        self.attr(ino)
    }

    /// `fsync`/`fdatasync` of a file (its contents) or a directory (its entries).
    pub(crate) fn sync(&mut self, ino: u64) -> Result<()> {
        let node = self.node(ino)?.clone();
        if node.kind() == Kind::Dir {
            self.stats.dir_syncs += 1;
        } else {
            self.stats.file_syncs += 1;
        }
        self.durable.insert(ino, node);
        if (self.stats.dir_syncs + self.stats.file_syncs).is_multiple_of(GC_EVERY) {
            self.forget_unreachable_durable();
        }
        Ok(())
    }

    /// Inodes reachable from the durable root.
    fn durable_reachable(&self) -> HashSet<u64> {
        let mut seen = HashSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if let Some(Node {
                content: Content::Dir(entries),
                ..
            }) = self.durable.get(&ino)
            {
                for child in entries.values() {
                    if seen.insert(*child) {
                        stack.push(*child);
                    }
                }
            }
        }
        seen
    }

    /// Drops durable copies that neither the durable tree nor a live inode can reach again.
    fn forget_unreachable_durable(&mut self) {
        let reachable = self.durable_reachable();
        let live = &self.live;
        self.durable
            .retain(|ino, _| reachable.contains(ino) || live.contains_key(ino));
    }

    /// The power goes out: every write and every directory change not made durable is lost.
    /// Nothing may be open (the processes using the filesystem died with the power).
    pub(crate) fn power_cut(&mut self) -> CutReport {
        let reachable = self.durable_reachable();
        self.durable.retain(|ino, _| reachable.contains(ino));
        let mut report = CutReport::default();
        for (ino, node) in &self.live {
            match (self.durable.get(ino), &node.content) {
                (None, _) => report.inodes_lost += 1,
                (
                    Some(Node {
                        content: Content::File(d),
                        ..
                    }),
                    Content::File(l),
                ) if !d.same_as(l) => report.files_reverted += 1,
                (
                    Some(Node {
                        content: Content::Dir(d),
                        ..
                    }),
                    Content::Dir(l),
                ) if d != l => report.dirs_reverted += 1,
                _ => {}
            }
        }
        self.live = self.durable.clone();
        self.open.clear();
        self.links.clear();
        for node in self.live.values() {
            if let Content::Dir(entries) = &node.content {
                for child in entries.values() {
                    if self.live.get(child).is_some_and(|n| n.kind() != Kind::Dir) {
                        *self.links.entry(*child).or_default() += 1;
                    }
                }
            }
        }
        self.stats.power_cuts += 1;
        self.stats.inodes_lost += report.inodes_lost;
        self.stats.files_reverted += report.files_reverted;
        self.stats.dirs_reverted += report.dirs_reverted;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn file(m: &mut Model, parent: u64, name: &str, bytes: &[u8]) -> u64 {
        let a = m.create(parent, os(name), New::File, 0o644, 0, 0).expect("create");
        m.write(a.ino, 0, bytes).expect("write");
        a.ino
    }

    fn contents(m: &Model, parent: u64, name: &str) -> Option<Vec<u8>> {
        let a = m.lookup(parent, os(name)).ok()?;
        m.read(a.ino, 0, u64::MAX).ok()
    }

    #[test]
    fn nothing_unsynced_survives() {
        let mut m = Model::new();
        file(&mut m, ROOT, "a", b"hello");
        let r = m.power_cut();
        assert_eq!(contents(&m, ROOT, "a"), None);
        assert_eq!(r.inodes_lost, 1);
    }

    #[test]
    fn a_synced_file_needs_its_directory_synced_too() {
        let mut m = Model::new();
        let a = file(&mut m, ROOT, "a", b"hello");
        m.sync(a).expect("sync");
        m.power_cut();
        assert_eq!(contents(&m, ROOT, "a"), None, "the name was never durable");

        let a = file(&mut m, ROOT, "a", b"hello");
        m.sync(ROOT).expect("sync dir");
        m.power_cut();
        assert_eq!(contents(&m, ROOT, "a"), Some(Vec::new()), "the name, not the bytes");

        m.write(a, 0, b"hello").expect("write");
        m.sync(a).expect("sync");
        m.write(a, 5, b" world").expect("write");
        m.power_cut();
        assert_eq!(
            contents(&m, ROOT, "a"),
            Some(b"hello".to_vec()),
            "only what was fsynced"
        );
    }

    #[test]
    fn renames_and_unlinks_are_undone_unless_their_directories_are_synced() {
        let mut m = Model::new();
        let tmp = m.create(ROOT, os("tmp"), New::Dir, 0o755, 0, 0).expect("mkdir").ino;
        let blobs = m.create(ROOT, os("blobs"), New::Dir, 0o755, 0, 0).expect("mkdir").ino;
        m.sync(ROOT).expect("sync");
        let t = file(&mut m, tmp, "t1", b"bytes");
        m.sync(t).expect("sync");
        m.sync(tmp).expect("sync");
        m.rename(tmp, os("t1"), blobs, os("b1"), false, false).expect("rename");
        assert_eq!(contents(&m, blobs, "b1"), Some(b"bytes".to_vec()));
        m.power_cut();
        assert_eq!(contents(&m, blobs, "b1"), None, "rename not durable");
        assert_eq!(contents(&m, tmp, "t1"), Some(b"bytes".to_vec()));

        m.rename(tmp, os("t1"), blobs, os("b1"), false, false).expect("rename");
        m.sync(blobs).expect("sync");
        m.power_cut();
        assert_eq!(contents(&m, blobs, "b1"), Some(b"bytes".to_vec()));
        assert_eq!(
            contents(&m, tmp, "t1"),
            Some(b"bytes".to_vec()),
            "the source directory was not synced: the old name comes back as a second link"
        );
        m.unlink(tmp, os("t1")).expect("unlink");
        assert_eq!(m.lookup(blobs, os("b1")).expect("b1").nlink, 1);
        m.sync(tmp).expect("sync");
        m.power_cut();
        assert_eq!(contents(&m, tmp, "t1"), None);
        assert_eq!(contents(&m, blobs, "b1"), Some(b"bytes".to_vec()));
    }

    #[test]
    fn an_unsynced_directory_takes_its_synced_children_with_it() {
        let mut m = Model::new();
        let d = m.create(ROOT, os("d"), New::Dir, 0o755, 0, 0).expect("mkdir").ino;
        let f = file(&mut m, d, "f", b"x");
        m.sync(f).expect("sync");
        m.sync(d).expect("sync");
        m.power_cut();
        assert!(m.lookup(ROOT, os("d")).is_err());
    }

    #[test]
    fn unlinked_open_files_stay_readable_until_released() {
        let mut m = Model::new();
        let f = file(&mut m, ROOT, "f", b"x");
        m.open(f).expect("open");
        m.unlink(ROOT, os("f")).expect("unlink");
        assert_eq!(m.read(f, 0, 10).expect("read"), b"x".to_vec());
        m.release(f);
        assert_eq!(m.read(f, 0, 10), Err(libc::ENOENT));
    }

    #[test]
    fn rename_rules() {
        let mut m = Model::new();
        file(&mut m, ROOT, "a", b"a");
        file(&mut m, ROOT, "b", b"b");
        assert_eq!(m.rename(ROOT, os("a"), ROOT, os("b"), true, false), Err(libc::EEXIST));
        m.rename(ROOT, os("a"), ROOT, os("b"), false, true).expect("exchange");
        assert_eq!(contents(&m, ROOT, "a"), Some(b"b".to_vec()));
        m.rename(ROOT, os("a"), ROOT, os("b"), false, false).expect("replace");
        assert_eq!(contents(&m, ROOT, "b"), Some(b"b".to_vec()));
        assert_eq!(m.list(ROOT).expect("list").len(), 1);
        let d = m.create(ROOT, os("d"), New::Dir, 0o755, 0, 0).expect("mkdir").ino;
        file(&mut m, d, "x", b"");
        assert_eq!(m.rename(ROOT, os("b"), ROOT, os("d"), false, false), Err(libc::EISDIR));
        assert_eq!(m.rmdir(ROOT, os("d")), Err(libc::ENOTEMPTY));
    }
}
