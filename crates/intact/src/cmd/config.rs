//! `intact config check FILE`: validates a server configuration without opening anything
//! (no data dir, no database, no bucket), naming every problem found, so a change can be
//! checked before a restart picks it up. `intact serve` runs the same checks first.

use std::path::PathBuf;
use std::process::ExitCode;

use intact_server::Config;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Check a configuration file: its syntax, every setting's value, the repos' relations,
    /// and the TLS certificate it names. Exit status 1 with every problem when it is not valid.
    Check {
        /// The TOML file (see docs/configuration.md).
        file: PathBuf,
        /// Print `{"file", "ok", "problems": [...]}` (and, when valid, what the server would
        /// use: `listen`, `tls`, `catalog`, `blobs`, `repos`) as one JSON document instead of
        /// text; the exit status is the same.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Command::Check { file, json } = args.command;
    let shown = file.display().to_string();
    // Not valid: every problem named (on stderr, or in the JSON document), exit status 1.
    // `fatal`: one problem that stopped the check (unreadable file, bad syntax).
    let refuse = |problems: &[String], fatal: bool| -> anyhow::Result<ExitCode> {
        if json {
            super::print_json(&json!({"file": shown, "ok": false, "problems": problems}))?;
        } else if fatal {
            for p in problems {
                eprintln!("{shown}: {p}");
            }
        } else {
            eprintln!("{shown}: {}:", super::count(problems.len() as u64, "problem"));
            for p in problems {
                eprintln!("  - {p}");
            }
        }
        Ok(ExitCode::FAILURE)
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => return refuse(&[format!("cannot be read: {e}")], true),
    };
    // Syntax and types first: the parser stops at the first error (with its line).
    let config = match Config::parse_unchecked(&text) {
        Ok(c) => c,
        Err(e) => return refuse(&[format!("{e:#}")], true),
    };
    let mut problems = config.problems();
    if let Some(tls) = &config.tls
        && let Err(e) = intact_server::tls::ReloadableCert::load(tls)
    {
        problems.push(format!("tls: {e:#}"));
    }
    if !problems.is_empty() {
        return refuse(&problems, false);
    }
    let catalog = match config.catalog.choice() {
        // Without its query string, which may carry a password (`?password=`).
        Ok(intact_store::CatalogChoice::Postgres { url }) => match url.split_once('?') {
            Some((base, _)) => format!("{}?...", intact_store::redact(base)),
            None => intact_store::redact(&url),
        },
        _ => format!("embedded SQLite in {}", config.data_dir.display()),
    };
    let blobs = match config.blobs.settings() {
        Ok(intact_store::BlobSettings::S3(s3, _)) => format!("S3 bucket {}", s3.bucket),
        _ => format!("files in {}", config.data_dir.display()),
    };
    let repos: Vec<String> = config.repos.iter().map(|r| r.name.to_string()).collect();
    if json {
        super::print_json(&json!({
            "file": shown,
            "ok": true,
            "problems": [],
            "listen": config.listen,
            "tls": config.tls.is_some(),
            "catalog": catalog,
            "blobs": blobs,
            "repos": repos,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{shown}: valid");
    println!(
        "  listen   {}{}",
        config.listen,
        if config.tls.is_some() { " (TLS)" } else { "" }
    );
    println!("  catalog  {catalog}");
    println!("  blobs    {blobs}");
    println!("  repos    {}", repos.join(", "));
    Ok(ExitCode::SUCCESS)
}
