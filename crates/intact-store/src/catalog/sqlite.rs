//! The embedded catalog: SQLite in WAL mode through sqlx.
//!
//! * One write connection, and every writing transaction starts with `BEGIN IMMEDIATE`, so a
//!   read-then-write (version allocation, lock takeover, commit) can never fail late with
//!   `SQLITE_BUSY`; other processes opening the same file wait on the busy timeout.
//! * `synchronous = FULL`: a commit is acknowledged only once it is durable in the WAL.
//! * Several read connections serve the hot read path concurrently with writes.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use intact_core::{
    ContentDiff, Digest, FileEntry, FilePath, Manifest, Name, RepoName, Timestamp, TxnId, TxnState, Version,
    content_fingerprint,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use tokio::sync::watch;

use super::{
    BlobUser, Catalog, CommitOutcome, Event, Finished, NewTxn, OpenOutcome, RepoUsage, SweepReport, TxnRecord,
    TxnStatus, VersionSpec, VersionSummary, VersionUse, VersionsPageJson,
};
use crate::{BlobStore, Clock, Error, Result};

/// Ordered schema migrations; each runs once, inside one transaction, recorded in
/// `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_lru.sql")),
];

const SWEEP_BATCH: i64 = 500;

#[derive(Clone)]
pub struct SqliteCatalog {
    write: SqlitePool,
    read: SqlitePool,
    /// The catalog's clock: leases are compared against a reading taken *inside* the write
    /// transaction, after the writer lock is held, never against one taken before waiting.
    clock: Arc<dyn Clock>,
    /// Bumped after every committed write transaction, whichever operation appended events
    /// (a commit, a rollback, an expiry noticed by a lock takeover...): wakes event followers.
    /// One process owns the database file, so its own writes are all there are.
    writes: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for SqliteCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteCatalog").finish_non_exhaustive()
    }
}

type Tx = Transaction<'static, Sqlite>;

