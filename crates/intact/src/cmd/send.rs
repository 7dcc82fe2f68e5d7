//! Sending a publish's files into its transaction: several at once (`--jobs`), each either
//! added by the digest of bytes the server holds, streamed in one request, or (from
//! `--resumable-from` bytes on) sent as a resumable upload that continues where a broken
//! connection or a server error left it. Progress: one overall bar plus a bar per file in
//! flight on a terminal, plain lines otherwise, nothing extra under `--json`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use intact_core::{Digest, DigestHasher, FileEntry};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncSeekExt;
use tokio_util::io::ReaderStream;

use crate::client::{Client, encode_path};

/// How a resumable upload's bytes are sent again after a failure: at most this many times
/// in a row without progress, waiting longer each time.
const RESUME_ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// What a publish sent, and what it added by digest instead.
#[derive(Default)]
pub struct Sent {
    pub uploaded_files: u64,
    pub uploaded_bytes: u64,
    pub reused_files: u64,
    pub reused_bytes: u64,
}

/// One file to send.
pub struct Job<'a> {
    pub path: &'a str,
    pub local: &'a Path,
    pub entry: &'a FileEntry,
    /// Unchanged since it was hashed: `entry` describes its bytes.
    pub unchanged: bool,
}

/// How to send.
pub struct Options {
    pub jobs: usize,
    /// Files of at least this size go through a resumable upload.
    pub resumable_from: u64,
    pub json: bool,
}

/// Where the progress goes.
#[derive(Clone)]
struct Progress {
    bars: Option<Bars>,
    json: bool,
}

#[derive(Clone)]
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    style: ProgressStyle,
}

