//! What only a shared catalog promises: several `PostgresCatalog`s on one database (as
//! several replicas would have) start together, allocate versions, hold soft locks and append
//! events as one catalog.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use intact_core::{FilePath, Name, RepoName, Version};
use intact_store::store::BeginRequest;
use intact_store::{Catalog, Error, FsBlobStore, OpenOutcome, PostgresCatalog, Store, StoreConfig, SystemClock};
use intact_testkit::TestDatabase;

fn req(name: &str, version: &str) -> BeginRequest {
    BeginRequest {
        repo: RepoName::parse("files").expect("repo"),
        name: Name::parse(name).expect("name"),
        version: version.parse().expect("version spec"),
        metadata: serde_json::json!({}),
        lease: None,
        idempotency_key: None,
        wait: Duration::ZERO,
        base: None,
    }
}

/// `n` stores, each on a catalog of its own (its own connections and listener) over one
/// database, sharing one blob directory.
async fn replicas(db: &TestDatabase, blobs: &FsBlobStore, n: usize) -> Vec<Arc<Store>> {
    let mut stores = Vec::new();
    for _ in 0..n {
        let catalog = PostgresCatalog::open(&db.url).await.expect("open catalog");
        stores.push(Arc::new(Store::new(
            Arc::new(catalog),
            Arc::new(blobs.clone()),
            Arc::new(SystemClock),
            StoreConfig::default(),
        )));
    }
    stores
}

/// Replicas starting at once all open a fresh database: the migrator's advisory lock lets one
/// create the schema while the others wait, then find it applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogs_opening_one_fresh_database_at_once_all_succeed() {
    let db = TestDatabase::create().await;
    let opens = (0..8).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move { PostgresCatalog::open(&url).await })
    });
    let catalogs: Vec<PostgresCatalog> = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(|joined| joined.expect("join").expect("every replica opens the catalog"))
        .collect();
    for c in &catalogs {
        assert_eq!(c.last_event_seq().await.expect("schema in place"), 0);
    }
}

