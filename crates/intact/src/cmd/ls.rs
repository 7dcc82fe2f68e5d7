//! `intact ls REPO [NAME]`: names of a repo, or versions of a name (oldest first).

use std::process::ExitCode;

use serde_json::Value;

use crate::ServerArgs;
use crate::client::{Client, encode_path};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// The repository to list.
    repo: String,
    /// A name whose versions to list (oldest first); without it, the repo's names.
    name: Option<String>,
    /// Only names starting with this prefix.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Print JSON lines instead of plain text.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server)?;
    let repo = encode_path(&args.repo);
    let mut after: Option<String> = None;
    let mut listed = 0usize;
    loop {
        let cursor = after
            .as_deref()
            .map(|a| format!("&after={}", encode_path(a)))
            .unwrap_or_default();
        let (items_key, path) = match &args.name {
            Some(name) => (
                "versions",
                format!(
                    "/api/v1/repos/{repo}/{}/@versions?limit=10000{cursor}",
                    encode_path(name)
                ),
            ),
            None => (
                "names",
                format!(
                    "/api/v1/repos/{repo}/names?limit=10000&prefix={}{cursor}",
                    encode_path(&args.prefix)
                ),
            ),
        };
        let page = client.get_json(&path).await?;
        for item in page.get(items_key).and_then(Value::as_array).into_iter().flatten() {
            listed += 1;
            if args.json {
                println!("{item}");
            } else if let Some(s) = item.as_str() {
                println!("{s}");
            } else {
                println!(
                    "{}\t{}\t{}\t{}",
                    item.get("version").and_then(Value::as_str).unwrap_or("?"),
                    item.get("created_at").and_then(Value::as_str).unwrap_or("?"),
                    super::size(item.get("size").and_then(Value::as_u64).unwrap_or(0)),
                    super::count(item.get("files").and_then(Value::as_u64).unwrap_or(0), "file")
                );
            }
        }
        match page.get("next").and_then(Value::as_str) {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    if listed == 0
        && let Some(name) = &args.name
    {
        eprintln!("error: repo {} has no version of {name}", args.repo);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