impl Progress {
    fn new(json: bool, total: u64, files: usize) -> Self {
        let bars = super::bars(json).then(|| {
            let multi = MultiProgress::new();
            let overall = multi.add(ProgressBar::new(total));
            overall.set_style(
                ProgressStyle::with_template("{msg:30!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            overall.set_message(format!("total ({})", super::count(files as u64, "file")));
            let style = ProgressStyle::with_template("  {msg:28!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            Bars { multi, overall, style }
        });
        Self { bars, json }
    }

    /// A bar for a file being sent (none off a terminal).
    fn file(&self, path: &str, size: u64) -> Option<ProgressBar> {
        self.bars.as_ref().map(|b| {
            let bar = b.multi.add(ProgressBar::new(size));
            bar.set_style(b.style.clone());
            bar.set_message(path.to_owned());
            bar
        })
    }

    fn sent(&self, bar: Option<&ProgressBar>, n: u64) {
        if let Some(bar) = bar {
            bar.inc(n);
        }
        if let Some(b) = &self.bars {
            b.overall.inc(n);
        }
    }

    /// Bytes counted as sent that the server did not keep (a resumed upload sends them again).
    fn unsent(&self, bar: Option<&ProgressBar>, n: u64) {
        if let Some(bar) = bar {
            bar.dec(n);
        }
        if let Some(b) = &self.bars {
            b.overall.dec(n);
        }
    }

    /// A line for a person: above the bars on a terminal, on stderr otherwise, never under
    /// `--json`.
    fn line(&self, text: String) {
        match &self.bars {
            Some(b) => {
                let _ = b.multi.println(text);
            }
            None if !self.json => eprintln!("{text}"),
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bars {
            b.overall.finish_and_clear();
        }
    }
}

/// What sending one file came to.
enum Outcome {
    Uploaded(u64),
    Reused(u64),
}

/// Sends every job into transaction `id`, `options.jobs` at a time. Bytes the server holds
/// (not in `missing`) are added by digest; of several files with the same new bytes, one is
/// uploaded and the others are added by digest once it is stored. The first failure stops
/// the rest.
pub async fn send_all(
    client: &Client,
    id: &str,
    jobs: &[Job<'_>],
    missing: &HashSet<Digest>,
    options: &Options,
) -> anyhow::Result<Sent> {
    let total = jobs.iter().map(|j| j.entry.size).sum();
    let progress = Progress::new(options.json, total, jobs.len());
    // First round: everything but the second and later files of new bytes.
    let mut first = Vec::new();
    let mut after_upload = Vec::new();
    let mut uploading: HashSet<Digest> = HashSet::new();
    for job in jobs {
        if !job.unchanged {
            first.push((job, false));
        } else if !missing.contains(&job.entry.sha256) {
            first.push((job, true));
        } else if uploading.insert(job.entry.sha256) {
            first.push((job, false));
        } else {
            after_upload.push((job, true));
        }
    }
    let sent = Arc::new(Mutex::new(Sent::default()));
    for round in [first, after_upload] {
        futures::stream::iter(round)
            .map(|(job, by_digest)| {
                let (progress, sent) = (progress.clone(), sent.clone());
                async move {
                    let outcome = send_one(client, id, job, by_digest, options, &progress).await?;
                    let mut sent = sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match outcome {
                        Outcome::Uploaded(n) => {
                            sent.uploaded_files += 1;
                            sent.uploaded_bytes += n;
                        }
                        Outcome::Reused(n) => {
                            sent.reused_files += 1;
                            sent.reused_bytes += n;
                        }
                    }
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(options.jobs.max(1))
            .try_collect::<Vec<()>>()
            .await?;
    }
    progress.finish();
    let sent = std::mem::take(&mut *sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    Ok(sent)
}

async fn send_one(
    client: &Client,
    id: &str,
    job: &Job<'_>,
    by_digest: bool,
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<Outcome> {
    let Job { path, local, entry, .. } = *job;
    if by_digest && add_by_digest(client, id, path, entry, progress).await? {
        progress.sent(None, entry.size);
        progress.line(format!(
            "{path}: already stored (sha256 {}), added by digest",
            entry.sha256
        ));
        return Ok(Outcome::Reused(entry.size));
    }
    let size = tokio::fs::metadata(local)
        .await
        .with_context(|| format!("reading {}", local.display()))?
        .len();
    let bar = progress.file(path, size);
    let staged = if size >= options.resumable_from {
        // The server checks the whole file against the digest it was hashed to, when it
        // has not changed since; a changed file is hashed again first.
        let sha256 = match job.unchanged {
            true => entry.sha256,
            false => hash_file(local.to_owned()).await?,
        };
        upload_resumable(client, id, path, local, size, sha256, bar.as_ref(), progress).await?
    } else {
        upload_whole(client, id, path, local, size, bar.as_ref(), progress).await?
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    progress.line(format!("uploaded {path} ({}, sha256 {staged})", super::size(size)));
    Ok(Outcome::Uploaded(size))
}

/// Adds `path` by the digest of bytes the server holds; `false` when it turns out not to
/// hold them (swept since it said so): the caller uploads them.
async fn add_by_digest(
    client: &Client,
    id: &str,
    path: &str,
    entry: &FileEntry,
    progress: &Progress,
) -> anyhow::Result<bool> {
    let url = client.url(&format!("/api/v1/transactions/{id}/files/{}", encode_path(path)));
    let resp = client
        .http
        .put(url)
        .header("x-blob-sha256", entry.sha256.to_hex())
        .header(reqwest::header::CONTENT_LENGTH, 0)
        .send()
        .await
        .with_context(|| format!("adding {path} by digest"))?;
    if resp.status() == StatusCode::CONFLICT {
        let body: Value = resp.json().await.unwrap_or_default();
        if body["error"] == "blob_not_stored" {
            return Ok(false);
        }
        bail!(
            "adding {path} by digest: {}",
            body["message"].as_str().unwrap_or("refused")
        );
    }
    if resp.status().is_server_error() {
        // The stored copy may be damaged (an upload heals it) or the server busy: upload.
        progress.line(format!(
            "{path}: the server could not add it by digest ({}); uploading it",
            resp.status()
        ));
        return Ok(false);
    }
    let staged: Value = Client::check(resp)
        .await
        .with_context(|| format!("adding {path} by digest"))?
        .json()
        .await?;
    if staged["sha256"].as_str() != Some(entry.sha256.to_hex().as_str()) || staged["size"].as_u64() != Some(entry.size)
    {
        bail!(
            "{path}: the server staged {staged}, not the file's {} bytes with sha256 {}",
            entry.size,
            entry.sha256
        );
    }
    Ok(true)
}

/// A local file's bytes from `from` on, as a request body, counted into the progress and
/// hashed into `hasher` when given.
async fn body_from(
    local: &Path,
    from: u64,
    bar: Option<&ProgressBar>,
    progress: &Progress,
    hasher: Option<Arc<Mutex<DigestHasher>>>,
) -> anyhow::Result<reqwest::Body> {
    let mut file = tokio::fs::File::open(local)
        .await
        .with_context(|| format!("opening {}", local.display()))?;
    file.seek(std::io::SeekFrom::Start(from))
        .await
        .with_context(|| format!("reading {}", local.display()))?;
    let (bar, progress) = (bar.cloned(), progress.clone());
    let stream = ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| {
        if let Ok(c) = &chunk {
            if let Some(h) = &hasher
                && let Ok(mut h) = h.lock()
            {
                h.update(c);
            }
            progress.sent(bar.as_ref(), c.len() as u64);
        }
        chunk
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

/// Streams the whole file in one request (`PUT .../files/{path}`); the sha256 the server
/// staged, checked against what was read while sending.
async fn upload_whole(
    client: &Client,
    id: &str,
    path: &str,
    local: &Path,
    size: u64,
    bar: Option<&ProgressBar>,
    progress: &Progress,
) -> anyhow::Result<String> {
    let hasher = Arc::new(Mutex::new(DigestHasher::new()));
    let body = body_from(local, 0, bar, progress, Some(hasher.clone())).await?;
    let url = client.url(&format!("/api/v1/transactions/{id}/files/{}", encode_path(path)));
    let resp = client
        .http
        .put(url)
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(body)
        .send()
        .await
        .with_context(|| format!("uploading {path}"))?;
    let staged: Value = Client::check(resp)
        .await
        .with_context(|| format!("uploading {path}"))?
        .json()
        .await?;
    let local_digest = hasher.lock().map(|h| h.clone().finish().to_hex()).unwrap_or_default();
    let remote = staged["sha256"].as_str().unwrap_or_default();
    if remote != local_digest {
        bail!("{path}: server stored sha256 {remote}, but the file hashes to {local_digest}");
    }
    Ok(local_digest)
}

/// How one attempt at sending a resumable upload's bytes ended.
enum Attempt {
    /// The server holds this many bytes now.
    At(u64),
    /// Worth trying again (a broken connection, a 5xx, a timeout).
    Retry(anyhow::Error),
}

/// Sends the file as a resumable upload: opened with its size and sha256, its bytes sent
/// from the offset the server holds, again from wherever the server says after a failure,
/// then completed (the server hashes what it holds and stages it).
#[allow(clippy::too_many_arguments)]
async fn upload_resumable(
    client: &Client,
    id: &str,
    path: &str,
    local: &Path,
    size: u64,
    sha256: Digest,
    bar: Option<&ProgressBar>,
    progress: &Progress,
) -> anyhow::Result<String> {
    let (_, session) = client
        .post_json(
            &format!("/api/v1/transactions/{id}/uploads"),
            &json!({"path": path, "size": size, "sha256": sha256.to_hex()}),
        )
        .await
        .with_context(|| format!("starting the upload of {path}"))?;
    let upload = session["upload"]
        .as_str()
        .context("the server answered no upload id")?
        .to_owned();
    let url = client.url(&format!("/api/v1/transactions/{id}/uploads/{upload}"));
    let (mut offset, mut failures) = (0u64, 0u32);
    while offset < size {
        let sent_from = offset;
        match send_piece(client, &url, local, offset, size, bar, progress).await? {
            Attempt::At(now) => {
                // Only tries in a row that got nowhere count against the limit.
                failures = if now > sent_from { 0 } else { failures + 1 };
                offset = now;
            }
            Attempt::Retry(e) => {
                failures += 1;
                if failures > RESUME_ATTEMPTS {
                    return Err(e.context(format!("uploading {path}: giving up after {RESUME_ATTEMPTS} retries")));
                }
                let wait = FIRST_BACKOFF
                    .saturating_mul(1 << (failures - 1).min(8))
                    .min(MAX_BACKOFF);
                tokio::time::sleep(wait).await;
                // Whatever this attempt counted beyond what the server holds goes again.
                let sent_to = bar.map_or(offset, ProgressBar::position);
                match upload_offset(client, &url).await {
                    Ok(held) => {
                        if held > sent_from {
                            failures = 0;
                        }
                        progress.unsent(bar, sent_to.saturating_sub(held));
                        if let Some(bar) = bar {
                            bar.set_position(held);
                        }
                        progress.line(format!(
                            "{path}: {e:#}; resuming at byte {held} of {size} (attempt {})",
                            failures + 1
                        ));
                        offset = held;
                    }
                    Err(asking) => {
                        progress.line(format!("{path}: {e:#}; asking where to resume failed too: {asking:#}"));
                    }
                }
                continue;
            }
        }
        if failures > RESUME_ATTEMPTS {
            bail!("uploading {path}: the server keeps no more of it after {RESUME_ATTEMPTS} tries");
        }
    }
    let resp = client
        .http
        .put(&url)
        .header("x-checksum-sha256", sha256.to_hex())
        .header(reqwest::header::CONTENT_LENGTH, 0)
        .send()
        .await
        .with_context(|| format!("completing the upload of {path}"))?;
    let staged: Value = Client::check(resp)
        .await
        .with_context(|| format!("completing the upload of {path}"))?
        .json()
        .await?;
    let remote = staged["sha256"].as_str().unwrap_or_default();
    if remote != sha256.to_hex() || staged["size"].as_u64() != Some(size) {
        bail!("{path}: server staged {staged}, but the file has {size} bytes with sha256 {sha256}");
    }
    Ok(sha256.to_hex())
}

/// One `PATCH` of the file's bytes from `offset` to its end.
async fn send_piece(
    client: &Client,
    url: &str,
    local: &Path,
    offset: u64,
    size: u64,
    bar: Option<&ProgressBar>,
    progress: &Progress,
) -> anyhow::Result<Attempt> {
    let body = body_from(local, offset, bar, progress, None).await?;
    let sent = client
        .http
        .patch(url)
        .header(reqwest::header::CONTENT_LENGTH, size - offset)
        .header(
            reqwest::header::CONTENT_RANGE,
            format!("bytes {offset}-{}/{size}", size - 1),
        )
        .body(body)
        .send()
        .await;
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) => return Ok(Attempt::Retry(anyhow::Error::new(e).context("the connection broke"))),
    };
    let status = resp.status();
    if status == StatusCode::ACCEPTED || status == StatusCode::RANGE_NOT_SATISFIABLE {
        if let Some(held) = offset_of(resp.headers()) {
            if status == StatusCode::RANGE_NOT_SATISFIABLE {
                // Another request moved it on, or bytes were lost: send from where it is.
                let sent_to = bar.map_or(offset, ProgressBar::position);
                progress.unsent(bar, sent_to.saturating_sub(held));
                if let Some(bar) = bar {
                    bar.set_position(held);
                }
            }
            return Ok(Attempt::At(held));
        }
        bail!("the server answered {status} without an Upload-Offset");
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        let message = Client::check(resp)
            .await
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("{status}"));
        return Ok(Attempt::Retry(message));
    }
    Client::check(resp).await?;
    bail!("the server answered {status} to a piece of an upload")
}

fn offset_of(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers.get("upload-offset")?.to_str().ok()?.trim().parse().ok()
}

/// The offset the server holds for an upload (`HEAD`).
async fn upload_offset(client: &Client, url: &str) -> anyhow::Result<u64> {
    let resp = client
        .http
        .head(url)
        .send()
        .await
        .context("asking the upload's offset")?;
    if !resp.status().is_success() {
        bail!("asking the upload's offset: the server answered {}", resp.status());
    }
    offset_of(resp.headers()).context("the server answered no Upload-Offset")
}

/// A file's sha256, read again (it changed since it was first hashed).
async fn hash_file(local: PathBuf) -> anyhow::Result<Digest> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<Digest> {
        use std::io::Read;
        let mut f = std::fs::File::open(&local).with_context(|| format!("reading {}", local.display()))?;
        let mut h = DigestHasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f
                .read(&mut buf)
                .with_context(|| format!("reading {}", local.display()))?;
            if n == 0 {
                return Ok(h.finish());
            }
            h.update(&buf[..n]);
        }
    })
    .await?
}
