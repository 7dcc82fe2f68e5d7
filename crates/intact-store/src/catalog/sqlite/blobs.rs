//! Blob bookkeeping: garbage-collection sweeps and walks over committed blobs.
//!
//! The sweep contract asks for mutual exclusion per digest with `stage_file`. Here the
//! single write connection gives more: each batch runs in one `BEGIN IMMEDIATE`
//! transaction, so no `stage_file` of any digest runs while the batch checks and deletes.

use super::*;

pub(super) async fn check_writable(cat: &SqliteCatalog) -> Result<()> {
    // Rewrites one existing row: a real write through the WAL, but no change.
    let (mut tx, _) = cat.begin().await?;
    sqlx::query("UPDATE schema_migrations SET applied_at = applied_at WHERE version = 1")
        .execute(&mut *tx)
        .await?;
    cat.commit(tx).await
}

pub(super) async fn sweep_blobs(
    cat: &SqliteCatalog,
    min_age: Duration,
    only: Option<&[Digest]>,
    blobs: &dyn BlobStore,
) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM files f WHERE f.digest = b.digest)
                                AND NOT EXISTS (SELECT 1 FROM staged s WHERE s.digest = b.digest)";
    match only {
        Some(digests) => {
            for chunk in digests.chunks(SWEEP_BATCH as usize) {
                let (mut tx, _) = cat.begin().await?;
                for d in chunk {
                    let size: Option<i64> =
                        sqlx::query_scalar(&format!("SELECT size FROM blobs b WHERE digest = ? AND {UNREFERENCED}"))
                            .bind(d.to_hex())
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some(size) = size {
                        blobs.delete(d).await?;
                        sqlx::query("DELETE FROM blobs WHERE digest = ?")
                            .bind(d.to_hex())
                            .execute(&mut *tx)
                            .await?;
                        report.blobs_deleted += 1;
                        report.bytes_deleted += u64_of(size);
                    }
                }
                cat.commit(tx).await?;
            }
        }
        None => loop {
            let (mut tx, now) = cat.begin().await?;
            let rows = sqlx::query(&format!(
                "SELECT digest, size FROM blobs b WHERE registered <= ? AND {UNREFERENCED} LIMIT ?"
            ))
            .bind(now.minus(min_age).millis())
            .bind(SWEEP_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let hex: String = r.try_get("digest")?;
                let d = Digest::parse(&hex).map_err(|e| corrupt(e.to_string()))?;
                blobs.delete(&d).await?;
                sqlx::query("DELETE FROM blobs WHERE digest = ?")
                    .bind(&hex)
                    .execute(&mut *tx)
                    .await?;
                report.blobs_deleted += 1;
                report.bytes_deleted += u64_of(r.try_get("size")?);
            }
            cat.commit(tx).await?;
            if (rows.len() as i64) < SWEEP_BATCH {
                break;
            }
        },
    }
    Ok(report)
}

pub(super) async fn sweep_orphans(
    cat: &SqliteCatalog,
    candidates: &[Digest],
    blobs: &dyn BlobStore,
) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    for chunk in candidates.chunks(SWEEP_BATCH as usize) {
        let (mut tx, _) = cat.begin().await?;
        for d in chunk {
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
        }
        cat.commit(tx).await?;
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
