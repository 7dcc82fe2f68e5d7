//! `intact serve`: load configuration, open the store, serve until Ctrl-C / SIGTERM (with
//! `[tls]`, SIGHUP reloads the certificate).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use intact_server::Config;

#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "INTACT_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7333].
    #[arg(long, env = "INTACT_LISTEN")]
    listen: Option<String>,
    /// Data directory for the embedded catalog and blobs [default: ./intact-data].
    #[arg(long, env = "INTACT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Catalog URL (`postgres://...`) [default: the embedded SQLite catalog in the data dir].
    #[arg(long, env = "INTACT_CATALOG_URL", hide_env_values = true)]
    catalog_url: Option<String>,
    /// Collect garbage every N seconds (0 disables; start-up recovery always runs).
    #[arg(long, env = "INTACT_GC_INTERVAL_SECONDS")]
    gc_interval_seconds: Option<u64>,
    /// Grace period for unreferenced blobs, in seconds.
    #[arg(long, env = "INTACT_GC_GRACE_SECONDS")]
    gc_grace_seconds: Option<u64>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Config::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Config::embedded_default(),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(url) = args.catalog_url {
        config.catalog.url = Some(url);
        config.validate()?;
    }
    if let Some(s) = args.gc_interval_seconds {
        config.store.gc_interval_seconds = s;
    }
    if let Some(s) = args.gc_grace_seconds {
        config.store.gc_grace_seconds = s;
    }
    // A bad certificate is a start-up error before anything else happens (`run` loads it
    // again for serving: two small files).
    if let Some(tls) = &config.tls {
        intact_server::tls::ReloadableCert::load(tls)?;
    }
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let data_dir = config.data_dir.clone();
    let repos: Vec<String> = config.repos.iter().map(|r| r.name.to_string()).collect();
    let state = intact_server::open(config).await?;
    // Tests and scripts read this line to learn the port when listening on :0.
    println!(
        "intact listening on {scheme}://{addr} (data dir {}, repos: {})",
        data_dir.display(),
        repos.join(", ")
    );
    tracing::info!(%addr, "serving");
    if !addr.ip().is_loopback() && !state.config.auth.required && !state.store.catalog().has_tokens().await? {
        tracing::warn!(
            %addr,
            "listening beyond loopback with no token: until one exists anyone who can reach this port may publish, read \
             and run admin operations; create one with `intact token create NAME --scope '*:admin' --config ...` \
             or set [auth] required = true (docs/security.md)"
        );
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    intact_server::run(listener, state, stop_rx).await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
