//! The catalog going away and coming back: a PostgreSQL catalog reached through a TCP relay
//! the test cuts (every connection reset, new ones refused) and restores, as a database
//! restart or a network failure would. The store must answer promptly with a retryable error
//! while the catalog is away, keep serving what it has cached, report not-ready, and come
//! back by itself: writes work again and event wake-ups resume, with no restart. And the
//! network going silent (every byte dropped, no connection closed, as in a partition): each
//! call still ends within the catalog's call limit, answered as unavailable.

use std::sync::Arc;
use std::time::Duration;

use intact_core::{FilePath, Name, RepoName, Version};
use intact_store::store::BeginRequest;
use intact_store::{FsBlobStore, OpenOutcome, PostgresCatalog, Store, StoreConfig, SystemClock};
use intact_testkit::{Relay, TestDatabase};

fn repo() -> RepoName {
    RepoName::parse("files").expect("repo")
}

fn begin_request(version: &str) -> BeginRequest {
    BeginRequest {
        repo: repo(),
        name: Name::parse("app").expect("name"),
        version: version.parse().expect("version"),
        metadata: serde_json::json!({}),
        lease: None,
        idempotency_key: None,
        wait: Duration::ZERO,
        base: None,
    }
}

async fn publish(store: &Store, version: &str) -> intact_store::Result<()> {
    let t = match store.begin(begin_request(version)).await? {
        OpenOutcome::Created(t) | OpenOutcome::Resumed(t) => t,
        OpenOutcome::Committed(..) => return Ok(()),
    };
    let mut body = version.as_bytes();
    store
        .put_file(&t.id, FilePath::parse("a").expect("path"), &mut body, None, None)
        .await?;
    store.commit(&t.id).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_going_away_gives_prompt_retryable_errors_and_service_resumes_by_itself() {
    let db = TestDatabase::create().await;
    let relay = Relay::start("127.0.0.1:5432").await;
    let via_relay = db
        .url
        .replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port), 1);
    assert_ne!(via_relay, db.url, "the test database is on 127.0.0.1:5432");
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = PostgresCatalog::open(&via_relay).await.expect("open catalog");
    let blobs = FsBlobStore::open(dir.path()).await.expect("blobs");
    let store = Store::new(
        Arc::new(catalog),
        Arc::new(blobs),
        Arc::new(SystemClock),
        StoreConfig::default(),
    );
    publish(&store, "1").await.expect("publish before the outage");
    let v1 = Version::parse("1").expect("v");
    let name = Name::parse("app").expect("n");
    store.manifest(&repo(), &name, &v1).await.expect("cached");
    let mut wakeups = store.catalog().event_wakeups();

    relay.cut();
    let started = tokio::time::Instant::now();
    let err = publish(&store, "2").await.expect_err("no catalog, no publish");
    let waited = started.elapsed();
    assert!(
        matches!(err, intact_store::Error::CatalogUnavailable { .. }),
        "a catalog outage is said as such (503 on the API), not as an internal error: {err:?}"
    );
    assert!(err.is_transient(), "a catalog outage is retryable: {err}");
    assert!(
        waited < Duration::from_secs(30),
        "a request must not hang on a missing catalog (answered after {waited:?}): {err}"
    );
    let not_ready = store.readiness().await.expect_err("not ready without a catalog");
    assert!(not_ready.contains("catalog"), "{not_ready}");
    // Committed versions are immutable: what is cached is still served.
    store
        .manifest(&repo(), &name, &v1)
        .await
        .expect("served from the cache");

    relay.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match publish(&store, "2").await {
            Ok(()) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert!(e.is_transient(), "only retryable errors while reconnecting: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the store did not come back within 60 s of the catalog: {e}"),
        }
    }
    store.readiness().await.expect("ready again");

    // Event wake-ups resumed: a commit by another replica (straight to the database) wakes
    // this one's followers.
    wakeups.borrow_and_update();
    let other = PostgresCatalog::open(&db.url).await.expect("second replica");
    let other = Store::new(
        Arc::new(other),
        Arc::new(FsBlobStore::open(dir.path()).await.expect("blobs")),
        Arc::new(SystemClock),
        StoreConfig::default(),
    );
    publish(&other, "3").await.expect("publish on the other replica");
    tokio::time::timeout(Duration::from_secs(30), wakeups.changed())
        .await
        .expect("woken by a commit on another replica after the outage")
        .expect("wake-ups still running");
    let listed = store.list_versions(&repo(), &name, None, 10).await.expect("list");
    assert_eq!(listed.len(), 3);
}

