//! Staging one artifact of one build: resolve its files upstream, stream each into the blob
//! store (archives first into a private temp dir, then through `intact_archive::extract`),
//! and make the whole set visible with one catalog commit. Until that commit nothing of it is
//! visible; on any failure the transaction is rolled back and the temp dir removed.
//!
//! Crash safety: the temp dir lives under `<data_dir>/staging/tmp`, which is emptied at
//! start-up. The catalog is the journal of open staging transactions: each is a transaction
//! row in a proxy repo, renewed by its worker ([`intact_store::WORKER_LEASE`]). On the
//! embedded catalog start-up rolls back every open transaction of the proxy repos (only this
//! process writes there, so what is open belongs to a dead one); on a shared catalog a dead
//! replica's transactions lapse with their lease.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use intact_archive::{ArchiveError, ArchiveKind, Limits};
use intact_core::{DigestHasher, FilePath, Manifest, Name, RepoName, Version};
use intact_store::{BeginRequest, OpenOutcome, PendingBlob, Store, VersionSpec};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use super::error::StageError;
use super::jobs::Job;
use super::listing::{glob_match, is_glob, split_pattern};
use super::upstream::Upstream;

/// How long a staging run waits for another holder of its version (a stager elsewhere, or a
/// transaction a crash left open, which lapses within `WORKER_LEASE`).
pub(crate) const LEASE: Duration = Duration::from_secs(120);

/// What one staging run produces: a configured artifact (patterns, maybe archives to unpack)
/// or a single raw file.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Artifact { files: Vec<String>, extract: bool },
    File(String),
}

/// The directories staging owns under the data dir.
#[derive(Debug, Clone)]
pub(crate) struct Dirs {
    /// Private temp space: downloads and extractions in progress.
    pub tmp: PathBuf,
}

impl Dirs {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            tmp: data_dir.join("staging").join("tmp"),
        }
    }

    /// Start-up: drops a dead process's temp files. Must run before any staging starts, and
    /// only in the process that owns the data dir (replicas sharing one leave it alone).
    pub fn recover(&self) -> io::Result<()> {
        match std::fs::remove_dir_all(&self.tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&self.tmp)?;
        // The journal directory of earlier releases: the catalog holds that now.
        let _ = std::fs::remove_dir_all(self.tmp.with_file_name("txns"));
        Ok(())
    }
}

/// Everything one staging run needs; owned, so the run can be detached from the request.
pub(crate) struct Run {
    /// What the run is, for errors ("staging of artifact a of repo/build").
    pub what: String,
    /// How long, from the run's start, its upstream transfers (listing, sizes, downloads) may
    /// take in all; local work (extraction, storing, the commit) is not cut short.
    pub fetch_deadline: Duration,
    pub store: Arc<Store>,
    pub repo: RepoName,
    pub name: Name,
    pub version: Version,
    pub item: Item,
    pub upstream: Arc<Upstream>,
    pub dirs: Dirs,
    pub limits: Limits,
    pub job: Arc<Job>,
}

/// Counts bytes read into the job's progress.
struct Counting<'a> {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    job: &'a Job,
    hasher: Option<DigestHasher>,
    read: u64,
}

impl AsyncRead for Counting<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = self.inner.as_mut().poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &res {
            let new = &buf.filled()[before..];
            let n = new.len() as u64;
            if let Some(h) = self.hasher.as_mut() {
                h.update(new);
            }
            self.read += n;
            self.job.add_done(n);
        }
        res
    }
}

/// A source file and the files of the version it produced.
struct Source {
    rel: String,
    size: u64,
    sha256: String,
    extracted: bool,
}

impl Run {
    fn full(&self, rel: &str) -> String {
        format!("{}/{rel}", self.name)
    }

    /// Runs `upstream_work` unless the run's deadline passes first. Dropping an unfinished
    /// transfer is safe: its bytes are in a temp file that goes with it.
    async fn before_deadline<T>(
        &self,
        deadline: tokio::time::Instant,
        upstream_work: impl std::future::Future<Output = Result<T, StageError>>,
    ) -> Result<T, StageError> {
        tokio::time::timeout_at(deadline, upstream_work)
            .await
            .map_err(|_| StageError::Deadline {
                what: self.what.clone(),
                seconds: self.fetch_deadline.as_secs(),
            })?
    }

