//! `intact ready`: asks the server's `/readyz` and exits 0 when it is ready, 1 (with the
//! server's reason) when not or unreachable. For container health checks and scripts that
//! wait for a server to come up.

use std::process::ExitCode;
use std::time::Duration;

use crate::ServerArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Give up after this many seconds without an answer.
    #[arg(long, default_value_t = 10)]
    timeout_seconds: u64,
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
    match answer {
        Ok(resp) => {
            let ready = resp.status().is_success();
            let text = resp.text().await.unwrap_or_default();
            if ready {
                println!("{}", text.trim());
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{}", text.trim());
                Ok(ExitCode::FAILURE)
            }
        }
        Err(e) => {
            eprintln!("not ready: {url}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
