//! Measurement 6: intact as a scale-out replica — catalog in PostgreSQL, blobs in Garage (a
//! real S3 server on loopback) — beside the embedded engines (SQLite + blob files), both
//! started for real in the same run and fed the same bytes through the HTTP API.
//!
//! * 6a: 4 KiB GETs under load from a replica whose local cache is warm, vs embedded.
//! * 6b: a large download from that warm cache, vs embedded.
//! * 6c: the same download from a second replica with no local cache (every read is an S3
//!   GET), vs the same embedded figure: what the cache buys.
//! * 6d: publishing versions with one small file through the HTTP API (open, PUT, commit;
//!   concurrent publishers), replica vs embedded.
//!
//! PostgreSQL and Garage are started the way the test suites start them (`intact-testkit`):
//! a scratch database dropped at the end, and a one-node Garage in a temp dir that dies with
//! this process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use intact_testkit::{Garage, TestDatabase};
use serde_json::{Value, json};

use crate::fixture::write_pattern;
use crate::large_file::{curl_download, fmt_runs};
use crate::load::{self, LoadResult};
use crate::report::{Better, Row};
use crate::server::Server;
use crate::small_files::check_same_bytes;
use crate::stats::{Summary, fmt_dur, fmt_int, fmt_rate, median};
use crate::upload::post_json;
use crate::{Ctx, progress};

const SMALL_NAME: &str = "bench/small";
const LARGE_NAME: &str = "bench/large";
const PUBLISH_NAME: &str = "bench/publish";
const SMALL_PATH: &str = "/api/v1/repos/files/bench/small/@v/1/f.bin";
const LARGE_PATH: &str = "/api/v1/repos/files/bench/large/@v/1/f.bin";
const SMALL_SIZE: u64 = 4096;
/// The peer's name in the table; its first word is what the verdict names.
const EMBEDDED: &str = "embedded (SQLite + local files)";
/// Room for the small and the large blob with margin: nothing is evicted during the run.
const CACHE_MAX: &str = "2GiB";

/// A replica's configuration file: the shared catalog and bucket, with or without a cache.
fn replica_config(services: &Services, cache: Option<&Path>) -> String {
    let Services { garage, db, prefix } = services;
    let cache_line = cache.map_or_else(String::new, |dir| {
        format!(
            "local_cache = {{ dir = {}, max_size = {CACHE_MAX:?} }}\n",
            toml_string(&dir.display().to_string())
        )
    });
    format!(
        "{}[catalog]\nurl = {}\n\n[blobs]\nurl = {}\nendpoint = {}\nregion = {}\n{cache_line}",
        crate::server::UNREFUSED_RATES,
        toml_string(&db.url),
        toml_string(&format!("s3://{}/{prefix}", garage.bucket)),
        toml_string(&garage.endpoint),
        toml_string(&garage.region),
    )
}

/// A TOML basic string (a JSON string is one: same quotes and escapes).
fn toml_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// What a commit answered for a one-file version: its size and digest.
struct Committed {
    size: u64,
    sha256: String,
}

/// Opens `files/<name>@<version>`, checking the 201.
async fn open_txn(ctx: &Ctx, server: &Server, name: &str, version: &str) -> Result<String> {
    let (status, txn) = post_json(
        ctx,
        &server.url("/api/v1/repos/files/transactions"),
        Some(json!({"name": name, "version": version})),
    )
    .await?;
    ensure!(status == 201, "open {name}@{version}: {status} {txn}");
    txn["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no transaction id in {txn}"))
}

/// Commits transaction `id` and checks its single file has `size` bytes.
async fn commit_txn(ctx: &Ctx, server: &Server, id: &str, size: u64) -> Result<Committed> {
    let (status, manifest) = post_json(ctx, &server.url(&format!("/api/v1/transactions/{id}/commit")), None).await?;
    ensure!(status == 201, "commit {id}: {status} {manifest}");
    let file = &manifest["files"][0];
    let stored = file["size"].as_u64();
    ensure!(stored == Some(size), "committed size {stored:?}, expected {size}");
    let sha256 = file["sha256"]
        .as_str()
        .ok_or_else(|| anyhow!("no sha256 in the manifest {manifest}"))?
        .to_owned();
    Ok(Committed { size, sha256 })
}

