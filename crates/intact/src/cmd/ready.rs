//! `intact ready`: asks the server's `/readyz` and exits 0 when it is ready, 1 (with the
//! server's reason) when not or unreachable. For container health checks and scripts that
//! wait for a server to come up.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use crate::ServerArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Give up after this many seconds without an answer.
    #[arg(long, default_value_t = 10)]
    timeout_seconds: u64,
    /// Print `{"ready": bool, "reason": "..."}` (`reason` only when not ready) as one JSON
    /// document instead of text; the exit status is the same.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server)?;
    let url = client.url("/readyz");
    let answer = client
        .http
        .get(&url)
        .timeout(Duration::from_secs(args.timeout_seconds))
        .send()
        .await;
    let (ready, text) = match answer {
        Ok(resp) => {
            let status = resp.status();
            let ready = status.is_success();
            let text = resp.text().await.unwrap_or_default().trim().to_owned();
            if text.is_empty() && !ready {
                (ready, format!("not ready: {url} answered {status}"))
            } else {
                (ready, text)
            }
        }
        Err(e) => (false, format!("not ready: {url}: {e}")),
    };
    if args.json {
        let mut report = json!({ "ready": ready });
        if !ready {
            let reason = text.strip_prefix("not ready: ").unwrap_or(&text);
            report["reason"] = json!(reason);
        }
        super::print_json(&report)?;
    } else if ready {
        println!("{text}");
    } else {
        eprintln!("{text}");
    }
    Ok(if ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
