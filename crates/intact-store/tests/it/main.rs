//! The storage conformance suite: every behaviour the publish protocol promises, run against
//! each backend combination: SQLite or PostgreSQL catalog (each PostgreSQL test on a fresh
//! database) with blobs as files, in memory, or on S3 (a Garage started by the test setup). A
//! new backend adds one `Harness` constructor and runs the same functions; `postgres` holds
//! what only a shared catalog promises (several catalogs on one database).

mod blobs;
mod cache;
mod catalog_outage;
mod conformance;
mod long_upload;
mod migrate;
mod postgres;
mod resumable;

use std::sync::Arc;

use intact_core::Timestamp;
use intact_store::{
    BlobStore, BlobTestHooks, Clock, FsBlobStore, ManualClock, MemoryBlobStore, OffsetClock, PostgresCatalog,
    S3BlobStore, S3Settings, SqliteCatalog, Store, StoreConfig,
};
use intact_testkit::TestDatabase;

/// The clock a test moves forward: a stopped one for SQLite (the catalog reads the process's
/// clock, which a test can own outright), the wall clock plus an offset for PostgreSQL (the
/// catalog reads the database's clock, which a test can only add to).
#[derive(Debug, Clone)]
pub enum TestClock {
    Manual(ManualClock),
    Offset(OffsetClock),
}

impl TestClock {
    pub fn advance(&self, by: std::time::Duration) {
        match self {
            Self::Manual(c) => c.advance(by),
            Self::Offset(c) => c.advance(by),
        }
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        match self {
            Self::Manual(c) => c.now(),
            Self::Offset(c) => c.now(),
        }
    }
}

/// Where the catalog under test lives.
enum Backend {
    Sqlite,
    Postgres(TestDatabase),
}

/// A store on fresh backends plus handles the tests poke at directly.
pub struct Harness {
    pub store: Arc<Store>,
    pub clock: TestClock,
    /// The store's blob backend, and the same backend's test hooks.
    pub blobs: Arc<dyn BlobStore>,
    pub hooks: Arc<dyn BlobTestHooks>,
    backend: Backend,
    dir: tempfile::TempDir,
}

/// Keeps the catalog's writers waiting until dropped (a test hook: lines a write up behind
/// another one, as a busy catalog would).
pub enum HeldWriter {
    Sqlite(#[allow(dead_code)] sqlx::SqliteConnection),
    Postgres(#[allow(dead_code)] sqlx::PgConnection),
}

impl Harness {
    /// Blocks the catalog's writers from outside the store, as another writer would: on
    /// SQLite the write lock; on PostgreSQL every transaction row (a commit, renewal or
    /// rollback waits for its row; reads go on).
    pub async fn hold_writer(&self) -> HeldWriter {
        use sqlx::Connection;
        match &self.backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", self.dir.path().join("catalog.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("second connection");
                sqlx::raw_sql("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .expect("take the write lock");
                HeldWriter::Sqlite(conn)
            }
            Backend::Postgres(db) => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("second connection");
                sqlx::raw_sql("BEGIN; LOCK TABLE txns IN EXCLUSIVE MODE")
                    .execute(&mut conn)
                    .await
                    .expect("lock the transaction rows");
                HeldWriter::Postgres(conn)
            }
        }
    }

    /// The PostgreSQL database under test, if that is the backend.
    pub fn postgres(&self) -> Option<&TestDatabase> {
        match &self.backend {
            Backend::Postgres(db) => Some(db),
            Backend::Sqlite => None,
        }
    }
}

fn test_store_config() -> StoreConfig {
    StoreConfig {
        gc_grace: std::time::Duration::ZERO,
        upload_idle_timeout: std::time::Duration::from_secs(2),
        ..StoreConfig::default()
    }
}

pub async fn sqlite_fs() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Arc::new(FsBlobStore::open(dir.path()).await.expect("open blobs"));
    sqlite(dir, blobs.clone(), blobs).await
}

