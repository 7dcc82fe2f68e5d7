//! Blobs in any S3-compatible object store (AWS S3, Garage, MinIO, Ceph...), through the
//! `object_store` crate. Layout under the configured prefix:
//!
//! - `blobs/sha256/<64 hex>`: stored blobs, content-addressed.
//! - `pending/<random>`: an upload, hashed as it streams (multipart once it passes one part),
//!   before its digest is known. `persist` copies it to its final key server-side and
//!   deletes it.
//! - `quarantine/<64 hex>.<ms>`: damaged bytes moved aside.
//! - `uploads/<upload>/<random>`: pieces of resumable uploads (plain objects of any size, so a piece
//!   is durable once its PUT is acknowledged and no part-size rule applies; the upload's
//!   completion reads them back in order into a pending blob).
//!
//! No conditional writes: content addressing makes two racing writers of one digest store
//! the same bytes, so a duplicate copy is harmless (and some S3 servers, Garage among them,
//! ignore `If-None-Match`). Memory stays flat: an upload holds at most
//! `PART_SIZE * (PARTS_IN_FLIGHT + 1)` bytes, reads stream.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use intact_core::{Digest, DigestHasher, Timestamp};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::testing::BlobTestHooks;
use super::{BlobBody, BlobRead, BlobStore, PendingBlob, PendingHandle, Progress};
use crate::{Error, Result};

/// Size of each part of a multipart upload (S3 wants at least 5 MiB but for the last part,
/// and allows 10,000 parts: blobs up to about 80 GB).
const PART_SIZE: usize = 8 << 20;

/// Parts of one upload sent concurrently.
const PARTS_IN_FLIGHT: usize = 2;

/// Bytes read from a body per call.
const READ_CHUNK: usize = 256 * 1024;

/// Size checks (a commit's) run concurrently, at most this many at once.
const SIZE_CHECKS_IN_FLIGHT: usize = 16;

/// CopyObject's limit: larger blobs are copied by streaming them through this process.
pub const SERVER_COPY_LIMIT: u64 = 5 << 30;

/// Where and how to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// The S3 API's URL (`http://garage:3900`); `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Access key id and secret; `None` reads the `AWS_*` environment variables.
    pub credentials: Option<(String, String)>,
    /// Pending objects younger than this are never swept, whatever a caller asks: other
    /// replicas share the bucket and may still be persisting theirs.
    pub pending_min_age: Duration,
    /// Blobs up to this size are copied server-side (CopyObject); larger ones are streamed.
    pub server_copy_limit: u64,
}

impl S3Settings {
    /// Settings for `s3://bucket/prefix`.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| Error::BadRequest {
            field: "blobs.url",
            message: format!("{url:?} must look like s3://bucket/prefix"),
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::BadRequest {
                field: "blobs.url",
                message: format!("{url:?} names no bucket (s3://bucket/prefix)"),
            });
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: None,
            region: None,
            credentials: None,
            pending_min_age: Duration::from_secs(24 * 3600),
            server_copy_limit: SERVER_COPY_LIMIT,
        })
    }
}

#[derive(Debug, Clone)]
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
    pending_min_age: Duration,
    server_copy_limit: u64,
    /// Pending keys still held by this process: not leftovers, however old.
    held: Arc<Mutex<HashSet<String>>>,
    /// One quarantine at a time in this process (two reports of one damage check once).
    quarantining: Arc<tokio::sync::Mutex<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pending object: while held, sweeps pass it by; dropped unpersisted, it is deleted (in
/// the background: a drop cannot wait).
#[derive(Debug)]
struct S3Pending {
    key: Key,
    store: Arc<dyn ObjectStore>,
    held: Arc<Mutex<HashSet<String>>>,
    /// Set once `persist` removed the pending object itself.
    gone: bool,
}

impl PendingHandle for S3Pending {}

impl Drop for S3Pending {
    fn drop(&mut self) {
        lock(&self.held).remove(self.key.as_ref());
        if self.gone {
            return;
        }
        let (store, key) = (self.store.clone(), self.key.clone());
        crate::cleanup::spawn("deleting a discarded pending blob", async move {
            if let Err(e) = store.delete(&key).await
                && !matches!(e, object_store::Error::NotFound { .. })
            {
                tracing::warn!(%key, error = %e, "deleting a discarded pending blob failed; gc sweeps it later");
            }
        });
    }
}

/// A multipart upload in progress; dropped before it finished (an error, a cancelled
/// request), it is aborted in the background so its parts do not linger.
struct Upload(Option<WriteMultipart>);

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(upload) = self.0.take() {
            crate::cleanup::spawn("aborting an unfinished multipart upload", async move {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(error = %e, "aborting an unfinished multipart upload failed");
                }
            });
        }
    }
}

