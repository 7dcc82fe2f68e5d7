//! Single-flight across replicas: the in-process [`crate::singleflight::SingleFlight`]
//! coalesces one process's waiters; its leader then runs [`across_replicas`], which claims
//! the catalog's flight for the key (see `intact_store::catalog::flight`):
//!
//! * Leading: look in the store first (another replica may have finished just before), else
//!   do the work, renewing the flight's short lease while it runs, and record the outcome.
//! * Led by another replica: wait for its flight to finish (woken by the catalog), then serve
//!   from the store (success) or its recorded failure. If its lease lapses (the replica died)
//!   claim again and take over. Never past `wait`: then a timeout, and the flight goes on.
//! * A definitive failure remembered by the catalog answers at once, on every replica.
//!
//! Correctness never depends on this (the catalog commit decides what becomes visible): if
//! the catalog cannot be asked, the work runs here. On an embedded catalog (one process)
//! the in-process single-flight is complete, and no flight is written.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use intact_store::{FlightClaim, FlightEnd, FlightState, Store};
use rand::RngCore;
use tokio::time::Instant;

use crate::singleflight::Failure;

/// How long a flight's leader holds it without renewing: a dead replica's flight is taken
/// over this long after its last renewal.
pub const FLIGHT_LEASE: Duration = intact_store::WORKER_LEASE;

/// A failure that can be recorded in the catalog and told again by another replica.
pub trait SharedFailure: Failure + From<intact_store::Error> + Sized {
    /// `(kind, message)`, as recorded.
    fn record(&self) -> (String, String);
    /// The failure a follower reports for a recorded one.
    fn rebuild(kind: &str, message: &str) -> Self;
    /// A follower stopped waiting for another replica's flight after `seconds`.
    fn timed_out(what: &str, seconds: u64) -> Self;
}

/// A holder name unique among every replica's flights.
fn new_holder() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `work` for `key` once across every replica on the store's catalog (see the module
/// comment). `lookup` finds the result in the store; `what` names the work in errors;
/// definitive failures are remembered by the catalog for `failure_ttl`.
pub async fn across_replicas<V, E, L, LF, W, WF>(
    store: &Arc<Store>,
    key: &str,
    what: &str,
    wait: Duration,
    failure_ttl: Duration,
    lookup: L,
    work: W,
) -> Result<V, E>
where
    E: SharedFailure,
    L: Fn() -> LF,
    LF: Future<Output = Result<Option<V>, E>>,
    W: FnOnce() -> WF,
    WF: Future<Output = Result<V, E>>,
{
    across_replicas_with_lease(store, key, what, wait, failure_ttl, FLIGHT_LEASE, lookup, work).await
}

