//! `intact-bench`: measures intact beside a peer run in the same process tree, on the same disk,
//! and prints both figures and their ratio as a markdown table (also written to a file).
//!
//! Benchmarks measure; tests assert behaviour. Nothing here fails because a figure is slow —
//! only because an answer is wrong (a short listing, a wrong byte count, an error status), since
//! a fast wrong answer is not a figure.

mod coalesce;
mod crowd;
mod fixture;
mod go_workload;
mod large_file;
mod listing;
mod load;
mod memory;
mod nginx;
mod report;
mod scaleout;
mod server;
mod small_files;
mod stats;
mod upload;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;

/// One group of figures, selectable with `--only`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measurement {
    /// 1: publish rate and listing 100,000 versions of one name (peer: a GOPROXY-style directory).
    Listing,
    /// 2: 200 B and 4 KiB GETs under load at 16 and 128 connections, and with a token (peer: nginx).
    Small,
    /// 3 and 5: a large download, alone and by many clients at once (peer: nginx), and the
    /// server's peak memory meanwhile.
    Large,
    /// 4 and 5: a large upload and commit (peer: dd conv=fsync) and the server's peak memory.
    Upload,
    /// 6: a replica on PostgreSQL + Garage (S3), with and without its local cache (peer: the
    /// embedded engines). Not in the default set: it needs PostgreSQL running and the garage
    /// binary (`scripts/bench --only scaleout` provides both).
    Scaleout,
    /// 9: measurement 1 (publishing, listing, lookups) on a replica whose catalog is
    /// PostgreSQL. Not in the default set, for the same reason as `scaleout`.
    ScaleoutListing,
    /// 7: many clients at once on one cold Go module version through a slow upstream (peer:
    /// nginx proxy_cache with proxy_cache_lock).
    Coalesce,
    /// 8: `go mod download all` of a dependency graph with a fresh module cache, warm (peer:
    /// nginx serving the same GOPROXY directory, which is also intact's upstream).
    Gowork,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "intact-bench",
    about = "Benchmarks intact against peers measured in the same run (see docs/benchmarks.md)"
)]
pub struct Args {
    /// The intact binary to benchmark [default: `intact` beside this binary].
    #[arg(long)]
    pub intact_bin: Option<PathBuf>,
    /// Scratch directory: emptied first, removed at the end unless --keep-work.
    #[arg(long, default_value = "target/bench-work")]
    pub work_dir: PathBuf,
    /// Where the markdown summary is written (it is also printed to stdout).
    #[arg(long, default_value = "target/bench-results.md")]
    pub results: PathBuf,
    /// Which measurements to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "listing,small,large,upload,coalesce,gowork"
    )]
    pub only: Vec<Measurement>,
    /// Clients asking at once for one cold Go module version (measurement 7).
    #[arg(long, default_value_t = 100)]
    pub coalesce_clients: usize,
    /// Incompressible content in measurement 7's module zip, KiB.
    #[arg(long, default_value_t = 1024)]
    pub coalesce_zip_kib: usize,
    /// How long the upstream of measurement 7 holds back every answer, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub coalesce_delay_ms: u64,
    /// Versions of one name to publish and list.
    #[arg(long, default_value_t = 100_000)]
    pub versions: u64,
    /// Concurrent publishers while populating (16: the publishing target's setting, where
    /// group commit shows).
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// Versions published with one small file each (a second, slower publish figure; also
    /// measurement 6's publish rate).
    #[arg(long, default_value_t = 1_000)]
    pub file_versions: u64,
    /// Repetitions of each single-page listing request.
    #[arg(long, default_value_t = 200)]
    pub page_reps: usize,
    /// Repetitions of the full walk (and of the peer's full listing).
    #[arg(long, default_value_t = 20)]
    pub walk_reps: usize,
    /// Load generator threads (wrk -t).
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Load generator connections (wrk -c).
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// Seconds of load per target (wrk -d).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Size of the large file, MiB.
    #[arg(long, default_value_t = 256)]
    pub large_mib: u64,
    /// Clients downloading the large file at once (measurements 3b and 5c).
    #[arg(long, default_value_t = 100)]
    pub crowd_clients: usize,
    /// Timed runs of each large transfer (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Use the built-in load generator even when wrk is installed.
    #[arg(long)]
    pub no_wrk: bool,
    /// Keep the scratch directory (data dirs, the peer's files, server logs).
    #[arg(long)]
    pub keep_work: bool,
}

/// External programs the peers and clients need; `None` when not installed.
#[derive(Debug)]
pub struct Tools {
    pub wrk: Option<PathBuf>,
    pub nginx: Option<PathBuf>,
    pub curl: Option<PathBuf>,
    pub dd: Option<PathBuf>,
    pub go: Option<PathBuf>,
}

/// What every measurement gets: options, paths, one keep-alive HTTP client, notes for the report.
pub struct Ctx {
    pub args: Args,
    pub intact_bin: PathBuf,
    pub work: PathBuf,
    pub tools: Tools,
    pub client: reqwest::Client,
    notes: Mutex<Vec<String>>,
}

