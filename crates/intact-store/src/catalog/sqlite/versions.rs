//! Committed versions: manifests, listings, browsing, read times and eviction.

use super::*;

/// The commit position (event `seq`) of `cursor`, a version of the name that a listing
/// continues from (`field` names the query parameter in the 400 when it is not a committed
/// version of the name); `none` when there is no cursor.
pub(super) async fn cursor_seq(
    conn: &mut sqlx::SqliteConnection,
    repo: &RepoName,
    name: &Name,
    cursor: Option<&Version>,
    field: &'static str,
    none: i64,
) -> Result<i64> {
    let Some(v) = cursor else { return Ok(none) };
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM versions WHERE repo = ? AND name = ? AND version = ?")
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
    cat: &SqliteCatalog,
    repo: &RepoName,
    name: &Name,
    version: &Version,
) -> Result<Option<Manifest>> {
    // One statement, so one snapshot of the version row and its files (a version deleted
    // between two statements would be read as a version without files) and one trip to
    // sqlx's SQLite thread: the files come as one value, a line per file. A version with more
    // files than one value holds is read again in a read transaction, a row per file.
    let mut conn = cat.read.acquire().await?;
    let Some(row) = sqlx::query(
        "SELECT id, repo, name, version, metadata, created_at, txn_id, seq,
                (SELECT group_concat(line, char(10))
                 FROM (SELECT path || char(9) || size || char(9) || digest AS line
                       FROM files WHERE version_id = versions.id LIMIT 10000)) AS file_lines
         FROM versions WHERE repo = ? AND name = ? AND version = ?",
    )
    .bind(repo.as_str())
    .bind(name.as_str())
    .bind(version.as_str())
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let files = file_lines(row.try_get::<Option<String>, _>("file_lines")?.as_deref())?;
    if files.len() < CONCATENATED_FILES {
        return manifest_of_row(&row, files).map(Some);
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let manifest = match version_row(&mut tx, repo, name, version).await? {
        Some(row) => Some(manifest_from_row(&mut tx, &row).await?),
        None => None,
    };
    tx.rollback().await?;
    Ok(manifest)
}

pub(super) async fn version_names(cat: &SqliteCatalog, repo: &RepoName, name: &Name) -> Result<Vec<Version>> {
    // One value, a version per line (a version holds no newline), for the reason
    // `list_versions` gives; the covering index answers it alone.
    let all: Option<String> =
        sqlx::query_scalar("SELECT group_concat(version, char(10)) FROM versions WHERE repo = ? AND name = ?")
            .bind(repo.as_str())
            .bind(name.as_str())
            .fetch_one(&cat.read)
            .await?;
    let Some(all) = all else { return Ok(Vec::new()) };
    all.split('\n')
        .map(|v| Version::parse(v).map_err(|e| corrupt(e.to_string())))
        .collect()
}

/// The last entry of the `(repo, name, seq)` index.
pub(super) async fn latest_version(cat: &SqliteCatalog, repo: &RepoName, name: &Name) -> Result<Option<Version>> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT version FROM versions WHERE repo = ? AND name = ? ORDER BY seq DESC LIMIT 1")
            .bind(repo.as_str())
            .bind(name.as_str())
            .fetch_optional(&cat.read)
            .await?;
    found
        .map(|v| Version::parse(&v).map_err(|e| corrupt(e.to_string())))
        .transpose()
}

pub(super) async fn list_versions(
    cat: &SqliteCatalog,
    repo: &RepoName,
    name: &Name,
    after: Option<&Version>,
    limit: u32,
) -> Result<Vec<VersionSummary>> {
    let mut conn = cat.read.acquire().await?;
    let after_seq = cursor_seq(&mut conn, repo, name, after, "after", 0).await?;
    // The whole page in one value, a line per version with its fields split by tabs (neither
    // can occur in a version): sqlx hands SQLite's rows over one at a time through a channel
    // between threads, which cost far more than the query itself for a 10,000-row page. The
    // lines carry their seq: the concatenation follows the subquery's order in practice, but
    // SQLite does not promise it without an ORDER BY of the aggregate's own (which sorts the
    // page again, a fifth of the time), so the order is checked here and restored if need be.
    let page: Option<String> = sqlx::query_scalar(
        // One `printf` per line, not a chain of `||`: each `||` made a string of its own
        // (a third of the query's time for a 10,000-row page).
        "SELECT group_concat(
                    printf('%d\t%s\t%d\t%d\t%d', seq, version, created_at, total_size, file_count),
                    char(10))
         FROM (SELECT version, created_at, total_size, file_count, seq FROM versions
               WHERE repo = ? AND name = ? AND seq > ? ORDER BY seq LIMIT ?)",
    )
    .bind(repo.as_str())
    .bind(name.as_str())
    .bind(after_seq)
    .bind(i64::from(limit))
    .fetch_one(&mut *conn)
    .await?;
    let Some(page) = page else { return Ok(Vec::new()) };
    let mut lines = page
        .split('\n')
        .map(version_summary_of_line)
        .collect::<Result<Vec<_>>>()?;
    if !lines.is_sorted_by_key(|(seq, _)| *seq) {
        lines.sort_unstable_by_key(|(seq, _)| *seq);
    }
    Ok(lines.into_iter().map(|(_, summary)| summary).collect())
}

/// One line of a page from [`list_versions`]:
/// `seq\tversion\tcreated_at\ttotal_size\tfile_count`.
fn version_summary_of_line(line: &str) -> Result<(i64, VersionSummary)> {
    let mut fields = line.split('\t');
    let mut next = |what: &str| {
        fields
            .next()
            .ok_or_else(|| corrupt(format!("listing line {line:?} lacks its {what}")))
    };
    let number = |text: &str, what: &str| {
        text.parse::<i64>()
            .map_err(|_| corrupt(format!("listing line {line:?}: {what} {text:?} is not a number")))
    };
    let seq = number(next("seq")?, "seq")?;
    let version = Version::parse(next("version")?).map_err(|e| corrupt(e.to_string()))?;
    let created_at = Timestamp(number(next("created_at")?, "created_at")?);
    let size = u64_of(number(next("total_size")?, "total_size")?);
    let files = u64_of(number(next("file_count")?, "file_count")?);
    Ok((
        seq,
        VersionSummary {
            version,
            created_at,
            size,
            files,
        },
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_lines_parse_and_refuse_damage() {
        let (seq, v) = version_summary_of_line("42\tv1.2.3\t1700000000000\t10\t2").expect("line");
        assert_eq!(seq, 42);
        assert_eq!(v.version.as_str(), "v1.2.3");
        assert_eq!((v.created_at, v.size, v.files), (Timestamp(1_700_000_000_000), 10, 2));
        for bad in ["", "42", "42\tv1\t1\t2", "x\tv1\t1\t2\t3", "1\tv 1\t1\t2\t3"] {
            assert!(version_summary_of_line(bad).is_err(), "{bad:?}");
        }
    }
}
