//! Small committed files kept in memory once verified, so that a warm read of a file the
//! size of a Go `.info` or `.mod` costs no file open, no read and no hash.
//!
//! Keyed by digest: a blob's bytes never change, so an entry can never be wrong, whatever
//! happens later to the version that held it or to the file on disk (a copy damaged after it
//! was cached is still caught by the scrubber; what is served from here was checked against
//! its sha256 when it was read). Bounded by bytes, not entries.

use bytes::Bytes;
use intact_core::Digest;

/// Bookkeeping counted per entry on top of its bytes, so that many empty files are bounded
/// too.
const ENTRY_OVERHEAD: u64 = 96;

/// The largest file kept: beyond this a read streams from the blob store (the bytes per
/// request dwarf the open and the hash).
pub const MAX_FILE: u64 = 64 * 1024;

#[derive(Clone)]
struct ByLength;

impl quick_cache::Weighter<Digest, Bytes> for ByLength {
    fn weight(&self, _digest: &Digest, bytes: &Bytes) -> u64 {
        bytes.len() as u64 + ENTRY_OVERHEAD
    }
}

pub(crate) struct SmallFiles {
    cache: Option<quick_cache::sync::Cache<Digest, Bytes, ByLength>>,
    /// The largest file kept (a sixteenth of the capacity at most, so one file never
    /// crowds out the rest).
    max_file: u64,
}

impl SmallFiles {
    /// Keeps up to `capacity` bytes; 0 keeps nothing.
    pub(crate) fn new(capacity: u64) -> Self {
        if capacity == 0 {
            return Self {
                cache: None,
                max_file: 0,
            };
        }
        let estimated = usize::try_from(capacity / 4096).unwrap_or(usize::MAX).max(16);
        Self {
            cache: Some(quick_cache::sync::Cache::with_weighter(estimated, capacity, ByLength)),
            max_file: MAX_FILE.min(capacity / 16),
        }
    }

    /// Whether a file of `size` bytes is kept here once read.
    pub(crate) fn keeps(&self, size: u64) -> bool {
        self.cache.is_some() && size <= self.max_file
    }

    /// The verified bytes of `digest`, when they are here and `size` long.
    pub(crate) fn get(&self, digest: &Digest, size: u64) -> Option<Bytes> {
        let bytes = self.cache.as_ref()?.get(digest)?;
        (bytes.len() as u64 == size).then_some(bytes)
    }

    /// Keeps `bytes`, which the caller checked hash to `digest`.
    pub(crate) fn insert(&self, digest: Digest, bytes: Bytes) {
        if let Some(cache) = &self.cache
            && self.keeps(bytes.len() as u64)
        {
            cache.insert(digest, bytes);
        }
    }

    /// Bytes held now (entries' overhead included).
    pub(crate) fn weight(&self) -> u64 {
        self.cache.as_ref().map_or(0, quick_cache::sync::Cache::weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_small_files_within_its_bytes() {
        let files = SmallFiles::new(64 * 1024);
        assert!(files.keeps(4096));
        assert!(!files.keeps(4097), "at most a sixteenth of the capacity per file");
        for i in 0..100u32 {
            let bytes = Bytes::from(vec![u8::try_from(i % 251).unwrap_or(0); 4000]);
            files.insert(Digest::of(&bytes), bytes);
        }
        assert!(files.weight() <= 64 * 1024, "bounded: {}", files.weight());
        let bytes = Bytes::from_static(b"hello");
        files.insert(Digest::of(&bytes), bytes.clone());
        assert_eq!(files.get(&Digest::of(&bytes), 5), Some(bytes.clone()));
        assert_eq!(
            files.get(&Digest::of(&bytes), 6),
            None,
            "a size that does not match is a miss"
        );
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let files = SmallFiles::new(0);
        assert!(!files.keeps(1));
        let bytes = Bytes::from_static(b"x");
        files.insert(Digest::of(&bytes), bytes.clone());
        assert_eq!(files.get(&Digest::of(&bytes), 1), None);
    }
}
