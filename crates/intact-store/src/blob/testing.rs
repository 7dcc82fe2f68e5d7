//! What the conformance suite needs from a blob store beyond its contract: ways to damage
//! it as the world would (bit rot, a blob the catalog never heard of) and to look at its
//! pending area. Each backend implements them on its real storage; none are used in serving.

use async_trait::async_trait;
use intact_core::Digest;

use crate::Result;

#[async_trait]
pub trait BlobTestHooks: Send + Sync {
    /// Stores `bytes` under `digest` as they are, without hashing: damage (bytes that no
    /// longer match) or an orphan (a blob no catalog registered).
    async fn store_raw(&self, digest: &Digest, bytes: &[u8]) -> Result<()>;

    /// How many pending blobs the store holds: written, neither persisted nor dropped yet
    /// (or left over by a crash).
    async fn pending_count(&self) -> Result<usize>;

    /// How many pieces of resumable uploads the store holds.
    async fn piece_count(&self) -> Result<usize>;
}
