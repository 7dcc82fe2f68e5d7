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
use intact_core::{Digest, FileEntry, FilePath, Manifest, Name, RepoName, Timestamp, TxnId, TxnState, Version};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use tokio::sync::watch;

use super::{
    BlobPage, BlobUser, Catalog, CommitOutcome, Event, Expiries, Finished, NewTxn, OpenOutcome, OpenTxnSummary,
    RepoUsage, SweepProgress, SweepReport, SweeperRecord, TxnRecord, TxnStatus, VersionSpec, VersionSummary,
    VersionUse, rules,
};
use crate::tokens::{NewToken, TokenRecord};
use crate::{BlobStore, Clock, Error, Result};

/// Ordered schema migrations; each runs once, inside one transaction, recorded in
/// `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../../migrations/sqlite/0002_lru.sql")),
    (3, include_str!("../../../migrations/sqlite/0003_list_by_seq.sql")),
    (4, include_str!("../../../migrations/sqlite/0004_flights.sql")),
    (5, include_str!("../../../migrations/sqlite/0005_uploads.sql")),
    (6, include_str!("../../../migrations/sqlite/0006_tokens.sql")),
    (7, include_str!("../../../migrations/sqlite/0007_sweeper.sql")),
    (8, include_str!("../../../migrations/sqlite/0008_listing_covering.sql")),
    (9, include_str!("../../../migrations/sqlite/0009_hooks.sql")),
    (10, include_str!("../../../migrations/sqlite/0010_tags.sql")),
    (11, include_str!("../../../migrations/sqlite/0011_upload_sessions.sql")),
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
    /// The queue of publishing writes waiting to share a commit (`group.rs`).
    group: Arc<group::GroupCommit>,
    /// The runtime the catalog was opened on (the process's own), where group commits run:
    /// not the runtime of whichever request queued first, which may be one serving thread's,
    /// busy with other work or ending at shutdown while other writers wait on the batch.
    runtime: tokio::runtime::Handle,
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
            group: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
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
        // A catalog a newer intact migrated: this binary would misread what it does not
        // know (a downgrade needs the backup taken before the upgrade).
        let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if let Some(newer) = applied.iter().copied().filter(|v| *v > known).max() {
            return Err(Error::Catalog {
                context: format!(
                    "the catalog's schema is version {newer}, newer than this intact knows ({known}): \
                     it was opened by a newer release; run that release, or restore the backup taken before the upgrade"
                ),
                source: "schema from a newer release".into(),
            });
        }
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

mod blobs;
mod browse;
mod events;
mod flights;
mod group;
mod hooks;
mod rows;
mod sessions;
mod sweeper;
mod tags;
mod tokens;
mod txns;
mod uploads;
mod versions;
use events::append_event;
use rows::*;

#[async_trait]
impl Catalog for SqliteCatalog {
    async fn open_txn(&self, req: &NewTxn) -> Result<OpenOutcome> {
        txns::open_txn(self, req).await
    }

    async fn txn(&self, id: &TxnId) -> Result<TxnRecord> {
        txns::txn(self, id).await
    }

    async fn open_txns(&self, repo: &RepoName, limit: u32) -> Result<Vec<TxnId>> {
        txns::open_txns(self, repo, limit).await
    }

    async fn txn_status(&self, id: &TxnId) -> Result<TxnStatus> {
        txns::txn_status(self, id).await
    }

    async fn renew_txn(&self, id: &TxnId) -> Result<TxnRecord> {
        txns::renew_txn(self, id).await
    }

    async fn stage_file(&self, id: &TxnId, file: &FileEntry, max_files: Option<u64>) -> Result<()> {
        txns::stage_file(self, id, file, max_files).await
    }

    async fn commit_txn(&self, id: &TxnId, verified: &[FileEntry]) -> Result<CommitOutcome> {
        txns::commit_txn(self, id, verified).await
    }

    async fn abort_txn(&self, id: &TxnId) -> Result<Finished> {
        txns::abort_txn(self, id).await
    }

    async fn expire_txns(&self) -> Result<Finished> {
        txns::expire_txns(self).await
    }

