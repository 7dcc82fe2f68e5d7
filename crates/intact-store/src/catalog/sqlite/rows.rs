//! Reading catalog rows back into domain types (and the conversions they need).

use super::*;
use crate::catalog::columns;

pub(super) use crate::catalog::columns::{corrupt, i64_of, parse_json, u64_of, what};

pub(super) fn row_to_file(row: &SqliteRow) -> Result<FileEntry> {
    columns::file(
        &row.try_get::<String, _>("path")?,
        row.try_get("size")?,
        &row.try_get::<String, _>("digest")?,
    )
}

pub(super) fn parse_ids(row: &SqliteRow) -> Result<(RepoName, Name, Version)> {
    columns::ids(
        &row.try_get::<String, _>("repo")?,
        &row.try_get::<String, _>("name")?,
        &row.try_get::<String, _>("version")?,
    )
}

/// Files read as one concatenated value at most; a transaction or version with more is read
/// again a row per file. SQLite refuses values over 1 GB ("string or blob too big"), which an
/// unlimited number of files would reach; 10,000 lines of at most ~1.1 KiB stay near 11 MB.
/// The SQL below spells the number out (`LIMIT 10000`).
pub(super) const CONCATENATED_FILES: usize = 10_000;

/// A transaction and its staged files, in one statement: one snapshot, and one trip to
/// sqlx's SQLite thread instead of two (publishing reads a transaction several times, and on
/// this path the trips between threads cost more than SQLite's own work). The files come as
/// one value, a line per file with tab-separated fields (a path holds neither), up to
/// [`CONCATENATED_FILES`]; past that they are read a row at a time by a second statement, so
/// a caller outside a transaction must look at `files.len()` and read again inside one if it
/// needs one snapshot ([`load_txn_consistent`]).
pub(super) async fn load_txn(tx: &mut sqlx::SqliteConnection, id: &str) -> Result<Option<TxnRecord>> {
    let Some(row) = sqlx::query(
        "SELECT id, repo, name, version, state, metadata, idempotency_key, created_at, expires_at, finished_at, lease_ms,
                (SELECT group_concat(line, char(10))
                 FROM (SELECT path || char(9) || size || char(9) || digest AS line
                       FROM staged WHERE txn_id = txns.id LIMIT 10000)) AS staged
         FROM txns WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let (repo, name, version) = parse_ids(&row)?;
    let state: String = row.try_get("state")?;
    let mut files = file_lines(row.try_get::<Option<String>, _>("staged")?.as_deref())?;
    if files.len() >= CONCATENATED_FILES {
        files = sqlx::query("SELECT path, size, digest FROM staged WHERE txn_id = ? ORDER BY path")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(row_to_file)
            .collect::<Result<Vec<_>>>()?;
    }
    Ok(Some(TxnRecord {
        id: TxnId::parse(&row.try_get::<String, _>("id")?).map_err(|e| corrupt(e.to_string()))?,
        repo,
        name,
        version,
        state: TxnState::parse(&state).ok_or_else(|| corrupt(format!("bad state {state}")))?,
        metadata: parse_json(&row.try_get::<String, _>("metadata")?)?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at: Timestamp(row.try_get("created_at")?),
        expires_at: Timestamp(row.try_get("expires_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
        lease_seconds: u64_of(row.try_get::<i64, _>("lease_ms")?) / 1000,
        files,
    }))
}

/// [`load_txn`] on a connection outside a transaction: one statement, and only for a
/// transaction with more than [`CONCATENATED_FILES`] files a read transaction, so the row
/// and its files are still one snapshot.
pub(super) async fn load_txn_consistent(conn: &mut sqlx::SqliteConnection, id: &str) -> Result<Option<TxnRecord>> {
    let rec = load_txn(&mut *conn, id).await?;
    if rec.as_ref().is_some_and(|r| r.files.len() >= CONCATENATED_FILES) {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let rec = load_txn(&mut tx, id).await?;
        tx.rollback().await?;
        return Ok(rec);
    }
    Ok(rec)
}

/// Files concatenated by SQL into `path\tsize\tdigest` lines (staged files, a version's
/// files), in path order.
pub(super) fn file_lines(lines: Option<&str>) -> Result<Vec<FileEntry>> {
    let Some(lines) = lines else { return Ok(Vec::new()) };
    let mut files = lines
        .split('\n')
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let (Some(path), Some(size), Some(digest)) = (fields.next(), fields.next(), fields.next()) else {
                return Err(corrupt(format!("file line {line:?} lacks a field")));
            };
            let size: i64 = size
                .parse()
                .map_err(|_| corrupt(format!("file {path} has size {size:?}")))?;
            columns::file(path, size, digest)
        })
        .collect::<Result<Vec<_>>>()?;
    // The concatenation's order is not promised; paths are unique within a transaction and
    // within a version.
    if !files.is_sorted_by(|a, b| a.path <= b.path) {
        files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(files)
}

pub(super) async fn load_manifest_by_id(tx: &mut sqlx::SqliteConnection, version_id: i64) -> Result<Option<Manifest>> {
    let Some(row) =
        sqlx::query("SELECT id, repo, name, version, metadata, created_at, txn_id, seq FROM versions WHERE id = ?")
            .bind(version_id)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(None);
    };
    manifest_from_row(tx, &row).await.map(Some)
}

/// The `versions` row of a committed version (the columns `manifest_from_row` reads).
pub(super) async fn version_row(
    conn: &mut sqlx::SqliteConnection,
    repo: &RepoName,
    name: &Name,
    version: &Version,
) -> Result<Option<SqliteRow>> {
    Ok(sqlx::query(
        "SELECT id, repo, name, version, metadata, created_at, txn_id, seq FROM versions
         WHERE repo = ? AND name = ? AND version = ?",
    )
    .bind(repo.as_str())
    .bind(name.as_str())
    .bind(version.as_str())
    .fetch_optional(&mut *conn)
    .await?)
}

pub(super) async fn manifest_from_row(tx: &mut sqlx::SqliteConnection, row: &SqliteRow) -> Result<Manifest> {
    let id: i64 = row.try_get("id")?;
    let files = sqlx::query("SELECT path, size, digest FROM files WHERE version_id = ? ORDER BY path")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(row_to_file)
        .collect::<Result<Vec<_>>>()?;
    manifest_of_row(row, files)
}

/// A manifest from a `versions` row (the columns [`version_row`] reads) and its files.
pub(super) fn manifest_of_row(row: &SqliteRow, files: Vec<FileEntry>) -> Result<Manifest> {
    let (repo, name, version) = parse_ids(row)?;
    Ok(Manifest {
        repo,
        name,
        version,
        files,
        metadata: parse_json(&row.try_get::<String, _>("metadata")?)?,
        created_at: Timestamp(row.try_get("created_at")?),
        transaction: row
            .try_get::<Option<String>, _>("txn_id")?
            .and_then(|s| TxnId::parse(&s).ok()),
        seq: row.try_get("seq")?,
    })
}

pub(super) async fn version_id_of(
    tx: &mut sqlx::SqliteConnection,
    repo: &str,
    name: &str,
    version: &str,
) -> Result<Option<(i64, String)>> {
    let row = sqlx::query("SELECT id, fingerprint FROM versions WHERE repo = ? AND name = ? AND version = ?")
        .bind(repo)
        .bind(name)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|r| Ok((r.try_get("id")?, r.try_get("fingerprint")?)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::SystemClock;
    use crate::catalog::{Catalog, NewTxn};

    /// More files than one concatenated value carries: the transaction, the commit and the
    /// manifest lookup still see every file, in path order.
    #[tokio::test]
    async fn a_transaction_and_a_version_with_more_files_than_one_value_holds_are_read_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cat = SqliteCatalog::open(&dir.path().join("catalog.db"), Arc::new(SystemClock))
            .await
            .expect("catalog");
        let req = NewTxn {
            id: TxnId::from_random([7; 17]),
            repo: RepoName::parse("generic").expect("repo"),
            name: Name::parse("many").expect("name"),
            version: VersionSpec::Exact(Version::parse("1").expect("version")),
            metadata: serde_json::json!({}),
            lease: Duration::from_secs(600),
            idempotency_key: None,
            owner: None,
            base: None,
        };
        let OpenOutcome::Created(txn) = cat.open_txn(&req).await.expect("open") else {
            panic!("not created");
        };
        let count = CONCATENATED_FILES + 2;
        // Staged in a scattered order, 64 at a time (group commit keeps this quick).
        let files: Vec<FileEntry> = (0..count)
            .map(|i| FileEntry {
                path: FilePath::parse(&format!("d/f{:05}", (i * 7919) % count)).expect("path"),
                size: i as u64,
                sha256: Digest::of(format!("{i}").as_bytes()),
            })
            .collect();
        for chunk in files.chunks(64) {
            let staging = chunk.iter().map(|f| cat.stage_file(&txn.id, f, None));
            for staged in futures::future::join_all(staging).await {
                staged.expect("stage");
            }
        }
        let mut expected = files.clone();
        expected.sort_by(|a, b| a.path.cmp(&b.path));

        let rec = cat.txn(&txn.id).await.expect("txn");
        assert_eq!(rec.files, expected, "the transaction's files");
        let CommitOutcome::Committed(m) = cat.commit_txn(&txn.id, &rec.files).await.expect("commit") else {
            panic!("not committed");
        };
        assert_eq!(m.files, expected, "the committed manifest");
        let looked_up = cat
            .manifest(&req.repo, &req.name, &m.version)
            .await
            .expect("lookup")
            .expect("found");
        assert_eq!(looked_up.files, expected, "the manifest looked up");
    }
}
