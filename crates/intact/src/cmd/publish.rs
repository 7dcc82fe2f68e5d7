//! `intact publish REPO NAME VERSION FILE|DIR...`: one transaction, then one commit. The
//! files are hashed first; those whose bytes the server already holds (asked with
//! `POST /api/v1/blobs/missing`) are added by digest, the rest streamed in (several at once,
//! large ones as resumable uploads; see `send`) and checked against their sha256. Any failure
//! rolls the transaction back, so a half-published version never exists.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use intact_core::{ContentDiff, DigestHasher, FileEntry, FilePath, Manifest};
use serde_json::{Value, json};

use crate::ServerArgs;
use crate::client::{Client, encode_path};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// A hosted generic repo, e.g. `files`.
    repo: String,
    /// The name to publish under, e.g. `shots/010/comp` (segments of [A-Za-z0-9._-]).
    name: String,
    /// A version, or `auto` for the next integer version. Not `latest` (in any case): readers
    /// ask for that to get the newest version.
    version: String,
    /// Files and directories; a directory contributes its files under their relative paths.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Metadata entries (string values); repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    meta: Vec<String>,
    /// Metadata as one JSON object (merged under --meta entries).
    #[arg(long, value_name = "JSON")]
    metadata_json: Option<String>,
    /// Makes a retried publish return the same version instead of creating another.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Wait this long for another publisher holding the same version.
    #[arg(long, default_value_t = 0)]
    wait_seconds: u64,
    /// How many files to send at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Files of at least this many bytes are sent as resumable uploads: a broken connection
    /// or a server error resumes where it stopped instead of starting the file over.
    #[arg(long, default_value_t = 32 << 20, value_name = "BYTES")]
    resumable_from: u64,
    /// Make the version by editing VERSION (usually with version `auto`): it starts with
    /// VERSION's files and metadata; only files whose bytes differ are sent, and files of
    /// VERSION missing here are dropped (kept with --keep-missing). --meta/--metadata-json
    /// replace the metadata.
    #[arg(long, value_name = "VERSION")]
    from: Option<String>,
    /// With --from: keep the base version's files that are not given here (publish only the
    /// files that changed, e.g. the frames a farm re-rendered).
    #[arg(long, requires = "from")]
    keep_missing: bool,
    /// Print `{"created": bool, "manifest": {...}}` (the committed manifest as the server
    /// returns it; `created` false when the version was already published with this
    /// content) as one JSON document instead of text; no progress bars.
    #[arg(long)]
    json: bool,
}

