//! What "the same content" means for a version, and what differs when it is not: the one
//! decision behind idempotent re-publishing, shared by every catalog backend and front-end.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::{Digest, FileEntry};

/// How a new publish of an existing version differs from it. Empty when the content is the
/// same (same paths, same sha256 each, same metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContentDiff {
    /// Paths in both, with other bytes: (path, existing sha256, new sha256).
    pub changed: Vec<ChangedFile>,
    /// Paths only the existing version has.
    pub only_existing: Vec<String>,
    /// Paths only the new publish has.
    pub only_new: Vec<String>,
    /// Top-level metadata keys whose values differ (or that only one side has).
    pub metadata_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedFile {
    pub path: String,
    pub existing: Digest,
    pub new: Digest,
}

/// Most entries a diff lists per kind; the rest are counted (a conflict message must stay
/// readable for a version of 100,000 files).
const SHOWN: usize = 20;

impl ContentDiff {
    /// Compares an existing version (`existing`, `existing_meta`) with a new publish of it.
    pub fn between(
        existing: &[FileEntry],
        existing_meta: &serde_json::Value,
        new: &[FileEntry],
        new_meta: &serde_json::Value,
    ) -> Self {
        let old: BTreeMap<&str, &Digest> = existing.iter().map(|f| (f.path.as_str(), &f.sha256)).collect();
        let new_files: BTreeMap<&str, &Digest> = new.iter().map(|f| (f.path.as_str(), &f.sha256)).collect();
        let mut diff = Self::default();
        for (path, digest) in &old {
            match new_files.get(path) {
                Some(n) if n == digest => {}
                Some(n) => diff.changed.push(ChangedFile {
                    path: (*path).to_owned(),
                    existing: **digest,
                    new: **n,
                }),
                None => diff.only_existing.push((*path).to_owned()),
            }
        }
        diff.only_new = new_files
            .keys()
            .filter(|p| !old.contains_key(*p))
            .map(|p| (*p).to_owned())
            .collect();
        diff.metadata_keys = metadata_keys_that_differ(existing_meta, new_meta);
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
            && self.only_existing.is_empty()
            && self.only_new.is_empty()
            && self.metadata_keys.is_empty()
    }
}

fn metadata_keys_that_differ(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let mut keys: Vec<String> = a
                .iter()
                .filter(|(k, v)| b.get(*k) != Some(*v))
                .map(|(k, _)| k.clone())
                .chain(b.keys().filter(|k| !a.contains_key(*k)).cloned())
                .collect();
            keys.sort();
            keys
        }
        _ if a == b => Vec::new(),
        // Metadata is always an object; anything else differs as a whole.
        _ => vec!["(metadata)".to_owned()],
    }
}

fn list(f: &mut fmt::Formatter<'_>, label: &str, items: &[String]) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    write!(f, "; {label}: ")?;
    for (i, item) in items.iter().take(SHOWN).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        f.write_str(item)?;
    }
    if items.len() > SHOWN {
        write!(f, " and {} more", items.len() - SHOWN)?;
    }
    Ok(())
}

impl fmt::Display for ContentDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("same content");
        }
        write!(
            f,
            "{} file(s) changed, {} only in the existing version, {} only in this publish, {} metadata key(s) differ",
            self.changed.len(),
            self.only_existing.len(),
            self.only_new.len(),
            self.metadata_keys.len()
        )?;
        let changed: Vec<String> = self
            .changed
            .iter()
            .map(|c| format!("{} (sha256 {} -> {})", c.path, short(&c.existing), short(&c.new)))
            .collect();
        list(f, "changed", &changed)?;
        list(f, "only in the existing version", &self.only_existing)?;
        list(f, "only in this publish", &self.only_new)?;
        list(f, "metadata keys", &self.metadata_keys)
    }
}

fn short(d: &Digest) -> String {
    d.to_hex()[..12].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FilePath;

    fn file(p: &str, content: &[u8]) -> FileEntry {
        FileEntry {
            path: FilePath::parse(p).expect("path"),
            size: content.len() as u64,
            sha256: Digest::of(content),
        }
    }

    #[test]
    fn same_content_is_an_empty_diff() {
        let files = [file("a", b"1"), file("b/c", b"2")];
        let meta = serde_json::json!({"k": 1});
        let d = ContentDiff::between(&files, &meta, &[file("b/c", b"2"), file("a", b"1")], &meta);
        assert!(d.is_empty(), "{d}");
    }

    #[test]
    fn every_kind_of_difference_is_named() {
        let d = ContentDiff::between(
            &[file("a", b"1"), file("gone", b"x")],
            &serde_json::json!({"artist": "kim", "same": 1}),
            &[file("a", b"2"), file("new", b"y")],
            &serde_json::json!({"artist": "lee", "same": 1, "extra": true}),
        );
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.only_existing, ["gone"]);
        assert_eq!(d.only_new, ["new"]);
        assert_eq!(d.metadata_keys, ["artist", "extra"]);
        let text = d.to_string();
        for needle in [
            "changed: a (sha256",
            "only in the existing version: gone",
            "only in this publish: new",
            "metadata keys: artist, extra",
        ] {
            assert!(text.contains(needle), "{text} lacks {needle}");
        }
    }

    #[test]
    fn long_lists_are_cut_and_counted() {
        let many: Vec<FileEntry> = (0..50).map(|i| file(&format!("f{i:02}"), b"z")).collect();
        let d = ContentDiff::between(&[], &serde_json::json!({}), &many, &serde_json::json!({}));
        assert!(d.to_string().contains("and 30 more"), "{d}");
    }
}