    async fn manifest(&self, repo: &RepoName, name: &Name, version: &Version) -> Result<Option<Manifest>> {
        versions::manifest(self, repo, name, version).await
    }

    async fn list_versions(
        &self,
        repo: &RepoName,
        name: &Name,
        after: Option<&Version>,
        limit: u32,
    ) -> Result<Vec<VersionSummary>> {
        versions::list_versions(self, repo, name, after, limit).await
    }

    async fn list_versions_newest_first(
        &self,
        repo: &RepoName,
        name: &Name,
        before: Option<&Version>,
        limit: u32,
    ) -> Result<Vec<VersionSummary>> {
        browse::list_versions_newest_first(self, repo, name, before, limit).await
    }

    async fn open_transactions(&self, repos: Option<&[String]>, limit: u32) -> Result<Vec<OpenTxnSummary>> {
        browse::open_transactions(self, repos, limit).await
    }

    async fn txn_owner(&self, id: &TxnId) -> Result<Option<String>> {
        browse::txn_owner(self, id).await
    }

    async fn version_names(&self, repo: &RepoName, name: &Name) -> Result<Vec<Version>> {
        versions::version_names(self, repo, name).await
    }

    async fn latest_version(&self, repo: &RepoName, name: &Name) -> Result<Option<Version>> {
        versions::latest_version(self, repo, name).await
    }