/// [`across_replicas`] with the flight's lease given (tests shorten it).
#[allow(clippy::too_many_arguments)]
pub async fn across_replicas_with_lease<V, E, L, LF, W, WF>(
    store: &Arc<Store>,
    key: &str,
    what: &str,
    wait: Duration,
    failure_ttl: Duration,
    lease: Duration,
    lookup: L,
    work: W,
) -> Result<V, E>
where
    E: SharedFailure,
    L: Fn() -> LF,
    LF: Future<Output = Result<Option<V>, E>>,
    W: FnOnce() -> WF,
    WF: Future<Output = Result<V, E>>,
{
    let catalog = store.catalog().clone();
    if !catalog.is_shared() {
        // One process owns an embedded catalog: the in-process single-flight in front of
        // this is all there is to coalesce, and two more catalog writes per fetch would
        // only cost.
        return match lookup().await? {
            Some(v) => Ok(v),
            None => work().await,
        };
    }
    let holder = new_holder();
    let deadline = Instant::now() + wait;
    loop {
        // Subscribed before the claim, so a finish in between still wakes us.
        let mut wakeups = catalog.event_wakeups();
        let claim = match catalog.claim_flight(key, &holder, lease).await {
            Ok(claim) => claim,
            Err(e) => {
                tracing::warn!(key, error = %e, "claiming a flight failed; doing the work here");
                return work().await;
            }
        };
        let (leader, mut expires_at) = match claim {
            FlightClaim::Leading => return lead(store, key, &holder, failure_ttl, lease, lookup, work).await,
            FlightClaim::Failed(f) => return Err(E::rebuild(&f.kind, &f.message)),
            FlightClaim::Led { holder, expires_at } => {
                crate::observe::coalesced("replicas");
                (holder, expires_at)
            }
        };
        // Follow `leader` until it finishes, lapses, or our wait runs out.
        loop {
            let until_lapse =
                Duration::from_millis(u64::try_from(expires_at.millis() - store.now().millis()).unwrap_or(0));
            // Looks at least every second even without a wake-up (one lost on a reconnection
            // of the listener costs a second, not the whole wait).
            let wake = deadline.min(Instant::now() + until_lapse.min(Duration::from_secs(1)));
            tokio::select! {
                _ = wakeups.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
            if Instant::now() >= deadline {
                return Err(E::timed_out(what, wait.as_secs()));
            }
            match catalog.flight(key).await? {
                None => match lookup().await? {
                    Some(v) => return Ok(v),
                    // Finished without a result here (evicted at once?): claim again.
                    None => break,
                },
                Some(FlightState::Running { holder, expires_at: e }) if holder == leader && e > store.now() => {
                    expires_at = e;
                }
                Some(FlightState::Failed { holder, failure }) if holder == leader => {
                    return Err(E::rebuild(&failure.kind, &failure.message));
                }
                // Lapsed, or taken over by someone else: claim again.
                Some(_) => break,
            }
        }
    }
}

/// The leader's part: the store first, else the work with its lease renewed; then the
/// outcome recorded for every follower.
async fn lead<V, E, L, LF, W, WF>(
    store: &Arc<Store>,
    key: &str,
    holder: &str,
    failure_ttl: Duration,
    lease: Duration,
    lookup: L,
    work: W,
) -> Result<V, E>
where
    E: SharedFailure,
    L: Fn() -> LF,
    LF: Future<Output = Result<Option<V>, E>>,
    W: FnOnce() -> WF,
    WF: Future<Output = Result<V, E>>,
{
    let catalog = store.catalog().clone();
    let result = match lookup().await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => {
            let work = work();
            tokio::pin!(work);
            let every = (lease / 3).max(Duration::from_millis(100));
            let mut tick = tokio::time::interval_at(Instant::now() + every, every);
            loop {
                tokio::select! {
                    result = &mut work => break result,
                    _ = tick.tick() => match catalog.renew_flight(key, holder, lease).await {
                        Ok(true) => {}
                        // Taken over after a stall: finish anyway (the commit is idempotent).
                        Ok(false) => tracing::warn!(key, "lost a flight's lease while working"),
                        Err(e) => tracing::warn!(key, error = %e, "renewing a flight failed"),
                    },
                }
            }
        }
        Err(e) => Err(e),
    };
    let end = match &result {
        Ok(_) => FlightEnd::Succeeded,
        Err(e) => {
            let (kind, message) = e.record();
            FlightEnd::Failed {
                kind,
                message,
                remember_for: e.is_definitive().then_some(failure_ttl).filter(|d| !d.is_zero()),
            }
        }
    };
    if let Err(e) = catalog.finish_flight(key, holder, &end).await {
        // Followers then take over once the lease lapses.
        tracing::warn!(key, error = %e, "recording a flight's outcome failed");
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use intact_core::{Manifest, Name, RepoName, Version};
    use intact_store::{
        BeginRequest, FsBlobStore, OpenOutcome, PostgresCatalog, StoreConfig, SystemClock, VersionSpec,
    };
    use intact_testkit::TestDatabase;

    use super::*;

    /// `Missing` is definitive; the others transient.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum TestError {
        Missing(String),
        Down(String),
        Timeout(String),
        Store(String),
    }

    impl Failure for TestError {
        fn is_definitive(&self) -> bool {
            matches!(self, Self::Missing(_))
        }
    }

    impl From<intact_store::Error> for TestError {
        fn from(e: intact_store::Error) -> Self {
            Self::Store(e.to_string())
        }
    }

    impl SharedFailure for TestError {
        fn record(&self) -> (String, String) {
            match self {
                Self::Missing(m) => ("missing".into(), m.clone()),
                Self::Down(m) => ("down".into(), m.clone()),
                Self::Timeout(m) => ("timeout".into(), m.clone()),
                Self::Store(m) => ("store".into(), m.clone()),
            }
        }
        fn rebuild(kind: &str, message: &str) -> Self {
            let m = message.to_owned();
            match kind {
                "missing" => Self::Missing(m),
                "down" => Self::Down(m),
                "timeout" => Self::Timeout(m),
                _ => Self::Store(m),
            }
        }
        fn timed_out(what: &str, _seconds: u64) -> Self {
            Self::Timeout(what.to_owned())
        }
    }

    /// `n` stores, each on its own catalog connections over one database, sharing one blob
    /// directory: replicas.
    async fn replicas(db: &TestDatabase, dir: &std::path::Path, n: usize) -> Vec<Arc<Store>> {
        let blobs = FsBlobStore::open(dir).await.expect("blobs");
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

    fn ids() -> (RepoName, Name, Version) {
        (
            RepoName::parse("go").expect("repo"),
            Name::parse("example.com/m").expect("name"),
            Version::parse("v1.0.0").expect("version"),
        )
    }

    async fn lookup(store: &Store) -> Result<Option<Arc<Manifest>>, TestError> {
        let (repo, name, version) = ids();
        Ok(store.has_version(&repo, &name, &version).await?)
    }

    /// The work: counts its runs, takes `slow`, then commits the version.
    async fn fetch(store: &Store, runs: &AtomicUsize, slow: Duration) -> Result<Arc<Manifest>, TestError> {
        runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(slow).await;
        let (repo, name, version) = ids();
        let req = BeginRequest {
            repo,
            name,
            version: VersionSpec::Exact(version),
            metadata: serde_json::json!({}),
            lease: None,
            idempotency_key: None,
            wait: Duration::from_secs(30),
            base: None,
        };
        let t = match store.begin(req).await? {
            OpenOutcome::Created(t) => t,
            other => return Err(TestError::Store(format!("unexpected {other:?}"))),
        };
        Ok(Arc::new(store.commit(&t.id).await?.into_manifest()))
    }

    /// Cold requests on three replicas at once: one runs the work, all get its result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_asking_at_once_run_the_work_once() {
        let db = TestDatabase::create().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let stores = replicas(&db, dir.path(), 3).await;
        let runs = Arc::new(AtomicUsize::new(0));
        let asks = stores.iter().map(|store| {
            let (store, runs) = (store.clone(), runs.clone());
            tokio::spawn(async move {
                across_replicas(
                    &store,
                    "go/go/example.com/m@v1.0.0/zip",
                    "fetch of example.com/m@v1.0.0",
                    Duration::from_secs(60),
                    Duration::from_secs(60),
                    || lookup(&store),
                    || fetch(&store, &runs, Duration::from_millis(800)),
                )
                .await
            })
        });
        for answer in futures::future::join_all(asks).await {
            let m = answer.expect("join").expect("every replica gets the version");
            assert_eq!(m.version.as_str(), "v1.0.0");
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the work ran more than once across replicas"
        );
    }

    /// The replica leading a slow fetch dies (its task ends mid-work: no renewal, no
    /// outcome): a replica following it takes the flight over once the lease lapses and
    /// completes it, well within its wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_leaders_flight_is_taken_over() {
        let db = TestDatabase::create().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let stores = replicas(&db, dir.path(), 2).await;
        let (a, b) = (stores[0].clone(), stores[1].clone());
        let lease = Duration::from_secs(2);
        let key = "go/go/example.com/m@v1.0.0/zip";
        let runs = Arc::new(AtomicUsize::new(0));
        let leader = {
            let (a, runs) = (a.clone(), runs.clone());
            tokio::spawn(async move {
                across_replicas_with_lease(
                    &a,
                    key,
                    "fetch",
                    Duration::from_secs(60),
                    Duration::from_secs(60),
                    lease,
                    || lookup(&a),
                    || fetch(&a, &runs, Duration::from_secs(3600)),
                )
                .await
            })
        };
        // The leader has claimed the flight and is working (ordering only).
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let follower = {
            let (b, runs) = (b.clone(), runs.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let got = across_replicas_with_lease(
                    &b,
                    key,
                    "fetch",
                    Duration::from_secs(60),
                    Duration::from_secs(60),
                    lease,
                    || lookup(&b),
                    || fetch(&b, &runs, Duration::ZERO),
                )
                .await;
                (got, started.elapsed())
            })
        };
        tokio::time::sleep(lease).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the follower ran the work while the leader lived"
        );
        leader.abort();
        let (got, waited) = follower.await.expect("join");
        got.expect("the follower completes the dead leader's fetch");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(waited < Duration::from_secs(10), "took {waited:?} to take over");
    }

    /// A definitive failure answers every replica's later claim without running the work; a
    /// transient one only its own flight's followers (the next request tries again).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn definitive_failures_are_shared_and_transient_ones_are_not() {
        let db = TestDatabase::create().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let stores = replicas(&db, dir.path(), 2).await;
        let (a, b) = (stores[0].clone(), stores[1].clone());
        let runs = AtomicUsize::new(0);
        let fail = |e: TestError| {
            let runs = &runs;
            move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Err::<Arc<Manifest>, _>(e)
            }
        };
        let ask = |store: &Arc<Store>, key: &'static str, work| {
            let store = store.clone();
            async move {
                across_replicas(
                    &store,
                    key,
                    "fetch",
                    Duration::from_secs(10),
                    Duration::from_secs(60),
                    || lookup(&store),
                    work,
                )
                .await
            }
        };
        let first = ask(&a, "k-missing", fail(TestError::Missing("no such module".into()))).await;
        assert_eq!(first, Err(TestError::Missing("no such module".into())));
        let again = ask(&b, "k-missing", fail(TestError::Missing("never asked".into()))).await;
        assert_eq!(again, Err(TestError::Missing("no such module".into())), "remembered");
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        let first = ask(&a, "k-down", fail(TestError::Down("reset".into()))).await;
        assert_eq!(first, Err(TestError::Down("reset".into())));
        let again = ask(&b, "k-down", fail(TestError::Down("reset again".into()))).await;
        assert_eq!(again, Err(TestError::Down("reset again".into())), "tried again");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