impl S3BlobStore {
    /// Connects to the bucket and checks that it answers (a wrong endpoint, bucket or key
    /// fails here, at start-up, naming the bucket).
    pub async fn open(settings: &S3Settings) -> Result<Self> {
        // TLS for https endpoints goes through the process-wide rustls provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&settings.bucket);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some((id, secret)) = &settings.credentials {
            builder = builder.with_access_key_id(id).with_secret_access_key(secret);
        }
        // The builder's errors never include the secret key.
        let store = builder.build().map_err(|e| Error::Unavailable {
            context: format!("configuring S3 bucket {}", settings.bucket),
            source: Box::new(e),
        })?;
        let this = Self {
            store: Arc::new(store),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            pending_min_age: settings.pending_min_age,
            server_copy_limit: settings.server_copy_limit,
            held: Arc::default(),
            quarantining: Arc::default(),
        };
        let probe = this.key("blobs/sha256/probe");
        match this.store.head(&probe).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(this),
            Err(e) => Err(this.unavailable("reaching", &probe, e)),
        }
    }

    /// `rest` under the prefix.
    fn key(&self, rest: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rest)
        } else {
            Key::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// Where a blob lives. Derived from the digest only.
    pub fn key_of(&self, digest: &Digest) -> Key {
        self.key(&format!("blobs/sha256/{}", digest.to_hex()))
    }

    /// `s3://bucket/key`, as messages show it.
    fn show(&self, key: &Key) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn unavailable(&self, what: &str, key: &Key, e: object_store::Error) -> Error {
        Error::Unavailable {
            context: format!("{what} {}", self.show(key)),
            source: Box::new(e),
        }
    }

    /// Copies `from` to `to`: server-side up to the copy limit, else streamed through here.
    async fn copy(&self, from: &Key, to: &Key, size: u64) -> Result<()> {
        if size <= self.server_copy_limit {
            return self
                .store
                .copy(from, to)
                .await
                .map_err(|e| self.unavailable(&format!("copying {} to", self.show(from)), to, e));
        }
        let source = self
            .store
            .get(from)
            .await
            .map_err(|e| self.unavailable("reading", from, e))?;
        let upload = self
            .store
            .put_multipart(to)
            .await
            .map_err(|e| self.unavailable("starting upload of", to, e))?;
        let mut upload = Upload(Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)));
        let mut chunks = source.into_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| self.unavailable("reading", from, e))?;
            let Upload(Some(writer)) = &mut upload else {
                break;
            };
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| self.unavailable("uploading", to, e))?;
            writer.put(chunk);
        }
        if let Some(writer) = upload.0.take() {
            writer
                .finish()
                .await
                .map_err(|e| self.unavailable("completing upload of", to, e))?;
        }
        Ok(())
    }

    /// Deletes `key`; an absent one is fine.
    async fn remove(&self, key: &Key) -> Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.unavailable("deleting", key, e)),
        }
    }

    /// Hashes the object at `key` (`None` when absent).
    async fn hash(&self, key: &Key) -> Result<Option<Digest>> {
        let got = match self.store.get(key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.unavailable("reading", key, e)),
        };
        let mut hasher = DigestHasher::new();
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks.next().await {
            hasher.update(&chunk.map_err(|e| self.unavailable("reading", key, e))?);
        }
        Ok(Some(hasher.finish()))
    }
}