/// 20 publishers of one version spread over four replicas: exactly one commits, and every
/// replica reads the winner's bytes. `auto` numbers never collide across replicas either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_publishers_across_replicas_commit_exactly_once() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = FsBlobStore::open(dir.path()).await.expect("blobs");
    let stores = replicas(&db, &blobs, 4).await;
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let store = stores[usize::from(i) % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            let t = match store.begin(req("race", "1")).await? {
                OpenOutcome::Created(t) => t,
                other => panic!("unexpected {other:?}"),
            };
            let content = vec![i; 1000];
            let mut body = content.as_slice();
            store
                .put_file(&t.id, FilePath::parse("payload").expect("path"), &mut body, None, None)
                .await?;
            store.commit(&t.id).await.map(|_| i)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.expect("join") {
            Ok(i) => winners.push(i),
            Err(Error::Locked { .. } | Error::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one publisher commits: {winners:?}");
    for store in &stores {
        let m = store
            .manifest(
                &RepoName::parse("files").expect("repo"),
                &Name::parse("race").expect("name"),
                &Version::parse("1").expect("v"),
            )
            .await
            .expect("every replica sees the version");
        let mut r = store.read_file(&m.files[0], None).await.expect("read");
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r.body, &mut bytes)
            .await
            .expect("body");
        assert_eq!(bytes, vec![winners[0]; 1000]);
    }

    let opens = (0..20).map(|i| {
        let store = stores[i % stores.len()].clone();
        tokio::spawn(async move {
            match store.begin(req("numbered", "auto")).await.expect("begin") {
                OpenOutcome::Created(t) => t.version,
                other => panic!("unexpected {other:?}"),
            }
        })
    });
    let numbers: BTreeSet<String> = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(|v| v.expect("join").as_str().to_owned())
        .collect();
    assert_eq!(numbers.len(), 20, "auto numbers collided across replicas: {numbers:?}");
}

/// Events in one global commit order. Many committers on separate catalogs (separate
/// connections) commit at once while a follower reads `after=<last seen>` in a loop. Event
/// numbers are taken at insert; were a later number allowed to commit before an earlier one,
/// the follower would pass the earlier number before it became visible and never see it.
/// At the end the follower must have seen every event in the log. (With the event lock
/// taken out, three runs of this test each found the follower had missed 65-79 of 450.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_never_misses_an_event_committed_by_any_replica() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = FsBlobStore::open(dir.path()).await.expect("blobs");
    let stores = replicas(&db, &blobs, 6).await;
    let follower_catalog = PostgresCatalog::open(&db.url).await.expect("open catalog");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let follower = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let events = follower_catalog.events(after, 1000).await.expect("events");
                for e in &events {
                    assert!(e.seq > after, "event {} served after {after}", e.seq);
                    after = e.seq;
                    seen.push(e.seq);
                }
                if finished && events.is_empty() {
                    return seen;
                }
            }
        })
    };

    const PER_REPLICA: usize = 25;
    let mut committers = Vec::new();
    for (r, store) in stores.iter().enumerate() {
        for lane in 0..3 {
            let store = store.clone();
            committers.push(tokio::spawn(async move {
                for i in 0..PER_REPLICA {
                    let t = match store
                        .begin(req(&format!("r{r}-l{lane}"), &format!("{i}")))
                        .await
                        .expect("begin")
                    {
                        OpenOutcome::Created(t) => t,
                        other => panic!("unexpected {other:?}"),
                    };
                    let mut body: &[u8] = b"content";
                    store
                        .put_file(&t.id, FilePath::parse("f").expect("path"), &mut body, None, None)
                        .await
                        .expect("put");
                    if i % 5 == 4 {
                        store.abort(&t.id).await.expect("abort");
                    } else {
                        store.commit(&t.id).await.expect("commit");
                    }
                }
            }));
        }
    }
    for c in committers {
        c.await.expect("committer");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = follower.await.expect("follower");

    let all: Vec<i64> = stores[0]
        .catalog()
        .events(0, 100_000)
        .await
        .expect("events")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        all.len(),
        stores.len() * 3 * PER_REPLICA,
        "one event per commit or rollback"
    );
    let missed: Vec<&i64> = all.iter().filter(|s| seen.binary_search(s).is_err()).collect();
    assert!(
        missed.is_empty(),
        "the follower passed {} events before they were committed: {missed:?}",
        missed.len()
    );
}

/// A follower waiting on one replica is woken by a commit on another (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_wakeups_reach_every_replica() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = FsBlobStore::open(dir.path()).await.expect("blobs");
    let stores = replicas(&db, &blobs, 2).await;
    let (a, b) = (stores[0].clone(), stores[1].clone());
    let follower = tokio::spawn(async move { a.events(0, Duration::from_secs(300), 100).await });
    // Lets the follower start waiting (ordering only: were it late, it would find the event
    // at once and the test would pass without showing the wake-up, never fail wrongly).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = match b.begin(req("elsewhere", "1")).await.expect("begin") {
        OpenOutcome::Created(t) => t,
        other => panic!("unexpected {other:?}"),
    };
    b.commit(&t.id).await.expect("commit");
    // A guard against waiting for the follower's 300 s deadline, not a measurement.
    let events = tokio::time::timeout(Duration::from_secs(60), follower)
        .await
        .expect("the follower on one replica was not woken by a commit on the other")
        .expect("join")
        .expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.kind == "committed" && e.transaction.as_ref() == Some(&t.id))
    );
}

