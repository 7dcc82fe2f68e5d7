//! `intact import-files REPO NAME VERSION SOURCE...`: import by path. The files are on a
//! filesystem the *server* reads (inside its `[import] allowed_roots`); the server clones,
//! links, moves or copies them into its store (`POST /api/v1/transactions/{id}/import`), so
//! their bytes never cross the network. One transaction, the files posted in batches, then
//! one commit.
//!
//! Directories are listed here, by the CLI, so it runs where the server's paths mean the same
//! files (on the server's host, or on a mount of the same filesystem at the same path).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::ServerArgs;
use crate::client::{Client, encode_path};

/// Files per import request (the server takes at most 10,000).
const BATCH: usize = 1000;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// A hosted generic repo, e.g. `files`.
    repo: String,
    /// The name to publish under, e.g. `shots/010/comp` (segments of [A-Za-z0-9._-]).
    name: String,
    /// A version, or `auto` for the next integer version.
    version: String,
    /// Files and directories as the server sees them (absolute, or relative to here); a
    /// directory contributes its files under their paths relative to it.
    #[arg(required = true)]
    sources: Vec<PathBuf>,
    /// How the server brings the bytes in: `auto` (reflink, else an immutable hardlink, else
    /// copy; never move), `reflink` (copy-on-write clone), `move` (the files leave their
    /// directories), `hardlink` (the sources become immutable while stored), `copy`.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    mode: Mode,
    /// The version's metadata, one JSON object.
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// Makes a retried import return the same version instead of creating another.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Print `{"created": bool, "manifest": {...}, "modes": {...}}` as one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Auto,
    Reflink,
    Move,
    Hardlink,
    Copy,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Reflink => "reflink",
            Self::Move => "move",
            Self::Hardlink => "hardlink",
            Self::Copy => "copy",
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Absolute, but not resolved: the server resolves symlinks itself, against its roots.
    let sources = args
        .sources
        .iter()
        .map(|s| std::path::absolute(s).with_context(|| format!("{} as an absolute path", s.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let files = super::publish::collect(&sources)?;
    let metadata = match &args.metadata {
        None => json!({}),
        Some(text) => match serde_json::from_str::<Value>(text).context("--metadata")? {
            v @ Value::Object(_) => v,
            _ => bail!("--metadata must be a JSON object"),
        },
    };
    let client = Client::new(&args.server)?;
    let mut body = json!({"name": args.name, "version": args.version, "metadata": metadata});
    if let Some(k) = &args.idempotency_key {
        body["idempotency_key"] = json!(k);
    }
    let (_, txn) = client
        .post_json(
            &format!("/api/v1/repos/{}/transactions", encode_path(&args.repo)),
            &body,
        )
        .await?;
    if let Some(manifest) = txn.get("manifest") {
        // Committed by an earlier run with the same key: its files were imported then.
        if args.json {
            super::print_json(&json!({"created": false, "manifest": manifest, "modes": {}}))?;
        } else {
            println!(
                "already imported {}/{}@{} (idempotency key {:?}); nothing was imported again",
                args.repo,
                args.name,
                manifest["version"].as_str().unwrap_or(&args.version),
                args.idempotency_key.as_deref().unwrap_or_default()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let id = txn["id"]
        .as_str()
        .context("server returned no transaction id")?
        .to_owned();
    let modes = match import_all(&client, &id, &files, args.mode).await {
        Ok(modes) => modes,
        Err(e) if args.mode == Mode::Move => {
            // Rolling back would delete what was moved already: those files now exist only
            // in the transaction. It is left open for a retry or a commit (until its lease ends).
            return Err(e.context(format!(
                "import failed; transaction {id} is left open, since the files moved so far live only in it: \
                 commit it (POST /api/v1/transactions/{id}/commit) to keep them as a version, or they are \
                 deleted when it is aborted or its lease ends"
            )));
        }
        Err(e) => {
            let _ = client
                .http
                .delete(client.url(&format!("/api/v1/transactions/{id}")))
                .send()
                .await;
            return Err(e.context(format!("import rolled back (transaction {id})")));
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
        super::print_json(&json!({"created": created, "manifest": manifest, "modes": modes}))?;
        return Ok(ExitCode::SUCCESS);
    }
    let total: u64 = manifest["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["size"].as_u64())
        .sum();
    let how: Vec<String> = modes
        .iter()
        .map(|(mode, n)| format!("{} by {mode}", super::count(*n, "file")))
        .collect();
    println!(
        "{} {}/{}@{}: {}, {} ({})",
        if created {
            "imported"
        } else {
            "already published, identical:"
        },
        args.repo,
        args.name,
        manifest["version"].as_str().unwrap_or(&args.version),
        super::count(files.len() as u64, "file"),
        super::size(total),
        how.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// Posts the files in batches; how many files each mode brought in.
async fn import_all(
    client: &Client,
    id: &str,
    files: &[(String, PathBuf)],
    mode: Mode,
) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let mut modes = std::collections::BTreeMap::new();
    for batch in files.chunks(BATCH) {
        let entries: Vec<Value> = batch
            .iter()
            .map(|(path, source)| {
                let source = source
                    .to_str()
                    .with_context(|| format!("{} is not UTF-8", source.display()))?;
                Ok(json!({"path": path, "source": source}))
            })
            .collect::<anyhow::Result<_>>()?;
        let (_, answer) = client
            .post_json(
                &format!("/api/v1/transactions/{id}/import"),
                &json!({"files": entries, "mode": mode.as_str()}),
            )
            .await?;
        for staged in answer["files"].as_array().into_iter().flatten() {
            let used = staged["mode"].as_str().unwrap_or("unknown").to_owned();
            *modes.entry(used).or_insert(0) += 1;
        }
    }
    Ok(modes)
}
