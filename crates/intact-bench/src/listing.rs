//! Measurement 1: 100,000 versions of one name — how fast they can be published (every commit
//! is an fsynced SQLite transaction), and how fast they can be listed over HTTP.
//!
//! Peers:
//! * publishing: the disk's own rate of 4 KiB `O_DSYNC` writes (`dd oflag=dsync`), the floor of
//!   any store that makes each commit durable before acknowledging it;
//! * listing: a GOPROXY-style directory, `<module>/@v/v1.0.N.{info,mod,zip}` (300,000 files
//!   for 100,000 versions), listed as such a backend must: read the whole directory, keep the
//!   version files, dedupe, sort by semver. It has no index, so every page costs a full listing.
//!   (Athens' `fs` backend keeps a directory per version instead; it lists the same way.)
//! * looking one version up: nginx serving that directory, one `.info` per request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use intact_core::{FilePath, Name, RepoName, Version};
use intact_store::{BeginRequest, BlobSettings, CatalogChoice, OpenOutcome, Store, StoreConfig, VersionSpec};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::report::{Better, Row};
use crate::server::Server;
use crate::stats::{Summary, fmt_dur, fmt_int, fmt_rate};
use crate::{Ctx, progress};

/// A hosted Go repo of the default configuration: the versions listed are a Go module's, so
/// the same 100,000 are walked through the generic API (1c-1e) and as the Go `@v/list` (1f),
/// whose peer is the GOPROXY directory holding the very same versions.
const REPO: &str = "go-private";
/// The name whose versions are listed: the module path.
const NAME: &str = "example.com/bench";
/// A second name for the publish-with-a-file figure, so the listed name holds exactly N.
const FILE_NAME: &str = "example.com/bench-with-file";
const MODULE: &str = NAME;
/// An empty zip archive (just the end-of-central-directory record).
const EMPTY_ZIP: &[u8] = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
const PAGE: u32 = 1_000;
const WALK_PAGE: u32 = 10_000;

/// Where measurement 1 runs: the embedded default (rows 1x), or a replica on the scale-out
/// engines (rows 9x, the same figures on PostgreSQL).
pub enum Backend<'a> {
    Embedded,
    Shared(&'a crate::scaleout::Services),
}

/// Measurement 1 on the embedded default.
pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    run_on(ctx, &Backend::Embedded).await
}

/// Measurement 9: measurement 1 on a replica whose catalog is PostgreSQL (its blobs in
/// Garage; the versions listed hold no files, so the catalog is what is measured).
pub async fn run_shared(ctx: &Ctx) -> Result<Vec<Row>> {
    let root = ctx.work.join("listing-pg");
    let services = crate::scaleout::start_services(&root).await?;
    let rows = run_on(ctx, &Backend::Shared(&services)).await;
    drop(services);
    Ok(rows?.into_iter().map(on_postgres).collect())
}

/// A row of measurement 1 as measurement 9's.
fn on_postgres(mut row: Row) -> Row {
    row.id = match row.id {
        "1a" => "9a",
        "1c" => "9c",
        "1d" => "9d",
        "1e" => "9e",
        "1f" => "9f",
        "1g" => "9g",
        other => other,
    };
    row.what = format!("PostgreSQL catalog: {}", row.what);
    row
}