/// gc on one replica racing publishes of the same content on another never deletes a blob a
/// committed version names (the sweep and `stage_file` exclude each other per digest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_on_one_replica_never_loses_a_blob_published_on_another() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = FsBlobStore::open(dir.path()).await.expect("blobs");
    let config = StoreConfig {
        gc_grace: Duration::ZERO,
        ..StoreConfig::default()
    };
    let mut stores = Vec::new();
    for _ in 0..2 {
        let catalog = PostgresCatalog::open(&db.url).await.expect("open catalog");
        stores.push(Arc::new(Store::new(
            Arc::new(catalog),
            Arc::new(blobs.clone()),
            Arc::new(SystemClock),
            config.clone(),
        )));
    }
    let (publisher, collector) = (stores[0].clone(), stores[1].clone());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut rounds = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                collector.gc(Duration::ZERO).await.expect("gc");
                rounds += 1;
            }
            rounds
        })
    };
    for i in 0..60 {
        // The same few contents again and again: each publish re-registers a blob that an
        // aborted transaction left unreferenced a moment ago.
        let content = format!("shared content {}", i % 3);
        let t = match publisher.begin(req("churn", &format!("{i}"))).await.expect("begin") {
            OpenOutcome::Created(t) => t,
            other => panic!("unexpected {other:?}"),
        };
        let mut body = content.as_bytes();
        publisher
            .put_file(&t.id, FilePath::parse("f").expect("path"), &mut body, None, None)
            .await
            .expect("put");
        if i % 2 == 0 {
            publisher.abort(&t.id).await.expect("abort");
        } else {
            publisher.commit(&t.id).await.expect("commit");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rounds = gc.await.expect("gc task");
    assert!(rounds > 0);
    let report = publisher.verify().await.expect("verify");
    assert!(
        report.problems.is_empty(),
        "committed blobs lost: {:?}",
        report.problems
    );
}

/// On a shared catalog a starting replica rolls back nothing (what is open may be a live
/// replica's work in progress); a worker renews its short lease for as long as it works,
/// well past the lease itself; and once the worker is gone (a replica that died), its
/// transaction lapses within that lease and another replica takes the version over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_workers_keep_their_transactions_and_dead_ones_lapse_within_the_lease() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = FsBlobStore::open(dir.path()).await.expect("blobs");
    let stores = replicas(&db, &blobs, 2).await;
    let (a, b) = (stores[0].clone(), stores[1].clone());
    let lease = Duration::from_secs(2);
    let proxied = |wait: Duration| BeginRequest {
        repo: RepoName::parse("builds").expect("repo"),
        lease: Some(lease),
        wait,
        ..req("b7", "1")
    };
    let t = match a.begin(proxied(Duration::ZERO)).await.expect("begin") {
        OpenOutcome::Created(t) => t,
        other => panic!("unexpected {other:?}"),
    };
    let worker = {
        let (a, id) = (a.clone(), t.id.clone());
        tokio::spawn(async move {
            a.renewing(&id, lease, async {
                tokio::time::sleep(lease * 5 / 2).await;
                Ok(())
            })
            .await
        })
    };
    assert_eq!(
        b.abort_all_open(&RepoName::parse("builds").expect("repo"))
            .await
            .expect("start-up rollback"),
        0,
        "a replica starting on a shared catalog rolled back another's open transaction"
    );
    tokio::time::sleep(lease * 2).await;
    assert_eq!(b.txn(&t.id).await.expect("txn").state, intact_core::TxnState::Open);
    assert!(
        matches!(b.begin(proxied(Duration::ZERO)).await, Err(Error::Locked { .. })),
        "a worker renewing its lease lost its version to another replica"
    );
    worker.await.expect("join").expect("work");
    // The worker is gone and nothing renews: the other replica's wait ends within a lease.
    let started = std::time::Instant::now();
    let taken = b.begin(proxied(Duration::from_secs(60))).await.expect("take over");
    assert!(matches!(taken, OpenOutcome::Created(_)), "{taken:?}");
    let waited = started.elapsed();
    assert!(
        waited <= lease + Duration::from_secs(2),
        "took {waited:?} to take over a dead worker's version (lease {lease:?})"
    );
    assert_eq!(b.txn(&t.id).await.expect("txn").state, intact_core::TxnState::Expired);
}