impl SqliteCatalog {
    /// Opens (creating and migrating if needed) the catalog database at `path`. `clock` is
    /// the catalog's clock (this process's, for the embedded catalog).
    pub async fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            .pragma("temp_store", "memory");
        // A local file does not go stale: no liveness ping before each acquire, no idle or
        // lifetime reaping.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base.clone())
            .await?;
        let catalog = Self {
            read: SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(60))
                .test_before_acquire(false)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(base.pragma("query_only", "true"))
                .await?,
            write,
            clock,
            writes: Arc::new(watch::Sender::new(0)),
        };
        catalog.migrate().await?;
        Ok(catalog)
    }

    async fn migrate(&self) -> Result<()> {
        let (mut tx, _) = self.begin().await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await?;
        for (version, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%s','now') * 1000)")
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// Commits a write transaction and wakes event followers (a spurious wake-up only costs
    /// them one query).
    async fn commit(&self, tx: Tx) -> Result<()> {
        tx.commit().await?;
        self.writes.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Starts a write transaction and reads the clock once the writer lock is held: every
    /// lease decision of the transaction uses that reading.
    async fn begin(&self) -> Result<(Tx, Timestamp)> {
        let conn = self.write_connection().await?;
        let tx = sqlx::Transaction::begin(conn, Some("BEGIN IMMEDIATE".into())).await?;
        Ok((tx, self.clock.now()))
    }

    /// The write connection, in a known state. A COMMIT that failed (a full disk) can make
    /// SQLite roll the transaction back by itself, after which the driver's rollback fails
    /// and its transaction depth stays off by one for ever: every later write would be
    /// refused. Such a connection is closed and a fresh one opened instead.
    async fn write_connection(&self) -> Result<sqlx::pool::PoolConnection<Sqlite>> {
        use sqlx::Connection;
        for _ in 0..3 {
            let mut conn = self.write.acquire().await?;
            if !conn.is_in_transaction() {
                return Ok(conn);
            }
            tracing::warn!("catalog write connection left inside a failed transaction; reconnecting");
            conn.close_on_drop();
        }
        Err(Error::Catalog {
            context: "opening a write connection".into(),
            source: "every write connection was left inside a failed transaction".into(),
        })
    }
}

fn corrupt(what: impl Into<String>) -> Error {
    Error::Catalog {
        context: "reading catalog row".into(),
        source: what.into().into(),
    }
}

fn parse_json(s: &str) -> Result<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| corrupt(format!("bad JSON in catalog: {e}")))
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn what(repo: &RepoName, name: &Name, version: &Version) -> String {
    format!("version {repo}/{name}@{version}")
}

/// The identity of an open request, to detect an idempotency key reused for something else.
fn request_fingerprint(req: &NewTxn) -> String {
    let spec = match &req.version {
        VersionSpec::Exact(v) => v.as_str().to_owned(),
        VersionSpec::Auto => "\0auto".to_owned(),
    };
    let mut h = intact_core::DigestHasher::new();
    for part in [req.name.as_str(), "\0", spec.as_str(), "\0", &req.metadata.to_string()] {
        h.update(part.as_bytes());
    }
    h.finish().to_hex()
}

fn row_to_file(row: &SqliteRow) -> Result<FileEntry> {
    let path: String = row.try_get("path")?;
    let digest: String = row.try_get("digest")?;
    Ok(FileEntry {
        path: FilePath::parse(&path).map_err(|e| corrupt(e.to_string()))?,
        size: u64_of(row.try_get("size")?),
        sha256: Digest::parse(&digest).map_err(|e| corrupt(e.to_string()))?,
    })
}

fn parse_ids(row: &SqliteRow) -> Result<(RepoName, Name, Version)> {
    let repo: String = row.try_get("repo")?;
    let name: String = row.try_get("name")?;
    let version: String = row.try_get("version")?;
    Ok((
        RepoName::parse(&repo).map_err(|e| corrupt(e.to_string()))?,
        Name::parse_internal(&name).map_err(|e| corrupt(e.to_string()))?,
        Version::parse(&version).map_err(|e| corrupt(e.to_string()))?,
    ))
}

async fn load_txn(tx: &mut sqlx::SqliteConnection, id: &str) -> Result<Option<TxnRecord>> {
    let Some(row) = sqlx::query(
        "SELECT id, repo, name, version, state, metadata, idempotency_key, created_at, expires_at, finished_at, lease_ms
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
    let files = sqlx::query("SELECT path, size, digest FROM staged WHERE txn_id = ? ORDER BY path")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(row_to_file)
        .collect::<Result<Vec<_>>>()?;
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

async fn load_manifest_by_id(tx: &mut sqlx::SqliteConnection, version_id: i64) -> Result<Option<Manifest>> {
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
async fn version_row(
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

async fn manifest_from_row(tx: &mut sqlx::SqliteConnection, row: &SqliteRow) -> Result<Manifest> {
    let (repo, name, version) = parse_ids(row)?;
    let id: i64 = row.try_get("id")?;
    let files = sqlx::query("SELECT path, size, digest FROM files WHERE version_id = ? ORDER BY path")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(row_to_file)
        .collect::<Result<Vec<_>>>()?;
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

async fn append_event(
    tx: &mut sqlx::SqliteConnection,
    now: Timestamp,
    kind: &str,
    ids: (&str, &str, &str),
    txn_id: Option<&str>,
    data: serde_json::Value,
) -> Result<i64> {
    let res =
        sqlx::query("INSERT INTO events (at, kind, repo, name, version, txn_id, data) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(now.millis())
            .bind(kind)
            .bind(ids.0)
            .bind(ids.1)
            .bind(ids.2)
            .bind(txn_id)
            .bind(data.to_string())
            .execute(&mut *tx)
            .await?;
    Ok(res.last_insert_rowid())
}

/// Moves an open transaction to a final state, dropping its staged rows, appending an
/// `aborted` event. Returns the digests it had staged.
async fn finish_open_txn(
    tx: &mut sqlx::SqliteConnection,
    rec: &TxnRecord,
    state: TxnState,
    now: Timestamp,
) -> Result<Vec<Digest>> {
    sqlx::query("UPDATE txns SET state = ?, finished_at = ? WHERE id = ? AND state = 'open'")
        .bind(state.as_str())
        .bind(now.millis())
        .bind(rec.id.as_str())
        .execute(&mut *tx)
        .await?;
    // A rollback drops its staged rows here and hands the digests to the caller to reclaim.
    // An expiry may be noticed on any path (commit, upload, lock takeover); its rows stay
    // until `expire_txns` collects them, so every expired transaction's data is reclaimed by
    // the one sweep that runs every second.
    if state != TxnState::Expired {
        sqlx::query("DELETE FROM staged WHERE txn_id = ?")
            .bind(rec.id.as_str())
            .execute(&mut *tx)
            .await?;
    }
    let reason = if state == TxnState::Expired {
        "lease expired"
    } else {
        "rolled back"
    };
    append_event(
        tx,
        now,
        "aborted",
        (rec.repo.as_str(), rec.name.as_str(), rec.version.as_str()),
        Some(rec.id.as_str()),
        serde_json::json!({ "reason": reason, "state": state.as_str() }),
    )
    .await?;
    Ok(rec.files.iter().map(|f| f.sha256).collect())
}

/// Finishes `rec` as expired if it is open and its lease ran out by `now`.
async fn expire_if_due(tx: &mut sqlx::SqliteConnection, rec: &mut TxnRecord, now: Timestamp) -> Result<bool> {
    if rec.state == TxnState::Open && rec.expires_at <= now {
        finish_open_txn(tx, rec, TxnState::Expired, now).await?;
        rec.state = TxnState::Expired;
        rec.finished_at = Some(now);
        rec.files.clear();
        return Ok(true);
    }
    Ok(false)
}

async fn version_id_of(
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

/// The id after which a listing continues: the row of version `after` (a 400 naming the field
/// when it is not a committed version of the name).
async fn after_cursor(
    conn: &mut sqlx::SqliteConnection,
    repo: &RepoName,
    name: &Name,
    after: Option<&Version>,
) -> Result<i64> {
    let Some(v) = after else { return Ok(0) };
    match version_id_of(conn, repo.as_str(), name.as_str(), v.as_str()).await? {
        Some((id, _)) => Ok(id),
        None => Err(Error::BadRequest {
            field: "after",
            message: format!("{v:?} is not a committed version of {repo}/{name}"),
        }),
    }
}

impl SqliteCatalog {
    async fn next_auto_number(tx: &mut sqlx::SqliteConnection, repo: &str, name: &str) -> Result<i64> {
        let committed: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(auto_number) FROM versions WHERE repo = ? AND name = ? AND auto_number IS NOT NULL",
        )
        .bind(repo)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(auto_number) FROM txns WHERE repo = ? AND name = ? AND state = 'open' AND auto_number IS NOT NULL",
        )
        .bind(repo)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        Ok(committed.unwrap_or(0).max(open.unwrap_or(0)).saturating_add(1))
    }
}

#[async_trait]
impl Catalog for SqliteCatalog {
    async fn open_txn(&self, req: &NewTxn) -> Result<OpenOutcome> {
        let (mut tx, now) = self.begin().await?;
        let fingerprint = request_fingerprint(req);
        let repo = req.repo.as_str();
        let name = req.name.as_str();

        if let Some(key) = &req.idempotency_key {
            let existing: Option<String> =
                sqlx::query_scalar("SELECT txn_id FROM idempotency WHERE repo = ? AND key = ?")
                    .bind(repo)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(txn_id) = existing {
                let prior_fp: Option<String> = sqlx::query_scalar("SELECT request_fingerprint FROM txns WHERE id = ?")
                    .bind(&txn_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let (Some(prior_fp), Some(mut prior)) = (prior_fp, load_txn(&mut tx, &txn_id).await?) {
                    if prior_fp != fingerprint {
                        return Err(Error::IdempotencyMismatch {
                            key: key.clone(),
                            detail: format!(
                                "it opened {}/{}@{} with other name, version or metadata",
                                prior.repo, prior.name, prior.version
                            ),
                        });
                    }
                    let expired_now = expire_if_due(&mut tx, &mut prior, now).await?;
                    match prior.state {
                        TxnState::Open => {
                            self.commit(tx).await?;
                            return Ok(OpenOutcome::Resumed(prior));
                        }
                        TxnState::Committed => {
                            let vid: Option<i64> = sqlx::query_scalar("SELECT version_id FROM txns WHERE id = ?")
                                .bind(&txn_id)
                                .fetch_one(&mut *tx)
                                .await?;
                            if let Some(m) = match vid {
                                Some(v) => load_manifest_by_id(&mut tx, v).await?,
                                None => None,
                            } {
                                self.commit(tx).await?;
                                return Ok(OpenOutcome::Committed(prior, m));
                            }
                            // The version it committed has since been deleted: start afresh.
                        }
                        TxnState::Aborted | TxnState::Expired => {
                            // A retry after a rollback or an expired lease starts a new transaction.
                            let _ = expired_now;
                        }
                    }
                }
            }
        }

        let (version, auto_number) = match &req.version {
            VersionSpec::Exact(v) => (v.clone(), v.as_auto_number()),
            VersionSpec::Auto => {
                let n = Self::next_auto_number(&mut tx, repo, name).await?;
                (Version::from_number(n), Some(n))
            }
        };

        // A version that is already committed may be opened again: publishing the same
        // content again is an idempotent success and anything else a conflict, decided at
        // commit, once the content is known.

        let holder: Option<String> =
            sqlx::query_scalar("SELECT id FROM txns WHERE repo = ? AND name = ? AND version = ? AND state = 'open'")
                .bind(repo)
                .bind(name)
                .bind(version.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(holder_id) = holder
            && let Some(mut holder) = load_txn(&mut tx, &holder_id).await?
            && !expire_if_due(&mut tx, &mut holder, now).await?
        {
            return Err(Error::Locked {
                what: what(&req.repo, &req.name, &version),
                holder: holder.id,
                expires_at: holder.expires_at,
            });
        }

        let lease_ms = i64::try_from(req.lease.as_millis()).unwrap_or(i64::MAX);
        let expires_at = now.plus(req.lease);
        sqlx::query(
            "INSERT INTO txns (id, repo, name, version, auto_number, metadata, state, idempotency_key,
                               request_fingerprint, lease_ms, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?)",
        )
        .bind(req.id.as_str())
        .bind(repo)
        .bind(name)
        .bind(version.as_str())
        .bind(auto_number)
        .bind(req.metadata.to_string())
        .bind(req.idempotency_key.as_deref())
        .bind(&fingerprint)
        .bind(lease_ms)
        .bind(now.millis())
        .bind(expires_at.millis())
        .execute(&mut *tx)
        .await?;
        if let Some(key) = &req.idempotency_key {
            sqlx::query("INSERT OR REPLACE INTO idempotency (repo, key, txn_id) VALUES (?, ?, ?)")
                .bind(repo)
                .bind(key)
                .bind(req.id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        self.commit(tx).await?;
        Ok(OpenOutcome::Created(TxnRecord {
            id: req.id.clone(),
            repo: req.repo.clone(),
            name: req.name.clone(),
            version,
            state: TxnState::Open,
            metadata: req.metadata.clone(),
            idempotency_key: req.idempotency_key.clone(),
            created_at: now,
            expires_at,
            finished_at: None,
            lease_seconds: req.lease.as_secs(),
            files: Vec::new(),
        }))
    }

    async fn txn(&self, id: &TxnId) -> Result<TxnRecord> {
        // One snapshot for the row and its staged files (two statements).
        let mut tx = self.read.begin().await?;
        let rec = load_txn(&mut tx, id.as_str()).await?;
        tx.rollback().await?;
        rec.ok_or_else(|| Error::not_found(format!("transaction {id}")))
    }

    async fn txn_status(&self, id: &TxnId) -> Result<TxnStatus> {
        let row = sqlx::query("SELECT state, expires_at, lease_ms FROM txns WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| Error::not_found(format!("transaction {id}")))?;
        let state: String = row.try_get("state")?;
        Ok(TxnStatus {
            state: TxnState::parse(&state).ok_or_else(|| corrupt(format!("bad state {state}")))?,
            expires_at: Timestamp(row.try_get("expires_at")?),
            lease: Duration::from_millis(u64_of(row.try_get("lease_ms")?)),
        })
    }

    async fn renew_txn(&self, id: &TxnId) -> Result<TxnRecord> {
        let (mut tx, now) = self.begin().await?;
        let mut rec = load_txn(&mut tx, id.as_str())
            .await?
            .ok_or_else(|| Error::not_found(format!("transaction {id}")))?;
        if expire_if_due(&mut tx, &mut rec, now).await? {
            self.commit(tx).await?;
            return Err(Error::TxnNotOpen {
                id: id.clone(),
                state: TxnState::Expired,
            });
        }
        if rec.state != TxnState::Open {
            return Err(Error::TxnNotOpen {
                id: id.clone(),
                state: rec.state,
            });
        }
        let expires_at = now.plus(Duration::from_secs(rec.lease_seconds)).max(rec.expires_at);
        sqlx::query("UPDATE txns SET expires_at = ? WHERE id = ?")
            .bind(expires_at.millis())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        rec.expires_at = expires_at;
        Ok(rec)
    }

    async fn stage_file(&self, id: &TxnId, file: &FileEntry) -> Result<()> {
        let (mut tx, now) = self.begin().await?;
        let row = sqlx::query("SELECT state, expires_at, lease_ms FROM txns WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found(format!("transaction {id}")))?;
        let state: String = row.try_get("state")?;
        let state = TxnState::parse(&state).ok_or_else(|| corrupt(format!("bad state {state}")))?;
        let expires_at = Timestamp(row.try_get("expires_at")?);
        let lease_ms: i64 = row.try_get("lease_ms")?;
        if state != TxnState::Open {
            return Err(Error::TxnNotOpen { id: id.clone(), state });
        }
        if expires_at <= now {
            let mut rec = load_txn(&mut tx, id.as_str())
                .await?
                .ok_or_else(|| Error::not_found(format!("transaction {id}")))?;
            expire_if_due(&mut tx, &mut rec, now).await?;
            self.commit(tx).await?;
            return Err(Error::TxnNotOpen {
                id: id.clone(),
                state: TxnState::Expired,
            });
        }
        let digest = file.sha256.to_hex();
        sqlx::query(
            "INSERT INTO blobs (digest, size, registered) VALUES (?, ?, ?)
             ON CONFLICT (digest) DO UPDATE SET registered = excluded.registered",
        )
        .bind(&digest)
        .bind(i64_of(file.size))
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT OR REPLACE INTO staged (txn_id, path, size, digest) VALUES (?, ?, ?, ?)")
            .bind(id.as_str())
            .bind(file.path.as_str())
            .bind(i64_of(file.size))
            .bind(&digest)
            .execute(&mut *tx)
            .await?;
        // Activity renews the lease.
        sqlx::query("UPDATE txns SET expires_at = MAX(expires_at, ?) WHERE id = ?")
            .bind(now.millis().saturating_add(lease_ms))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn commit_txn(&self, id: &TxnId, verified: &[FileEntry]) -> Result<CommitOutcome> {
        let (mut tx, now) = self.begin().await?;
        let mut rec = load_txn(&mut tx, id.as_str())
            .await?
            .ok_or_else(|| Error::not_found(format!("transaction {id}")))?;
        match rec.state {
            TxnState::Committed => {
                let vid: Option<i64> = sqlx::query_scalar("SELECT version_id FROM txns WHERE id = ?")
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                let manifest = match vid {
                    Some(v) => load_manifest_by_id(&mut tx, v).await?,
                    None => None,
                };
                return manifest
                    .map(CommitOutcome::AlreadyCommitted)
                    .ok_or_else(|| Error::not_found(format!("the version committed by {id} (since deleted)")));
            }
            TxnState::Aborted | TxnState::Expired => {
                return Err(Error::TxnNotOpen {
                    id: id.clone(),
                    state: rec.state,
                });
            }
            TxnState::Open => {}
        }
        if expire_if_due(&mut tx, &mut rec, now).await? {
            self.commit(tx).await?;
            return Err(Error::TxnNotOpen {
                id: id.clone(),
                state: TxnState::Expired,
            });
        }
        if rec.files != verified {
            return Err(Error::UploadsInProgress {
                id: id.clone(),
                detail: "a file was staged while the commit was checking the others".into(),
            });
        }
        let (repo, name, version) = (rec.repo.as_str(), rec.name.as_str(), rec.version.as_str());
        let fingerprint = content_fingerprint(rec.files.iter().map(|f| (f.path.as_str(), &f.sha256)), &rec.metadata);

        if let Some((existing_id, existing_fp)) = version_id_of(&mut tx, repo, name, version).await? {
            if existing_fp != fingerprint.to_hex() {
                let existing = load_manifest_by_id(&mut tx, existing_id).await?;
                let diff = existing
                    .map(|m| ContentDiff::between(&m.files, &m.metadata, &rec.files, &rec.metadata))
                    .filter(|d| !d.is_empty());
                return Err(Error::Conflict {
                    what: what(&rec.repo, &rec.name, &rec.version),
                    diff: diff.map(Box::new),
                });
            }
            // Identical content: this commit is a retry of one that already landed.
            sqlx::query("UPDATE txns SET state = 'committed', finished_at = ?, version_id = ? WHERE id = ?")
                .bind(now.millis())
                .bind(existing_id)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM staged WHERE txn_id = ?")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            let manifest = load_manifest_by_id(&mut tx, existing_id)
                .await?
                .ok_or_else(|| corrupt("version vanished inside a transaction"))?;
            self.commit(tx).await?;
            return Ok(CommitOutcome::AlreadyCommitted(manifest));
        }

        let total: u64 = rec.files.iter().map(|f| f.size).sum();
        let seq = append_event(
            &mut tx,
            now,
            "committed",
            (repo, name, version),
            Some(id.as_str()),
            serde_json::json!({ "files": rec.files.len(), "size": total, "fingerprint": fingerprint.to_hex() }),
        )
        .await?;
        let version_id = sqlx::query(
            "INSERT INTO versions (repo, name, version, auto_number, metadata, fingerprint, txn_id, seq, created_at,
                                   last_access, total_size, file_count)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(repo)
        .bind(name)
        .bind(version)
        .bind(rec.version.as_auto_number())
        .bind(rec.metadata.to_string())
        .bind(fingerprint.to_hex())
        .bind(id.as_str())
        .bind(seq)
        .bind(now.millis())
        .bind(now.millis())
        .bind(i64_of(total))
        .bind(i64_of(rec.files.len() as u64))
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        sqlx::query("INSERT INTO files (version_id, path, size, digest) SELECT ?, path, size, digest FROM staged WHERE txn_id = ?")
            .bind(version_id)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM staged WHERE txn_id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE txns SET state = 'committed', finished_at = ?, version_id = ? WHERE id = ?")
            .bind(now.millis())
            .bind(version_id)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO names (repo, name, versions) VALUES (?, ?, 1)
             ON CONFLICT (repo, name) DO UPDATE SET versions = versions + 1",
        )
        .bind(repo)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        self.commit(tx).await?;
        Ok(CommitOutcome::Committed(Manifest {
            repo: rec.repo,
            name: rec.name,
            version: rec.version,
            files: rec.files,
            metadata: rec.metadata,
            created_at: now,
            transaction: Some(id.clone()),
            seq,
        }))
    }

    async fn abort_txn(&self, id: &TxnId) -> Result<Finished> {
        let (mut tx, now) = self.begin().await?;
        let rec = load_txn(&mut tx, id.as_str())
            .await?
            .ok_or_else(|| Error::not_found(format!("transaction {id}")))?;
        match rec.state {
            TxnState::Aborted | TxnState::Expired => Ok(Finished::default()),
            TxnState::Committed => Err(Error::TxnNotOpen {
                id: id.clone(),
                state: rec.state,
            }),
            TxnState::Open => {
                let digests = finish_open_txn(&mut tx, &rec, TxnState::Aborted, now).await?;
                self.commit(tx).await?;
                Ok(Finished {
                    txns: vec![rec.id],
                    staged_digests: digests,
                })
            }
        }
    }

    async fn expire_txns(&self) -> Result<Finished> {
        const LEFTOVERS: &str = "SELECT DISTINCT s.txn_id, s.digest FROM staged s JOIN txns t ON t.id = s.txn_id
                                 WHERE t.state <> 'open'";
        let mut finished = Finished::default();
        // A cheap look first, outside the writer lock; each candidate is checked again against
        // the clock read inside the write transaction.
        let due: Vec<String> =
            sqlx::query_scalar("SELECT id FROM txns WHERE state = 'open' AND expires_at <= ? LIMIT 1000")
                .bind(self.clock.now().millis())
                .fetch_all(&self.read)
                .await?;
        let leftovers: Option<i64> = sqlx::query_scalar(&format!("SELECT 1 FROM ({LEFTOVERS}) LIMIT 1"))
            .fetch_optional(&self.read)
            .await?;
        if due.is_empty() && leftovers.is_none() {
            return Ok(finished);
        }
        let (mut tx, now) = self.begin().await?;
        for id in due {
            if let Some(mut rec) = load_txn(&mut tx, &id).await?
                && expire_if_due(&mut tx, &mut rec, now).await?
            {
                finished.txns.push(rec.id);
            }
        }
        // Staged rows of every finished transaction: this sweep's expiries and those noticed
        // elsewhere since the last sweep.
        let rows = sqlx::query(LEFTOVERS).fetch_all(&mut *tx).await?;
        for r in &rows {
            let hex: String = r.try_get("digest")?;
            finished
                .staged_digests
                .push(Digest::parse(&hex).map_err(|e| corrupt(e.to_string()))?);
            let id: String = r.try_get("txn_id")?;
            if let Ok(id) = TxnId::parse(&id)
                && !finished.txns.contains(&id)
            {
                finished.txns.push(id);
            }
        }
        sqlx::query("DELETE FROM staged WHERE txn_id IN (SELECT id FROM txns WHERE state <> 'open')")
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(finished)
    }

    async fn manifest(&self, repo: &RepoName, name: &Name, version: &Version) -> Result<Option<Manifest>> {
        // One snapshot for the version row and its files (two statements): a version deleted
        // in between would otherwise be read as a version without files.
        let mut tx = self.read.begin().await?;
        let manifest = match version_row(&mut tx, repo, name, version).await? {
            Some(row) => Some(manifest_from_row(&mut tx, &row).await?),
            None => None,
        };
        tx.rollback().await?;
        Ok(manifest)
    }

    async fn list_versions(
        &self,
        repo: &RepoName,
        name: &Name,
        after: Option<&Version>,
        limit: u32,
    ) -> Result<Vec<VersionSummary>> {
        let mut conn = self.read.acquire().await?;
        let after_id = after_cursor(&mut conn, repo, name, after).await?;
        let rows = sqlx::query(
            "SELECT version, created_at, total_size, file_count FROM versions
             WHERE repo = ? AND name = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(repo.as_str())
        .bind(name.as_str())
        .bind(after_id)
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

    async fn list_versions_json(
        &self,
        repo: &RepoName,
        name: &Name,
        after: Option<&Version>,
        limit: u32,
    ) -> Result<VersionsPageJson> {
        let mut conn = self.read.acquire().await?;
        let after_id = after_cursor(&mut conn, repo, name, after).await?;
        // The page is rendered by SQLite in one row: the driver hands rows over one at a time
        // through a channel (~2.7 µs each), which dominated 10,000-row pages. The timestamp
        // format is `Timestamp::to_rfc3339` (UTC, milliseconds); a conformance test holds the
        // two renderings equal.
        let row = sqlx::query(
            "WITH page AS (
                 SELECT id, version, created_at, total_size, file_count FROM versions
                 WHERE repo = ? AND name = ? AND id > ? ORDER BY id LIMIT ?)
             SELECT COALESCE(json_group_array(json_object(
                        'version', version,
                        'created_at', strftime('%Y-%m-%dT%H:%M:%S', created_at / 1000, 'unixepoch')
                                      || printf('.%03dZ', created_at % 1000),
                        'size', total_size,
                        'files', file_count) ORDER BY id), '[]') AS json,
                    COUNT(*) AS n,
                    (SELECT version FROM page ORDER BY id DESC LIMIT 1) AS last
             FROM page",
        )
        .bind(repo.as_str())
        .bind(name.as_str())
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_one(&mut *conn)
        .await?;
        let last: Option<String> = row.try_get("last")?;
        Ok(VersionsPageJson {
            json: row.try_get("json")?,
            count: u64_of(row.try_get("n")?),
            last: last
                .map(|v| Version::parse(&v).map_err(|e| corrupt(e.to_string())))
                .transpose()?,
        })
    }

    async fn list_names(&self, repo: &RepoName, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<Name>> {
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
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|n| Name::parse_internal(n).map_err(|e| corrupt(e.to_string())))
            .collect()
    }

    async fn events(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, at, kind, repo, name, version, txn_id, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let (repo, name, version) = parse_ids(r)?;
                Ok(Event {
                    seq: r.try_get("seq")?,
                    at: Timestamp(r.try_get("at")?),
                    kind: r.try_get("kind")?,
                    repo,
                    name,
                    version,
                    transaction: r
                        .try_get::<Option<String>, _>("txn_id")?
                        .and_then(|s| TxnId::parse(&s).ok()),
                    data: parse_json(&r.try_get::<String, _>("data")?)?,
                })
            })
            .collect()
    }

    async fn check_writable(&self) -> Result<()> {
        // Rewrites one existing row: a real write through the WAL, but no change.
        let (mut tx, _) = self.begin().await?;
        sqlx::query("UPDATE schema_migrations SET applied_at = applied_at WHERE version = 1")
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await
    }

    fn event_wakeups(&self) -> watch::Receiver<u64> {
        self.writes.subscribe()
    }

    async fn last_event_seq(&self) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
            .fetch_one(&self.read)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    async fn sweep_blobs(
        &self,
        min_age: Duration,
        only: Option<&[Digest]>,
        blobs: &dyn BlobStore,
    ) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM files f WHERE f.digest = b.digest)
                                    AND NOT EXISTS (SELECT 1 FROM staged s WHERE s.digest = b.digest)";
        match only {
            Some(digests) => {
                for chunk in digests.chunks(SWEEP_BATCH as usize) {
                    let (mut tx, _) = self.begin().await?;
                    for d in chunk {
                        let size: Option<i64> = sqlx::query_scalar(&format!(
                            "SELECT size FROM blobs b WHERE digest = ? AND {UNREFERENCED}"
                        ))
                        .bind(d.to_hex())
                        .fetch_optional(&mut *tx)
                        .await?;
                        if let Some(size) = size {
                            blobs.delete(d).await?;
                            sqlx::query("DELETE FROM blobs WHERE digest = ?")
                                .bind(d.to_hex())
                                .execute(&mut *tx)
                                .await?;
                            report.blobs_deleted += 1;
                            report.bytes_deleted += u64_of(size);
                        }
                    }
                    self.commit(tx).await?;
                }
            }
            None => loop {
                let (mut tx, now) = self.begin().await?;
                let rows = sqlx::query(&format!(
                    "SELECT digest, size FROM blobs b WHERE registered <= ? AND {UNREFERENCED} LIMIT ?"
                ))
                .bind(now.minus(min_age).millis())
                .bind(SWEEP_BATCH)
                .fetch_all(&mut *tx)
                .await?;
                if rows.is_empty() {
                    break;
                }
                for r in &rows {
                    let hex: String = r.try_get("digest")?;
                    let d = Digest::parse(&hex).map_err(|e| corrupt(e.to_string()))?;
                    blobs.delete(&d).await?;
                    sqlx::query("DELETE FROM blobs WHERE digest = ?")
                        .bind(&hex)
                        .execute(&mut *tx)
                        .await?;
                    report.blobs_deleted += 1;
                    report.bytes_deleted += u64_of(r.try_get("size")?);
                }
                self.commit(tx).await?;
                if (rows.len() as i64) < SWEEP_BATCH {
                    break;
                }
            },
        }
        Ok(report)
    }

    async fn sweep_orphans(&self, candidates: &[Digest], blobs: &dyn BlobStore) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        for chunk in candidates.chunks(SWEEP_BATCH as usize) {
            let (mut tx, _) = self.begin().await?;
            for d in chunk {
                let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = ?")
                    .bind(d.to_hex())
                    .fetch_optional(&mut *tx)
                    .await?;
                if known.is_none() {
                    let size = blobs.size(d).await?.unwrap_or(0);
                    blobs.delete(d).await?;
                    report.blobs_deleted += 1;
                    report.bytes_deleted += size;
                }
            }
            self.commit(tx).await?;
        }
        Ok(report)
    }

    async fn committed_blobs(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>> {
        let rows = sqlx::query(
            "SELECT digest, MAX(size) AS size FROM files WHERE digest > ? GROUP BY digest ORDER BY digest LIMIT ?",
        )
        .bind(after.map(Digest::to_hex).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let hex: String = r.try_get("digest")?;
                Ok((
                    Digest::parse(&hex).map_err(|e| corrupt(e.to_string()))?,
                    u64_of(r.try_get("size")?),
                ))
            })
            .collect()
    }

    async fn blob_users(&self, digest: &Digest, limit: u32) -> Result<Vec<BlobUser>> {
        let rows = sqlx::query(
            "SELECT v.repo, v.name, v.version, f.path FROM files f JOIN versions v ON v.id = f.version_id
             WHERE f.digest = ? ORDER BY v.repo, v.name, v.id, f.path LIMIT ?",
        )
        .bind(digest.to_hex())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let (repo, name, version) = parse_ids(r)?;
                let path: String = r.try_get("path")?;
                Ok(BlobUser {
                    repo,
                    name,
                    version,
                    path: FilePath::parse(&path).map_err(|e| corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    async fn touch_versions(&self, accesses: &[(RepoName, Name, Version, Timestamp)]) -> Result<()> {
        if accesses.is_empty() {
            return Ok(());
        }
        let (mut tx, _) = self.begin().await?;
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
        self.commit(tx).await?;
        Ok(())
    }

    async fn repo_usage(&self, repo: &RepoName) -> Result<RepoUsage> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n, COALESCE(SUM(total_size), 0) AS bytes FROM versions WHERE repo = ?")
                .bind(repo.as_str())
                .fetch_one(&self.read)
                .await?;
        Ok(RepoUsage {
            versions: u64_of(row.try_get("n")?),
            bytes: u64_of(row.try_get("bytes")?),
        })
    }

    async fn least_recently_used(&self, repo: &RepoName, limit: u32) -> Result<Vec<VersionUse>> {
        let rows = sqlx::query(
            "SELECT repo, name, version, total_size, last_access FROM versions
             WHERE repo = ? ORDER BY last_access, id LIMIT ?",
        )
        .bind(repo.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
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

    async fn delete_version(
        &self,
        repo: &RepoName,
        name: &Name,
        version: &Version,
        reason: &str,
    ) -> Result<Option<Manifest>> {
        let (mut tx, now) = self.begin().await?;
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
        self.commit(tx).await?;
        Ok(Some(manifest))
    }

    async fn prune_txns(&self, older_than: Duration) -> Result<u64> {
        let (mut tx, now) = self.begin().await?;
        let res = sqlx::query("DELETE FROM txns WHERE state <> 'open' AND finished_at < ?")
            .bind(now.minus(older_than).millis())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM idempotency WHERE txn_id NOT IN (SELECT id FROM txns)")
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(res.rows_affected())
    }
}

impl FromStr for VersionSpec {
    type Err = intact_core::ValidationError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s == "auto" {
            Ok(Self::Auto)
        } else {
            Version::parse(s).map(Self::Exact)
        }
    }
}
