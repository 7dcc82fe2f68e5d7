//! What people browsing the store ask that publishing never does: versions newest first, and
//! every open transaction with its holder and lease.

use super::*;

pub(super) async fn list_versions_newest_first(
    cat: &SqliteCatalog,
    repo: &RepoName,
    name: &Name,
    before: Option<&Version>,
    limit: u32,
) -> Result<Vec<VersionSummary>> {
    let mut conn = cat.read.acquire().await?;
    let before_seq = super::versions::cursor_seq(&mut conn, repo, name, before, "before", i64::MAX).await?;
    // The covering index `versions_listing (repo, name, seq, ...)`, walked backwards from the
    // cursor: no sort, no OFFSET.
    let rows = sqlx::query(
        "SELECT version, created_at, total_size, file_count FROM versions
         WHERE repo = ? AND name = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
    )
    .bind(repo.as_str())
    .bind(name.as_str())
    .bind(before_seq)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(VersionSummary {
                version: super::super::columns::version(&r.try_get::<String, _>("version")?)?,
                created_at: Timestamp(r.try_get("created_at")?),
                size: u64_of(r.try_get("total_size")?),
                files: u64_of(r.try_get("file_count")?),
            })
        })
        .collect()
}

pub(super) async fn open_transactions(
    cat: &SqliteCatalog,
    repos: Option<&[String]>,
    limit: u32,
) -> Result<Vec<OpenTxnSummary>> {
    // `txns_open_expiry`, a partial index of the open ones only: cheap however many
    // transactions ever ended. The repos come as one JSON array (`NULL`: every repo).
    let repos = repos.map(|r| serde_json::Value::from(r.to_vec()).to_string());
    let rows = sqlx::query(
        "SELECT id, repo, name, version, owner, created_at, expires_at,
                (SELECT count(*) FROM staged WHERE txn_id = txns.id) AS staged_files
         FROM txns WHERE state = 'open'
           AND (?1 IS NULL OR repo IN (SELECT value FROM json_each(?1)))
         ORDER BY expires_at LIMIT ?2",
    )
    .bind(repos)
    .bind(i64::from(limit))
    .fetch_all(&cat.read)
    .await?;
    rows.iter().map(super::super::columns::open_txn_from_row).collect()
}

pub(super) async fn txn_owner(cat: &SqliteCatalog, id: &TxnId) -> Result<Option<String>> {
    let owner: Option<Option<String>> = sqlx::query_scalar("SELECT owner FROM txns WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(&cat.read)
        .await?;
    Ok(owner.flatten())
}