async fn run_on(ctx: &Ctx, backend: &Backend<'_>) -> Result<Vec<Row>> {
    let dir = match backend {
        Backend::Embedded => ctx.work.join("listing"),
        Backend::Shared(_) => ctx.work.join("listing-pg"),
    };
    let data = dir.join("data");
    std::fs::create_dir_all(&dir)?;
    let n = ctx.args.versions;
    ensure!(n > u64::from(PAGE), "--versions must exceed {PAGE}");

    crate::settle().await;
    let floor = sync_write_floor(ctx, &dir).await?;

    let store = match backend {
        Backend::Embedded => Store::open_local(&data, StoreConfig::default()).await,
        // Blob files: nothing published here has a file, and the replica that serves these
        // versions afterwards reads them from the shared catalog alone.
        Backend::Shared(services) => {
            Store::open(
                &data,
                &CatalogChoice::Postgres {
                    url: services.db.url.clone(),
                },
                &BlobSettings::Files,
                StoreConfig::default(),
            )
            .await
        }
    }
    .context("opening the listing store")?;
    progress(format!(
        "publishing {} versions of {REPO}/{NAME} through Store::begin + commit, {} at a time",
        fmt_int(n),
        ctx.args.workers
    ));
    // What every server runs beside its requests (on PostgreSQL, the catalog's planner
    // statistics), so that what is published here meets the catalog a server would keep.
    let (stop_keeper, keeper_stopping) = tokio::sync::watch::channel(false);
    let keeper = tokio::spawn(
        store
            .clone()
            .run_statistics_keeper(intact_store::STATISTICS_EVERY, keeper_stopping),
    );
    let empty = publish(&store, NAME, n, ctx.args.workers, false).await?;
    progress(format!(
        "  {} (begin {}, commit {}){}",
        empty.rate(),
        empty.begin.p50_p99(),
        empty.commit.p50_p99(),
        empty.written()
    ));
    // On PostgreSQL, publishing with a file is measured over HTTP (6d), into the bucket.
    let files = match backend {
        Backend::Embedded => ctx.args.file_versions,
        Backend::Shared(_) => 0,
    };
    let with_file = if files > 0 {
        progress(format!(
            "publishing {} versions of {REPO}/{FILE_NAME} with one 16-byte file each",
            fmt_int(files)
        ));
        let p = publish(&store, FILE_NAME, files, ctx.args.workers, true).await?;
        progress(format!("  {}{}", p.rate(), p.written()));
        Some(p)
    } else {
        None
    };
    let _ = stop_keeper.send(true);
    keeper.await.context("the statistics keeper")?;
    // The server takes the data-dir lock; the store must be gone first.
    drop(store);

    let peer_dir = dir.join("goproxy").join(MODULE).join("@v");
    progress(format!(
        "writing the peer's {} files under {}",
        fmt_int(3 * n),
        peer_dir.display()
    ));
    let t = Instant::now();
    populate_peer(&peer_dir, n)?;
    progress(format!("  took {}", fmt_dur(t.elapsed())));

    crate::settle().await;
    let server = match backend {
        Backend::Embedded => Server::start(ctx, &data, "listing")?,
        Backend::Shared(services) => crate::scaleout::start_replica(ctx, services, &dir, "listing-replica", None)?,
    };
    // The versions are v1.0.0 … v1.0.{n-1}: their semver order is known without sorting, so
    // the check does not lean on the sort it checks.
    let go_list: String = (0..n).map(|i| format!("v1.0.{i}\n")).collect();
    let http = measure_http(ctx, &server, n, &go_list).await?;
    let lookups = measure_lookups(ctx, &server, &dir, &peer_dir, n).await?;
    drop(server);

    progress(format!("listing the peer directory {} times", ctx.args.walk_reps));
    let (peer, readdir) = measure_peer(&peer_dir, n, ctx.args.walk_reps)?;
    progress(format!("  {} (readdir alone: {})", peer.p50_p99(), readdir.p50_p99()));
    ctx.note(format!(
        "1c-1e: the peer's readdir of {} entries alone takes p50 {}; the rest of its p50 {} is filtering, \
         deduplicating and semver-sorting",
        fmt_int(3 * n),
        fmt_dur(readdir.p50),
        fmt_dur(peer.p50)
    ));

    let mut rows = rows(ctx, n, floor, &empty, with_file.as_ref(), &http, &peer);
    rows.push(lookup_row(n, &lookups));
    Ok(rows)
}

/// 4 KiB writes per second with `O_DSYNC`: what the disk can make durable, one at a time.
async fn sync_write_floor(ctx: &Ctx, dir: &Path) -> Result<f64> {
    let dd = ctx.tools.dd.as_ref().ok_or_else(|| anyhow!("dd is not installed"))?;
    let probe = dir.join("dsync.probe");
    let count = 1000u32;
    let t = Instant::now();
    let status = tokio::process::Command::new(dd)
        .arg("if=/dev/zero")
        .arg(format!("of={}", probe.display()))
        .args(["bs=4k", &format!("count={count}"), "oflag=dsync", "status=none"])
        .status()
        .await
        .context("running dd")?;
    let took = t.elapsed();
    ensure!(status.success(), "dd oflag=dsync failed: {status}");
    let _ = std::fs::remove_file(&probe);
    let rate = f64::from(count) / took.as_secs_f64();
    progress(format!("disk: {} (4 KiB, O_DSYNC)", fmt_rate(rate, "writes")));
    Ok(rate)
}

