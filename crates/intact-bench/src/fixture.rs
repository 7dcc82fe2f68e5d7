//! The data measurements 2-4 read and write: a data dir holding `bench/small@1` (one 4 KiB
//! file), `bench/tiny@1` (200 B) and `bench/large@1` (one large file), published through the real Store API, and a
//! plain directory for nginx holding hard links to the very same blob files — so both servers
//! send the same bytes from the same inodes, with the same page cache.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use intact_core::{FilePath, Name, RepoName, Version};
use intact_store::{BeginRequest, OpenOutcome, Store, StoreConfig, VersionSpec};

use crate::{Ctx, Measurement, progress};

pub const SMALL_SIZE: u64 = 4096;
pub const SMALL_PATH: &str = "/api/v1/repos/files/bench/small/@v/1/f.bin";
/// The size of a Go `.info` file.
pub const TINY_SIZE: u64 = 200;
pub const TINY_PATH: &str = "/api/v1/repos/files/bench/tiny/@v/1/f.bin";
pub const LARGE_PATH: &str = "/api/v1/repos/files/bench/large/@v/1/f.bin";

pub struct Reads {
    /// intact's data dir.
    pub data: PathBuf,
    /// A second data dir holding the same small files, with access control on: one token
    /// (`read` on every repo) exists, whose secret is `token`.
    pub data_with_token: PathBuf,
    pub token: String,
    /// nginx's document root: `small.bin`, `large.bin`.
    pub www: PathBuf,
    pub large_size: u64,
    /// The file uploaded in measurement 4 (and written by `dd`), when that runs.
    pub upload_src: Option<PathBuf>,
}

/// Deterministic incompressible bytes (xorshift64), written in 1 MiB chunks.
pub fn write_pattern(path: &Path, seed: u64, len: u64) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut x = seed | 1;
    let mut left = len;
    let mut chunk = Vec::with_capacity(1 << 20);
    while left > 0 {
        chunk.clear();
        let n = left.min(1 << 20);
        while (chunk.len() as u64) < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.extend_from_slice(&x.to_le_bytes());
        }
        chunk.truncate(usize::try_from(n)?);
        out.write_all(&chunk)?;
        left -= n;
    }
    out.flush()?;
    out.get_ref().sync_all()?;
    Ok(())
}

/// Publishes `path` as the single file `f.bin` of `files/<name>@1` and returns its blob file.
async fn publish_file(store: &Store, name: &str, path: &Path) -> Result<PathBuf> {
    let opened = store
        .begin(BeginRequest {
            repo: RepoName::parse("files")?,
            name: Name::parse(name)?,
            version: VersionSpec::Exact(Version::parse("1")?),
            metadata: serde_json::json!({}),
            lease: None,
            idempotency_key: None,
            wait: std::time::Duration::ZERO,
            base: None,
        })
        .await?;
    let OpenOutcome::Created(txn) = opened else {
        bail!("files/{name}@1 was not new");
    };
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let entry = store
        .put_file(&txn.id, FilePath::parse("f.bin")?, &mut file, None, None)
        .await?;
    store.commit(&txn.id).await?;
    let read = store.read_file(&entry, None).await?;
    read.local_path
        .ok_or_else(|| anyhow!("the blob store keeps no local file for {name}"))
}

/// Makes a token that reads every repo with `intact token create` on `data_dir`, as an
/// operator makes the first one, and returns its secret (the last line of its output).
fn create_token(ctx: &Ctx, data_dir: &Path) -> Result<String> {
    let out = std::process::Command::new(&ctx.intact_bin)
        .args(["token", "create", "bench", "--scope", "*:read", "--data-dir"])
        .arg(data_dir)
        .output()
        .with_context(|| format!("running {} token create", ctx.intact_bin.display()))?;
    if !out.status.success() {
        bail!(
            "intact token create failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8(out.stdout).context("intact token create printed non-UTF-8")?;
    stdout
        .lines()
        .last()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("intact token create printed no secret"))
}

/// Links `blob` into the document root as `name` (copying when a link is impossible).
fn link_into(blob: &Path, www: &Path, name: &str) -> Result<()> {
    let target = www.join(name);
    if std::fs::hard_link(blob, &target).is_err() {
        std::fs::copy(blob, &target).with_context(|| format!("copying {} for nginx", blob.display()))?;
    }
    Ok(())
}

impl Reads {
    pub async fn prepare(ctx: &Ctx) -> Result<Self> {
        let root = ctx.work.join("reads");
        let data = root.join("data");
        let www = root.join("www");
        let src = root.join("src");
        for d in [&www, &src] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let large_size = ctx.args.large_mib << 20;
        let store = Store::open_local(&data, StoreConfig::default()).await?;

        progress("publishing files/bench/small@1 (4 KiB) and files/bench/tiny@1 (200 B) through the Store API");
        let small_src = src.join("small.bin");
        write_pattern(&small_src, 1, SMALL_SIZE)?;
        let blob = publish_file(&store, "bench/small", &small_src).await?;
        link_into(&blob, &www, "small.bin")?;
        let tiny_src = src.join("tiny.bin");
        write_pattern(&tiny_src, 4, TINY_SIZE)?;
        let blob = publish_file(&store, "bench/tiny", &tiny_src).await?;
        link_into(&blob, &www, "tiny.bin")?;

        let data_with_token = root.join("data-token");
        {
            let store = Store::open_local(&data_with_token, StoreConfig::default()).await?;
            publish_file(&store, "bench/small", &small_src).await?;
            publish_file(&store, "bench/tiny", &tiny_src).await?;
        }
        let token = create_token(ctx, &data_with_token)?;

        if ctx.wants(Measurement::Large) {
            progress(format!(
                "publishing files/bench/large@1 ({} MiB) through the Store API",
                ctx.args.large_mib
            ));
            let large_src = src.join("large.bin");
            write_pattern(&large_src, 2, large_size)?;
            let blob = publish_file(&store, "bench/large", &large_src).await?;
            link_into(&blob, &www, "large.bin")?;
            std::fs::remove_file(&large_src)?;
        }
        drop(store);

        let upload_src = if ctx.wants(Measurement::Upload) {
            let p = src.join("upload.bin");
            write_pattern(&p, 3, large_size)?;
            Some(p)
        } else {
            None
        };
        crate::settle().await;
        Ok(Self {
            data,
            data_with_token,
            token,
            www,
            large_size,
            upload_src,
        })
    }

    /// The nginx peer's prefix directory for one measurement (fresh per measurement, so its
    /// workers' peak memory belongs to that measurement).
    pub fn nginx_prefix(&self, label: &str) -> PathBuf {
        self.www.with_file_name(format!("nginx-{label}"))
    }
}
