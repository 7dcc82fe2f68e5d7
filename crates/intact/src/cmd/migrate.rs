//! `intact migrate`: copy a stopped server's embedded data dir (SQLite + files) to a
//! PostgreSQL catalog and an S3-compatible bucket, resumably, then check the copy.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use intact_store::migrate::{CopyCheck, MigrateReport, migrate, verify_copy};
use intact_store::{BlobSettings, CatalogChoice, S3Settings, Store, StoreConfig};

#[derive(clap::Args)]
pub struct Args {
    /// The embedded data dir to copy from (its server must be stopped).
    #[arg(long, env = "INTACT_DATA_DIR", default_value = "./intact-data")]
    data_dir: PathBuf,
    /// The PostgreSQL catalog to copy into (postgres://user@host/database).
    #[arg(long)]
    to_catalog: String,
    /// The S3-compatible bucket to copy blobs into (s3://bucket/prefix); credentials come
    /// from the AWS_* environment variables.
    #[arg(long)]
    to_blobs: String,
    /// The S3 API's URL, for stores other than AWS (e.g. http://garage:3900).
    #[arg(long)]
    to_blobs_endpoint: Option<String>,
    /// The bucket's region.
    #[arg(long)]
    to_blobs_region: Option<String>,
    /// Skip the final check of every version against the target.
    #[arg(long)]
    no_verify: bool,
    /// Print `{"copy": {...}, "check": {...} or null, "ok": bool}` (what was copied, what the
    /// check of the target found) as one JSON document instead of text; no progress display.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let catalog = CatalogChoice::from_url(Some(&args.to_catalog)).map_err(|e| anyhow::anyhow!("--to-catalog: {e}"))?;
    let mut s3 = S3Settings::from_url(&args.to_blobs).map_err(|e| anyhow::anyhow!("--to-blobs: {e}"))?;
    s3.endpoint = args.to_blobs_endpoint.clone();
    s3.region = args.to_blobs_region.clone();

    let source = Store::open_local(&args.data_dir, StoreConfig::default())
        .await
        .with_context(|| format!("opening the data dir {} to copy from", args.data_dir.display()))?;
    // The target needs no local state of its own beyond scratch space for uploads.
    let scratch = tempfile::tempdir().context("creating a scratch dir")?;
    let target = Store::open(
        scratch.path(),
        &catalog,
        &BlobSettings::S3(s3, None),
        StoreConfig::default(),
    )
    .await
    .context("opening the target (catalog and blob store)")?;

    let total = u64::try_from(source.catalog().last_event_seq().await?).unwrap_or(0);
    let bar = if super::bars(args.json) {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} copying versions {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let show = |r: &MigrateReport| {
        bar.set_message(format!(
            "{} copied, {} already there, {} / {} copied, {}",
            super::count(r.versions_copied, "version"),
            r.versions_already_there,
            super::count(r.blobs_copied, "blob"),
            super::size(r.bytes_copied),
            super::count(r.problems.len() as u64, "problem")
        ));
        bar.tick();
    };
    let report = migrate(&source, &target, &show)
        .await
        .context("the copy stopped (a backend failed); run the same command again to resume where it stopped")?;
    bar.finish_and_clear();
    if !args.json {
        print!("{}", describe_copy(&report));
    }
    let mut ok = report.problems.is_empty();
    let mut checked = None;
    if !args.no_verify {
        let check = verify_copy(&source, &Arc::clone(&target))
            .await
            .context("checking the copy")?;
        if !args.json {
            print!("{}", describe_check(&check));
        }
        ok &= check.problems.is_empty();
        checked = Some(check);
    }
    if args.json {
        super::print_json(&serde_json::json!({"copy": report, "check": checked, "ok": ok}))?;
    }
    if ok {
        eprintln!("migrated: point the replicas' [catalog] url and [blobs] url at the target");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "migration finished with problems ({}); the rest was copied",
            if args.json { "in the report" } else { "listed above" }
        );
        Ok(ExitCode::FAILURE)
    }
}

/// What was copied, for people: one line each for versions, blobs and tokens, then each
/// problem.
fn describe_copy(r: &MigrateReport) -> String {
    let mut out = format!(
        "copied {} ({} already there)\n",
        super::count(r.versions_copied, "version"),
        r.versions_already_there
    );
    out += &format!(
        "copied {} ({}; {} already there)\n",
        super::count(r.blobs_copied, "blob"),
        super::size(r.bytes_copied),
        r.blobs_already_there
    );
    out += &format!(
        "copied {} ({} already there)\n",
        super::count(r.tokens_copied, "token"),
        r.tokens_already_there
    );
    out += &describe_problems(&r.problems);
    out
}

/// The check of the target, for people.
fn describe_check(c: &CopyCheck) -> String {
    let mut out = format!(
        "checked {} and {} in the target\n",
        super::count(c.versions_checked, "version"),
        super::count(c.blobs_checked, "blob")
    );
    out += &describe_problems(&c.problems);
    out
}

fn describe_problems(problems: &[String]) -> String {
    let mut out = String::new();
    if !problems.is_empty() {
        out += &format!("{}:\n", super::count(problems.len() as u64, "problem"));
        for p in problems {
            out += &format!("  - {p}\n");
        }
    }
    out
}
