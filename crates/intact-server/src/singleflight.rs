//! Single-flight: any number of concurrent requests for the same key cause exactly one run of
//! the work; every waiter receives the leader's outcome, success or failure, through the same
//! path (HARD-PARTS "Single-flight").
//!
//! * The work runs detached (`tokio::spawn`), so the client that triggered it may disconnect
//!   without cancelling it for everyone else.
//! * Waiting is bounded; the timeout error names what was being waited on. The work itself
//!   keeps running past a waiter's timeout (a long fetch never "falls off the lock").
//! * A failure is remembered for a configured time, so a storm of requests for something
//!   missing upstream does not hammer it; after that the next request tries again.
//!
//! Correctness never depends on this: it only avoids duplicate work. The catalog commit
//! decides what becomes visible.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Why a waiter got no value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlightError<E> {
    /// The work failed (now, or within the failure memory): its error, shared by all waiters.
    #[error("{0}")]
    Failed(Arc<E>),
    /// This waiter stopped waiting; the work goes on.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    /// The work panicked or was cancelled.
    #[error("{what} was interrupted")]
    Interrupted { what: String },
}

type Outcome<V, E> = Option<Result<V, Arc<E>>>;

struct Flights<K, V, E> {
    running: HashMap<K, watch::Receiver<Outcome<V, E>>>,
    failures: HashMap<K, (Instant, Arc<E>)>,
}

/// A single-flight group for keys `K` producing `V` or failing with `E`.
pub struct SingleFlight<K, V, E> {
    inner: Arc<Mutex<Flights<K, V, E>>>,
    failure_ttl: Duration,
}

impl<K, V, E> std::fmt::Debug for SingleFlight<K, V, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight")
            .field("failure_ttl", &self.failure_ttl)
            .finish_non_exhaustive()
    }
}

impl<K, V, E> SingleFlight<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    pub fn new(failure_ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Flights {
                running: HashMap::new(),
                failures: HashMap::new(),
            })),
            failure_ttl,
        }
    }

    /// Whether work for `key` is running right now.
    pub fn is_running(&self, key: &K) -> bool {
        self.inner.lock().map(|g| g.running.contains_key(key)).unwrap_or(false)
    }

    /// A remembered failure for `key`, if still fresh.
    pub fn recent_failure(&self, key: &K) -> Option<Arc<E>> {
        let mut g = self.inner.lock().ok()?;
        match g.failures.get(key) {
            Some((at, e)) if at.elapsed() < self.failure_ttl => Some(e.clone()),
            Some(_) => {
                g.failures.remove(key);
                None
            }
            None => None,
        }
    }

    /// Forgets a remembered failure (e.g. an operator asked to retry now).
    pub fn forget_failure(&self, key: &K) {
        if let Ok(mut g) = self.inner.lock() {
            g.failures.remove(key);
        }
    }

    /// Runs `work` for `key` unless it is already running (then joins it) or failed recently
    /// (then returns that failure). Waits at most `wait`; `what` names the work in errors.
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
            if let Some((at, e)) = g.failures.get(&key) {
                if at.elapsed() < self.failure_ttl {
                    return Err(FlightError::Failed(e.clone()));
                }
                g.failures.remove(&key);
            }
            match g.running.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel::<Outcome<V, E>>(None);
                    g.running.insert(key.clone(), rx.clone());
                    let fut = work();
                    let inner = self.inner.clone();
                    let key = key.clone();
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
                        if let (Err(e), Ok(mut g)) = (&result, inner.lock()) {
                            g.failures.insert(key, (Instant::now(), e.clone()));
                        }
                        // Clear the running entry *before* publishing: a request arriving after
                        // the outcome either sees the committed result or the remembered
                        // failure, never a finished flight.
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

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let sf: Arc<SingleFlight<&'static str, u32, String>> = Arc::new(SingleFlight::new(Duration::from_secs(5)));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let sf = sf.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                sf.run("k", "thing", Duration::from_secs(10), move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, String>(7)
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
    async fn failures_reach_every_waiter_and_are_remembered_then_retried() {
        let sf: Arc<SingleFlight<u8, u32, String>> = Arc::new(SingleFlight::new(Duration::from_secs(30)));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let sf = sf.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                sf.run(1, "upstream thing", Duration::from_secs(10), move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Err::<u32, _>("upstream said 500".to_owned())
                })
                .await
            }));
        }
        for t in tasks {
            match t.await.expect("join") {
                Err(FlightError::Failed(e)) => assert_eq!(*e, "upstream said 500"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Remembered: no new run within the TTL.
        let again = sf
            .run(1, "x", Duration::from_secs(1), || async { Ok::<u32, String>(1) })
            .await;
        assert!(matches!(again, Err(FlightError::Failed(_))));
        tokio::time::advance(Duration::from_secs(31)).await;
        let retried = sf
            .run(1, "x", Duration::from_secs(1), || async { Ok::<u32, String>(9) })
            .await;
        assert_eq!(retried.expect("retried after ttl"), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_is_bounded_but_work_continues() {
        let sf: Arc<SingleFlight<u8, u32, String>> = Arc::new(SingleFlight::new(Duration::from_secs(1)));
        let slow = sf.run(1, "slow download", Duration::from_secs(5), || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<u32, String>(3)
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
                Ok::<u32, String>(0)
            })
            .await;
        assert_eq!(joined.expect("joined the running work"), 3);
    }

    #[tokio::test]
    async fn leader_disconnect_does_not_cancel() {
        let sf: Arc<SingleFlight<u8, u32, String>> = Arc::new(SingleFlight::new(Duration::from_secs(1)));
        let sf2 = sf.clone();
        let leader = tokio::spawn(async move {
            sf2.run(1, "w", Duration::from_secs(10), || async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<u32, String>(5)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        leader.abort(); // the client that triggered the work goes away
        let v = sf
            .run(1, "w", Duration::from_secs(10), || async { Ok::<u32, String>(0) })
            .await;
        assert_eq!(v.expect("shared result"), 5);
    }
}
