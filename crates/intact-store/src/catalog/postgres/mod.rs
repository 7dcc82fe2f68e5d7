//! The shared catalog: PostgreSQL through sqlx, for any number of intact replicas on one
//! database.
//!
//! Nothing here assumes it is the only writer:
//! * Writers are serialized where they meet and nowhere else: a transaction-scoped advisory
//!   lock per idempotency key and per (repo, name) for opening, committing and deleting
//!   versions of a name (version allocation, soft locks); a row lock (`FOR UPDATE`) on a
//!   transaction's row for anything that changes it; a per-digest advisory lock shared by
//!   `stage_file` and the blob sweeps; and one global advisory lock held from the moment a
//!   transaction inserts its events until it commits, so event numbers follow commit order.
//!   Locks are always taken in that order (key, name, transaction rows, digest, events) and
//!   nothing is locked after the event lock, so writers never deadlock on each other.
//! * The clock is the database's (`clock_timestamp()`), read once a write holds its locks:
//!   replicas never judge a lease by their own clocks, and never by a reading taken before a
//!   wait.
//! * Event followers are woken by `NOTIFY`, sent inside the transaction that appends events
//!   (so it is delivered at commit, to every replica), and heard by a background `LISTEN`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use intact_core::{Digest, FileEntry, FilePath, Manifest, Name, RepoName, Timestamp, TxnId, Version};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};
use tokio::sync::watch;

use super::columns::{self, corrupt, i64_of, u64_of};
use super::{
    BlobPage, BlobUser, Catalog, CommitOutcome, Event, Expiries, Finished, NewTxn, OpenOutcome, OpenTxnSummary,
    RepoUsage, SweepProgress, SweepReport, SweeperRecord, TxnRecord, TxnStatus, VersionSpec, VersionSummary,
    VersionUse, rules,
};
use crate::clock::OffsetClock;
use crate::tokens::{NewToken, TokenRecord};
use crate::{BlobStore, Error, Result};

mod blobs;
mod browse;
mod events;
mod flights;
mod hooks;
mod migrate;
mod rows;
mod sessions;
mod statistics;
mod sweeper;
mod tags;
mod tokens;
mod txns;
mod uploads;
mod versions;

/// The channel on which committed event appends are announced.
const EVENTS_CHANNEL: &str = "intact_events";

/// The longest one catalog call may take before it is answered `CatalogUnavailable`.
/// Every call is a few short statements (lock waits included: locks are held for one short
/// SQL transaction), so this is far above any healthy call and far below the many minutes
/// the kernel takes to give up on a connection whose peer went silent.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct PostgresCatalog {
    pool: PgPool,
    /// Added to the database's clock. Always zero in service; tests move it forward to
    /// expire leases without waiting (the database's clock cannot be stopped or set, so a
    /// test clock can only add to it: see `OffsetClock`).
    time_offset: Option<OffsetClock>,
    /// Bumped by the `LISTEN` task on every notification and every reconnection.
    wakeups: Arc<watch::Sender<u64>>,
    /// Stops the `LISTEN` task when the last clone of this catalog is dropped.
    _listener: Arc<tokio_util::sync::DropGuard>,
    /// The longest one catalog call may take (see [`PostgresCatalog::bounded`]).
    op_timeout: Duration,
}

impl std::fmt::Debug for PostgresCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCatalog").finish_non_exhaustive()
    }
}

type Tx = Transaction<'static, Postgres>;

/// A write in progress: its SQL transaction, the events it appends when it commits, and the
/// transactions it expired, told once it committed. Events wait here until every other lock
/// is held (see the module comment).
pub(super) struct Write {
    tx: Tx,
    events: Vec<events::NewEvent>,
    expired: Expiries,
}

impl Write {
    fn conn(&mut self) -> &mut sqlx::PgConnection {
        &mut self.tx
    }
}

/// Ends a session idle in a transaction for longer than any call may last ([`OP_TIMEOUT`], in
/// milliseconds).
const IDLE_IN_TXN_LIMIT: &str = "SET idle_in_transaction_session_timeout = 30000";
const _: () = assert!(OP_TIMEOUT.as_millis() == 30_000, "IDLE_IN_TXN_LIMIT follows OP_TIMEOUT");

