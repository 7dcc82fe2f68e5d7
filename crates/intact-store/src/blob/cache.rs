//! A per-replica local cache in front of a remote blob store (S3): whole blobs kept as plain
//! files under `dir/<64 hex>`, at most `max_size` bytes, least recently read evicted first.
//! Content-addressed, so an entry is never stale: the bytes under a digest never change.
//!
//! A cold whole-blob read streams from the remote store and is copied into the cache on the
//! side (a background writer fed through a bounded channel: when the writer falls behind,
//! that read simply stops filling, it never slows the client). The copy becomes an entry only
//! once it hashed to its digest. Warm reads (whole or ranged) are served from the local file,
//! with `local_path` set. Writes, deletes and listings go to the remote store.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use intact_core::{Digest, DigestHasher};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use super::{BlobBody, BlobRead, BlobStore, PendingBlob, Progress};
use crate::{Error, Result};

/// Chunks queued for the background writer of one fill before the fill gives up.
const FILL_QUEUE: usize = 64;

/// How an unfinished fill's temporary file is named (then the digest and a random suffix).
const FILL_PREFIX: &str = "fill-";

/// The cache's bookkeeping: entries by digest, and by last use (oldest first).
#[derive(Debug, Default)]
struct Index {
    entries: HashMap<Digest, (u64, u64)>,
    by_use: BTreeMap<u64, Digest>,
    total: u64,
    clock: u64,
}

impl Index {
    fn touch(&mut self, digest: &Digest) -> bool {
        self.clock += 1;
        let now = self.clock;
        match self.entries.get_mut(digest) {
            Some((_, used)) => {
                self.by_use.remove(used);
                *used = now;
                self.by_use.insert(now, *digest);
                true
            }
            None => false,
        }
    }

    fn insert(&mut self, digest: Digest, size: u64) {
        if self.touch(&digest) {
            return;
        }
        self.clock += 1;
        self.entries.insert(digest, (size, self.clock));
        self.by_use.insert(self.clock, digest);
        self.total += size;
    }

    fn remove(&mut self, digest: &Digest) -> bool {
        match self.entries.remove(digest) {
            Some((size, used)) => {
                self.by_use.remove(&used);
                self.total -= size;
                true
            }
            None => false,
        }
    }

    /// Least recently used entries to drop so that the total fits `max`.
    fn evict_to(&mut self, max: u64) -> Vec<Digest> {
        let mut out = Vec::new();
        while self.total > max {
            let Some((_, digest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((size, _)) = self.entries.remove(&digest) {
                self.total -= size;
            }
            out.push(digest);
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    max_size: u64,
    index: Mutex<Index>,
}

impl Shared {
    fn path_of(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// Removes entries' files (after they left the index).
    async fn remove_files(&self, digests: Vec<Digest>) {
        for digest in digests {
            if let Err(e) = tokio::fs::remove_file(self.path_of(&digest)).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(%digest, error = %e, "removing an evicted cache entry failed");
            }
        }
    }
}

#[derive(Clone)]
pub struct CachedBlobStore {
    inner: Arc<dyn BlobStore>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CachedBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedBlobStore")
            .field("dir", &self.shared.dir)
            .field("max_size", &self.shared.max_size)
            .finish_non_exhaustive()
    }
}

impl CachedBlobStore {
    /// A cache in `dir` (created if needed) of at most `max_size` bytes in front of `inner`.
    /// Entries a previous run left are kept (oldest modified first to go); unfinished fills
    /// are removed; other files in `dir` are left alone.
    pub async fn open(inner: Arc<dyn BlobStore>, dir: &Path, max_size: u64) -> Result<Self> {
        let context = format!("opening blob cache {}", dir.display());
        let scan_dir = dir.to_owned();
        let found =
            tokio::task::spawn_blocking(move || -> std::io::Result<Vec<(std::time::SystemTime, Digest, u64)>> {
                std::fs::create_dir_all(&scan_dir)?;
                let mut found = Vec::new();
                for entry in std::fs::read_dir(&scan_dir)? {
                    let entry = entry?;
                    let meta = entry.metadata()?;
                    match entry.file_name().to_str().and_then(|n| Digest::parse(n).ok()) {
                        Some(digest) if meta.is_file() => {
                            found.push((meta.modified()?, digest, meta.len()));
                        }
                        // Only this cache's own unfinished fills: the dir may hold other
                        // files (set to the data dir, it holds the embedded catalog).
                        _ if meta.is_file()
                            && entry.file_name().to_str().is_some_and(|n| n.starts_with(FILL_PREFIX)) =>
                        {
                            std::fs::remove_file(entry.path())?;
                        }
                        _ => {}
                    }
                }
                found.sort();
                Ok(found)
            })
            .await
            .map_err(|e| Error::io(context.clone(), std::io::Error::other(e)))?
            .map_err(|e| Error::io(context, e))?;
        let mut index = Index::default();
        for (_, digest, size) in found {
            index.insert(digest, size);
        }
        let evicted = index.evict_to(max_size);
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            max_size,
            index: Mutex::new(index),
        });
        shared.remove_files(evicted).await;
        Ok(Self { inner, shared })
    }

    /// Bytes held in the cache now.
    pub fn cached_bytes(&self) -> u64 {
        lock(&self.shared.index).total
    }

    /// Whether `digest` is in the cache.
    pub fn contains(&self, digest: &Digest) -> bool {
        lock(&self.shared.index).entries.contains_key(digest)
    }

    /// Opens a cached blob, or `None` when it is not cached (or its file vanished).
    async fn read_cached(&self, digest: &Digest, range: &Option<std::ops::Range<u64>>) -> Result<Option<BlobRead>> {
        if !lock(&self.shared.index).touch(digest) {
            return Ok(None);
        }
        let path = self.shared.path_of(digest);
        // The same one-trip read as the file store's: warm reads at local-disk speed.
        let (size, body) = match super::local_read::open(path.clone(), range.clone()).await {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                lock(&self.shared.index).remove(digest);
                return Ok(None);
            }
            Err(e) => return Err(Error::io(format!("opening cached blob {}", path.display()), e)),
        };
        Ok(Some(BlobRead {
            size,
            body,
            local_path: Some(path),
        }))
    }

