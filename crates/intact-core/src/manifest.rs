//! Manifests: what a committed version is. A list of files (path, size, sha256) plus JSON
//! metadata. Immutable once committed, so any copy of one is as good as the catalog's.

use serde::{Deserialize, Serialize};

use crate::{Digest, FilePath, Name, RepoName, Timestamp, TxnId, Version};

/// One file of a version. The bytes live in the blob named by `sha256`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileEntry {
    pub path: FilePath,
    pub size: u64,
    pub sha256: Digest,
}

/// A committed version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    pub repo: RepoName,
    pub name: Name,
    pub version: Version,
    /// Sorted by path, unique paths (lookups binary-search it).
    pub files: Vec<FileEntry>,
    /// A JSON object; `{}` when none was given.
    pub metadata: serde_json::Value,
    pub created_at: Timestamp,
    /// The transaction whose commit made this version visible.
    pub transaction: Option<TxnId>,
    /// Position of the commit event in the event log.
    pub seq: i64,
}

impl Manifest {
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The fingerprint that decides whether a re-commit is "the same content".
    pub fn fingerprint(&self) -> Digest {
        content_fingerprint(self.files.iter().map(|f| (f.path.as_str(), &f.sha256)), &self.metadata)
    }
}

/// The identity of a version's content: its file paths with their digests, and its metadata.
/// Two commits with the same fingerprint are the same version (an idempotent retry); with
/// different fingerprints they conflict. Order of `files` does not matter.
pub fn content_fingerprint<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a Digest)>,
    metadata: &serde_json::Value,
) -> Digest {
    let mut entries: Vec<(&str, &Digest)> = files.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = crate::DigestHasher::new();
    for (path, digest) in entries {
        // Paths cannot contain NUL or '\n', so this framing is unambiguous.
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update(digest.as_bytes());
        h.update(b"\n");
    }
    h.update(b"\0metadata\0");
    // serde_json's Map is a BTreeMap here, so serialization is canonical (sorted keys).
    h.update(metadata.to_string().as_bytes());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_order_but_not_content() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let m = serde_json::json!({"k": 1, "a": [1, 2]});
        let one = content_fingerprint([("x", &a), ("y", &b)], &m);
        let two = content_fingerprint([("y", &b), ("x", &a)], &m);
        assert_eq!(one, two);
        assert_ne!(one, content_fingerprint([("x", &b), ("y", &a)], &m));
        assert_ne!(one, content_fingerprint([("x", &a), ("y", &b)], &serde_json::json!({})));
    }
}
