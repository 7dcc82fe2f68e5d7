//! `intact token create|list|revoke`: through a running server with an admin token, or on the
//! server's host straight against its catalog (`--config`, `--data-dir` or `--catalog-url`),
//! which needs no token at all: that is how the first admin token is made.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use intact_server::Config;
use intact_store::Catalog;
use intact_store::tokens::{self, Scope, TokenRecord};
use serde_json::{Value, json};

use crate::ServerArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Make a token; its secret is printed once, alone on the last line of standard output.
    Create(CreateArgs),
    /// List every token (revoked ones too), never their secrets.
    List(ListArgs),
    /// Revoke a token: requests presenting it are refused from the next one on.
    Revoke(RevokeArgs),
}

/// Where the tokens are: a running server (the default), or the catalog a configuration
/// names, worked on directly.
#[derive(clap::Args)]
struct Where {
    #[command(flatten)]
    server: ServerArgs,
    /// Work on the catalog this server configuration names (its data dir or PostgreSQL), not
    /// through a server; the server may be running.
    #[arg(long, env = "INTACT_CONFIG")]
    config: Option<PathBuf>,
    /// Work on the embedded catalog in this data dir, not through a server.
    #[arg(long, conflicts_with = "catalog_url")]
    data_dir: Option<PathBuf>,
    /// Work on this PostgreSQL catalog, not through a server.
    #[arg(long, hide_env_values = true)]
    catalog_url: Option<String>,
}

#[derive(clap::Args)]
struct ListArgs {
    /// Print each token as a JSON line (`name`, `scopes`, `created_at`, and `expires_at`,
    /// `revoked_at` when set) instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    at: Where,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The token's name (letters, digits, `-`, `_`, `.`, `@`); never reused.
    name: String,
    /// What the token may do: REPO:ACCESS, ACCESS one of read, publish, admin; REPO a repo
    /// name or `*`. Repeatable. `*:admin` may do everything, tokens included.
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// Expire after this long (e.g. `90d`, `12h`, `30min`); default: never.
    #[arg(long)]
    expires: Option<String>,
    /// Print the token (`name`, `scopes`, `created_at`, `expires_at` when set, and its
    /// `secret`) as one JSON document instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    at: Where,
}

#[derive(clap::Args)]
struct RevokeArgs {
    /// The token's name.
    name: String,
    /// Print the revoked token (`name`, `scopes`, `created_at`, `revoked_at`, ...) as one JSON
    /// document instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    at: Where,
}

/// The catalog to work on directly, when asked to. `creating`: a token is being made, and a
/// catalog missing from a data dir named by the server's configuration file is created (the
/// first admin token, made before the server's first start); a data dir typed on the command
/// line must hold one already.
async fn local_catalog(at: &Where, creating: bool) -> anyhow::Result<Option<Arc<dyn Catalog>>> {
    let mut missing = match (&at.config, &at.data_dir) {
        (Some(_), None) if creating => tokens::MissingCatalog::Create,
        _ => tokens::MissingCatalog::Refuse,
    };
    let (data_dir, choice) = match (&at.config, &at.data_dir, &at.catalog_url) {
        (None, None, None) => return Ok(None),
        (Some(path), dir, url) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let mut config = Config::from_toml(&text).with_context(|| format!("in {}", path.display()))?;
            // The data dir and catalog the server would use with this file: its flags, else
            // its environment (`intact serve` reads INTACT_DATA_DIR and INTACT_CATALOG_URL
            // over the file), else the file.
            let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
            if let Some(d) = dir.clone().or_else(|| env("INTACT_DATA_DIR").map(PathBuf::from)) {
                config.data_dir = d;
            }
            if let Some(u) = url
                .clone()
                .or_else(|| env("INTACT_CATALOG_URL").and_then(|v| v.into_string().ok()))
            {
                config.catalog.url = Some(u);
            }
            if config.data_dir.is_relative() && !config.data_dir.join("catalog.db").is_file() {
                // Relative to where the server was started, which this command cannot know:
                // a catalog made here could be one no server reads.
                if creating && config.catalog.url.is_none() {
                    bail!(
                        "{}'s data_dir {} is relative (to the directory the server starts in) and holds no \
                         catalog here: give the configuration an absolute data_dir, or start the server once \
                         and pass its data dir with --data-dir",
                        path.display(),
                        config.data_dir.display()
                    );
                }
                missing = tokens::MissingCatalog::Refuse;
            }
            (config.data_dir.clone(), config.catalog.choice()?)
        }
        (None, dir, url) => (
            dir.clone().unwrap_or_else(|| Config::default().data_dir),
            intact_store::CatalogChoice::from_url(url.as_deref()).map_err(|e| anyhow::anyhow!("--catalog-url: {e}"))?,
        ),
    };
    let existed = data_dir.join("catalog.db").is_file();
    let catalog = tokens::open_catalog(&data_dir, &choice, missing)
        .await
        .with_context(|| format!("opening the catalog (data dir {})", data_dir.display()))?;
    if choice == intact_store::CatalogChoice::Embedded && !existed {
        eprintln!(
            "created the catalog {} (the server's data dir, from its configuration)",
            data_dir.join("catalog.db").display()
        );
    }
    Ok(Some(catalog))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Create(a) => create(a).await,
        Command::List(a) => list(a).await,
        Command::Revoke(a) => revoke(a).await,
    }
}