impl PostgresCatalog {
    /// Connects to the database at `url`, applying any pending migrations (several replicas
    /// may do this at once: the migrator holds an advisory lock meanwhile).
    pub async fn open(url: &str) -> Result<Self> {
        let options: PgConnectOptions = url.parse().map_err(|e| Error::Catalog {
            context: "parsing the catalog URL".into(),
            source: Box::new(e),
        })?;
        // A call abandoned at its limit on a silent network never gets its rollback to the
        // database: the session would stay idle in transaction, holding its locks (a name's,
        // a digest's, the global event lock) until the server's TCP gave up on it, hours on
        // a black-holed network, and every replica's writes would wait on it. No call lasts
        // longer than OP_TIMEOUT, so a transaction idle that long belongs to no one. (Set
        // once connected rather than as a startup parameter, which poolers such as PgBouncer
        // refuse.)
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(OP_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(conn, IDLE_IN_TXN_LIMIT).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        migrate::run(&pool).await?;
        statistics::warn_if_never_vacuumed(&pool).await?;
        let (wakeups, listener) = events::listen(&pool).await?;
        Ok(Self {
            pool,
            time_offset: None,
            wakeups,
            _listener: Arc::new(listener.drop_guard()),
            op_timeout: OP_TIMEOUT,
        })
    }

    /// Every call ends within `limit` instead of [`OP_TIMEOUT`] (tests of a silent network).
    pub fn with_op_timeout(mut self, limit: Duration) -> Self {
        self.op_timeout = limit;
        self
    }

    /// Runs one catalog call within `op_timeout`. A database that stops answering without
    /// closing the connection (a silent network partition, a failover that leaves the old
    /// address black-holed) would otherwise hold the request, and the connection, until the
    /// kernel gives up on TCP, many minutes later. Past the limit the call is abandoned (sqlx
    /// rolls back an abandoned SQL transaction; a commit abandoned after it was sent may
    /// still land, which a retry then finds, as after any lost answer) and answered
    /// `CatalogUnavailable`, retryable.
    async fn bounded<T>(&self, what: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.op_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::CatalogUnavailable {
                source: format!(
                    "PostgreSQL did not answer {what} within {} s",
                    self.op_timeout.as_secs_f64()
                )
                .into(),
            }),
        }
    }

    /// The catalog's time runs `clock`'s offset ahead of the database's (tests only; see
    /// `OffsetClock`).
    pub fn with_time_offset(mut self, clock: OffsetClock) -> Self {
        self.time_offset = Some(clock);
        self
    }

    async fn begin(&self) -> Result<Write> {
        Ok(Write {
            tx: self.pool.begin().await?,
            events: Vec::new(),
            expired: Expiries::default(),
        })
    }

    /// The catalog's clock, read inside `w` once it holds its locks. `clock_timestamp()`,
    /// not `now()`: PostgreSQL's `now()` is the time the transaction *began*, before any
    /// wait for a lock, and a lease must be judged by a reading taken after it.
    async fn now(&self, w: &mut Write) -> Result<Timestamp> {
        let db: i64 = sqlx::query_scalar("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT")
            .fetch_one(w.conn())
            .await?;
        let offset = self.time_offset.as_ref().map_or(0, OffsetClock::offset_millis);
        Ok(Timestamp(db.saturating_add(offset)))
    }

    /// Appends the write's events (under the event lock, with a `NOTIFY`) and commits.
    async fn commit(&self, mut w: Write) -> Result<()> {
        let pending = std::mem::take(&mut w.events);
        for ev in &pending {
            events::insert(&mut w, ev).await?;
        }
        let expired = std::mem::take(&mut w.expired);
        w.tx.commit().await?;
        // Only now: a write dropped uncommitted (an error, a lock lost) rolled its expiries back.
        expired.durable();
        Ok(())
    }
}

