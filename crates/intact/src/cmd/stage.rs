//! `intact stage REPO NAME ARTIFACT... [--background ART...] [--file F...] [--wait]`: asks a
//! staging repo to stage artifacts of a build and shows their progress while it does (bars on
//! a terminal, plain lines otherwise) by polling the status endpoint.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::ServerArgs;
use crate::client::{Client, encode_path};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// A staging repo (kind = "proxy", format = "generic").
    repo: String,
    /// The build: its path under the repo's upstream, e.g. x86-alex-release/R19-2003.0.0.
    name: String,
    /// Artifacts to stage before the command returns.
    artifacts: Vec<String>,
    /// Artifacts to stage in the background, once the others are in.
    #[arg(long = "background", value_name = "ARTIFACT", num_args = 1..)]
    background: Vec<String>,
    /// Single files of the build directory, each staged as a version named like the file.
    #[arg(long = "file", value_name = "FILE", num_args = 1..)]
    files: Vec<String>,
    /// Also wait for the background artifacts (showing their progress).
    #[arg(long)]
    wait: bool,
    /// Print the result as one JSON document instead of text: the server's answer (`items`
    /// staged, `background` jobs; with --wait each background entry is its final status)
    /// and `ok`. Progress goes to stderr as plain lines, never bars.
    #[arg(long)]
    json: bool,
}

/// Shows progress of the items being staged, from status snapshots.
struct Progress {
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
    /// Plain-line mode: what was last printed per item, and when.
    last: HashMap<String, (String, Instant)>,
}

impl Progress {
    fn new(json: bool) -> Self {
        Self {
            bars: super::bars(json).then(|| (MultiProgress::new(), HashMap::new())),
            last: HashMap::new(),
        }
    }

    fn show(&mut self, status: &Value) {
        for a in status["artifacts"].as_array().into_iter().flatten() {
            let art = a["artifact"].as_str().unwrap_or("?").to_owned();
            let state = a["state"].as_str().unwrap_or("?");
            let phase = a["phase"].as_str().unwrap_or(state);
            let done = a["bytes_done"].as_u64().unwrap_or(0);
            let total = a["bytes_total"].as_u64();
            match &mut self.bars {
                Some((multi, bars)) => {
                    if state == "absent" {
                        continue;
                    }
                    let bar = bars.entry(art.clone()).or_insert_with(|| {
                        let b = multi.add(ProgressBar::new(0));
                        b.set_style(
                            ProgressStyle::with_template("{msg:40!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                                .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        );
                        b
                    });
                    if bar.is_finished() {
                        continue;
                    }
                    if let Some(t) = total {
                        bar.set_length(t);
                    }
                    bar.set_position(done);
                    match state {
                        "staged" => bar.finish_with_message(format!("{art}: staged")),
                        "failed" => bar.abandon_with_message(format!("{art}: failed")),
                        _ => bar.set_message(format!("{art}: {phase}")),
                    }
                }
                None => {
                    if state == "absent" {
                        continue;
                    }
                    let line = match total {
                        Some(t) if state == "staging" => {
                            format!("{art}: {phase} {} of {}", super::size(done), super::size(t))
                        }
                        _ if state == "staging" => format!("{art}: {phase} {}", super::size(done)),
                        _ => format!("{art}: {state}"),
                    };
                    let due = match self.last.get(&art) {
                        None => true,
                        Some((prev, at)) => {
                            // Phase changes at once, byte counts every few seconds.
                            let prev_head = prev.split(' ').take(2).collect::<Vec<_>>();
                            let head = line.split(' ').take(2).collect::<Vec<_>>();
                            prev_head != head || at.elapsed() >= Duration::from_secs(5)
                        }
                    };
                    if due && self.last.get(&art).map(|(p, _)| p) != Some(&line) {
                        eprintln!("{line}");
                        self.last.insert(art, (line, Instant::now()));
                    }
                }
            }
        }
    }

    fn clear(&mut self) {
        if let Some((multi, bars)) = &mut self.bars {
            for b in bars.values() {
                if !b.is_finished() {
                    b.finish_and_clear();
                }
            }
            let _ = multi.clear();
            bars.clear();
        }
    }
}

fn status_path(args: &Args, items: &[String], wait: u64) -> String {
    format!(
        "/api/v1/repos/{}/stage/status?name={}&artifacts={}&wait_seconds={wait}",
        encode_path(&args.repo),
        encode_path(&args.name),
        items.iter().map(|i| encode_path(i)).collect::<Vec<_>>().join(",")
    )
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.artifacts.is_empty() && args.background.is_empty() && args.files.is_empty() {
        anyhow::bail!("name at least one artifact (or --background ARTIFACT, or --file FILE)");
    }
    let client = Client::new(&args.server)?;
    let body =
        json!({"name": args.name, "artifacts": args.artifacts, "files": args.files, "background": args.background});
    let foreground: Vec<String> = args.artifacts.iter().chain(args.files.iter()).cloned().collect();

    // Poll the status while the request runs, to show progress.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let poller = {
        let client = client.clone();
        let path = status_path(&args, &foreground, 0);
        let json = args.json;
        tokio::spawn(async move {
            let mut progress = Progress::new(json);
            loop {
                if let Ok(status) = client.get_json(&path).await {
                    progress.show(&status);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop_rx.changed() => break,
                }
            }
            progress.clear();
        })
    };
    let answer = client
        .post_json(&format!("/api/v1/repos/{}/stage", encode_path(&args.repo)), &body)
        .await;
    let _ = stop_tx.send(true);
    let _ = poller.await;
    let (_, mut answer) = answer.with_context(|| format!("staging {} of {}", foreground.join(", "), args.name))?;
    // What people read goes to stdout as it happens; under --json, only the final document.
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };

