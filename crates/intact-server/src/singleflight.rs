//! Single-flight: any number of concurrent requests for the same key cause exactly one run of
//! the work; every waiter receives the leader's outcome, success or failure, through the same
//! path.
//!
//! * The work runs detached (`tokio::spawn`), so the client that triggered it may disconnect
//!   without cancelling it for everyone else.
//! * Waiting is bounded; the timeout error names what was being waited on. The work itself
//!   keeps running past a waiter's timeout (a long fetch never "falls off the lock"); callers
//!   give the upstream part of their work its own overall deadline, so no flight runs forever.
//! * Failures come in two kinds ([`Failure::is_definitive`]). A *definitive* answer ("not
//!   found" upstream, content that broke the rules) is remembered for the failure TTL, a
//!   negative cache, so a storm of requests for something missing costs the upstream one
//!   request; later requests get it as [`FlightError::Remembered`], which says since and until
//!   when. A *transient* fault (a refused or reset connection, a 5xx, a cut body, a timeout)
//!   reaches only the waiters of the flight that met it: the next request tries again, so a
//!   one-request glitch never becomes an outage.
//! * The memory is bounded: expired entries are swept at least once per TTL, and past
//!   [`MAX_REMEMBERED`] entries the oldest are dropped (forgetting only costs a request), so
//!   clients asking for endless distinct missing keys cannot grow the server.
//!
//! Correctness never depends on this: it only avoids duplicate work. The catalog commit
//! decides what becomes visible.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use intact_core::Timestamp;
use tokio::sync::watch;
use tokio::time::Instant;

/// The most failures one group remembers at once.
pub const MAX_REMEMBERED: usize = 4096;

/// What single-flight needs to know about a failure.
pub trait Failure {
    /// A definitive answer about the key, remembered for the failure TTL; otherwise a
    /// transient fault, shared by the waiters of the failed run only.
    fn is_definitive(&self) -> bool;
}

/// Why a waiter got no value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlightError<E> {
    /// The run this waiter started or joined failed: its error, shared by all its waiters.
    #[error("{0}")]
    Failed(Arc<E>),
    /// A definitive failure of an earlier run, remembered from `at` until `until`.
    #[error("{error} ({})", remembered_note(*.at, *.until))]
    Remembered {
        error: Arc<E>,
        at: Timestamp,
        until: Timestamp,
    },
    /// This waiter stopped waiting; the work goes on.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    /// The work panicked or was cancelled.
    #[error("{what} was interrupted")]
    Interrupted { what: String },
}

/// How a remembered failure is told apart from a fresh one in error texts.
pub fn remembered_note(at: Timestamp, until: Timestamp) -> String {
    format!(
        "a remembered answer from {}, not asked again until {}",
        at.to_rfc3339_seconds(),
        until.to_rfc3339_seconds()
    )
}

type Outcome<V, E> = Option<Result<V, Arc<E>>>;

/// A remembered definitive failure.
struct Remembered<E> {
    /// When it is forgotten (tokio time, so tests can pause it).
    expires: Instant,
    /// When it happened, by the wall clock, for error texts.
    at: Timestamp,
    error: Arc<E>,
}

struct Flights<K, V, E> {
    running: HashMap<K, watch::Receiver<Outcome<V, E>>>,
    /// Never more than the group's limit; entries past `expires` are dropped by the next
    /// sweep, which runs at least once per TTL while failures keep arriving.
    failures: HashMap<K, Remembered<E>>,
    next_sweep: Instant,
}

