//! The storage layer's one error type. Variants are outcomes a caller branches on; each HTTP
//! front-end maps them to status codes in one place.

use intact_core::{Digest, Timestamp, TxnId, TxnState, ValidationError};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input from outside broke a grammar rule (a 400 naming the field).
    #[error(transparent)]
    Invalid(#[from] ValidationError),

    /// A request was well-formed but cannot be honoured as asked (a 400/422).
    #[error("{field}: {message}")]
    BadRequest { field: &'static str, message: String },

    /// Two files of a version could not both exist on a client's file system.
    #[error("files: {0}")]
    PathClash(#[from] intact_core::PathClash),

    #[error("{what} not found")]
    NotFound { what: String },

    /// Something that is created once (a token name) already exists.
    #[error("{what} already exists")]
    Exists { what: String },

    /// A tag move's compare-and-swap failed: the tag points elsewhere (`current`; `None`
    /// when it does not exist) than the move expected.
    #[error("{what} points at {}, not at what the move expected", current.as_ref().map_or("nothing", |v| v.as_str()))]
    TagMoved {
        what: String,
        current: Option<intact_core::Version>,
    },

    /// Another open transaction holds (repo, name, version).
    #[error("{what} is locked by transaction {holder} until {expires_at}")]
    Locked {
        what: String,
        holder: TxnId,
        expires_at: Timestamp,
    },

    /// A commit would change an existing version's content; `diff` says how, when known.
    #[error("{what} already exists with different content{}", diff.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Conflict {
        what: String,
        diff: Option<Box<intact_core::ContentDiff>>,
    },

    /// The transaction is no longer open (committed, aborted or expired).
    #[error("transaction {id} is {state}", state = state.as_str())]
    TxnNotOpen { id: TxnId, state: TxnState },

    /// Uploads into the transaction are still streaming (or were staged while the commit
    /// checked the others): committing now could leave a file out of an immutable version.
    /// Retryable once every upload has answered.
    #[error("transaction {id} has uploads still in progress ({detail}); commit again once every upload has answered")]
    UploadsInProgress { id: TxnId, detail: String },

    /// A transaction already stages as many distinct paths as allowed; a new path was refused
    /// (replacing a staged path is still allowed). Nothing of the refused file was staged.
    #[error(
        "transaction {id} already has {limit} files, the most one transaction may hold (limits.max_files_per_transaction); commit it and publish the rest as another version"
    )]
    TooManyFiles { id: TxnId, limit: u64 },

    /// An upload's body sent nothing for too long; the upload was ended and nothing staged.
    #[error("request body sent no data for {seconds}s; the upload was ended (send it again)")]
    BodyIdle { seconds: u64 },

    /// An upload's body trickled in slower than the minimum rate over a whole idle-timeout
    /// window (a client holding its upload, its slot and its lease with a byte now and then).
    #[error(
        "request body sent only {bytes} bytes in {seconds}s, under the minimum of {min_per_second} bytes a second; the upload was ended (send it again)"
    )]
    BodyTooSlow {
        bytes: u64,
        seconds: u64,
        min_per_second: u64,
    },

    /// An idempotency key was reused for a different request.
    #[error("idempotency key {key:?} was first used for a different request ({detail})")]
    IdempotencyMismatch { key: String, detail: String },

    /// A piece of a resumable upload did not start where the upload stands (the bytes
    /// before it were lost, or another request moved it on): the client resumes at `offset`.
    #[error("upload {upload} is at offset {offset}{detail}; send the bytes from there")]
    UploadOffset {
        upload: String,
        offset: u64,
        detail: String,
    },

    #[error("sha256 mismatch: expected {expected}, body hashed to {actual}")]
    ChecksumMismatch { expected: Digest, actual: Digest },

    /// A file was added by digest, and the store holds no blob with it: the client uploads
    /// the bytes instead (nothing is ever guessed).
    #[error("no blob with sha256 {digest} is stored: upload the file's bytes instead")]
    BlobNotStored { digest: Digest },

    /// A bounded wait ran out; `what` names what was being waited on.
    #[error("timed out after {seconds}s waiting for {what}")]
    WaitTimeout { what: String, seconds: u64 },

    /// The client's request body stopped or failed mid-stream.
    #[error("request body failed: {0}")]
    Body(std::io::Error),

    /// A committed blob is missing or damaged: the store needs `intact verify` / repair.
    #[error("blob {digest} is missing from the blob store")]
    BlobMissing { digest: Digest },

    /// The disk (or quota) holding the catalog or the blobs is full: nothing was written.
    /// Writes succeed again by themselves once space is freed.
    #[error("no space left for {context}: free disk space (or raise the quota); writes resume by themselves")]
    StorageFull { context: String },

    /// A committed blob's bytes no longer hash to its digest: it was taken out of service
    /// (quarantined) and the versions using it need repair (`intact verify` names them).
    #[error("{detail}; it was quarantined (run `intact verify` to see the versions affected)")]
    BlobDamaged { digest: Digest, detail: String },

    /// A remote blob store (S3) did not answer as it should: unreachable, refusing the
    /// credentials, or failing. Retryable; `context` names the bucket and key.
    #[error("blob store unavailable: {context}: {source}")]
    Unavailable {
        context: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The catalog could not be reached: its server is down or restarting, the network to
    /// it failed, or every connection stayed busy too long. Nothing was written. Retryable;
    /// service resumes by itself once the catalog answers again.
    #[error("catalog unavailable: {source}")]
    CatalogUnavailable {
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("storage io error: {context}: {source}")]
    Io { context: String, source: std::io::Error },

    #[error("catalog error: {context}: {source}")]
    Catalog {
        context: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        if matches!(
            source.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ) {
            return Self::StorageFull {
                context: context.into(),
            };
        }
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// Whether a retry could succeed without any change by the caller.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Locked { .. }
                | Self::UploadsInProgress { .. }
                | Self::WaitTimeout { .. }
                | Self::Io { .. }
                | Self::Unavailable { .. }
                | Self::CatalogUnavailable { .. }
                | Self::StorageFull { .. }
                | Self::Catalog { .. }
        )
    }
}

/// SQLite's primary result code for "database or disk is full".
const SQLITE_FULL: i64 = 13;

/// PostgreSQL's SQLSTATE for a full disk (`disk_full`).
const PG_DISK_FULL: &[&str] = &["53100"];

/// PostgreSQL's SQLSTATEs for "the server is going away or not there yet": class 08
/// (connection exceptions), and admin/crash shutdown and "cannot connect now" (starting up).
fn is_pg_unreachable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// Whether `e` says the catalog could not be reached (as opposed to refusing a statement).
fn is_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|pg| is_pg_unreachable(pg.code())),
        _ => false,
    }
}

/// Whether a database error means the catalog's storage is full (each engine says it its way).
fn is_storage_full(db: &(dyn sqlx::error::DatabaseError + 'static)) -> bool {
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return PG_DISK_FULL.contains(&pg.code());
    }
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
        && db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|code| code & 0xff == SQLITE_FULL)
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && is_storage_full(db.as_ref())
        {
            return Self::StorageFull {
                context: "the catalog".into(),
            };
        }
        if let sqlx::Error::Io(io) = &e
            && matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        {
            return Self::StorageFull {
                context: "the catalog".into(),
            };
        }
        if is_unreachable(&e) {
            return Self::CatalogUnavailable { source: Box::new(e) };
        }
        Self::Catalog {
            context: "sql".into(),
            source: Box::new(e),
        }
    }
}