async fn create(a: CreateArgs) -> anyhow::Result<ExitCode> {
    let scopes = a
        .scopes
        .iter()
        .map(|s| {
            s.parse::<Scope>()
                .map_err(|e| anyhow::anyhow!("--scope {s}: {}", e.rule))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let lifetime = match &a.expires {
        None => None,
        Some(text) => {
            let d = humantime::parse_duration(text)
                .with_context(|| format!("--expires {text:?}: a duration such as 90d, 12h or 30min"))?;
            if d.is_zero() {
                bail!("--expires must be longer than zero");
            }
            Some(d)
        }
    };
    let (record, secret) = match local_catalog(&a.at, true).await? {
        Some(catalog) => {
            let now = intact_core::Timestamp::from_system(std::time::SystemTime::now());
            let expires_at = lifetime.map(|d| now.plus(d));
            tokens::create(catalog.as_ref(), &a.name, scopes, expires_at).await?
        }
        None => {
            let client = Client::new(&a.at.server)?;
            let mut body = json!({"name": a.name, "scopes": a.scopes});
            if let Some(d) = lifetime {
                body["expires_in_seconds"] = json!(d.as_secs().max(1));
            }
            let (_, v) = client.post_json("/api/v1/tokens", &body).await?;
            let secret = v
                .get("secret")
                .and_then(Value::as_str)
                .context("the server's answer has no secret")?
                .to_owned();
            (record_of(&v)?, secret)
        }
    };
    if a.json {
        let mut report = serde_json::to_value(&record)?;
        report["secret"] = json!(secret);
        super::print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("created token {}: {}", record.name, describe(&record));
    println!("the secret below is shown only now; give it to the client as INTACT_TOKEN or `Authorization: Bearer`:");
    println!("{secret}");
    Ok(ExitCode::SUCCESS)
}

async fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let at = a.at;
    let all = match local_catalog(&at, false).await? {
        Some(catalog) => catalog.tokens().await?,
        None => {
            let v = Client::new(&at.server)?.get_json("/api/v1/tokens").await?;
            v.get("tokens")
                .and_then(Value::as_array)
                .context("the server's answer has no token list")?
                .iter()
                .map(record_of)
                .collect::<anyhow::Result<Vec<_>>>()?
        }
    };
    if a.json {
        for t in &all {
            println!("{}", serde_json::to_string(t)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no tokens: access control is off until the first one is made (unless [auth] required)");
    }
    for t in &all {
        println!("{:<24} {}", t.name, describe(t));
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(a: RevokeArgs) -> anyhow::Result<ExitCode> {
    let record = match local_catalog(&a.at, false).await? {
        Some(catalog) => {
            tokens::validate_token_name(&a.name).map_err(|e| anyhow::anyhow!("{}", e.rule))?;
            let record = catalog
                .revoke_token(&a.name)
                .await?
                .with_context(|| format!("no token named {}", a.name))?;
            // A running server remembers tokens briefly; past this none still believes it.
            tokio::time::sleep(tokens::REVOCATION_SETTLES).await;
            record
        }
        None => {
            let client = Client::new(&a.at.server)?;
            let resp = client
                .http
                .delete(client.url(&format!("/api/v1/tokens/{}", crate::client::encode_path(&a.name))))
                .header("content-type", "application/json")
                .send()
                .await
                .context("DELETE /api/v1/tokens")?;
            record_of(&Client::check(resp).await?.json::<Value>().await?)?
        }
    };
    if a.json {
        super::print_json(&record)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("revoked token {}: {}", record.name, describe(&record));
    Ok(ExitCode::SUCCESS)
}

/// A token as the server's JSON shows it.
fn record_of(v: &Value) -> anyhow::Result<TokenRecord> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let time = |k: &str| -> anyhow::Result<Option<intact_core::Timestamp>> {
        text(k)
            .map(|s| intact_core::Timestamp::parse_rfc3339(&s).with_context(|| format!("{k}: {s:?}")))
            .transpose()
    };
    Ok(TokenRecord {
        name: text("name").context("a token without a name")?,
        // The server never shows it.
        secret_sha256: String::new(),
        scopes: v
            .get("scopes")
            .and_then(Value::as_array)
            .context("a token without scopes")?
            .iter()
            .filter_map(Value::as_str)
            .map(|s| s.parse::<Scope>().map_err(|e| anyhow::anyhow!("scope {s}: {}", e.rule)))
            .collect::<anyhow::Result<Vec<_>>>()?,
        created_at: time("created_at")?.context("a token without created_at")?,
        expires_at: time("expires_at")?,
        revoked_at: time("revoked_at")?,
    })
}

fn describe(t: &TokenRecord) -> String {
    let scopes: Vec<String> = t.scopes.iter().map(ToString::to_string).collect();
    let mut s = format!("scopes {}; created {}", scopes.join(" "), t.created_at);
    if let Some(at) = t.expires_at {
        s.push_str(&format!("; expires {at}"));
    }
    if let Some(at) = t.revoked_at {
        s.push_str(&format!("; REVOKED {at}"));
    }
    s
}
