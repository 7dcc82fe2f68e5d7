//! `intact export --repo REPO [--since SEQ] OUT.tar`: a consistent snapshot of one repo as of
//! one commit (the event log's last entry when the export starts), read through the HTTP API
//! and streamed into a tar (docs/transfer.md). Every blob's size and sha256 are checked as it
//! is written; the archive appears under its name only once complete.

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use intact_core::{Digest, FileEntry, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::runtime::Handle;

use super::archive::{
    ArchivedVersion, FORMAT, FORMAT_VERSION, HEADER_ENTRY, Header, Skipped, TRAILER_ENTRY, Trailer, VerifyingReader,
    blob_entry, event_range, version_entry,
};
use crate::ServerArgs;
use crate::client::{Client, encode_path};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// The repo to export: hosted or proxy, of any format (a Go proxy's checksum-database
    /// tiles and tree head travel with it).
    #[arg(long)]
    repo: String,
    /// Only versions committed after this event sequence number: the `until` the previous
    /// export printed (and recorded in its archive). 0, the default, exports everything.
    #[arg(long, default_value_t = 0, value_name = "EVENT_SEQ")]
    since: i64,
    /// The archive to write, or `-` for stdout. A file is written beside its name first and
    /// renamed once complete, so a failed export never leaves a plausible partial archive.
    out: PathBuf,
    /// Print the result (`until`, counts, skipped versions) as one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// A version of the snapshot: committed by event `seq`.
struct Listed {
    name: String,
    version: String,
    seq: i64,
}

/// A manifest as the server answers it (names as stored: `Manifest` itself would refuse an
/// internal one).
#[derive(Deserialize)]
struct ServedManifest {
    name: String,
    version: String,
    files: Vec<FileEntry>,
    metadata: Value,
    created_at: Timestamp,
    seq: i64,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.since < 0 {
        bail!("--since must be an event sequence number >= 0");
    }
    let to_stdout = args.out.as_os_str() == "-";
    if to_stdout && args.json {
        bail!("--json prints on stdout, where `-` sends the archive: write the archive to a file");
    }
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("`-` writes the archive to stdout, which is a terminal: redirect it to a file or a pipe");
    }
    let client = Client::new(&args.server)?;
    let info = client
        .get_json(&format!("/api/v1/repos/{}", encode_path(&args.repo)))
        .await?;
    let kind = info["kind"].as_str().unwrap_or_default().to_owned();
    let repo_format = info["format"].as_str().unwrap_or("generic").to_owned();
    if kind == "group" {
        bail!(
            "repo {} is a group: it holds nothing of its own; export its hosted and proxy members one by one",
            args.repo
        );
    }
    check_since(&client, args.since).await?;
    let (listed, until) = snapshot(&client, &args.repo, args.since).await?;
    let header = Header {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        repo: args.repo.clone(),
        kind,
        repo_format,
        since: args.since,
        until,
        server: without_credentials(&client.base),
        created_at: Timestamp::from_system(std::time::SystemTime::now()),
    };
    eprintln!(
        "exporting {} of repo {} ({})",
        super::super::count(listed.len() as u64, "version"),
        args.repo,
        event_range(args.since, until)
    );
    let bar = super::super::bars(args.json).then(|| {
        let b = ProgressBar::new(listed.len() as u64);
        b.set_style(
            ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} versions")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_message("exporting");
        b
    });
    let exporter = Exporter {
        handle: Handle::current(),
        client,
        repo: args.repo.clone(),
        bar: bar.clone(),
    };
    let out = args.out.clone();
    let trailer = tokio::task::spawn_blocking(move || {
        if to_stdout {
            let stdout = std::io::stdout().lock();
            let (mut w, trailer) = exporter.write(BufWriter::with_capacity(1 << 20, stdout), &header, &listed)?;
            w.flush().context("writing the archive to stdout")?;
            Ok(trailer)
        } else {
            write_file(&out, |w| exporter.write(w, &header, &listed))
        }
    })
    .await
    .context("the export stopped")??;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for s in &trailer.skipped {
        eprintln!(
            "warning: {}/{}@{} was in the snapshot but could not be read ({}): it is not in the archive",
            args.repo, s.name, s.version, s.reason
        );
    }
    report(&args, until, &trailer)?;
    Ok(ExitCode::SUCCESS)
}

