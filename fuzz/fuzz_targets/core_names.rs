//! Names, versions, file paths, digests and transaction ids from outside: parsing never
//! panics, and whatever is accepted is safe to use (no `.`/`..` segment, no empty segment, no
//! byte outside the grammar) and round-trips; so do timestamps.
#![no_main]

use intact_core::{Digest, FilePath, Name, RepoName, Timestamp, TxnId, Version};
use libfuzzer_sys::fuzz_target;

fn segments_safe(s: &str) -> bool {
    s.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = Name::parse(s) {
        assert!(segments_safe(n.as_str()));
        assert!(!n.as_str().split('/').any(|seg| seg.starts_with('@')));
        assert_eq!(n.as_str(), s);
    }
    if let Ok(n) = Name::parse_internal(s) {
        assert!(segments_safe(n.as_str()));
    }
    if let Ok(p) = FilePath::parse(s) {
        assert!(segments_safe(p.as_str()));
        assert!(
            p.as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        );
    }
    if let Ok(v) = Version::parse(s) {
        assert!(!v.as_str().contains('/'));
        assert!(v.as_str() != "." && v.as_str() != "..");
    }
    if let Ok(r) = RepoName::parse(s) {
        assert!(!r.as_str().contains('/'));
    }
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(Digest::parse(&d.to_hex()).ok(), Some(d));
    }
    if let Ok(id) = TxnId::parse(s) {
        assert_eq!(id.as_str(), s);
    }
    // Times arrive in manifests and transaction records: what parses prints and reads back.
    if let Some(t) = Timestamp::parse_rfc3339(s) {
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t), "{s:?}");
    }
});
