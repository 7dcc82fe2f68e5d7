//! `intact get REPO NAME (VERSION | --tag TAG) [--out DIR]`: downloads every file of a version, checking
//! size and sha256 against the manifest; each file appears under its final name only once
//! it is complete and verified.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use intact_core::{DigestHasher, FilePath};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::ServerArgs;
use crate::client::{Client, encode_path};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// The repository, e.g. `files`.
    repo: String,
    /// The name of the artifact, e.g. `tools/cli`.
    name: String,
    /// The version to download; `latest` for the one committed last. Leave it out with --tag.
    #[arg(required_unless_present = "tag", conflicts_with = "tag")]
    version: Option<String>,
    /// Download the version this tag points at (one lookup: every file comes from that
    /// version even if the tag moves meanwhile).
    #[arg(long)]
    tag: Option<String>,
    /// Directory to write the files into.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Replace files that already exist in the output directory (by default their presence
    /// is an error, before anything is downloaded).
    #[arg(long)]
    force: bool,
    /// Print what was downloaded (repo, name, version, metadata, and each file's path, size,
    /// sha256 and local `dest`) as one JSON document instead of text; no progress bars.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server)?;
    let asked = args.version.clone().unwrap_or_default();
    let selector = match (&args.tag, asked.as_str()) {
        (Some(tag), _) => format!("@t/{}", encode_path(tag)),
        (None, "latest") => "@latest".to_owned(),
        (None, v) => format!("@v/{}", encode_path(v)),
    };
    let manifest = client
        .get_json(&format!(
            "/api/v1/repos/{}/{}/{selector}",
            encode_path(&args.repo),
            encode_path(&args.name)
        ))
        .await?;
    // The version the manifest is of (`latest` names one only once asked).
    let version = manifest["version"].as_str().unwrap_or(&asked).to_owned();
    let base = format!(
        "/api/v1/repos/{}/{}/@v/{}",
        encode_path(&args.repo),
        encode_path(&args.name),
        encode_path(&version)
    );
    let files = manifest["files"].as_array().cloned().unwrap_or_default();
    if !args.force {
        let existing: Vec<String> = files
            .iter()
            .filter_map(|f| f["path"].as_str())
            .filter(|p| FilePath::parse(p).is_ok())
            .map(|p| p.split('/').fold(args.out.clone(), |d, seg| d.join(seg)))
            .filter(|dest| dest.symlink_metadata().is_ok())
            .map(|dest| dest.display().to_string())
            .collect();
        if !existing.is_empty() {
            bail!(
                "{} already exist{} (nothing was downloaded; --force replaces them): {}",
                if existing.len() == 1 { "a file" } else { "files" },
                if existing.len() == 1 { "s" } else { "" },
                existing.join(", ")
            );
        }
    }
    let bars = super::bars(args.json).then(MultiProgress::new);
    let style = ProgressStyle::with_template("{msg:30!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut downloaded = Vec::with_capacity(files.len());
    for f in &files {
        let path = f["path"].as_str().context("manifest file without path")?;
        // Never trust a path from the network for a filesystem join without validating it.
        FilePath::parse(path).with_context(|| format!("server sent an unsafe path {path:?}"))?;
        let size = f["size"].as_u64().unwrap_or(0);
        let want = f["sha256"].as_str().unwrap_or_default().to_owned();
        let dest = path.split('/').fold(args.out.clone(), |p, seg| p.join(seg));
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let partial = dest.with_file_name(format!(
            ".{}.intact-partial",
            dest.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let bar = bars.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(size));
            b.set_style(style.clone());
            b.set_message(path.to_owned());
            b
        });
        let resp = client
            .http
            .get(client.url(&format!("{base}/{}", encode_path(path))))
            .send()
            .await?;
        let resp = Client::check(resp)
            .await
            .with_context(|| format!("downloading {path}"))?;
        let mut out = tokio::fs::File::create(&partial)
            .await
            .with_context(|| format!("creating {}", partial.display()))?;
        let mut hasher = DigestHasher::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("downloading {path}"))?;
            hasher.update(&chunk);
            out.write_all(&chunk).await?;
            if let Some(b) = &bar {
                b.inc(chunk.len() as u64);
            }
        }
        out.sync_all().await?;
        drop(out);
        let got = hasher.len();
        let digest = hasher.finish().to_hex();
        if got != size || digest != want {
            let _ = tokio::fs::remove_file(&partial).await;
            bail!("{path}: expected {size} bytes with sha256 {want}, got {got} bytes with sha256 {digest}");
        }
        tokio::fs::rename(&partial, &dest).await?;
        match bar {
            Some(b) => b.finish(),
            None => eprintln!("downloaded {path} ({}, sha256 verified)", super::size(size)),
        }
        downloaded.push(json!({"path": path, "size": size, "sha256": digest, "dest": dest.display().to_string()}));
    }
    if args.json {
        super::print_json(&json!({
            "repo": args.repo,
            "name": args.name,
            "version": version,
            "metadata": manifest["metadata"],
            "out": args.out.display().to_string(),
            "files": downloaded,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}/{}@{}: {} into {}",
        args.repo,
        args.name,
        version,
        super::count(files.len() as u64, "file"),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
