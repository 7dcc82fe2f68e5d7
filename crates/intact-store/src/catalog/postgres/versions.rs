//! Committed versions: manifests, listings, browsing, read times and eviction.

use super::rows::{manifest_from_row, manifest_of, parse_ids, version_row};
use super::*;

/// The commit position (event `seq`) of `cursor`, a version of the name that a listing
/// continues from (`field` names the query parameter in the 400 when it is not a committed
/// version of the name); `none` when there is no cursor.
pub(super) async fn cursor_seq(
    conn: &mut sqlx::PgConnection,
    repo: &RepoName,
    name: &Name,
    cursor: Option<&Version>,
    field: &'static str,
    none: i64,
) -> Result<i64> {
    let Some(v) = cursor else { return Ok(none) };
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM versions WHERE repo = $1 AND name = $2 AND version = $3")
            .bind(repo.as_str())
            .bind(name.as_str())
            .bind(v.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    seq.ok_or_else(|| Error::BadRequest {
        field,
        message: format!("{v:?} is not a committed version of {repo}/{name}"),
    })
}

pub(super) async fn manifest(
    cat: &PostgresCatalog,
    repo: &RepoName,
    name: &Name,
    version: &Version,
) -> Result<Option<Manifest>> {
    // One statement, so one snapshot for the version row and its files (a version deleted
    // meanwhile can never read as a version without files) and one round trip, where a
    // read-only transaction around two statements took five. The files come as three arrays
    // rather than a row each, so metadata is not repeated per file. The arrays are filled
    // from the primary key in path order: three `array_agg(... ORDER BY path)` would sort
    // three times (before PostgreSQL 16; 26 ms instead of 4 for 10,000 files). An aggregate's
    // input order is PostgreSQL's practice, not its promise, so it is checked below.
    let Some(row) = sqlx::query(
        "SELECT v.repo, v.name, v.version, v.metadata, v.created_at, v.txn_id, v.seq,
                f.paths, f.sizes, f.digests
         FROM versions v
         CROSS JOIN LATERAL (
             SELECT array_agg(path) AS paths, array_agg(size) AS sizes, array_agg(digest) AS digests
             FROM (SELECT path, size, digest FROM files WHERE version_id = v.id ORDER BY path) AS in_order
         ) f
         WHERE v.repo = $1 AND v.name = $2 AND v.version = $3",
    )
    .bind(repo.as_str())
    .bind(name.as_str())
    .bind(version.as_str())
    .fetch_optional(&cat.pool)
    .await?
    else {
        return Ok(None);
    };
    let paths: Vec<String> = row.try_get::<Option<Vec<String>>, _>("paths")?.unwrap_or_default();
    let sizes: Vec<i64> = row.try_get::<Option<Vec<i64>>, _>("sizes")?.unwrap_or_default();
    let digests: Vec<String> = row.try_get::<Option<Vec<String>>, _>("digests")?.unwrap_or_default();
    if sizes.len() != paths.len() || digests.len() != paths.len() {
        return Err(corrupt(format!(
            "files of {repo}/{name}@{version}: {} paths, {} sizes, {} digests",
            paths.len(),
            sizes.len(),
            digests.len()
        )));
    }
    let mut files = paths
        .iter()
        .zip(sizes)
        .zip(&digests)
        .map(|((path, size), digest)| columns::file(path, size, digest))
        .collect::<Result<Vec<_>>>()?;
    // Byte order, as `COLLATE "C"` sorts and as a manifest lists its files.
    if !files.is_sorted_by(|a, b| a.path.as_str() <= b.path.as_str()) {
        files.sort_unstable_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
    }
    manifest_of(&row, parse_ids(&row)?, files).map(Some)
}

pub(super) async fn list_versions(
    cat: &PostgresCatalog,
    repo: &RepoName,
    name: &Name,
    after: Option<&Version>,
    limit: u32,
) -> Result<Vec<VersionSummary>> {
    let mut conn = cat.pool.acquire().await?;
    let after_seq = cursor_seq(&mut conn, repo, name, after, "after", 0).await?;
    let rows = sqlx::query(
        "SELECT version, created_at, total_size, file_count FROM versions
         WHERE repo = $1 AND name = $2 AND seq > $3 ORDER BY seq LIMIT $4",
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

pub(super) async fn version_names(cat: &PostgresCatalog, repo: &RepoName, name: &Name) -> Result<Vec<Version>> {
    let all: Vec<String> = sqlx::query_scalar("SELECT version FROM versions WHERE repo = $1 AND name = $2")
        .bind(repo.as_str())
        .bind(name.as_str())
        .fetch_all(&cat.pool)
        .await?;
    all.iter()
        .map(|v| Version::parse(v).map_err(|e| corrupt(e.to_string())))
        .collect()
}

/// The last entry of the `(repo, name, seq)` index.
pub(super) async fn latest_version(cat: &PostgresCatalog, repo: &RepoName, name: &Name) -> Result<Option<Version>> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT version FROM versions WHERE repo = $1 AND name = $2 ORDER BY seq DESC LIMIT 1")
            .bind(repo.as_str())
            .bind(name.as_str())
            .fetch_optional(&cat.pool)
            .await?;
    found
        .map(|v| Version::parse(&v).map_err(|e| corrupt(e.to_string())))
        .transpose()
}

pub(super) async fn list_names(
    cat: &PostgresCatalog,
    repo: &RepoName,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Name>> {
    // Names are ASCII below 0x7f and compared bytewise (collation "C"), so
    // [prefix, prefix + 0x7f) is exactly "starts with prefix".
    let upper = format!("{prefix}\u{7f}");
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM names WHERE repo = $1 AND name >= $2 AND name < $3 AND name > $4
         ORDER BY name LIMIT $5",
    )
    .bind(repo.as_str())
    .bind(prefix)
    .bind(&upper)
    .bind(after.unwrap_or(""))
    .bind(i64::from(limit))
    .fetch_all(&cat.pool)
    .await?;
    rows.iter()
        .map(|n| Name::parse_internal(n).map_err(|e| corrupt(e.to_string())))
        .collect()
}

pub(super) async fn touch_versions(
    cat: &PostgresCatalog,
    accesses: &[(RepoName, Name, Version, Timestamp)],
) -> Result<()> {
    if accesses.is_empty() {
        return Ok(());
    }
    let mut w = cat.begin().await?;
    for (repo, name, version, at) in accesses {
        sqlx::query(
            "UPDATE versions SET last_access = GREATEST(last_access, $1)
             WHERE repo = $2 AND name = $3 AND version = $4",
        )
        .bind(at.millis())
        .bind(repo.as_str())
        .bind(name.as_str())
        .bind(version.as_str())
        .execute(w.conn())
        .await?;
    }
    cat.commit(w).await?;
    Ok(())
}

pub(super) async fn repo_usage(cat: &PostgresCatalog, repo: &RepoName) -> Result<RepoUsage> {
    let row = sqlx::query(
        "SELECT COUNT(*)::BIGINT AS n, COALESCE(SUM(total_size), 0)::BIGINT AS bytes FROM versions WHERE repo = $1",
    )
    .bind(repo.as_str())
    .fetch_one(&cat.pool)
    .await?;
    Ok(RepoUsage {
        versions: u64_of(row.try_get("n")?),
        bytes: u64_of(row.try_get("bytes")?),
    })
}

pub(super) async fn least_recently_used(cat: &PostgresCatalog, repo: &RepoName, limit: u32) -> Result<Vec<VersionUse>> {
    let rows = sqlx::query(
        "SELECT repo, name, version, total_size, last_access FROM versions
         WHERE repo = $1 ORDER BY last_access, id LIMIT $2",
    )
    .bind(repo.as_str())
    .bind(i64::from(limit))
    .fetch_all(&cat.pool)
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
    cat: &PostgresCatalog,
    repo: &RepoName,
    name: &Name,
    version: &Version,
    reason: &str,
) -> Result<Option<Manifest>> {
    let mut w = cat.begin().await?;
    lock_name(w.conn(), repo.as_str(), name.as_str()).await?;
    let now = cat.now(&mut w).await?;
    let Some(row) = version_row(w.conn(), repo, name, version).await? else {
        return Ok(None);
    };
    let manifest = manifest_from_row(w.conn(), &row).await?;
    let id: i64 = row.try_get("id")?;
    sqlx::query("DELETE FROM files WHERE version_id = $1")
        .bind(id)
        .execute(w.conn())
        .await?;
    sqlx::query("DELETE FROM versions WHERE id = $1")
        .bind(id)
        .execute(w.conn())
        .await?;
    sqlx::query("UPDATE names SET versions = versions - 1 WHERE repo = $1 AND name = $2")
        .bind(repo.as_str())
        .bind(name.as_str())
        .execute(w.conn())
        .await?;
    sqlx::query("DELETE FROM names WHERE repo = $1 AND name = $2 AND versions <= 0")
        .bind(repo.as_str())
        .bind(name.as_str())
        .execute(w.conn())
        .await?;
    w.event(events::NewEvent {
        at: now,
        kind: "deleted",
        repo: repo.as_str().to_owned(),
        name: name.as_str().to_owned(),
        version: version.as_str().to_owned(),
        txn_id: None,
        data: serde_json::json!({ "reason": reason, "size": manifest.total_size() }),
    });
    cat.commit(w).await?;
    Ok(Some(manifest))
}