impl<K: Hash + Eq, V, E> Flights<K, V, E> {
    fn remember(&mut self, key: K, error: Arc<E>, ttl: Duration, limit: usize) {
        if ttl.is_zero() || limit == 0 {
            return;
        }
        let now = Instant::now();
        if now >= self.next_sweep || self.failures.len() >= limit {
            self.failures.retain(|_, r| r.expires > now);
            self.next_sweep = now + ttl;
        }
        if self.failures.len() >= limit && !self.failures.contains_key(&key) {
            // Still full of live entries: forget the oldest quarter at once, so this O(n)
            // step runs once per limit/4 new failures.
            let mut expiries: Vec<Instant> = self.failures.values().map(|r| r.expires).collect();
            let cut = (limit / 4).max(1).min(expiries.len());
            let (_, newest_dropped, _) = expiries.select_nth_unstable(cut - 1);
            let newest_dropped = *newest_dropped;
            self.failures.retain(|_, r| r.expires > newest_dropped);
        }
        let at = Timestamp::from_system(SystemTime::now());
        self.failures.insert(
            key,
            Remembered {
                expires: now + ttl,
                at,
                error,
            },
        );
    }
}

/// What a group is doing, for people watching it (the web UI's activity page).
#[derive(Debug, Clone)]
pub struct FlightsNow<K> {
    /// Keys whose work runs right now.
    pub running: Vec<K>,
    /// Definitive failures still answered from memory.
    pub failures: Vec<RememberedFailure<K>>,
}

/// A remembered failure as [`FlightsNow`] tells it.
#[derive(Debug, Clone)]
pub struct RememberedFailure<K> {
    pub key: K,
    /// When it happened.
    pub at: Timestamp,
    /// How much longer it is answered from memory.
    pub remembered_for: Duration,
    pub error: String,
}

/// A single-flight group for keys `K` producing `V` or failing with `E`.
pub struct SingleFlight<K, V, E> {
    inner: Arc<Mutex<Flights<K, V, E>>>,
    failure_ttl: Duration,
    limit: usize,
}