    for item in answer["items"].as_array().into_iter().flatten() {
        say(format!(
            "staged {}/{}@{}: {}, {}",
            args.repo,
            args.name,
            item["artifact"].as_str().unwrap_or("?"),
            super::count(item["files"].as_u64().unwrap_or(0), "file"),
            super::size(item["size"].as_u64().unwrap_or(0))
        ));
    }
    let mut pending = Vec::new();
    let mut failed = false;
    for item in answer["background"].as_array().into_iter().flatten() {
        let art = item["artifact"].as_str().unwrap_or("?").to_owned();
        match item["state"].as_str() {
            Some("staged") => say(format!("staged {}/{}@{art} (already)", args.repo, args.name)),
            Some("failed") => {
                failed = true;
                eprintln!("{art}: failed: {}", item["message"].as_str().unwrap_or("?"));
            }
            _ => {
                say(format!(
                    "{art}: staging in the background (job {})",
                    item["job"].as_str().unwrap_or("?")
                ));
                pending.push(art);
            }
        }
    }
    if args.wait && !pending.is_empty() {
        let mut progress = Progress::new(args.json);
        let status = loop {
            let status = client.get_json(&status_path(&args, &pending, 1)).await?;
            progress.show(&status);
            let staging = |a: &Value| a["state"].as_str() == Some("staging");
            if !status["artifacts"].as_array().into_iter().flatten().any(staging) {
                break status;
            }
        };
        progress.clear();
        for a in status["artifacts"].as_array().into_iter().flatten() {
            let art = a["artifact"].as_str().unwrap_or("?");
            match a["state"].as_str() {
                Some("staged") => say(format!(
                    "staged {}/{}@{art}: {}, {}",
                    args.repo,
                    args.name,
                    super::count(a["files"].as_u64().unwrap_or(0), "file"),
                    super::size(a["size"].as_u64().unwrap_or(0))
                )),
                _ => {
                    failed = true;
                    let why = a["message"].as_str().unwrap_or("no longer staging, and not staged");
                    eprintln!("{art}: failed: {why}");
                }
            }
        }
        // The background entries become their final statuses.
        if let Some(background) = answer["background"].as_array_mut() {
            for entry in background.iter_mut() {
                let art = entry["artifact"].as_str().unwrap_or_default();
                let last = status["artifacts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["artifact"].as_str() == Some(art));
                if let Some(last) = last {
                    *entry = last.clone();
                }
            }
        }
    }
    if args.json {
        answer["ok"] = json!(!failed);
        super::print_json(&answer)?;
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