pub async fn sqlite_memory() -> Harness {
    let blobs = Arc::new(MemoryBlobStore::new());
    sqlite(tempfile::tempdir().expect("tempdir"), blobs.clone(), blobs).await
}

pub async fn postgres_fs() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Arc::new(FsBlobStore::open(dir.path()).await.expect("open blobs"));
    postgres(dir, blobs.clone(), blobs).await
}

pub async fn sqlite_s3() -> Harness {
    let blobs = Arc::new(s3_blobs("conformance", |_| {}).await);
    sqlite(tempfile::tempdir().expect("tempdir"), blobs.clone(), blobs).await
}

/// What replicas run on: a shared PostgreSQL catalog and an S3 bucket.
pub async fn postgres_s3() -> Harness {
    let blobs = Arc::new(s3_blobs("conformance", |_| {}).await);
    postgres(tempfile::tempdir().expect("tempdir"), blobs.clone(), blobs).await
}

/// A blob store on the shared test Garage under a prefix of its own; `adjust` changes the
/// settings first.
pub async fn s3_blobs(test: &str, adjust: impl FnOnce(&mut S3Settings)) -> S3BlobStore {
    let settings = {
        let garage = tokio::task::spawn_blocking(intact_testkit::shared_garage)
            .await
            .expect("start garage");
        let mut settings = s3_settings(garage, test);
        adjust(&mut settings);
        settings
    };
    S3BlobStore::open(&settings).await.expect("open S3 blob store")
}

pub fn s3_settings(garage: &intact_testkit::Garage, test: &str) -> S3Settings {
    let mut settings =
        S3Settings::from_url(&format!("s3://{}/{}", garage.bucket, garage.prefix(test))).expect("s3 url");
    settings.endpoint = Some(garage.endpoint.clone());
    settings.region = Some(garage.region.clone());
    settings.credentials = Some((garage.access_key_id.clone(), garage.secret_access_key.clone()));
    // One process, one test: every pending object not held is a leftover.
    settings.pending_min_age = std::time::Duration::ZERO;
    settings
}

/// A SQLite catalog in `dir` over `blobs`.
async fn sqlite(dir: tempfile::TempDir, blobs: Arc<dyn BlobStore>, hooks: Arc<dyn BlobTestHooks>) -> Harness {
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let catalog = SqliteCatalog::open(&dir.path().join("catalog.db"), Arc::new(clock.clone()))
        .await
        .expect("open catalog");
    let clock = TestClock::Manual(clock);
    let store = Store::new(
        Arc::new(catalog),
        blobs.clone(),
        Arc::new(clock.clone()),
        test_store_config(),
    );
    Harness {
        store: Arc::new(store),
        clock,
        blobs,
        hooks,
        backend: Backend::Sqlite,
        dir,
    }
}

/// A PostgreSQL catalog on a fresh database over `blobs`.
async fn postgres(dir: tempfile::TempDir, blobs: Arc<dyn BlobStore>, hooks: Arc<dyn BlobTestHooks>) -> Harness {
    let db = TestDatabase::create().await;
    let clock = OffsetClock::new();
    let catalog = PostgresCatalog::open(&db.url)
        .await
        .expect("open catalog")
        .with_time_offset(clock.clone());
    let clock = TestClock::Offset(clock);
    let store = Store::new(
        Arc::new(catalog),
        blobs.clone(),
        Arc::new(clock.clone()),
        test_store_config(),
    );
    Harness {
        store: Arc::new(store),
        clock,
        blobs,
        hooks,
        backend: Backend::Postgres(db),
        dir,
    }
}

macro_rules! suite {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let h = crate::$backend().await;
                    crate::conformance::$test(&h).await;
                }
            )*
        }
    };
}

