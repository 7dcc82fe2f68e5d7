//! `intact repos`: the repositories the server has (those the caller may read), one per line.

use std::process::ExitCode;

use serde_json::Value;

use crate::ServerArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Print each repository's whole configuration as a JSON line instead of plain text.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server)?;
    let answer = client.get_json("/api/v1/repos").await?;
    for repo in answer["repos"].as_array().into_iter().flatten() {
        if args.json {
            println!("{repo}");
            continue;
        }
        let text = |key: &str| repo[key].as_str().unwrap_or("-").to_owned();
        let detail = match repo["kind"].as_str() {
            Some("proxy") => format!("upstream {}", text("upstream")),
            Some("group") => {
                let members: Vec<&str> = repo["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                format!("members {}", members.join(", "))
            }
            _ => String::new(),
        };
        println!("{}\t{}\t{}\t{detail}", text("name"), text("kind"), text("format"));
    }
    Ok(ExitCode::SUCCESS)
}