/// A waiter for a version's lock on one replica is woken when the holder finishes on another
/// (the holder's end appends an event, and events wake every replica), not when its own wait
/// or the holder's lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_waiter_is_woken_by_a_holder_finishing_on_another_replica() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = FsBlobStore::open(dir.path()).await.expect("blobs");
    let stores = replicas(&db, &blobs, 2).await;
    let (a, b) = (stores[0].clone(), stores[1].clone());
    let held = match a.begin(req("contended", "1")).await.expect("begin") {
        OpenOutcome::Created(t) => t,
        other => panic!("unexpected {other:?}"),
    };
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let outcome = b
            .begin(BeginRequest {
                wait: Duration::from_secs(120),
                ..req("contended", "1")
            })
            .await;
        (outcome, started.elapsed())
    });
    // Lets the waiter start waiting (were it late, it would find the lock free at once and
    // the test would pass without showing the wake-up, never fail wrongly).
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.abort(&held.id).await.expect("abort");
    let (outcome, waited) = waiter.await.expect("join");
    assert!(matches!(outcome, Ok(OpenOutcome::Created(_))), "{outcome:?}");
    assert!(
        waited < Duration::from_secs(10),
        "the waiter slept {waited:?}: it was not woken by the holder finishing on another replica"
    );
}

/// A version evicted (deleted) on one replica is not served from another replica's manifest
/// cache for long: every replica follows `deleted` events and forgets what it cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_deleted_on_one_replica_leaves_every_replicas_cache() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = FsBlobStore::open(dir.path()).await.expect("blobs");
    let stores = replicas(&db, &blobs, 2).await;
    let (a, b) = (stores[0].clone(), stores[1].clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let invalidator = tokio::spawn(a.clone().run_invalidator(stopped));
    let t = match b.begin(req("evictable", "1")).await.expect("begin") {
        OpenOutcome::Created(t) => t,
        other => panic!("unexpected {other:?}"),
    };
    b.commit(&t.id).await.expect("commit");
    let (repo, name, version) = (
        RepoName::parse("files").expect("repo"),
        Name::parse("evictable").expect("name"),
        Version::parse("1").expect("version"),
    );
    a.manifest(&repo, &name, &version).await.expect("cached on a");
    // Lets the invalidator start following (were it late, it would start after the delete and
    // the cache would keep the version: the test fails, never passes wrongly).
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.delete_version(&repo, &name, &version, "evicted (test)")
        .await
        .expect("delete")
        .expect("was there");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match a.manifest(&repo, &name, &version).await {
            Err(Error::NotFound { .. }) => break,
            Ok(_) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("replica a still serves the version deleted on b 10 s later: {other:?}"),
        }
    }
    let _ = stop.send(true);
    invalidator.await.expect("join");
}

/// Replicas claiming one flight at once: exactly one leads, every other follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_among_replicas_claiming_a_flight_at_once() {
    let db = TestDatabase::create().await;
    let mut catalogs = Vec::new();
    for _ in 0..6 {
        catalogs.push(Arc::new(PostgresCatalog::open(&db.url).await.expect("open catalog")));
    }
    let claims = catalogs.iter().enumerate().flat_map(|(i, c)| {
        (0..4).map(move |j| {
            let c = c.clone();
            tokio::spawn(async move {
                c.claim_flight("go/example.com/m@v1.0.0", &format!("r{i}-{j}"), Duration::from_secs(30))
                    .await
            })
        })
    });
    let answers: Vec<intact_store::FlightClaim> = futures::future::join_all(claims)
        .await
        .into_iter()
        .map(|joined| joined.expect("join").expect("claim"))
        .collect();
    let leaders = answers
        .iter()
        .filter(|a| **a == intact_store::FlightClaim::Leading)
        .count();
    assert_eq!(leaders, 1, "{answers:?}");
}

