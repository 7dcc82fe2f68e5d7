//! intact's storage layer. Two minimal contracts, [`Catalog`] (which versions exist, open
//! transactions, the event log) and [`BlobStore`] (content-addressed bytes), each with its
//! backends, and the [`Store`] that composes them into the one publish protocol: stream blobs,
//! make them durable, then make the version visible with exactly one catalog commit.

pub mod blob;
pub mod catalog;
pub mod cleanup;
pub mod clock;
pub mod error;
pub mod hooks;
pub mod migrate;
mod open;
mod small_files;
pub mod store;
pub mod sweeper;
pub mod telemetry;
pub mod tokens;
mod upload;
pub mod verified;
mod verified_files;

pub use blob::{
    Adopted, BlobBody, BlobRead, BlobStore, BlobTestHooks, CachedBlobStore, FsBlobStore, ImportMode, LocalSource,
    MemoryBlobStore, PendingBlob, S3BlobStore, S3Settings,
};
pub use catalog::{
    BlobUser, Catalog, CommitOutcome, Event, FlightClaim, FlightEnd, FlightFailure, FlightState, NewTxn, OpenOutcome,
    OpenTxnSummary, PostgresCatalog, RepoUsage, SqliteCatalog, SweepReport, TagExpectation, TagHistoryEntry, TagMove,
    TagMoved, TagRecord, TxnRecord, TxnStatus, UploadPiece, UploadSession, VersionSpec, VersionSummary, VersionUse,
};
pub use clock::{Clock, ManualClock, OffsetClock, SystemClock, TokioClock};
pub use error::{Error, Result};
pub use open::{BlobSettings, CatalogChoice, LocalCacheSettings, data_dir_in_use, redact};
pub use store::{
    BeginRequest, FLIGHT_RETENTION, GcReport, STATISTICS_EVERY, Store, StoreConfig, VerifyProblem, VerifyReport,
    WORKER_LEASE,
};
pub use sweeper::{SWEEPER_LEASE, SweeperSettings};