/// Reads from `body` until `buf` holds `want` bytes or the body ends; false at the end.
async fn fill(
    body: &mut (dyn AsyncRead + Send + Unpin),
    buf: &mut Vec<u8>,
    want: usize,
    hasher: &mut DigestHasher,
    progress: Option<Progress<'_>>,
) -> Result<bool> {
    let mut chunk = vec![0u8; READ_CHUNK];
    while buf.len() < want {
        let room = (want - buf.len()).min(READ_CHUNK);
        let n = body.read(&mut chunk[..room]).await.map_err(Error::Body)?;
        if n == 0 {
            return Ok(false);
        }
        hasher.update(&chunk[..n]);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = progress {
            p(hasher.len());
        }
    }
    Ok(true)
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn write(
        &self,
        body: &mut (dyn AsyncRead + Send + Unpin),
        progress: Option<Progress<'_>>,
    ) -> Result<PendingBlob> {
        let mut name = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut name);
        let key = self.key(&format!("pending/{}", hex_of(&name)));
        lock(&self.held).insert(key.to_string());
        // From here on a failure drops the handle, which deletes whatever was written.
        let handle = S3Pending {
            key: key.clone(),
            store: self.store.clone(),
            held: self.held.clone(),
            gone: false,
        };
        let mut hasher = DigestHasher::new();
        let mut part = Vec::with_capacity(PART_SIZE);
        if !fill(body, &mut part, PART_SIZE, &mut hasher, progress).await? {
            // Smaller than one part: one plain PUT.
            self.store
                .put(&key, PutPayload::from(Bytes::from(part)))
                .await
                .map_err(|e| self.unavailable("uploading", &key, e))?;
        } else {
            let upload = self
                .store
                .put_multipart(&key)
                .await
                .map_err(|e| self.unavailable("starting upload of", &key, e))?;
            let mut upload = Upload(Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)));
            while let Upload(Some(writer)) = &mut upload {
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.unavailable("uploading", &key, e))?;
                writer.put(Bytes::from(std::mem::take(&mut part)));
                part.reserve(PART_SIZE);
                if !fill(body, &mut part, PART_SIZE, &mut hasher, progress).await? {
                    writer.put(Bytes::from(std::mem::take(&mut part)));
                    break;
                }
            }
            if let Some(writer) = upload.0.take() {
                writer
                    .finish()
                    .await
                    .map_err(|e| self.unavailable("completing upload of", &key, e))?;
            }
        }
        Ok(PendingBlob {
            size: hasher.len(),
            digest: hasher.finish(),
            handle: Box::new(handle),
        })
    }

    async fn persist(&self, pending: PendingBlob) -> Result<()> {
        let (digest, size) = (pending.digest, pending.size);
        let mut handle = pending.into_handle::<S3Pending>()?;
        let target = self.key_of(&digest);
        match self.store.head(&target).await {
            // Same content already stored (a racing writer, or a re-upload).
            Ok(meta) if meta.size == size => {}
            // Absent, or damaged to another size: (re)write it from the pending copy.
            Ok(_) | Err(object_store::Error::NotFound { .. }) => self.copy(&handle.key, &target, size).await?,
            Err(e) => return Err(self.unavailable("checking", &target, e)),
        }
        // The blob is whole under its key now; the pending copy is only garbage. An object
        // store's transient error on this clean-up must not turn a stored blob into a failed
        // upload (seen with Garage under load: "database is locked"): the handle's drop tries
        // once more in the background, and the pending sweep takes whatever is left.
        match self.remove(&handle.key).await {
            Ok(()) => handle.gone = true,
            Err(e) => tracing::warn!(
                key = %handle.key,
                error = %e,
                "removing a persisted blob's pending copy failed; retried in the background, else swept later"
            ),
        }
        Ok(())
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        let key = self.key_of(digest);
        match self.store.head(&key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.unavailable("checking", &key, e)),
        }
    }

    async fn sizes(&self, digests: &[Digest]) -> Result<HashMap<Digest, u64>> {
        let found: Vec<(Digest, Option<u64>)> = futures::stream::iter(digests.iter().copied())
            .map(|d| async move { self.size(&d).await.map(|s| (d, s)) })
            .buffer_unordered(SIZE_CHECKS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(found.into_iter().filter_map(|(d, s)| Some((d, s?))).collect())
    }

    async fn read(&self, digest: &Digest, range: Option<std::ops::Range<u64>>) -> Result<BlobRead> {
        let key = self.key_of(digest);
        let missing = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => Error::BlobMissing { digest: *digest },
            e => self.unavailable("reading", &key, e),
        };
        // S3 has no empty range: an empty read only needs the size.
        if let Some(r) = &range
            && r.start >= r.end
        {
            let meta = self.store.head(&key).await.map_err(missing)?;
            return Ok(BlobRead {
                size: meta.size,
                body: BlobBody::reader(std::io::Cursor::new(Vec::new())),
                local_path: None,
            });
        }
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let got = self.store.get_opts(&key, options).await.map_err(missing)?;
        let size = got.meta.size;
        let shown = self.show(&key);
        let body = got
            .into_stream()
            .map_err(move |e| std::io::Error::other(format!("reading {shown}: {e}")));
        Ok(BlobRead {
            size,
            body: BlobBody::chunks(body),
            local_path: None,
        })
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        self.remove(&self.key_of(digest)).await
    }

    async fn quarantine(&self, digest: &Digest) -> Result<bool> {
        let _one = self.quarantining.lock().await;
        let key = self.key_of(digest);
        // Only bytes that are still wrong are moved: a late report about a blob stored again
        // since (healed) changes nothing.
        match self.hash(&key).await? {
            None => return Ok(false),
            Some(actual) if actual == *digest => return Ok(false),
            Some(_) => {}
        }
        let size = match self.store.head(&key).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.unavailable("checking", &key, e)),
        };
        let aside = self.key(&format!(
            "quarantine/{}.{}",
            digest.to_hex(),
            Timestamp::from_system(SystemTime::now()).millis()
        ));
        self.copy(&key, &aside, size).await?;
        self.remove(&key).await?;
        Ok(true)
    }

    fn list(&self, after: Option<Digest>) -> BoxStream<'_, Result<Digest>> {
        let dir = self.key("blobs/sha256");
        // S3 lists keys in ascending byte order, which for lowercase hex names is digest
        // order; a listing resumed after a digest starts there instead of at the beginning.
        let listing = match after {
            Some(d) => self.store.list_with_offset(Some(&dir), &self.key_of(&d)),
            None => self.store.list(Some(&dir)),
        };
        listing
            .filter_map(move |meta| {
                let item = match meta {
                    Ok(meta) => meta.location.filename().and_then(|n| Digest::parse(n).ok()).map(Ok),
                    Err(e) => Some(Err(self.unavailable("listing", &dir, e))),
                };
                futures::future::ready(item)
            })
            .boxed()
    }

    fn backend_name(&self) -> &'static str {
        "S3"
    }

    async fn sweep_pending(&self, older_than: Duration) -> Result<u64> {
        // Multipart uploads a crash left unfinished are not objects and cannot be listed
        // here: a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes them.
        let age = older_than.max(self.pending_min_age);
        let cutoff = Timestamp::from_system(SystemTime::now().checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH));
        let dir = self.key("pending");
        let mut listing = self.store.list(Some(&dir));
        let mut stale = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.unavailable("listing", &dir, e))?;
            if meta.last_modified.timestamp_millis() <= cutoff.millis()
                && !lock(&self.held).contains(meta.location.as_ref())
            {
                stale.push(meta.location);
            }
        }
        let mut removed = 0;
        for key in stale {
            self.remove(&key).await?;
            removed += 1;
        }
        Ok(removed)
    }

    async fn put_piece(&self, upload: &str, bytes: Bytes) -> Result<String> {
        let name = super::new_piece_name(upload)?;
        let key = self.piece_key(&name)?;
        self.store
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(|e| self.unavailable("uploading", &key, e))?;
        Ok(name)
    }

    async fn read_piece(&self, piece: &str) -> Result<BlobBody> {
        let key = self.piece_key(piece)?;
        let got = match self.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::NotFound {
                    what: format!("upload piece {piece}"),
                });
            }
            Err(e) => return Err(self.unavailable("reading", &key, e)),
        };
        let shown = self.show(&key);
        let body = got
            .into_stream()
            .map_err(move |e| std::io::Error::other(format!("reading {shown}: {e}")));
        Ok(BlobBody::chunks(body))
    }

    async fn delete_piece(&self, piece: &str) -> Result<()> {
        self.remove(&self.piece_key(piece)?).await
    }

    async fn delete_pieces(&self, upload: &str) -> Result<u64> {
        super::check_upload_id(upload)?;
        // A directory of its own per upload: S3 lists by key prefix, object_store by path.
        let dir = self.key(&format!("uploads/{upload}"));
        let listed: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| self.unavailable("listing", &dir, e))?;
        for meta in &listed {
            self.remove(&meta.location).await?;
        }
        Ok(listed.len() as u64)
    }
}

impl S3BlobStore {
    /// Where piece `piece` (`<upload>-<random>`) lives: `uploads/<upload>/<random>`.
    fn piece_key(&self, piece: &str) -> Result<Key> {
        super::check_piece_name(piece)?;
        let (upload, random) = piece.split_once('-').unwrap_or((piece, ""));
        Ok(self.key(&format!("uploads/{upload}/{random}")))
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl BlobTestHooks for S3BlobStore {
    async fn store_raw(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let key = self.key_of(digest);
        self.store
            .put(&key, PutPayload::from(Bytes::copy_from_slice(bytes)))
            .await
            .map(|_| ())
            .map_err(|e| self.unavailable("writing", &key, e))
    }

    async fn pending_count(&self) -> Result<usize> {
        let dir = self.key("pending");
        let listed: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| self.unavailable("listing", &dir, e))?;
        Ok(listed.len())
    }

    async fn piece_count(&self) -> Result<usize> {
        let dir = self.key("uploads");
        let listed: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| self.unavailable("listing", &dir, e))?;
        Ok(listed.len())
    }
}