/// An upload streaming on one replica holds back a commit of its transaction on another
/// (the upload is recorded in the catalog while it streams); once it is staged the commit
/// goes through with its file. An upload whose replica died stops counting once its lease
/// lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_on_one_replica_holds_back_a_commit_on_another() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = FsBlobStore::open(dir.path()).await.expect("blobs");
    let stores = replicas(&db, &blobs, 2).await;
    let (a, b) = (stores[0].clone(), stores[1].clone());
    let t = match b.begin(req("parallel", "1")).await.expect("begin") {
        OpenOutcome::Created(t) => t,
        other => panic!("unexpected {other:?}"),
    };
    let (mut body, release) = crate::conformance::stalling_body(b"half of ");
    let upload = {
        let (a, id) = (a.clone(), t.id.clone());
        tokio::spawn(async move {
            a.put_file(
                &id,
                FilePath::parse("streaming.bin").expect("path"),
                &mut body,
                None,
                None,
            )
            .await
        })
    };
    // Lets the upload start (ordering only: were it not started, the test could only pass).
    tokio::time::sleep(Duration::from_millis(500)).await;
    match b.commit(&t.id).await {
        Err(Error::UploadsInProgress { .. }) => {}
        other => panic!("a commit on b racing an upload on a must be refused, got {other:?}"),
    }
    release.send(b"the file").expect("release");
    upload.await.expect("join").expect("upload");
    let m = b
        .commit(&t.id)
        .await
        .expect("commit right after the upload")
        .into_manifest();
    assert_eq!(m.files.len(), 1);

    // A replica that died mid-upload: its record lapses with its lease, unrenewed.
    let t = match b.begin(req("orphaned", "1")).await.expect("begin") {
        OpenOutcome::Created(t) => t,
        other => panic!("unexpected {other:?}"),
    };
    a.catalog()
        .start_upload(&t.id, "upload-of-a-dead-replica", Duration::from_secs(1))
        .await
        .expect("record");
    assert!(matches!(b.commit(&t.id).await, Err(Error::UploadsInProgress { .. })));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.commit(&t.id).await.expect("the dead upload no longer counts");
}

/// With blobs in S3 a replica's data dir holds only its own temporary files, so the replica
/// owns it (start-up clears what a dead run left there): a second replica pointed at the
/// same data dir is refused, saying why, instead of having its temp files removed under it.
/// Replicas sharing a blob directory share the data dir that holds it and own none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_blobs_in_s3_need_a_data_dir_each() {
    let db = TestDatabase::create().await;
    let garage = tokio::task::spawn_blocking(intact_testkit::shared_garage)
        .await
        .expect("start garage");
    let blobs = intact_store::BlobSettings::S3(crate::s3_settings(garage, "own-data-dir"), None);
    let catalog = intact_store::CatalogChoice::Postgres { url: db.url.clone() };
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Store::open(dir.path(), &catalog, &blobs, StoreConfig::default())
        .await
        .expect("the first replica opens");
    assert!(first.owns_data_dir() && !first.is_sole_writer());
    let Err(err) = Store::open(dir.path(), &catalog, &blobs, StoreConfig::default()).await else {
        panic!("a second replica on the same data dir is refused");
    };
    let message = err.to_string();
    assert!(
        message.contains("in use") && message.contains("data dir of its own"),
        "{message}"
    );
    let other = tempfile::tempdir().expect("tempdir");
    let second = Store::open(other.path(), &catalog, &blobs, StoreConfig::default())
        .await
        .expect("a data dir of its own");
    assert!(second.owns_data_dir());

    // Blob files: the data dir is shared by design, nobody owns it.
    let files = intact_store::BlobSettings::Files;
    let shared = tempfile::tempdir().expect("tempdir");
    let a = Store::open(shared.path(), &catalog, &files, StoreConfig::default())
        .await
        .expect("open");
    let b = Store::open(shared.path(), &catalog, &files, StoreConfig::default())
        .await
        .expect("replicas share a blob directory");
    assert!(!a.owns_data_dir() && !b.owns_data_dir());
}

/// The plan PostgreSQL picks for finding one version by its key (as the catalog's lookups,
/// commits and access tracking do).
async fn lookup_plan(conn: &mut sqlx::PgConnection) -> String {
    let lines: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT seq FROM versions WHERE repo = 'files' AND name = 'many' AND version = 'v1.0.4000'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("explain");
    lines.join("\n")
}