/// The transaction-scoped advisory lock on `key` (a 64-bit hash of it: a collision only makes
/// two unrelated writers wait for each other). Parts are joined with U+001F, which no name
/// holds (and PostgreSQL text cannot hold the NUL a hash input would otherwise use).
async fn lock(conn: &mut sqlx::PgConnection, space: &str, key: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("{space}\u{1f}{key}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Serializes every change to the versions and open transactions of one name across replicas:
/// `auto` numbers, the soft lock, commits and deletes.
async fn lock_name(conn: &mut sqlx::PgConnection, repo: &str, name: &str) -> Result<()> {
    lock(conn, "name", &format!("{repo}\u{1f}{name}")).await
}

#[async_trait]
impl Catalog for PostgresCatalog {
    async fn open_txn(&self, req: &NewTxn) -> Result<OpenOutcome> {
        self.bounded("open txn", txns::open_txn(self, req)).await
    }

    async fn txn(&self, id: &TxnId) -> Result<TxnRecord> {
        self.bounded("txn", txns::txn(self, id)).await
    }

    async fn open_txns(&self, repo: &RepoName, limit: u32) -> Result<Vec<TxnId>> {
        self.bounded("open txns", txns::open_txns(self, repo, limit)).await
    }

    async fn txn_status(&self, id: &TxnId) -> Result<TxnStatus> {
        self.bounded("txn status", txns::txn_status(self, id)).await
    }

    async fn renew_txn(&self, id: &TxnId) -> Result<TxnRecord> {
        self.bounded("renew txn", txns::renew_txn(self, id)).await
    }

    async fn stage_file(&self, id: &TxnId, file: &FileEntry, max_files: Option<u64>) -> Result<()> {
        self.bounded("stage file", txns::stage_file(self, id, file, max_files))
            .await
    }

    async fn commit_txn(&self, id: &TxnId, verified: &[FileEntry]) -> Result<CommitOutcome> {
        self.bounded("commit txn", txns::commit_txn(self, id, verified)).await
    }

    async fn abort_txn(&self, id: &TxnId) -> Result<Finished> {
        self.bounded("abort txn", txns::abort_txn(self, id)).await
    }

    async fn expire_txns(&self) -> Result<Finished> {
        self.bounded("expire txns", txns::expire_txns(self)).await
    }

    async fn manifest(&self, repo: &RepoName, name: &Name, version: &Version) -> Result<Option<Manifest>> {
        self.bounded("manifest", versions::manifest(self, repo, name, version))
            .await
    }

    async fn list_versions(
        &self,
        repo: &RepoName,
        name: &Name,
        after: Option<&Version>,
        limit: u32,
    ) -> Result<Vec<VersionSummary>> {
        self.bounded("list versions", versions::list_versions(self, repo, name, after, limit))
            .await
    }

    async fn list_versions_newest_first(
        &self,
        repo: &RepoName,
        name: &Name,
        before: Option<&Version>,
        limit: u32,
    ) -> Result<Vec<VersionSummary>> {
        self.bounded(
            "list versions newest first",
            browse::list_versions_newest_first(self, repo, name, before, limit),
        )
        .await
    }

    async fn open_transactions(&self, repos: Option<&[String]>, limit: u32) -> Result<Vec<OpenTxnSummary>> {
        self.bounded("list open transactions", browse::open_transactions(self, repos, limit))
            .await
    }

    async fn txn_owner(&self, id: &TxnId) -> Result<Option<String>> {
        self.bounded("transaction owner", browse::txn_owner(self, id)).await
    }

    async fn version_names(&self, repo: &RepoName, name: &Name) -> Result<Vec<Version>> {
        self.bounded("version names", versions::version_names(self, repo, name))
            .await
    }

    async fn latest_version(&self, repo: &RepoName, name: &Name) -> Result<Option<Version>> {
        self.bounded("latest version", versions::latest_version(self, repo, name))
            .await
    }

    async fn list_names(&self, repo: &RepoName, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<Name>> {
        self.bounded("list names", versions::list_names(self, repo, prefix, after, limit))
            .await
    }

    async fn events(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.bounded("events", events::events(self, after, limit)).await
    }

    async fn check_writable(&self) -> Result<()> {
        self.bounded("check writable", blobs::check_writable(self)).await
    }

    /// Any number of replicas share the database.
    fn is_shared(&self) -> bool {
        true
    }

    fn event_wakeups(&self) -> watch::Receiver<u64> {
        self.wakeups.subscribe()
    }

    async fn claim_flight(&self, key: &str, holder: &str, lease: Duration) -> Result<super::FlightClaim> {
        self.bounded("claim flight", flights::claim(self, key, holder, lease))
            .await
    }

    async fn renew_flight(&self, key: &str, holder: &str, lease: Duration) -> Result<bool> {
        self.bounded("renew flight", flights::renew(self, key, holder, lease))
            .await
    }

    async fn finish_flight(&self, key: &str, holder: &str, end: &super::FlightEnd) -> Result<()> {
        self.bounded("finish flight", flights::finish(self, key, holder, end))
            .await
    }

    async fn flight(&self, key: &str) -> Result<Option<super::FlightState>> {
        self.bounded("flight", flights::flight(self, key)).await
    }

    async fn start_upload(&self, txn: &TxnId, upload: &str, lease: Duration) -> Result<()> {
        self.bounded("start upload", uploads::start(self, txn, upload, lease))
            .await
    }

    async fn renew_upload(&self, upload: &str, lease: Duration) -> Result<()> {
        self.bounded("renew upload", uploads::renew(self, upload, lease)).await
    }

    async fn end_upload(&self, upload: &str) -> Result<()> {
        self.bounded("end upload", uploads::end(self, upload)).await
    }

    async fn uploads_in_flight(&self, txn: &TxnId) -> Result<u64> {
        self.bounded("uploads in flight", uploads::in_flight(self, txn)).await
    }

    async fn create_upload_session(&self, session: &crate::catalog::UploadSession) -> Result<()> {
        self.bounded("upload session", sessions::create(self, session)).await
    }

    async fn upload_session(&self, upload: &str) -> Result<crate::catalog::UploadSession> {
        self.bounded("upload session", sessions::get(self, upload)).await
    }

    async fn upload_pieces(&self, upload: &str) -> Result<Vec<crate::catalog::UploadPiece>> {
        self.bounded("upload session", sessions::pieces(self, upload)).await
    }

    async fn add_upload_piece(&self, upload: &str, piece: &crate::catalog::UploadPiece) -> Result<u64> {
        self.bounded("upload session", sessions::add_piece(self, upload, piece))
            .await
    }

    async fn discard_upload_session(&self, upload: &str) -> Result<bool> {
        self.bounded("upload session", sessions::discard(self, upload)).await
    }

    async fn discard_finished_upload_sessions(&self) -> Result<u64> {
        self.bounded("upload session", sessions::discard_finished(self)).await
    }

    async fn ended_upload_sessions(&self, limit: u32) -> Result<Vec<String>> {
        self.bounded("upload session", sessions::ended(self, limit)).await
    }

    async fn forget_upload_sessions(&self, uploads: &[String]) -> Result<()> {
        self.bounded("upload session", sessions::forget(self, uploads)).await
    }

    async fn last_event_seq(&self) -> Result<i64> {
        self.bounded("last event seq", events::last_event_seq(self)).await
    }

    // The sweeps are not bounded as a whole: they run for as long as there is garbage,
    // deleting from the blob store between their short statements.
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
        self.bounded("committed blobs", blobs::committed_blobs(self, after, limit))
            .await
    }

    async fn blob_users(&self, digest: &Digest, limit: u32) -> Result<Vec<BlobUser>> {
        self.bounded("blob users", blobs::blob_users(self, digest, limit)).await
    }

    async fn touch_versions(&self, accesses: &[(RepoName, Name, Version, Timestamp)]) -> Result<()> {
        self.bounded("touch versions", versions::touch_versions(self, accesses))
            .await
    }

    async fn repo_usage(&self, repo: &RepoName) -> Result<RepoUsage> {
        self.bounded("repo usage", versions::repo_usage(self, repo)).await
    }

    async fn least_recently_used(&self, repo: &RepoName, limit: u32) -> Result<Vec<VersionUse>> {
        self.bounded("least recently used", versions::least_recently_used(self, repo, limit))
            .await
    }

    async fn move_tag(&self, mv: &super::TagMove) -> Result<super::TagMoved> {
        self.bounded("move tag", tags::move_tag(self, mv)).await
    }

    async fn tag(&self, repo: &RepoName, name: &Name, tag: &intact_core::Tag) -> Result<Option<super::TagRecord>> {
        self.bounded("tag", tags::tag(self, repo, name, tag)).await
    }

    async fn tags(&self, repo: &RepoName, name: &Name) -> Result<Vec<super::TagRecord>> {
        self.bounded("tags", tags::tags(self, repo, name)).await
    }

    async fn tag_history(
        &self,
        repo: &RepoName,
        name: &Name,
        tag: &intact_core::Tag,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<super::TagHistoryEntry>> {
        self.bounded("tag history", tags::tag_history(self, repo, name, tag, before, limit))
            .await
    }

    async fn unstage_file(&self, id: &TxnId, path: &FilePath) -> Result<bool> {
        self.bounded("unstage file", txns::unstage_file(self, id, path)).await
    }

    async fn delete_version(
        &self,
        repo: &RepoName,
        name: &Name,
        version: &Version,
        reason: &str,
    ) -> Result<Option<Manifest>> {
        self.bounded(
            "delete version",
            versions::delete_version(self, repo, name, version, reason),
        )
        .await
    }

    async fn prune_txns(&self, older_than: Duration) -> Result<u64> {
        self.bounded("prune txns", txns::prune_txns(self, older_than)).await
    }

    async fn prune_flights(&self, older_than: Duration) -> Result<u64> {
        self.bounded("prune flights", flights::prune(self, older_than)).await
    }

    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord> {
        self.bounded("create token", tokens::create(self, token)).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.bounded("list tokens", tokens::list(self)).await
    }

    async fn token_by_secret_hash(&self, secret_sha256: &str) -> Result<Option<TokenRecord>> {
        self.bounded("token lookup", tokens::by_secret_hash(self, secret_sha256))
            .await
    }

    async fn revoke_token(&self, name: &str) -> Result<Option<TokenRecord>> {
        self.bounded("revoke token", tokens::revoke(self, name)).await
    }

    async fn import_token(&self, token: &TokenRecord) -> Result<bool> {
        self.bounded("import token", tokens::import(self, token)).await
    }

    async fn has_tokens(&self) -> Result<bool> {
        self.bounded("any tokens", tokens::any(self)).await
    }

    async fn token_census(&self) -> Result<crate::tokens::TokenCensus> {
        self.bounded("token census", tokens::census(self)).await
    }

    async fn refresh_statistics(&self) -> Result<Vec<String>> {
        self.bounded("refreshing planner statistics", statistics::refresh(self))
            .await
    }

    async fn open_txns_owned_by(&self, owner: &str) -> Result<u64> {
        self.bounded("open transactions of a token", tokens::open_txns_owned_by(self, owner))
            .await
    }

    async fn count_open_txns(&self) -> Result<u64> {
        self.bounded("counting open transactions", tokens::count_open_txns(self))
            .await
    }

    async fn create_hook(&self, hook: &crate::hooks::NewHook) -> Result<crate::hooks::HookRecord> {
        self.bounded("creating a hook", hooks::create(self, hook)).await
    }

    async fn hooks(&self) -> Result<Vec<crate::hooks::HookRecord>> {
        self.bounded("listing hooks", hooks::list(self)).await
    }

    async fn delete_hook(&self, name: &str) -> Result<bool> {
        self.bounded("deleting a hook", hooks::delete(self, name)).await
    }

    async fn claim_hook(
        &self,
        name: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<(crate::hooks::HookRecord, String)>> {
        self.bounded("claiming a hook", hooks::claim(self, name, holder, lease))
            .await
    }

    async fn record_hook(&self, name: &str, holder: &str, progress: &crate::hooks::HookProgress) -> Result<bool> {
        self.bounded(
            "recording a hook's delivery",
            hooks::record(self, name, holder, progress),
        )
        .await
    }
}
