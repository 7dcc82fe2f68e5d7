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
    /// Work directly on this data dir instead of asking a server (the server must be stopped,
    /// except with --status, which only reads).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Show the background sweeper instead of collecting: whether a pass runs and how far it
    /// got, how the last one went, when the next is due.
    #[arg(long)]
    status: bool,
    /// Print the report (of the collection, or with --status of the sweeper) as one JSON
    /// document instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Work directly on this data dir instead of asking a server (the server must be stopped).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the report (`blobs_checked`, `bytes_checked`, `problems`, `ok`) as one JSON
    /// document instead of text.
    #[arg(long)]
    json: bool,
}

async fn open_local(dir: &std::path::Path) -> anyhow::Result<std::sync::Arc<intact_store::Store>> {
    Ok(intact_store::Store::open_local(dir, intact_store::StoreConfig::default()).await?)
}

pub async fn gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    if args.status {
        return gc_status(&args).await;
    }
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
    if args.json {
        super::print_json(&report)?;
    } else {
        print!("{}", describe_gc(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// A collection's report for people: what was deleted, what was forgotten, and what a
/// staging repo's disk cap evicted.
fn describe_gc(r: &Value) -> String {
    let num = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut out = format!(
        "deleted {} ({}), {} and {}\n",
        super::count(num("blobs_deleted"), "unreferenced blob"),
        super::size(num("bytes_deleted")),
        super::count(num("orphan_blobs_deleted"), "orphan file"),
        super::count(num("pending_files_removed"), "abandoned upload"),
    );
    out += &format!(
        "expired {}; forgot {} and {}\n",
        super::count(num("expired_transactions"), "overdue transaction"),
        super::count(num("transactions_pruned"), "ended transaction"),
        super::count(num("flights_pruned"), "upstream fetch record"),
    );
    for (repo, evicted) in r.get("evicted").and_then(Value::as_object).into_iter().flatten() {
        let versions = evicted.as_array().map(Vec::as_slice).unwrap_or_default();
        if versions.is_empty() {
            continue;
        }
        let bytes = versions
            .iter()
            .filter_map(|v| v.get("size").and_then(Value::as_u64))
            .sum();
        let names: Vec<String> = versions
            .iter()
            .map(|v| {
                format!(
                    "{}@{}",
                    v.get("name").and_then(Value::as_str).unwrap_or("?"),
                    v.get("version").and_then(Value::as_str).unwrap_or("?")
                )
            })
            .collect();
        out += &format!(
            "evicted from {repo} (over its max_size): {} ({}): {}\n",
            super::count(versions.len() as u64, "version"),
            super::size(bytes),
            names.join(", ")
        );
    }
    out
}

async fn gc_status(args: &GcArgs) -> anyhow::Result<ExitCode> {
    let report: Value = match &args.data_dir {
        Some(dir) => {
            // Read straight from the catalog, without the data-dir lock: the server may run.
            let catalog = intact_store::tokens::open_catalog(
                dir,
                &intact_store::CatalogChoice::Embedded,
                intact_store::tokens::MissingCatalog::Refuse,
            )
            .await?;
            let record = catalog.sweeper().await?;
            let mut report =
                intact_server::api::sweeper_status(&record, &intact_server::config::StoreSettings::default());
            if !intact_store::data_dir_in_use(dir)? {
                // No server holds the data dir: a lease still running is a dead process's.
                report["running"] = json!(false);
            }
            report
        }
        None => Client::new(&args.server)?.get_json("/api/v1/admin/gc").await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", describe_sweeper(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The sweeper's report for people: one line on what runs now, one on the last pass, one on
/// the next.
fn describe_sweeper(r: &Value) -> String {
    use super::{count, size};
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let mut out = String::new();
    if r.get("running").and_then(Value::as_bool).unwrap_or(false) {
        let so_far = &r["so_far"];
        out += &format!(
            "running: pass {} ({} phase{}), started {}, {} so far: {} checked, {} and {} deleted; resumed {}; \
             held by {} until {}\n",
            num(r, "pass"),
            text(r, "phase"),
            if r["sweeping_orphans"].as_bool().unwrap_or(false) {
                ", with the orphan sweep"
            } else {
                ""
            },
            text(r, "pass_started"),
            count(num(so_far, "pages"), "page"),
            count(num(so_far, "blobs_checked"), "blob record"),
            count(num(so_far, "blobs_deleted"), "blob"),
            count(num(so_far, "orphan_blobs_deleted"), "orphan file"),
            count(num(r, "resumed"), "time"),
            text(r, "holder"),
            text(r, "lease_until"),
        );
    } else if text(r, "phase") != "idle" {
        out += &format!(
            "interrupted: pass {} stopped in its {} phase; the next sweeper resumes it\n",
            num(r, "pass"),
            text(r, "phase")
        );
    } else {
        out += "running: no\n";
    }
    match r.get("last_pass").filter(|v| !v.is_null()) {
        Some(last) => {
            let c = &last["counts"];
            out += &format!(
                "last pass: {} from {} to {}: {} checked, {} deleted, {} listed, {} deleted, {} freed, {} \
                 removed; resumed {}\n",
                num(last, "pass"),
                text(last, "started"),
                text(last, "finished"),
                count(num(c, "blobs_checked"), "blob record"),
                count(num(c, "blobs_deleted"), "blob"),
                count(num(c, "files_listed"), "file"),
                count(num(c, "orphan_blobs_deleted"), "orphan file"),
                size(num(c, "bytes_deleted")),
                count(num(c, "pending_files_removed"), "pending file"),
                count(num(last, "resumed"), "time"),
            );
        }
        None => out += "last pass: none yet\n",
    }
    match r.get("last_orphan_sweep").and_then(Value::as_str) {
        Some(t) => out += &format!("last orphan sweep: {t}\n"),
        None => out += "last orphan sweep: none yet\n",
    }
    match r.get("next_pass_due").and_then(Value::as_str) {
        Some(t) => out += &format!("next pass due: {t}\n"),
        None => out += "next pass due: never (gc_interval_seconds = 0: only `intact gc`)\n",
    }
    out
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut report: Value = match &args.data_dir {
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
    let code = if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if args.json {
        // The server says `ok` already; a report made here on a data dir gets it too.
        report["ok"] = json!(problems.is_empty());
        super::print_json(&report)?;
        return Ok(code);
    }
    println!(
        "checked {} ({}): {}",
        super::count(report.get("blobs_checked").and_then(Value::as_u64).unwrap_or(0), "blob"),
        super::size(report.get("bytes_checked").and_then(Value::as_u64).unwrap_or(0)),
        super::count(problems.len() as u64, "problem")
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
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts read as words (one or many) and sizes in the style of every command, never
    /// "1 blobs" or "time(s)".
    #[test]
    fn the_sweeper_status_reads_naturally() {
        let running = json!({
            "running": true,
            "pass": 7,
            "phase": "blobs",
            "sweeping_orphans": true,
            "pass_started": "2030-01-01T00:00:00Z",
            "resumed": 1,
            "holder": "host-a",
            "lease_until": "2030-01-01T00:01:00Z",
            "so_far": {"pages": 1, "blobs_checked": 1, "blobs_deleted": 1, "orphan_blobs_deleted": 2},
            "last_pass": {
                "pass": 6,
                "started": "2029-12-31T00:00:00Z",
                "finished": "2029-12-31T00:10:00Z",
                "resumed": 0,
                "counts": {
                    "blobs_checked": 1, "blobs_deleted": 1, "files_listed": 0, "orphan_blobs_deleted": 1,
                    "bytes_deleted": 1536, "pending_files_removed": 1
                }
            },
            "last_orphan_sweep": null,
            "next_pass_due": "2030-01-01T01:00:00Z"
        });
        let text = describe_sweeper(&running);
        assert!(
            text.contains(
                "running: pass 7 (blobs phase, with the orphan sweep), started 2030-01-01T00:00:00Z, 1 page so far: \
                 1 blob record checked, 1 blob and 2 orphan files deleted; resumed 1 time; held by host-a until \
                 2030-01-01T00:01:00Z\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "last pass: 6 from 2029-12-31T00:00:00Z to 2029-12-31T00:10:00Z: 1 blob record checked, 1 blob \
                 deleted, 0 files listed, 1 orphan file deleted, 1.5 KiB freed, 1 pending file removed; resumed \
                 0 times\n"
            ),
            "{text}"
        );
        assert!(text.contains("last orphan sweep: none yet\n"), "{text}");

        let idle = json!({"running": false, "phase": "idle", "last_pass": null, "next_pass_due": null});
        assert_eq!(
            describe_sweeper(&idle),
            "running: no\nlast pass: none yet\nlast orphan sweep: none yet\n\
             next pass due: never (gc_interval_seconds = 0: only `intact gc`)\n"
        );
    }
}
