//! Reading catalog rows back into domain types.

use super::*;

pub(super) fn row_to_file(row: &PgRow) -> Result<FileEntry> {
    columns::file(
        &row.try_get::<String, _>("path")?,
        row.try_get("size")?,
        &row.try_get::<String, _>("digest")?,
    )
}

pub(super) fn parse_ids(row: &PgRow) -> Result<(RepoName, Name, Version)> {
    columns::ids(
        &row.try_get::<String, _>("repo")?,
        &row.try_get::<String, _>("name")?,
        &row.try_get::<String, _>("version")?,
    )
}

/// How `load_txn` reads the transaction's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowLock {
    /// A plain read (a snapshot, or a read whose answer only picks what to lock next).
    None,
    /// `FOR UPDATE`: held until the end of the write, so nobody else changes the transaction
    /// (or its staged files) meanwhile. A wait for it returns the row as the other writer
    /// left it.
    Update,
}

pub(super) async fn load_txn(conn: &mut sqlx::PgConnection, id: &str, lock: RowLock) -> Result<Option<TxnRecord>> {
    let for_update = if lock == RowLock::Update { " FOR UPDATE" } else { "" };
    let Some(row) = sqlx::query(&format!(
        "SELECT id, repo, name, version, state, metadata, idempotency_key, created_at, expires_at, finished_at, lease_ms
         FROM txns WHERE id = $1{for_update}"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let (repo, name, version) = parse_ids(&row)?;
    let files = sqlx::query("SELECT path, size, digest FROM staged WHERE txn_id = $1 ORDER BY path")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(row_to_file)
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(TxnRecord {
        id: columns::txn_id(&row.try_get::<String, _>("id")?)?,
        repo,
        name,
        version,
        state: columns::state(&row.try_get::<String, _>("state")?)?,
        metadata: columns::parse_json(&row.try_get::<String, _>("metadata")?)?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at: Timestamp(row.try_get("created_at")?),
        expires_at: Timestamp(row.try_get("expires_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
        lease_seconds: u64_of(row.try_get::<i64, _>("lease_ms")?) / 1000,
        files,
    }))
}

const VERSION_COLUMNS: &str = "id, repo, name, version, metadata, created_at, txn_id, seq";

pub(super) async fn load_manifest_by_id(conn: &mut sqlx::PgConnection, version_id: i64) -> Result<Option<Manifest>> {
    let Some(row) = sqlx::query(&format!("SELECT {VERSION_COLUMNS} FROM versions WHERE id = $1"))
        .bind(version_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    manifest_from_row(conn, &row).await.map(Some)
}

/// The `versions` row of a committed version (the columns `manifest_from_row` reads).
pub(super) async fn version_row(
    conn: &mut sqlx::PgConnection,
    repo: &RepoName,
    name: &Name,
    version: &Version,
) -> Result<Option<PgRow>> {
    Ok(sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM versions WHERE repo = $1 AND name = $2 AND version = $3"
    ))
    .bind(repo.as_str())
    .bind(name.as_str())
    .bind(version.as_str())
    .fetch_optional(&mut *conn)
    .await?)
}

pub(super) async fn manifest_from_row(conn: &mut sqlx::PgConnection, row: &PgRow) -> Result<Manifest> {
    let (repo, name, version) = parse_ids(row)?;
    let id: i64 = row.try_get("id")?;
    let files = sqlx::query("SELECT path, size, digest FROM files WHERE version_id = $1 ORDER BY path")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(row_to_file)
        .collect::<Result<Vec<_>>>()?;
    manifest_of(row, (repo, name, version), files)
}

/// A version's manifest from its `versions` row (the columns `manifest_from_row` reads, the
/// id aside), its parsed ids and its files.
pub(super) fn manifest_of(row: &PgRow, ids: (RepoName, Name, Version), files: Vec<FileEntry>) -> Result<Manifest> {
    let (repo, name, version) = ids;
    Ok(Manifest {
        repo,
        name,
        version,
        files,
        metadata: columns::parse_json(&row.try_get::<String, _>("metadata")?)?,
        created_at: Timestamp(row.try_get("created_at")?),
        transaction: row
            .try_get::<Option<String>, _>("txn_id")?
            .and_then(|s| TxnId::parse(&s).ok()),
        seq: row.try_get("seq")?,
    })
}

/// The id and content fingerprint of a committed version.
pub(super) async fn version_id_of(
    conn: &mut sqlx::PgConnection,
    repo: &str,
    name: &str,
    version: &str,
) -> Result<Option<(i64, String)>> {
    let row = sqlx::query("SELECT id, fingerprint FROM versions WHERE repo = $1 AND name = $2 AND version = $3")
        .bind(repo)
        .bind(name)
        .bind(version)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| Ok((r.try_get("id")?, r.try_get("fingerprint")?)))
        .transpose()
}

/// The version a committed transaction made (`None` once that version was deleted).
pub(super) async fn committed_manifest_of(conn: &mut sqlx::PgConnection, txn_id: &str) -> Result<Option<Manifest>> {
    let vid: Option<i64> = sqlx::query_scalar("SELECT version_id FROM txns WHERE id = $1")
        .bind(txn_id)
        .fetch_one(&mut *conn)
        .await?;
    match vid {
        Some(v) => load_manifest_by_id(conn, v).await,
        None => Ok(None),
    }
}