/// Publishes `src` as `f.bin` of `files/<name>@1` through the HTTP API: open, `curl -T` (a
/// streaming PUT, as a user uploads a large file), commit.
async fn publish_via_http(ctx: &Ctx, curl: &Path, server: &Server, name: &str, src: &Path) -> Result<Committed> {
    let size = std::fs::metadata(src)
        .with_context(|| format!("reading {}", src.display()))?
        .len();
    let id = open_txn(ctx, server, name, "1").await?;
    let out = tokio::process::Command::new(curl)
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:", "-T"])
        .arg(src)
        .arg(server.url(&format!("/api/v1/transactions/{id}/files/f.bin")))
        .output()
        .await
        .context("running curl -T")?;
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success() && code == "201",
        "PUT {name}: curl {} http {code}",
        out.status
    );
    commit_txn(ctx, server, &id, size).await
}

/// The cache entry for `sha256` (`<dir>/<64 hex>`), when it is there whole.
fn cached_whole(cache_dir: &Path, sha256: &str, size: u64) -> bool {
    std::fs::metadata(cache_dir.join(sha256)).is_ok_and(|m| m.len() == size)
}

/// Reads `url` until the replica's cache holds the blob whole. A cold read fills the cache on
/// the side and gives up filling when its writer falls behind the client, so one read is not
/// always enough. Returns how many reads it took, or `None` when the cache never warmed.
async fn warm_cache(curl: &Path, url: &str, cache_dir: &Path, blob: &Committed) -> Result<Option<usize>> {
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        let (got, _) = curl_download(curl, url).await?;
        ensure!(got == blob.size, "{url}: {got} bytes, expected {}", blob.size);
        // The fill finishes (hash check, rename) just after the client has its last byte.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cached_whole(cache_dir, &blob.sha256, blob.size) {
                return Ok(Some(attempt));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(None)
}

/// Large downloads from several servers taken in turns — a warm-up from each, then run 1 from
/// each, run 2 from each, ... — so that a change in the machine's load (other work shares its
/// cores) falls on all of them alike, not on whichever happened to be measured during it.
/// Returns each server's rates, MB/s, in run order.
async fn downloads_in_turns(curl: &Path, urls: &[&str], size: u64, runs: usize) -> Result<Vec<Vec<f64>>> {
    progress(format!(
        "curl -s -o /dev/null, in turns from {} servers (1 warm-up each + {runs} runs each)",
        urls.len()
    ));
    let mut rates = vec![Vec::new(); urls.len()];
    for round in 0..=runs.max(1) {
        for (server, url) in urls.iter().enumerate() {
            let (got, secs) = curl_download(curl, url).await?;
            ensure!(got == size, "{url}: downloaded {got} bytes, expected {size}");
            // Round 0 is the warm-up: page cache, connection set-up, the catalog's first read.
            if round > 0 {
                rates[server].push(got as f64 / 1e6 / secs.max(1e-9));
            }
        }
    }
    for (url, r) in urls.iter().zip(&rates) {
        progress(format!("  {url}: median {:.0} MB/s (runs: {})", median(r), fmt_runs(r)));
    }
    Ok(rates)
}

/// 6a's load in turns, for the same reason: replica, embedded, embedded, replica, each for half
/// of `--duration-secs` (at least 1 s). Each side's requests/s and p50 are the means of its
/// two rounds, its p99 the worse of the two.
async fn small_loads_in_turns(ctx: &Ctx, replica: &str, embedded: &str) -> Result<(LoadResult, LoadResult)> {
    let half = (ctx.args.duration_secs / 2).max(1);
    progress(format!(
        "6a: 4 KiB GETs in turns (replica, embedded, embedded, replica; {half} s each)"
    ));
    let replica_first = load::run_for(ctx, replica, half).await?;
    let embedded_first = load::run_for(ctx, embedded, half).await?;
    let embedded_second = load::run_for(ctx, embedded, half).await?;
    let replica_second = load::run_for(ctx, replica, half).await?;
    Ok((
        two_rounds(&replica_first, &replica_second),
        two_rounds(&embedded_first, &embedded_second),
    ))
}

