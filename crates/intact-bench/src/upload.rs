//! Measurement 4: uploading a large file into a transaction and committing it, timed from the
//! open to the commit's answer: `POST .../transactions`, `curl -T` (a streaming `PUT`), `POST
//! .../commit`. Each run changes the file's first bytes so every upload is new content.
//!
//! Peer: no stock HTTP server takes a `PUT` without extra modules, so the peer is the floor —
//! `dd bs=1M conv=fsync` of the same bytes to the same disk: the write and fsync alone, with no
//! hashing, network, rename or catalog commit.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::Value;

use crate::fixture::Reads;
use crate::large_file::fmt_runs;
use crate::memory::MemorySample;
use crate::report::{Better, Row};
use crate::server::Server;
use crate::stats::{fmt_dur, median};
use crate::{Ctx, progress};

/// Makes run `i`'s content unique (so no upload is deduplicated against an earlier one).
fn mark(src: &Path, i: usize) -> Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(src)?;
    f.write_all_at(&(i as u64 + 1).to_le_bytes(), 0)?;
    Ok(())
}

pub async fn post_json(ctx: &Ctx, url: &str, body: Option<Value>) -> Result<(u16, Value)> {
    let mut req = ctx.client.post(url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = resp.status().as_u16();
    let json = resp.json::<Value>().await.with_context(|| format!("reading {url}"))?;
    Ok((status, json))
}

/// One upload: open, PUT with curl, commit. Returns the seconds from open to committed.
async fn upload_once(ctx: &Ctx, curl: &Path, server: &Server, src: &Path, size: u64) -> Result<(f64, f64)> {
    let started = Instant::now();
    let (status, txn) = post_json(
        ctx,
        &server.url("/api/v1/repos/files/transactions"),
        Some(serde_json::json!({"name": "bench/upload", "version": "auto"})),
    )
    .await?;
    ensure!(status == 201, "open transaction: {status} {txn}");
    let id = txn["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no transaction id in {txn}"))?;
    let put_started = Instant::now();
    let out = tokio::process::Command::new(curl)
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:", "-T"])
        .arg(src)
        .arg(server.url(&format!("/api/v1/transactions/{id}/files/f.bin")))
        .output()
        .await
        .context("running curl -T")?;
    let put_secs = put_started.elapsed().as_secs_f64();
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success() && code == "201",
        "PUT: curl {} http {code}",
        out.status
    );
    let (status, manifest) = post_json(ctx, &server.url(&format!("/api/v1/transactions/{id}/commit")), None).await?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(status == 201, "commit: {status} {manifest}");
    let stored = manifest["files"][0]["size"].as_u64();
    ensure!(stored == Some(size), "committed size {stored:?}, expected {size}");
    Ok((secs, put_secs))
}

async fn dd_once(dd: &Path, src: &Path, out: &Path) -> Result<f64> {
    let t = Instant::now();
    let status = tokio::process::Command::new(dd)
        .arg(format!("if={}", src.display()))
        .arg(format!("of={}", out.display()))
        .args(["bs=1M", "conv=fsync", "status=none"])
        .status()
        .await
        .context("running dd")?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(status.success(), "dd failed: {status}");
    std::fs::remove_file(out)?;
    Ok(secs)
}

pub async fn run(ctx: &Ctx, fx: &Reads) -> Result<(Vec<Row>, MemorySample)> {
    let curl = ctx
        .tools
        .curl
        .as_ref()
        .ok_or_else(|| anyhow!("curl is not installed"))?;
    let dd = ctx.tools.dd.as_ref().ok_or_else(|| anyhow!("dd is not installed"))?;
    let src = fx.upload_src.as_ref().ok_or_else(|| anyhow!("no upload source"))?;
    let size = fx.large_size;
    let runs = ctx.args.runs.max(1);
    let mb = size as f64 / 1e6;

    let server = Server::start(ctx, &fx.data, "upload")?;
    let baseline = server.rss_kib();
    progress(format!(
        "uploading {} MiB × {runs}: POST transactions, curl -T, POST commit",
        size >> 20
    ));
    let mut rates = Vec::new();
    let mut puts = Vec::new();
    for i in 0..runs {
        mark(src, i)?;
        crate::settle().await;
        let (secs, put_secs) = upload_once(ctx, curl, &server, src, size).await?;
        progress(format!(
            "  run {}: {:.0} MB/s ({} total, PUT {})",
            i + 1,
            mb / secs,
            fmt_dur(std::time::Duration::from_secs_f64(secs)),
            fmt_dur(std::time::Duration::from_secs_f64(put_secs))
        ));
        rates.push(mb / secs);
        puts.push(mb / put_secs);
    }
    let peak = server.peak_rss_kib();
    drop(server);

    progress(format!("dd bs=1M conv=fsync of the same {} MiB × {runs}", size >> 20));
    let out = src.with_file_name("dd.out");
    let mut dd_rates = Vec::new();
    for i in 0..runs {
        mark(src, i)?;
        crate::settle().await;
        let secs = dd_once(dd, src, &out).await?;
        progress(format!("  run {}: {:.0} MB/s", i + 1, mb / secs));
        dd_rates.push(mb / secs);
    }

    let intact = median(&rates);
    let floor = median(&dd_rates);
    let row = Row::compare(
        "4",
        format!(
            "{} MiB upload + commit (open, curl -T, commit), median of {runs}",
            size >> 20
        ),
        (
            intact,
            format!(
                "{intact:.0} MB/s (runs {}; PUT alone {:.0} MB/s)",
                fmt_runs(&rates),
                median(&puts)
            ),
        ),
        "dd bs=1M conv=fsync, same disk",
        (floor, format!("{floor:.0} MB/s (runs {})", fmt_runs(&dd_rates))),
        Better::Floor,
        vec![
            "TX=$(curl -s -X POST $INTACT/api/v1/repos/files/transactions -d '{\"name\":\"bench/upload\",\"version\":\"auto\"}' -H 'content-type: application/json' | jq -r .id); curl -T big.bin -H 'Expect:' $INTACT/api/v1/transactions/$TX/files/f.bin; curl -X POST $INTACT/api/v1/transactions/$TX/commit".to_owned(),
            "dd if=big.bin of=out.bin bs=1M conv=fsync".to_owned(),
        ],
    );
    let memory = MemorySample {
        baseline_kib: baseline,
        peak_kib: peak,
        during: format!("{runs} uploads of {} MiB (measurement 4)", size >> 20),
        peer: None,
    };
    Ok((vec![row], memory))
}