    /// Runs the staging to its end: the committed manifest, or why not.
    pub async fn run(self) -> Result<Arc<Manifest>, StageError> {
        if let Some(m) = self.store.has_version(&self.repo, &self.name, &self.version).await? {
            return Ok(m);
        }
        let deadline = tokio::time::Instant::now() + self.fetch_deadline;
        self.job.set_phase("listing");
        let sources = self.resolve(deadline).await?;
        let mut total = Some(0u64);
        for rel in &sources {
            let size = self
                .before_deadline(deadline, self.upstream.size(&self.full(rel)))
                .await?;
            total = total.zip(size).map(|(a, b)| a + b);
        }
        self.job.set_total(total);
        tokio::fs::create_dir_all(&self.dirs.tmp)
            .await
            .map_err(|e| StageError::Internal(format!("creating {}: {e}", self.dirs.tmp.display())))?;
        let tmp_root = self.dirs.tmp.clone();
        let tmp = tokio::task::spawn_blocking(move || tempfile::Builder::new().prefix("stage-").tempdir_in(tmp_root))
            .await
            .map_err(|e| StageError::Internal(e.to_string()))?
            .map_err(|e| StageError::Internal(format!("creating a staging temp dir: {e}")))?;
        let result = self.fetch_all(&sources, tmp.path(), deadline).await;
        // Removing a big extracted tree is blocking work.
        let _ = tokio::task::spawn_blocking(move || drop(tmp)).await;
        let (files, provenance) = result?;
        self.job.set_phase("committing");
        let metadata = json!({
            "staged_from": self.upstream.show(self.name.as_str()),
            "sources": provenance.iter().map(|s| json!({
                "file": s.rel, "size": s.size, "sha256": s.sha256, "extracted": s.extracted,
            })).collect::<Vec<_>>(),
        });
        self.commit(metadata, files).await.map(Arc::new)
    }

    /// The artifact's files upstream, relative to the build directory, in pattern order.
    async fn resolve(&self, deadline: tokio::time::Instant) -> Result<Vec<String>, StageError> {
        let patterns = match &self.item {
            Item::File(f) => return Ok(vec![f.clone()]),
            Item::Artifact { files, .. } => files,
        };
        let mut listings: HashMap<String, Vec<String>> = HashMap::new();
        let mut out: Vec<String> = Vec::new();
        for pattern in patterns {
            if !is_glob(pattern) {
                if !out.contains(pattern) {
                    out.push(pattern.clone());
                }
                continue;
            }
            let (dir, last) = split_pattern(pattern);
            let list_dir = if dir.is_empty() {
                self.name.to_string()
            } else {
                self.full(dir)
            };
            if !listings.contains_key(&list_dir) {
                let names = self.before_deadline(deadline, self.upstream.list(&list_dir)).await?;
                listings.insert(list_dir.clone(), names);
            }
            let mut matched = 0;
            for n in listings.get(&list_dir).into_iter().flatten() {
                if !glob_match(last, n) {
                    continue;
                }
                let rel = if dir.is_empty() {
                    n.clone()
                } else {
                    format!("{dir}/{n}")
                };
                if let Err(e) = FilePath::parse(&rel) {
                    return Err(StageError::BadContent(format!(
                        "upstream file {} matches {pattern:?} but cannot be a file of a version: {}",
                        self.upstream.show(&self.full(&rel)),
                        e.rule
                    )));
                }
                matched += 1;
                if !out.contains(&rel) {
                    out.push(rel);
                }
            }
            if matched == 0 {
                return Err(StageError::not_found(format!(
                    "a file matching {pattern:?} in upstream directory {}/",
                    self.upstream.show(&list_dir)
                )));
            }
        }
        Ok(out)
    }

