//! Measurement 7: cold coalescing. Many clients ask at once for one Go module version nobody
//! has cached yet, through a slow upstream: how many times the upstream is asked for each
//! file, and how long the last client waits, against one uncontended cold fetch.
//!
//! Peer: nginx as a caching proxy of the same upstream (`proxy_cache` with
//! `proxy_cache_lock on`, which lets one request per key go upstream and holds the others).
//!
//! The upstream is a GOPROXY run inside this process: every answer is held back by
//! `--coalesce-delay-ms` (a far, slow proxy), and every request is counted by path.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::nginx::Nginx;
use crate::report::{Better, Row};
use crate::server::{Server, UNREFUSED_RATES};
use crate::stats::{Summary, fmt_dur, median};
use crate::{Ctx, progress};

const MODULE: &str = "example.com/slow";
const REPO: &str = "goproxy";
/// Versions the upstream has: a few for uncontended fetches, one per contended round.
const VERSIONS: u32 = 8;
/// Uncontended cold fetches per server (each of its own version); the median is the figure.
const UNCONTENDED: u32 = 3;

struct Upstream {
    files: HashMap<String, Bytes>,
    delay: Duration,
    asked: Mutex<HashMap<String, u64>>,
}

impl Upstream {
    fn asked(&self, path: &str) -> u64 {
        self.asked
            .lock()
            .map(|a| a.get(path).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

async fn answer(State(up): State<Arc<Upstream>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if let Ok(mut asked) = up.asked.lock() {
        *asked.entry(path.clone()).or_default() += 1;
    }
    tokio::time::sleep(up.delay).await;
    match up.files.get(&path) {
        Some(body) => body.clone().into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// Pseudo-random bytes (xorshift): content deflate cannot shrink, so the zip is as big.
fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn version(i: u32) -> String {
    format!("v1.0.{i}")
}

/// The upstream's files for every version: `.info`, `.mod` and a real module zip.
fn upstream_files(scratch: &Path, payload: usize) -> Result<HashMap<String, Bytes>> {
    let mut files = HashMap::new();
    for i in 0..VERSIONS {
        let v = version(i);
        let dir = scratch.join(&v);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("go.mod"), format!("module {MODULE}\n"))?;
        std::fs::write(dir.join("slow.go"), "package slow\n")?;
        std::fs::write(dir.join("payload.bin"), incompressible(payload, u64::from(i) + 7))?;
        let mut zip = std::io::Cursor::new(Vec::new());
        intact_go::zip::create_from_dir(&dir, MODULE, &v, &mut zip).context("making a module zip")?;
        let base = format!("/{MODULE}/@v/{v}");
        files.insert(format!("{base}.zip"), Bytes::from(zip.into_inner()));
        files.insert(format!("{base}.mod"), Bytes::from(format!("module {MODULE}\n")));
        files.insert(
            format!("{base}.info"),
            Bytes::from(format!("{{\"Version\":\"{v}\",\"Time\":\"2025-01-01T00:00:00Z\"}}")),
        );
    }
    files.insert(
        format!("/{MODULE}/@v/list"),
        Bytes::from((0..VERSIONS).map(|i| version(i) + "\n").collect::<String>()),
    );
    Ok(files)
}

/// What one server did with the cold requests.
struct Figures {
    uncontended: Duration,
    /// Every client's wait in the contended round.
    clients: Summary,
    last: Duration,
    /// Upstream requests for the contended version's `.zip`, `.info`, `.mod`.
    asked: (u64, u64, u64),
}

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let dir = ctx.work.join("coalesce");
    std::fs::create_dir_all(&dir)?;
    let delay = Duration::from_millis(ctx.args.coalesce_delay_ms);
    let clients = ctx.args.coalesce_clients;
    ensure!(clients > 0, "--coalesce-clients must be at least 1");
    let upstream = Arc::new(Upstream {
        files: upstream_files(&dir.join("modules"), ctx.args.coalesce_zip_kib * 1024)?,
        delay,
        asked: Mutex::new(HashMap::new()),
    });
    let zip_len = upstream
        .files
        .get(&format!("/{MODULE}/@v/{}.zip", version(0)))
        .map_or(0, Bytes::len);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_base = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().fallback(answer).with_state(upstream.clone());
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    progress(format!(
        "upstream GOPROXY on {upstream_base}: {VERSIONS} versions of {MODULE} ({} KiB zips), every answer {} late",
        zip_len / 1024,
        fmt_dur(delay)
    ));

    // intact: a Go proxy repo of that upstream, default settings otherwise.
    let config = dir.join("intact.toml");
    std::fs::write(
        &config,
        format!(
            "{UNREFUSED_RATES}[[repo]]\nname = \"{REPO}\"\nkind = \"proxy\"\nformat = \"go\"\nupstream = \"{upstream_base}\"\nchecksum_db = \"off\"\n"
        ),
    )?;
    let intact = {
        let server = Server::start_configured(ctx, &dir.join("data"), "coalesce", Some(&config), &[])?;
        let base = server.url(&format!("/go/{REPO}"));
        let figures = measure(&upstream, &base, clients, 0).await;
        drop(server);
        figures?
    };
    let nginx = match &ctx.tools.nginx {
        Some(bin) => {
            let peer = Nginx::start_caching_proxy(bin, &dir.join("nginx"), &upstream_base)?;
            let figures = measure(&upstream, &peer.base, clients, VERSIONS / 2).await?;
            Some((peer.version.clone(), figures))
        }
        None => None,
    };
    serving.abort();

    let what = format!(
        "{clients} clients at once on one cold Go .zip ({} KiB), upstream {} slow: last client served in",
        zip_len / 1024,
        fmt_dur(delay)
    );
    let shown = |f: &Figures, with_info_mod: bool| {
        let asked = match with_info_mod {
            true => format!(
                "upstream asked: .zip {}, .info {}, .mod {}",
                f.asked.0, f.asked.1, f.asked.2
            ),
            false => format!("upstream asked: .zip {}", f.asked.0),
        };
        format!(
            "{} ({:.2}x one uncontended cold fetch, {}) · all clients {} · {asked}",
            fmt_dur(f.last),
            f.last.as_secs_f64() / f.uncontended.as_secs_f64().max(1e-9),
            fmt_dur(f.uncontended),
            f.clients.p50_p99()
        )
    };
    let url = format!("$INTACT/go/{REPO}/{MODULE}/@v/<cold version>.zip");
    let intact_cmd = format!(
        "intact-bench --only coalesce --coalesce-clients {clients} --coalesce-zip-kib {}   # {clients} x curl -s {url} at once",
        ctx.args.coalesce_zip_kib
    );
    let intact_fig = (intact.last.as_secs_f64(), shown(&intact, true));
    ctx.note(
        "7a: intact's target is the last client within 1.1x of one uncontended cold fetch, and exactly one upstream \
         request per file; nginx's proxy_cache_lock holds waiting requests in 500 ms polls, so its waiters are served \
         on that beat",
    );
    Ok(vec![match nginx {
        Some((version, peer)) => Row::compare(
            "7a",
            what,
            intact_fig,
            format!("{version} proxy_cache + proxy_cache_lock"),
            (peer.last.as_secs_f64(), shown(&peer, false)),
            Better::Lower,
            vec![
                intact_cmd,
                "nginx: proxy_pass to the same upstream, proxy_cache, proxy_cache_lock on".into(),
            ],
        ),
        None => Row::alone("7a", what, intact_fig.1, "nginx not installed", vec![intact_cmd]),
    }])
}

/// One server's figures: the median of `UNCONTENDED` single cold fetches, then `clients`
/// concurrent requests for one more cold version. Versions used start at `first`.
async fn measure(upstream: &Upstream, base: &str, clients: usize, first: u32) -> Result<Figures> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(clients)
        .build()?;
    let zip_url = |i: u32| format!("{base}/{MODULE}/@v/{}.zip", version(i));
    let expected = |i: u32| upstream.files.get(&format!("/{MODULE}/@v/{}.zip", version(i))).cloned();
    let mut alone = Vec::new();
    for i in first..first + UNCONTENDED {
        let t = Instant::now();
        fetch(&client, &zip_url(i), expected(i)).await?;
        alone.push(t.elapsed().as_secs_f64());
    }
    let uncontended = Duration::from_secs_f64(median(&alone));
    let contended = first + UNCONTENDED;
    ensure!(contended < VERSIONS, "not enough upstream versions for this round");
    progress(format!(
        "  {base}: one cold fetch {}; now {clients} at once",
        fmt_dur(uncontended)
    ));
    let start = Arc::new(tokio::sync::Barrier::new(clients));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, want, start) = (client.clone(), zip_url(contended), expected(contended), start.clone());
        tasks.spawn(async move {
            start.wait().await;
            let t = Instant::now();
            fetch(&client, &url, want).await?;
            anyhow::Ok(t.elapsed())
        });
    }
    let mut waits = Vec::with_capacity(clients);
    while let Some(joined) = tasks.join_next().await {
        waits.push(joined.context("client task")??);
    }
    let last = waits.iter().copied().max().unwrap_or_default();
    let path = |ext: &str| format!("/{MODULE}/@v/{}.{ext}", version(contended));
    let figures = Figures {
        uncontended,
        clients: Summary::of(waits),
        last,
        asked: (
            upstream.asked(&path("zip")),
            upstream.asked(&path("info")),
            upstream.asked(&path("mod")),
        ),
    };
    progress(format!(
        "  last client {} · upstream asked for the .zip {} time(s)",
        fmt_dur(figures.last),
        figures.asked.0
    ));
    Ok(figures)
}

/// GETs `url`, insisting on a 200 whose body is `want` (a fast wrong answer is not a figure).
async fn fetch(client: &reqwest::Client, url: &str, want: Option<Bytes>) -> Result<()> {
    let resp = client.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.bytes().await.with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&body));
    }
    ensure!(
        Some(&body) == want.as_ref(),
        "GET {url}: the body is not the upstream's zip"
    );
    Ok(())
}
