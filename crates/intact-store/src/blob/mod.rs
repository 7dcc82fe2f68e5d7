//! The `BlobStore` contract: immutable, content-addressed bytes. A blob is written to a
//! pending location while it is hashed, then made durable under its digest; writing the same
//! content twice is harmless. A blob is invisible to readers until a committed manifest names
//! it; deciding *that* is the catalog's job, not the blob store's.

pub mod adopt;
mod body;
mod cache;
pub(crate) mod file_chunks;
mod fs;
mod local_read;
mod memory;
mod s3;
pub mod testing;

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use futures::stream::BoxStream;
use intact_core::Digest;
use tokio::io::AsyncRead;

pub use adopt::{Adopted, ImportMode, LocalSource};
pub use body::BlobBody;
pub use cache::CachedBlobStore;
pub use fs::{FsBlobStore, create_dir_all_durable};
pub use memory::MemoryBlobStore;
pub use s3::{S3BlobStore, S3Settings, SERVER_COPY_LIMIT};
pub use testing::BlobTestHooks;

use crate::{Error, Result};

/// Where a backend keeps the bytes of one pending blob (a temp file, a pending object, a
/// buffer). Only the backend that made it knows what it is; dropping it discards the bytes.
pub trait PendingHandle: std::any::Any + Send + Sync + std::fmt::Debug {}

/// Bytes that have been written and hashed but are not yet stored under their digest.
/// Dropping it discards the bytes.
#[derive(Debug)]
pub struct PendingBlob {
    pub digest: Digest,
    pub size: u64,
    /// The backend's own handle on the pending bytes.
    pub handle: Box<dyn PendingHandle>,
}

impl PendingBlob {
    /// The handle as the backend type `H` that made it (for `persist`). A pending blob
    /// written by another backend is an error: its bytes are not where `H` could find them.
    pub fn into_handle<H: PendingHandle>(self) -> Result<Box<H>> {
        let digest = self.digest;
        let any: Box<dyn std::any::Any + Send + Sync> = self.handle;
        any.downcast::<H>().map_err(|_| {
            Error::io(
                format!("persisting blob {digest}"),
                std::io::Error::other("the pending blob was written by another blob store"),
            )
        })
    }
}

/// An open blob, or a byte range of one.
pub struct BlobRead {
    /// Size of the whole blob.
    pub size: u64,
    /// The requested bytes.
    pub body: BlobBody,
    /// A plain file holding the blob, when the backend keeps one (for zero-copy sending and
    /// server-side imports).
    pub local_path: Option<PathBuf>,
}

/// Progress callback fed with the number of bytes written so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `body` into a pending blob, hashing as it goes. Memory stays flat.
    async fn write(
        &self,
        body: &mut (dyn AsyncRead + Send + Unpin),
        progress: Option<Progress<'_>>,
    ) -> Result<PendingBlob>;

    /// Makes a pending blob durable under its digest. When this returns, the bytes survive a
    /// power loss. A no-op (beyond discarding) when the digest is already stored.
    async fn persist(&self, pending: PendingBlob) -> Result<()>;

    /// Size of a stored blob, or `None`.
    async fn size(&self, digest: &Digest) -> Result<Option<u64>>;

    /// Makes a blob that is already stored durable and returns its size (`None` when it is
    /// not stored). A file staged by digest calls this once the catalog registered the
    /// digest: the bytes may be another upload's, in place but not yet synced, and the
    /// version must not be committed on bytes a power loss could take. Backends whose writes
    /// are durable once visible only look.
    async fn make_durable(&self, digest: &Digest) -> Result<Option<u64>> {
        self.size(digest).await
    }

    /// Sizes of the stored blobs among `digests` (absent ones are left out): a commit checks
    /// all of its files with one call. Backends with a round trip per blob run them
    /// concurrently.
    async fn sizes(&self, digests: &[Digest]) -> Result<HashMap<Digest, u64>> {
        let mut out = HashMap::with_capacity(digests.len());
        for digest in digests {
            if let Some(size) = self.size(digest).await? {
                out.insert(*digest, size);
            }
        }
        Ok(out)
    }

    /// Opens a stored blob, optionally only `range` (start..end, end exclusive, within size).
    async fn read(&self, digest: &Digest, range: Option<std::ops::Range<u64>>) -> Result<BlobRead>;

    /// Deletes a stored blob; deleting an absent blob is not an error. Only the catalog's
    /// sweep calls this, holding the digest's exclusion in the catalog (no `stage_file`
    /// of the same digest runs meanwhile).
    async fn delete(&self, digest: &Digest) -> Result<()>;

    /// Takes a damaged blob out of service: afterwards it reads as missing. A backend keeps
    /// the bytes aside for inspection where it can (never under the digest they no longer
    /// match). The damage may have been seen a while ago: bytes stored under `digest` that
    /// hash right now (the same content stored again since) stay in service. Returns whether
    /// a blob was taken out of service.
    async fn quarantine(&self, digest: &Digest) -> Result<bool>;

    /// Every stored digest after `after`, in ascending order, streamed (for orphan scans):
    /// callers page through it, so a store of any size lists in flat memory, and a walk cut
    /// short resumes after the last digest it handled. Blobs written or deleted meanwhile may
    /// or may not be seen.
    fn list(&self, after: Option<Digest>) -> BoxStream<'_, Result<Digest>>;

    /// Whether a blob could be written right now (a readiness probe after running out of
    /// space). Backends without a local disk have nothing to check.
    async fn check_writable(&self) -> Result<()> {
        Ok(())
    }

    /// Removes pending data older than `older_than` left behind by crashes. Returns how many.
    async fn sweep_pending(&self, older_than: std::time::Duration) -> Result<u64>;

    /// What the backend is called in messages ("files", "S3").
    fn backend_name(&self) -> &'static str {
        "this blob store"
    }

    /// Import by path: takes the local file `source` (opened and checked by the caller) in
    /// as a pending blob by `mode` (see [`adopt`]), hashing the bytes the store will hold.
    /// Backends whose blobs are not local files can only copy (stream the file up); every
    /// other mode is refused naming the mode and the backend.
    async fn adopt(&self, source: LocalSource, mode: ImportMode) -> Result<Adopted> {
        match mode {
            ImportMode::Auto | ImportMode::Copy => {
                let mut reader = tokio::fs::File::from_std(source.file);
                let pending = self.write(&mut reader, None).await?;
                Ok(Adopted {
                    pending,
                    mode: ImportMode::Copy,
                })
            }
            other => Err(adopt::mode_unavailable(other, self.backend_name())),
        }
    }
}