/// Bytes this process has caused to be written to storage so far (`/proc/self/io`).
fn write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

struct Published {
    count: u64,
    elapsed: Duration,
    /// Bytes written to storage per version (catalog WAL and checkpoints, blob files).
    bytes_per_version: Option<f64>,
    begin: Summary,
    put: Summary,
    commit: Summary,
}

impl Published {
    fn per_sec(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    fn rate(&self) -> String {
        fmt_rate(self.per_sec(), "versions")
    }

    /// `· 41 KiB written/version`, when the kernel reports it.
    fn written(&self) -> String {
        self.bytes_per_version
            .map(|b| format!(" · {:.1} KiB written/version", b / 1024.0))
            .unwrap_or_default()
    }
}

/// Publishes versions `1..=count` of `name` with `workers` concurrent publishers, each version
/// empty or with one small file of its own content.
async fn publish(store: &Arc<Store>, name: &str, count: u64, workers: usize, with_file: bool) -> Result<Published> {
    let repo = RepoName::parse(REPO)?;
    let name = Name::parse_internal(name)?;
    let path = FilePath::parse("f.txt")?;
    let next = Arc::new(AtomicU64::new(0));
    let written_before = write_bytes();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (store, next, repo, name, path) = (store.clone(), next.clone(), repo.clone(), name.clone(), path.clone());
        tasks.spawn(async move {
            let (mut begins, mut puts, mut commits) = (Vec::new(), Vec::new(), Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let number = i + 1;
                let version = Version::parse(&format!("v1.0.{i}"))?;
                let t0 = Instant::now();
                let opened = store
                    .begin(BeginRequest {
                        repo: repo.clone(),
                        name: name.clone(),
                        version: VersionSpec::Exact(version),
                        metadata: serde_json::json!({}),
                        lease: None,
                        idempotency_key: None,
                        wait: Duration::ZERO,
                        base: None,
                    })
                    .await?;
                let OpenOutcome::Created(txn) = opened else {
                    bail!("version {number} of {name} was not new: {opened:?}");
                };
                let t1 = Instant::now();
                if with_file {
                    let body = format!("{number:016}");
                    store
                        .put_file(&txn.id, path.clone(), &mut body.as_bytes(), None, None)
                        .await?;
                }
                let t2 = Instant::now();
                store.commit(&txn.id).await?;
                let t3 = Instant::now();
                begins.push(t1 - t0);
                if with_file {
                    puts.push(t2 - t1);
                }
                commits.push(t3 - t2);
                if (i + 1).is_multiple_of(10_000) {
                    let secs = started.elapsed().as_secs_f64();
                    progress(format!(
                        "  {} published ({}/s so far)",
                        fmt_int(i + 1),
                        fmt_int(((i + 1) as f64 / secs) as u64)
                    ));
                }
            }
            anyhow::Ok((begins, puts, commits))
        });
    }
    let (mut begins, mut puts, mut commits) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let (b, p, c) = joined.context("publisher task")??;
        begins.extend(b);
        puts.extend(p);
        commits.extend(c);
    }
    let elapsed = started.elapsed();
    let bytes_per_version = written_before
        .zip(write_bytes())
        .map(|(before, after)| after.saturating_sub(before) as f64 / count.max(1) as f64);
    Ok(Published {
        count,
        elapsed,
        bytes_per_version,
        begin: Summary::of(begins),
        put: Summary::of(puts),
        commit: Summary::of(commits),
    })
}

