//! `intact hooks`: webhooks that POST events (commits, rollbacks, deletions) to a URL, signed
//! (docs/operations.md#webhooks). Needs an admin token once access control is on.

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
    /// Create a hook; prints its secret (shown only this once) on the last line.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// The hook's name (1-64 letters, digits, '-', '_', '.').
        name: String,
        /// The repo whose events it gets, or `*` for every repo.
        #[arg(long)]
        repo: String,
        /// Where events are POSTed (http:// or https://).
        #[arg(long)]
        url: String,
        /// Which events, comma-separated: committed, aborted, deleted, tagged, untagged.
        #[arg(long, default_value = "committed", value_delimiter = ',')]
        events: Vec<String>,
        /// The signing secret (16-256 characters); default: 32 random bytes, hex.
        #[arg(long, env = "INTACT_HOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Print the hook as the server made it (its `secret` included) as one JSON document
        /// instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the hooks and how their deliveries go.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print each hook as a JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Delete a hook: no more deliveries.
    Delete {
        #[command(flatten)]
        server: ServerArgs,
        /// The hook's name.
        name: String,
        /// Print `{"name": ..., "deleted": true}` as one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Create {
            server,
            name,
            repo,
            url,
            events,
            secret,
            json,
        } => {
            let client = Client::new(&server)?;
            let mut body = json!({"name": name, "repo": repo, "url": url, "events": events});
            if let Some(s) = secret {
                body["secret"] = json!(s);
            }
            let (_, v) = client.post_json("/api/v1/hooks", &body).await?;
            if json {
                super::print_json(&v)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("created hook {}: {}", name, describe(&v));
            println!("{}", v["secret"].as_str().unwrap_or_default());
        }
        Command::List { server, json } => {
            let v = Client::new(&server)?.get_json("/api/v1/hooks").await?;
            for hook in v["hooks"].as_array().into_iter().flatten() {
                if json {
                    println!("{hook}");
                } else {
                    println!("{}\t{}", hook["name"].as_str().unwrap_or("?"), describe(hook));
                }
            }
        }
        Command::Delete { server, name, json } => {
            let client = Client::new(&server)?;
            let resp = client
                .http
                .delete(client.url(&format!("/api/v1/hooks/{}", encode_path(&name))))
                .header("content-type", "application/json")
                .send()
                .await
                .context("DELETE /api/v1/hooks")?;
            Client::check(resp).await?;
            if json {
                super::print_json(&json!({"name": name, "deleted": true}))?;
            } else {
                println!("deleted hook {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A hook in one line: what it gets, where, and how delivery goes.
fn describe(hook: &Value) -> String {
    let events: Vec<&str> = hook["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let delivered = hook["delivered"].as_u64().unwrap_or(0);
    let mut line = format!(
        "{} events of repo {} to {}; {delivered} delivered",
        events.join(","),
        hook["repo"].as_str().unwrap_or("?"),
        hook["url"].as_str().unwrap_or("?"),
    );
    let failures = hook["failures"].as_u64().unwrap_or(0);
    if failures > 0 {
        line.push_str(&format!(
            "; failing ({failures} attempt{}, last: {})",
            if failures == 1 { "" } else { "s" },
            hook["last_error"].as_str().unwrap_or("?")
        ));
    }
    line
}