/// One figure from two rounds of the same load (see [`small_loads_in_turns`]).
fn two_rounds(first: &LoadResult, second: &LoadResult) -> LoadResult {
    LoadResult {
        requests_per_sec: (first.requests_per_sec + second.requests_per_sec) / 2.0,
        p50: (first.p50 + second.p50) / 2,
        p99: first.p99.max(second.p99),
        requests: first.requests + second.requests,
        errors: first.errors + second.errors,
        command: format!("{} (twice, in turns with the peer)", first.command),
    }
}

/// The rate of publishing `count` versions with one 16-byte file each through the HTTP API.
struct Publishing {
    count: u64,
    elapsed: Duration,
    /// Calls tried again after a retryable 503 (their time is in the figures).
    retried: u64,
    open: Summary,
    put: Summary,
    commit: Summary,
}

impl Publishing {
    fn per_sec(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    fn figure(&self) -> String {
        let retried = match self.retried {
            0 => String::new(),
            n => format!(" · {n} calls retried after a retryable 503"),
        };
        format!(
            "{} · open p50 {} · PUT p50 {} · commit p50 {}{retried}",
            fmt_rate(self.per_sec(), "versions"),
            fmt_dur(self.open.p50),
            fmt_dur(self.put.p50),
            fmt_dur(self.commit.p50)
        )
    }
}

/// The body of version `number`: its own 16 bytes, so no two versions share a blob.
fn publish_body(number: u64) -> String {
    format!("{number:016}")
}

/// Tries of one call that answers a retryable `503` (`"retryable": true`), as a client of the
/// API is told to retry it: the object store can fail one request under load (Garage's own
/// metadata database answers "database is locked" now and then) without anything being wrong.
const TRIES: u32 = 4;

/// Sends `request`, again after a retryable `503` (up to [`TRIES`] in all, backing off), and
/// returns the final status and body. `retried` counts the extra tries, for the report.
async fn send_retrying(request: reqwest::RequestBuilder, retried: &AtomicU64) -> Result<(u16, String)> {
    for attempt in 1..=TRIES {
        let this_try = request
            .try_clone()
            .ok_or_else(|| anyhow!("a request with a streamed body cannot be retried"))?;
        let resp = this_try.send().await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        let retryable =
            status == 503 && serde_json::from_str::<Value>(&body).is_ok_and(|v| v["retryable"].as_bool() == Some(true));
        if retryable && attempt < TRIES {
            retried.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            continue;
        }
        return Ok((status, body));
    }
    Err(anyhow!("no try was made"))
}

/// `body` as JSON, or an error quoting it.
fn json_of(body: &str, what: &str) -> Result<Value> {
    serde_json::from_str(body).with_context(|| format!("{what}: not JSON: {body}"))
}

/// Publishes versions `1..=count` of [`PUBLISH_NAME`], `workers` at a time, each on its own
/// keep-alive connection as separate clients would.
async fn publish_many(server: &Server, count: u64, workers: usize) -> Result<Publishing> {
    let next = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(60))
            .build()?;
        let (next, retried, base) = (next.clone(), retried.clone(), server.base.clone());
        tasks.spawn(async move {
            let (mut opens, mut puts, mut commits) = (Vec::new(), Vec::new(), Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let number = i + 1;
                let t0 = Instant::now();
                let open = client
                    .post(format!("{base}/api/v1/repos/files/transactions"))
                    .json(&json!({"name": PUBLISH_NAME, "version": number.to_string()}));
                let (status, body) = send_retrying(open, &retried).await?;
                ensure!(status == 201, "open version {number}: {status} {body}");
                let txn = json_of(&body, "open")?;
                let id = txn["id"]
                    .as_str()
                    .ok_or_else(|| anyhow!("no transaction id in {txn}"))?
                    .to_owned();
                let t1 = Instant::now();
                let put = client
                    .put(format!("{base}/api/v1/transactions/{id}/files/f.txt"))
                    .body(publish_body(number));
                let (status, body) = send_retrying(put, &retried).await?;
                ensure!(status == 201, "PUT version {number}: {status} {body}");
                let t2 = Instant::now();
                let commit = client.post(format!("{base}/api/v1/transactions/{id}/commit"));
                let (status, body) = send_retrying(commit, &retried).await?;
                ensure!(status == 201, "commit version {number}: {status} {body}");
                let manifest = json_of(&body, "commit")?;
                ensure!(
                    manifest["files"][0]["size"].as_u64() == Some(16),
                    "version {number} committed with the wrong size: {manifest}"
                );
                let t3 = Instant::now();
                opens.push(t1 - t0);
                puts.push(t2 - t1);
                commits.push(t3 - t2);
            }
            anyhow::Ok((opens, puts, commits))
        });
    }
    let (mut opens, mut puts, mut commits) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let (o, p, c) = joined.context("publisher task")??;
        opens.extend(o);
        puts.extend(p);
        commits.extend(c);
    }
    let elapsed = started.elapsed();
    Ok(Publishing {
        count,
        elapsed,
        retried: retried.load(Ordering::Relaxed),
        open: Summary::of(opens),
        put: Summary::of(puts),
        commit: Summary::of(commits),
    })
}

