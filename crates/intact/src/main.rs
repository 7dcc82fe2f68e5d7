//! The `intact` command: a thin shell that parses arguments and calls into the server crate
//! (`serve`) or talks HTTP to a running server (everything else).

mod client;
mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "intact",
    version,
    about = "An artifact store and caching proxy where every version lands whole or not at all"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines on stderr look: `human` (one line of text each) or `json` (one JSON
    /// object each, for log shippers). Which lines: INTACT_LOG (e.g. `info`,
    /// `info,intact::access=off`).
    #[arg(long, env = "INTACT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Human,
    Json,
}

/// Where the CLI finds the server.
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// Base URL of the intact server.
    #[arg(long, env = "INTACT_SERVER", default_value = "http://127.0.0.1:7333", global = true)]
    pub server: String,
    /// API token sent to the server (default: `token` in the CLI config file,
    /// $XDG_CONFIG_HOME/intact/config.toml or ~/.config/intact/config.toml, or INTACT_CLI_CONFIG).
    #[arg(long, env = "INTACT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// PEM file of CA certificates to trust for an https server, besides the system's (a
    /// server with a certificate of a private CA, or a self-signed one).
    #[arg(long, env = "INTACT_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded SQLite + local files unless configured otherwise).
    Serve(cmd::serve::Args),
    /// Server configuration: `intact config check FILE` validates one without starting.
    Config(cmd::config::Args),
    /// Publish files (or directories) as one version, atomically.
    Publish(cmd::publish::Args),
    /// Download every file of a version, verifying each sha256.
    Get(cmd::get::Args),
    /// Whether the server is ready to serve (its /readyz): exit status 0 or 1.
    Ready(cmd::ready::Args),
    /// List the repositories.
    Repos(cmd::repos::Args),
    /// List the names of a repo, or the versions of a name.
    Ls(cmd::ls::Args),
    /// Collect garbage: expire overdue transactions, delete unreferenced blobs.
    Gc(cmd::admin::GcArgs),
    /// Re-hash every committed blob and report missing or damaged ones (exit status 1 if any).
    Verify(cmd::admin::VerifyArgs),
    /// Stage artifacts of a build into a staging repo (fetched from its upstream), with progress.
    Stage(cmd::stage::Args),
    /// Go modules: publish a module directory into a hosted Go repo.
    Go(cmd::go::Args),
    /// Copy a stopped server's embedded data dir to PostgreSQL + S3 (resumable, verified).
    Migrate(cmd::migrate::Args),
    /// Write a repo's versions (as of one commit, or since an earlier export) into a tar
    /// for another server, e.g. across an air gap (docs/transfer.md).
    Export(cmd::transfer::export::Args),
    /// Commit the versions of an `intact export` archive into this server, each atomically,
    /// every file's sha256 checked; needs an admin token (docs/transfer.md).
    Import(cmd::transfer::import::Args),
    /// Import by path: files already on a filesystem the server reads (inside its
    /// `[import] allowed_roots`) become one version, cloned, linked, moved or copied into the
    /// store by the server itself (docs/http-api.md).
    ImportFiles(cmd::import_files::Args),
    /// API tokens: create, list, revoke (docs/security.md).
    Token(cmd::token::Args),
    /// Webhooks: signed HTTP callbacks for commits, rollbacks and deletions (docs/operations.md).
    Hooks(cmd::hooks::Args),
    /// Tags: movable pointers to versions (`hero`, `approved`), moved by compare-and-swap,
    /// with their history (docs/publishing.md).
    Tag(cmd::tag::Args),
    /// Print a shell completion script: `intact completions bash > /etc/bash_completion.d/intact`.
    Completions(cmd::completions::Args),
}

/// Logs to stderr through a thread of its own: a request never waits for its access line to
/// be written. The returned guard flushes what is queued when dropped (at exit). When
/// stderr cannot keep up, lines are dropped rather than requests slowed.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INTACT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    // At most this many lines wait for stderr (a few MiB; the default, 128,000 lines, could
    // hold tens of MiB behind a stalled pipe).
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(8192)
        .lossy(true)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Human => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    guard
}

/// glibc's allocator serialises threads on its arena locks when memory allocated on one
/// thread is freed on another, which is every request here (a connection's task moves between
/// the runtime's workers): measured with `perf`, its lock waits and wakes were a large part
/// of the futex traffic under load. mimalloc frees into per-thread heaps without that lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One TLS provider for every HTTPS client in the process (upstream fetches, the CLI).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _flush_logs_at_exit = init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(a) => cmd::serve::run(a).await,
            Command::Config(a) => cmd::config::run(a),
            Command::Publish(a) => cmd::publish::run(a).await,
            Command::Get(a) => cmd::get::run(a).await,
            Command::Ready(a) => cmd::ready::run(a).await,
            Command::Repos(a) => cmd::repos::run(a).await,
            Command::Ls(a) => cmd::ls::run(a).await,
            Command::Gc(a) => cmd::admin::gc(a).await,
            Command::Verify(a) => cmd::admin::verify(a).await,
            Command::Stage(a) => cmd::stage::run(a).await,
            Command::Go(a) => cmd::go::run(a).await,
            Command::Migrate(a) => cmd::migrate::run(a).await,
            Command::Export(a) => cmd::transfer::export::run(a).await,
            Command::Import(a) => cmd::transfer::import::run(a).await,
            Command::ImportFiles(a) => cmd::import_files::run(a).await,
            Command::Token(a) => cmd::token::run(a).await,
            Command::Hooks(a) => cmd::hooks::run(a).await,
            Command::Tag(a) => cmd::tag::run(a).await,
            Command::Completions(a) => cmd::completions::run::<Cli>(a),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
