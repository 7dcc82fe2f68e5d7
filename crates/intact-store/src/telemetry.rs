//! What the store tells operators: the metrics it records (through the `metrics` facade; the
//! server renders them on `/metrics`) and the log line of every version landing or going.
//! Names and labels live here, in one place, so docs/operations.md can list them all; every
//! label takes a handful of fixed values (no repo or version names: bounded cardinality).

use std::time::Duration;

use intact_core::Manifest;
use metrics::{counter, histogram};

/// Latency of commits that made a version visible, from the first read to the answer.
pub const COMMIT_SECONDS: &str = "intact_commit_duration_seconds";
/// Commits by outcome: `committed`, `already_committed`, `refused` (any error).
pub const COMMITS: &str = "intact_commits_total";
/// Transactions that ended without a version: `how` = `aborted` or `expired`.
pub const TXNS_ENDED: &str = "intact_transactions_ended_total";
/// Lookups in the store's memory caches: `cache` = `manifest`, `small_file` or `verified_file`, `result` =
/// `hit` or `miss`.
pub const CACHE_LOOKUPS: &str = "intact_cache_lookups_total";
/// Garbage collection: passes (`kind` = `background` or `manual`), blobs and bytes deleted.
pub const GC_RUNS: &str = "intact_gc_runs_total";
pub const GC_BLOBS_DELETED: &str = "intact_gc_blobs_deleted_total";
pub const GC_BYTES_DELETED: &str = "intact_gc_bytes_deleted_total";
/// The scrubber's progress: blobs and bytes re-hashed.
pub const SCRUB_BLOBS: &str = "intact_scrub_blobs_checked_total";
pub const SCRUB_BYTES: &str = "intact_scrub_bytes_checked_total";
/// Damaged or missing committed blobs found: `found_by` = `scrub`, `read` or `verify`,
/// `problem` = `missing` or `damaged`.
pub const BLOB_PROBLEMS: &str = "intact_blob_problems_total";
/// Versions deleted by proxy-cache eviction, and their bytes.
pub const EVICTIONS: &str = "intact_evictions_total";
pub const EVICTED_BYTES: &str = "intact_evicted_bytes_total";

/// A commit's outcome, timed from its start.
pub(crate) fn commit_finished(result: &crate::Result<crate::CommitOutcome>, took: Duration) {
    let outcome = match result {
        Ok(crate::CommitOutcome::Committed(m)) => {
            histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
            log_commit(m, took);
            "committed"
        }
        Ok(crate::CommitOutcome::AlreadyCommitted(_)) => "already_committed",
        Err(_) => "refused",
    };
    counter!(COMMITS, "outcome" => outcome).increment(1);
}

fn log_commit(m: &Manifest, took: Duration) {
    let bytes: u64 = m.files.iter().map(|f| f.size).sum();
    let txn = m.transaction.as_ref().map(ToString::to_string).unwrap_or_default();
    tracing::info!(
        target: "intact::commit",
        repo = %m.repo,
        name = %m.name,
        version = %m.version,
        files = m.files.len(),
        bytes,
        seq = m.seq,
        txn = %txn,
        ms = took.as_micros() as f64 / 1000.0,
        "version committed"
    );
}

/// Transactions rolled back.
pub(crate) fn txns_aborted(ids: &[intact_core::TxnId]) {
    if ids.is_empty() {
        return;
    }
    counter!(TXNS_ENDED, "how" => "aborted").increment(ids.len() as u64);
    for id in ids {
        tracing::info!(target: "intact::commit", txn = %id, how = %"aborted", "transaction ended without a version");
    }
}

/// A transaction whose lease ran out. Called by the catalog write that expired it, once that
/// write is durable (see `catalog::Expiries`): a lapse is told once, whether the reaper's
/// sweep or an operation on the transaction (a commit, a renewal, an open taking its lock
/// over) found it first.
pub(crate) fn txn_expired(rec: &crate::TxnRecord) {
    counter!(TXNS_ENDED, "how" => "expired").increment(1);
    tracing::info!(
        target: "intact::commit",
        txn = %rec.id,
        how = %"expired",
        repo = %rec.repo,
        name = %rec.name,
        version = %rec.version,
        "transaction ended without a version"
    );
}

pub(crate) fn cache_lookup(cache: &'static str, hit: bool) {
    counter!(CACHE_LOOKUPS, "cache" => cache, "result" => if hit { "hit" } else { "miss" }).increment(1);
}

pub(crate) fn gc_ran(kind: &'static str, blobs_deleted: u64, bytes_deleted: u64) {
    counter!(GC_RUNS, "kind" => kind).increment(1);
    counter!(GC_BLOBS_DELETED).increment(blobs_deleted);
    counter!(GC_BYTES_DELETED).increment(bytes_deleted);
}

pub(crate) fn scrubbed(bytes: u64) {
    counter!(SCRUB_BLOBS).increment(1);
    counter!(SCRUB_BYTES).increment(bytes);
}

pub(crate) fn blob_problem(found_by: &'static str, missing: bool) {
    counter!(BLOB_PROBLEMS, "found_by" => found_by, "problem" => if missing { "missing" } else { "damaged" })
        .increment(1);
}

/// A version deleted by eviction, logged with why.
pub(crate) fn evicted(m: &Manifest, reason: &str) {
    let bytes: u64 = m.files.iter().map(|f| f.size).sum();
    counter!(EVICTIONS).increment(1);
    counter!(EVICTED_BYTES).increment(bytes);
    tracing::info!(
        target: "intact::commit",
        repo = %m.repo,
        name = %m.name,
        version = %m.version,
        bytes,
        reason,
        "version deleted"
    );
}
