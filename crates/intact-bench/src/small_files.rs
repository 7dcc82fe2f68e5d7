//! Measurement 2: small-file GETs (200 B and 4 KiB, the same bytes for both) under closed-loop
//! load at 16 and 128 connections, intact (`/api/v1/repos/files/bench/{tiny,small}/@v/1/f.bin`)
//! against nginx serving a plain directory; and once more with access control on, intact
//! checking a token on every request. Both answer from memory or the page cache; the difference
//! is the request path.

use anyhow::{Context, Result, ensure};

use crate::fixture::{Reads, SMALL_PATH, SMALL_SIZE, TINY_PATH, TINY_SIZE};
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

/// One load: a file, a number of connections, with or without a token.
struct Case {
    ids: (&'static str, &'static str),
    label: &'static str,
    path: &'static str,
    peer_file: &'static str,
    connections: u32,
    with_token: bool,
}

const CASES: [Case; 5] = [
    Case {
        ids: ("2a", "2b"),
        label: "200 B GET, 16 connections",
        path: TINY_PATH,
        peer_file: "/tiny.bin",
        connections: 16,
        with_token: false,
    },
    Case {
        ids: ("2c", "2d"),
        label: "200 B GET, 128 connections",
        path: TINY_PATH,
        peer_file: "/tiny.bin",
        connections: 128,
        with_token: false,
    },
    Case {
        ids: ("2e", "2f"),
        label: "4 KiB GET, 16 connections",
        path: SMALL_PATH,
        peer_file: "/small.bin",
        connections: 16,
        with_token: false,
    },
    Case {
        ids: ("2g", "2h"),
        label: "4 KiB GET, 128 connections",
        path: SMALL_PATH,
        peer_file: "/small.bin",
        connections: 128,
        with_token: false,
    },
    Case {
        ids: ("2i", "2j"),
        label: "4 KiB GET with a token (access control on), 16 connections",
        path: SMALL_PATH,
        peer_file: "/small.bin",
        connections: 16,
        with_token: true,
    },
];

pub async fn run(ctx: &Ctx, fx: &Reads) -> Result<Vec<Row>> {
    let small = std::fs::read(fx.www.join("small.bin"))?;
    ensure!(small.len() as u64 == SMALL_SIZE, "small file has the wrong size");
    let tiny = std::fs::read(fx.www.join("tiny.bin"))?;
    ensure!(tiny.len() as u64 == TINY_SIZE, "tiny file has the wrong size");
    let bearer = format!("Bearer {}", fx.token);

    let open = Server::start(ctx, &fx.data, "small")?;
    let closed = Server::start(ctx, &fx.data_with_token, "small-token")?;
    check_same_bytes(ctx, &open.url(SMALL_PATH), &small).await?;
    check_same_bytes(ctx, &open.url(TINY_PATH), &tiny).await?;
    let refused = ctx.client.get(closed.url(SMALL_PATH)).send().await?.status();
    ensure!(
        refused == reqwest::StatusCode::UNAUTHORIZED,
        "the access-controlled server answered {refused} without a token"
    );
    let with_token = ctx
        .client
        .get(closed.url(SMALL_PATH))
        .header("authorization", &bearer)
        .send()
        .await?;
    ensure!(
        with_token.status().is_success(),
        "the token was refused: {}",
        with_token.status()
    );
    ensure!(
        with_token.bytes().await?.as_ref() == small.as_slice(),
        "other bytes with a token"
    );

    let nginx = match &ctx.tools.nginx {
        Some(bin) => {
            let nginx = Nginx::start(bin, &fx.nginx_prefix("small"), &fx.www)?;
            check_same_bytes(ctx, &nginx.url("/small.bin"), &small).await?;
            check_same_bytes(ctx, &nginx.url("/tiny.bin"), &tiny).await?;
            Some(nginx)
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
    let secs = ctx.args.duration_secs;
    let mut rows = Vec::new();
    for case in &CASES {
        let server = if case.with_token { &closed } else { &open };
        progress(format!("loading intact: {}", case.label));
        let auth = case.with_token.then_some(bearer.as_str());
        let mut intact = load::run_with(ctx, &server.url(case.path), case.connections, secs, auth).await?;
        intact.command = intact.command.replace(&server.base, "$INTACT");
        let peer = match &nginx {
            Some(nginx) => {
                progress(format!("loading nginx: {}", case.label));
                let mut result = load::run_with(ctx, &nginx.url(case.peer_file), case.connections, secs, None).await?;
                result.command = result.command.replace(&nginx.base, "$NGINX");
                Some((nginx.version.clone(), result))
            }
            None => None,
        };
        rows.extend(rows_of(case, &intact, peer.as_ref()));
    }
    Ok(rows)
}

fn rows_of(case: &Case, intact: &LoadResult, peer: Option<&(String, LoadResult)>) -> Vec<Row> {
    let rps = |r: &LoadResult| (r.requests_per_sec, fmt_rate(r.requests_per_sec, "req"));
    let lat = |r: &LoadResult| {
        (
            r.p99.as_secs_f64(),
            format!("p99 {} · p50 {}", fmt_dur(r.p99), fmt_dur(r.p50)),
        )
    };
    let what_rps = format!("{}: throughput", case.label);
    let what_lat = format!("{}: latency under that load", case.label);
    match peer {
        Some((name, p)) => {
            let reproduce = vec![intact.command.clone(), p.command.clone()];
            vec![
                Row::compare(
                    case.ids.0,
                    what_rps,
                    rps(intact),
                    name.clone(),
                    rps(p),
                    Better::Higher,
                    reproduce.clone(),
                ),
                Row::compare(
                    case.ids.1,
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
                case.ids.0,
                what_rps,
                rps(intact).1,
                "nginx missing",
                vec![intact.command.clone()],
            ),
            Row::alone(
                case.ids.1,
                what_lat,
                lat(intact).1,
                "nginx missing",
                vec![intact.command.clone()],
            ),
        ],
    }
}
