//! The background sweeper's record in the catalog: who sweeps (a lease, so one process at a
//! time sweeps and a dead sweeper's claim lapses) and how far its pass got (so a restart
//! resumes where it stopped instead of starting over).
//!
//! The lease only avoids wasted work: every delete a sweep makes is checked under its
//! digest's exclusion, so two sweepers that overlap for a moment (one whose lease lapsed
//! while it was stalled) are still safe.

use intact_core::{Digest, Timestamp};
use serde::{Deserialize, Serialize};

/// What a pass is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SweepPhase {
    /// No pass under way.
    #[default]
    Idle,
    /// Walking the catalog's blob records in digest order, deleting unreferenced ones.
    Blobs,
    /// Walking the blob store's listing in digest order, deleting files the catalog does not
    /// know (only when the orphan sweep is due).
    Orphans,
}

/// Work done so far, in a pass or in a whole one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct SweepCounts {
    /// Blob records looked at.
    pub blobs_checked: u64,
    pub blobs_deleted: u64,
    /// Files listed in the blob store during an orphan sweep.
    pub files_listed: u64,
    pub orphan_blobs_deleted: u64,
    pub bytes_deleted: u64,
    pub pending_files_removed: u64,
    pub transactions_pruned: u64,
    pub flights_pruned: u64,
    /// Pages (bounded batches) worked through.
    pub pages: u64,
}

/// A pass that ran to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FinishedPass {
    pub pass: u64,
    pub started: Timestamp,
    pub finished: Timestamp,
    /// How often the pass was interrupted (a crash, a restart, a lost lease) and resumed.
    pub resumed: u64,
    pub swept_orphans: bool,
    pub counts: SweepCounts,
    /// Why the pass was given up before its end (it failed again and again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The sweeper's progress, kept in the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct SweepProgress {
    /// The number of the pass under way, or of the last one.
    pub pass: u64,
    pub phase: SweepPhase,
    /// The last digest the phase finished with; the next page starts after it.
    #[schema(required = true)]
    pub cursor: Option<Digest>,
    #[schema(required = true)]
    pub pass_started: Option<Timestamp>,
    /// Whether this pass includes the orphan sweep.
    pub sweeping_orphans: bool,
    pub resumed: u64,
    /// Set when the pass is being given up: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub so_far: SweepCounts,
    #[schema(required = true)]
    pub last_pass: Option<FinishedPass>,
    /// When the last orphan sweep finished.
    #[schema(required = true)]
    pub last_orphan_sweep: Option<Timestamp>,
}

/// The sweeper's record as a status report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SweeperRecord {
    /// Who holds (or last held) the sweeper's lease.
    pub holder: Option<String>,
    pub lease_until: Timestamp,
    /// Read by the catalog's clock, with the record.
    pub now: Timestamp,
    pub progress: SweepProgress,
}

/// One page of the catalog's blob records.
#[derive(Debug, Clone, Default)]
pub struct BlobPage {
    /// Records looked at.
    pub scanned: u64,
    /// The unreferenced ones old enough to sweep (each is checked again under its exclusion).
    pub candidates: Vec<Digest>,
    /// The last digest looked at; `None` when there was none (the walk is over).
    pub last: Option<Digest>,
}
