//! Copying every committed version of one store into another (`intact migrate`): the
//! embedded data dir into PostgreSQL + S3, or any backends into any others.
//!
//! * **Through the front door.** Each version is re-published into the target through the
//!   same protocol a client uses (open, stage, commit), so the target's invariants hold by
//!   construction: a version lands whole or not at all, a blob is registered before its bytes
//!   are stored, and a version never names bytes that are not in place.
//! * **Resumable.** Every open carries an idempotency key derived from the version, so a run
//!   that was interrupted resumes its transaction (or finds the version committed) instead of
//!   being locked out by it; blobs already in the target are not copied again. Running it
//!   again after it finished copies nothing.
//! * **Verified.** Bytes are hashed as they stream into the target and refused if they do not
//!   match the source's digest (a damaged source is reported, never copied); a version the
//!   target already holds must have identical content, else it is reported as a conflict.
//!   [`verify_copy`] then checks every source version against the target.
//! * **In source commit order**, read from the source's event log, so listings in the target
//!   come out in the same order. What the target cannot keep: each copied version's
//!   `created_at`, transaction id and event number are the target's own.

use std::sync::Arc;
use std::time::Duration;

use intact_core::{Digest, FileEntry, Manifest};

use crate::catalog::{CommitOutcome, OpenOutcome, VersionSpec};
use crate::{BeginRequest, Error, Result, Store};

/// How many events are read from the source per page.
const PAGE: u32 = 500;

/// What a migration did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MigrateReport {
    pub versions_copied: u64,
    /// Versions the target already held with identical content (an earlier, interrupted run).
    pub versions_already_there: u64,
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    /// Files whose blob the target already held (deduplicated or copied earlier).
    pub blobs_already_there: u64,
    /// API tokens copied (their secrets' hashes, scopes, dates and revocations), so every
    /// token works against the target as it did against the source.
    pub tokens_copied: u64,
    /// Tokens the target already held with the same secret (an earlier run).
    pub tokens_already_there: u64,
    /// Versions that could not be copied, with why (a conflict in the target, damaged or
    /// missing source bytes). The run goes on past them.
    pub problems: Vec<String>,
}

/// Progress reported after every version: (versions seen so far, bytes copied so far).
pub type MigrateProgress<'a> = &'a (dyn Fn(&MigrateReport) + Send + Sync);

/// Copies every version committed in `source` into `target`.
pub async fn migrate(source: &Store, target: &Store, progress: MigrateProgress<'_>) -> Result<MigrateReport> {
    let mut report = MigrateReport::default();
    let mut after = 0;
    loop {
        let events = source.catalog().events(after, PAGE).await?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        for ev in events.iter().filter(|e| e.kind == "committed") {
            // Evicted (proxy caches) since: nothing to copy.
            let Some(m) = source.catalog().manifest(&ev.repo, &ev.name, &ev.version).await? else {
                continue;
            };
            match copy_version(source, target, &m, &mut report).await {
                Ok(()) => {}
                Err(Problem::Version(why)) => report
                    .problems
                    .push(format!("{}/{}@{}: {why}", m.repo, m.name, m.version)),
                // A backend failing (unreachable, full) stops the run; it resumes where it stopped.
                Err(Problem::Store(e)) if e.is_transient() => return Err(e),
                Err(Problem::Store(e)) => report
                    .problems
                    .push(format!("{}/{}@{}: {e}", m.repo, m.name, m.version)),
            }
            progress(&report);
        }
    }
    copy_tokens(source, target, &mut report).await?;
    Ok(report)
}

/// Copies every token, revoked ones too (a name is never reused, and a revoked token must
/// stay refused). A different token of the same name in the target is reported, not replaced.
async fn copy_tokens(source: &Store, target: &Store, report: &mut MigrateReport) -> Result<()> {
    let existing = target.catalog().tokens().await?;
    for token in source.catalog().tokens().await? {
        if target.catalog().import_token(&token).await? {
            report.tokens_copied += 1;
            continue;
        }
        match existing.iter().find(|t| t.name == token.name) {
            Some(t) if t.secret_sha256 == token.secret_sha256 => report.tokens_already_there += 1,
            _ => report.problems.push(format!(
                "token {}: the target already has a different token of that name; not copied",
                token.name
            )),
        }
    }
    Ok(())
}

/// Why one version was not copied.
enum Problem {
    /// Something about this version (damaged source bytes, other content in the target).
    Version(String),
    Store(Error),
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        Self::Store(e)
    }
}

/// The idempotency key under which `m` is copied: the same for every run, so a resumed run
/// finds its transaction.
fn migration_key(m: &Manifest) -> String {
    format!("intact-migrate:{}@{}", m.name, m.version)
}

