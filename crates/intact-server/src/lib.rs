//! intact's HTTP server: the artifact API (`/api/v1`), the Go module proxy (`/go/{repo}`) and
//! build-artifact staging, over one [`intact_store::Store`]. Each front-end owns its mapping
//! from storage outcomes to status codes.

pub mod api;
pub mod config;
pub mod go;
pub mod listener;
pub mod serve_file;
pub mod singleflight;
pub mod staging;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;
pub use state::AppState;

/// Opens the store for `config`, runs start-up recovery and builds the shared state.
pub async fn open(config: Config) -> anyhow::Result<AppState> {
    let store = intact_store::Store::open_local(&config.data_dir, config.store_config())
        .await
        .with_context(|| format!("opening data dir {}", config.data_dir.display()))?;
    let report = store.recover().await.context("start-up recovery")?;
    tracing::info!(?report, "start-up recovery done");
    let state = AppState::new(Arc::new(config), store)?;
    staging::recover(&state).await;
    Ok(state)
}

/// Serves `state` on `listener` until `shutdown` flips to true, with the background tasks
/// (lease expiry, periodic garbage collection) running alongside.
pub async fn run(listener: TcpListener, state: AppState, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let reaper = tokio::spawn(state.store.clone().run_reaper(Duration::from_secs(1), shutdown.clone()));
    let scrubber = tokio::spawn(
        state
            .store
            .clone()
            .run_scrubber(state.config.store.scrub_bytes_per_second, shutdown.clone()),
    );
    let gc_every = state.config.store.gc_interval_seconds;
    let gc_task = (gc_every > 0).then(|| {
        let store = state.store.clone();
        let grace = store.config().gc_grace;
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(gc_every));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => match store.gc(grace).await {
                        Ok(r) => tracing::info!(?r, "periodic gc"),
                        Err(e) => tracing::warn!(error = %e, "periodic gc failed"),
                    },
                    _ = stop.changed() => return,
                }
            }
        })
    });
    let background = state.start_background(shutdown.clone());
    let http = state.config.http.clone();
    let app = api::router(state);
    listener::serve(listener, app, &http, shutdown)
        .await
        .context("http server")?;
    reaper.abort();
    scrubber.abort();
    if let Some(t) = gc_task {
        t.abort();
    }
    for t in background {
        t.abort();
    }
    Ok(())
}
