//! Resumable upload sessions as the catalog records them (see `Catalog::create_upload_session`):
//! what every replica must agree on, so a client's next piece may land on any of them.

use intact_core::{Digest, FilePath, Timestamp, TxnId};
use serde::Serialize;

/// A resumable upload of one file into an open transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UploadSession {
    /// The session's id (32 lowercase hex characters, made by the server).
    pub upload: String,
    #[serde(skip)]
    pub txn: TxnId,
    pub path: FilePath,
    /// The size the client declared, if it did: bytes past it are refused, and completion
    /// requires exactly this many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The sha256 the client declared, if it did: completion checks the bytes against it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
    /// Bytes received and durable: the offset the next piece must start at.
    pub offset: u64,
    #[serde(skip)]
    pub created_at: Timestamp,
}

/// One durable piece of a session's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPiece {
    /// Offset of its first byte in the file.
    pub start: u64,
    pub len: u64,
    /// The blob store's name for it (`BlobStore::put_piece`).
    pub name: String,
}