/// Every promise of the conformance suite, handed to `$m` after `$args` (one list for every
/// backend, so none can be left out on one of them).
macro_rules! every_promise {
    ($m:ident!($($args:tt)*)) => {
        $m!($($args)*

    publish_then_read_back,
    nothing_visible_before_commit,
    auto_versions_count_up,
    idempotent_retry_returns_same_transaction_and_version,
    idempotency_key_reused_for_other_request_is_refused,
    second_opener_is_locked_out,
    waiter_gets_the_version_after_holder_aborts,
    republishing_a_committed_version_compares_content,
    identical_recommit_is_idempotent_and_different_conflicts,
    commit_is_idempotent,
    abort_reclaims_staged_blobs,
    expired_lease_cannot_commit_and_releases_lock,
    every_lapsed_lease_is_told_once_whichever_operation_notices_it,
    checksum_mismatch_stages_nothing,
    gc_keeps_blobs_of_open_transactions,
    gc_deletes_unreferenced_and_orphan_blobs,
    concurrent_publishers_exactly_one_wins,
    events_follow_commit_order,
    verify_finds_damaged_and_missing_blobs,
    listing_paginates_in_commit_order,
    listing_newest_first_pages_backwards_in_commit_order,
    open_transactions_are_listed_with_holder_and_lease,
    version_names_are_every_committed_version_and_nothing_else,
    tokens_are_kept_hashed_revoked_for_good_and_owners_counted,
    hooks_are_claimed_by_one_holder_and_keep_their_cursor,
    names_are_browsable_by_prefix,
    duplicate_content_is_stored_once,
    files_are_staged_by_digest_only_when_the_store_holds_the_bytes,
    a_version_by_editing_another_costs_only_the_changes,
    tags_move_by_compare_and_swap_with_history,
    racing_tag_moves_have_one_winner,
    lru_eviction_deletes_whole_versions,
    gc_racing_publishes_never_loses_a_committed_blob,
    commit_never_names_a_file_staged_after_its_check,
    commit_racing_a_rollback_or_expiry_is_refused_as_not_open,
    manifest_cache_forgets_a_version_deleted_during_a_read,
    manifest_reads_never_see_a_version_without_its_files,
    gc_keeps_pending_blobs_still_held,
    leases_are_judged_by_the_clock_read_after_waiting_for_the_writer,
    long_polls_wake_for_expiries_noticed_by_other_operations,
    commit_refuses_while_an_upload_is_streaming,
    a_stalled_upload_ends_instead_of_holding_its_lock,
    a_trickling_upload_is_ended,
    a_trickle_under_a_short_lease_is_ended_too,
    a_slow_finish_after_the_whole_body_is_not_held_against_the_client,
    the_scrubber_quarantines_rot_then_rests_until_its_next_pass,
    damaged_blobs_are_never_read_whole_and_are_quarantined,
    versions_no_file_system_can_hold_are_refused,
    lock_waiters_do_not_retry_writes_on_unrelated_changes,
    a_late_damage_report_never_quarantines_a_healed_blob,
    an_upload_renews_a_lease_that_runs_out_before_half_a_lease_has_passed,
    flights_elect_one_leader_and_share_its_outcome,
    gc_forgets_ended_flights,
    recorded_uploads_count_until_ended_or_lapsed,
    a_transaction_stages_at_most_max_files_paths_even_concurrently,
    the_sweeper_holds_one_lease_pages_through_and_resumes,
    blob_listing_is_ordered_and_resumes_after_a_digest,
    resumable_uploads_count_durable_pieces_and_complete_hashed,
    small_resumable_requests_renew_the_lease,
    a_broken_upload_request_keeps_what_arrived,
    resumable_uploads_refuse_bytes_other_than_declared,
    upload_sessions_end_with_their_transaction_and_leave_no_bytes,
    racing_pieces_at_one_offset_count_once,
    a_trickling_upload_request_is_ended_and_keeps_what_it_sent,
        );
    };
}

every_promise!(suite!(sqlite_fs:));
every_promise!(suite!(sqlite_memory:));
every_promise!(suite!(sqlite_s3:));
every_promise!(suite!(postgres_fs:));
every_promise!(suite!(postgres_s3:));