impl Ctx {
    pub fn wants(&self, m: Measurement) -> bool {
        self.args.only.contains(&m)
    }

    /// Something the reader of the results should know (a fallback, a caveat); echoed at once.
    pub fn note(&self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("note: {text}");
        if let Ok(mut notes) = self.notes.lock() {
            notes.push(text);
        }
    }

    fn notes(&self) -> Vec<String> {
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

/// Finds `name` on `PATH`, then in the sbin directories (nginx lives there).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn default_intact_bin() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating intact-bench")?;
    Ok(me.with_file_name("intact"))
}

/// Progress on stderr, so stdout carries only the table.
pub fn progress(text: impl AsRef<str>) {
    eprintln!("[bench] {}", text.as_ref());
}

/// Flushes every dirty page (`sync`), so writeback left over from preparing data is not
/// charged to whatever is timed next — on ext4 the first fsync after a large unsynced write
/// waits for that write's data too.
pub async fn settle() {
    let _ = tokio::process::Command::new("sync").status().await;
}

fn prepare_work_dir(work: &Path) -> Result<()> {
    if work.exists() {
        std::fs::remove_dir_all(work).with_context(|| format!("emptying {}", work.display()))?;
    }
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let started = Instant::now();
    let args = Args::parse();
    // reqwest is built without a default TLS provider; plain HTTP still needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let intact_bin = match &args.intact_bin {
        Some(p) => p.clone(),
        None => default_intact_bin()?,
    };
    if !intact_bin.is_file() {
        bail!(
            "no intact binary at {} (build it: cargo build --release -p intact)",
            intact_bin.display()
        );
    }
    let work = std::path::absolute(&args.work_dir).context("resolving --work-dir")?;
    prepare_work_dir(&work)?;
    let tools = Tools {
        wrk: if args.no_wrk { None } else { which("wrk") },
        nginx: which("nginx"),
        curl: which("curl"),
        dd: which("dd"),
        go: which("go"),
    };
    progress(format!("tools: {tools:?}"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .pool_max_idle_per_host(4)
        .build()
        .context("building the HTTP client")?;
    let ctx = Ctx {
        args,
        intact_bin,
        work,
        tools,
        client,
        notes: Mutex::new(Vec::new()),
    };

    let mut rows = Vec::new();
    if ctx.wants(Measurement::Listing) {
        rows.extend(listing::run(&ctx).await.context("measurement 1 (listing)")?);
    }
    let reads = [Measurement::Small, Measurement::Large, Measurement::Upload];
    if reads.iter().any(|m| ctx.wants(*m)) {
        let fx = fixture::Reads::prepare(&ctx)
            .await
            .context("preparing the read fixture")?;
        if ctx.wants(Measurement::Small) {
            rows.extend(
                small_files::run(&ctx, &fx)
                    .await
                    .context("measurement 2 (small files)")?,
            );
        }
        let download = if ctx.wants(Measurement::Large) {
            let (r, mem) = large_file::run(&ctx, &fx).await.context("measurement 3 (large file)")?;
            rows.extend(r);
            rows.extend(
                crowd::run(&ctx, &fx)
                    .await
                    .context("measurements 3b and 5c (many clients at once)")?,
            );
            Some(mem)
        } else {
            None
        };
        let upload = if ctx.wants(Measurement::Upload) {
            let (r, mem) = upload::run(&ctx, &fx).await.context("measurement 4 (upload)")?;
            rows.extend(r);
            Some(mem)
        } else {
            None
        };
        rows.extend(memory::rows(download.as_ref(), upload.as_ref()));
    }
    if ctx.wants(Measurement::Coalesce) {
        rows.extend(coalesce::run(&ctx).await.context("measurement 7 (cold coalescing)")?);
    }
    if ctx.wants(Measurement::Gowork) {
        rows.extend(
            go_workload::run(&ctx)
                .await
                .context("measurement 8 (the Go workload)")?,
        );
    }
    if ctx.wants(Measurement::Scaleout) {
        rows.extend(scaleout::run(&ctx).await.context("measurement 6 (scale-out engines)")?);
    }
    if ctx.wants(Measurement::ScaleoutListing) {
        rows.extend(
            listing::run_shared(&ctx)
                .await
                .context("measurement 9 (listing on PostgreSQL)")?,
        );
    }

    let took = started.elapsed();
    let markdown = report::render(&ctx, &rows, &ctx.notes(), took);
    println!("{markdown}");
    if let Some(parent) = ctx.args.results.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&ctx.args.results, &markdown).with_context(|| format!("writing {}", ctx.args.results.display()))?;
    progress(format!(
        "wrote {} ({} rows, run took {})",
        ctx.args.results.display(),
        rows.len(),
        stats::fmt_dur(took)
    ));
    if ctx.args.keep_work {
        progress(format!("kept {}", ctx.work.display()));
    } else if let Err(e) = std::fs::remove_dir_all(&ctx.work) {
        progress(format!("could not remove {}: {e}", ctx.work.display()));
    }
    Ok(())
}
