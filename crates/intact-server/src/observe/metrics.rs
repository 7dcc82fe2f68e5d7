//! Prometheus metrics on `/metrics`. One recorder per process (the `metrics` facade is
//! process-wide), installed by the first server that starts; every server in the process
//! renders it. Counters and histograms are recorded where things happen (requests here,
//! commits, caches, gc and scrub in the store); gauges that describe state (open
//! transactions, free disk, cache size) are read when the scrape asks, so they are never
//! stale and cost nothing between scrapes.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::{gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::state::AppState;

/// Requests answered, by `route` (see [`super::route`]), `method` and `status`.
pub const REQUESTS: &str = "intact_http_requests_total";
/// Time from a request's arrival to the last byte of its answer, by `route`.
pub const REQUEST_SECONDS: &str = "intact_http_request_duration_seconds";
/// Request and response body bytes, by `route`.
pub const RECEIVED_BYTES: &str = "intact_http_received_bytes_total";
pub const SENT_BYTES: &str = "intact_http_sent_bytes_total";
/// Answers whose client went away before the last byte, by `route`.
pub const ABANDONED: &str = "intact_http_abandoned_total";

/// Histogram buckets for every `_seconds` metric: from half a millisecond (a warm GET) to
/// a minute (a large upload, a long poll).
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often histograms are drained into their buckets between scrapes (they queue samples
/// until then; without it memory would grow with the request count when nobody scrapes).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// How long a scrape waits for the catalog's figures.
const CATALOG_QUERY_DEADLINE: Duration = Duration::from_secs(2);

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use. `None` when another recorder was
/// installed first (an embedding program's own): then `/metrics` says so.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match built {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics are off: another metrics recorder is installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Drains histograms every [`UPKEEP_EVERY`] until `shutdown`.
pub async fn run_upkeep(mut shutdown: watch::Receiver<bool>) {
    let Some(handle) = recorder() else { return };
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = shutdown.changed() => return,
        }
    }
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn render(State(state): State<AppState>) -> Response {
    let Some(handle) = recorder() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are off: another metrics recorder was installed in this process\n",
        )
            .into_response();
    };
    sample_state(&state).await;
    let mut resp = handle.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// The gauges that describe state, read now.
async fn sample_state(state: &AppState) {
    let started = std::time::Instant::now();
    // Bounded well inside a scraper's own timeout: a catalog that is down must show as
    // `intact_catalog_up 0`, not as a scrape that never answers.
    match tokio::time::timeout(CATALOG_QUERY_DEADLINE, state.store.catalog().count_open_txns()).await {
        Ok(Ok(n)) => {
            gauge!("intact_open_transactions").set(n as f64);
            gauge!("intact_catalog_up").set(1.0);
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: counting open transactions failed");
            gauge!("intact_catalog_up").set(0.0);
        }
        Err(_) => {
            tracing::warn!("metrics: the catalog did not answer within {CATALOG_QUERY_DEADLINE:?}");
            gauge!("intact_catalog_up").set(0.0);
        }
    }
    histogram!("intact_metrics_catalog_query_seconds").record(started.elapsed().as_secs_f64());
    gauge!("intact_small_file_cache_bytes").set(state.store.small_file_cache_weight() as f64);
    gauge!("intact_verified_files_remembered").set(state.store.verified_files_remembered() as f64);
    gauge!("intact_prepared_answer_bytes").set(state.prepared.weight() as f64);
    let data_dir = state.config.data_dir.clone();
    let space = tokio::task::spawn_blocking(move || rustix::fs::statvfs(&data_dir)).await;
    if let Ok(Ok(fs)) = space {
        let block = fs.f_frsize.max(1);
        gauge!("intact_data_dir_free_bytes").set(fs.f_bavail.saturating_mul(block) as f64);
        gauge!("intact_data_dir_size_bytes").set(fs.f_blocks.saturating_mul(block) as f64);
    }
}

/// Help texts, once, for the metrics the server and store record.
fn describe() {
    use intact_store::telemetry as store;
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "HTTP requests answered, by route template, method and status");
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "Time from a request's arrival to the last byte of its answer"
    );
    describe_counter!(RECEIVED_BYTES, Unit::Bytes, "Request body bytes read");
    describe_counter!(SENT_BYTES, Unit::Bytes, "Response body bytes sent");
    describe_counter!(ABANDONED, "Answers whose client went away before the last byte");
    describe_counter!(
        crate::hooks::deliver::DELIVERIES,
        "Webhook deliveries by outcome (ok, failed)"
    );
    describe_counter!(
        super::UPSTREAM_FETCHES,
        "Fetches from an upstream, by front end and outcome"
    );
    describe_counter!(
        super::COALESCED_WAITERS,
        "Requests that joined a fetch already under way instead of fetching again"
    );
    describe_histogram!(
        store::COMMIT_SECONDS,
        Unit::Seconds,
        "Latency of commits that made a version visible"
    );
    describe_counter!(
        store::COMMITS,
        "Commits by outcome (committed, already_committed, refused)"
    );
    describe_counter!(
        store::TXNS_ENDED,
        "Transactions that ended without a version (aborted, expired)"
    );
    describe_counter!(
        store::CACHE_LOOKUPS,
        "Memory cache lookups by cache and result (hit, miss)"
    );
    describe_counter!(store::GC_RUNS, "Garbage collection passes finished");
    describe_counter!(store::GC_BLOBS_DELETED, "Blobs deleted by garbage collection");
    describe_counter!(
        store::GC_BYTES_DELETED,
        Unit::Bytes,
        "Bytes deleted by garbage collection"
    );
    describe_counter!(store::SCRUB_BLOBS, "Blobs re-hashed by the scrubber");
    describe_counter!(store::SCRUB_BYTES, Unit::Bytes, "Bytes re-hashed by the scrubber");
    describe_counter!(
        store::BLOB_PROBLEMS,
        "Damaged or missing committed blobs found, by who found them"
    );
    describe_counter!(store::EVICTIONS, "Versions deleted by proxy-cache eviction");
    describe_counter!(
        store::EVICTED_BYTES,
        Unit::Bytes,
        "Bytes of versions deleted by eviction"
    );
    describe_gauge!("intact_open_transactions", "Transactions open in the catalog");
    describe_gauge!(
        "intact_catalog_up",
        "Whether the catalog answered the last scrape's query"
    );
    describe_gauge!(
        "intact_small_file_cache_bytes",
        Unit::Bytes,
        "Bytes of small files held in memory"
    );
    describe_gauge!(
        "intact_verified_files_remembered",
        "Larger local files remembered as hashed right in full (not hashed again while unchanged)"
    );
    describe_gauge!(
        "intact_prepared_answer_bytes",
        Unit::Bytes,
        "Bytes counted against the prepared answers to warm small-file reads (paths, headers, bodies shared with the small-file cache)"
    );
    describe_gauge!(
        "intact_data_dir_free_bytes",
        Unit::Bytes,
        "Free space (for unprivileged users) of the data dir's filesystem"
    );
    describe_gauge!(
        "intact_data_dir_size_bytes",
        Unit::Bytes,
        "Size of the data dir's filesystem"
    );
    gauge!("intact_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
