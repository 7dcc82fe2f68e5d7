//! Local blob files that hashed right in full, remembered with the identity the file had then
//! (device, inode, size, modification and change times), so a later whole read of the same,
//! unchanged file is not hashed again: on a warm large download the hash was most of the
//! server's work, while a peer without checks pays only for the copy.
//!
//! Why trusting an unchanged file is sound: a write to a file with `write(2)` or `truncate`,
//! by this process, another one or a hand, moves its change time (which no caller can set
//! back), and replacing it (a quarantine moving it aside, a re-upload healing it, an eviction
//! and a fresh copy) gives a new inode. A trusted read looks at the file again after its last
//! read and holds its last chunk back till then, so such a write during the read fails it too.
//!
//! What the identity cannot see:
//! * Writes through a shared writable mapping to a page already dirty (the times move only when
//!   a clean page is first written; on tmpfs, not at all). Only a process that holds the file
//!   open for writing can do that, and every blob file is one the store wrote and closed
//!   itself, except a file imported by `move` (its owner may still hold it): so the server
//!   remembers nothing while import by path is on.
//! * Damage below the file system (a disk returning other bytes than were written to it).
//!
//! Both are the scrubber's to find, as for files read only by range, and the small-file cache
//! already serves from memory on the same terms. Forgotten at restart; bounded by entries; 0
//! remembers nothing (every whole read is hashed).
//!
//! File times come from a coarse clock (a few milliseconds): a write in the same tick as the
//! look that took an identity would leave the identity unchanged. So only a file whose last
//! change is [`SETTLED`] old when its read begins is remembered or trusted; any write after
//! that look moves its change time.

use std::time::{Duration, SystemTime};

use intact_core::Digest;

/// How long ago a file must last have changed for its identity to tell every later write.
/// Far above any file system's timestamp granularity.
pub(crate) const SETTLED: Duration = Duration::from_secs(1);

/// What a file looked like when it was read: any write or replacement changes at least one
/// of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileIdentity {
    /// The file's identity, when it last changed `settle` or longer before `now`.
    pub(crate) fn settled(meta: &std::fs::Metadata, now: SystemTime, settle: Duration) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let seconds = u64::try_from(meta.ctime()).ok()?;
        let nanos = u64::try_from(meta.ctime_nsec()).ok()?;
        let changed_at = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_nanos(nanos);
        (changed_at.checked_add(settle)? <= now).then(|| Self::of(meta))
    }

    /// The file's identity however recently it changed: what a trusted read compares with the
    /// one it began with.
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// See the module docs.
pub(crate) struct VerifiedFiles {
    remembered: Option<quick_cache::sync::Cache<Digest, FileIdentity>>,
    /// [`SETTLED`], but for tests.
    settle: Duration,
}

impl VerifiedFiles {
    /// Remembers up to `entries` files; 0 remembers none.
    pub(crate) fn new(entries: usize) -> Self {
        Self::settling_for(entries, SETTLED)
    }

    /// A memory trusting files that last changed `settle` ago (tests: a file written just
    /// now, on a clock fine enough for the test's writes).
    pub(crate) fn settling_for(entries: usize, settle: Duration) -> Self {
        Self {
            remembered: (entries > 0).then(|| quick_cache::sync::Cache::new(entries)),
            settle,
        }
    }

    /// The identity of a file that looks like `meta` now, when it has settled enough to be
    /// remembered or trusted.
    pub(crate) fn identity(&self, meta: &std::fs::Metadata) -> Option<FileIdentity> {
        FileIdentity::settled(meta, SystemTime::now(), self.settle)
    }

    /// Whether reads may ask about files at all (a store that remembers nothing need not
    /// even look at a file's identity).
    pub(crate) fn enabled(&self) -> bool {
        self.remembered.is_some()
    }

    /// Whether the file holding `digest`, which looks like `identity` now, hashed right in
    /// full while it looked exactly so.
    pub(crate) fn holds(&self, digest: &Digest, identity: &FileIdentity) -> bool {
        let held = self.remembered.as_ref().and_then(|cache| cache.get(digest));
        crate::telemetry::cache_lookup("verified_file", held.as_ref() == Some(identity));
        held.as_ref() == Some(identity)
    }

    /// Records that the file holding `digest` hashed right in full while it looked like
    /// `identity` (taken before its first byte was read: a change during the read makes
    /// the record one that never matches).
    pub(crate) fn remember(&self, digest: Digest, identity: FileIdentity) {
        if let Some(cache) = &self.remembered {
            cache.insert(digest, identity);
        }
    }

    /// Files remembered now.
    pub(crate) fn len(&self) -> usize {
        self.remembered.as_ref().map_or(0, |cache| cache.len())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn identity(file: &std::fs::File) -> FileIdentity {
        FileIdentity::of(&file.metadata().expect("metadata"))
    }

    #[test]
    fn a_file_written_to_since_it_was_verified_is_not_trusted() {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(b"one").expect("write");
        let digest = Digest::of(b"one");
        let memory = VerifiedFiles::new(16);
        memory.remember(digest, identity(&file));
        assert!(memory.holds(&digest, &identity(&file)));
        // Same size, new bytes: only the times tell.
        std::thread::sleep(std::time::Duration::from_millis(20));
        file.write_all_at_start(b"two");
        assert!(!memory.holds(&digest, &identity(&file)));
    }

    #[test]
    fn another_file_with_the_same_digest_is_not_trusted() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("blob");
        std::fs::write(&path, b"same").expect("write");
        let digest = Digest::of(b"same");
        let memory = VerifiedFiles::new(16);
        memory.remember(digest, FileIdentity::of(&std::fs::metadata(&path).expect("meta")));
        // Replaced (as a heal or a fresh cache copy replaces it): a new inode.
        let fresh = dir.path().join("fresh");
        std::fs::write(&fresh, b"same").expect("write");
        std::fs::rename(&fresh, &path).expect("rename");
        assert!(!memory.holds(&digest, &FileIdentity::of(&std::fs::metadata(&path).expect("meta"))));
    }

    #[test]
    fn a_file_changed_a_moment_ago_has_no_identity_yet() {
        let file = tempfile::tempfile().expect("temp file");
        let meta = file.metadata().expect("metadata");
        assert_eq!(VerifiedFiles::new(16).identity(&meta), None);
        let later = SystemTime::now() + SETTLED;
        assert_eq!(
            FileIdentity::settled(&meta, later, SETTLED),
            Some(FileIdentity::of(&meta))
        );
    }

    #[test]
    fn remembering_nothing_trusts_nothing() {
        let file = tempfile::tempfile().expect("temp file");
        let digest = Digest::of(b"");
        let memory = VerifiedFiles::new(0);
        memory.remember(digest, identity(&file));
        assert!(!memory.enabled());
        assert!(!memory.holds(&digest, &identity(&file)));
        assert_eq!(memory.len(), 0);
    }

    trait WriteAtStart {
        fn write_all_at_start(&mut self, bytes: &[u8]);
    }

    impl WriteAtStart for std::fs::File {
        fn write_all_at_start(&mut self, bytes: &[u8]) {
            use std::os::unix::fs::FileExt;
            self.write_all_at(bytes, 0).expect("write at start");
        }
    }
}
