//! intact's HTTP server: the artifact API (`/api/v1`), the Go module proxy (`/go/{repo}`) and
//! build-artifact staging, over one [`intact_store::Store`]. Each front-end owns its mapping
//! from storage outcomes to status codes.

pub mod api;
pub mod config;
pub mod forwarded;
pub mod go;
pub mod hooks;
pub mod http;
pub mod limits;
pub mod listener;
pub mod observe;
pub mod openapi;
pub mod shared_flight;
pub mod singleflight;
pub mod staging;
pub mod state;
pub mod tls;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;
pub use state::AppState;

/// Opens the store for `config`, runs start-up recovery and builds the shared state.
pub async fn open(config: Config) -> anyhow::Result<AppState> {
    // Before the store opens: recovery and every commit after it are counted.
    observe::metrics::recorder();
    let catalog = config.catalog.choice()?;
    let blobs = config.blobs.settings()?;
    let store = intact_store::Store::open(&config.data_dir, &catalog, &blobs, config.store_config())
        .await
        .with_context(|| {
            format!(
                "opening the store (data dir {}, catalog {catalog:?})",
                config.data_dir.display()
            )
        })?;
    let report = store.recover().await.context("start-up recovery")?;
    tracing::info!(
        expired_transactions = report.expired_transactions,
        blobs_deleted = report.blobs_deleted,
        bytes_deleted = report.bytes_deleted,
        pending_files_removed = report.pending_files_removed,
        "start-up recovery done"
    );
    if store.is_sole_writer() {
        // Only intact writes into proxy repos (Go fetches, staging runs), and this process is
        // the catalog's only writer: what is open there belongs to a process that died
        // mid-commit and would hold its version (every request for it waiting) until its
        // lease ran out.
        for repo in config.repos.iter().filter(|r| r.kind == config::RepoKind::Proxy) {
            let n = store
                .abort_all_open(&repo.name)
                .await
                .with_context(|| format!("rolling back repo {}'s transactions left open", repo.name))?;
            if n > 0 {
                tracing::info!(repo = %repo.name, transactions = n, "rolled back transactions a dead process left open");
            }
        }
    } else {
        // A shared catalog: what is open in proxy repos (Go fetches, staging runs) may belong
        // to live replicas. A dead replica's transactions end when their leases run out.
        tracing::info!("shared catalog: transactions left open by a dead replica end with their leases");
    }
    let owns_data_dir = store.owns_data_dir();
    let state = AppState::new(Arc::new(config), store)?;
    if !owns_data_dir {
        // Replicas sharing a data dir (and the blob directory in it): another one's temp
        // files may be in use.
        return Ok(state);
    }
    let go = state.go.clone();
    match tokio::task::spawn_blocking(move || go.remove_leftovers()).await? {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed Go temp files a dead process left"),
        Err(e) => tracing::warn!(error = %e, "removing Go temp files left by a dead process failed"),
    }
    staging::recover(&state).await;
    Ok(state)
}

