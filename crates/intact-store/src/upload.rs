//! Bookkeeping for uploads while their bytes stream: which transactions have uploads in
//! flight (a commit must not race them), and how many bytes each has received (the lease is
//! renewed only while bytes arrive, and an idle body is ended).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use intact_core::TxnId;
use tokio::io::{AsyncRead, ReadBuf};

/// Uploads in progress in this process, by transaction.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    by_txn: Arc<Mutex<HashMap<TxnId, usize>>>,
}

impl InFlight {
    /// Registers an upload into `id` until the returned guard drops.
    pub fn start(&self, id: &TxnId) -> UploadGuard {
        *self
            .by_txn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.clone())
            .or_insert(0) += 1;
        UploadGuard {
            by_txn: self.by_txn.clone(),
            id: id.clone(),
        }
    }

    /// How many uploads into `id` are still streaming or staging.
    pub fn count(&self, id: &TxnId) -> usize {
        self.by_txn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .copied()
            .unwrap_or(0)
    }
}

/// One upload in flight; dropping it (success, failure or a cancelled request) ends it.
#[derive(Debug)]
pub(crate) struct UploadGuard {
    by_txn: Arc<Mutex<HashMap<TxnId, usize>>>,
    id: TxnId,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        let mut map = self.by_txn.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.id);
            }
        }
    }
}

/// A body reader that counts the bytes it hands out, so a watcher can tell an upload that is
/// receiving bytes from one that stalled.
pub(crate) struct Metered<'a> {
    pub inner: &'a mut (dyn AsyncRead + Send + Unpin),
    pub received: Arc<AtomicU64>,
}

impl AsyncRead for Metered<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut *self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.received.fetch_add(n, Ordering::Relaxed);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_uploads_per_transaction() {
        let flights = InFlight::default();
        let a = TxnId::from_random([1; 17]);
        let b = TxnId::from_random([2; 17]);
        let g1 = flights.start(&a);
        let g2 = flights.start(&a);
        let g3 = flights.start(&b);
        assert_eq!((flights.count(&a), flights.count(&b)), (2, 1));
        drop(g1);
        drop(g3);
        assert_eq!((flights.count(&a), flights.count(&b)), (1, 0));
        drop(g2);
        assert_eq!(flights.count(&a), 0);
        assert!(
            flights.by_txn.lock().expect("lock").is_empty(),
            "finished transactions leave no entry"
        );
    }
}
