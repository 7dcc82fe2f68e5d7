//! The `Catalog` contract: which versions exist, which transactions are open, and the event
//! log. Every state change that readers can observe happens inside exactly one catalog
//! transaction. All SQL lives behind this trait so SQLite and PostgreSQL backends pass one
//! conformance suite.

mod columns;
pub mod flight;
mod postgres;
pub mod rules;
mod sessions;
mod sqlite;
pub mod sweeper;

use std::time::Duration;

use async_trait::async_trait;
use intact_core::{Digest, FileEntry, FilePath, Manifest, Name, RepoName, Tag, Timestamp, TxnId, TxnState, Version};
use serde::Serialize;

pub use flight::{FlightClaim, FlightEnd, FlightFailure, FlightState};
pub use postgres::PostgresCatalog;
pub use sessions::{UploadPiece, UploadSession};
pub use sqlite::SqliteCatalog;
pub use sweeper::{BlobPage, FinishedPass, SweepCounts, SweepPhase, SweepProgress, SweeperRecord};

use crate::tokens::{NewToken, TokenCensus, TokenRecord};
use crate::{BlobStore, Result};

/// Which version a new transaction is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSpec {
    Exact(Version),
    /// The next integer version (`1`, `2`, ...) of the name, allocated atomically.
    Auto,
}

/// A request to open a transaction.
#[derive(Debug, Clone)]
pub struct NewTxn {
    pub id: TxnId,
    pub repo: RepoName,
    pub name: Name,
    pub version: VersionSpec,
    /// A JSON object.
    pub metadata: serde_json::Value,
    pub lease: Duration,
    pub idempotency_key: Option<String>,
    /// The token that opens it (`None`: anonymous, or intact's own workers).
    pub owner: Option<String>,
    /// A committed version of the same name whose files the transaction starts with (a
    /// version made by editing another). `NotFound` when it does not exist.
    pub base: Option<Version>,
}

/// A transaction as the catalog knows it, with the files staged so far.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TxnRecord {
    pub id: TxnId,
    pub repo: RepoName,
    pub name: Name,
    pub version: Version,
    pub state: TxnState,
    pub metadata: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Lease length; activity renews the lease by this much.
    pub lease_seconds: u64,
    pub files: Vec<FileEntry>,
}

/// A transaction's state and lease.
#[derive(Debug, Clone)]
pub struct TxnStatus {
    /// The repository the transaction writes into (what access control checks).
    pub repo: RepoName,
    pub state: TxnState,
    pub expires_at: Timestamp,
    pub lease: Duration,
}

#[derive(Debug)]
pub enum OpenOutcome {
    /// A new transaction.
    Created(TxnRecord),
    /// An idempotent retry found its transaction still open.
    Resumed(TxnRecord),
    /// An idempotent retry found its transaction already committed: here is the version.
    Committed(TxnRecord, Manifest),
}

#[derive(Debug)]
pub enum CommitOutcome {
    /// This call made the version visible.
    Committed(Manifest),
    /// The version was already committed with identical content (or by this very transaction
    /// earlier): nothing changed.
    AlreadyCommitted(Manifest),
}

impl CommitOutcome {
    pub fn manifest(&self) -> &Manifest {
        match self {
            Self::Committed(m) | Self::AlreadyCommitted(m) => m,
        }
    }
    pub fn into_manifest(self) -> Manifest {
        match self {
            Self::Committed(m) | Self::AlreadyCommitted(m) => m,
        }
    }
}

/// One committed version in a listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionSummary {
    pub version: Version,
    pub created_at: Timestamp,
    pub size: u64,
    pub files: u64,
}

/// An open transaction as an operator watches it: what it writes, who holds it and until
/// when its lease runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OpenTxnSummary {
    pub id: TxnId,
    pub repo: RepoName,
    pub name: Name,
    pub version: Version,
    /// The token that opened it (`None`: anonymous, or intact's own workers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub created_at: Timestamp,
    /// When the lease runs out unless the holder renews it.
    pub expires_at: Timestamp,
    /// Files staged so far.
    pub staged_files: u64,
}

/// An entry of the event log, in commit order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Event {
    pub seq: i64,
    pub at: Timestamp,
    /// `committed`, `aborted`, `deleted`, `tagged` or `untagged` (a tag move: `data` has
    /// `tag`, `previous` and `by`; `version` is where it points now, or pointed when removed).
    pub kind: String,
    pub repo: RepoName,
    pub name: Name,
    pub version: Version,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<TxnId>,
    pub data: serde_json::Value,
}

