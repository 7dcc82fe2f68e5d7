//! Measurement 3: one large file downloaded by a client that discards the body (curl to
//! /dev/null), intact against nginx serving the same inode; one warm-up, then the median of
//! `--runs` timed runs. Each server is started fresh for this, so its peak memory (measurement
//! 5) covers these downloads only, and the warm-up is its first read of the file since it
//! started: intact hashes every byte of that one (3a), not of later reads of the unchanged
//! file (3).

use std::path::Path;

use anyhow::{Context, Result, anyhow, ensure};

use crate::fixture::{LARGE_PATH, Reads};
use crate::memory::MemorySample;
use crate::nginx::Nginx;
use crate::report::{Better, Row};
use crate::server::Server;
use crate::stats::{fmt_int, median};
use crate::{Ctx, progress};

/// One `curl -o /dev/null` download: (bytes, seconds) as curl measured them.
pub async fn curl_download(curl: &Path, url: &str) -> Result<(u64, f64)> {
    let out = tokio::process::Command::new(curl)
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{time_total}",
        ])
        .arg(url)
        .output()
        .await
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut f = text.split_whitespace();
    let (code, size, secs) = (f.next(), f.next(), f.next());
    ensure!(
        out.status.success() && code == Some("200"),
        "curl {url}: {} {text}",
        out.status
    );
    let size: u64 = size
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("curl: {text}"))?;
    let secs: f64 = secs
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("curl: {text}"))?;
    Ok((size, secs))
}

/// A warm-up and `runs` timed downloads: the median rate in MB/s, each run's rate and the
/// warm-up's.
async fn downloads(curl: &Path, url: &str, size: u64, runs: usize) -> Result<(f64, Vec<f64>, f64)> {
    progress(format!("curl -s -o /dev/null {url}  (1 warm-up + {runs} runs)"));
    let (got, secs) = curl_download(curl, url).await?;
    ensure!(got == size, "{url}: downloaded {got} bytes, expected {size}");
    let first = got as f64 / 1e6 / secs.max(1e-9);
    let mut rates = Vec::new();
    for _ in 0..runs.max(1) {
        let (got, secs) = curl_download(curl, url).await?;
        ensure!(got == size, "{url}: downloaded {got} bytes, expected {size}");
        rates.push(got as f64 / 1e6 / secs.max(1e-9));
    }
    let med = median(&rates);
    progress(format!(
        "  first {first:.0} MB/s, then median {med:.0} MB/s (runs: {})",
        fmt_runs(&rates)
    ));
    Ok((med, rates, first))
}

pub fn fmt_runs(rates: &[f64]) -> String {
    rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
}

pub async fn run(ctx: &Ctx, fx: &Reads) -> Result<(Vec<Row>, MemorySample)> {
    let curl = ctx
        .tools
        .curl
        .as_ref()
        .ok_or_else(|| anyhow!("curl is not installed (scripts/bench installs it)"))?;
    let runs = ctx.args.runs;
    let size = fx.large_size;

    // A file that changed less than a second ago is hashed on every read (its times could
    // still hide a write); the fixture was just written, and a store's files are older.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let server = Server::start(ctx, &fx.data, "large")?;
    let baseline = server.rss_kib();
    let (intact, intact_runs, intact_first) = downloads(curl, &server.url(LARGE_PATH), size, runs).await?;
    let peak = server.peak_rss_kib();
    drop(server);

    let peer = match &ctx.tools.nginx {
        Some(bin) => {
            let nginx = Nginx::start(bin, &fx.nginx_prefix("large"), &fx.www)?;
            let (rate, rates, first) = downloads(curl, &nginx.url("/large.bin"), size, runs).await?;
            Some((nginx.version.clone(), rate, rates, nginx.worker_peak_rss_kib(), first))
        }
        None => {
            ctx.note("nginx is not installed: measurement 3 has no peer");
            None
        }
    };

    let what = format!("{} MiB download, curl -o /dev/null, median of {runs}", size >> 20);
    let intact_fig = format!("{intact:.0} MB/s (runs {})", fmt_runs(&intact_runs));
    let intact_cmd = format!("curl -s -o /dev/null -w '%{{speed_download}}' $INTACT{LARGE_PATH}");
    let row = match &peer {
        Some((name, rate, rates, _, _)) => Row::compare(
            "3",
            what,
            (intact, intact_fig),
            name.clone(),
            (*rate, format!("{rate:.0} MB/s (runs {})", fmt_runs(rates))),
            Better::Higher,
            vec![
                intact_cmd.clone(),
                "curl -s -o /dev/null -w '%{speed_download}' $NGINX/large.bin".to_owned(),
            ],
        ),
        None => Row::alone("3", what, intact_fig, "nginx missing", vec![intact_cmd.clone()]),
    };
    let first_what = format!(
        "{} MiB download, the server's first read of the file since it started (intact hashes it)",
        size >> 20
    );
    let first_fig = format!("{intact_first:.0} MB/s");
    let first_row = match &peer {
        Some((name, _, _, _, first)) => Row::compare(
            "3a",
            first_what,
            (intact_first, first_fig),
            name.clone(),
            (*first, format!("{first:.0} MB/s")),
            Better::Higher,
            vec![
                format!("restart intact, then {intact_cmd}"),
                "restart nginx, then curl -s -o /dev/null -w '%{speed_download}' $NGINX/large.bin".to_owned(),
            ],
        ),
        None => Row::alone("3a", first_what, first_fig, "nginx missing", vec![intact_cmd]),
    };
    let memory = MemorySample {
        baseline_kib: baseline,
        peak_kib: peak,
        during: format!("{} downloads of {} MiB (measurement 3)", runs + 1, fmt_int(size >> 20)),
        peer: peer.map(|(name, _, _, kib, _)| (format!("{name} worker"), kib)),
    };
    Ok((vec![row, first_row], memory))
}
