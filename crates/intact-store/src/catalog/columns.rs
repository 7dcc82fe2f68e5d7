//! Column values back into domain types, the same for every backend: a catalog row that does
//! not parse is reported as a damaged catalog, never trusted.

use intact_core::{Digest, FileEntry, FilePath, Name, RepoName, TxnId, TxnState, Version};

use crate::{Error, Result};

pub(crate) fn corrupt(what: impl Into<String>) -> Error {
    Error::Catalog {
        context: "reading catalog row".into(),
        source: what.into().into(),
    }
}

pub(crate) fn parse_json(s: &str) -> Result<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| corrupt(format!("bad JSON in catalog: {e}")))
}

pub(crate) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn what(repo: &RepoName, name: &Name, version: &Version) -> String {
    format!("version {repo}/{name}@{version}")
}

pub(crate) fn ids(repo: &str, name: &str, version: &str) -> Result<(RepoName, Name, Version)> {
    Ok((
        RepoName::parse(repo).map_err(|e| corrupt(e.to_string()))?,
        Name::parse_internal(name).map_err(|e| corrupt(e.to_string()))?,
        Version::parse(version).map_err(|e| corrupt(e.to_string()))?,
    ))
}

pub(crate) fn file(path: &str, size: i64, digest: &str) -> Result<FileEntry> {
    Ok(FileEntry {
        path: FilePath::parse(path).map_err(|e| corrupt(e.to_string()))?,
        size: u64_of(size),
        sha256: Digest::parse(digest).map_err(|e| corrupt(e.to_string()))?,
    })
}

pub(crate) fn digest(hex: &str) -> Result<Digest> {
    Digest::parse(hex).map_err(|e| corrupt(e.to_string()))
}

pub(crate) fn txn_id(s: &str) -> Result<TxnId> {
    TxnId::parse(s).map_err(|e| corrupt(e.to_string()))
}

pub(crate) fn state(s: &str) -> Result<TxnState> {
    TxnState::parse(s).ok_or_else(|| corrupt(format!("bad state {s}")))
}
