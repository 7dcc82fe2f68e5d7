//! The `Store`: the one publish protocol every front-end uses (artifact API, Go proxy,
//! staging). It owns ordering: blobs are registered, then made durable, and only then can a
//! catalog commit name them. It also owns the in-memory caches that are safe because committed
//! versions never change, and the wake-ups for lock waiters and event followers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use intact_core::{Digest, DigestHasher, FileEntry, FilePath, Manifest, Name, RepoName, Timestamp, TxnId, Version};
use rand::RngCore;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

mod resumable;

pub use resumable::UPLOAD_PIECE_BYTES;

use crate::blob::file_chunks::{self, FileChunks};
use crate::blob::{BlobBody, Progress};
use crate::catalog::{Finished, SweepReport};
use crate::{
    BlobRead, BlobStore, Catalog, Clock, CommitOutcome, Error, Event, NewTxn, OpenOutcome, PendingBlob, Result,
    TxnRecord, VersionSpec, VersionSummary,
};

/// How often a server checks its catalog's planner statistics for staleness
/// ([`Store::run_statistics_keeper`]): a cheap query unless a table changed by a tenth since
/// its last analysis.
pub const STATISTICS_EVERY: Duration = Duration::from_secs(15);
/// The lease of the transactions intact's own workers open (Go proxy fetches, staging):
/// short, because the worker renews it for as long as it runs ([`Store::renewing`]), and a
/// dead worker's transaction must free its version soon (on a shared catalog nobody else can
/// tell a dead replica from a slow one).
pub const WORKER_LEASE: Duration = Duration::from_secs(15);

/// How long a flight that ended stays after it ended (or after its remembered failure ran
/// out): long enough for every waiter woken by its end to read its outcome.
pub const FLIGHT_RETENTION: Duration = Duration::from_secs(600);

/// Tunables of the store. Defaults suit the embedded single-node server.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Lease of a transaction that asks for none.
    pub default_lease: Duration,
    /// Longest lease a client may ask for.
    pub max_lease: Duration,
    /// Unreferenced blobs younger than this survive a sweep (defence in depth on top of the
    /// sweep's per-digest exclusion; also lets an operator undo a mistaken delete).
    pub gc_grace: Duration,
    /// How long finished transactions (and their idempotency keys) are remembered.
    pub txn_retention: Duration,
    /// Committed manifests kept in memory.
    pub manifest_cache_entries: usize,
    /// Bytes of small committed files kept in memory once read and verified (0: none).
    pub small_file_cache_bytes: u64,
    /// Larger local blob files remembered as having hashed right in full, so a whole read of
    /// one that has not changed on disk since is not hashed again (0: every whole read is).
    pub verified_file_entries: usize,
    /// An upload whose body sends nothing for this long is ended (never longer than its
    /// transaction's lease, so a vanished client cannot pin a version).
    pub upload_idle_timeout: Duration,
    /// An upload must average at least this many bytes a second over every idle-timeout
    /// window, or it is ended like an idle one: a byte now and then does not hold an upload
    /// (its slot, its lease, its version) for ever. 0: no minimum.
    pub upload_min_bytes_per_second: u64,
    /// Repositories whose versions may hold paths that differ only in case (elsewhere such a
    /// version is refused at commit: case-folding clients could not hold it).
    pub case_sensitive_repos: std::collections::HashSet<RepoName>,
    /// The most distinct paths one transaction may stage (`None`: no limit). Checked by the
    /// catalog inside the staging write, so concurrent uploads cannot pass it together.
    pub max_files_per_transaction: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            default_lease: Duration::from_secs(300),
            max_lease: Duration::from_secs(7 * 24 * 3600),
            gc_grace: Duration::from_secs(15 * 60),
            txn_retention: Duration::from_secs(7 * 24 * 3600),
            manifest_cache_entries: 100_000,
            small_file_cache_bytes: 32 * 1024 * 1024,
            verified_file_entries: 65_536,
            upload_idle_timeout: Duration::from_secs(60),
            upload_min_bytes_per_second: 1024,
            case_sensitive_repos: std::collections::HashSet::new(),
            max_files_per_transaction: None,
        }
    }
}

/// What a garbage collection did.
#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
pub struct GcReport {
    /// Transactions this run expired (not those an operation expired earlier, whose staged
    /// blobs it only reclaimed).
    pub expired_transactions: u64,
    pub blobs_deleted: u64,
    pub bytes_deleted: u64,
    pub orphan_blobs_deleted: u64,
    pub pending_files_removed: u64,
    /// Pieces of resumable uploads deleted because their upload ended unfinished.
    pub upload_pieces_removed: u64,
    pub transactions_pruned: u64,
    /// Ended flights forgotten (upstream fetches' shared outcomes, `FLIGHT_RETENTION` on).
    pub flights_pruned: u64,
}

/// One problem `verify` found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VerifyProblem {
    pub sha256: Digest,
    /// `missing`, `size mismatch` or `hash mismatch`.
    pub problem: String,
    pub detail: String,
    /// The committed files that hold this blob (`repo/name@version:path`; the first
    /// [`USERS_NAMED`]).
    pub versions: Vec<String>,
}

/// How many users of a damaged blob a report names.
const USERS_NAMED: u32 = 100;

/// Blobs read per page by walks over every committed blob (verify, scrubbing) and over the
/// catalog's blob records (`gc`).
const BLOB_PAGE: u32 = 1000;

/// The least a blob's check counts for when the scrubber paces itself, in bytes: opening,
/// reading and closing a file (or a request to S3) costs about as much as reading this many
/// bytes, however small the blob.
pub const SCRUB_MIN_BLOB_COST: u64 = 64 << 10;

/// Stored digests checked against the catalog per orphan-sweep call (gc pages through the
/// blob store's listing).
const ORPHAN_PAGE: usize = 1000;

/// Reads up to this size are verified before anything is returned (a damaged small file is
/// an error before any byte is sent); larger ones are verified as they stream.
const VERIFY_AHEAD: u64 = 256 * 1024;

/// How long a whole readiness check may take before it counts as failed.
pub const READINESS_DEADLINE: Duration = Duration::from_secs(5);

/// How long a readiness answer stands (see [`Store::readiness`]).
pub const READINESS_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub problems: Vec<VerifyProblem>,
}

type VersionKey = (RepoName, Name, Version);

pub struct Store {
    catalog: Arc<dyn Catalog>,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    config: StoreConfig,
    /// Committed manifests. Safe to cache: a committed version never changes; a deleted one
    /// is removed here by whoever deletes it.
    manifests: quick_cache::sync::Cache<VersionKey, Arc<Manifest>>,
    /// Small files' verified bytes, by digest.
    small_files: crate::small_files::SmallFiles,
    verified_files: Arc<crate::verified_files::VerifiedFiles>,
    /// Counts deletes. A manifest read from the catalog is cached only if no delete happened
    /// since the read began (checked and inserted under this lock, which a delete holds while
    /// it bumps the count and invalidates): a read racing an eviction must not put the
    /// deleted version back into the cache, where it would stay "committed" forever.
    deletes: std::sync::Mutex<u64>,
    /// Bumped whenever a transaction finishes: wakes lock waiters.
    txns_changed: watch::Sender<u64>,
    /// Set when a write ran out of space; cleared once a readiness check finds both backends
    /// writable again.
    out_of_space: std::sync::atomic::AtomicBool,
    /// The last readiness answer and when it was found (see [`Store::readiness`]).
    last_readiness: tokio::sync::Mutex<Option<(std::time::Instant, std::result::Result<(), String>)>>,
    /// Uploads streaming right now, by transaction: a commit refuses while any is in flight.
    uploads: crate::upload::InFlight,
    /// Reads not yet written to the catalog (`last_access`), flushed in batches so the hot
    /// read path never writes.
    pending_access: std::sync::Mutex<std::collections::HashMap<VersionKey, Timestamp>>,
    /// Held for the life of the store when its catalog is embedded: one process owns the
    /// data dir (`None` for a shared catalog, or a store built by hand with `new`).
    _dir_lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What wakes a lock waiter: a transaction change in this store, or an event appended to
/// the catalog by any process (every transaction ends with one).
struct TxnChanges {
    here: watch::Receiver<u64>,
    anywhere: watch::Receiver<u64>,
}

/// A request to begin a transaction, before an id is assigned.
#[derive(Debug, Clone)]
pub struct BeginRequest {
    pub repo: RepoName,
    pub name: Name,
    pub version: VersionSpec,
    pub metadata: serde_json::Value,
    pub lease: Option<Duration>,
    pub idempotency_key: Option<String>,
    /// How long to wait for another transaction holding the same version.
    pub wait: Duration,
    /// A committed version of the same name to start from: the transaction opens with its
    /// files, and PUT / DELETE of paths change them (a version made by editing another).
    pub base: Option<Version>,
}

fn new_txn_id() -> TxnId {
    let mut bytes = [0u8; 17];
    rand::rng().fill_bytes(&mut bytes);
    TxnId::from_random(bytes)
}

impl Store {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        config: StoreConfig,
    ) -> Self {
        let manifests = quick_cache::sync::Cache::new(config.manifest_cache_entries.max(16));
        let small_files = crate::small_files::SmallFiles::new(config.small_file_cache_bytes);
        let verified_files = Arc::new(crate::verified_files::VerifiedFiles::new(config.verified_file_entries));
        Self {
            catalog,
            blobs,
            clock,
            config,
            manifests,
            small_files,
            verified_files,
            deletes: std::sync::Mutex::new(0),
            txns_changed: watch::Sender::new(0),
            out_of_space: std::sync::atomic::AtomicBool::new(false),
            last_readiness: tokio::sync::Mutex::new(None),
            uploads: crate::upload::InFlight::default(),
            pending_access: std::sync::Mutex::new(std::collections::HashMap::new()),
            _dir_lock: None,
        }
    }

