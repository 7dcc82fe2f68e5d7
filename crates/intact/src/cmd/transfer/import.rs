//! `intact import IN.tar [--repo NAME]`: commits each version of an export archive into a
//! running server, one transaction per version (docs/transfer.md). The archive is indexed
//! first (a cut-short one is refused before anything is imported); then each version is
//! skipped when already present with the same content, reported as a conflict when present
//! with other content, or opened as an import transaction, its files streamed from the
//! archive (each checked against its size and sha256 by this command and by the server before
//! it is staged) and committed. A version with any problem is rolled back alone.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use intact_core::{ContentDiff, Digest, DigestHasher, FileEntry};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::archive::{
    ArchivedVersion, BLOB_PREFIX, FORMAT, FORMAT_VERSION, HEADER_ENTRY, Header, TRAILER_ENTRY, Trailer, VERSION_PREFIX,
    event_range,
};
use crate::ServerArgs;
use crate::client::{Client, encode_path};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// The archive `intact export` wrote (a file: it is read twice, once to index it).
    archive: PathBuf,
    /// Import into this repo instead of the one the archive was exported from (a hosted or
    /// proxy repo of the same format).
    #[arg(long)]
    repo: Option<String>,
    /// Print the result (counts, and each version's outcome) as one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// Where a blob's bytes are in the archive file.
#[derive(Clone, Copy)]
struct BlobAt {
    offset: u64,
    size: u64,
}

/// What the archive holds, read without its blobs' bytes.
struct Index {
    header: Header,
    versions: Vec<ArchivedVersion>,
    blobs: HashMap<Digest, BlobAt>,
    trailer: Trailer,
}

/// JSON entries larger than this are not an export's (a manifest of 100,000 files is ~20 MiB).
const MAX_JSON_ENTRY: u64 = 256 << 20;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Outcome {
    Imported,
    AlreadyPresent,
    Conflict { message: String },
    Failed { message: String },
}