/// Transactions a lease sweep (or an abort) finished, with the blobs they had staged.
#[derive(Debug, Default)]
pub struct Finished {
    pub txns: Vec<TxnId>,
    pub staged_digests: Vec<Digest>,
    /// How many of `txns` a sweep expired itself. The others had already ended on another
    /// path (an expiry a commit, renewal or open noticed, told then) and only their staged
    /// rows were left to reclaim.
    pub expired: u64,
}

/// The transactions one catalog write expired (their lease found run out), told to operators
/// once that write is durable and never if it is rolled back. Whichever operation notices a
/// lapse (the reaper's sweep, a commit, a renewal, an upload, an open taking the version's
/// lock over) expires it inside its own write, under the lock that serializes writes to the
/// transaction's row: exactly one write moves it out of `open`, and only that one tells.
#[derive(Debug, Default)]
pub(crate) struct Expiries(Vec<TxnRecord>);

impl Expiries {
    pub(crate) fn push(&mut self, rec: &TxnRecord) {
        self.0.push(rec.clone());
    }

    /// The write that expired these committed: one log line and one count each.
    pub(crate) fn durable(self) {
        for rec in &self.0 {
            crate::telemetry::txn_expired(rec);
        }
    }
}

/// How much a repository holds.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct RepoUsage {
    pub versions: u64,
    pub bytes: u64,
}

/// A version with its size and last read, for least-recently-used eviction.
#[derive(Debug, Clone, Serialize)]
pub struct VersionUse {
    pub name: Name,
    pub version: Version,
    pub size: u64,
    pub last_access: Timestamp,
}

/// A file of a committed version that holds a given blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobUser {
    pub repo: RepoName,
    pub name: Name,
    pub version: Version,
    pub path: FilePath,
}

impl std::fmt::Display for BlobUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}:{}", self.repo, self.name, self.version, self.path)
    }
}

/// What a tag must point at for a move to happen (compare-and-swap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagExpectation {
    /// Move whatever it points at.
    Any,
    /// Only create it: it must not exist.
    Absent,
    /// It must point at this version.
    Version(Version),
}

/// A request to point `tag` of (repo, name) at `version`, or to remove it (`None`).
#[derive(Debug, Clone)]
pub struct TagMove {
    pub repo: RepoName,
    pub name: Name,
    pub tag: Tag,
    pub version: Option<Version>,
    pub expect: TagExpectation,
    /// The token moving it (`None`: anonymous).
    pub by: Option<String>,
}

/// Where a tag points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TagRecord {
    pub tag: Tag,
    pub version: Version,
    pub moved_at: Timestamp,
    /// The token that moved it last (absent: anonymous).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_by: Option<String>,
}

/// What a tag move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMoved {
    /// Where the tag points now (`None`: removed).
    pub now: Option<TagRecord>,
    /// Where it pointed before.
    pub previous: Option<Version>,
    /// `false` when it already pointed where asked (a retry): nothing was written.
    pub moved: bool,
}

/// One move of a tag, as its history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TagHistoryEntry {
    /// The event that told the move (`tagged` or `untagged`).
    pub seq: i64,
    /// Where the move pointed it (`null`: the tag was removed).
    pub version: Option<Version>,
    /// Where it pointed before (`null`: it was created).
    pub previous: Option<Version>,
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// What a blob sweep removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SweepReport {
    pub blobs_deleted: u64,
    pub bytes_deleted: u64,
}