impl<K, V, E> std::fmt::Debug for SingleFlight<K, V, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight")
            .field("failure_ttl", &self.failure_ttl)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<K, V, E> SingleFlight<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Failure + Send + Sync + 'static,
{
    /// A group remembering definitive failures for `failure_ttl` (0: not at all).
    pub fn new(failure_ttl: Duration) -> Self {
        Self::with_limit(failure_ttl, MAX_REMEMBERED)
    }

    /// Like [`SingleFlight::new`], remembering at most `limit` failures.
    pub fn with_limit(failure_ttl: Duration, limit: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Flights {
                running: HashMap::new(),
                failures: HashMap::new(),
                next_sweep: Instant::now() + failure_ttl,
            })),
            failure_ttl,
            limit,
        }
    }

    /// How many failures are remembered right now (expired ones included until swept).
    pub fn remembered_failures(&self) -> usize {
        self.inner.lock().map(|g| g.failures.len()).unwrap_or(0)
    }

    /// The keys running now and the failures remembered now (expired ones left out).
    pub fn now(&self) -> FlightsNow<K>
    where
        E: std::fmt::Display,
    {
        let Ok(g) = self.inner.lock() else {
            return FlightsNow {
                running: Vec::new(),
                failures: Vec::new(),
            };
        };
        let now = Instant::now();
        FlightsNow {
            running: g.running.keys().cloned().collect(),
            failures: g
                .failures
                .iter()
                .filter(|(_, r)| r.expires > now)
                .map(|(key, r)| RememberedFailure {
                    key: key.clone(),
                    at: r.at,
                    remembered_for: r.expires - now,
                    error: r.error.to_string(),
                })
                .collect(),
        }
    }

    /// Whether work for `key` is running right now.
    pub fn is_running(&self, key: &K) -> bool {
        self.inner.lock().map(|g| g.running.contains_key(key)).unwrap_or(false)
    }

    /// Runs `work` for `key` unless it is already running (then joins it) or failed
    /// definitively within the failure TTL (then returns that failure). Waits at most `wait`;
    /// `what` names the work in errors.
    pub async fn run<F, Fut>(&self, key: K, what: &str, wait: Duration, work: F) -> Result<V, FlightError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let mut rx = {
            let mut g = self
                .inner
                .lock()
                .map_err(|_| FlightError::Interrupted { what: what.to_owned() })?;
            if let Some(r) = g.failures.get(&key) {
                if r.expires > Instant::now() {
                    return Err(FlightError::Remembered {
                        error: r.error.clone(),
                        at: r.at,
                        until: r.at.plus(self.failure_ttl),
                    });
                }
                g.failures.remove(&key);
            }
            match g.running.get(&key) {
                Some(rx) => {
                    crate::observe::coalesced("process");
                    rx.clone()
                }
                None => {
                    let (tx, rx) = watch::channel::<Outcome<V, E>>(None);
                    g.running.insert(key.clone(), rx.clone());
                    let fut = work();
                    let inner = self.inner.clone();
                    let key = key.clone();
                    let (ttl, limit) = (self.failure_ttl, self.limit);
                    tokio::spawn(async move {
                        // A guard so that a panicking `fut` still clears the running entry
                        // (waiters then see the channel close and report Interrupted).
                        struct Clear<K: Hash + Eq, V, E> {
                            inner: Arc<Mutex<Flights<K, V, E>>>,
                            key: Option<K>,
                        }
                        impl<K: Hash + Eq, V, E> Drop for Clear<K, V, E> {
                            fn drop(&mut self) {
                                if let (Some(k), Ok(mut g)) = (self.key.take(), self.inner.lock()) {
                                    g.running.remove(&k);
                                }
                            }
                        }
                        let clear = Clear {
                            inner: inner.clone(),
                            key: Some(key.clone()),
                        };
                        let result = fut.await.map_err(Arc::new);
                        if let Err(e) = &result
                            && e.is_definitive()
                            && let Ok(mut g) = inner.lock()
                        {
                            g.remember(key, e.clone(), ttl, limit);
                        }
                        // Clear the running entry *before* publishing: a request arriving after
                        // the outcome either sees the committed result, the remembered
                        // failure, or (after a transient one) starts a new run; never a
                        // finished flight.
                        drop(clear);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        let deadline = Instant::now() + wait;
        loop {
            if let Some(outcome) = rx.borrow_and_update().clone() {
                return outcome.map_err(FlightError::Failed);
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // Sender gone without an outcome: the work panicked or was aborted.
                        return match rx.borrow().clone() {
                            Some(outcome) => outcome.map_err(FlightError::Failed),
                            None => Err(FlightError::Interrupted { what: what.to_owned() }),
                        };
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(FlightError::Timeout { what: what.to_owned(), seconds: wait.as_secs() });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A test failure: `Missing` is definitive, `Down` transient.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum TestError {
        Missing,
        Down,
    }

    impl Failure for TestError {
        fn is_definitive(&self) -> bool {
            *self == TestError::Missing
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_reach_the_flight_only_and_the_next_request_retries() {
        let sf: Arc<SingleFlight<u8, u32, TestError>> = Arc::new(SingleFlight::new(Duration::from_secs(30)));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (sf, runs) = (sf.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                sf.run(1, "thing", Duration::from_secs(10), move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Err::<u32, _>(TestError::Down)
                })
                .await
            }));
        }
        for t in tasks {
            match t.await.expect("join") {
                Err(FlightError::Failed(e)) => assert_eq!(*e, TestError::Down),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the waiters shared one run");
        assert_eq!(sf.remembered_failures(), 0);
        // No time passes: the very next request runs again (the upstream may be back).
        let next = sf
            .run(1, "thing", Duration::from_secs(1), || async { Ok::<u32, TestError>(4) })
            .await;
        assert_eq!(next.expect("retried at once"), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn remembered_failures_stay_bounded_and_expire() {
        const CAP: usize = 64;
        let sf: SingleFlight<u32, u32, TestError> = SingleFlight::with_limit(Duration::from_secs(30), CAP);
        let mut most = 0;
        for key in 0..(CAP as u32 * 20) {
            let r = sf
                .run(key, "missing thing", Duration::from_secs(1), || async {
                    Err::<u32, _>(TestError::Missing)
                })
                .await;
            assert!(matches!(r, Err(FlightError::Failed(_))), "{r:?}");
            // The flight publishes after it is cleared; let its task finish.
            tokio::task::yield_now().await;
            most = most.max(sf.remembered_failures());
        }
        assert!(most <= CAP, "{most} remembered failures for a cap of {CAP}");
        assert!(sf.remembered_failures() > 0, "recent failures are remembered");
        // Past the memory, expired entries are dropped (not just ignored) by the next failure.
        tokio::time::advance(Duration::from_secs(31)).await;
        let _ = sf
            .run(u32::MAX, "missing thing", Duration::from_secs(1), || async {
                Err::<u32, _>(TestError::Missing)
            })
            .await;
        tokio::task::yield_now().await;
        assert_eq!(sf.remembered_failures(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_remembered_failure_says_so_and_until_when() {
        let sf: SingleFlight<u8, u32, TestError> = SingleFlight::new(Duration::from_secs(30));
        let first = sf
            .run(1, "x", Duration::from_secs(1), || async {
                Err::<u32, _>(TestError::Missing)
            })
            .await;
        assert!(matches!(first, Err(FlightError::Failed(_))), "{first:?}");
        tokio::task::yield_now().await;
        match sf
            .run(1, "x", Duration::from_secs(1), || async { Ok::<u32, TestError>(1) })
            .await
        {
            Err(FlightError::Remembered { error, at, until }) => {
                assert_eq!(*error, TestError::Missing);
                assert_eq!(until.millis() - at.millis(), 30_000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let sf: Arc<SingleFlight<&'static str, u32, TestError>> = Arc::new(SingleFlight::new(Duration::from_secs(5)));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let sf = sf.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                sf.run("k", "thing", Duration::from_secs(10), move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, TestError>(7)
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("join").expect("value"), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn definitive_failures_reach_every_waiter_and_are_remembered_then_retried() {
        let sf: Arc<SingleFlight<u8, u32, TestError>> = Arc::new(SingleFlight::new(Duration::from_secs(30)));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let sf = sf.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                sf.run(1, "upstream thing", Duration::from_secs(10), move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Err::<u32, _>(TestError::Missing)
                })
                .await
            }));
        }
        for t in tasks {
            match t.await.expect("join") {
                Err(FlightError::Failed(e)) => assert_eq!(*e, TestError::Missing),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Remembered: no new run within the TTL.
        let again = sf
            .run(1, "x", Duration::from_secs(1), || async { Ok::<u32, TestError>(1) })
            .await;
        assert!(matches!(again, Err(FlightError::Remembered { .. })), "{again:?}");
        tokio::time::advance(Duration::from_secs(31)).await;
        let retried = sf
            .run(1, "x", Duration::from_secs(1), || async { Ok::<u32, TestError>(9) })
            .await;
        assert_eq!(retried.expect("retried after ttl"), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_is_bounded_but_work_continues() {
        let sf: Arc<SingleFlight<u8, u32, TestError>> = Arc::new(SingleFlight::new(Duration::from_secs(1)));
        let slow = sf.run(1, "slow download", Duration::from_secs(5), || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<u32, TestError>(3)
        });
        match slow.await {
            Err(FlightError::Timeout { what, seconds }) => {
                assert_eq!(what, "slow download");
                assert_eq!(seconds, 5);
            }
            other => panic!("{other:?}"),
        }
        assert!(sf.is_running(&1), "the work outlives the waiter");
        let joined = sf
            .run(1, "slow download", Duration::from_secs(120), || async {
                Ok::<u32, TestError>(0)
            })
            .await;
        assert_eq!(joined.expect("joined the running work"), 3);
    }

    #[tokio::test]
    async fn leader_disconnect_does_not_cancel() {
        let sf: Arc<SingleFlight<u8, u32, TestError>> = Arc::new(SingleFlight::new(Duration::from_secs(1)));
        let sf2 = sf.clone();
        let leader = tokio::spawn(async move {
            sf2.run(1, "w", Duration::from_secs(10), || async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<u32, TestError>(5)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        leader.abort(); // the client that triggered the work goes away
        let v = sf
            .run(1, "w", Duration::from_secs(10), || async { Ok::<u32, TestError>(0) })
            .await;
        assert_eq!(v.expect("shared result"), 5);
    }
}