async fn copy_version(source: &Store, target: &Store, m: &Manifest, report: &mut MigrateReport) -> Result<(), Problem> {
    let opened = target
        .begin(BeginRequest {
            repo: m.repo.clone(),
            name: m.name.clone(),
            version: VersionSpec::Exact(m.version.clone()),
            metadata: m.metadata.clone(),
            lease: Some(Duration::from_secs(3600).min(target.config().max_lease)),
            idempotency_key: Some(migration_key(m)),
            wait: Duration::ZERO,
            base: None,
        })
        .await?;
    let txn = match opened {
        OpenOutcome::Committed(_, existing) => {
            same_content(m, &existing)?;
            report.versions_already_there += 1;
            return Ok(());
        }
        OpenOutcome::Created(t) | OpenOutcome::Resumed(t) => t,
    };
    let staged = async {
        for file in &m.files {
            // Registered first, so no sweep of the target can delete the blob between the
            // check below and the commit.
            target.catalog().stage_file(&txn.id, file, None).await?;
            if target.blobs().size(&file.sha256).await? == Some(file.size) {
                report.blobs_already_there += 1;
            } else {
                copy_blob(source, target, file).await?;
                report.blobs_copied += 1;
                report.bytes_copied += file.size;
            }
        }
        Ok(target.commit(&txn.id).await?)
    }
    .await;
    match staged {
        Ok(CommitOutcome::Committed(_)) => {
            report.versions_copied += 1;
            Ok(())
        }
        Ok(CommitOutcome::AlreadyCommitted(existing)) => {
            report.versions_already_there += 1;
            same_content(m, &existing)
        }
        Err(e) => {
            // Leave nothing half-open behind a problem; a retry opens afresh.
            let _ = target.abort(&txn.id).await;
            Err(e)
        }
    }
}

/// Streams one blob from `source` to `target`, hashing it on the way; refuses bytes that do
/// not match the digest the source's catalog recorded.
async fn copy_blob(source: &Store, target: &Store, file: &FileEntry) -> Result<(), Problem> {
    let mut read = source.blobs().read(&file.sha256, None).await?;
    let pending = target.blobs().write(&mut read.body, None).await?;
    if pending.digest != file.sha256 || pending.size != file.size {
        return Err(Problem::Version(format!(
            "the source's bytes for {} ({}) hash to {} ({} bytes), not to what its catalog records ({} bytes): \
             not copied; `intact verify` on the source names the versions it breaks",
            file.path, file.sha256, pending.digest, pending.size, file.size
        )));
    }
    Ok(target.blobs().persist(pending).await?)
}

fn same_content(source: &Manifest, target: &Manifest) -> Result<(), Problem> {
    if source.files == target.files && source.metadata == target.metadata {
        Ok(())
    } else {
        Err(Problem::Version(
            "the target already holds this version with other content (files or metadata differ)".into(),
        ))
    }
}

/// What [`verify_copy`] found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CopyCheck {
    pub versions_checked: u64,
    pub blobs_checked: u64,
    /// Source versions missing from the target or different there, and blobs the target lacks
    /// or holds at another size.
    pub problems: Vec<String>,
}

/// Checks that every version committed in `source` is in `target` with identical files and
/// metadata, and that the target holds every blob they name at its size (in batches).
pub async fn verify_copy(source: &Store, target: &Arc<Store>) -> Result<CopyCheck> {
    let mut check = CopyCheck::default();
    let mut after = 0;
    loop {
        let events = source.catalog().events(after, PAGE).await?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        let mut digests: Vec<(Digest, u64, String)> = Vec::new();
        for ev in events.iter().filter(|e| e.kind == "committed") {
            let Some(m) = source.catalog().manifest(&ev.repo, &ev.name, &ev.version).await? else {
                continue;
            };
            check.versions_checked += 1;
            let what = format!("{}/{}@{}", m.repo, m.name, m.version);
            match target.catalog().manifest(&m.repo, &m.name, &m.version).await? {
                None => check.problems.push(format!("{what} is missing from the target")),
                Some(t) if same_content(&m, &t).is_err() => {
                    check.problems.push(format!("{what} differs in the target"));
                }
                Some(_) => digests.extend(m.files.iter().map(|f| (f.sha256, f.size, format!("{what}:{}", f.path)))),
            }
        }
        let mut wanted: Vec<Digest> = digests.iter().map(|d| d.0).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let sizes = target.blobs().sizes(&wanted).await?;
        check.blobs_checked += wanted.len() as u64;
        for (digest, size, file) in digests {
            match sizes.get(&digest) {
                Some(s) if *s == size => {}
                Some(s) => check.problems.push(format!(
                    "{file}: the target's blob {digest} holds {s} bytes, not {size}"
                )),
                None => check.problems.push(format!("{file}: the target lacks blob {digest}")),
            }
        }
    }
    Ok(check)
}