    /// Holds `lock` (the data dir's) for the life of the store: no other process uses the
    /// data dir.
    pub(crate) fn owning_data_dir(mut self, lock: Option<std::fs::File>) -> Self {
        self._dir_lock = lock;
        self
    }

    /// Whether this process is the only writer of its catalog (the embedded one). With a
    /// shared catalog, other replicas' transactions and pending uploads are alive: nothing
    /// open may be taken for a dead process's leftovers.
    pub fn is_sole_writer(&self) -> bool {
        !self.catalog.is_shared()
    }

    /// Whether this process alone uses its data dir (the embedded catalog, or blobs in S3,
    /// which leave the data dir only this replica's temporary files): what a dead process
    /// left in it at start-up is leftovers. Replicas sharing a blob directory share the data
    /// dir that holds it, and none owns it.
    pub fn owns_data_dir(&self) -> bool {
        self._dir_lock.is_some()
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// How many versions this process has seen deleted (here, or on another replica through
    /// the event log). Whatever was derived from a version looked up before the count moved
    /// may describe a version that is gone.
    pub fn deletions(&self) -> u64 {
        self.deletes_so_far()
    }

    fn deletes_so_far(&self) -> u64 {
        *self.deletes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Caches `m` unless a delete happened since `deletes_before` was read.
    fn cache_manifest(&self, deletes_before: u64, m: Arc<Manifest>) {
        let deletes = self.deletes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *deletes == deletes_before {
            self.manifests
                .insert((m.repo.clone(), m.name.clone(), m.version.clone()), m);
        }
    }

    fn notify_txns(&self) {
        self.txns_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Notes a write that failed for lack of space, so readiness checks look again.
    fn watch_space<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(Error::StorageFull { .. }) = &result {
            self.out_of_space.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    /// Whether the store can serve: the catalog takes a write (a real one, through its log)
    /// and the blob store answers a lookup; after a write ran out of space, the blob store
    /// must take a write too. The answer names what is wrong, within [`READINESS_DEADLINE`]
    /// for the whole check. One check runs at a time: probes that waited for it take its
    /// answer, and a good answer stands for [`READINESS_TTL`], so a load balancer probing
    /// hard costs a catalog write a second. A bad answer is not kept past the probes that
    /// waited for it: the next probe looks again, so readiness comes back the moment the
    /// cause is gone.
    pub async fn readiness(&self) -> std::result::Result<(), String> {
        let asked = std::time::Instant::now();
        let mut last = self.last_readiness.lock().await;
        let out_of_space = self.out_of_space.load(std::sync::atomic::Ordering::Relaxed);
        if let Some((at, answer)) = &*last
            && (*at >= asked || (answer.is_ok() && !out_of_space && at.elapsed() < READINESS_TTL))
        {
            return answer.clone();
        }
        let answer = match tokio::time::timeout(READINESS_DEADLINE, self.check_readiness()).await {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "the catalog or the blob store gave no answer within {}s",
                READINESS_DEADLINE.as_secs()
            )),
        };
        *last = Some((std::time::Instant::now(), answer.clone()));
        answer
    }

    async fn check_readiness(&self) -> std::result::Result<(), String> {
        self.catalog
            .check_writable()
            .await
            .map_err(|e| format!("catalog unavailable or not writable: {e}"))?;
        // Content nobody stores: the lookup has to reach the blob store itself (a replica's
        // local cache cannot answer it).
        self.blobs
            .size(&Digest::of(b"intact readiness probe: never stored"))
            .await
            .map_err(|e| format!("blob store unreachable: {e}"))?;
        if !self.out_of_space.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        self.blobs
            .check_writable()
            .await
            .map_err(|e| format!("blob store: {e}"))?;
        self.out_of_space.store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Start-up recovery: only what a crash leaves behind and what costs nothing that grows
    /// with the store. Expires transactions whose lease ran out while we were down (and
    /// reclaims what they staged) and drops pending bytes no transaction can still use.
    /// Sweeping unreferenced blobs and orphan files is the background sweeper's
    /// ([`Store::run_sweeper`]), so a restart answers at once whatever the store's size.
    pub async fn recover(&self) -> Result<GcReport> {
        // Holding the data-dir lock, every pending file is a leftover of a dead process.
        // Replicas sharing a blob store may be uploading: only old pending data is left over
        // (an S3 store also keeps young pending objects whatever age is asked).
        let pending_age = if self.is_sole_writer() {
            Duration::ZERO
        } else {
            self.config.gc_grace.max(Duration::from_secs(3600))
        };
        let mut report = GcReport {
            pending_files_removed: self.blobs.sweep_pending(pending_age).await?,
            ..GcReport::default()
        };
        // Each expiry was told (logged and counted) by the catalog write that made it: this
        // sweep's, or an earlier operation's that noticed the lapse first.
        let finished = self.catalog.expire_txns().await?;
        report.expired_transactions = finished.expired;
        let reclaimed = self.reclaim(finished).await?;
        report.blobs_deleted = reclaimed.blobs_deleted;
        report.bytes_deleted = reclaimed.bytes_deleted;
        Ok(report)
    }

    /// Rolls back every open transaction of `repo` (start-up of the one process that writes
    /// into it, for repos only intact itself writes to: what is open belongs to a process that
    /// died). Returns how many.
    ///
    /// Embedded catalog only: on a shared catalog what is open may belong to a live replica
    /// still filling it, so nothing is touched (0). There, intact's own transactions hold
    /// [`WORKER_LEASE`] and are renewed while their worker runs ([`Store::renewing`]): a dead
    /// replica's lapse within that lease and the next claimant takes the version over.
    pub async fn abort_all_open(&self, repo: &RepoName) -> Result<u64> {
        if self.catalog.is_shared() {
            return Ok(0);
        }
        let mut aborted = 0;
        loop {
            let ids = self.catalog.open_txns(repo, 1000).await?;
            if ids.is_empty() {
                return Ok(aborted);
            }
            for id in ids {
                match self.abort(&id).await {
                    Ok(()) => aborted += 1,
                    // Finished meanwhile: nothing to roll back.
                    Err(Error::TxnNotOpen { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Expires overdue transactions and reclaims what they had staged (and what transactions
    /// expired on other paths since the last sweep had). Returns how many this call expired.
    pub async fn expire_due(&self) -> Result<u64> {
        // Each expiry was told (logged and counted) by the catalog write that made it: this
        // sweep's, or an earlier operation's that noticed the lapse first.
        let finished = self.catalog.expire_txns().await?;
        let n = finished.expired;
        self.reclaim(finished).await?;
        // The resumable uploads of transactions that ended, however they ended.
        self.reclaim_upload_sessions().await?;
        Ok(n)
    }

    async fn reclaim(&self, finished: Finished) -> Result<SweepReport> {
        if finished.txns.is_empty() {
            return Ok(SweepReport::default());
        }
        self.notify_txns();
        self.catalog
            .sweep_blobs(Duration::ZERO, &finished.staged_digests, self.blobs.as_ref())
            .await
    }

    /// Begins a transaction, waiting up to `req.wait` for a holder of the same version.
    pub async fn begin(&self, req: BeginRequest) -> Result<OpenOutcome> {
        self.begin_owned(req, None).await
    }

    /// `begin` on behalf of token `owner` (recorded, so its open transactions can be counted).
    pub async fn begin_owned(&self, req: BeginRequest, owner: Option<&str>) -> Result<OpenOutcome> {
        self.watch_space(self.begin_unwatched(req, owner).await)
    }

    async fn begin_unwatched(&self, req: BeginRequest, owner: Option<&str>) -> Result<OpenOutcome> {
        let lease = req.lease.unwrap_or(self.config.default_lease);
        if lease.is_zero() || lease > self.config.max_lease {
            return Err(Error::BadRequest {
                field: "lease_seconds",
                message: format!("must be between 1 and {}", self.config.max_lease.as_secs()),
            });
        }
        if !req.metadata.is_object() {
            return Err(Error::BadRequest {
                field: "metadata",
                message: "must be a JSON object".into(),
            });
        }
        if let Some(key) = &req.idempotency_key
            && (key.is_empty() || key.len() > 256 || key.chars().any(char::is_control))
        {
            return Err(Error::BadRequest {
                field: "idempotency_key",
                message: "must be 1-256 characters without control characters".into(),
            });
        }
        let new = NewTxn {
            id: new_txn_id(),
            repo: req.repo,
            name: req.name,
            version: req.version,
            metadata: req.metadata,
            lease,
            idempotency_key: req.idempotency_key,
            owner: owner.map(str::to_owned),
            base: req.base,
        };
        let deadline = tokio::time::Instant::now() + req.wait;
        loop {
            // Subscribed before the attempt, so a holder finishing in between still wakes us.
            let mut changes = TxnChanges {
                here: self.txns_changed.subscribe(),
                anywhere: self.catalog.event_wakeups(),
            };
            match self.catalog.open_txn(&new).await {
                Err(Error::Locked { holder, expires_at, .. }) if tokio::time::Instant::now() < deadline => {
                    self.wait_for_holder(&holder, expires_at, deadline, &mut changes).await;
                }
                Ok(outcome) => {
                    if matches!(outcome, OpenOutcome::Created(_)) {
                        self.notify_txns();
                    }
                    return Ok(outcome);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until `holder` may have let go of its lock: it finished, its lease ran out, or
    /// the wait's `deadline` came. Every transaction change in the store wakes this, and so
    /// does every event appended to the catalog by any process (a transaction ends with an
    /// event, so a holder finishing on another replica wakes its waiters here). It checks the
    /// holder with a read and goes back to sleep while the holder is still open: only a
    /// waiter with a real chance retries the open (a write transaction). Otherwise a dozen
    /// waiters would each retry on every unrelated commit and starve the writer.
    async fn wait_for_holder(
        &self,
        holder: &TxnId,
        mut expires_at: Timestamp,
        deadline: tokio::time::Instant,
        changes: &mut TxnChanges,
    ) {
        loop {
            let until_expiry =
                Duration::from_millis(u64::try_from(expires_at.millis() - self.now().millis()).unwrap_or(0));
            let wake = deadline.min(tokio::time::Instant::now() + until_expiry);
            tokio::select! {
                _ = changes.here.changed() => {}
                _ = changes.anywhere.changed() => {}
                _ = tokio::time::sleep_until(wake) => return,
            }
            match self.catalog.txn_status(holder).await {
                Ok(status) if status.state == intact_core::TxnState::Open && status.expires_at > self.now() => {
                    expires_at = status.expires_at;
                }
                _ => return,
            }
        }
    }

    pub async fn txn(&self, id: &TxnId) -> Result<TxnRecord> {
        self.catalog.txn(id).await
    }

    pub async fn renew(&self, id: &TxnId) -> Result<TxnRecord> {
        self.catalog.renew_txn(id).await
    }

    /// Streams `body` into transaction `id` at `path`. With `expected`, a body hashing to
    /// anything else is refused and nothing is staged.
    pub async fn put_file(
        &self,
        id: &TxnId,
        path: FilePath,
        body: &mut (dyn AsyncRead + Send + Unpin),
        expected: Option<Digest>,
        progress: Option<Progress<'_>>,
    ) -> Result<FileEntry> {
        let staged = self.put_file_unwatched(id, path, body, expected, progress).await;
        self.watch_space(staged)
    }

    async fn put_file_unwatched(
        &self,
        id: &TxnId,
        path: FilePath,
        body: &mut (dyn AsyncRead + Send + Unpin),
        expected: Option<Digest>,
        progress: Option<Progress<'_>>,
    ) -> Result<FileEntry> {
        // Fail fast before reading a possibly huge body, and make sure the upload starts with
        // at least half a lease left (staging the file renews it in full). A read, not a
        // write: most uploads pay no extra catalog commit.
        let status = self.catalog.txn_status(id).await?;
        if status.state != intact_core::TxnState::Open {
            return Err(Error::TxnNotOpen {
                id: id.clone(),
                state: status.state,
            });
        }
        // Registered before the first byte, released when this upload is staged or fails (or
        // the request is cancelled): a commit meanwhile is refused rather than leaving this
        // file out of the version.
        let _in_flight = self.uploads.start(id);
        // On a shared catalog, also where a commit on another replica sees it.
        let shared = match self.catalog.is_shared() {
            true => Some(crate::upload::SharedUpload::start(self.catalog.clone(), id).await?),
            false => None,
        };
        let upload = self.stream_and_stage(id, path, body, expected, progress, status);
        match shared {
            Some(shared) => shared.run(upload).await,
            None => upload.await,
        }
    }

    /// The rest of `put_file`, once the upload is registered.
    async fn stream_and_stage(
        &self,
        id: &TxnId,
        path: FilePath,
        body: &mut (dyn AsyncRead + Send + Unpin),
        expected: Option<Digest>,
        progress: Option<Progress<'_>>,
        status: crate::catalog::TxnStatus,
    ) -> Result<FileEntry> {
        let now = self.now();
        let mut expires_at = status.expires_at;
        if expires_at <= now.plus(status.lease / 2) {
            expires_at = self.catalog.renew_txn(id).await?.expires_at;
        }
        let pending = self.stream_body(id, status.lease, expires_at, body, progress).await?;
        if let Some(expected) = expected
            && expected != pending.digest
        {
            return Err(Error::ChecksumMismatch {
                expected,
                actual: pending.digest,
            });
        }
        self.stage_pending(id, path, pending).await
    }

    /// Streams an upload's body into a pending blob, watching it: an upload may outlast its
    /// lease (1 GiB at a few MB/s), so while bytes keep arriving the lease is renewed once
    /// less than half of it is left (judged against `expires_at`, the lease's end when the
    /// upload starts, not against the upload's start: an upload may begin with barely more
    /// than half a lease left), and the reaper never expires a transaction busy receiving
    /// bytes. A body
    /// that sends nothing for the idle timeout (at most the lease) is ended: the lease is not
    /// renewed for it, so a client that vanished without closing cannot pin the version. If
    /// the transaction ends meanwhile (rolled back), the upload stops there.
    async fn stream_body(
        &self,
        id: &TxnId,
        lease: Duration,
        mut expires_at: Timestamp,
        body: &mut (dyn AsyncRead + Send + Unpin),
        progress: Option<Progress<'_>>,
    ) -> Result<PendingBlob> {
        let idle_limit = self.config.upload_idle_timeout.min(lease).max(Duration::from_secs(1));
        let renew_every = (lease / 2).max(Duration::from_millis(100));
        let renew_when_left = i64::try_from((lease / 2).as_millis()).unwrap_or(i64::MAX);
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut metered = crate::upload::Metered {
            inner: body,
            received: received.clone(),
            ended: ended.clone(),
        };
        let write = self.blobs.write(&mut metered, progress);
        tokio::pin!(write);
        let check_every = (idle_limit / 4).min(renew_every).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval(check_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut seen, mut last_byte) = (0u64, tokio::time::Instant::now());
        // The window the minimum rate is judged over: bytes and time at its start.
        let (mut window_bytes, mut window_start) = (0u64, last_byte);
        let min_rate = self.config.upload_min_bytes_per_second;
        let mut renewed_at_bytes = 0u64;
        loop {
            tokio::select! {
                written = &mut write => return written,
                _ = tick.tick() => {
                    let now = tokio::time::Instant::now();
                    let n = received.load(std::sync::atomic::Ordering::Relaxed);
                    if ended.load(std::sync::atomic::Ordering::Relaxed) {
                        // The client sent everything: the rest (a last part to S3, an
                        // fsync) is the store's work. Only the lease is kept alive for it.
                        let left = expires_at.millis().saturating_sub(self.now().millis());
                        if left <= renew_when_left {
                            expires_at = self.catalog.renew_txn(id).await?.expires_at;
                        }
                        continue;
                    }
                    if n != seen {
                        (seen, last_byte) = (n, now);
                    } else if now.duration_since(last_byte) >= idle_limit {
                        return Err(Error::BodyIdle { seconds: idle_limit.as_secs() });
                    }
                    let window = now.duration_since(window_start);
                    if window >= idle_limit {
                        let sent = n.saturating_sub(window_bytes);
                        let needed = u64::try_from(u128::from(min_rate) * window.as_millis() / 1000).unwrap_or(u64::MAX);
                        if sent < needed {
                            return Err(Error::BodyTooSlow {
                                bytes: sent,
                                seconds: window.as_secs(),
                                min_per_second: min_rate,
                            });
                        }
                        (window_bytes, window_start) = (n, now);
                    }
                    let left = expires_at.millis().saturating_sub(self.now().millis());
                    if left <= renew_when_left && n != renewed_at_bytes {
                        expires_at = self.catalog.renew_txn(id).await?.expires_at;
                        renewed_at_bytes = n;
                        // No byte was read while the catalog answered: that wait is not the
                        // client's, so the idle clock and the rate window are moved on by it
                        // (moved, not restarted: with renewals every half lease, a restart
                        // would keep a window shorter than the idle limit from ever being
                        // judged under a short lease).
                        let spent = tokio::time::Instant::now().duration_since(now);
                        last_byte += spent;
                        window_start += spent;
                    }
                }
            }
        }
    }

    /// Up to `limit` committed files whose bytes are `digest` (repo, name, version, path).
    /// Takes `path` out of open transaction `id`; `NotFound` when it holds no such path.
    pub async fn unstage_file(&self, id: &TxnId, path: &FilePath) -> Result<()> {
        if self.catalog.unstage_file(id, path).await? {
            Ok(())
        } else {
            Err(Error::not_found(format!("{path} in transaction {id}")))
        }
    }

    /// Moves (or removes) a tag; see [`Catalog::move_tag`].
    pub async fn move_tag(&self, mv: &crate::TagMove) -> Result<crate::TagMoved> {
        self.catalog.move_tag(mv).await
    }

    /// Where a tag points, and the manifest of that version. `NotFound` naming the tag when
    /// it does not exist, or naming the version when the tag outlived it (a deleted cache
    /// copy).
    pub async fn tagged(
        &self,
        repo: &RepoName,
        name: &Name,
        tag: &intact_core::Tag,
    ) -> Result<(crate::TagRecord, Arc<Manifest>)> {
        let Some(record) = self.catalog.tag(repo, name, tag).await? else {
            return Err(Error::not_found(format!("tag {tag} of {repo}/{name}")));
        };
        let manifest = self.manifest(repo, name, &record.version).await.map_err(|e| match e {
            Error::NotFound { what } => Error::not_found(format!("{what}, which tag {tag} points at,")),
            other => other,
        })?;
        Ok((record, manifest))
    }

    pub async fn blob_users(&self, digest: &Digest, limit: u32) -> Result<Vec<crate::BlobUser>> {
        self.catalog.blob_users(digest, limit).await
    }

    /// Which of `digests` the blob store holds (quarantined ones are not held).
    pub async fn stored_blobs(&self, digests: &[Digest]) -> Result<std::collections::HashSet<Digest>> {
        let mut unique = digests.to_vec();
        unique.sort_unstable();
        unique.dedup();
        Ok(self.blobs.sizes(&unique).await?.into_keys().collect())
    }

    /// Stages a file whose bytes the store already holds, by digest (`PUT` with
    /// `x-blob-sha256` and no body): what a client re-publishing mostly unchanged files sends
    /// instead of their bytes. The catalog registers the digest first, so no sweep takes the
    /// blob from then on; then the blob is made durable (it may be another upload's, not yet
    /// synced) and its size read. A digest the store does not hold is refused
    /// ([`Error::BlobNotStored`]), never guessed: the client uploads the bytes instead.
    pub async fn stage_stored(&self, id: &TxnId, path: FilePath, digest: Digest, size: u64) -> Result<FileEntry> {
        let status = self.catalog.txn_status(id).await?;
        if status.state != intact_core::TxnState::Open {
            return Err(Error::TxnNotOpen {
                id: id.clone(),
                state: status.state,
            });
        }
        // A look before anything is written: most refusals cost no catalog write. Bytes of
        // another size than the versions holding them record (damaged, not yet scrubbed) are
        // not stored as far as this is concerned: the client uploads them, which heals them.
        if self.blobs.size(&digest).await? != Some(size) {
            return Err(Error::BlobNotStored { digest });
        }
        // Counted as an upload until done, like one: a commit meanwhile is refused rather
        // than made on a blob not yet synced.
        let _in_flight = self.uploads.start(id);
        let shared = match self.catalog.is_shared() {
            true => Some(crate::upload::SharedUpload::start(self.catalog.clone(), id).await?),
            false => None,
        };
        let stage = async {
            let entry = FileEntry {
                path,
                size,
                sha256: digest,
            };
            self.catalog
                .stage_file(id, &entry, self.config.max_files_per_transaction)
                .await?;
            match self.blobs.make_durable(&digest).await? {
                Some(stored) if stored == size => Ok(entry),
                // Swept (or replaced) between the look and the registration: the staged entry
                // names bytes that are not there, which the commit refuses; the client
                // uploads them, which replaces the entry.
                _ => Err(Error::BlobNotStored { digest }),
            }
        };
        let staged = match shared {
            Some(shared) => shared.run(stage).await,
            None => stage.await,
        };
        self.watch_space(staged)
    }

    /// Import by path: brings the local file `source` (opened and checked by the caller)
    /// into transaction `id` as `path`, by `mode` (see [`crate::blob::adopt`]). The digest
    /// is always that of the bytes the store holds once the file is adopted: with
    /// `expected`, any other is refused and nothing is staged (a moved file is put back), as
    /// is a file over `max_bytes`. Then the order of every upload: registered in the catalog,
    /// then made durable under its digest. Counted as an upload in flight meanwhile, and the
    /// lease is renewed while a large file is cloned, linked or copied. Returns the staged
    /// entry and the mode that did it (`auto` resolved).
    pub async fn import_file(
        &self,
        id: &TxnId,
        path: FilePath,
        source: crate::LocalSource,
        mode: crate::ImportMode,
        expected: Option<Digest>,
        max_bytes: Option<u64>,
    ) -> Result<(FileEntry, crate::ImportMode)> {
        let status = self.catalog.txn_status(id).await?;
        if status.state != intact_core::TxnState::Open {
            return Err(Error::TxnNotOpen {
                id: id.clone(),
                state: status.state,
            });
        }
        let _in_flight = self.uploads.start(id);
        let shared = match self.catalog.is_shared() {
            true => Some(crate::upload::SharedUpload::start(self.catalog.clone(), id).await?),
            false => None,
        };
        let shown = source.shown.clone();
        let import = async {
            let adopted = self.blobs.adopt(source, mode).await?;
            let (digest, size) = (adopted.pending.digest, adopted.pending.size);
            if let Some(expected) = expected
                && expected != digest
            {
                return Err(Error::BadRequest {
                    field: "files",
                    message: format!(
                        "{shown}: the sha256 given is {expected}, the file hashed to {digest}; nothing was staged"
                    ),
                });
            }
            if let Some(max) = max_bytes
                && size > max
            {
                return Err(Error::BadRequest {
                    field: "files",
                    message: format!("{shown} is {size} bytes, over limits.max_file_bytes ({max}); nothing was staged"),
                });
            }
            let entry = self.stage_pending_unwatched(id, path, adopted.pending).await?;
            Ok((entry, adopted.mode))
        };
        let renewed = self.renewing(id, status.lease, import);
        let staged = match shared {
            Some(shared) => shared.run(renewed).await,
            None => renewed.await,
        };
        self.watch_space(staged)
    }

    /// Stages bytes already written to the blob store as `path` of transaction `id`.
    /// Order matters: the catalog registers the blob (making it live for every sweep) before
    /// the bytes are persisted under their digest.
    pub async fn stage_pending(&self, id: &TxnId, path: FilePath, pending: PendingBlob) -> Result<FileEntry> {
        self.watch_space(self.stage_pending_unwatched(id, path, pending).await)
    }

    async fn stage_pending_unwatched(&self, id: &TxnId, path: FilePath, pending: PendingBlob) -> Result<FileEntry> {
        let entry = FileEntry {
            path,
            size: pending.size,
            sha256: pending.digest,
        };
        self.catalog
            .stage_file(id, &entry, self.config.max_files_per_transaction)
            .await?;
        self.blobs.persist(pending).await?;
        Ok(entry)
    }

    /// Commits transaction `id`: checks every staged blob is durable, then makes the version
    /// visible with one catalog transaction.
    pub async fn commit(&self, id: &TxnId) -> Result<CommitOutcome> {
        let started = std::time::Instant::now();
        let result = self.watch_space(self.commit_unwatched(id).await);
        crate::telemetry::commit_finished(&result, started.elapsed());
        result
    }

    async fn commit_unwatched(&self, id: &TxnId) -> Result<CommitOutcome> {
        let deletes_before = self.deletes_so_far();
        // The transaction is read before uploads in flight are counted, not after: an upload
        // stages its file in the catalog and only then persists the bytes, and stays counted
        // until both are done. Counted after the read, none in flight means every file `rec`
        // holds has its bytes in place (or its upload failed). Counted before, an upload that
        // started just after the count could stage a file that `rec` then holds while its
        // bytes were still on their way, and the commit took it for a file never uploaded
        // (found by the races suite across two replicas: a PUT on one, the commit on another).
        let rec = self.catalog.txn(id).await?;
        let mut uploading = self.uploads.count(id) as u64;
        if uploading == 0 && self.catalog.is_shared() {
            // Uploads streaming into it on other replicas.
            uploading = self.catalog.uploads_in_flight(id).await?;
        }
        if uploading > 0 {
            return Err(Error::UploadsInProgress {
                id: id.clone(),
                detail: format!("{uploading} upload(s) still streaming"),
            });
        }
        if rec.state == intact_core::TxnState::Open {
            intact_core::check_tree(
                rec.files.iter().map(|f| &f.path),
                self.config.case_sensitive_repos.contains(&rec.repo),
            )?;
            let mut digests: Vec<Digest> = rec.files.iter().map(|f| f.sha256).collect();
            digests.sort_unstable();
            digests.dedup();
            let stored = self.blobs.sizes(&digests).await?;
            for f in &rec.files {
                if stored.get(&f.sha256) != Some(&f.size) {
                    return Err(self.missing_staged_blob(id, &rec, f).await);
                }
            }
        }
        // The catalog refuses the commit if files were staged since `rec` was read: those
        // were not checked above, and their bytes may not be in place yet.
        let outcome = self.catalog.commit_txn(id, &rec.files).await;
        if let Err(Error::TxnNotOpen { .. }) = &outcome {
            self.notify_txns();
        }
        let outcome = outcome?;
        if let CommitOutcome::Committed(m) = &outcome {
            self.cache_manifest(deletes_before, Arc::new(m.clone()));
        }
        self.notify_txns();
        // Uploads left unfinished end with the transaction; the reaper retries a failure.
        if let Err(e) = self.reclaim_upload_sessions().await {
            tracing::warn!(txn = %id, error = %e, "reclaiming the unfinished uploads of a committed transaction failed");
        }
        Ok(outcome)
    }

    /// Why a staged file's bytes are gone at commit, looking again at the transaction `rec`
    /// was read from: it ended meanwhile (rolled back or expired, its blobs reclaimed), or
    /// the file was uploaded again (the first bytes swept); otherwise it was staged but never
    /// persisted (the server died between the two steps, and the client committed anyway),
    /// and the commit is refused rather than name missing bytes.
    async fn missing_staged_blob(&self, id: &TxnId, rec: &TxnRecord, file: &FileEntry) -> Error {
        match self.catalog.txn(id).await {
            Err(e) => e,
            Ok(now) if now.state != intact_core::TxnState::Open => Error::TxnNotOpen {
                id: id.clone(),
                state: now.state,
            },
            Ok(now) if now.files != rec.files => Error::UploadsInProgress {
                id: id.clone(),
                detail: format!("file {} was uploaded again while the commit was checking it", file.path),
            },
            Ok(_) => Error::BadRequest {
                field: "files",
                message: format!("file {} was not fully uploaded; upload it again", file.path),
            },
        }
    }

    /// Runs `work` while renewing transaction `id`'s lease (`lease` long) every third of it:
    /// a worker holds a short lease for as long as it is alive and working, and a dead one's
    /// transaction lapses within that lease (nobody has to guess whether its owner is alive).
    /// A renewal that fails is retried at the next tick; once the transaction is final
    /// renewing stops, and `work` finds out by its own next step.
    pub async fn renewing<T>(
        &self,
        id: &TxnId,
        lease: Duration,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let every = (lease / 3).max(Duration::from_millis(100));
        let keep_alive = async {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match self.catalog.renew_txn(id).await {
                    Ok(_) => {}
                    Err(Error::TxnNotOpen { .. } | Error::NotFound { .. }) => return,
                    Err(e) => tracing::warn!(txn = %id, error = %e, "renewing a worker's lease failed"),
                }
            }
        };
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => result,
            () = keep_alive => work.await,
        }
    }

    /// Rolls transaction `id` back and reclaims what it staged.
    pub async fn abort(&self, id: &TxnId) -> Result<()> {
        let finished = self.catalog.abort_txn(id).await?;
        crate::telemetry::txns_aborted(&finished.txns);
        self.reclaim(finished).await?;
        self.reclaim_upload_sessions().await?;
        Ok(())
    }

    /// Opens, stages and commits in one call: the building block of the Go proxy and staging,
    /// whose files were already streamed into pending blobs. The lease is renewed while this
    /// works (see [`Store::renewing`]). On any error the transaction is rolled back.
    pub async fn publish_pending(
        &self,
        req: BeginRequest,
        files: Vec<(FilePath, PendingBlob)>,
    ) -> Result<CommitOutcome> {
        let txn = match self.begin(req).await? {
            OpenOutcome::Created(t) | OpenOutcome::Resumed(t) => t,
            OpenOutcome::Committed(_, m) => return Ok(CommitOutcome::AlreadyCommitted(m)),
        };
        let lease = Duration::from_secs(txn.lease_seconds);
        let result = self
            .renewing(&txn.id, lease, async {
                for (path, pending) in files {
                    self.stage_pending(&txn.id, path, pending).await?;
                }
                self.commit(&txn.id).await
            })
            .await;
        if result.is_err() {
            let _ = self.abort(&txn.id).await;
        }
        result
    }

    /// A committed manifest (cached).
    pub async fn manifest(&self, repo: &RepoName, name: &Name, version: &Version) -> Result<Arc<Manifest>> {
        let key = (repo.clone(), name.clone(), version.clone());
        if let Some(m) = self.manifests.get(&key) {
            crate::telemetry::cache_lookup("manifest", true);
            return Ok(m);
        }
        crate::telemetry::cache_lookup("manifest", false);
        let deletes_before = self.deletes_so_far();
        match self.catalog.manifest(repo, name, version).await? {
            Some(m) => {
                let m = Arc::new(m);
                self.cache_manifest(deletes_before, m.clone());
                Ok(m)
            }
            None => Err(Error::not_found(format!("version {repo}/{name}@{version}"))),
        }
    }

    /// The manifest of a committed version if this process has it in memory; never asks the
    /// catalog. `None` says nothing about whether the version exists.
    pub fn remembered_version(&self, repo: &RepoName, name: &Name, version: &Version) -> Option<Arc<Manifest>> {
        self.manifests.get(&(repo.clone(), name.clone(), version.clone()))
    }

    /// Whether a version is committed (no error for absence).
    pub async fn has_version(&self, repo: &RepoName, name: &Name, version: &Version) -> Result<Option<Arc<Manifest>>> {
        match self.manifest(repo, name, version).await {
            Ok(m) => Ok(Some(m)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Forgets a cached manifest (after a delete), and keeps reads that began before from
    /// caching it again.
    pub fn invalidate(&self, repo: &RepoName, name: &Name, version: &Version) {
        let mut deletes = self.deletes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *deletes = deletes.wrapping_add(1);
        self.manifests.remove(&(repo.clone(), name.clone(), version.clone()));
    }

    /// Opens a file of a committed version (or a range of it).
    /// Reads `file`'s bytes in `range` (all of them when `None`), unchecked: a range cannot be
    /// hashed without the rest of the blob (the scrubber covers those bytes). Its size is
    /// checked, though: a copy of another size cannot hold the file, and a range of it would
    /// come out short of what the answer promised. Such a copy is quarantined; when that was
    /// a local copy (a replica's cache) while the blob store's own bytes are whole, the read
    /// is made again, once, from those.
    pub async fn read_file(&self, file: &FileEntry, range: Option<std::ops::Range<u64>>) -> Result<BlobRead> {
        let mut retried = false;
        loop {
            let read = self.blobs.read(&file.sha256, range.clone()).await?;
            if read.size == file.size {
                return Ok(read);
            }
            let detail = format!(
                "blob {} is damaged: {} bytes, the catalog says {}",
                file.sha256, read.size, file.size
            );
            crate::telemetry::blob_problem("read", false);
            let moved = self.quarantine_found(&file.sha256, &detail).await?.is_some();
            if moved || retried {
                return Err(Error::BlobDamaged {
                    digest: file.sha256,
                    detail,
                });
            }
            retried = true;
        }
    }

    pub async fn list_versions(
        &self,
        repo: &RepoName,
        name: &Name,
        after: Option<&Version>,
        limit: u32,
    ) -> Result<Vec<VersionSummary>> {
        self.catalog.list_versions(repo, name, after, limit).await
    }

    /// Committed versions of a name, the newest commit first, before `before` (exclusive).
    pub async fn list_versions_newest_first(
        &self,
        repo: &RepoName,
        name: &Name,
        before: Option<&Version>,
        limit: u32,
    ) -> Result<Vec<VersionSummary>> {
        self.catalog.list_versions_newest_first(repo, name, before, limit).await
    }

    /// Open transactions of `repos` (`None`: every repo), the soonest to expire first
    /// (`Catalog::open_transactions`).
    pub async fn open_transactions(
        &self,
        repos: Option<&[String]>,
        limit: u32,
    ) -> Result<Vec<crate::catalog::OpenTxnSummary>> {
        self.catalog.open_transactions(repos, limit).await
    }

    /// Every committed version of a name, in no particular order (`Catalog::version_names`).
    pub async fn version_names(&self, repo: &RepoName, name: &Name) -> Result<Vec<Version>> {
        self.catalog.version_names(repo, name).await
    }

    /// The version of `name` committed last, if any.
    pub async fn latest_version(&self, repo: &RepoName, name: &Name) -> Result<Option<Version>> {
        self.catalog.latest_version(repo, name).await
    }

    pub async fn list_names(
        &self,
        repo: &RepoName,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Name>> {
        self.catalog.list_names(repo, prefix, after, limit).await
    }

    /// Events after `after`; when there are none yet, waits up to `wait` for one.
    pub async fn events(&self, after: i64, wait: Duration, limit: u32) -> Result<Vec<Event>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut changed = self.catalog.event_wakeups();
            let events = self.catalog.events(after, limit).await?;
            if !events.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(events);
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// A whole garbage collection now, safe while publishes are in flight (what `intact gc`
    /// asks for): expires overdue transactions, sweeps unreferenced blobs older than `grace`
    /// and blob files the catalog does not know, page by page, and forgets old finished
    /// transactions. The background sweeper does the same work spread out and resumable.
    pub async fn gc(&self, grace: Duration) -> Result<GcReport> {
        let mut report = GcReport::default();
        // Each expiry was told (logged and counted) by the catalog write that made it: this
        // sweep's, or an earlier operation's that noticed the lapse first.
        let finished = self.catalog.expire_txns().await?;
        report.expired_transactions = finished.expired;
        let reclaimed = self.reclaim(finished).await?;
        report.blobs_deleted = reclaimed.blobs_deleted;
        report.bytes_deleted = reclaimed.bytes_deleted;
        let mut after = None;
        loop {
            let (page, swept) = self.sweep_blob_page(after.as_ref(), grace, BLOB_PAGE).await?;
            report.blobs_deleted += swept.blobs_deleted;
            report.bytes_deleted += swept.bytes_deleted;
            if page.scanned < u64::from(BLOB_PAGE) {
                break;
            }
            after = page.last;
        }
        let mut stored = self.blobs.list(None).chunks(ORPHAN_PAGE);
        while let Some(page) = stored.next().await {
            let page = page.into_iter().collect::<Result<Vec<Digest>>>()?;
            let orphans = self.catalog.sweep_orphans(&page, self.blobs.as_ref()).await?;
            report.orphan_blobs_deleted += orphans.blobs_deleted;
            report.bytes_deleted += orphans.bytes_deleted;
        }
        report.pending_files_removed = self.blobs.sweep_pending(grace.max(Duration::from_secs(3600))).await?;
        report.upload_pieces_removed = self.reclaim_upload_sessions().await?;
        report.transactions_pruned = self.catalog.prune_txns(self.config.txn_retention).await?;
        report.flights_pruned = self.catalog.prune_flights(FLIGHT_RETENTION).await?;
        crate::telemetry::gc_ran(
            "manual",
            report.blobs_deleted + report.orphan_blobs_deleted,
            report.bytes_deleted,
        );
        tracing::info!(
            expired_transactions = report.expired_transactions,
            blobs_deleted = report.blobs_deleted,
            orphan_blobs_deleted = report.orphan_blobs_deleted,
            bytes_deleted = report.bytes_deleted,
            pending_files_removed = report.pending_files_removed,
            transactions_pruned = report.transactions_pruned,
            "gc run finished"
        );
        Ok(report)
    }

    /// Sweeps one page of blob records after `after`: the page walked, and what it deleted.
    pub(crate) async fn sweep_blob_page(
        &self,
        after: Option<&Digest>,
        grace: Duration,
        limit: u32,
    ) -> Result<(crate::catalog::BlobPage, SweepReport)> {
        let page = self.catalog.unreferenced_blobs(after, grace, limit).await?;
        let swept = self
            .catalog
            .sweep_blobs(grace, &page.candidates, self.blobs.as_ref())
            .await?;
        Ok((page, swept))
    }

    /// Re-hashes every blob a committed version references, naming the versions that hold
    /// each damaged or missing one.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut after: Option<Digest> = None;
        loop {
            let page = self.catalog.committed_blobs(after.as_ref(), BLOB_PAGE).await?;
            let done = page.len() < BLOB_PAGE as usize;
            after = page.last().map(|(d, _)| *d);
            for (digest, size) in page {
                report.blobs_checked += 1;
                let (hashed, problem) = self.check_blob(&digest, size).await?;
                report.bytes_checked += hashed;
                if let Some((problem, detail)) = problem {
                    crate::telemetry::blob_problem("verify", problem == "missing");
                    let versions = self.blob_users_named(&digest).await?;
                    report.problems.push(VerifyProblem {
                        sha256: digest,
                        problem: problem.into(),
                        detail,
                        versions,
                    });
                }
            }
            if done {
                return Ok(report);
            }
        }
    }

    async fn blob_users_named(&self, digest: &Digest) -> Result<Vec<String>> {
        Ok(self
            .catalog
            .blob_users(digest, USERS_NAMED)
            .await?
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// Reads a stored blob whole and hashes it: the bytes hashed, and what is wrong, if
    /// anything (`missing`, `size mismatch`, `hash mismatch` with a detail).
    async fn check_blob(&self, digest: &Digest, size: u64) -> Result<(u64, Option<(&'static str, String)>)> {
        let mut read = match self.blobs.read(digest, None).await {
            Ok(r) => r,
            Err(Error::BlobMissing { .. }) => {
                return Ok((
                    0,
                    Some((
                        "missing",
                        "no blob stored under this digest (or it was quarantined)".into(),
                    )),
                ));
            }
            Err(e) => return Err(e),
        };
        if read.size != size {
            return Ok((
                0,
                Some((
                    "size mismatch",
                    format!("catalog says {size} bytes, blob has {}", read.size),
                )),
            ));
        }
        let mut hasher = DigestHasher::new();
        // A buffer the size of the blob, up to 1 MiB: a 200-byte file needs no megabyte.
        let mut buf = vec![0u8; usize::try_from(size).unwrap_or(1 << 20).clamp(1, 1 << 20)];
        loop {
            let n = read
                .body
                .read(&mut buf)
                .await
                .map_err(|e| Error::io(format!("reading blob {digest}"), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hashed = hasher.len();
        let actual = hasher.finish();
        if actual != *digest {
            return Ok((hashed, Some(("hash mismatch", format!("content hashes to {actual}")))));
        }
        Ok((hashed, None))
    }

    /// Opens a whole committed file with its sha256 checked on the way out: a damaged blob
    /// is never delivered as a complete body, and is quarantined (and logged with the
    /// versions it breaks) the moment the damage shows. Small files are checked before
    /// anything is returned (`BlobDamaged`); larger ones fail before their last bytes.
    pub async fn read_file_verified(self: &Arc<Self>, file: &FileEntry) -> Result<BlobRead> {
        match self.read_file_verified_once(file).await? {
            Ok(read) => Ok(read),
            // The damaged bytes were a local copy (a replica's cache), dropped when the
            // damage showed, while the blob store's own copy is good: read that one.
            Err((false, _)) => match self.read_file_verified_once(file).await? {
                Ok(read) => Ok(read),
                Err((_, e)) => Err(e),
            },
            Err((true, e)) => Err(e),
        }
    }

    /// The whole of a small committed file, verified, as one buffer: from memory when it was
    /// read before, else read, checked against its sha256 and kept. `None` for a file too
    /// large to keep (stream it with [`Store::read_file_verified`]). A damaged blob is an
    /// error before anything is returned, as with `read_file_verified`.
    pub async fn small_file(self: &Arc<Self>, file: &FileEntry) -> Result<Option<Bytes>> {
        if !self.small_files.keeps(file.size) {
            return Ok(None);
        }
        if let Some(bytes) = self.small_files.get(&file.sha256, file.size) {
            crate::telemetry::cache_lookup("small_file", true);
            return Ok(Some(bytes));
        }
        crate::telemetry::cache_lookup("small_file", false);
        let mut read = self.read_file_verified(file).await?;
        if let Some(bytes) = self.small_files.get(&file.sha256, file.size) {
            return Ok(Some(bytes));
        }
        // Evicted at once by a burst of other files: the verified bytes are in the reader.
        let mut bytes = Vec::with_capacity(usize::try_from(file.size).unwrap_or(0));
        (&mut read.body)
            .take(file.size.saturating_add(1))
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| Error::io(format!("reading blob {}", file.sha256), e))?;
        Ok(Some(Bytes::from(bytes)))
    }

    /// Bytes of small files held in memory now.
    pub fn small_file_cache_weight(&self) -> u64 {
        self.small_files.weight()
    }

    /// Larger files remembered now as having hashed right in full.
    pub fn verified_files_remembered(&self) -> usize {
        self.verified_files.len()
    }

    /// One attempt of [`Store::read_file_verified`]: the read, or the damage it found and
    /// whether that took the blob out of service (`false`: the blob store holds good bytes,
    /// or none, now).
    async fn read_file_verified_once(
        self: &Arc<Self>,
        file: &FileEntry,
    ) -> Result<std::result::Result<BlobRead, (bool, Error)>> {
        let mut read = self.blobs.read(&file.sha256, None).await?;
        if read.size != file.size {
            let detail = format!(
                "blob {} is damaged: {} bytes, the catalog says {}",
                file.sha256, read.size, file.size
            );
            crate::telemetry::blob_problem("read", false);
            let moved = self.quarantine_found(&file.sha256, &detail).await?.is_some();
            return Ok(Err((
                moved,
                Error::BlobDamaged {
                    digest: file.sha256,
                    detail,
                },
            )));
        }
        if file.size <= VERIFY_AHEAD {
            let mut bytes = Vec::with_capacity(usize::try_from(file.size).unwrap_or(0));
            (&mut read.body)
                .take(VERIFY_AHEAD + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| Error::io(format!("reading blob {}", file.sha256), e))?;
            let actual = Digest::of(&bytes);
            if actual != file.sha256 || bytes.len() as u64 != file.size {
                let detail = format!(
                    "blob {} is damaged: {} bytes hashing to {actual}",
                    file.sha256,
                    bytes.len()
                );
                crate::telemetry::blob_problem("read", false);
                let moved = self.quarantine_found(&file.sha256, &detail).await?.is_some();
                return Ok(Err((
                    moved,
                    Error::BlobDamaged {
                        digest: file.sha256,
                        detail,
                    },
                )));
            }
            let bytes = Bytes::from(bytes);
            self.small_files.insert(file.sha256, bytes.clone());
            read.body = BlobBody::reader(std::io::Cursor::new(bytes));
            return Ok(Ok(read));
        }
        let store = self.clone();
        let digest = file.sha256;
        let on_damage = Box::new(move |why: String| {
            crate::telemetry::blob_problem("read", false);
            // Reported from inside a read: the quarantine runs on its own.
            crate::cleanup::spawn("quarantining a damaged blob", async move {
                if let Err(e) = store.quarantine(&digest, &why).await {
                    tracing::error!(%digest, error = %e, "quarantining a damaged blob failed");
                }
            });
        });
        read.body = match read.body.into_file() {
            // A local file is read and hashed in the same trips to the blocking pool.
            Ok((opened, _)) => BlobBody::chunks(FileChunks::checked(
                opened,
                file_chunks::Expected {
                    digest: file.sha256,
                    size: file.size,
                    on_damage,
                    verified_files: Some(self.verified_files.clone()),
                },
            )),
            Err(body) => BlobBody::reader(crate::verified::VerifyingReader::new(
                Box::pin(body),
                file.sha256,
                file.size,
                on_damage,
            )),
        };
        Ok(Ok(read))
    }

    /// Takes a damaged blob out of service and logs which committed files it breaks; returns
    /// them. Reads of those files then fail as missing instead of serving wrong bytes. A late
    /// report, about bytes already moved aside and stored again since, changes nothing (and
    /// names no file).
    pub async fn quarantine(&self, digest: &Digest, detail: &str) -> Result<Vec<crate::BlobUser>> {
        Ok(self.quarantine_found(digest, detail).await?.unwrap_or_default())
    }

    /// [`Store::quarantine`], saying whether anything was taken out of service (`None`: the
    /// blob is absent or good now).
    async fn quarantine_found(&self, digest: &Digest, detail: &str) -> Result<Option<Vec<crate::BlobUser>>> {
        if !self.blobs.quarantine(digest).await? {
            tracing::info!(%digest, %detail, "damage reported for a blob that is absent or good now; nothing to quarantine");
            return Ok(None);
        }
        let users = self.catalog.blob_users(digest, USERS_NAMED).await?;
        let named: Vec<String> = users.iter().map(ToString::to_string).collect();
        tracing::error!(%digest, %detail, versions = named.join(", "), "damaged blob quarantined; the versions holding it need repair");
        Ok(Some(users))
    }

    /// Re-hashes every committed blob in passes, at no more than `bytes_per_second`,
    /// quarantining any that is damaged or missing its bytes, until `shutdown` resolves. Finds
    /// rot in files nobody reads (and in ones only ever read by range, which a streaming check
    /// cannot cover). A pass starts at most once per `pass_interval`: a store small enough to
    /// be read in minutes rests between passes instead of being re-read without end. Each blob
    /// is paced as at least [`SCRUB_MIN_BLOB_COST`] bytes (opening, reading and closing a file
    /// costs that much whatever its size).
    pub async fn run_scrubber(
        self: Arc<Self>,
        bytes_per_second: u64,
        pass_interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if bytes_per_second == 0 {
            return;
        }
        let mut after: Option<Digest> = None;
        // When the last pass started; none yet, so the first one starts at once.
        let mut pass_started: Option<tokio::time::Instant> = None;
        loop {
            if after.is_none() {
                // A new pass: not before the last one's interval has run out.
                if let Some(started) = pass_started {
                    // An interval too long to add is "never again".
                    let Some(due) = started.checked_add(pass_interval) else {
                        let _ = shutdown.changed().await;
                        return;
                    };
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = shutdown.changed() => return,
                    }
                }
                pass_started = Some(tokio::time::Instant::now());
            }
            let page = match self.catalog.committed_blobs(after.as_ref(), BLOB_PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    // The same page again a minute later: the pass goes on where it was.
                    tracing::warn!(error = %e, "scrubber: listing blobs failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(60)) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            };
            if page.is_empty() {
                if after.is_some() {
                    // The previous page was full and the last: the pass is over, and the
                    // next one waits for its interval like any other.
                    after = None;
                    continue;
                }
                // Nothing stored: look again later, not a whole interval later.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    _ = shutdown.changed() => return,
                }
                pass_started = None;
                continue;
            }
            after = if page.len() < BLOB_PAGE as usize {
                None
            } else {
                page.last().map(|(d, _)| *d)
            };
            for (digest, size) in page {
                let started = tokio::time::Instant::now();
                let checked = self.check_blob(&digest, size).await;
                if let Ok((hashed, problem)) = &checked {
                    crate::telemetry::scrubbed(*hashed);
                    if let Some((problem, _)) = problem {
                        crate::telemetry::blob_problem("scrub", *problem == "missing");
                    }
                }
                match checked {
                    Ok((_, Some((problem, detail)))) if problem != "missing" => {
                        if let Err(e) = self
                            .quarantine(&digest, &format!("blob {digest}: {problem}: {detail}"))
                            .await
                        {
                            tracing::error!(%digest, error = %e, "scrubber: quarantine failed");
                        }
                    }
                    Ok((_, Some((_, detail)))) => {
                        let versions = self.blob_users_named(&digest).await.unwrap_or_default();
                        tracing::error!(%digest, %detail, versions = versions.join(", "), "scrubber: a committed blob is missing");
                    }
                    Ok((_, None)) => {}
                    Err(e) => tracing::warn!(%digest, error = %e, "scrubber: reading a blob failed"),
                }
                // Pace to the configured rate: a blob of `size` bytes earns size/rate seconds.
                let budget = Duration::from_secs_f64(size.max(SCRUB_MIN_BLOB_COST) as f64 / bytes_per_second as f64);
                tokio::select! {
                    _ = tokio::time::sleep_until(started + budget) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// Notes a read of a version for least-recently-used eviction. Cheap: memory only.
    pub fn record_access(&self, m: &Manifest) {
        let now = self.now();
        if let Ok(mut pending) = self.pending_access.lock() {
            pending.insert((m.repo.clone(), m.name.clone(), m.version.clone()), now);
        }
    }

    /// Writes recorded reads to the catalog.
    pub async fn flush_access(&self) -> Result<()> {
        let batch: Vec<(RepoName, Name, Version, Timestamp)> = match self.pending_access.lock() {
            Ok(mut pending) => pending.drain().map(|((r, n, v), t)| (r, n, v, t)).collect(),
            Err(_) => Vec::new(),
        };
        self.catalog.touch_versions(&batch).await
    }

    /// Deletes a committed version (proxy-cache eviction only) and reclaims its blobs that no
    /// other version shares. Readers already streaming a file keep their open handle.
    pub async fn delete_version(
        &self,
        repo: &RepoName,
        name: &Name,
        version: &Version,
        reason: &str,
    ) -> Result<Option<Manifest>> {
        let removed = self.catalog.delete_version(repo, name, version, reason).await?;
        self.invalidate(repo, name, version);
        if let Some(m) = &removed {
            crate::telemetry::evicted(m, reason);
            let digests: Vec<Digest> = m.files.iter().map(|f| f.sha256).collect();
            self.catalog
                .sweep_blobs(Duration::ZERO, &digests, self.blobs.as_ref())
                .await?;
        }
        Ok(removed)
    }

    pub async fn repo_usage(&self, repo: &RepoName) -> Result<crate::RepoUsage> {
        self.catalog.repo_usage(repo).await
    }

    /// Evicts least-recently-read versions of `repo` until it holds at most `max_bytes`.
    /// `keep` says whether a version must stay (e.g. one being served or staged right now).
    pub async fn evict_lru(
        &self,
        repo: &RepoName,
        max_bytes: u64,
        keep: &(dyn Fn(&Name, &Version) -> bool + Send + Sync),
    ) -> Result<Vec<crate::VersionUse>> {
        self.flush_access().await?;
        let mut usage = self.catalog.repo_usage(repo).await?.bytes;
        let mut evicted = Vec::new();
        while usage > max_bytes {
            let candidates = self.catalog.least_recently_used(repo, 256).await?;
            let mut progressed = false;
            for c in candidates {
                if usage <= max_bytes {
                    break;
                }
                if keep(&c.name, &c.version) {
                    continue;
                }
                if self
                    .delete_version(repo, &c.name, &c.version, "evicted (least recently used)")
                    .await?
                    .is_some()
                {
                    usage = usage.saturating_sub(c.size);
                    progressed = true;
                    evicted.push(c);
                }
            }
            if !progressed {
                break;
            }
        }
        Ok(evicted)
    }

    /// On a shared catalog, follows the event log for `deleted` events (another replica
    /// evicting a proxy version) and forgets those versions' cached manifests, until
    /// `shutdown` resolves. A version deleted elsewhere stays served from this cache for at
    /// most the time its event takes to arrive (a notification), never for good. The
    /// embedded catalog needs none of this: its only writer invalidates as it deletes.
    pub async fn run_invalidator(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if !self.catalog.is_shared() {
            return;
        }
        let mut after = loop {
            match self.catalog.last_event_seq().await {
                Ok(seq) => break seq,
                Err(e) => {
                    tracing::warn!(error = %e, "cache invalidation: reading the event log failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        };
        loop {
            let batch = tokio::select! {
                batch = self.events(after, Duration::from_secs(30), 1000) => batch,
                _ = shutdown.changed() => return,
            };
            match batch {
                Ok(events) => {
                    for e in events {
                        if e.kind == "deleted" {
                            self.invalidate(&e.repo, &e.name, &e.version);
                        }
                        after = e.seq;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cache invalidation: following the event log failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }

    /// Refreshes the catalog's planner statistics every `every` (the first time at once)
    /// until `shutdown` resolves. See [`crate::Catalog::refresh_statistics`].
    pub async fn run_statistics_keeper(self: Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => match self.catalog.refresh_statistics().await {
                    Ok(tables) if !tables.is_empty() => {
                        tracing::debug!(tables = %tables.join(", "), "catalog statistics refreshed");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "refreshing the catalog's planner statistics failed"),
                },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Runs lease expiry every `every` until `shutdown` resolves.
    pub async fn run_reaper(self: Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.expire_due().await {
                        tracing::warn!(error = %e, "lease expiry sweep failed");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Where the embedded default keeps its catalog, for diagnostics.
pub fn catalog_path(data_dir: &Path) -> PathBuf {
    data_dir.join("catalog.db")
}
