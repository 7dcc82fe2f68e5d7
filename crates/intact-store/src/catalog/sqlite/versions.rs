//! Committed versions: manifests, listings, browsing, read times and eviction.

use super::*;

/// Where a listing continues: the commit position (event `seq`) of version `after` (a 400
/// naming the field when it is not a committed version of the name). Listings page in commit
/// order, which every backend can keep (row ids are a SQLite detail).
pub(super) async fn after_cursor(
    conn: &mut sqlx::SqliteConnection,
    repo: &RepoName,
    name: &Name,
    after: Option<&Version>,
) -> Result<i64> {
    let Some(v) = after else { return Ok(0) };
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM versions WHERE repo = ? AND name = ? AND version = ?")
        .bind(repo.as_str())
        .bind(name.as_str())
        .bind(v.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    match seq {
        Some(seq) => Ok(seq),
        None => Err(Error::BadRequest {
            field: "after",
            message: format!("{v:?} is not a committed version of {repo}/{name}"),
        }),
    }
}

pub(super) async fn manifest(
    cat: &SqliteCatalog,
    repo: &RepoName,
    name: &Name,
    version: &Version,
) -> Result<Option<Manifest>> {
    // One snapshot for the version row and its files (two statements): a version deleted
    // in between would otherwise be read as a version without files.
    let mut tx = cat.read.begin().await?;
    let manifest = match version_row(&mut tx, repo, name, version).await? {
        Some(row) => Some(manifest_from_row(&mut tx, &row).await?),
        None => None,
    };
    tx.rollback().await?;
    Ok(manifest)
}

pub(super) async fn list_versions(
    cat: &SqliteCatalog,
    repo: &RepoName,
    name: &Name,
    after: Option<&Version>,
    limit: u32,
) -> Result<Vec<VersionSummary>> {
    let mut conn = cat.read.acquire().await?;
    let after_seq = after_cursor(&mut conn, repo, name, after).await?;
    let rows = sqlx::query(
        "SELECT version, created_at, total_size, file_count FROM versions
         WHERE repo = ? AND name = ? AND seq > ? ORDER BY seq LIMIT ?",
    )
    .bind(repo.as_str())
    .bind(name.as_str())
    .bind(after_seq)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let v: String = r.try_get("version")?;
            Ok(VersionSummary {
                version: Version::parse(&v).map_err(|e| corrupt(e.to_string()))?,
                created_at: Timestamp(r.try_get("created_at")?),
                size: u64_of(r.try_get("total_size")?),
                files: u64_of(r.try_get("file_count")?),
            })
        })
        .collect()
}

pub(super) async fn list_names(
    cat: &SqliteCatalog,
    repo: &RepoName,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Name>> {
    // Names are ASCII below 0x7f, so [prefix, prefix + 0x7f) is exactly "starts with prefix".
    let upper = format!("{prefix}\u{7f}");
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM names WHERE repo = ? AND name >= ? AND name < ? AND name > ? ORDER BY name LIMIT ?",
    )
    .bind(repo.as_str())
    .bind(prefix)
    .bind(&upper)
    .bind(after.unwrap_or(""))
    .bind(i64::from(limit))
    .fetch_all(&cat.read)
    .await?;
    rows.iter()
        .map(|n| Name::parse_internal(n).map_err(|e| corrupt(e.to_string())))
        .collect()
}

pub(super) async fn touch_versions(
    cat: &SqliteCatalog,
    accesses: &[(RepoName, Name, Version, Timestamp)],
) -> Result<()> {
    if accesses.is_empty() {
        return Ok(());
    }
    let (mut tx, _) = cat.begin().await?;
    for (repo, name, version, at) in accesses {
        sqlx::query(
            "UPDATE versions SET last_access = MAX(last_access, ?) WHERE repo = ? AND name = ? AND version = ?",
        )
        .bind(at.millis())
        .bind(repo.as_str())
        .bind(name.as_str())
        .bind(version.as_str())
        .execute(&mut *tx)
        .await?;
    }
    cat.commit(tx).await?;
    Ok(())
}

pub(super) async fn repo_usage(cat: &SqliteCatalog, repo: &RepoName) -> Result<RepoUsage> {
    let row = sqlx::query("SELECT COUNT(*) AS n, COALESCE(SUM(total_size), 0) AS bytes FROM versions WHERE repo = ?")
        .bind(repo.as_str())
        .fetch_one(&cat.read)
        .await?;
    Ok(RepoUsage {
        versions: u64_of(row.try_get("n")?),
        bytes: u64_of(row.try_get("bytes")?),
    })
}

pub(super) async fn least_recently_used(cat: &SqliteCatalog, repo: &RepoName, limit: u32) -> Result<Vec<VersionUse>> {
    let rows = sqlx::query(
        "SELECT repo, name, version, total_size, last_access FROM versions
         WHERE repo = ? ORDER BY last_access, id LIMIT ?",
    )
    .bind(repo.as_str())
    .bind(i64::from(limit))
    .fetch_all(&cat.read)
    .await?;
    rows.iter()
        .map(|r| {
            let (_, name, version) = parse_ids(r)?;
            Ok(VersionUse {
                name,
                version,
                size: u64_of(r.try_get("total_size")?),
                last_access: Timestamp(r.try_get("last_access")?),
            })
        })
        .collect()
}

pub(super) async fn delete_version(
    cat: &SqliteCatalog,
    repo: &RepoName,
    name: &Name,
    version: &Version,
    reason: &str,
) -> Result<Option<Manifest>> {
    let (mut tx, now) = cat.begin().await?;
    let Some(row) = version_row(&mut tx, repo, name, version).await? else {
        return Ok(None);
    };
    let manifest = manifest_from_row(&mut tx, &row).await?;
    let id: i64 = row.try_get("id")?;
    sqlx::query("DELETE FROM files WHERE version_id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM versions WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE names SET versions = versions - 1 WHERE repo = ? AND name = ?")
        .bind(repo.as_str())
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM names WHERE repo = ? AND name = ? AND versions <= 0")
        .bind(repo.as_str())
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
    append_event(
        &mut tx,
        now,
        "deleted",
        (repo.as_str(), name.as_str(), version.as_str()),
        None,
        serde_json::json!({ "reason": reason, "size": manifest.total_size() }),
    )
    .await?;
    cat.commit(tx).await?;
    Ok(Some(manifest))
}
