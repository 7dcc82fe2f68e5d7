//! `intact gc` and `intact verify`: through the running server by default, or directly on a
//! data dir (`--data-dir`) when no server owns it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use crate::ServerArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct GcArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Keep unreferenced blobs younger than this many seconds (default: the server's setting).
    #[arg(long)]
    grace_seconds: Option<u64>,
    /// Work directly on this data dir instead of asking a server (the server must be stopped).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Work directly on this data dir instead of asking a server (the server must be stopped).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

async fn open_local(dir: &std::path::Path) -> anyhow::Result<std::sync::Arc<intact_store::Store>> {
    Ok(intact_store::Store::open_local(dir, intact_store::StoreConfig::default()).await?)
}

pub async fn gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let report: Value = match &args.data_dir {
        Some(dir) => {
            let store = open_local(dir).await?;
            let grace = args.grace_seconds.map_or(store.config().gc_grace, Duration::from_secs);
            let mut r = serde_json::to_value(store.gc(grace).await?)?;
            r["pending_files_removed"] = json!(store.blobs().sweep_pending(grace).await?);
            r
        }
        None => {
            let client = Client::new(&args.server)?;
            let body = match args.grace_seconds {
                Some(g) => json!({"grace_seconds": g}),
                None => json!({}),
            };
            client.post_json("/api/v1/admin/gc", &body).await?.1
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let report: Value = match &args.data_dir {
        Some(dir) => serde_json::to_value(open_local(dir).await?.verify().await?)?,
        None => {
            Client::new(&args.server)?
                .post_json("/api/v1/admin/verify", &json!({}))
                .await?
                .1
        }
    };
    let problems = report
        .get("problems")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!(
        "checked {} blobs ({} bytes): {} problem(s)",
        report.get("blobs_checked").and_then(Value::as_u64).unwrap_or(0),
        report.get("bytes_checked").and_then(Value::as_u64).unwrap_or(0),
        problems.len()
    );
    for p in &problems {
        println!(
            "  {} {}: {}",
            p.get("sha256").and_then(Value::as_str).unwrap_or("?"),
            p.get("problem").and_then(Value::as_str).unwrap_or("?"),
            p.get("detail").and_then(Value::as_str).unwrap_or("")
        );
        for v in p.get("versions").and_then(Value::as_array).into_iter().flatten() {
            println!("    needed by {}", v.as_str().unwrap_or("?"));
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