fn report(args: &Args, until: i64, trailer: &Trailer) -> anyhow::Result<()> {
    if args.json {
        return super::super::print_json(&json!({
            "out": args.out.display().to_string(),
            "repo": args.repo,
            "since": args.since,
            "until": until,
            "versions": trailer.versions,
            "blobs": trailer.blobs,
            "blob_bytes": trailer.blob_bytes,
            "skipped": trailer.skipped,
        }));
    }
    let text = format!(
        "exported {} of repo {} ({}; {}, {}) to {}\nnext incremental export: intact export --repo {} --since {until} FILE",
        super::super::count(trailer.versions, "version"),
        args.repo,
        event_range(args.since, until),
        super::super::count(trailer.blobs, "blob"),
        super::super::size(trailer.blob_bytes),
        args.out.display(),
        args.repo,
    );
    // With the archive on stdout, the result goes where people read it.
    if args.out.as_os_str() == "-" {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
    Ok(())
}

/// The server's URL as the archive records it: without a user name or password, should
/// `--server` carry any.
fn without_credentials(base: &str) -> String {
    match reqwest::Url::parse(base) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.as_str().trim_end_matches('/').to_owned()
        }
        Err(_) => base.to_owned(),
    }
}

/// Refuses a `--since` past the end of this server's event log: the archive it came from
/// was exported from another server (or its catalog was restored from an older backup),
/// and an empty export would look like "nothing new".
async fn check_since(client: &Client, since: i64) -> anyhow::Result<()> {
    if since == 0 {
        return Ok(());
    }
    let page = client
        .get_json(&format!("/api/v1/events?after={}&limit=1", since - 1))
        .await?;
    let next = page["next"].as_i64().context("the server's event page has no `next`")?;
    if next < since {
        bail!(
            "--since {since}: this server's event log ends before event {since}; was the previous archive exported from another server?"
        );
    }
    Ok(())
}

/// The versions of `repo` committed by events in `(since, S]` and not deleted by an event up
/// to S, in commit order, with S: the last event when the walk reached the end of the log.
/// Events are never pruned (the catalog keeps them all), so replaying them is complete.
async fn snapshot(client: &Client, repo: &str, since: i64) -> anyhow::Result<(Vec<Listed>, i64)> {
    let mut replay = Replay::default();
    let mut after = since;
    loop {
        let page = client
            .get_json(&format!("/api/v1/events?after={after}&limit=10000"))
            .await?;
        let next = page["next"].as_i64().context("the server's event page has no `next`")?;
        for e in page["events"].as_array().into_iter().flatten() {
            replay.apply(repo, e)?;
        }
        if next <= after {
            break;
        }
        after = next;
    }
    Ok((replay.into_listed(), after))
}

/// The versions the events replayed so far leave committed, each with its commit's seq.
#[derive(Default)]
struct Replay {
    live: HashMap<(String, String), i64>,
}

impl Replay {
    fn apply(&mut self, repo: &str, event: &Value) -> anyhow::Result<()> {
        if event["repo"].as_str() != Some(repo) {
            return Ok(());
        }
        let (Some(name), Some(version), Some(seq)) =
            (event["name"].as_str(), event["version"].as_str(), event["seq"].as_i64())
        else {
            bail!("the server sent an event without name, version or seq: {event}");
        };
        let key = (name.to_owned(), version.to_owned());
        match event["kind"].as_str() {
            Some("committed") => {
                self.live.insert(key, seq);
            }
            Some("deleted") => {
                self.live.remove(&key);
            }
            // `aborted`: nothing became visible.
            _ => {}
        }
        Ok(())
    }

    /// In commit order.
    fn into_listed(self) -> Vec<Listed> {
        let mut listed: Vec<Listed> = self
            .live
            .into_iter()
            .map(|((name, version), seq)| Listed { name, version, seq })
            .collect();
        listed.sort_by_key(|l| l.seq);
        listed
    }
}