/// Writes the GOPROXY layout: `v1.0.N.info`, `.mod` and `.zip` for N in 0..n, two writers.
fn populate_peer(dir: &Path, n: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..2u64)
            .map(|k| {
                s.spawn(move || -> std::io::Result<()> {
                    for i in (k..n).step_by(2) {
                        let v = format!("v1.0.{i}");
                        let info = format!("{{\"Version\":\"{v}\",\"Time\":\"2025-01-01T00:00:00Z\"}}\n");
                        std::fs::write(dir.join(format!("{v}.info")), info)?;
                        std::fs::write(dir.join(format!("{v}.mod")), format!("module {MODULE}\n"))?;
                        std::fs::write(dir.join(format!("{v}.zip")), EMPTY_ZIP)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in writers {
            w.join()
                .map_err(|_| anyhow!("peer writer panicked"))?
                .context("writing the peer's files")?;
        }
        Ok(())
    })
}

/// The peer's `/@v/list`: every version in the directory, semver-sorted, one per line.
fn list_peer(dir: &Path) -> Result<String> {
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((version, ext)) = name.rsplit_once('.') else {
            continue;
        };
        if matches!(ext, "info" | "mod" | "zip") && intact_go::semver::is_valid(version) {
            versions.push(version.to_owned());
        }
    }
    versions.sort_unstable();
    versions.dedup();
    intact_go::semver::sort_versions(&mut versions);
    let mut body = versions.join("\n");
    body.push('\n');
    Ok(body)
}

/// The peer's full listing, and its readdir alone, `reps` times each.
fn measure_peer(dir: &Path, n: u64, reps: usize) -> Result<(Summary, Summary)> {
    let first = list_peer(dir)?;
    ensure!(
        first.lines().count() as u64 == n,
        "peer listed {} versions, expected {n}",
        first.lines().count()
    );
    ensure!(
        first.starts_with("v1.0.0\nv1.0.1\nv1.0.2\n"),
        "peer listing is not semver-sorted"
    );
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let body = list_peer(dir)?;
        samples.push(t.elapsed());
        std::hint::black_box(body);
    }
    let mut readdir = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let names = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<Vec<_>>>()?;
        readdir.push(t.elapsed());
        std::hint::black_box(names);
    }
    Ok((Summary::of(samples), Summary::of(readdir)))
}

struct HttpFigures {
    first: Summary,
    deep: Summary,
    deep_after: String,
    walk: Summary,
    walk_pages: usize,
    /// The Go `@v/list` of the same versions.
    go_list: Summary,
}

/// Only what a client needs from a page to continue: the cursor and how many entries came.
#[derive(Deserialize)]
struct PageCursor {
    next: Option<String>,
    versions: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct PageFull {
    next: Option<String>,
    versions: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    version: String,
}

fn versions_url(server: &Server, limit: u32, after: Option<&str>) -> String {
    let mut url = server.url(&format!("/api/v1/repos/{REPO}/{NAME}/@versions?limit={limit}"));
    if let Some(a) = after {
        url.push_str("&after=");
        url.push_str(a);
    }
    url
}

async fn get_body(ctx: &Ctx, url: &str) -> Result<bytes::Bytes> {
    let resp = ctx.client.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.bytes().await.with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

/// Times `reps` sequential GETs of `url` on the keep-alive client (after a short warm-up),
/// checking every answer holds `expect` entries.
async fn time_page(ctx: &Ctx, url: &str, reps: usize, expect: usize) -> Result<Summary> {
    for _ in 0..5 {
        get_body(ctx, url).await?;
    }
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let body = get_body(ctx, url).await?;
        samples.push(t.elapsed());
        let page: PageCursor = serde_json::from_slice(&body)?;
        ensure!(
            page.versions.len() == expect,
            "{url} gave {} versions, expected {expect}",
            page.versions.len()
        );
    }
    Ok(Summary::of(samples))
}

/// Walks every version in pages of `WALK_PAGE`, parsing each page's cursor as a client must.
async fn walk(ctx: &Ctx, server: &Server) -> Result<(usize, usize)> {
    let (mut seen, mut pages) = (0usize, 0usize);
    let mut after: Option<String> = None;
    loop {
        let body = get_body(ctx, &versions_url(server, WALK_PAGE, after.as_deref())).await?;
        let page: PageCursor = serde_json::from_slice(&body)?;
        pages += 1;
        seen += page.versions.len();
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok((seen, pages)),
        }
    }
}

