//! `intact go ...`: Go module commands.
//!
//! `intact go publish DIR --module M --version vX.Y.Z` builds the module zip from DIR the way
//! the go command would (`golang.org/x/mod/zip` file selection, deterministic bytes), prints
//! the `h1:` hash go.sum will hold for it, and uploads it to a hosted Go repo, which checks
//! and commits it atomically. Publishing the same content again succeeds; different content
//! for an existing version is refused (409).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio_util::io::ReaderStream;

use crate::ServerArgs;
use crate::client::{Client, encode_path};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: GoCommand,
}

#[derive(clap::Subcommand)]
enum GoCommand {
    /// Build a module zip from a directory and publish it to a hosted Go repo.
    Publish(PublishArgs),
}

#[derive(clap::Args)]
struct PublishArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The module's root directory (where its go.mod is, if it has one).
    dir: PathBuf,
    /// The module path [default: the module directive of DIR/go.mod].
    #[arg(long)]
    module: Option<String>,
    /// The version to publish: a canonical semantic version such as v1.2.3 (v2+ modules
    /// need a /vN path suffix, or +incompatible without a go.mod).
    #[arg(long)]
    version: String,
    /// The hosted Go repo to publish into.
    #[arg(long, default_value = "go-private")]
    repo: String,
    /// Print the result as one JSON document instead of the go.sum line: the server's answer
    /// (`module`, `version`, `h1`, `go_mod_h1`, ...), `created`, and `go_sum`, the lines go.sum
    /// holds for this version.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        GoCommand::Publish(a) => publish(a).await,
    }
}

/// Percent-encodes a query value: a module path keeps its `/`s, and `+` must not become a space.
fn query_value(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, crate::client::URL_ENCODED).to_string()
}

async fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let module = match &args.module {
        Some(m) => m.clone(),
        None => {
            let go_mod = args.dir.join("go.mod");
            let text =
                std::fs::read(&go_mod).with_context(|| format!("reading {} (or pass --module)", go_mod.display()))?;
            match intact_go::gomod::parse_module_path(&text).with_context(|| format!("reading {}", go_mod.display()))? {
                Some(m) => m,
                None => bail!("{} has no module directive; pass --module", go_mod.display()),
            }
        }
    };
    intact_go::module_path::check_canonical(&module, &args.version).context("cannot publish this module version")?;

    // Build the zip on a blocking thread: it walks and reads the whole tree.
    let zip = tempfile::Builder::new()
        .prefix("intact-go-")
        .suffix(".zip")
        .tempfile()
        .context("creating a temp file")?;
    let (zip_file, zip_path) = zip.into_parts();
    let dir = args.dir.clone();
    let (m, v) = (module.clone(), args.version.clone());
    let created = tokio::task::spawn_blocking(move || {
        let mut out = std::io::BufWriter::new(zip_file);
        let created = intact_go::zip::create_from_dir(&dir, &m, &v, &mut out)?;
        let file = out.into_inner().map_err(|e| intact_go::GoError::Io(e.into_error()))?;
        file.sync_all()?;
        Ok::<_, intact_go::GoError>(created)
    })
    .await
    .context("zip task")?
    .with_context(|| {
        format!(
            "building the module zip of {module}@{} from {}",
            args.version,
            args.dir.display()
        )
    })?;
    let size = std::fs::metadata(&zip_path)?.len();
    eprintln!(
        "built {module}@{}: {}, {}",
        args.version,
        super::count(created.files.len() as u64, "file"),
        super::size(size)
    );

    let client = Client::new(&args.server)?;
    let url = client.url(&format!(
        "/go/{}/publish?module={}&version={}",
        encode_path(&args.repo),
        query_value(&module),
        query_value(&args.version)
    ));
    let file = tokio::fs::File::open(&zip_path).await?;
    let resp = client
        .http
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/zip")
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(ReaderStream::with_capacity(
            file,
            256 * 1024,
        )))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let resp = Client::check(resp)
        .await
        .with_context(|| format!("publishing {module}@{} to repo {}", args.version, args.repo))?;
    let status = resp.status();
    let answer: Value = resp.json().await.context("reading the server's answer")?;
    let server_h1 = answer["h1"].as_str().unwrap_or_default();
    if server_h1 != created.h1 {
        bail!(
            "the server hashed the zip to {server_h1}, but it was built as {}",
            created.h1
        );
    }
    if status == reqwest::StatusCode::CREATED {
        eprintln!("published {module}@{} to repo {}", args.version, args.repo);
    } else {
        eprintln!(
            "{module}@{} was already published to repo {} with identical content",
            args.version, args.repo
        );
    }
    // The go.sum line, only once the server holds the module: printed before, a failed
    // publish left a line for a version nobody can download.
    let go_sum_line = format!("{module} {} {}", args.version, created.h1);
    if args.json {
        let mut go_sum = vec![go_sum_line];
        if let Some(h1) = answer["go_mod_h1"].as_str() {
            go_sum.push(format!("{module} {}/go.mod {h1}", args.version));
        }
        let mut report = answer;
        report["created"] = json!(status == reqwest::StatusCode::CREATED);
        report["go_sum"] = json!(go_sum);
        super::print_json(&report)?;
    } else {
        println!("{go_sum_line}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_keep_plus_signs() {
        assert_eq!(query_value("v2.0.0+incompatible"), "v2.0.0%2Bincompatible");
        assert_eq!(query_value("github.com/Azure/x~y"), "github.com/Azure/x~y");
        assert_eq!(query_value("a b&c"), "a%20b%26c");
        // As before it used `percent-encoding`: `%`, `#`, `?`, `@` and non-ASCII encoded.
        assert_eq!(query_value("50%#x?y"), "50%25%23x%3Fy");
        assert_eq!(query_value("example.com/m@v1"), "example.com/m%40v1");
        assert_eq!(query_value("é/日"), "%C3%A9/%E6%97%A5");
    }
}