    /// Starts the background writer of one fill; returns where to send its chunks.
    fn start_fill(&self, digest: Digest, size: u64) -> Option<mpsc::Sender<Bytes>> {
        if size > self.shared.max_size {
            return None;
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(FILL_QUEUE);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let temp = shared
                .dir
                .join(format!("{FILL_PREFIX}{}-{}", digest.to_hex(), rand::random::<u64>()));
            let filled = async {
                let mut file = tokio::fs::File::create(&temp).await?;
                let mut hasher = DigestHasher::new();
                while let Some(chunk) = rx.recv().await {
                    hasher.update(&chunk);
                    file.write_all(&chunk).await?;
                }
                file.flush().await?;
                // Only bytes that hash to the digest become an entry (a cut-off or damaged
                // read leaves nothing behind).
                let whole = hasher.len() == size && hasher.finish() == digest;
                if whole {
                    tokio::fs::rename(&temp, shared.path_of(&digest)).await?;
                }
                std::io::Result::Ok(whole)
            }
            .await;
            match filled {
                Ok(true) => {
                    let evicted = {
                        let mut index = lock(&shared.index);
                        index.insert(digest, size);
                        index.evict_to(shared.max_size)
                    };
                    shared.remove_files(evicted).await;
                }
                Ok(false) => {
                    let _ = tokio::fs::remove_file(&temp).await;
                }
                Err(e) => {
                    tracing::warn!(%digest, error = %e, "filling the blob cache failed");
                    let _ = tokio::fs::remove_file(&temp).await;
                }
            }
        });
        Some(tx)
    }
}

/// A remote read that copies what it passes on into a cache fill.
struct Tee {
    inner: BlobBody,
    fill: Option<mpsc::Sender<Bytes>>,
}

impl AsyncRead for Tee {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    // The end: closing the channel lets the writer verify and keep the copy.
                    self.fill = None;
                } else if let Some(fill) = &self.fill
                    && fill.try_send(Bytes::copy_from_slice(new)).is_err()
                {
                    // The writer fell behind (or failed): give up this fill, keep serving.
                    self.fill = None;
                }
            }
            Poll::Ready(Err(_)) => self.fill = None,
            Poll::Pending => {}
        }
        polled
    }
}

#[async_trait]
impl BlobStore for CachedBlobStore {
    async fn write(
        &self,
        body: &mut (dyn AsyncRead + Send + Unpin),
        progress: Option<Progress<'_>>,
    ) -> Result<PendingBlob> {
        self.inner.write(body, progress).await
    }

    async fn persist(&self, pending: PendingBlob) -> Result<()> {
        self.inner.persist(pending).await
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.inner.size(digest).await
    }

    async fn make_durable(&self, digest: &Digest) -> Result<Option<u64>> {
        self.inner.make_durable(digest).await
    }

    async fn sizes(&self, digests: &[Digest]) -> Result<HashMap<Digest, u64>> {
        self.inner.sizes(digests).await
    }

    async fn read(&self, digest: &Digest, range: Option<std::ops::Range<u64>>) -> Result<BlobRead> {
        if let Some(cached) = self.read_cached(digest, &range).await? {
            return Ok(cached);
        }
        let mut read = self.inner.read(digest, range.clone()).await?;
        if range.is_none()
            && let Some(fill) = self.start_fill(*digest, read.size)
        {
            read.body = BlobBody::reader(Tee {
                inner: read.body,
                fill: Some(fill),
            });
        }
        Ok(read)
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        if lock(&self.shared.index).remove(digest) {
            self.shared.remove_files(vec![*digest]).await;
        }
        self.inner.delete(digest).await
    }

    async fn quarantine(&self, digest: &Digest) -> Result<bool> {
        // The cached copy hashed right when it was made; the report is about the remote
        // bytes. Drop the copy anyway, so the next read looks at what the store holds.
        if lock(&self.shared.index).remove(digest) {
            self.shared.remove_files(vec![*digest]).await;
        }
        self.inner.quarantine(digest).await
    }

    fn list(&self, after: Option<Digest>) -> BoxStream<'_, Result<Digest>> {
        self.inner.list(after)
    }

    async fn check_writable(&self) -> Result<()> {
        self.inner.check_writable().await
    }

    fn backend_name(&self) -> &'static str {
        "S3"
    }

    async fn sweep_pending(&self, older_than: Duration) -> Result<u64> {
        self.inner.sweep_pending(older_than).await
    }

    async fn put_piece(&self, upload: &str, bytes: Bytes) -> Result<String> {
        self.inner.put_piece(upload, bytes).await
    }

    async fn read_piece(&self, piece: &str) -> Result<BlobBody> {
        self.inner.read_piece(piece).await
    }

    async fn delete_piece(&self, piece: &str) -> Result<()> {
        self.inner.delete_piece(piece).await
    }

    async fn delete_pieces(&self, upload: &str) -> Result<u64> {
        self.inner.delete_pieces(upload).await
    }
}
