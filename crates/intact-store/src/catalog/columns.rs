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

/// A `hooks` row (the columns both backends select, under the same names), for either
/// backend: only the row type differs.
pub(crate) fn hook_from_row<R>(r: &R) -> Result<crate::hooks::HookRecord>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let events: String = r.try_get("events")?;
    Ok(crate::hooks::HookRecord {
        name: r.try_get("name")?,
        repo: r.try_get("repo")?,
        url: r.try_get("url")?,
        events: events.split(',').filter(|e| !e.is_empty()).map(str::to_owned).collect(),
        created_at: intact_core::Timestamp(r.try_get("created_at")?),
        cursor: r.try_get("cursor")?,
        delivered: u64_of(r.try_get("delivered")?),
        failures: u32::try_from(r.try_get::<i64, _>("failures")?).unwrap_or(u32::MAX),
        next_attempt_at: r
            .try_get::<Option<i64>, _>("next_attempt_at")?
            .map(intact_core::Timestamp),
        last_attempt_at: r
            .try_get::<Option<i64>, _>("last_attempt_at")?
            .map(intact_core::Timestamp),
        last_status: r
            .try_get::<Option<i64>, _>("last_status")?
            .and_then(|s| u16::try_from(s).ok()),
        last_error: r.try_get("last_error")?,
    })
}

pub(crate) fn version(s: &str) -> Result<Version> {
    Version::parse(s).map_err(|e| corrupt(e.to_string()))
}

/// A `tags` row (`tag, version, moved_at, moved_by`), for either backend.
pub(crate) fn tag_record_from_row<R>(r: &R) -> Result<super::TagRecord>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(super::TagRecord {
        tag: intact_core::Tag::parse(&r.try_get::<String, _>("tag")?).map_err(|e| corrupt(e.to_string()))?,
        version: version(&r.try_get::<String, _>("version")?)?,
        moved_at: intact_core::Timestamp(r.try_get("moved_at")?),
        moved_by: r.try_get("moved_by")?,
    })
}

/// A `tag_moves` row (`seq, version, previous, at, moved_by`), for either backend.
pub(crate) fn tag_move_from_row<R>(r: &R) -> Result<super::TagHistoryEntry>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let optional = |column: &str| -> Result<Option<Version>> {
        r.try_get::<Option<String>, _>(column)?
            .as_deref()
            .map(version)
            .transpose()
    };
    Ok(super::TagHistoryEntry {
        seq: r.try_get("seq")?,
        version: optional("version")?,
        previous: optional("previous")?,
        at: intact_core::Timestamp(r.try_get("at")?),
        by: r.try_get("moved_by")?,
    })
}

/// An open `txns` row (`id, repo, name, version, owner, created_at, expires_at,
/// staged_files`), for either backend.
pub(crate) fn open_txn_from_row<R>(r: &R) -> Result<super::OpenTxnSummary>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let (repo, name, version) = ids(
        &r.try_get::<String, _>("repo")?,
        &r.try_get::<String, _>("name")?,
        &r.try_get::<String, _>("version")?,
    )?;
    Ok(super::OpenTxnSummary {
        id: txn_id(&r.try_get::<String, _>("id")?)?,
        repo,
        name,
        version,
        owner: r.try_get("owner")?,
        created_at: intact_core::Timestamp(r.try_get("created_at")?),
        expires_at: intact_core::Timestamp(r.try_get("expires_at")?),
        staged_files: u64_of(r.try_get("staged_files")?),
    })
}
