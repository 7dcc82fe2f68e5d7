//! Work a value owes the outside world when it is dropped: deleting a discarded S3 object,
//! aborting an unfinished multipart upload, ending a shared upload's lease, quarantining a
//! blob a read found damaged. A `Drop` cannot wait, so the work is spawned; it is tracked here
//! so that a server shutting down lets it finish ([`finish`]) instead of losing it with the
//! runtime (the requests a shutdown cancels are exactly the ones that drop such values).
//!
//! Nothing depends on this for correctness: what a lost cleanup leaves behind is swept later
//! (gc deletes pending objects, leases run out, a damaged blob is found again). It saves that
//! wait and the bytes held meanwhile.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::task::TaskTracker;

/// Process-wide: the values owing cleanups (blob stores' pending objects, uploads) do not know
/// which server, if any, they belong to.
static CLEANUPS: LazyLock<TaskTracker> = LazyLock::new(TaskTracker::new);

/// The runtime cleanups run on, when a server named one ([`run_on`]), with its registration's
/// number. Requests are served on per-thread runtimes that end with the shutdown that cancels
/// them: work spawned there as they are dropped would end with them.
static RUNTIME: Mutex<Option<(u64, Handle)>> = Mutex::new(None);
static REGISTRATIONS: AtomicU64 = AtomicU64::new(0);

/// While the returned value lives, cleanups run on `runtime` (a server's main runtime, which
/// outlives its serving threads and waits in [`finish`]).
pub fn run_on(runtime: Handle) -> RunningOn {
    let number = REGISTRATIONS.fetch_add(1, Ordering::Relaxed);
    *RUNTIME.lock().unwrap_or_else(PoisonError::into_inner) = Some((number, runtime));
    RunningOn(number)
}

/// See [`run_on`]; dropped, cleanups run where they are spawned again (unless another server
/// has named its runtime since).
pub struct RunningOn(u64);

impl Drop for RunningOn {
    fn drop(&mut self) {
        let mut runtime = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
        if runtime.as_ref().is_some_and(|(number, _)| *number == self.0) {
            *runtime = None;
        }
    }
}

/// Runs `work` in the background, tracked for [`finish`]: on `runtime` when given, else on the
/// runtime a server named, else on the current one. Outside any runtime the work is left to
/// the later sweep, and `what` says so in the log.
pub fn spawn_on(runtime: Option<&Handle>, what: &'static str, work: impl Future<Output = ()> + Send + 'static) {
    let chosen = runtime.cloned().or_else(|| {
        RUNTIME
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, runtime)| runtime.clone())
    });
    match chosen.map_or_else(Handle::try_current, Ok) {
        Ok(runtime) => {
            CLEANUPS.spawn_on(work, &runtime);
        }
        Err(_) => tracing::warn!(
            cleanup = what,
            "no runtime left to run a cleanup on; a later sweep does it"
        ),
    }
}

/// [`spawn_on`] the runtime a server named, else the current one.
pub fn spawn(what: &'static str, work: impl Future<Output = ()> + Send + 'static) {
    spawn_on(None, what, work);
}

/// Waits until every cleanup spawned so far (and any they spawn) has finished, or `deadline`
/// has passed; how many were still running then.
pub async fn finish(deadline: Duration) -> usize {
    let until = tokio::time::Instant::now() + deadline;
    // Polled rather than closed and awaited: the tracker is the process's, and another store
    // in the same process (tests run several servers) keeps using it meanwhile.
    while !CLEANUPS.is_empty() && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    CLEANUPS.len()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    struct OwesWork(Arc<AtomicBool>);

    impl Drop for OwesWork {
        fn drop(&mut self) {
            let done = self.0.clone();
            spawn("test", async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                done.store(true, Ordering::SeqCst);
            });
        }
    }

    #[tokio::test]
    async fn finish_waits_for_cleanups_spawned_by_drops() {
        let done = Arc::new(AtomicBool::new(false));
        drop(OwesWork(done.clone()));
        assert_eq!(finish(Duration::from_secs(10)).await, 0);
        assert!(done.load(Ordering::SeqCst), "finish returned before the cleanup ran");
    }

    /// As a serving thread's runtime ends with the shutdown that cancelled its requests, what
    /// their drops owe still runs, on the runtime the server named.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn cleanups_spawned_on_a_runtime_that_ends_run_on_the_named_one() {
        let _here = run_on(Handle::current());
        let done = Arc::new(AtomicBool::new(false));
        let owed = OwesWork(done.clone());
        std::thread::spawn(move || {
            let serving = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            serving.block_on(async move { drop(owed) });
        })
        .join()
        .expect("serving thread");
        assert_eq!(finish(Duration::from_secs(10)).await, 0);
        assert!(
            done.load(Ordering::SeqCst),
            "the cleanup ended with the serving runtime"
        );
    }
}