    async fn list_names(&self, repo: &RepoName, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<Name>> {
        versions::list_names(self, repo, prefix, after, limit).await
    }

    async fn events(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        events::events(self, after, limit).await
    }

    async fn check_writable(&self) -> Result<()> {
        blobs::check_writable(self).await
    }

    /// One process owns the data dir and its catalog.
    fn is_shared(&self) -> bool {
        false
    }

    fn event_wakeups(&self) -> watch::Receiver<u64> {
        events::event_wakeups(self)
    }

    async fn claim_flight(&self, key: &str, holder: &str, lease: Duration) -> Result<super::FlightClaim> {
        flights::claim(self, key, holder, lease).await
    }

    async fn renew_flight(&self, key: &str, holder: &str, lease: Duration) -> Result<bool> {
        flights::renew(self, key, holder, lease).await
    }

    async fn finish_flight(&self, key: &str, holder: &str, end: &super::FlightEnd) -> Result<()> {
        flights::finish(self, key, holder, end).await
    }

    async fn flight(&self, key: &str) -> Result<Option<super::FlightState>> {
        flights::flight(self, key).await
    }

    async fn start_upload(&self, txn: &TxnId, upload: &str, lease: Duration) -> Result<()> {
        uploads::start(self, txn, upload, lease).await
    }

    async fn renew_upload(&self, upload: &str, lease: Duration) -> Result<()> {
        uploads::renew(self, upload, lease).await
    }

    async fn end_upload(&self, upload: &str) -> Result<()> {
        uploads::end(self, upload).await
    }

    async fn uploads_in_flight(&self, txn: &TxnId) -> Result<u64> {
        uploads::in_flight(self, txn).await
    }

    async fn create_upload_session(&self, session: &crate::catalog::UploadSession) -> Result<()> {
        sessions::create(self, session).await
    }

    async fn upload_session(&self, upload: &str) -> Result<crate::catalog::UploadSession> {
        sessions::get(self, upload).await
    }

    async fn upload_pieces(&self, upload: &str) -> Result<Vec<crate::catalog::UploadPiece>> {
        sessions::pieces(self, upload).await
    }

    async fn add_upload_piece(&self, upload: &str, piece: &crate::catalog::UploadPiece) -> Result<u64> {
        sessions::add_piece(self, upload, piece).await
    }

    async fn discard_upload_session(&self, upload: &str) -> Result<bool> {
        sessions::discard(self, upload).await
    }

    async fn discard_finished_upload_sessions(&self) -> Result<u64> {
        sessions::discard_finished(self).await
    }

    async fn ended_upload_sessions(&self, limit: u32) -> Result<Vec<String>> {
        sessions::ended(self, limit).await
    }

    async fn forget_upload_sessions(&self, uploads: &[String]) -> Result<()> {
        sessions::forget(self, uploads).await
    }

    async fn last_event_seq(&self) -> Result<i64> {
        events::last_event_seq(self).await
    }

    async fn sweep_blobs(&self, min_age: Duration, digests: &[Digest], blobs: &dyn BlobStore) -> Result<SweepReport> {
        blobs::sweep_blobs(self, min_age, digests, blobs).await
    }

    async fn unreferenced_blobs(&self, after: Option<&Digest>, min_age: Duration, limit: u32) -> Result<BlobPage> {
        blobs::unreferenced_blobs(self, after, min_age, limit).await
    }

    async fn claim_sweeper(&self, holder: &str, lease: Duration) -> Result<Option<SweepProgress>> {
        sweeper::claim(self, holder, lease).await
    }

    async fn save_sweeper(&self, holder: &str, progress: &SweepProgress, lease: Duration) -> Result<bool> {
        sweeper::save(self, holder, progress, lease).await
    }

    async fn release_sweeper(&self, holder: &str) -> Result<()> {
        sweeper::release(self, holder).await
    }

    async fn sweeper(&self) -> Result<SweeperRecord> {
        sweeper::record(self).await
    }

    async fn sweep_orphans(&self, candidates: &[Digest], blobs: &dyn BlobStore) -> Result<SweepReport> {
        blobs::sweep_orphans(self, candidates, blobs).await
    }

    async fn committed_blobs(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>> {
        blobs::committed_blobs(self, after, limit).await
    }

    async fn blob_users(&self, digest: &Digest, limit: u32) -> Result<Vec<BlobUser>> {
        blobs::blob_users(self, digest, limit).await
    }

    async fn touch_versions(&self, accesses: &[(RepoName, Name, Version, Timestamp)]) -> Result<()> {
        versions::touch_versions(self, accesses).await
    }

    async fn repo_usage(&self, repo: &RepoName) -> Result<RepoUsage> {
        versions::repo_usage(self, repo).await
    }

    async fn least_recently_used(&self, repo: &RepoName, limit: u32) -> Result<Vec<VersionUse>> {
        versions::least_recently_used(self, repo, limit).await
    }

    async fn move_tag(&self, mv: &super::TagMove) -> Result<super::TagMoved> {
        tags::move_tag(self, mv).await
    }

    async fn tag(&self, repo: &RepoName, name: &Name, tag: &intact_core::Tag) -> Result<Option<super::TagRecord>> {
        tags::tag(self, repo, name, tag).await
    }

    async fn tags(&self, repo: &RepoName, name: &Name) -> Result<Vec<super::TagRecord>> {
        tags::tags(self, repo, name).await
    }

    async fn tag_history(
        &self,
        repo: &RepoName,
        name: &Name,
        tag: &intact_core::Tag,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<super::TagHistoryEntry>> {
        tags::tag_history(self, repo, name, tag, before, limit).await
    }

    async fn unstage_file(&self, id: &TxnId, path: &FilePath) -> Result<bool> {
        txns::unstage_file(self, id, path).await
    }

    async fn delete_version(
        &self,
        repo: &RepoName,
        name: &Name,
        version: &Version,
        reason: &str,
    ) -> Result<Option<Manifest>> {
        versions::delete_version(self, repo, name, version, reason).await
    }

    async fn prune_txns(&self, older_than: Duration) -> Result<u64> {
        txns::prune_txns(self, older_than).await
    }

    async fn prune_flights(&self, older_than: Duration) -> Result<u64> {
        flights::prune(self, older_than).await
    }

    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord> {
        tokens::create(self, token).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        tokens::list(self).await
    }

    async fn token_by_secret_hash(&self, secret_sha256: &str) -> Result<Option<TokenRecord>> {
        tokens::by_secret_hash(self, secret_sha256).await
    }

    async fn revoke_token(&self, name: &str) -> Result<Option<TokenRecord>> {
        tokens::revoke(self, name).await
    }

    async fn import_token(&self, token: &TokenRecord) -> Result<bool> {
        tokens::import(self, token).await
    }

    async fn has_tokens(&self) -> Result<bool> {
        tokens::any(self).await
    }

    async fn token_census(&self) -> Result<crate::tokens::TokenCensus> {
        tokens::census(self).await
    }

    async fn refresh_statistics(&self) -> Result<Vec<String>> {
        // Nothing to refresh: SQLite's planner takes a unique index whose every column is
        // compared for equality before any other, statistics or not, and the listing indexes
        // are the only ones that match a listing's conditions (`postgres/statistics.rs` says
        // why PostgreSQL is different).
        Ok(Vec::new())
    }

    async fn open_txns_owned_by(&self, owner: &str) -> Result<u64> {
        tokens::open_txns_owned_by(self, owner).await
    }

    async fn count_open_txns(&self) -> Result<u64> {
        tokens::count_open_txns(self).await
    }

    async fn create_hook(&self, hook: &crate::hooks::NewHook) -> Result<crate::hooks::HookRecord> {
        hooks::create(self, hook).await
    }

    async fn hooks(&self) -> Result<Vec<crate::hooks::HookRecord>> {
        hooks::list(self).await
    }

    async fn delete_hook(&self, name: &str) -> Result<bool> {
        hooks::delete(self, name).await
    }

    async fn claim_hook(
        &self,
        name: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<(crate::hooks::HookRecord, String)>> {
        hooks::claim(self, name, holder, lease).await
    }

    async fn record_hook(&self, name: &str, holder: &str, progress: &crate::hooks::HookProgress) -> Result<bool> {
        hooks::record(self, name, holder, progress).await
    }
}

/// The version a request to publish names: `auto`, or a version to create. `latest` (in any
/// case) is refused: reading `latest` (`@latest`, `intact get REPO NAME latest`) means the
/// newest version, so a version of that name could never be asked for by it. Only creating is
/// refused: a version so named stored before this rule (or copied from such a catalog, which
/// goes through `VersionSpec::Exact`) stays readable at `@v/latest`.
impl FromStr for VersionSpec {
    type Err = intact_core::ValidationError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s == "auto" {
            Ok(Self::Auto)
        } else if s.eq_ignore_ascii_case("latest") {
            Err(intact_core::ValidationError::new(
                "version",
                s,
                "reserved: reading `latest` (@latest, `intact get REPO NAME latest`) means the newest version; \
                 publish under another version",
            ))
        } else {
            Version::parse(s).map(Self::Exact)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::SqliteCatalog;
    use crate::VersionSpec;
    use crate::clock::SystemClock;

    /// `latest` is what readers ask for to get the newest version: never a version to create.
    #[test]
    fn a_version_to_publish_may_not_be_named_latest() {
        for reserved in ["latest", "Latest", "LATEST"] {
            let e = reserved.parse::<VersionSpec>().expect_err(reserved);
            assert_eq!((e.field, e.value.as_str()), ("version", reserved));
            assert!(e.rule.contains("newest version"), "{e}");
        }
        for fine in ["latest-1", "1.0-latest", "latest.2", "lates"] {
            let spec = fine.parse::<VersionSpec>().expect(fine);
            assert!(matches!(spec, VersionSpec::Exact(v) if v.as_str() == fine));
        }
        assert_eq!("auto".parse::<VersionSpec>(), Ok(VersionSpec::Auto));
    }

    /// A downgrade must not run on a schema it does not know: it could misread or damage it.
    #[tokio::test]
    async fn a_catalog_migrated_by_a_newer_release_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("catalog.db");
        let cat = SqliteCatalog::open(&path, Arc::new(SystemClock))
            .await
            .expect("catalog");
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)")
            .execute(&cat.write)
            .await
            .expect("insert");
        drop(cat);
        let err = match SqliteCatalog::open(&path, Arc::new(SystemClock)).await {
            Ok(_) => panic!("a newer schema was opened"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("9999") && err.contains("newer"), "{err}");
        // This release's own schema opens again and again.
        let fresh = dir.path().join("fresh.db");
        drop(SqliteCatalog::open(&fresh, Arc::new(SystemClock)).await.expect("first"));
        SqliteCatalog::open(&fresh, Arc::new(SystemClock))
            .await
            .expect("second");
    }
}
