//! intact's domain model: validated names, versions and paths, content digests, manifests and
//! transaction states. Pure data and rules: this crate does no IO and knows nothing of tokio,
//! SQL or HTTP, so every front-end and backend agrees on one definition of "valid".

pub mod content;
pub mod digest;
pub mod manifest;
pub mod name;
mod schema;
pub mod time;
pub mod tree;
pub mod txn;

pub use content::ContentDiff;
pub use digest::{Digest, DigestHasher};
pub use manifest::{FileEntry, Manifest, content_fingerprint};
pub use name::{FilePath, Name, RepoName, Tag, ValidationError, Version};
pub use time::Timestamp;
pub use tree::{PathClash, check_tree};
pub use txn::{TxnId, TxnState};
