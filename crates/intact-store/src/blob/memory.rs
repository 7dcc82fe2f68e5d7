//! Blobs in memory: a real, small backend for tests and throwaway stores. Same contract as
//! the others (content-addressed, pending bytes discarded on drop, quarantine keeps damaged
//! bytes aside), nothing survives the process.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use intact_core::{Digest, DigestHasher};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::testing::BlobTestHooks;
use super::{BlobBody, BlobRead, BlobStore, PendingBlob, PendingHandle, Progress};
use crate::{Error, Result};

const READ_BUFFER: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Blobs {
    stored: HashMap<Digest, Bytes>,
    /// Damaged bytes taken out of service, kept for inspection.
    quarantined: Vec<(Digest, Bytes)>,
    /// Pieces of resumable uploads, by name.
    pieces: HashMap<String, Bytes>,
}

#[derive(Debug, Clone, Default)]
pub struct MemoryBlobStore {
    blobs: Arc<Mutex<Blobs>>,
    /// Ids of the pending blobs still held (their bytes live in the handles).
    pending: Arc<Mutex<HashSet<u64>>>,
    next_pending: Arc<AtomicU64>,
}

/// A pending blob's bytes; dropping the handle frees them.
#[derive(Debug)]
struct MemoryPending {
    id: u64,
    bytes: Bytes,
    pending: Arc<Mutex<HashSet<u64>>>,
}

impl PendingHandle for MemoryPending {}

impl Drop for MemoryPending {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryBlobStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many damaged blobs were taken out of service.
    pub fn quarantined(&self) -> usize {
        lock(&self.blobs).quarantined.len()
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn write(
        &self,
        body: &mut (dyn AsyncRead + Send + Unpin),
        progress: Option<Progress<'_>>,
    ) -> Result<PendingBlob> {
        let id = self.next_pending.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(id);
        // Registered first, so an error below (which drops it) unregisters the id.
        let mut handle = MemoryPending {
            id,
            bytes: Bytes::new(),
            pending: self.pending.clone(),
        };
        let mut hasher = DigestHasher::new();
        let mut bytes = Vec::new();
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let n = body.read(&mut buf).await.map_err(Error::Body)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes.extend_from_slice(&buf[..n]);
            if let Some(p) = progress {
                p(hasher.len());
            }
        }
        handle.bytes = Bytes::from(bytes);
        Ok(PendingBlob {
            size: hasher.len(),
            digest: hasher.finish(),
            handle: Box::new(handle),
        })
    }

    async fn persist(&self, pending: PendingBlob) -> Result<()> {
        let digest = pending.digest;
        let handle = pending.into_handle::<MemoryPending>()?;
        lock(&self.blobs)
            .stored
            .entry(digest)
            .or_insert_with(|| handle.bytes.clone());
        Ok(())
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(lock(&self.blobs).stored.get(digest).map(|b| b.len() as u64))
    }

    async fn read(&self, digest: &Digest, range: Option<std::ops::Range<u64>>) -> Result<BlobRead> {
        let bytes = lock(&self.blobs)
            .stored
            .get(digest)
            .cloned()
            .ok_or(Error::BlobMissing { digest: *digest })?;
        let size = bytes.len() as u64;
        let part = match range {
            None => bytes,
            Some(r) => {
                let end = usize::try_from(r.end.min(size)).unwrap_or(bytes.len());
                let start = usize::try_from(r.start).unwrap_or(end).min(end);
                bytes.slice(start..end)
            }
        };
        Ok(BlobRead {
            size,
            body: BlobBody::chunks(futures::stream::once(async move { Ok(part) })),
            local_path: None,
        })
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        lock(&self.blobs).stored.remove(digest);
        Ok(())
    }

    async fn quarantine(&self, digest: &Digest) -> Result<bool> {
        let mut blobs = lock(&self.blobs);
        match blobs.stored.get(digest) {
            Some(bytes) if Digest::of(bytes) != *digest => {
                if let Some(bytes) = blobs.stored.remove(digest) {
                    blobs.quarantined.push((*digest, bytes));
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn list(&self, after: Option<Digest>) -> BoxStream<'_, Result<Digest>> {
        let mut digests: Vec<Digest> = lock(&self.blobs)
            .stored
            .keys()
            .copied()
            .filter(|d| after.is_none_or(|a| *d > a))
            .collect();
        digests.sort_unstable();
        futures::stream::iter(digests.into_iter().map(Ok)).boxed()
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn sweep_pending(&self, _older_than: Duration) -> Result<u64> {
        // Pending bytes live in their handles and go with them: nothing is ever left over.
        Ok(0)
    }

    async fn put_piece(&self, upload: &str, bytes: Bytes) -> Result<String> {
        let name = super::new_piece_name(upload)?;
        lock(&self.blobs).pieces.insert(name.clone(), bytes);
        Ok(name)
    }

    async fn read_piece(&self, piece: &str) -> Result<BlobBody> {
        super::check_piece_name(piece)?;
        let bytes = lock(&self.blobs)
            .pieces
            .get(piece)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: format!("upload piece {piece}"),
            })?;
        Ok(BlobBody::chunks(futures::stream::once(async move { Ok(bytes) })))
    }

    async fn delete_piece(&self, piece: &str) -> Result<()> {
        super::check_piece_name(piece)?;
        lock(&self.blobs).pieces.remove(piece);
        Ok(())
    }

    async fn delete_pieces(&self, upload: &str) -> Result<u64> {
        super::check_upload_id(upload)?;
        let prefix = format!("{upload}-");
        let mut blobs = lock(&self.blobs);
        let before = blobs.pieces.len();
        blobs.pieces.retain(|name, _| !name.starts_with(&prefix));
        Ok((before - blobs.pieces.len()) as u64)
    }
}

#[async_trait]
impl BlobTestHooks for MemoryBlobStore {
    async fn store_raw(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        lock(&self.blobs).stored.insert(*digest, Bytes::copy_from_slice(bytes));
        Ok(())
    }

    async fn pending_count(&self) -> Result<usize> {
        Ok(lock(&self.pending).len())
    }

    async fn piece_count(&self) -> Result<usize> {
        Ok(lock(&self.blobs).pieces.len())
    }
}
