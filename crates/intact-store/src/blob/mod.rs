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
mod temp_write;
pub mod testing;
mod writeback;

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

/// Progress callback fed with the number of bytes received so far (the last of them may
/// still be on their way to the file).
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

    /// Stores one piece of a resumable upload (`upload`, an id of `[0-9a-f]` the store made)
    /// under a new name of the backend's choosing, and returns that name. When this returns
    /// the piece survives a power loss (fs: file and directory fsynced; S3: acknowledged), so
    /// an upload's offset may count it. A name is never reused: two writers racing for the
    /// same offset of one upload each get their own piece, and the catalog keeps one. Pieces
    /// are not blobs: no sweep of pending data or of blobs touches them; they are deleted
    /// with their upload ([`BlobStore::delete_pieces`]) once it ended, or one by one when the
    /// catalog refused to count them ([`BlobStore::delete_piece`]).
    async fn put_piece(&self, upload: &str, bytes: bytes::Bytes) -> Result<String>;

    /// The bytes of a piece `put_piece` stored. `NotFound` when it is gone.
    async fn read_piece(&self, piece: &str) -> Result<BlobBody>;

    /// Deletes a piece; deleting an absent one is not an error.
    async fn delete_piece(&self, piece: &str) -> Result<()>;

    /// Deletes every piece of upload `upload`, counted or not (a piece stored just before a
    /// crash, which no catalog row names, goes too). Returns how many.
    async fn delete_pieces(&self, upload: &str) -> Result<u64>;
}

/// Whether `piece` is a name `put_piece` could have made (`<upload>-<random>`, lowercase hex
/// and one dash): piece names come back from the catalog, and a backend joins them onto a
/// directory or a key prefix, so anything else is refused rather than followed.
pub(crate) fn check_piece_name(piece: &str) -> Result<()> {
    let well_formed = !piece.is_empty()
        && piece.len() <= 128
        && piece
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
        && piece.bytes().filter(|&b| b == b'-').count() == 1
        && !piece.starts_with('-')
        && !piece.ends_with('-');
    if well_formed {
        Ok(())
    } else {
        Err(Error::io(
            format!("upload piece {piece:?}"),
            std::io::Error::other("not a piece name this store makes"),
        ))
    }
}

/// Whether `upload` is an upload id as the store makes them (lowercase hex).
pub(crate) fn check_upload_id(upload: &str) -> Result<()> {
    if !upload.is_empty()
        && upload.len() <= 64
        && upload.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Error::io(
            format!("upload {upload:?}"),
            std::io::Error::other("not an upload id this store makes"),
        ))
    }
}

/// A new piece name for upload `upload`.
pub(crate) fn new_piece_name(upload: &str) -> Result<String> {
    check_upload_id(upload)?;
    let mut random = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
    let name = format!(
        "{upload}-{}",
        random.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    check_piece_name(&name)?;
    Ok(name)
}