/// Writes `OUT` through a temporary file beside it: renamed into place (and the directory
/// synced) only once `write` succeeded, removed otherwise.
fn write_file<T>(
    out: &Path,
    write: impl FnOnce(BufWriter<std::fs::File>) -> anyhow::Result<(BufWriter<std::fs::File>, T)>,
) -> anyhow::Result<T> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = out
        .file_name()
        .with_context(|| format!("{} names no file", out.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".partial")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let file = tmp.as_file().try_clone().context("opening the temporary file")?;
    let (w, result) = write(BufWriter::with_capacity(1 << 20, file))?;
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.path().display()))?;
    tmp.persist(out)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the finished archive to {}", out.display()))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(result)
}

/// Reads the snapshot's versions from the server and writes the archive. Runs on a blocking
/// thread (the tar writer is synchronous) and waits for each HTTP call on the runtime.
struct Exporter {
    handle: Handle,
    client: Client,
    repo: String,
    bar: Option<ProgressBar>,
}

impl Exporter {
    fn write<W: Write>(&self, w: W, header: &Header, listed: &[Listed]) -> anyhow::Result<(W, Trailer)> {
        let mtime = u64::try_from(header.created_at.millis() / 1000).unwrap_or(0);
        let mut tar = tar::Builder::new(w);
        append_json(&mut tar, HEADER_ENTRY, header, mtime)?;
        let mut written: HashSet<Digest> = HashSet::new();
        let mut trailer = Trailer::default();
        for item in listed {
            let gone = || Skipped {
                name: item.name.clone(),
                version: item.version.clone(),
                reason: format!("deleted after event {}, the snapshot's last", header.until),
            };
            let Some(m) = self.handle.block_on(self.manifest(item))? else {
                trailer.skipped.push(gone());
                continue;
            };
            if m.seq != item.seq {
                // Deleted and committed again since: not the snapshot's version (the next
                // incremental export, from `until`, carries the new one).
                trailer.skipped.push(Skipped {
                    name: item.name.clone(),
                    version: item.version.clone(),
                    reason: format!(
                        "committed again after event {} (event {}), so not the snapshot's",
                        header.until, m.seq
                    ),
                });
                continue;
            }
            let mut deleted_meanwhile = false;
            for f in &m.files {
                if written.contains(&f.sha256) {
                    continue;
                }
                let what = format!("{}/{}@{}: {}", self.repo, m.name, m.version, f.path);
                // Deleted between reading its manifest and its files: skipped like a version
                // deleted before (a blob already written is harmless, the importer reads only
                // what manifests name).
                let Some(body) = self.handle.block_on(self.download(&m, f))? else {
                    deleted_meanwhile = true;
                    break;
                };
                let reader = VerifyingReader::new(body, what.clone(), f.size, f.sha256);
                let mut entry = tar::Header::new_gnu();
                entry.set_entry_type(tar::EntryType::Regular);
                entry.set_size(f.size);
                entry.set_mode(0o644);
                entry.set_mtime(mtime);
                tar.append_data(&mut entry, blob_entry(&f.sha256), reader)
                    .with_context(|| format!("exporting {what}"))?;
                written.insert(f.sha256);
                trailer.blobs += 1;
                trailer.blob_bytes += f.size;
            }
            if deleted_meanwhile {
                trailer.skipped.push(gone());
                continue;
            }
            let archived = ArchivedVersion {
                name: m.name,
                version: m.version,
                metadata: m.metadata,
                files: m.files,
                created_at: m.created_at,
                seq: m.seq,
            };
            append_json(&mut tar, &version_entry(trailer.versions), &archived, mtime)?;
            trailer.versions += 1;
            if let Some(b) = &self.bar {
                b.inc(1);
            }
        }
        append_json(&mut tar, TRAILER_ENTRY, &trailer, mtime)?;
        let w = tar.into_inner().context("finishing the archive")?;
        Ok((w, trailer))
    }

    /// GETs `path`; `None` when it is gone (404: deleted since the snapshot).
    async fn get_unless_gone(&self, path: &str) -> anyhow::Result<Option<reqwest::Response>> {
        let url = self.client.url(path);
        let resp = self
            .client
            .http
            .get(url.clone())
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        Ok((resp.status() != reqwest::StatusCode::NOT_FOUND).then_some(resp))
    }