/// Checks the last published version reads back as its own bytes through `server` — for the
/// replicas, one that did not publish it: the catalog and bucket are really shared.
async fn check_published(ctx: &Ctx, server: &Server, count: u64) -> Result<()> {
    let url = server.url(&format!("/api/v1/repos/files/{PUBLISH_NAME}/@v/{count}/f.txt"));
    check_same_bytes(ctx, &url, publish_body(count).as_bytes()).await
}

/// What every replica shares: the object store (with this run's key prefix) and the catalog.
pub(crate) struct Services {
    garage: Garage,
    pub(crate) db: TestDatabase,
    prefix: String,
}

/// Everything the group starts, in the order it must stop (fields drop in declaration order):
/// servers before the services they use (their `Drop`s kill them), the services last.
struct Setup {
    embedded: Server,
    warm: Server,
    warm_cache: PathBuf,
    services: Services,
}

pub(crate) async fn start_services(root: &Path) -> Result<Services> {
    progress("starting Garage (one node on loopback) and a scratch PostgreSQL database");
    let garage = tokio::task::spawn_blocking(Garage::start)
        .await
        .context("starting Garage")?
        .map_err(|e| anyhow!("{e}"))?;
    let db = TestDatabase::try_create().await.map_err(|e| anyhow!("{e}"))?;
    progress(format!(
        "  Garage S3 API at {}, bucket {}; database {}",
        garage.endpoint, garage.bucket, db.name
    ));
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let prefix = garage.prefix("bench");
    Ok(Services { garage, db, prefix })
}

pub(crate) fn start_replica(
    ctx: &Ctx,
    services: &Services,
    root: &Path,
    label: &str,
    cache: Option<&Path>,
) -> Result<Server> {
    let garage = &services.garage;
    let config = root.join(format!("{label}.toml"));
    std::fs::write(&config, replica_config(services, cache))
        .with_context(|| format!("writing {}", config.display()))?;
    let data = root.join(label);
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    Server::start_configured(
        ctx,
        &data,
        label,
        Some(&config),
        &[
            ("AWS_ACCESS_KEY_ID", garage.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", garage.secret_access_key.as_str()),
        ],
    )
}

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let curl = ctx
        .tools
        .curl
        .clone()
        .ok_or_else(|| anyhow!("curl is not installed (scripts/bench installs it)"))?;
    let root = ctx.work.join("scaleout");
    let services = start_services(&root).await?;
    let warm_cache = root.join("cache-warm");
    std::fs::create_dir_all(&warm_cache).with_context(|| format!("creating {}", warm_cache.display()))?;
    let warm = start_replica(ctx, &services, &root, "replica-warm", Some(&warm_cache))?;
    let embedded_data = root.join("embedded");
    let embedded = Server::start(ctx, &embedded_data, "embedded")?;
    let setup = Setup {
        embedded,
        warm,
        warm_cache,
        services,
    };
    let rows = measure(ctx, &curl, &root, &setup).await;
    drop(setup);
    rows
}