/// A silent network (a partition: every packet dropped, no connection closed): the kernel
/// would take many minutes to give up on the connections, so without a limit of its own
/// every request would hang that long. Each call ends within the catalog's limit instead,
/// answered as unavailable (retryable), and the store reports not-ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_network_to_the_catalog_ends_each_call_within_its_limit() {
    const LIMIT: Duration = Duration::from_secs(2);
    let db = TestDatabase::create().await;
    let relay = Relay::start("127.0.0.1:5432").await;
    let via_relay = db
        .url
        .replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port), 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = PostgresCatalog::open(&via_relay)
        .await
        .expect("open catalog")
        .with_op_timeout(LIMIT);
    let store = Store::new(
        Arc::new(catalog),
        Arc::new(FsBlobStore::open(dir.path()).await.expect("blobs")),
        Arc::new(SystemClock),
        StoreConfig::default(),
    );
    publish(&store, "1").await.expect("publish before the partition");

    relay.go_silent();
    for attempt in ["publish", "list", "version names"] {
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(60), async {
            match attempt {
                "publish" => publish(&store, "2").await,
                "version names" => store
                    .version_names(&repo(), &Name::parse("app").expect("n"))
                    .await
                    .map(|_| ()),
                _ => store
                    .list_versions(&repo(), &Name::parse("app").expect("n"), None, 10)
                    .await
                    .map(|_| ()),
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{attempt} hung for a minute on a silent catalog"));
        let waited = started.elapsed();
        let err = result.expect_err("no answer from the catalog, no success");
        assert!(
            matches!(err, intact_store::Error::CatalogUnavailable { .. }),
            "{attempt}: a silent catalog is said as unavailable: {err:?}"
        );
        assert!(err.is_transient(), "{attempt}: retryable: {err}");
        // One call (a publish makes a few) ends within the limit.
        assert!(
            waited < LIMIT * 4,
            "{attempt} answered after {waited:?}, past the call limit {LIMIT:?}: {err}"
        );
    }
    let not_ready = tokio::time::timeout(Duration::from_secs(60), store.readiness())
        .await
        .expect("readiness answers on a silent catalog")
        .expect_err("not ready without a catalog");
    assert!(not_ready.contains("catalog"), "{not_ready}");
}

/// One replica's network to PostgreSQL goes silent while its commit holds the global event
/// lock (between its event insert and its COMMIT). That replica abandons the call within its
/// limit — but the database never hears of it: the session stays open, idle in transaction,
/// holding the lock. Every other replica's writes must not wait on a client that is gone
/// for longer than a call may last (docs/scale-out.md: "A replica keeps nothing that
/// another needs; it can be killed at any instant").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_partitioned_mid_commit_does_not_block_the_others_writes() {
    use sqlx::Connection;
    let db = TestDatabase::create().await;
    let relay = Relay::start("127.0.0.1:5432").await;
    let via_relay = db
        .url
        .replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port), 1);
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let blobs = Arc::new(FsBlobStore::open(dir_a.path()).await.expect("blobs"));
    let partitioned = Store::new(
        Arc::new(
            PostgresCatalog::open(&via_relay)
                .await
                .expect("open catalog")
                .with_op_timeout(Duration::from_secs(2)),
        ),
        blobs,
        Arc::new(SystemClock),
        StoreConfig::default(),
    );
    // The healthy replica waits longer than the production call limit before giving up,
    // so what is measured is how long the lock stays held.
    let healthy = Store::new(
        Arc::new(
            PostgresCatalog::open(&db.url)
                .await
                .expect("open catalog")
                .with_op_timeout(Duration::from_secs(120)),
        ),
        Arc::new(FsBlobStore::open(dir_b.path()).await.expect("blobs")),
        Arc::new(SystemClock),
        StoreConfig::default(),
    );

    let t = match partitioned.begin(begin_request("1")).await.expect("begin") {
        OpenOutcome::Created(t) => t,
        other => panic!("expected a new transaction, got {other:?}"),
    };
    let mut body: &[u8] = b"one";
    partitioned
        .put_file(&t.id, FilePath::parse("a").expect("path"), &mut body, None, None)
        .await
        .expect("put");

    // Hold the commit right after it took the event lock: its event insert waits for this.
    let mut blocker = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .expect("lock events");
    let commit = tokio::spawn(async move { partitioned.commit(&t.id).await.map(|_| ()) });
    let mut watcher = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    for i in 0.. {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            break;
        }
        assert!(i < 500, "the commit never reached the event insert");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Now the network goes silent; the insert goes through and its answer is lost.
    relay.go_silent();
    sqlx::raw_sql("COMMIT").execute(&mut blocker).await.expect("release");
    let abandoned = commit.await.expect("join");
    assert!(abandoned.is_err(), "no answer, no success");

    // Another replica publishes something else entirely.
    let started = tokio::time::Instant::now();
    let published = tokio::time::timeout(Duration::from_secs(300), async {
        let other_name = BeginRequest {
            name: Name::parse("other").expect("name"),
            ..begin_request("1")
        };
        let t = match healthy.begin(other_name).await? {
            OpenOutcome::Created(t) => t,
            other => panic!("expected a new transaction, got {other:?}"),
        };
        let mut body: &[u8] = b"two";
        healthy
            .put_file(&t.id, FilePath::parse("a").expect("path"), &mut body, None, None)
            .await?;
        healthy.commit(&t.id).await.map(|_| ())
    })
    .await;
    let waited = started.elapsed();
    assert!(
        matches!(published, Ok(Ok(()))) && waited < Duration::from_secs(60),
        "a healthy replica's publish waited {waited:?} on a partitioned one's abandoned commit: {published:?}"
    );
}
