//! What people browsing the store ask that publishing never does: versions newest first, and
//! every open transaction with its holder and lease.

use super::*;

pub(super) async fn list_versions_newest_first(
    cat: &PostgresCatalog,
    repo: &RepoName,
    name: &Name,
    before: Option<&Version>,
    limit: u32,
) -> Result<Vec<VersionSummary>> {
    let mut conn = cat.pool.acquire().await?;
    let before_seq = super::versions::cursor_seq(&mut conn, repo, name, before, "before", i64::MAX).await?;
    // The listing index `(repo, name, seq, ...)`, scanned backwards from the cursor.
    let rows = sqlx::query(
        "SELECT version, created_at, total_size, file_count FROM versions
         WHERE repo = $1 AND name = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4",
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
                version: columns::version(&r.try_get::<String, _>("version")?)?,
                created_at: Timestamp(r.try_get("created_at")?),
                size: u64_of(r.try_get("total_size")?),
                files: u64_of(r.try_get("file_count")?),
            })
        })
        .collect()
}

pub(super) async fn open_transactions(
    cat: &PostgresCatalog,
    repos: Option<&[String]>,
    limit: u32,
) -> Result<Vec<OpenTxnSummary>> {
    let rows = sqlx::query(
        "SELECT id, repo, name, version, owner, created_at, expires_at,
                (SELECT count(*) FROM staged WHERE txn_id = txns.id) AS staged_files
         FROM txns WHERE state = 'open' AND ($2::TEXT[] IS NULL OR repo = ANY($2))
         ORDER BY expires_at, id LIMIT $1",
    )
    .bind(i64::from(limit))
    .bind(repos.map(<[String]>::to_vec))
    .fetch_all(&cat.pool)
    .await?;
    rows.iter().map(columns::open_txn_from_row).collect()
}

pub(super) async fn txn_owner(cat: &PostgresCatalog, id: &TxnId) -> Result<Option<String>> {
    let owner: Option<Option<String>> = sqlx::query_scalar("SELECT owner FROM txns WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&cat.pool)
        .await?;
    Ok(owner.flatten())
}
