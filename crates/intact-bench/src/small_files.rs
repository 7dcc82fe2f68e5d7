//! Measurement 2: small-file GETs (one 4 KiB file, the same bytes for both) under closed-loop
//! load, intact (`/api/v1/repos/files/bench/small/@v/1/f.bin`) against nginx serving a plain
//! directory. Both answer from the page cache; the difference is the request path.

use anyhow::{Context, Result, ensure};

use crate::fixture::{Reads, SMALL_PATH, SMALL_SIZE};
use crate::load::{self, LoadResult};
use crate::nginx::Nginx;
use crate::report::{Better, Row};
use crate::server::Server;
use crate::stats::{fmt_dur, fmt_rate};
use crate::{Ctx, progress};

/// Fetches `url` once and checks it is exactly `expected`.
pub async fn check_same_bytes(ctx: &Ctx, url: &str, expected: &[u8]) -> Result<()> {
    let resp = ctx.client.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.bytes().await?;
    ensure!(status.is_success(), "GET {url}: {status}");
    ensure!(
        body.as_ref() == expected,
        "GET {url} returned other bytes ({} bytes)",
        body.len()
    );
    Ok(())
}

pub async fn run(ctx: &Ctx, fx: &Reads) -> Result<Vec<Row>> {
    let expected = std::fs::read(fx.www.join("small.bin"))?;
    ensure!(expected.len() as u64 == SMALL_SIZE, "small file has the wrong size");

    let server = Server::start(ctx, &fx.data, "small")?;
    let intact_url = server.url(SMALL_PATH);
    check_same_bytes(ctx, &intact_url, &expected).await?;
    progress("loading intact with 4 KiB GETs");
    let mut intact = load::run(ctx, &intact_url).await?;
    intact.command = intact.command.replace(&server.base, "$INTACT");
    drop(server);

    let peer = match &ctx.tools.nginx {
        Some(bin) => {
            let nginx = Nginx::start(bin, &fx.nginx_prefix("small"), &fx.www)?;
            let url = nginx.url("/small.bin");
            check_same_bytes(ctx, &url, &expected).await?;
            progress("loading nginx with 4 KiB GETs");
            let mut result = load::run(ctx, &url).await?;
            result.command = result.command.replace(&nginx.base, "$NGINX");
            Some((nginx.version.clone(), result))
        }
        None => {
            ctx.note("nginx is not installed: measurement 2 has no peer (scripts/bench installs it)");
            None
        }
    };
    if ctx.tools.wrk.is_none() {
        ctx.note(
            "wrk was not used: measurement 2 ran the built-in Rust load generator (reqwest, one connection per task)",
        );
    }
    Ok(rows(&intact, peer.as_ref()))
}

fn rows(intact: &LoadResult, peer: Option<&(String, LoadResult)>) -> Vec<Row> {
    let rps = |r: &LoadResult| (r.requests_per_sec, fmt_rate(r.requests_per_sec, "req"));
    let lat = |r: &LoadResult| {
        (
            r.p50.as_secs_f64(),
            format!("p50 {} · p99 {}", fmt_dur(r.p50), fmt_dur(r.p99)),
        )
    };
    let what_rps = "4 KiB GET throughput";
    let what_lat = "4 KiB GET latency under that load";
    match peer {
        Some((name, p)) => {
            let reproduce = vec![intact.command.clone(), p.command.clone()];
            vec![
                Row::compare(
                    "2a",
                    what_rps,
                    rps(intact),
                    name.clone(),
                    rps(p),
                    Better::Higher,
                    reproduce.clone(),
                ),
                Row::compare(
                    "2b",
                    what_lat,
                    lat(intact),
                    name.clone(),
                    lat(p),
                    Better::Lower,
                    reproduce,
                ),
            ]
        }
        None => vec![
            Row::alone(
                "2a",
                what_rps,
                rps(intact).1,
                "nginx missing",
                vec![intact.command.clone()],
            ),
            Row::alone(
                "2b",
                what_lat,
                lat(intact).1,
                "nginx missing",
                vec![intact.command.clone()],
            ),
        ],
    }
}