/// Expands the arguments into (path in the version, local file), sorted, validated.
pub(crate) fn collect(args: &[PathBuf]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let ft = e.file_type()?;
            if ft.is_dir() {
                walk(root, &p, out)?;
            } else if ft.is_file() {
                let rel = p.strip_prefix(root).unwrap_or(&p);
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push((rel.join("/"), p));
            } else {
                eprintln!("skipping {} (not a regular file)", p.display());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for a in args {
        let meta = std::fs::metadata(a).with_context(|| format!("reading {}", a.display()))?;
        if meta.is_dir() {
            walk(a, a, &mut out)?;
        } else {
            let name = a
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, a.clone()));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (path, local) in &out {
        FilePath::parse(path).with_context(|| format!("{} cannot be published", local.display()))?;
        if !seen.insert(path.clone()) {
            bail!("two files would be stored as {path}");
        }
    }
    Ok(out)
}

fn metadata(args: &Args) -> anyhow::Result<Value> {
    let mut obj = match &args.metadata_json {
        Some(text) => match serde_json::from_str::<Value>(text).context("--metadata-json")? {
            Value::Object(m) => m,
            _ => bail!("--metadata-json must be a JSON object"),
        },
        None => serde_json::Map::new(),
    };
    for kv in &args.meta {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--meta {kv:?}: expected KEY=VALUE");
        };
        obj.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(Value::Object(obj))
}

/// Hashes the local files (path in the version, size, sha256), reading each once.
async fn hash_local(files: &[(String, PathBuf)]) -> anyhow::Result<Vec<FileEntry>> {
    let mut out = Vec::with_capacity(files.len());
    for (path, local) in files {
        let local = local.clone();
        let (size, sha256) = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, intact_core::Digest)> {
            use std::io::Read;
            let mut f = std::fs::File::open(&local).with_context(|| format!("reading {}", local.display()))?;
            let mut h = DigestHasher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f
                    .read(&mut buf)
                    .with_context(|| format!("reading {}", local.display()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            let size = h.len();
            Ok((size, h.finish()))
        })
        .await??;
        out.push(FileEntry {
            path: FilePath::parse(path)?,
            size,
            sha256,
        });
    }
    Ok(out)
}

/// A publish of a version that is already committed: nothing to upload when the local files
/// and metadata are the same ("already published, identical", success); refused, saying what
/// differs, when they are not. `None` when the version does not exist yet.
async fn compare_with_existing(
    client: &Client,
    args: &Args,
    local: &[FileEntry],
    metadata: &Value,
) -> anyhow::Result<Option<ExitCode>> {
    if args.version == "auto" || args.idempotency_key.is_some() {
        return Ok(None);
    }
    let path = format!(
        "/api/v1/repos/{}/{}/@v/{}",
        encode_path(&args.repo),
        encode_path(&args.name),
        encode_path(&args.version)
    );
    let resp = client
        .http
        .get(client.url(&path))
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let raw: Value = Client::check(resp)
        .await?
        .json()
        .await
        .context("reading the existing manifest")?;
    let existing: Manifest = serde_json::from_value(raw.clone()).context("reading the existing manifest")?;
    let diff = ContentDiff::between(&existing.files, &existing.metadata, local, metadata);
    if diff.is_empty() {
        if args.json {
            report(false, raw)?;
            return Ok(Some(ExitCode::SUCCESS));
        }
        println!(
            "already published, identical: {}/{}@{} ({}, {})",
            args.repo,
            args.name,
            args.version,
            super::count(existing.files.len() as u64, "file"),
            super::size(existing.total_size())
        );
        return Ok(Some(ExitCode::SUCCESS));
    }
    bail!(
        "{}/{}@{} is already published with different content ({diff}); versions never change: publish a new version",
        args.repo,
        args.name,
        args.version
    )
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let files = collect(&args.files)?;
    let client = Client::new(&args.server)?;
    let meta = metadata(&args)?;
    // Hashed before any transaction opens (its lease does not run while a big tree is read),
    // each file's size and modification time noted first to notice one changed since.
    let stamps = stamps(&files);
    let hashed = hash_local(&files).await?;
    if let Some(done) = compare_with_existing(&client, &args, &hashed, &meta).await? {
        return Ok(done);
    }
    let missing = match missing_on_server(&client, &hashed).await {
        Ok(missing) => missing,
        Err(e) => {
            eprintln!("could not ask which files the server holds ({e:#}); uploading every file");
            hashed.iter().map(|f| f.sha256).collect()
        }
    };
    let mut body = json!({"name": args.name, "version": args.version, "wait_seconds": args.wait_seconds});
    // An edit keeps its base's metadata unless told otherwise.
    let metadata_given = !args.meta.is_empty() || args.metadata_json.is_some();
    if args.from.is_none() || metadata_given {
        body["metadata"] = meta.clone();
    }
    if let Some(from) = &args.from {
        body["from_version"] = json!(from);
    }
    if let Some(k) = &args.idempotency_key {
        body["idempotency_key"] = json!(k);
    }
    let (status, txn) = client
        .post_json(
            &format!("/api/v1/repos/{}/transactions", encode_path(&args.repo)),
            &body,
        )
        .await?;
    if let Some(m) = txn.get("manifest") {
        // The key already published a version. Only the same content makes this a retry:
        // anything else was never published, and saying so is the only honest answer.
        let existing: Manifest =
            serde_json::from_value(m.clone()).context("reading the manifest the idempotency key published")?;
        let diff = match &args.from {
            // An edit's version holds its base's other files and metadata as well: only what
            // this run gives must be in it as given.
            Some(_) => {
                let given: Vec<FileEntry> = existing
                    .files
                    .iter()
                    .filter(|f| args.keep_missing && !hashed.iter().any(|h| h.path == f.path))
                    .cloned()
                    .chain(hashed.iter().cloned())
                    .collect();
                let metadata = if metadata_given { &meta } else { &existing.metadata };
                ContentDiff::between(&existing.files, &existing.metadata, &given, metadata)
            }
            None => ContentDiff::between(&existing.files, &existing.metadata, &hashed, &meta),
        };
        if !diff.is_empty() {
            bail!(
                "idempotency key {:?} already published {}/{}@{} with different content ({diff}); nothing was published: use a new key for new content",
                args.idempotency_key.as_deref().unwrap_or_default(),
                args.repo,
                args.name,
                existing.version
            );
        }
        if args.json {
            report(false, m.clone())?;
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "already published {}/{}@{} (idempotent retry)",
            args.repo, args.name, existing.version
        );
        return Ok(ExitCode::SUCCESS);
    }
    let id = txn["id"]
        .as_str()
        .context("server returned no transaction id")?
        .to_owned();
    let version = txn["version"].as_str().unwrap_or(&args.version).to_owned();
    if status == reqwest::StatusCode::OK {
        eprintln!("resuming transaction {id}");
    }
    // An edit (or a resumed transaction) already holds some files: only the others are sent,
    // and with --from, files it holds that are not given here are dropped.
    let edit = Edit::of(&txn, &hashed, &args)?;
    let keep = |i: &usize| !edit.unchanged.contains(i);
    let (files_to_send, hashed_to_send, stamps_to_send): (Vec<_>, Vec<_>, Vec<_>) = (
        (0..files.len()).filter(keep).map(|i| files[i].clone()).collect(),
        (0..files.len()).filter(keep).map(|i| hashed[i].clone()).collect(),
        (0..files.len()).filter(keep).map(|i| stamps[i]).collect(),
    );
    let local = Local {
        files: &files_to_send,
        hashed: &hashed_to_send,
        stamps: &stamps_to_send,
    };
    let sent = match edit.drop_files(&client, &id).await {
        Ok(()) => upload_all(&client, &id, &local, missing, &args).await,
        Err(e) => Err(e),
    };
    let sent = match sent {
        Ok(sent) => sent,
        Err(e) => {
            let _ = client
                .http
                .delete(client.url(&format!("/api/v1/transactions/{id}")))
                .send()
                .await;
            return Err(e.context(format!("publish rolled back (transaction {id})")));
        }
    };
    let resp = client
        .http
        .post(client.url(&format!("/api/v1/transactions/{id}/commit")))
        .send()
        .await?;
    let resp = Client::check(resp).await.context("commit")?;
    let created = resp.status() == reqwest::StatusCode::CREATED;
    let manifest: Value = resp.json().await?;
    if args.json {
        super::print_json(&json!({
            "created": created,
            "manifest": manifest,
            "uploaded": {"files": sent.uploaded_files, "bytes": sent.uploaded_bytes},
            "already_stored": {"files": sent.reused_files, "bytes": sent.reused_bytes},
            "carried": {"files": edit.carried},
            "dropped": {"files": edit.dropped.len()},
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let total: u64 = manifest["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["size"].as_u64())
        .sum();
    let edited = match &args.from {
        Some(from) => format!(
            "; from {from}: {} carried, {} dropped",
            super::count(edit.carried, "file"),
            super::count(edit.dropped.len() as u64, "file")
        ),
        None => String::new(),
    };
    println!(
        "{} {}/{}@{}: {}, {} ({} uploaded, {} already stored{edited})",
        if created {
            "published"
        } else {
            "already published, identical:"
        },
        args.repo,
        args.name,
        version,
        super::count(manifest["files"].as_array().map_or(0, Vec::len) as u64, "file"),
        super::size(total),
        super::size(sent.uploaded_bytes),
        super::count(sent.reused_files, "file"),
    );
    Ok(ExitCode::SUCCESS)
}

/// The digests among `local` the server does not hold, asked 10,000 at a time. A server
/// without the endpoint (an older intact) holds nothing as far as this publish knows.
async fn missing_on_server(
    client: &Client,
    local: &[FileEntry],
) -> anyhow::Result<std::collections::HashSet<intact_core::Digest>> {
    let mut missing = std::collections::HashSet::new();
    for chunk in local.chunks(10_000) {
        let digests: Vec<String> = chunk.iter().map(|f| f.sha256.to_hex()).collect();
        let resp = client
            .http
            .post(client.url("/api/v1/blobs/missing"))
            .json(&json!({ "digests": digests }))
            .send()
            .await
            .context("POST /api/v1/blobs/missing")?;
        if matches!(
            resp.status(),
            reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::METHOD_NOT_ALLOWED
        ) {
            return Ok(local.iter().map(|f| f.sha256).collect());
        }
        let answer: Value = Client::check(resp)
            .await
            .context("asking which files the server already holds")?
            .json()
            .await?;
        for d in answer["missing"].as_array().into_iter().flatten() {
            let d = d.as_str().context("the server listed a digest that is not a string")?;
            missing.insert(intact_core::Digest::parse(d).context("the server listed a malformed digest")?);
        }
    }
    Ok(missing)
}

/// What `--json` prints: the committed manifest, and whether this publish created it.
fn report(created: bool, manifest: Value) -> anyhow::Result<()> {
    super::print_json(&json!({"created": created, "manifest": manifest}))
}

/// A file's size and modification time, to notice it changed after it was hashed.
type Stamp = Option<(u64, std::time::SystemTime)>;

fn stamp(local: &Path) -> Stamp {
    let m = std::fs::metadata(local).ok()?;
    Some((m.len(), m.modified().ok()?))
}

fn stamps(files: &[(String, PathBuf)]) -> Vec<Stamp> {
    files.iter().map(|(_, local)| stamp(local)).collect()
}

/// The files to publish: where they are, what they hashed to, and when.
struct Local<'a> {
    files: &'a [(String, PathBuf)],
    hashed: &'a [FileEntry],
    stamps: &'a [Stamp],
}

/// Sends the files into transaction `id` (see `send`).
async fn upload_all(
    client: &Client,
    id: &str,
    local: &Local<'_>,
    missing: std::collections::HashSet<intact_core::Digest>,
    args: &Args,
) -> anyhow::Result<super::send::Sent> {
    let jobs: Vec<super::send::Job<'_>> = local
        .files
        .iter()
        .zip(local.hashed)
        .zip(local.stamps)
        .map(|(((path, file), entry), hashed_at)| super::send::Job {
            path,
            local: file,
            entry,
            // Unchanged since it was hashed (else its new bytes are uploaded).
            unchanged: hashed_at.is_some() && stamp(file) == *hashed_at,
        })
        .collect();
    let options = super::send::Options {
        jobs: usize::from(args.jobs),
        resumable_from: args.resumable_from,
        json: args.json,
    };
    super::send::send_all(client, id, &jobs, &missing, &options).await
}

/// What a transaction that starts with files (an edit's base, or what a resumed transaction
/// staged) needs: which local files it holds already, byte for byte, and which of its files
/// to drop.
struct Edit {
    /// Indexes of local files the transaction holds with the same sha256: not sent.
    unchanged: std::collections::HashSet<usize>,
    /// How many of those.
    carried: u64,
    /// Paths it holds that are not given here, dropped (an edit without --keep-missing).
    dropped: Vec<String>,
}

impl Edit {
    fn of(txn: &Value, local: &[FileEntry], args: &Args) -> anyhow::Result<Self> {
        let held: std::collections::HashMap<&str, &str> = txn["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| Some((f["path"].as_str()?, f["sha256"].as_str()?)))
            .collect();
        let unchanged: std::collections::HashSet<usize> = local
            .iter()
            .enumerate()
            .filter(|(_, f)| held.get(f.path.as_str()) == Some(&f.sha256.to_hex().as_str()))
            .map(|(i, _)| i)
            .collect();
        let given: std::collections::HashSet<&str> = local.iter().map(|f| f.path.as_str()).collect();
        let dropped = if args.keep_missing {
            Vec::new()
        } else {
            let mut d: Vec<String> = held
                .keys()
                .filter(|p| !given.contains(*p))
                .map(|p| (*p).to_owned())
                .collect();
            d.sort();
            d
        };
        Ok(Self {
            carried: unchanged.len() as u64,
            unchanged,
            dropped,
        })
    }

    async fn drop_files(&self, client: &Client, id: &str) -> anyhow::Result<()> {
        for path in &self.dropped {
            let url = client.url(&format!("/api/v1/transactions/{id}/files/{}", encode_path(path)));
            let resp = client
                .http
                .delete(&url)
                .send()
                .await
                .with_context(|| format!("DELETE {url}"))?;
            // Gone already (a retried edit): what was asked holds.
            if resp.status() != reqwest::StatusCode::NOT_FOUND {
                Client::check(resp).await.with_context(|| format!("dropping {path}"))?;
            }
        }
        Ok(())
    }
}