/// Without planner statistics PostgreSQL finds a version through the covering listing index,
/// reading every version of its name on the way (milliseconds per lookup at 20,000 versions,
/// more with every version added). The catalog refreshes its own statistics, so lookups go
/// back to the unique key whether or not autovacuum runs on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_use_the_unique_key_once_the_catalog_refreshes_its_statistics() {
    use sqlx::Connection;
    let db = TestDatabase::create().await;
    let catalog = PostgresCatalog::open(&db.url).await.expect("open catalog");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    // Where autovacuum is on it would analyze the table itself within a minute, hiding what
    // the catalog does.
    sqlx::raw_sql("ALTER TABLE versions SET (autovacuum_enabled = false)")
        .execute(&mut conn)
        .await
        .expect("autovacuum off");
    sqlx::raw_sql(
        "INSERT INTO versions (repo, name, version, metadata, fingerprint, txn_id, seq, created_at,
                               last_access, total_size, file_count)
         SELECT 'files', 'many', 'v1.0.' || i, '{}', 'fingerprint', NULL, 2 * i + 1, i, i, 0, 0
         FROM generate_series(0, 4999) AS i",
    )
    .execute(&mut conn)
    .await
    .expect("5,000 versions");
    let before = lookup_plan(&mut conn).await;
    assert!(
        before.contains("versions_listing"),
        "this test's premise: unanalyzed, the planner reads the listing index for a lookup:\n{before}"
    );

    // The inserting session's counts reach the statistics system when it is idle (within
    // seconds; at once after this call on PostgreSQL 15 and later).
    let _ = sqlx::raw_sql("SELECT pg_stat_force_next_flush()")
        .execute(&mut conn)
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let refreshed = catalog.refresh_statistics().await.expect("refresh statistics");
        if refreshed.iter().any(|t| t == "versions") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "versions was never found stale (refreshed: {refreshed:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = lookup_plan(&mut conn).await;
    assert!(
        after.contains("versions_repo_name_version_key"),
        "after the refresh a lookup still does not use the unique key:\n{after}"
    );
    let again = catalog.refresh_statistics().await.expect("refresh statistics");
    assert!(
        !again.iter().any(|t| t == "versions"),
        "nothing changed, yet versions was analyzed again: {again:?}"
    );
}

/// A table whose lock is held (a `VACUUM` an operator runs, a migration's DDL) is left for
/// the next round, and what the round gathered for the tables before it is kept: an
/// `ANALYZE` resets its table's count of changes at once but its statistics roll back with
/// its transaction, so a round in one transaction lost them to the busy table while the
/// counts said they were fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_busy_elsewhere_waits_for_the_next_round_and_the_others_keep_their_statistics() {
    use sqlx::Connection;
    let db = TestDatabase::create().await;
    let catalog = PostgresCatalog::open(&db.url)
        .await
        .expect("open catalog")
        .with_op_timeout(Duration::from_secs(5));
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::raw_sql(
        "ALTER TABLE versions SET (autovacuum_enabled = false);
         ALTER TABLE files SET (autovacuum_enabled = false);
         INSERT INTO versions (repo, name, version, metadata, fingerprint, txn_id, seq, created_at,
                               last_access, total_size, file_count)
         SELECT 'files', 'many', 'v1.0.' || i, '{}', 'fingerprint', NULL, 2 * i + 1, i, i, 0, 0
         FROM generate_series(0, 4999) AS i;
         INSERT INTO files SELECT id, 'p', 1, repeat('a', 64) FROM versions;",
    )
    .execute(&mut conn)
    .await
    .expect("5,000 versions with a file each");
    let _ = sqlx::raw_sql("SELECT pg_stat_force_next_flush()")
        .execute(&mut conn)
        .await;

    // A VACUUM of `files` in progress (it holds this lock for as long as it runs).
    let mut vacuum = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE files IN SHARE UPDATE EXCLUSIVE MODE")
        .execute(&mut vacuum)
        .await
        .expect("lock files");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        let refreshed = catalog
            .refresh_statistics()
            .await
            .expect("a busy table is not an error");
        if refreshed.iter().any(|t| t == "versions") {
            break refreshed;
        }
        assert!(std::time::Instant::now() < deadline, "versions was never found stale");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        !first.iter().any(|t| t == "files"),
        "files was analyzed through another session's lock: {first:?}"
    );
    let plan = lookup_plan(&mut conn).await;
    assert!(
        plan.contains("versions_repo_name_version_key"),
        "the statistics gathered before the busy table were lost:\n{plan}"
    );

    sqlx::raw_sql("COMMIT").execute(&mut vacuum).await.expect("unlock");
    let next = catalog.refresh_statistics().await.expect("next round");
    assert!(
        next.iter().any(|t| t == "files"),
        "the busy table was not analyzed once free: {next:?}"
    );
}