    async fn fetch_all(
        &self,
        sources: &[String],
        tmp: &Path,
        deadline: tokio::time::Instant,
    ) -> Result<(Vec<(FilePath, PendingBlob)>, Vec<Source>), StageError> {
        let extract = matches!(self.item, Item::Artifact { extract: true, .. });
        // Version path -> (pending bytes, the source file it came from).
        let mut files: BTreeMap<FilePath, (PendingBlob, String)> = BTreeMap::new();
        let mut provenance = Vec::new();
        for (i, rel) in sources.iter().enumerate() {
            let shown = self.upstream.show(&self.full(rel));
            let kind = if extract {
                ArchiveKind::from_file_name(rel)
            } else {
                None
            };
            self.job.set_phase("downloading");
            let dl = self
                .before_deadline(deadline, self.upstream.open(&self.full(rel)))
                .await?;
            let expected = dl.size;
            let mut body = Counting {
                inner: dl.body,
                job: &self.job,
                hasher: Some(DigestHasher::new()),
                read: 0,
            };
            match kind {
                None => {
                    let download = async {
                        self.store
                            .blobs()
                            .write(&mut body, None)
                            .await
                            .map_err(|e| download_error(&shown, e))
                    };
                    let pending = self.before_deadline(deadline, download).await?;
                    check_size(&shown, expected, pending.size)?;
                    provenance.push(Source {
                        rel: rel.clone(),
                        size: pending.size,
                        sha256: pending.digest.to_hex(),
                        extracted: false,
                    });
                    let path = FilePath::parse(rel).map_err(|e| StageError::BadContent(e.to_string()))?;
                    insert(&mut files, path, pending, rel)?;
                }
                Some(kind) => {
                    let archive = tmp.join(format!("archive-{i}"));
                    let size = self
                        .before_deadline(deadline, download_to(&mut body, &archive, &shown))
                        .await?;
                    check_size(&shown, expected, size)?;
                    let sha256 = body.hasher.take().map(|h| h.finish().to_hex()).unwrap_or_default();
                    provenance.push(Source {
                        rel: rel.clone(),
                        size,
                        sha256,
                        extracted: true,
                    });
                    self.job.set_phase("extracting");
                    let dest = tmp.join(format!("x-{i}"));
                    let extracted = extract_archive(archive.clone(), kind, dest.clone(), self.limits, &shown).await?;
                    let _ = tokio::fs::remove_file(&archive).await;
                    self.job.set_phase("storing");
                    for f in extracted {
                        let mut local = tokio::fs::File::open(&f.local)
                            .await
                            .map_err(|e| StageError::Internal(format!("reading extracted {}: {e}", f.path)))?;
                        let pending = self.store.blobs().write(&mut local, None).await?;
                        if pending.digest != f.sha256 || pending.size != f.size {
                            return Err(StageError::Internal(format!(
                                "extracted file {} changed on disk while it was stored",
                                f.path
                            )));
                        }
                        drop(local);
                        let _ = tokio::fs::remove_file(&f.local).await;
                        insert(&mut files, f.path, pending, rel)?;
                    }
                    let _ = tokio::fs::remove_dir_all(&dest).await;
                }
            }
        }
        let files = files.into_iter().map(|(p, (pending, _))| (p, pending)).collect();
        Ok((files, provenance))
    }