#[derive(Serialize)]
struct VersionOutcome {
    name: String,
    version: String,
    #[serde(flatten)]
    outcome: Outcome,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.archive.as_os_str() == "-" {
        bail!("import reads the archive from a file (it is indexed first, then read again): save it to a file first");
    }
    let path = args.archive.clone();
    let index = tokio::task::spawn_blocking(move || read_index(&path))
        .await
        .context("indexing the archive stopped")??;
    let repo = args.repo.clone().unwrap_or_else(|| index.header.repo.clone());
    let client = Client::new(&args.server)?;
    let target = check_target(&client, &repo, &index.header).await?;
    eprintln!(
        "importing {} ({}) into repo {repo}: exported from repo {} of {} ({})",
        super::super::count(index.versions.len() as u64, "version"),
        super::super::count(index.blobs.len() as u64, "blob"),
        index.header.repo,
        index.header.server,
        event_range(index.header.since, index.header.until)
    );
    let bar = super::super::bars(args.json).then(|| {
        let b = ProgressBar::new(index.versions.len() as u64);
        b.set_style(
            ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} versions")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_message("importing");
        b
    });
    let importer = Importer {
        client: &client,
        repo: &repo,
        archive: &args.archive,
        blobs: &index.blobs,
        // A read of a missing version in a staging repo stages it from the upstream (which an
        // air-gapped site cannot reach): there, presence is judged by the commit instead.
        look_first: !(target.kind == "proxy" && target.format == "generic"),
    };
    let mut outcomes = Vec::with_capacity(index.versions.len());
    for v in &index.versions {
        let outcome = importer.import(v).await.with_context(|| {
            format!(
                "the import stopped at {repo}/{}@{} after {} of {} (each committed one is whole and stays; run the import again to finish)",
                v.name,
                v.version,
                super::super::count(outcomes.len() as u64, "version"),
                index.versions.len()
            )
        })?;
        match &outcome {
            Outcome::Conflict { message } | Outcome::Failed { message } => {
                let line = format!("{repo}/{}@{}: {message}", v.name, v.version);
                match &bar {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
            Outcome::Imported | Outcome::AlreadyPresent => {}
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
        outcomes.push(VersionOutcome {
            name: v.name.clone(),
            version: v.version.clone(),
            outcome,
        });
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report(&args, &repo, &index, &outcomes)
}

fn report(args: &Args, repo: &str, index: &Index, outcomes: &[VersionOutcome]) -> anyhow::Result<ExitCode> {
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(&o.outcome)).count() as u64;
    let imported = count(|o| matches!(o, Outcome::Imported));
    let present = count(|o| matches!(o, Outcome::AlreadyPresent));
    let conflicts = count(|o| matches!(o, Outcome::Conflict { .. }));
    let failed = count(|o| matches!(o, Outcome::Failed { .. }));
    let ok = conflicts == 0 && failed == 0;
    if args.json {
        super::super::print_json(&json!({
            "ok": ok,
            "archive": args.archive.display().to_string(),
            "repo": repo,
            "source_repo": index.header.repo,
            "since": index.header.since,
            "until": index.header.until,
            "imported": imported,
            "already_present": present,
            "conflicts": conflicts,
            "failed": failed,
            "skipped_at_export": index.trailer.skipped,
            "versions": outcomes,
        }))?;
    } else {
        for s in &index.trailer.skipped {
            eprintln!(
                "note: {}@{} was not in the archive (the export could not read it: {})",
                s.name, s.version, s.reason
            );
        }
        println!(
            "{} into repo {repo}: {imported} imported, {present} already present, {conflicts} {}, {failed} failed (archive of repo {}, {})",
            super::super::count(outcomes.len() as u64, "version"),
            if conflicts == 1 { "conflict" } else { "conflicts" },
            index.header.repo,
            event_range(index.header.since, index.header.until)
        );
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The target repo's kind and format.
struct Target {
    kind: String,
    format: String,
}

/// The target must take imports of what the archive holds: a hosted or proxy repo (the server
/// checks that too) of the archive's format, so Go modules never land in a generic repo.
async fn check_target(client: &Client, repo: &str, header: &Header) -> anyhow::Result<Target> {
    let info = client
        .get_json(&format!("/api/v1/repos/{}", encode_path(repo)))
        .await
        .with_context(|| format!("looking up repo {repo}"))?;
    if info["kind"].as_str() == Some("group") {
        bail!("repo {repo} is a group: import into one of its hosted or proxy members (--repo NAME)");
    }
    let format = info["format"].as_str().unwrap_or("generic");
    if format != header.repo_format {
        bail!(
            "the archive holds a {} repo ({}), but repo {repo} is a {format} repo: import into a {} repo (--repo NAME)",
            header.repo_format,
            header.repo,
            header.repo_format
        );
    }
    Ok(Target {
        kind: info["kind"].as_str().unwrap_or_default().to_owned(),
        format: format.to_owned(),
    })
}

/// Reads every entry header of the archive (skipping over blob bytes), its header, versions
/// and trailer. Refuses anything that is not a whole export archive.
fn read_index(path: &Path) -> anyhow::Result<Index> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let not_ours = |why: String| anyhow::anyhow!("{} is not an intact export archive: {why}", path.display());
    let mut header: Option<Header> = None;
    let mut trailer: Option<Trailer> = None;
    let mut versions = Vec::new();
    let mut blobs = HashMap::new();
    for entry in archive
        .entries_with_seek()
        .with_context(|| format!("reading {}", path.display()))?
    {
        let mut entry = entry.with_context(|| format!("reading {}", path.display()))?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(not_ours(format!("entry {name} is not a regular file")));
        }
        if trailer.is_some() {
            return Err(not_ours(format!("entry {name} follows the end record {TRAILER_ENTRY}")));
        }
        if header.is_none() && name != HEADER_ENTRY {
            return Err(not_ours(format!("its first entry is {name}, not {HEADER_ENTRY}")));
        }
        if name == HEADER_ENTRY {
            if header.is_some() {
                return Err(not_ours(format!("a second {HEADER_ENTRY}")));
            }
            let h: Header = read_json(&mut entry, &name)?;
            if h.format != FORMAT {
                return Err(not_ours(format!("its header says format {:?}", h.format)));
            }
            if h.format_version > FORMAT_VERSION {
                bail!(
                    "{} is an export archive of format version {}; this intact reads up to {FORMAT_VERSION}: import it with a newer intact",
                    path.display(),
                    h.format_version
                );
            }
            header = Some(h);
        } else if name == TRAILER_ENTRY {
            trailer = Some(read_json(&mut entry, &name)?);
        } else if let Some(hex) = name.strip_prefix(BLOB_PREFIX) {
            let digest = Digest::parse(hex).map_err(|e| not_ours(format!("entry {name}: {e}")))?;
            let at = BlobAt {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            if blobs.insert(digest, at).is_some() {
                return Err(not_ours(format!("blob {hex} is in it twice")));
            }
        } else if name.starts_with(VERSION_PREFIX) {
            versions.push(read_json::<ArchivedVersion>(&mut entry, &name)?);
        } else {
            return Err(not_ours(format!("unexpected entry {name}")));
        }
    }
    let header = header.ok_or_else(|| not_ours("it is empty".to_owned()))?;
    let Some(trailer) = trailer else {
        bail!(
            "{} is incomplete: it ends before its end record ({TRAILER_ENTRY}), so it was cut short (a failed export to stdout, or a partial copy); nothing was imported",
            path.display()
        );
    };
    if trailer.versions != versions.len() as u64 || trailer.blobs != blobs.len() as u64 {
        bail!(
            "{} is damaged: its end record counts {} versions and {} blobs, it holds {} and {}; nothing was imported",
            path.display(),
            trailer.versions,
            trailer.blobs,
            versions.len(),
            blobs.len()
        );
    }
    Ok(Index {
        header,
        versions,
        blobs,
        trailer,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(entry: &mut impl Read, name: &str) -> anyhow::Result<T> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_JSON_ENTRY + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {name}"))?;
    if bytes.len() as u64 > MAX_JSON_ENTRY {
        bail!("entry {name} is larger than any export writes");
    }
    serde_json::from_slice(&bytes).with_context(|| format!("entry {name} of the archive"))
}

/// A manifest as the server answers it, as far as comparing content needs.
#[derive(Deserialize)]
struct Existing {
    files: Vec<FileEntry>,
    metadata: Value,
}

/// A problem of one version (it is rolled back and reported; the others go on), as opposed
/// to an error that stops the import (the server unreachable or failing).
struct VersionProblem(String);

struct Importer<'a> {
    client: &'a Client,
    repo: &'a str,
    archive: &'a Path,
    blobs: &'a HashMap<Digest, BlobAt>,
    /// Whether to look the version up before uploading anything (else the commit compares).
    look_first: bool,
}

impl Importer<'_> {
    async fn import(&self, v: &ArchivedVersion) -> anyhow::Result<Outcome> {
        // Without `look_first`, the commit judges: the same content answers "already
        // present", other content is a conflict, as here.
        if self.look_first
            && let Some(existing) = self.existing(v).await?
        {
            let diff = ContentDiff::between(&existing.files, &existing.metadata, &v.files, &v.metadata);
            return Ok(if diff.is_empty() {
                Outcome::AlreadyPresent
            } else {
                Outcome::Conflict {
                    message: format!(
                        "already present with other content ({diff}); versions never change, so it was left as it is"
                    ),
                }
            });
        }
        // Every file's bytes must be in the archive before anything is opened.
        for f in &v.files {
            match self.blobs.get(&f.sha256) {
                None => {
                    return Ok(Outcome::Failed {
                        message: format!("{}: blob {} is not in the archive", f.path, f.sha256.to_hex()),
                    });
                }
                Some(at) if at.size != f.size => {
                    return Ok(Outcome::Failed {
                        message: format!(
                            "{}: the archive's blob {} has {} bytes, the manifest says {}",
                            f.path,
                            f.sha256.to_hex(),
                            at.size,
                            f.size
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        let id = match self.open(v).await? {
            Ok(id) => id,
            Err(VersionProblem(message)) => return Ok(Outcome::Failed { message }),
        };
        let result = self.fill_and_commit(&id, v).await;
        if !matches!(result, Ok(Outcome::Imported | Outcome::AlreadyPresent)) {
            // Nothing of it may stay staged; a transaction that already ended answers 409,
            // which is fine too.
            let _ = self
                .client
                .http
                .delete(self.client.url(&format!("/api/v1/transactions/{id}")))
                .send()
                .await;
        }
        result
    }

    fn version_path(&self, v: &ArchivedVersion) -> String {
        format!(
            "/api/v1/repos/{}/{}/@v/{}",
            encode_path(self.repo),
            encode_path(&v.name),
            encode_path(&v.version)
        )
    }

    async fn existing(&self, v: &ArchivedVersion) -> anyhow::Result<Option<Existing>> {
        let url = self.client.url(&self.version_path(v));
        let resp = self
            .client
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let existing = Client::check(resp)
            .await
            .with_context(|| format!("looking up {}/{}@{}", self.repo, v.name, v.version))?
            .json()
            .await
            .with_context(|| format!("reading the manifest of {}/{}@{}", self.repo, v.name, v.version))?;
        Ok(Some(existing))
    }

    /// Opens the import transaction; a refusal of this version (4xx) is a problem of it.
    async fn open(&self, v: &ArchivedVersion) -> anyhow::Result<Result<String, VersionProblem>> {
        let body = json!({
            "name": v.name,
            "version": v.version,
            "metadata": v.metadata,
            "import": true,
            // Another importer (or the proxy itself) may hold the version for a moment.
            "wait_seconds": 60,
        });
        let url = self
            .client
            .url(&format!("/api/v1/repos/{}/transactions", encode_path(self.repo)));
        let resp = self
            .client
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        if resp.status() == StatusCode::FORBIDDEN {
            // The same for every version: stop here, saying why.
            bail!("the server refused the import: {}", refusal(resp).await);
        }
        if resp.status().is_client_error() {
            return Ok(Err(VersionProblem(refusal(resp).await)));
        }
        let txn: Value = Client::check(resp)
            .await
            .context("opening an import transaction")?
            .json()
            .await?;
        let id = txn["id"].as_str().context("the server returned no transaction id")?;
        Ok(Ok(id.to_owned()))
    }

    async fn fill_and_commit(&self, id: &str, v: &ArchivedVersion) -> anyhow::Result<Outcome> {
        for f in &v.files {
            if let Err(VersionProblem(message)) = self.upload(id, f).await? {
                return Ok(Outcome::Failed { message });
            }
        }
        let url = self.client.url(&format!("/api/v1/transactions/{id}/commit"));
        let resp = self
            .client
            .http
            .post(&url)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        Ok(match resp.status() {
            StatusCode::CREATED => Outcome::Imported,
            StatusCode::OK => Outcome::AlreadyPresent,
            StatusCode::CONFLICT => Outcome::Conflict {
                message: refusal(resp).await,
            },
            s if s.is_client_error() => Outcome::Failed {
                message: refusal(resp).await,
            },
            _ => {
                Client::check(resp).await.context("committing")?;
                bail!("the server answered the commit of transaction {id} unexpectedly");
            }
        })
    }

    /// Streams one file from the archive into the transaction, hashing it on the way; the
    /// server checks the same sha256 (`x-checksum-sha256`) before it stages anything.
    async fn upload(&self, id: &str, f: &FileEntry) -> anyhow::Result<Result<(), VersionProblem>> {
        let at = self.blobs[&f.sha256];
        let mut file = tokio::fs::File::open(self.archive)
            .await
            .with_context(|| format!("opening {}", self.archive.display()))?;
        file.seek(std::io::SeekFrom::Start(at.offset))
            .await
            .with_context(|| format!("reading {}", self.archive.display()))?;
        let hasher = Arc::new(Mutex::new(DigestHasher::new()));
        let h = hasher.clone();
        let stream = ReaderStream::with_capacity(file.take(at.size), 256 * 1024).map(move |chunk| {
            if let (Ok(c), Ok(mut h)) = (&chunk, h.lock()) {
                h.update(c);
            }
            chunk
        });
        let url = self.client.url(&format!(
            "/api/v1/transactions/{id}/files/{}",
            encode_path(f.path.as_str())
        ));
        let resp = self
            .client
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_LENGTH, at.size)
            .header("x-checksum-sha256", f.sha256.to_hex())
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .with_context(|| format!("uploading {}", f.path))?;
        let status = resp.status();
        let (local_size, local) = hasher
            .lock()
            .map(|h| (h.len(), h.clone().finish()))
            .map_err(|_| anyhow::anyhow!("hashing {}", f.path))?;
        let damaged = local_size == at.size && local != f.sha256;
        if status.is_client_error() {
            let why = refusal(resp).await;
            return Ok(Err(VersionProblem(if damaged {
                format!(
                    "{}: the archive is damaged: its bytes hash to sha256 {}, not {} ({why}); nothing of this version was committed",
                    f.path,
                    local.to_hex(),
                    f.sha256.to_hex()
                )
            } else {
                format!("{}: {why}", f.path)
            })));
        }
        if damaged {
            // The server checks the same sha256, so this is never reached; kept as a belt.
            return Ok(Err(VersionProblem(format!(
                "{}: the archive is damaged: its bytes hash to sha256 {}, not {}",
                f.path,
                local.to_hex(),
                f.sha256.to_hex()
            ))));
        }
        Client::check(resp)
            .await
            .with_context(|| format!("uploading {}", f.path))?;
        Ok(Ok(()))
    }
}

/// The server's message for a refusal (its JSON `message`, else the body).
async fn refusal(resp: reqwest::Response) -> String {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or(text);
    format!("server answered {status}: {}", message.trim())
}
