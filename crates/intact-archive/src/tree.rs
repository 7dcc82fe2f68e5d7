//! The destination tree: the only code that touches `dest`. Every path it writes comes from a
//! validated `FilePath`, every directory it enters it created itself (`create_dir`, never
//! `create_dir_all`), every file it opens is `create_new`, so nothing that was not made by this
//! extraction is ever followed or overwritten. It also keeps the books: entry count, bytes per
//! file and in total (real bytes, never header-declared sizes), and the path index that catches
//! duplicates, file/directory clashes and names that differ only in letter case.
//!
//! Links never become links on disk. A hardlink is copied from the file it names, which must
//! come earlier (that is how tar writes them). A symlink is recorded when it appears and copied
//! from its target once the whole archive is in: tar and zip store entries in directory order,
//! so `sub/link -> ../a.txt` routinely precedes `a.txt`, and a symlink shows its target's final
//! content, as it would on disk.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use intact_core::{Digest, DigestHasher, FilePath};

use crate::source::SourceState;
use crate::{ArchiveError, ExtractedFile, Limits};

/// Size of the one copy buffer, reused for every entry.
const COPY_BUF: usize = 64 * 1024;

/// Below this many bytes the expansion ratio is not enforced, so tiny archives of small,
/// very compressible files pass.
pub(crate) const RATIO_GRACE_BYTES: u64 = 1024 * 1024;

/// What to do when an entry names a file that an earlier entry already wrote.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Duplicates {
    /// tar: the later entry wins (written beside, then renamed over the earlier one).
    Replace,
    /// zip: refuse the archive.
    Refuse,
}

/// Where the bytes being pumped come from, which decides how a read error is reported.
#[derive(Clone, Copy)]
enum Side {
    /// The archive's decoders: a read error means a bad archive (unless the file read failed).
    Archive,
    /// A file this extraction wrote (materializing a link): a read error is local I/O.
    Local,
}

/// One node of the path index, keyed by the ASCII-lower-cased path.
enum Node {
    /// A file; the index into `Tree::out`, which holds its exact path.
    File(usize),
    /// A directory this extraction created, with its exact path.
    Dir(String),
    /// A symlink not yet materialized; the index into `Tree::links`, which holds its exact path.
    Link(usize),
}

/// A symlink seen in the archive, materialized by `finish` as a copy of its target.
struct PendingLink {
    entry: String,
    path: FilePath,
    /// Already resolved (lexically) to a path inside the tree.
    target: FilePath,
}

pub(crate) struct Tree<'p> {
    dest: PathBuf,
    limits: Limits,
    /// Effective cap on bytes written in total: the smaller of `max_total_bytes` and the
    /// ratio allowance, with the name and value reported when it is crossed.
    total_cap: u64,
    total_what: &'static str,
    total_limit: u64,
    written: u64,
    entries: u64,
    /// Invariant: every `Node::File(i)` indexes `out` and `Node::Link(i)` indexes `links`, and
    /// the path stored there lower-cases to the key.
    names: HashMap<String, Node>,
    out: Vec<ExtractedFile>,
    links: Vec<PendingLink>,
    buf: Vec<u8>,
    source: Rc<SourceState>,
    archive_len: u64,
    progress: &'p mut dyn FnMut(u64),
    reported: u64,
    tmp_seq: u64,
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

fn unsafe_path(entry: &str, reason: String) -> ArchiveError {
    ArchiveError::UnsafePath {
        entry: entry.to_owned(),
        reason,
    }
}

fn link_to_directory(entry: &str, target: &FilePath) -> ArchiveError {
    ArchiveError::UnsupportedEntry {
        entry: entry.to_owned(),
        kind: format!(
            "link to {:?}, a directory (only links to files are extracted)",
            target.as_str()
        ),
    }
}