async fn measure(ctx: &Ctx, curl: &Path, root: &Path, s: &Setup) -> Result<Vec<Row>> {
    // The same bytes for both, published through each server's HTTP API.
    let src = root.join("src");
    std::fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    let small_src = src.join("small.bin");
    let large_src = src.join("large.bin");
    let large_size = ctx.args.large_mib << 20;
    write_pattern(&small_src, 61, SMALL_SIZE)?;
    write_pattern(&large_src, 62, large_size)?;
    let small_bytes = std::fs::read(&small_src)?;

    let announce_publishing = |server: &'static str| {
        progress(format!(
            "publishing {SMALL_NAME}@1 (4 KiB) and {LARGE_NAME}@1 ({} MiB) through {server}'s HTTP API",
            ctx.args.large_mib
        ));
    };
    announce_publishing("the replica (PostgreSQL + Garage)");
    let small = publish_via_http(ctx, curl, &s.warm, SMALL_NAME, &small_src).await?;
    let large = publish_via_http(ctx, curl, &s.warm, LARGE_NAME, &large_src).await?;
    announce_publishing("embedded");
    let embedded_small = publish_via_http(ctx, curl, &s.embedded, SMALL_NAME, &small_src).await?;
    let embedded_large = publish_via_http(ctx, curl, &s.embedded, LARGE_NAME, &large_src).await?;
    ensure!(
        small.sha256 == embedded_small.sha256 && large.sha256 == embedded_large.sha256,
        "the replica and embedded stored different digests for the same bytes"
    );
    std::fs::remove_file(&large_src)?;

    progress("warming the replica's local cache (reading each file until its cache entry is whole)");
    let mut warm_notes = Vec::new();
    for (path, blob) in [(SMALL_PATH, &small), (LARGE_PATH, &large)] {
        match warm_cache(curl, &s.warm.url(path), &s.warm_cache, blob).await? {
            Some(reads) => warm_notes.push(format!("{path} whole after {reads} read(s)")),
            None => ctx.note(format!(
                "6a-6b: the replica's cache never held {path} whole after 5 reads: those rows measure a cold cache"
            )),
        }
    }
    if !warm_notes.is_empty() {
        // How many whole S3 reads the cache took to fill is a figure of its own (docs).
        ctx.note(format!("6a-6b: the replica's cache held {}", warm_notes.join("; ")));
    }
    check_same_bytes(ctx, &s.warm.url(SMALL_PATH), &small_bytes).await?;
    check_same_bytes(ctx, &s.embedded.url(SMALL_PATH), &small_bytes).await?;
    crate::settle().await;

    // A second replica with no cache (every read streams from Garage), for 6c, started first
    // so that 6b and 6c can be measured in the same turns.
    let cold = start_replica(ctx, &s.services, root, "replica-cold", None)?;
    check_same_bytes(ctx, &cold.url(SMALL_PATH), &small_bytes).await?;

    // 6a: small GETs, warm cache vs embedded.
    let (mut replica_small, mut embedded_small_load) =
        small_loads_in_turns(ctx, &s.warm.url(SMALL_PATH), &s.embedded.url(SMALL_PATH)).await?;
    replica_small.command = replica_small.command.replace(&s.warm.base, "$REPLICA");
    embedded_small_load.command = embedded_small_load.command.replace(&s.embedded.base, "$EMBEDDED");

    // 6b and 6c: the large download from the warm cache, from embedded and from Garage.
    let runs = ctx.args.runs.max(1);
    progress("6b/6c: large downloads: the replica's warm cache, embedded, the replica without a cache");
    let (warm_url, embedded_url, cold_url) = (s.warm.url(LARGE_PATH), s.embedded.url(LARGE_PATH), cold.url(LARGE_PATH));
    let rates = downloads_in_turns(curl, &[&warm_url, &embedded_url, &cold_url], large_size, runs).await?;
    let [warm_runs, embedded_runs, cold_runs] =
        <[Vec<f64>; 3]>::try_from(rates).map_err(|_| anyhow!("one list of rates per server"))?;
    let (warm_rate, embedded_rate, cold_rate) = (median(&warm_runs), median(&embedded_runs), median(&cold_runs));

    // Not a row of its own: what a cacheless replica does with small reads, for the docs.
    progress("4 KiB GETs from the replica without a cache (for the notes)");
    let cold_small = load::run(ctx, &cold.url(SMALL_PATH)).await?;
    ctx.note(format!(
        "6a: 4 KiB GETs from a replica without a local cache (every read an S3 GET to Garage): {} · p50 {} · p99 {}",
        fmt_rate(cold_small.requests_per_sec, "req"),
        fmt_dur(cold_small.p50),
        fmt_dur(cold_small.p99)
    ));

    // 6d: publishing with one small file each.
    let count = ctx.args.file_versions;
    let workers = ctx.args.workers;
    crate::settle().await;
    progress(format!(
        "6d: publishing {} versions with one 16-byte file through the replica's HTTP API, {workers} at a time",
        fmt_int(count)
    ));
    let replica_publish = publish_many(&s.warm, count, workers).await?;
    progress(format!("  {}", replica_publish.figure()));
    // Read back through the other replica: the version is in the shared catalog and bucket.
    check_published(ctx, &cold, count).await?;
    drop(cold);
    crate::settle().await;
    progress(format!(
        "6d: publishing {} versions the same way through embedded",
        fmt_int(count)
    ));
    let embedded_publish = publish_many(&s.embedded, count, workers).await?;
    progress(format!("  {}", embedded_publish.figure()));
    check_published(ctx, &s.embedded, count).await?;

    if ctx.tools.wrk.is_none() {
        ctx.note("wrk was not used: measurement 6a ran the built-in Rust load generator");
    }
    ctx.note(
        "6: PostgreSQL, Garage and all intact servers share the machine's cores with the client; \
         idle servers of the other side keep running while one side is measured",
    );

    let downloads_what = |kind: &str| {
        format!(
            "{} MiB download {kind}, curl -o /dev/null, median of {runs}",
            large_size >> 20
        )
    };
    let embedded_download = (
        embedded_rate,
        format!("{embedded_rate:.0} MB/s (runs {})", fmt_runs(&embedded_runs)),
    );
    let curl_cmd = |var: &str| format!("curl -s -o /dev/null -w '%{{speed_download}}' ${var}{LARGE_PATH}");
    Ok(vec![
        small_row(&replica_small, &embedded_small_load),
        Row::compare(
            "6b",
            downloads_what("from the warm local cache"),
            (warm_rate, format!("{warm_rate:.0} MB/s (runs {})", fmt_runs(&warm_runs))),
            EMBEDDED,
            embedded_download.clone(),
            Better::Higher,
            vec![curl_cmd("REPLICA"), curl_cmd("EMBEDDED")],
        ),
        Row::compare(
            "6c",
            downloads_what("with no local cache (S3 GET from Garage)"),
            (cold_rate, format!("{cold_rate:.0} MB/s (runs {})", fmt_runs(&cold_runs))),
            EMBEDDED,
            embedded_download,
            Better::Higher,
            vec![curl_cmd("COLD_REPLICA"), curl_cmd("EMBEDDED")],
        ),
        Row::compare(
            "6d",
            format!(
                "publish {} versions with one 16 B file over HTTP (open, PUT, commit; {workers} concurrent)",
                fmt_int(count)
            ),
            (replica_publish.per_sec(), replica_publish.figure()),
            EMBEDDED,
            (embedded_publish.per_sec(), embedded_publish.figure()),
            Better::Higher,
            vec![
                "POST $SERVER/api/v1/repos/files/transactions {\"name\":\"bench/publish\",\"version\":\"N\"}; PUT $SERVER/api/v1/transactions/$TX/files/f.txt (16 B); POST $SERVER/api/v1/transactions/$TX/commit".to_owned(),
            ],
        ),
    ])
}

fn small_row(replica: &LoadResult, embedded: &LoadResult) -> Row {
    Row::compare(
        "6a",
        "4 KiB GET throughput from the warm local cache",
        (
            replica.requests_per_sec,
            format!(
                "{} · p50 {} · p99 {}",
                fmt_rate(replica.requests_per_sec, "req"),
                fmt_dur(replica.p50),
                fmt_dur(replica.p99)
            ),
        ),
        EMBEDDED,
        (
            embedded.requests_per_sec,
            format!(
                "{} · p50 {} · p99 {}",
                fmt_rate(embedded.requests_per_sec, "req"),
                fmt_dur(embedded.p50),
                fmt_dur(embedded.p99)
            ),
        ),
        Better::Higher,
        vec![replica.command.clone(), embedded.command.clone()],
    )
}
