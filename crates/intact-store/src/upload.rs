//! Bookkeeping for uploads while their bytes stream: which transactions have uploads in
//! flight (a commit must not race them), and how many bytes each has received (the lease is
//! renewed only while bytes arrive, and an idle body is ended).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// How long an upload counts on a shared catalog without its process renewing it: a dead
/// replica's upload stops holding commits back this long after its last renewal.
pub(crate) const SHARED_UPLOAD_LEASE: std::time::Duration = std::time::Duration::from_secs(15);

/// An upload recorded in a shared catalog (so a commit on any replica refuses while it
/// streams): renewed while its work runs, ended when it is done, or when this drops (a
/// cancelled request); if the process dies instead, its lease lapses.
pub(crate) struct SharedUpload {
    catalog: Arc<dyn crate::Catalog>,
    id: String,
}

impl SharedUpload {
    pub async fn start(catalog: Arc<dyn crate::Catalog>, txn: &TxnId) -> crate::Result<Self> {
        let mut bytes = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        catalog.start_upload(txn, &id, SHARED_UPLOAD_LEASE).await?;
        Ok(Self { catalog, id })
    }

    /// Runs `work`, renewing this upload's lease every third of it, and ends the upload once
    /// `work` is done (awaited: a commit right after the upload must not still count it).
    pub async fn run<T>(mut self, work: impl std::future::Future<Output = T>) -> T {
        let every = SHARED_UPLOAD_LEASE / 3;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => {
                    let id = std::mem::take(&mut self.id);
                    if let Err(e) = self.catalog.end_upload(&id).await {
                        tracing::warn!(error = %e, "ending an upload failed; its lease will lapse");
                    }
                    return out;
                }
                _ = tick.tick() => {
                    if let Err(e) = self.catalog.renew_upload(&self.id, SHARED_UPLOAD_LEASE).await {
                        tracing::warn!(error = %e, "renewing an upload's lease failed");
                    }
                }
            }
        }
    }
}

impl Drop for SharedUpload {
    fn drop(&mut self) {
        if self.id.is_empty() {
            return;
        }
        let (catalog, id) = (self.catalog.clone(), std::mem::take(&mut self.id));
        crate::cleanup::spawn("ending a shared upload", async move {
            if let Err(e) = catalog.end_upload(&id).await {
                tracing::warn!(error = %e, "ending an upload failed; its lease will lapse");
            }
        });
    }
}

/// A body reader that counts the bytes it hands out, so a watcher can tell an upload that is
/// receiving bytes from one that stalled.
pub(crate) struct Metered<'a> {
    pub inner: &'a mut (dyn AsyncRead + Send + Unpin),
    pub received: Arc<AtomicU64>,
    /// Set once the body has ended (a read found its end): what the upload still takes is
    /// the store's work, which no client timeout may judge.
    pub ended: Arc<AtomicBool>,
}

impl AsyncRead for Metered<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut *self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.received.fetch_add(n, Ordering::Relaxed);
        } else if matches!(res, Poll::Ready(Ok(()))) && buf.remaining() > 0 {
            self.ended.store(true, Ordering::Relaxed);
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