/// The Go `@v/list` of the module, `walk_reps` times, each answer checked to be exactly the
/// peer's (every version, semver-sorted, one per line).
async fn time_go_list(ctx: &Ctx, server: &Server, expected: &str) -> Result<Summary> {
    let url = server.url(&format!("/go/{REPO}/{MODULE}/@v/list"));
    progress(format!("GET {url} × {}", ctx.args.walk_reps));
    for _ in 0..2 {
        get_body(ctx, &url).await?;
    }
    let mut samples = Vec::with_capacity(ctx.args.walk_reps);
    for _ in 0..ctx.args.walk_reps.max(1) {
        let t = Instant::now();
        let body = get_body(ctx, &url).await?;
        samples.push(t.elapsed());
        ensure!(
            body == expected.as_bytes(),
            "{url} is not every version, semver-sorted ({} bytes, expected {})",
            body.len(),
            expected.len()
        );
    }
    let list = Summary::of(samples);
    progress(format!("  {}", list.p50_p99()));
    Ok(list)
}

/// Figures 1c-1f; `go_list` is the answer the Go `list` must give (the peer's).
async fn measure_http(ctx: &Ctx, server: &Server, n: u64, go_list: &str) -> Result<HttpFigures> {
    let n_usize = usize::try_from(n)?;
    // One full walk, keeping the versions, to check the count and pick the deep cursor.
    let mut all = Vec::with_capacity(n_usize);
    let mut after: Option<String> = None;
    loop {
        let body = get_body(ctx, &versions_url(server, WALK_PAGE, after.as_deref())).await?;
        let page: PageFull = serde_json::from_slice(&body)?;
        all.extend(page.versions.into_iter().map(|e| e.version));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    ensure!(
        all.len() == n_usize,
        "the walk found {} versions, expected {n}",
        all.len()
    );
    // The last full page: after the version 1,001st from the end.
    let deep_after = all[n_usize - usize::try_from(PAGE)? - 1].clone();

    let first_url = versions_url(server, PAGE, None);
    progress(format!("GET {first_url} × {}", ctx.args.page_reps));
    let first = time_page(ctx, &first_url, ctx.args.page_reps, PAGE as usize).await?;
    progress(format!("  {}", first.p50_p99()));

    let deep_url = versions_url(server, PAGE, Some(&deep_after));
    progress(format!("GET {deep_url} × {}", ctx.args.page_reps));
    let deep = time_page(ctx, &deep_url, ctx.args.page_reps, PAGE as usize).await?;
    progress(format!("  {}", deep.p50_p99()));

    progress(format!(
        "walking all {} versions in pages of {} × {}",
        fmt_int(n),
        fmt_int(u64::from(WALK_PAGE)),
        ctx.args.walk_reps
    ));
    let mut samples = Vec::new();
    let mut walk_pages = 0;
    for _ in 0..ctx.args.walk_reps.max(1) {
        let t = Instant::now();
        let (seen, pages) = walk(ctx, server).await?;
        samples.push(t.elapsed());
        ensure!(seen == n_usize, "a walk saw {seen} versions, expected {n}");
        walk_pages = pages;
    }
    let walk = Summary::of(samples);
    progress(format!("  {} ({walk_pages} requests each)", walk.p50_p99()));
    let verdict = if walk.p50 < Duration::from_millis(50) {
        "met"
    } else {
        "not met"
    };
    ctx.note(format!(
        "1e: the target (list 100,000 versions of one name in < 50 ms) is {verdict} in this run ({} versions): the full walk takes p50 {}",
        fmt_int(n),
        fmt_dur(walk.p50)
    ));
    Ok(HttpFigures {
        first,
        deep,
        deep_after,
        walk,
        walk_pages,
        go_list: time_go_list(ctx, server, go_list).await?,
    })
}

/// Distinct versions looked up, one request each.
const LOOKUPS: u64 = 2_000;

/// Row 1g's figures: intact's lookups, and nginx's of the same kind (if installed).
struct Lookups {
    intact: Summary,
    nginx: Option<(String, Summary)>,
}

/// `count` distinct numbers below `n`, in a scattered order (xorshift from `seed`).
fn scattered(n: u64, count: u64, seed: u64) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut x = seed | 1;
    let mut out = Vec::new();
    while (out.len() as u64) < count.min(n) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % n;
        if seen.insert(i) {
            out.push(i);
        }
    }
    out
}