    /// The version's manifest, or `None` when it is gone (deleted since the snapshot).
    async fn manifest(&self, item: &Listed) -> anyhow::Result<Option<ServedManifest>> {
        let path = format!(
            "/api/v1/repos/{}/{}/@v/{}",
            encode_path(&self.repo),
            encode_path(&item.name),
            encode_path(&item.version)
        );
        let Some(resp) = self.get_unless_gone(&path).await? else {
            return Ok(None);
        };
        let m: ServedManifest = Client::check(resp)
            .await
            .with_context(|| format!("reading {}/{}@{}", self.repo, item.name, item.version))?
            .json()
            .await
            .with_context(|| format!("reading the manifest of {}/{}@{}", self.repo, item.name, item.version))?;
        if m.name != item.name || m.version != item.version {
            bail!(
                "asked for {}@{}, the server answered with {}@{}",
                item.name,
                item.version,
                m.name,
                m.version
            );
        }
        Ok(Some(m))
    }

    /// A file's body, or `None` when the version was deleted meanwhile (404).
    async fn download(&self, m: &ServedManifest, f: &FileEntry) -> anyhow::Result<Option<BlockingBody>> {
        let path = format!(
            "/api/v1/repos/{}/{}/@v/{}/{}",
            encode_path(&self.repo),
            encode_path(&m.name),
            encode_path(&m.version),
            encode_path(f.path.as_str())
        );
        let Some(resp) = self.get_unless_gone(&path).await? else {
            return Ok(None);
        };
        let resp = Client::check(resp)
            .await
            .with_context(|| format!("downloading {}/{}@{}: {}", self.repo, m.name, m.version, f.path))?;
        Ok(Some(BlockingBody {
            handle: self.handle.clone(),
            stream: Box::pin(resp.bytes_stream()),
            chunk: Bytes::new(),
        }))
    }
}

fn append_json<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    value: &impl serde::Serialize,
    mtime: u64,
) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    let mut entry = tar::Header::new_gnu();
    entry.set_entry_type(tar::EntryType::Regular);
    entry.set_size(bytes.len() as u64);
    entry.set_mode(0o644);
    entry.set_mtime(mtime);
    tar.append_data(&mut entry, path, bytes.as_slice())
        .with_context(|| format!("writing {path} into the archive"))
}

/// A response body read synchronously, one chunk at a time, on a blocking thread.
struct BlockingBody {
    handle: Handle,
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    chunk: Bytes,
}

impl std::io::Read for BlockingBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, kind: &str, repo: &str, name: &str, version: &str) -> Value {
        json!({"seq": seq, "kind": kind, "repo": repo, "name": name, "version": version})
    }

    #[test]
    fn the_snapshot_is_what_the_events_leave_committed_in_commit_order() {
        let mut replay = Replay::default();
        for e in [
            event(1, "committed", "go", "@sumdb/db/latest", "10"),
            event(2, "committed", "other", "x", "1"),
            event(3, "aborted", "go", "m", "v1.0.0"),
            event(4, "committed", "go", "m", "v1.0.0"),
            event(5, "committed", "go", "@sumdb/db/latest", "12"),
            event(6, "deleted", "go", "@sumdb/db/latest", "10"),
            // Evicted, then fetched again: listed at its last commit.
            event(7, "committed", "go", "@gomod/n", "v0.1.0"),
            event(8, "deleted", "go", "@gomod/n", "v0.1.0"),
            event(9, "committed", "go", "@gomod/n", "v0.1.0"),
        ] {
            replay.apply("go", &e).expect("event");
        }
        let listed: Vec<(String, String, i64)> = replay
            .into_listed()
            .into_iter()
            .map(|l| (l.name, l.version, l.seq))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("m".to_owned(), "v1.0.0".to_owned(), 4),
                ("@sumdb/db/latest".to_owned(), "12".to_owned(), 5),
                ("@gomod/n".to_owned(), "v0.1.0".to_owned(), 9),
            ]
        );
        assert!(
            Replay::default()
                .apply("go", &json!({"repo": "go", "kind": "committed"}))
                .is_err()
        );
    }

    #[test]
    fn the_archive_never_records_credentials() {
        assert_eq!(
            without_credentials("https://u:p@intact.example:7333/"),
            "https://intact.example:7333"
        );
        assert_eq!(without_credentials("http://127.0.0.1:7333"), "http://127.0.0.1:7333");
    }
}
