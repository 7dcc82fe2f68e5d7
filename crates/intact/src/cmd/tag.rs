//! `intact tag`: move a tag to a version by compare-and-swap, show where tags point, show a
//! tag's history, remove one. A tag is read wherever a version is, as `@t/TAG` in API paths
//! and `intact get REPO NAME --tag TAG`.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};

use crate::ServerArgs;
use crate::client::{Client, encode_path};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Point TAG of NAME at VERSION (creating it if needed). With --expect, only if it points
    /// at that version now (--expect-absent: only if it does not exist); otherwise the move
    /// fails, saying where it points, and nothing changes.
    Move {
        #[command(flatten)]
        server: ServerArgs,
        repo: String,
        name: String,
        tag: String,
        version: String,
        /// The version the tag must point at now.
        #[arg(long, conflicts_with = "expect_absent")]
        expect: Option<String>,
        /// Only if the tag does not exist yet (create it).
        #[arg(long)]
        expect_absent: bool,
        /// Print the server's answer as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Show where TAG points, or with no TAG every tag of NAME.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        repo: String,
        name: String,
        tag: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show TAG's moves, newest first.
    History {
        #[command(flatten)]
        server: ServerArgs,
        repo: String,
        name: String,
        tag: String,
        /// Print each move as a JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Remove TAG (its history keeps the removal).
    Delete {
        #[command(flatten)]
        server: ServerArgs,
        repo: String,
        name: String,
        tag: String,
        /// Only if it points at this version now.
        #[arg(long)]
        expect: Option<String>,
    },
}

fn tag_path(repo: &str, name: &str, tag: &str) -> String {
    format!(
        "/api/v1/repos/{}/{}/@tags/{}",
        encode_path(repo),
        encode_path(name),
        encode_path(tag)
    )
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Move {
            server,
            repo,
            name,
            tag,
            version,
            expect,
            expect_absent,
            json,
        } => {
            let client = Client::new(&server)?;
            let mut body = json!({ "version": version });
            if expect_absent {
                body["expect"] = Value::Null;
            } else if let Some(v) = &expect {
                body["expect"] = json!(v);
            }
            let path = tag_path(&repo, &name, &tag);
            let resp = client
                .http
                .put(client.url(&path))
                .json(&body)
                .send()
                .await
                .with_context(|| format!("PUT {}", client.url(&path)))?;
            let answer: Value = Client::check(resp).await?.json().await?;
            if json {
                super::print_json(&answer)?;
            } else {
                let previous = answer["previous"].as_str().unwrap_or("nothing");
                if answer["moved"] == json!(false) {
                    println!("{tag} already points at {version}");
                } else {
                    println!("{tag}: {previous} -> {version}");
                }
            }
        }
        Command::Show {
            server,
            repo,
            name,
            tag,
            json,
        } => {
            let client = Client::new(&server)?;
            let records = match &tag {
                Some(tag) => vec![client.get_json(&tag_path(&repo, &name, tag)).await?],
                None => {
                    let page = client
                        .get_json(&format!(
                            "/api/v1/repos/{}/{}/@tags",
                            encode_path(&repo),
                            encode_path(&name)
                        ))
                        .await?;
                    page["tags"].as_array().cloned().unwrap_or_default()
                }
            };
            for r in &records {
                if json {
                    println!("{r}");
                } else {
                    println!(
                        "{}\t{}\t{}{}",
                        r["tag"].as_str().unwrap_or_default(),
                        r["version"].as_str().unwrap_or_default(),
                        r["moved_at"].as_str().unwrap_or_default(),
                        r["moved_by"].as_str().map(|b| format!("\tby {b}")).unwrap_or_default()
                    );
                }
            }
        }
        Command::History {
            server,
            repo,
            name,
            tag,
            json,
        } => {
            let client = Client::new(&server)?;
            let mut before: Option<i64> = None;
            loop {
                let cursor = before.map(|b| format!("&before={b}")).unwrap_or_default();
                let page = client
                    .get_json(&format!("{}/@history?limit=1000{cursor}", tag_path(&repo, &name, &tag)))
                    .await?;
                for e in page["history"].as_array().into_iter().flatten() {
                    if json {
                        println!("{e}");
                    } else {
                        println!(
                            "{}\t{} -> {}{}",
                            e["at"].as_str().unwrap_or_default(),
                            e["previous"].as_str().unwrap_or("(none)"),
                            e["version"].as_str().unwrap_or("(removed)"),
                            e["by"].as_str().map(|b| format!("\tby {b}")).unwrap_or_default()
                        );
                    }
                }
                match page["next_before"].as_i64() {
                    Some(b) => before = Some(b),
                    None => break,
                }
            }
        }
        Command::Delete {
            server,
            repo,
            name,
            tag,
            expect,
        } => {
            let client = Client::new(&server)?;
            let mut path = tag_path(&repo, &name, &tag);
            if let Some(v) = &expect {
                path.push_str(&format!("?expect={}", encode_path(v)));
            }
            let resp = client
                .http
                .delete(client.url(&path))
                .send()
                .await
                .with_context(|| format!("DELETE {}", client.url(&path)))?;
            Client::check(resp).await?;
            println!("removed tag {tag}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