/// Only what a lookup's check needs from a manifest.
#[derive(Deserialize)]
struct ManifestVersion {
    version: String,
}

/// Row 1g: one version looked up by name and version among `n`, each asked for once (so no
/// cache has seen it: intact's catalog answers every one), on one keep-alive connection; the
/// peer is nginx serving the GOPROXY directory, each `.info` asked for once.
async fn measure_lookups(ctx: &Ctx, server: &Server, dir: &Path, peer_dir: &Path, n: u64) -> Result<Lookups> {
    progress(format!(
        "looking up {} scattered versions among {}, each once",
        fmt_int(LOOKUPS.min(n)),
        fmt_int(n)
    ));
    let mut samples = Vec::new();
    for i in scattered(n, LOOKUPS, 0x9e37_79b9_7f4a_7c15) {
        let v = format!("v1.0.{i}");
        let url = server.url(&format!("/api/v1/repos/{REPO}/{NAME}/@v/{v}"));
        let t = Instant::now();
        let body = get_body(ctx, &url).await?;
        samples.push(t.elapsed());
        let m: ManifestVersion = serde_json::from_slice(&body).with_context(|| format!("{url}: not a manifest"))?;
        ensure!(m.version == v, "{url} answered the manifest of {}", m.version);
    }
    let intact = Summary::of(samples);
    progress(format!("  intact: {}", intact.p50_p99()));
    let nginx = match &ctx.tools.nginx {
        None => None,
        Some(bin) => {
            let peer = crate::nginx::Nginx::start(bin, &dir.join("nginx-lookups"), peer_dir)?;
            let mut samples = Vec::new();
            for i in scattered(n, LOOKUPS, 0x2545_f491_4f6c_dd1d) {
                let v = format!("v1.0.{i}");
                let url = peer.url(&format!("/{v}.info"));
                let t = Instant::now();
                let body = get_body(ctx, &url).await?;
                samples.push(t.elapsed());
                let info: serde_json::Value = serde_json::from_slice(&body)?;
                ensure!(info["Version"] == v.as_str(), "{url} answered {info}");
            }
            let figures = Summary::of(samples);
            progress(format!("  nginx: {}", figures.p50_p99()));
            Some((peer.version.clone(), figures))
        }
    };
    Ok(Lookups { intact, nginx })
}

fn lookup_row(n: u64, lookups: &Lookups) -> Row {
    let what = format!(
        "look up one version among {} by name and version, {} scattered ones each asked once (no cache has seen them)",
        fmt_int(n),
        fmt_int(LOOKUPS.min(n))
    );
    let intact_cmd = format!("curl -s $INTACT/api/v1/repos/{REPO}/{NAME}/@v/v1.0.<N>");
    let fig = (lookups.intact.p50.as_secs_f64(), lookups.intact.p50_p99());
    match &lookups.nginx {
        Some((version, peer)) => Row::compare(
            "1g",
            what,
            fig,
            format!(
                "{version}: v1.0.<N>.info from the GOPROXY dir of {} files",
                fmt_int(3 * n)
            ),
            (peer.p50.as_secs_f64(), peer.p50_p99()),
            Better::Lower,
            vec![
                intact_cmd,
                format!("curl -s $NGINX/v1.0.<N>.info   # root {}", peer_dir_shown().display()),
            ],
        ),
        None => Row::alone("1g", what, fig.1, "nginx not installed", vec![intact_cmd]),
    }
}

fn peer_dir_shown() -> PathBuf {
    Path::new("$WORK/listing/goproxy").join(MODULE).join("@v")
}

