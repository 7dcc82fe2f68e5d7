//! Blob bookkeeping: garbage-collection sweeps and walks over committed blobs.
//!
//! The sweep contract asks for mutual exclusion per digest with `stage_file`. Here the
//! single write connection gives more: each batch runs in one `BEGIN IMMEDIATE`
//! transaction, so no `stage_file` of any digest runs while the batch checks and deletes.
//! A batch therefore ends after a few milliseconds, and finding candidates (a walk over the
//! blob records) happens on the read connection, outside any write transaction.

use super::*;

pub(super) async fn check_writable(cat: &SqliteCatalog) -> Result<()> {
    // Rewrites one existing row: a real write through the WAL, but no change. Committed
    // without the write notification: nothing changed that event followers or flight
    // waiters need to look at (readiness probes would wake them every second).
    let (mut tx, _) = cat.begin().await?;
    sqlx::query("UPDATE schema_migrations SET applied_at = applied_at WHERE version = 1")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// How long one sweep transaction may hold the single writer. Publishes wait for it, so it
/// stays short: a batch ends early once it has held the writer this long.
const WRITER_HOLD: std::time::Duration = std::time::Duration::from_millis(5);

const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM files f WHERE f.digest = b.digest)
                            AND NOT EXISTS (SELECT 1 FROM staged s WHERE s.digest = b.digest)";

pub(super) async fn sweep_blobs(
    cat: &SqliteCatalog,
    min_age: Duration,
    digests: &[Digest],
    blobs: &dyn BlobStore,
) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let mut rest = digests;
    while !rest.is_empty() {
        let (mut tx, now) = cat.begin().await?;
        let held = std::time::Instant::now();
        let mut done = 0;
        for d in rest.iter().take(SWEEP_BATCH as usize) {
            done += 1;
            let size: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT size FROM blobs b WHERE digest = ? AND registered <= ? AND {UNREFERENCED}"
            ))
            .bind(d.to_hex())
            // No age asked: no age condition, even if the clock stepped back since staging.
            .bind(if min_age.is_zero() {
                i64::MAX
            } else {
                now.minus(min_age).millis()
            })
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(size) = size {
                // The bytes go first, the record after: a crash in between leaves a record
                // without bytes (swept again), never bytes nobody knows of.
                blobs.delete(d).await?;
                sqlx::query("DELETE FROM blobs WHERE digest = ?")
                    .bind(d.to_hex())
                    .execute(&mut *tx)
                    .await?;
                report.blobs_deleted += 1;
                report.bytes_deleted += u64_of(size);
            }
            if held.elapsed() >= WRITER_HOLD {
                break;
            }
        }
        cat.commit(tx).await?;
        rest = &rest[done..];
    }
    Ok(report)
}

pub(super) async fn unreferenced_blobs(
    cat: &SqliteCatalog,
    after: Option<&Digest>,
    min_age: Duration,
    limit: u32,
) -> Result<BlobPage> {
    // The read connection: a snapshot, and nothing a publish waits for.
    let cutoff = cat.clock.now().minus(min_age);
    let rows = sqlx::query(&format!(
        "SELECT b.digest, (b.registered <= ? AND {UNREFERENCED}) AS unreferenced
         FROM blobs b WHERE b.digest > ? ORDER BY b.digest LIMIT ?"
    ))
    .bind(cutoff.millis())
    .bind(after.map(Digest::to_hex).unwrap_or_default())
    .bind(i64::from(limit))
    .fetch_all(&cat.read)
    .await?;
    let mut page = BlobPage::default();
    for r in &rows {
        let hex: String = r.try_get("digest")?;
        let d = Digest::parse(&hex).map_err(|e| corrupt(e.to_string()))?;
        page.scanned += 1;
        if r.try_get::<i64, _>("unreferenced")? != 0 {
            page.candidates.push(d);
        }
        page.last = Some(d);
    }
    Ok(page)
}

pub(super) async fn sweep_orphans(
    cat: &SqliteCatalog,
    candidates: &[Digest],
    blobs: &dyn BlobStore,
) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let mut rest = candidates;
    while !rest.is_empty() {
        let (mut tx, _) = cat.begin().await?;
        let held = std::time::Instant::now();
        let mut done = 0;
        for d in rest.iter().take(SWEEP_BATCH as usize) {
            done += 1;
            let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = ?")
                .bind(d.to_hex())
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_none() {
                let size = blobs.size(d).await?.unwrap_or(0);
                blobs.delete(d).await?;
                report.blobs_deleted += 1;
                report.bytes_deleted += size;
            }
            if held.elapsed() >= WRITER_HOLD {
                break;
            }
        }
        // Nothing written: ending it frees the writer without waking event followers.
        tx.rollback().await?;
        rest = &rest[done..];
    }
    Ok(report)
}

pub(super) async fn committed_blobs(
    cat: &SqliteCatalog,
    after: Option<&Digest>,
    limit: u32,
) -> Result<Vec<(Digest, u64)>> {
    let rows = sqlx::query(
        "SELECT digest, MAX(size) AS size FROM files WHERE digest > ? GROUP BY digest ORDER BY digest LIMIT ?",
    )
    .bind(after.map(Digest::to_hex).unwrap_or_default())
    .bind(i64::from(limit))
    .fetch_all(&cat.read)
    .await?;
    rows.iter()
        .map(|r| {
            let hex: String = r.try_get("digest")?;
            Ok((
                Digest::parse(&hex).map_err(|e| corrupt(e.to_string()))?,
                u64_of(r.try_get("size")?),
            ))
        })
        .collect()
}

pub(super) async fn blob_users(cat: &SqliteCatalog, digest: &Digest, limit: u32) -> Result<Vec<BlobUser>> {
    let rows = sqlx::query(
        "SELECT v.repo, v.name, v.version, f.path FROM files f JOIN versions v ON v.id = f.version_id
         WHERE f.digest = ? ORDER BY v.repo, v.name, v.id, f.path LIMIT ?",
    )
    .bind(digest.to_hex())
    .bind(i64::from(limit))
    .fetch_all(&cat.read)
    .await?;
    rows.iter()
        .map(|r| {
            let (repo, name, version) = parse_ids(r)?;
            let path: String = r.try_get("path")?;
            Ok(BlobUser {
                repo,
                name,
                version,
                path: FilePath::parse(&path).map_err(|e| corrupt(e.to_string()))?,
            })
        })
        .collect()
}