/// Serves `state` on `listener` until `shutdown` flips to true, with the background tasks
/// (lease expiry, periodic garbage collection) running alongside. With `[tls]`, serves HTTPS
/// and reloads the certificate on SIGHUP.
pub async fn run(listener: TcpListener, state: AppState, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    // Cleanups owed by dropped requests run here, not on the serving threads' runtimes, which
    // end with the shutdown that cancels those requests.
    let cleanups_here = intact_store::cleanup::run_on(tokio::runtime::Handle::current());
    // First, so that a bad certificate stops the server before anything else starts.
    let (tls, cert_reloader) = match &state.config.tls {
        Some(files) => {
            let cert = tls::ReloadableCert::load(files)?;
            let acceptor = cert.acceptor()?;
            let reloader = tls::spawn_sighup_reloader(cert, shutdown.clone())?;
            (Some(acceptor), Some(reloader))
        }
        None => (None, None),
    };
    let reaper = tokio::spawn(state.store.clone().run_reaper(Duration::from_secs(1), shutdown.clone()));
    let invalidator = tokio::spawn(state.store.clone().run_invalidator(shutdown.clone()));
    let statistics_keeper = tokio::spawn(
        state
            .store
            .clone()
            .run_statistics_keeper(intact_store::STATISTICS_EVERY, shutdown.clone()),
    );
    let scrubber = tokio::spawn(state.store.clone().run_scrubber(
        state.config.store.scrub_bytes_per_second,
        Duration::from_secs(state.config.store.scrub_pass_interval_seconds),
        shutdown.clone(),
    ));
    // Garbage collection runs in the background, paged and resumable; start-up never waits
    // for it.
    let sweeper = state
        .config
        .store
        .sweeper()
        .map(|settings| tokio::spawn(state.store.clone().run_sweeper(settings, shutdown.clone())));
    let token_census = tokio::spawn(state.tokens.clone().run(
        state.store.clone(),
        state.auth.clone(),
        shutdown.clone(),
    ));
    let background = state.start_background(shutdown.clone());
    let http = state.config.http.clone();
    let connection_buffer = listener::connection_buffer(state.limits.settings.max_header_bytes);
    let app = api::router(state);
    listener::serve_on_threads(listener, app, &http, connection_buffer, tls, shutdown)
        .await
        .context("http server")?;
    if let Some(t) = cert_reloader {
        t.abort();
    }
    reaper.abort();
    invalidator.abort();
    statistics_keeper.abort();
    scrubber.abort();
    token_census.abort();
    if let Some(mut t) = sweeper {
        // It saves its place and gives its lease up when told to stop; give it a moment (a
        // page cut short is safe too: the place saved is the last page done).
        if tokio::time::timeout(Duration::from_secs(5), &mut t).await.is_err() {
            t.abort();
            tracing::warn!("the background sweeper did not stop within 5 s");
        }
    }
    for t in background {
        t.abort();
        // Dropped by now, so what the drop owes is spawned before `finish` looks.
        let _ = t.await;
    }
    // What the cancelled requests' drops owe (a pending object to delete, a multipart upload
    // to abort, a lease to end) runs on this runtime: let it finish before the process exits.
    let left = intact_store::cleanup::finish(CLEANUP_GRACE).await;
    drop(cleanups_here);
    if left > 0 {
        tracing::warn!(left, "cleanups still running at exit; later sweeps finish them");
    }
    Ok(())
}

/// How long a shutdown waits for the cleanups its cancelled requests left.
const CLEANUP_GRACE: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use intact_core::{Name, RepoName};
    use intact_store::{BeginRequest, OpenOutcome, Store, StoreConfig, VersionSpec};

    use super::*;

    fn begin(repo: &str, name: &str) -> BeginRequest {
        BeginRequest {
            repo: RepoName::parse(repo).expect("repo"),
            name: Name::parse(name).expect("name"),
            version: VersionSpec::Exact(intact_core::Version::parse("1").expect("v")),
            metadata: serde_json::json!({}),
            lease: None,
            idempotency_key: None,
            wait: Duration::ZERO,
            base: None,
        }
    }

    /// Only intact itself writes into proxy repos (Go fetches, staging runs): a transaction
    /// of theirs still open at start-up belongs to a process that died mid-commit, and would
    /// hold its version until its lease ran out (every request for it waiting, then failing).
    /// Start-up rolls such transactions back; a hosted repo's belong to clients, who may
    /// still come back to them.
    #[tokio::test]
    async fn start_up_rolls_back_what_a_dead_process_left_open_in_proxy_repos() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::from_toml(
            r#"
[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "builds"
kind = "proxy"
format = "generic"
upstream = "file:///nonexistent"
"#,
        )
        .expect("config");
        config.data_dir = dir.path().join("data");
        let (proxied, hosted) = {
            let store = Store::open_local(&config.data_dir, StoreConfig::default())
                .await
                .expect("store");
            let open = |o: OpenOutcome| match o {
                OpenOutcome::Created(t) => t.id,
                other => panic!("{other:?}"),
            };
            let p = open(store.begin(begin("builds", "b7")).await.expect("begin"));
            let h = open(store.begin(begin("files", "f")).await.expect("begin"));
            (p, h)
        };
        let state = open(config).await.expect("open");
        let state_of = |id| {
            let store = state.store.clone();
            async move { store.txn(&id).await.expect("txn").state }
        };
        assert_eq!(state_of(proxied).await, intact_core::TxnState::Aborted);
        assert_eq!(state_of(hosted).await, intact_core::TxnState::Open);
    }
}
