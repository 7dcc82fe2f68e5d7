//! What the server tells its operators: an access log line and request metrics for every
//! request (`access`), the route a request is counted under (`route`), and the Prometheus
//! exposition on `/metrics` (`metrics`). The store records its own metrics (commits, caches,
//! gc, scrub) through the same `metrics` facade; everything lands in one registry.

pub mod access;
pub mod metrics;
pub mod route;

use ::metrics::counter;

/// Fetches from an upstream (`front_end` = `go` or `staging`, `outcome`).
pub const UPSTREAM_FETCHES: &str = "intact_upstream_fetches_total";
/// Requests that waited for a fetch already under way instead of fetching again (`across` =
/// `process`: another request here led it; `replicas`: another replica did).
pub const COALESCED_WAITERS: &str = "intact_coalesced_waiters_total";

/// How an upstream fetch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    Ok,
    /// The upstream said it has no such file (404, 410).
    NotFound,
    /// Anything else: refused or cut connections, error statuses, oversized bodies.
    Failed,
}

pub fn upstream_fetch(front_end: &'static str, outcome: FetchOutcome) {
    let outcome = match outcome {
        FetchOutcome::Ok => "ok",
        FetchOutcome::NotFound => "not_found",
        FetchOutcome::Failed => "failed",
    };
    counter!(UPSTREAM_FETCHES, "front_end" => front_end, "outcome" => outcome).increment(1);
}

pub fn coalesced(across: &'static str) {
    counter!(COALESCED_WAITERS, "across" => across).increment(1);
}