fn rows(
    ctx: &Ctx,
    n: u64,
    floor: f64,
    empty: &Published,
    with_file: Option<&Published>,
    http: &HttpFigures,
    peer: &Summary,
) -> Vec<Row> {
    let dd = "dd if=/dev/zero of=probe bs=4k count=1000 oflag=dsync".to_owned();
    let floor_figure = (floor, fmt_rate(floor, "writes"));
    let disk = "disk: 4 KiB O_DSYNC writes";
    let bench = format!(
        "intact-bench --only listing --versions {n} --workers {}",
        ctx.args.workers
    );
    let peer_name = format!(
        "GOPROXY dir, {} files: readdir+filter+dedupe+semver sort",
        fmt_int(3 * n)
    );
    let peer_fig = (peer.p50.as_secs_f64(), peer.p50_p99());
    let peer_cmd = format!(
        "ls -f {} | sed -n 's/\\.\\(info\\|mod\\|zip\\)$//p' | sort -u | sort -V   # shell equivalent; timed in-process",
        peer_dir_shown().display()
    );
    let base = format!("$INTACT/api/v1/repos/{REPO}/{NAME}/@versions");
    let mut rows = vec![
        Row::compare(
            "1a",
            format!(
                "publish {} empty versions (Store begin+commit, {} concurrent)",
                fmt_int(n),
                ctx.args.workers
            ),
            (
                empty.per_sec(),
                format!(
                    "{} · begin {} · commit {}{}",
                    empty.rate(),
                    empty.begin.p50_p99(),
                    empty.commit.p50_p99(),
                    empty.written()
                ),
            ),
            disk,
            floor_figure.clone(),
            Better::Floor,
            vec![bench.clone(), dd.clone()],
        ),
        Row::compare(
            "1c",
            format!("list first page of {} (limit={PAGE}), HTTP keep-alive", fmt_int(n)),
            (http.first.p50.as_secs_f64(), http.first.p50_p99()),
            peer_name.clone(),
            peer_fig.clone(),
            Better::Lower,
            vec![format!("curl -s '{base}?limit={PAGE}' -o /dev/null"), peer_cmd.clone()],
        ),
        Row::compare(
            "1d",
            format!("list a deep page (after={}, limit={PAGE})", http.deep_after),
            (http.deep.p50.as_secs_f64(), http.deep.p50_p99()),
            peer_name.clone(),
            peer_fig.clone(),
            Better::Lower,
            vec![
                format!("curl -s '{base}?limit={PAGE}&after={}' -o /dev/null", http.deep_after),
                peer_cmd.clone(),
            ],
        ),
        Row::compare(
            "1e",
            format!(
                "walk all {} versions ({} requests of limit={WALK_PAGE}; target < 50 ms)",
                fmt_int(n),
                http.walk_pages
            ),
            (http.walk.p50.as_secs_f64(), http.walk.p50_p99()),
            peer_name.clone(),
            peer_fig.clone(),
            Better::Lower,
            vec![
                format!("curl -s '{base}?limit={WALK_PAGE}' then '&after=<next>' until next is null"),
                peer_cmd.clone(),
            ],
        ),
        Row::compare(
            "1f",
            format!(
                "Go `@v/list` of a module with {} versions (one request; target < 50 ms)",
                fmt_int(n)
            ),
            (http.go_list.p50.as_secs_f64(), http.go_list.p50_p99()),
            peer_name,
            peer_fig,
            Better::Lower,
            vec![
                format!("curl -s '$INTACT/go/{REPO}/{MODULE}/@v/list' -o /dev/null"),
                peer_cmd,
            ],
        ),
    ];
    if let Some(with_file) = with_file {
        rows.insert(
            1,
            Row::compare(
                "1b",
                format!(
                    "publish {} versions with one 16 B file (begin+put_file+commit)",
                    fmt_int(with_file.count)
                ),
                (
                    with_file.per_sec(),
                    format!(
                        "{} · put_file {} · commit {}{}",
                        with_file.rate(),
                        with_file.put.p50_p99(),
                        with_file.commit.p50_p99(),
                        with_file.written()
                    ),
                ),
                disk,
                floor_figure,
                Better::Floor,
                vec![format!("{bench} --file-versions {}", with_file.count), dd],
            ),
        );
    }
    rows
}