/// The catalog owns its clock: every write method reads "now" inside its own transaction,
/// once it holds whatever serializes writers, so a lease is never judged by a reading taken
/// before a wait (and, on a shared catalog, never by one replica's clock).
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// Opens a transaction, or answers an idempotent retry. Takes over (and expires) a lock
    /// whose lease ran out. Errors: `Locked`, `Exists`, `IdempotencyMismatch`.
    async fn open_txn(&self, req: &NewTxn) -> Result<OpenOutcome>;

    /// A transaction with its staged files. `NotFound` for unknown ids.
    async fn txn(&self, id: &TxnId) -> Result<TxnRecord>;

    /// The open transactions of `repo` (at most `limit`), oldest first.
    async fn open_txns(&self, repo: &RepoName, limit: u32) -> Result<Vec<TxnId>>;

    /// A transaction's state and lease, without its staged files (cheap; no write).
    async fn txn_status(&self, id: &TxnId) -> Result<TxnStatus>;

    /// Extends an open transaction's lease to the catalog's now + lease. `TxnNotOpen` once it
    /// is final (an expired lease cannot be revived).
    async fn renew_txn(&self, id: &TxnId) -> Result<TxnRecord>;

    /// Records `file` as staged in an open, unexpired transaction (replacing the same path)
    /// and registers its blob as live, in one catalog transaction. Must be called *before*
    /// the blob is persisted, so that no sweep can delete the bytes in between. It takes the
    /// same per-digest exclusion as the sweeps (see `sweep_blobs`). With `max_files`, a path
    /// not yet staged is refused (`TooManyFiles`) once the transaction holds that many: the
    /// count is taken inside the same write, under the transaction's row lock, so concurrent
    /// uploads into one transaction cannot exceed it together.
    async fn stage_file(&self, id: &TxnId, file: &FileEntry, max_files: Option<u64>) -> Result<()>;

    /// The visibility point: inside one catalog transaction, checks the transaction is open
    /// and its lease unexpired, compares with any committed version of the same key, inserts
    /// the version, its files and the `committed` event. Repeated commits are idempotent.
    /// `verified` is the staged file list whose blobs the caller found durable: if the
    /// transaction's staged files differ (an upload registered a file after the check), the
    /// commit is refused (`UploadsInProgress`, retryable), so the version never names a blob
    /// that might not be in place yet.
    async fn commit_txn(&self, id: &TxnId, verified: &[FileEntry]) -> Result<CommitOutcome>;

    /// Rolls an open transaction back (`aborted` event). Returns the blobs it had staged so
    /// the caller can reclaim them. Aborting a final transaction is `TxnNotOpen`, except an
    /// already-aborted one, which is a no-op.
    async fn abort_txn(&self, id: &TxnId) -> Result<Finished>;

    /// Expires every open transaction whose lease ran out (`expired` events).
    async fn expire_txns(&self) -> Result<Finished>;

    async fn manifest(&self, repo: &RepoName, name: &Name, version: &Version) -> Result<Option<Manifest>>;

    /// Committed versions of a name in commit order, after the version `after` (exclusive).
    async fn list_versions(
        &self,
        repo: &RepoName,
        name: &Name,
        after: Option<&Version>,
        limit: u32,
    ) -> Result<Vec<VersionSummary>>;

    /// Committed versions of a name, the newest commit first, before the version `before`
    /// (exclusive; `BadRequest` naming `before` when it is not a committed version): the
    /// index `list_versions` walks, walked backwards, so a page costs the same with 100,000
    /// versions as with ten.
    async fn list_versions_newest_first(
        &self,
        repo: &RepoName,
        name: &Name,
        before: Option<&Version>,
        limit: u32,
    ) -> Result<Vec<VersionSummary>>;

    /// Open transactions (at most `limit`), the soonest to expire first: of the repos named in
    /// `repos`, or of every repo when it is `None`. The filter is the query's, so a caller who
    /// may read only some repos gets up to `limit` of theirs, not what is left of `limit`.
    async fn open_transactions(&self, repos: Option<&[String]>, limit: u32) -> Result<Vec<OpenTxnSummary>>;

    /// The token that opened transaction `id`: `None` when it was anonymous or intact's own,
    /// and once its record was pruned (`prune_txns`), as for an unknown id.
    async fn txn_owner(&self, id: &TxnId) -> Result<Option<String>>;

    /// Every committed version of a name, in no particular order: for answers that sort the
    /// whole set themselves (the Go `list`), without the paging and fields of `list_versions`.
    async fn version_names(&self, repo: &RepoName, name: &Name) -> Result<Vec<Version>>;

    /// The version of a name committed last (the highest event position), if any.
    async fn latest_version(&self, repo: &RepoName, name: &Name) -> Result<Option<Version>>;

    /// Names with at least one committed version, sorted, starting with `prefix`, after `after`.
    async fn list_names(&self, repo: &RepoName, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<Name>>;

    /// Events with `seq > after`, in commit order.
    async fn events(&self, after: i64, limit: u32) -> Result<Vec<Event>>;

    /// Whether a write can be committed right now (a readiness probe; writes nothing that
    /// changes anything).
    async fn check_writable(&self) -> Result<()>;

    /// Whether other processes (replicas) write to this catalog too. Then nothing open in it
    /// may be taken for a dead process's leftover: it may belong to a live replica, and ends
    /// only by its owner or its lease.
    fn is_shared(&self) -> bool;

    /// Changes (at least) whenever events may have been appended or a flight finished, by
    /// any writer of this catalog: event followers and flight followers wait on it instead of
    /// polling. Spurious changes are allowed.
    fn event_wakeups(&self) -> tokio::sync::watch::Receiver<u64>;

    /// The highest event sequence number committed so far (0 when none).
    async fn last_event_seq(&self) -> Result<i64>;

    /// Deletes those of `digests` that no committed file and no staged file references and
    /// that were registered at least `min_age` ago by the catalog's clock.
    ///
    /// The contract is *mutual exclusion per digest*: each blob file is deleted while the
    /// sweep holds that digest's exclusion, which `stage_file` of the same digest also takes,
    /// and the "unreferenced" check is made under it. So a concurrent `stage_file` of the same
    /// digest either happens first (the sweep then sees the reference and keeps the blob) or
    /// after the delete (and its upload re-persists the bytes it still holds). How a backend
    /// excludes is its own (the embedded catalog's single writer covers every digest at
    /// once, held a few milliseconds at a time; a shared catalog locks the digest alone, so
    /// replicas sweep and publish side by side). A digest whose exclusion is busy may be
    /// skipped until the next sweep.
    async fn sweep_blobs(&self, min_age: Duration, digests: &[Digest], blobs: &dyn BlobStore) -> Result<SweepReport>;

    /// One page of blob records after `after` in digest order (at most `limit`), read without
    /// holding anything a writer waits for: which of them are unreferenced and registered at
    /// least `min_age` ago. Candidates only: [`Catalog::sweep_blobs`] checks again.
    async fn unreferenced_blobs(&self, after: Option<&Digest>, min_age: Duration, limit: u32) -> Result<BlobPage>;

    /// Takes (or renews) the background sweeper's lease for `holder` if nobody else holds a
    /// live one; returns the sweeper's progress, or `None` when another holder's lease runs.
    async fn claim_sweeper(&self, holder: &str, lease: Duration) -> Result<Option<SweepProgress>>;

    /// Records `progress` and renews the lease, if `holder` still holds it (`false`: the
    /// lease lapsed and another process took it; stop sweeping).
    async fn save_sweeper(&self, holder: &str, progress: &SweepProgress, lease: Duration) -> Result<bool>;

    /// Gives the lease up (when `holder` holds it), so another process may sweep at once.
    async fn release_sweeper(&self, holder: &str) -> Result<()>;

    /// The sweeper's record, for status reports.
    async fn sweeper(&self) -> Result<SweeperRecord>;

    /// Deletes stored blob files the catalog has no record of (left by a restored catalog or
    /// by hand), each under its digest's exclusion like `sweep_blobs`.
    async fn sweep_orphans(&self, candidates: &[Digest], blobs: &dyn BlobStore) -> Result<SweepReport>;

    /// Blobs some committed version references, with their recorded size, in digest order
    /// after `after`, at most `limit` (so a walk of every blob pages instead of loading all).
    async fn committed_blobs(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>>;

    /// Where committed versions use `digest`: (repo, name, version, file path), at most `limit`.
    async fn blob_users(&self, digest: &Digest, limit: u32) -> Result<Vec<BlobUser>>;

    /// Records reads of versions (batched by the caller; never on the hot path).
    async fn touch_versions(&self, accesses: &[(RepoName, Name, Version, Timestamp)]) -> Result<()>;

    /// Committed versions and bytes of a repository.
    async fn repo_usage(&self, repo: &RepoName) -> Result<RepoUsage>;

    /// A repository's versions, least recently read first.
    async fn least_recently_used(&self, repo: &RepoName, limit: u32) -> Result<Vec<VersionUse>>;

    /// Removes a committed version (its files and name entry) with a `deleted` event, in one
    /// catalog transaction. Only eviction of proxy caches uses this: hosted versions are
    /// immutable and permanent. Returns the removed manifest, so its blobs can be swept.
    async fn delete_version(
        &self,
        repo: &RepoName,
        name: &Name,
        version: &Version,
        reason: &str,
    ) -> Result<Option<Manifest>>;

    /// Moves (or with `version: None` removes) a tag in one catalog transaction that also
    /// appends its `tagged` / `untagged` event and its history entry, if it points where
    /// `expect` says (`TagMoved` otherwise). The version must be committed (`NotFound`).
    /// Pointing it where it already points is a retry: nothing is written.
    async fn move_tag(&self, mv: &TagMove) -> Result<TagMoved>;

    /// Where a tag points, if it exists.
    async fn tag(&self, repo: &RepoName, name: &Name, tag: &Tag) -> Result<Option<TagRecord>>;

    /// A name's tags, by tag.
    async fn tags(&self, repo: &RepoName, name: &Name) -> Result<Vec<TagRecord>>;

    /// A tag's moves, newest first, at most `limit`, older than event `before` when given.
    async fn tag_history(
        &self,
        repo: &RepoName,
        name: &Name,
        tag: &Tag,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<TagHistoryEntry>>;

    /// Takes `path` out of open transaction `id` (renewing its lease as any activity does);
    /// `false` when it held no such path.
    async fn unstage_file(&self, id: &TxnId, path: &FilePath) -> Result<bool>;

    /// Claims flight `key` for `holder` with a lease of `lease` (see `flight`): `Leading`
    /// when nobody leads, the leader's lease lapsed, or its last outcome does not answer for
    /// it any more; otherwise who leads, or the definitive failure remembered.
    async fn claim_flight(&self, key: &str, holder: &str, lease: Duration) -> Result<FlightClaim>;

    /// Extends `holder`'s lease on flight `key` to the catalog's now + `lease`. `false` when
    /// `holder` no longer leads it (its lease lapsed and another took over).
    async fn renew_flight(&self, key: &str, holder: &str, lease: Duration) -> Result<bool>;

    /// Ends `holder`'s flight `key` with `end` and wakes its followers; a no-op when another
    /// holder took the flight over.
    async fn finish_flight(&self, key: &str, holder: &str, end: &FlightEnd) -> Result<()>;

    /// Flight `key` as it stands (`None`: finished with success, or never claimed).
    async fn flight(&self, key: &str) -> Result<Option<FlightState>>;

    /// Records upload `upload` (an id unique among every process's) as streaming into
    /// transaction `txn`, counting for `lease` unless renewed (a dead process's upload stops
    /// counting then). Forgets uploads whose lease lapsed.
    async fn start_upload(&self, txn: &TxnId, upload: &str, lease: Duration) -> Result<()>;

    /// Extends upload `upload`'s lease to the catalog's now + `lease`.
    async fn renew_upload(&self, upload: &str, lease: Duration) -> Result<()>;

    /// Upload `upload` is over (staged or failed).
    async fn end_upload(&self, upload: &str) -> Result<()>;

    /// How many uploads into `txn` count right now, on any process.
    async fn uploads_in_flight(&self, txn: &TxnId) -> Result<u64>;

    /// Records a new resumable upload session (offset 0) into transaction `session.txn`,
    /// which must be open with its lease unexpired (`TxnNotOpen` otherwise).
    async fn create_upload_session(&self, session: &UploadSession) -> Result<()>;

    /// A session as it stands. `NotFound` when there is none (never made, completed,
    /// discarded, or its transaction ended).
    async fn upload_session(&self, upload: &str) -> Result<UploadSession>;

    /// A session's pieces, in order of their offsets.
    async fn upload_pieces(&self, upload: &str) -> Result<Vec<UploadPiece>>;

    /// Counts piece `piece` (already durable in the blob store) as the session's bytes from
    /// `piece.start`, in one catalog transaction: only when the session still exists, its
    /// transaction is open and unexpired, and its offset is `piece.start` (another writer may
    /// have moved it: `UploadOffset` with the offset it is at). Returns the new offset. A
    /// refused piece is the caller's to delete.
    async fn add_upload_piece(&self, upload: &str, piece: &UploadPiece) -> Result<u64>;

    /// Ends a session: it takes no more pieces and is no longer found, and its row stays
    /// until its bytes are deleted ([`Catalog::ended_upload_sessions`]). `false` when there
    /// was none (or it had ended).
    async fn discard_upload_session(&self, upload: &str) -> Result<bool>;

    /// Ends every session whose transaction is no longer open (committed, rolled back,
    /// expired, or forgotten). Returns how many.
    async fn discard_finished_upload_sessions(&self) -> Result<u64>;

    /// Ended sessions (at most `limit`) whose pieces are to be deleted from the blob store,
    /// then the sessions forgotten with [`Catalog::forget_upload_sessions`].
    async fn ended_upload_sessions(&self, limit: u32) -> Result<Vec<String>>;

    /// Forgets ended sessions and their pieces' rows, once their bytes are deleted.
    async fn forget_upload_sessions(&self, uploads: &[String]) -> Result<()>;

    /// Forgets final transactions (and their idempotency keys) finished more than
    /// `older_than` ago.
    async fn prune_txns(&self, older_than: Duration) -> Result<u64>;

    /// Forgets flights that ended more than `older_than` ago: a failure no longer remembered
    /// (a transient one from when it failed, a definitive one from its `until`), or a leader
    /// whose lease lapsed with no one taking over. Without this every distinct key that ever
    /// failed upstream (any client can ask for modules that do not exist) would keep a row.
    /// Returns how many.
    async fn prune_flights(&self, older_than: Duration) -> Result<u64>;

    /// Adds a token. `Exists` when a token (even a revoked one) already has its name.
    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord>;

    /// Every token, revoked ones included, by name.
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;

    /// The token whose secret hashes to `secret_sha256` (revoked or expired ones too: the
    /// caller says why they cannot be used).
    async fn token_by_secret_hash(&self, secret_sha256: &str) -> Result<Option<TokenRecord>>;

    /// Adds `token` as it is (hash, dates, revocation), for copying a catalog: `false` when a
    /// token of that name exists already (left as it is).
    async fn import_token(&self, token: &TokenRecord) -> Result<bool>;

    /// Marks token `name` revoked (a no-op when it already is). `None` when there is none.
    async fn revoke_token(&self, name: &str) -> Result<Option<TokenRecord>>;

    /// How many transactions token `owner` holds open (expired-but-unswept ones included:
    /// the reaper ends them within a second).
    async fn open_txns_owned_by(&self, owner: &str) -> Result<u64>;

    /// How many transactions are open in the whole catalog (expired-but-unswept ones
    /// included), for the operators' metrics.
    async fn count_open_txns(&self) -> Result<u64>;

    /// Creates a webhook delivering events written from now on; `Exists` for a taken name.
    async fn create_hook(&self, hook: &crate::hooks::NewHook) -> Result<crate::hooks::HookRecord>;

    /// Every webhook, by name.
    async fn hooks(&self) -> Result<Vec<crate::hooks::HookRecord>>;

    /// Deletes a webhook (`false`: there was none).
    async fn delete_hook(&self, name: &str) -> Result<bool>;

    /// Takes hook `name` for delivery by `holder` for `lease`, if nobody else holds it and
    /// its next attempt is due: the hook with its secret, or `None`.
    async fn claim_hook(
        &self,
        name: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<(crate::hooks::HookRecord, String)>>;

    /// Records a delivery round of `holder` (`false`: the hook is gone or held by another).
    async fn record_hook(&self, name: &str, holder: &str, progress: &crate::hooks::HookProgress) -> Result<bool>;

    /// Whether any token was ever made (revoked ones count: once access control is on, it
    /// stays on).
    async fn has_tokens(&self) -> Result<bool>;

    /// How many tokens exist and how many of them are revoked. Tokens are never deleted and a
    /// revocation is set once, so this changes with every create, import and revocation:
    /// servers poll it to learn when what they remember of tokens is stale.
    async fn token_census(&self) -> Result<TokenCensus>;

    /// Brings the query planner's statistics up to date where enough of a table changed
    /// since they were gathered, so that lookups keep using the indexes meant for them as the
    /// catalog grows. Returns the tables refreshed. Cheap when nothing is stale; run
    /// periodically by [`crate::Store::run_statistics_keeper`].
    async fn refresh_statistics(&self) -> Result<Vec<String>>;
}

/// A token row's columns, as both backends read them.
pub(crate) fn token_record(
    name: String,
    secret_sha256: String,
    scopes: &str,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
) -> Result<TokenRecord> {
    let scopes: Vec<crate::tokens::Scope> = serde_json::from_str(scopes).map_err(|e| crate::Error::Catalog {
        context: format!("reading token {name}'s scopes"),
        source: Box::new(e),
    })?;
    Ok(TokenRecord {
        name,
        secret_sha256,
        scopes,
        created_at: Timestamp(created_at),
        expires_at: expires_at.map(Timestamp),
        revoked_at: revoked_at.map(Timestamp),
    })
}