impl<'p> Tree<'p> {
    pub(crate) fn new(
        dest: &Path,
        limits: &Limits,
        archive_len: u64,
        source: Rc<SourceState>,
        progress: &'p mut dyn FnMut(u64),
    ) -> Self {
        let ratio_cap = match limits.max_ratio {
            0 => u64::MAX,
            r => r.saturating_mul(archive_len).max(RATIO_GRACE_BYTES),
        };
        let (total_cap, total_what, total_limit) = if ratio_cap < limits.max_total_bytes {
            (ratio_cap, "expansion ratio", limits.max_ratio)
        } else {
            (limits.max_total_bytes, "total bytes", limits.max_total_bytes)
        };
        Self {
            dest: dest.to_path_buf(),
            limits: *limits,
            total_cap,
            total_what,
            total_limit,
            written: 0,
            entries: 0,
            names: HashMap::new(),
            out: Vec::new(),
            links: Vec::new(),
            buf: vec![0; COPY_BUF],
            source,
            archive_len,
            progress,
            reported: 0,
            tmp_seq: 0,
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counts one archive entry against `max_entries`.
    pub(crate) fn count_entry(&mut self, entry: &str) -> Result<(), ArchiveError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ArchiveError::LimitExceeded {
                what: "entries",
                limit: self.limits.max_entries,
                entry: entry.to_owned(),
            });
        }
        Ok(())
    }

    /// Fails fast on a declared size over the per-file limit. Only an early exit: the limits
    /// are enforced on the bytes actually written, whatever a header claims.
    pub(crate) fn check_declared_size(&self, entry: &str, size: u64) -> Result<(), ArchiveError> {
        if size > self.limits.max_file_bytes {
            return Err(ArchiveError::LimitExceeded {
                what: "file bytes",
                limit: self.limits.max_file_bytes,
                entry: entry.to_owned(),
            });
        }
        Ok(())
    }

    /// Turns an error from reading the archive into the right outcome: the archive file could
    /// not be read (`Io`), a decoder needed more memory than allowed (`LimitExceeded`), or the
    /// archive is bad (`Corrupt`). `entry` may be empty when no entry is being read.
    pub(crate) fn archive_error(&self, entry: &str, e: io::Error) -> ArchiveError {
        if self.source.failed() {
            return ArchiveError::Io(e);
        }
        if e.kind() == io::ErrorKind::OutOfMemory {
            return ArchiveError::LimitExceeded {
                what: "decoder memory",
                limit: self.limits.max_decoder_memory,
                entry: entry.to_owned(),
            };
        }
        let reason = if entry.is_empty() {
            e.to_string()
        } else {
            format!("entry {entry:?}: {e}")
        };
        ArchiveError::Corrupt { reason }
    }

    /// Writes a regular file from the archive; returns the bytes written.
    pub(crate) fn add_file(
        &mut self,
        entry: &str,
        path: &FilePath,
        data: &mut dyn Read,
        dup: Duplicates,
    ) -> Result<u64, ArchiveError> {
        let replace = self.claim(entry, path, dup)?;
        self.make_parents(path)?;
        self.write(entry, path, replace, data, Side::Archive)
    }

    /// Records a symlink to `target` (resolved inside the tree); `finish` copies the file it
    /// ends up naming. A symlink never replaces, nor is replaced by, another entry.
    pub(crate) fn add_symlink(&mut self, entry: &str, path: &FilePath, target: &FilePath) -> Result<(), ArchiveError> {
        self.claim(entry, path, Duplicates::Refuse)?;
        self.make_parents(path)?;
        self.names
            .insert(path.as_str().to_ascii_lowercase(), Node::Link(self.links.len()));
        self.links.push(PendingLink {
            entry: entry.to_owned(),
            path: path.clone(),
            target: target.clone(),
        });
        Ok(())
    }

    /// Materializes a tar hardlink as a copy of `target`, a file extracted earlier (a hardlink
    /// to a symlink is that symlink again).
    pub(crate) fn add_hardlink(
        &mut self,
        entry: &str,
        path: &FilePath,
        target: &FilePath,
        dup: Duplicates,
    ) -> Result<(), ArchiveError> {
        let source = match self.names.get(&target.as_str().to_ascii_lowercase()) {
            Some(Node::File(i)) if self.out[*i].path == *target => self.out[*i].local.clone(),
            Some(Node::Link(i)) if self.links[*i].path == *target => {
                let target = self.links[*i].target.clone();
                return self.add_symlink(entry, path, &target);
            }
            Some(Node::Dir(d)) if d == target.as_str() => {
                return Err(link_to_directory(entry, target));
            }
            _ => {
                return Err(ArchiveError::UnsupportedEntry {
                    entry: entry.to_owned(),
                    kind: format!(
                        "hardlink to {:?}, which is not a file extracted earlier in the archive",
                        target.as_str()
                    ),
                });
            }
        };
        let replace = self.claim(entry, path, dup)?;
        self.make_parents(path)?;
        let mut from = File::open(&source)?;
        self.write(entry, path, replace, &mut from, Side::Local)?;
        Ok(())
    }

    /// Reads and discards an entry's data (directories, global headers...), still counting it
    /// against the total: skipping gigabytes is work a hostile archive should not get for free.
    pub(crate) fn skip(&mut self, entry: &str, data: &mut dyn Read) -> Result<(), ArchiveError> {
        self.pump(entry, data, None, Side::Archive).map(|_| ())
    }

    /// Materializes the symlinks, then returns the extracted files, unique and sorted by path.
    pub(crate) fn finish(mut self) -> Result<Vec<ExtractedFile>, ArchiveError> {
        for i in 0..self.links.len() {
            let source = self.link_source(i)?;
            let (entry, path) = (self.links[i].entry.clone(), self.links[i].path.clone());
            let mut from = File::open(&source)?;
            self.write(&entry, &path, None, &mut from, Side::Local)?;
        }
        self.report_progress();
        let mut out = std::mem::take(&mut self.out);
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Follows symlink `i` (through other symlinks) to a regular file; returns where it is.
    fn link_source(&self, i: usize) -> Result<PathBuf, ArchiveError> {
        let link = &self.links[i];
        let unsupported = |kind: String| ArchiveError::UnsupportedEntry {
            entry: link.entry.clone(),
            kind,
        };
        let mut target = &link.target;
        // Each hop moves to another pending link, so more hops than links means a loop.
        for _ in 0..=self.links.len() {
            match self.names.get(&target.as_str().to_ascii_lowercase()) {
                Some(Node::File(f)) if self.out[*f].path == *target => {
                    return Ok(self.out[*f].local.clone());
                }
                Some(Node::Link(l)) if self.links[*l].path == *target => target = &self.links[*l].target,
                Some(Node::Dir(d)) if d == target.as_str() => {
                    return Err(link_to_directory(&link.entry, target));
                }
                _ => {
                    return Err(unsupported(format!(
                        "symlink to {:?}, which is not a file in the archive",
                        link.target.as_str()
                    )));
                }
            }
        }
        Err(unsupported(format!(
            "symlink to {:?} is part of a symlink loop",
            link.target.as_str()
        )))
    }

    pub(crate) fn report_progress(&mut self) {
        let n = self.source.bytes_read().min(self.archive_len);
        if n != self.reported {
            self.reported = n;
            (self.progress)(n);
        }
    }

    /// Checks `path` against everything extracted so far. Returns the index of the file it
    /// replaces, if any.
    fn claim(&self, entry: &str, path: &FilePath, dup: Duplicates) -> Result<Option<usize>, ArchiveError> {
        let p = path.as_str();
        for anc in ancestors(p) {
            match self.names.get(&anc.to_ascii_lowercase()) {
                None => {}
                Some(Node::Dir(d)) if d == anc => {}
                Some(Node::Dir(d)) => {
                    return Err(unsafe_path(
                        entry,
                        format!("directory {anc:?} differs only in letter case from {d:?}"),
                    ));
                }
                Some(Node::File(i)) => {
                    let f = self.out[*i].path.as_str();
                    let reason = if f == anc {
                        format!("parent {anc:?} is a file extracted earlier")
                    } else {
                        format!("directory {anc:?} differs only in letter case from file {f:?}")
                    };
                    return Err(unsafe_path(entry, reason));
                }
                Some(Node::Link(i)) => {
                    let l = self.links[*i].path.as_str();
                    let reason = if l == anc {
                        format!("parent {anc:?} is a symlink (links to directories are not extracted)")
                    } else {
                        format!("directory {anc:?} differs only in letter case from symlink {l:?}")
                    };
                    return Err(unsafe_path(entry, reason));
                }
            }
        }
        match self.names.get(&p.to_ascii_lowercase()) {
            None => Ok(None),
            Some(Node::File(i)) if self.out[*i].path == *path => match dup {
                Duplicates::Replace => Ok(Some(*i)),
                Duplicates::Refuse => Err(unsafe_path(entry, format!("duplicate path {p:?}"))),
            },
            Some(Node::File(i)) => Err(unsafe_path(
                entry,
                format!(
                    "{p:?} differs only in letter case from {:?}",
                    self.out[*i].path.as_str()
                ),
            )),
            Some(Node::Link(i)) if self.links[*i].path == *path => Err(unsafe_path(
                entry,
                format!("duplicate path {p:?} (an earlier entry is a symlink)"),
            )),
            Some(Node::Link(i)) => Err(unsafe_path(
                entry,
                format!(
                    "{p:?} differs only in letter case from symlink {:?}",
                    self.links[*i].path.as_str()
                ),
            )),
            Some(Node::Dir(d)) if d == p => Err(unsafe_path(
                entry,
                format!("{p:?} is already a directory holding extracted files"),
            )),
            Some(Node::Dir(d)) => Err(unsafe_path(
                entry,
                format!("{p:?} differs only in letter case from directory {d:?}"),
            )),
        }
    }

    fn local(&self, path: &str) -> PathBuf {
        let mut local = self.dest.clone();
        // Segments passed the FilePath grammar: no separators, no `.`/`..`, no NUL.
        local.extend(path.split('/'));
        local
    }

    /// Creates the missing parent directories of `path` one level at a time. `claim` has
    /// already checked that each ancestor is either a directory we created or absent.
    fn make_parents(&mut self, path: &FilePath) -> Result<(), ArchiveError> {
        for anc in ancestors(path.as_str()) {
            let key = anc.to_ascii_lowercase();
            if self.names.contains_key(&key) {
                continue;
            }
            fs::create_dir(self.local(anc))?;
            self.names.insert(key, Node::Dir(anc.to_owned()));
        }
        Ok(())
    }

    fn write(
        &mut self,
        entry: &str,
        path: &FilePath,
        replace: Option<usize>,
        data: &mut dyn Read,
        side: Side,
    ) -> Result<u64, ArchiveError> {
        let local = self.local(path.as_str());
        // A replacement is written beside the old file under a name no entry can have ('~' is
        // outside the FilePath grammar), then renamed over it.
        let tmp = replace.map(|_| {
            self.tmp_seq += 1;
            local.with_file_name(format!(".~intact-replace-{}", self.tmp_seq))
        });
        let target = tmp.as_deref().unwrap_or(&local);
        let mut file = OpenOptions::new().write(true).create_new(true).open(target)?;
        let (size, sha256) = self.pump(entry, data, Some(&mut file), side)?;
        drop(file);
        if let Some(tmp) = &tmp {
            fs::rename(tmp, &local)?;
        }
        match replace {
            Some(i) => {
                self.out[i].size = size;
                self.out[i].sha256 = sha256;
            }
            None => {
                self.names
                    .insert(path.as_str().to_ascii_lowercase(), Node::File(self.out.len()));
                self.out.push(ExtractedFile {
                    path: path.clone(),
                    size,
                    sha256,
                    local,
                });
            }
        }
        Ok(size)
    }

    /// Copies `data` to `out` (or nowhere), hashing in the same pass and checking every chunk
    /// against the limits before it is written.
    fn pump(
        &mut self,
        entry: &str,
        data: &mut dyn Read,
        mut out: Option<&mut File>,
        side: Side,
    ) -> Result<(u64, Digest), ArchiveError> {
        let mut buf = std::mem::take(&mut self.buf);
        let mut hasher = DigestHasher::new();
        let result = loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    break Err(match side {
                        Side::Archive => self.archive_error(entry, e),
                        Side::Local => ArchiveError::Io(e),
                    });
                }
            };
            if let Err(e) = self.reserve(entry, out.is_some().then(|| hasher.len()), n as u64) {
                break Err(e);
            }
            if let Some(file) = out.as_deref_mut() {
                if let Err(e) = file.write_all(&buf[..n]) {
                    break Err(ArchiveError::Io(e));
                }
                hasher.update(&buf[..n]);
            }
            self.report_progress();
        };
        self.buf = buf;
        result?;
        Ok((hasher.len(), hasher.finish()))
    }

    /// Accounts for `n` more bytes, refusing them if they would cross a limit.
    fn reserve(&mut self, entry: &str, file_so_far: Option<u64>, n: u64) -> Result<(), ArchiveError> {
        if let Some(so_far) = file_so_far
            && so_far.saturating_add(n) > self.limits.max_file_bytes
        {
            return Err(ArchiveError::LimitExceeded {
                what: "file bytes",
                limit: self.limits.max_file_bytes,
                entry: entry.to_owned(),
            });
        }
        let total = self.written.saturating_add(n);
        if total > self.total_cap {
            return Err(ArchiveError::LimitExceeded {
                what: self.total_what,
                limit: self.total_limit,
                entry: entry.to_owned(),
            });
        }
        self.written = total;
        Ok(())
    }
}
