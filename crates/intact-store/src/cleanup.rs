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
use std::sync::LazyLock;
use std::time::Duration;

use tokio_util::task::TaskTracker;

/// Process-wide: the values owing cleanups (blob stores' pending objects, uploads) do not know
/// which server, if any, they belong to.
static CLEANUPS: LazyLock<TaskTracker> = LazyLock::new(TaskTracker::new);

/// Runs `work` in the background on the current runtime, tracked for [`finish`]. Outside a
/// runtime (a drop during a runtime's own teardown) the work is left to the later sweep, and
/// `what` says so in the log.
pub(crate) fn spawn(what: &'static str, work: impl Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            CLEANUPS.spawn_on(work, &runtime);
        }
        Err(_) => tracing::warn!(
            cleanup = what,
            "no runtime left to run a cleanup on; a later sweep does it"
        ),
    }
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

    #[tokio::test]
    async fn finish_waits_for_cleanups_spawned_by_drops() {
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
        let done = Arc::new(AtomicBool::new(false));
        drop(OwesWork(done.clone()));
        assert_eq!(finish(Duration::from_secs(10)).await, 0);
        assert!(done.load(Ordering::SeqCst), "finish returned before the cleanup ran");
    }
}