    /// Opens the staging transaction, stages every file and commits: the one visibility point.
    async fn commit(
        &self,
        metadata: serde_json::Value,
        files: Vec<(FilePath, PendingBlob)>,
    ) -> Result<Manifest, StageError> {
        let req = BeginRequest {
            repo: self.repo.clone(),
            name: self.name.clone(),
            version: VersionSpec::Exact(self.version.clone()),
            metadata,
            // Renewed while staging and committing (below): a replica dying mid-commit frees
            // the version within one short lease.
            lease: Some(intact_store::WORKER_LEASE),
            idempotency_key: None,
            // A transaction a dead replica left open lapses within its worker lease.
            wait: LEASE,
            base: None,
        };
        // Committed meanwhile by someone else (another process on a shared catalog): theirs.
        if let Some(m) = self.store.has_version(&self.repo, &self.name, &self.version).await? {
            return Ok((*m).clone());
        }
        let txn = match self.store.begin(req).await {
            Ok(OpenOutcome::Created(t) | OpenOutcome::Resumed(t)) => t,
            Ok(OpenOutcome::Committed(_, m)) => return Ok(m),
            Err(e) => return Err(e.into()),
        };
        let result = self
            .store
            .renewing(&txn.id, intact_store::WORKER_LEASE, async {
                for (path, pending) in files {
                    self.store.stage_pending(&txn.id, path, pending).await?;
                }
                self.store.commit(&txn.id).await
            })
            .await;
        if result.is_err() {
            let _ = self.store.abort(&txn.id).await;
        }
        match result {
            Ok(outcome) => Ok(outcome.into_manifest()),
            // Another stager committed first, from other bytes (a moving upstream): versions
            // never change, so the first commit is the artifact.
            Err(intact_store::Error::Conflict { .. }) => {
                match self.store.has_version(&self.repo, &self.name, &self.version).await? {
                    Some(m) => Ok((*m).clone()),
                    None => Err(StageError::Internal("version vanished after it was committed".into())),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn insert(
    files: &mut BTreeMap<FilePath, (PendingBlob, String)>,
    path: FilePath,
    pending: PendingBlob,
    source: &str,
) -> Result<(), StageError> {
    if let Some((_, other)) = files.get(&path) {
        return Err(StageError::BadContent(format!(
            "two upstream files produce the path {path}: {other} and {source}"
        )));
    }
    files.insert(path, (pending, source.to_owned()));
    Ok(())
}

fn check_size(shown: &str, expected: Option<u64>, got: u64) -> Result<(), StageError> {
    match expected {
        Some(want) if want != got => Err(StageError::Upstream(format!(
            "{shown}: expected {want} bytes, received {got}"
        ))),
        _ => Ok(()),
    }
}

fn download_error(shown: &str, e: intact_store::Error) -> StageError {
    match e {
        intact_store::Error::Body(io) => StageError::Upstream(format!("downloading {shown}: {io}")),
        other => other.into(),
    }
}

/// Streams `body` into a new file at `path` (never into memory). Returns the byte count.
async fn download_to(body: &mut (dyn AsyncRead + Send + Unpin), path: &Path, shown: &str) -> Result<u64, StageError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| StageError::Internal(format!("creating {}: {e}", path.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = body
            .read(&mut buf)
            .await
            .map_err(|e| StageError::Upstream(format!("downloading {shown}: {e}")))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .await
            .map_err(|e| StageError::Internal(format!("writing {}: {e}", path.display())))?;
        n_total += n as u64;
    }
    file.flush()
        .await
        .map_err(|e| StageError::Internal(format!("writing {}: {e}", path.display())))?;
    Ok(n_total)
}

/// Extracts in a blocking thread; a refused archive becomes `BadArchive` naming the file.
async fn extract_archive(
    archive: PathBuf,
    kind: ArchiveKind,
    dest: PathBuf,
    limits: Limits,
    shown: &str,
) -> Result<Vec<intact_archive::ExtractedFile>, StageError> {
    let res = tokio::task::spawn_blocking(move || {
        std::fs::create_dir(&dest)?;
        intact_archive::extract(&archive, kind, &dest, &limits, &mut |_| {})
    })
    .await
    .map_err(|e| StageError::Internal(format!("extracting {shown}: {e}")))?;
    res.map_err(|e| match e {
        ArchiveError::Io(io) => StageError::Internal(format!("extracting {shown}: {io}")),
        other => StageError::BadArchive {
            file: shown.to_owned(),
            message: other.to_string(),
        },
    })
}

impl Item {
    /// What a single-flight waiter is told it waits for.
    pub fn describe(&self, repo: &RepoName, name: &Name, version: &Version) -> String {
        match self {
            Item::Artifact { .. } => format!("staging of artifact {version} of {repo}/{name}"),
            Item::File(f) => format!("staging of file {f} of {repo}/{name}"),
        }
    }
}
