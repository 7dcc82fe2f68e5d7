//! The decisions every catalog backend makes the same way, kept out of any one backend's SQL:
//! what identifies a request (idempotency keys), when a lease has run out, whether an open
//! transaction may commit what it staged, whether a retry is the same content, and which
//! number `auto` gives next. A backend reads the rows, asks these, and writes the outcome in
//! the same transaction.

use intact_core::{ContentDiff, DigestHasher, FileEntry, Manifest, Timestamp, TxnState, Version, content_fingerprint};

use super::{NewTxn, TxnRecord, VersionSpec};
use crate::{Error, Result};

/// The identity of an open request (name, version spec, metadata), to detect an idempotency
/// key reused for something else.
pub fn request_fingerprint(req: &NewTxn) -> String {
    let spec = match &req.version {
        VersionSpec::Exact(v) => v.as_str().to_owned(),
        VersionSpec::Auto => "\0auto".to_owned(),
    };
    let mut h = DigestHasher::new();
    for part in [req.name.as_str(), "\0", spec.as_str(), "\0", &req.metadata.to_string()] {
        h.update(part.as_bytes());
    }
    // Only when set, so the keys of transactions opened before edits existed still match.
    if let Some(base) = &req.base {
        h.update(b"\0from\0");
        h.update(base.as_str().as_bytes());
    }
    h.finish().to_hex()
}

/// Whether `rec` is open with a lease that ran out by `now` (the catalog's clock, read inside
/// the transaction that acts on the answer).
pub fn lease_ran_out(rec: &TxnRecord, now: Timestamp) -> bool {
    rec.state == TxnState::Open && rec.expires_at <= now
}

/// What a commit may do with an open transaction whose lease is still running: `verified` is
/// the staged list whose blobs the caller found durable. A file staged since then (an upload
/// still landing) means the commit must wait.
pub fn check_staged(rec: &TxnRecord, verified: &[FileEntry]) -> Result<()> {
    if rec.files != verified {
        return Err(Error::UploadsInProgress {
            id: rec.id.clone(),
            detail: "a file was staged while the commit was checking the others".into(),
        });
    }
    Ok(())
}

/// The fingerprint a transaction's content commits under (hex), compared with an existing
/// version's to tell a retry from a conflict.
pub fn content_of(rec: &TxnRecord) -> String {
    content_fingerprint(rec.files.iter().map(|f| (f.path.as_str(), &f.sha256)), &rec.metadata).to_hex()
}

/// Whether committing `rec` over an existing version (fingerprint `existing_fp`, manifest
/// `existing` when the backend loaded it) is a retry of the same content (`Ok`) or a
/// conflict that says what differs.
pub fn same_content(rec: &TxnRecord, existing_fp: &str, existing: Option<&Manifest>) -> Result<()> {
    if existing_fp == content_of(rec) {
        return Ok(());
    }
    let diff = existing
        .map(|m| ContentDiff::between(&m.files, &m.metadata, &rec.files, &rec.metadata))
        .filter(|d| !d.is_empty());
    Err(Error::Conflict {
        what: format!("version {}/{}@{}", rec.repo, rec.name, rec.version),
        diff: diff.map(Box::new),
    })
}

/// The next `auto` number of a name: one past the highest committed or held by an open
/// transaction (a rolled-back highest number is handed out again; a lower one stays a gap).
pub fn next_auto_number(committed_max: Option<i64>, open_max: Option<i64>) -> i64 {
    committed_max.unwrap_or(0).max(open_max.unwrap_or(0)).saturating_add(1)
}

/// What a tag move may do, given where the tag points now (`current`): `Ok(false)` when it
/// already points where asked (a retry, whatever it expected: nothing to write), `Ok(true)`
/// when it moves, `TagMoved` when it points elsewhere than the move expected.
pub fn tag_move_allowed(current: Option<&Version>, mv: &super::TagMove) -> Result<bool> {
    use super::TagExpectation;
    if current == mv.version.as_ref() {
        return Ok(false);
    }
    let as_expected = match &mv.expect {
        TagExpectation::Any => true,
        TagExpectation::Absent => current.is_none(),
        TagExpectation::Version(v) => current == Some(v),
    };
    if !as_expected {
        return Err(Error::TagMoved {
            what: format!("tag {} of {}/{}", mv.tag, mv.repo, mv.name),
            current: current.cloned(),
        });
    }
    Ok(true)
}

/// The event a tag move appends: its kind, the version it names (the new one; the old one
/// when the tag is removed) and its data. `None` for a move that changes nothing.
pub fn tag_event(
    mv: &super::TagMove,
    previous: Option<&Version>,
) -> Option<(&'static str, Version, serde_json::Value)> {
    let kind = if mv.version.is_some() { "tagged" } else { "untagged" };
    let named = mv.version.as_ref().or(previous)?.clone();
    let data = serde_json::json!({ "tag": mv.tag, "previous": previous, "by": mv.by });
    Some((kind, named, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_numbers_follow_the_highest_known() {
        assert_eq!(next_auto_number(None, None), 1);
        assert_eq!(next_auto_number(Some(4), None), 5);
        assert_eq!(next_auto_number(Some(4), Some(7)), 8);
        assert_eq!(next_auto_number(None, Some(i64::MAX)), i64::MAX);
    }
}
