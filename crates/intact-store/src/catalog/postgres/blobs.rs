//! Blob bookkeeping: garbage-collection sweeps under per-digest exclusion, and walks over
//! committed blobs.
//!
//! The exclusion is a transaction-scoped advisory lock per digest, which `stage_file` takes
//! too (rows alone would not do: an orphan has no row to lock). A sweep only *tries* each
//! lock and skips a digest whose lock is busy: whoever holds it is registering the blob, so
//! it is in use. Each digest is checked and deleted in its own short transaction, so a sweep
//! never holds up publishes of other content, on this replica or any other.

use super::rows::parse_ids;
use super::*;

/// Waits for `digest`'s exclusion (held until the end of the transaction).
pub(super) async fn lock_digest(conn: &mut sqlx::PgConnection, digest: &str) -> Result<()> {
    lock(conn, "blob", digest).await
}

/// Takes `digest`'s exclusion if nobody holds it. A sweep holds it across the object
/// store's delete, which may take longer than any catalog call: the session's limit on
/// idling in a transaction is raised for this one, since losing the exclusion while a
/// delete is in flight would let a publish of the same content register and store its
/// bytes just before the delete lands.
async fn try_lock_digest(conn: &mut sqlx::PgConnection, digest: &str) -> Result<bool> {
    sqlx::query("SET LOCAL idle_in_transaction_session_timeout = '15min'")
        .execute(&mut *conn)
        .await?;
    Ok(
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("blob\u{1f}{digest}"))
            .fetch_one(conn)
            .await?,
    )
}

pub(super) async fn check_writable(cat: &PostgresCatalog) -> Result<()> {
    // Assigning a transaction id makes the commit a real write through the WAL, changing
    // nothing.
    let mut w = cat.begin().await?;
    sqlx::query("SELECT txid_current()").execute(w.conn()).await?;
    cat.commit(w).await
}

const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM files f WHERE f.digest = b.digest)
                            AND NOT EXISTS (SELECT 1 FROM staged s WHERE s.digest = b.digest)";

/// Deletes `digest` if, under its exclusion, it is still unreferenced (and, with `registered_by`,
/// registered no later than that). Returns the size deleted.
async fn sweep_one(
    cat: &PostgresCatalog,
    digest: &Digest,
    registered_by: Option<Timestamp>,
    blobs: &dyn BlobStore,
) -> Result<Option<u64>> {
    let hex = digest.to_hex();
    let mut w = cat.begin().await?;
    if !try_lock_digest(w.conn(), &hex).await? {
        return Ok(None);
    }
    let size: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT size FROM blobs b WHERE digest = $1 AND registered <= $2 AND {UNREFERENCED}"
    ))
    .bind(&hex)
    .bind(registered_by.map_or(i64::MAX, Timestamp::millis))
    .fetch_optional(w.conn())
    .await?;
    let Some(size) = size else { return Ok(None) };
    // The bytes go first, the record after: a crash in between leaves a record without bytes
    // (swept again next time), never bytes nobody knows of.
    blobs.delete(digest).await?;
    sqlx::query("DELETE FROM blobs WHERE digest = $1")
        .bind(&hex)
        .execute(w.conn())
        .await?;
    cat.commit(w).await?;
    Ok(Some(u64_of(size)))
}

pub(super) async fn sweep_blobs(
    cat: &PostgresCatalog,
    min_age: Duration,
    digests: &[Digest],
    blobs: &dyn BlobStore,
) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    if digests.is_empty() {
        return Ok(report);
    }
    // No age asked: no age condition, even if the clock stepped back since staging.
    let cutoff = if min_age.is_zero() {
        None
    } else {
        let mut w = cat.begin().await?;
        let now = cat.now(&mut w).await?;
        w.tx.rollback().await?;
        Some(now.minus(min_age))
    };
    for d in digests {
        if let Some(size) = sweep_one(cat, d, cutoff, blobs).await? {
            report.blobs_deleted += 1;
            report.bytes_deleted += size;
        }
    }
    Ok(report)
}

pub(super) async fn unreferenced_blobs(
    cat: &PostgresCatalog,
    after: Option<&Digest>,
    min_age: Duration,
    limit: u32,
) -> Result<BlobPage> {
    let rows = sqlx::query(&format!(
        "SELECT b.digest,
                (b.registered <= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $1 - $2
                 AND {UNREFERENCED}) AS unreferenced
         FROM blobs b WHERE b.digest > $3 ORDER BY b.digest LIMIT $4"
    ))
    .bind(cat.time_offset.as_ref().map_or(0, OffsetClock::offset_millis))
    .bind(i64::try_from(min_age.as_millis()).unwrap_or(i64::MAX))
    .bind(after.map(Digest::to_hex).unwrap_or_default())
    .bind(i64::from(limit))
    .fetch_all(&cat.pool)
    .await?;
    let mut page = BlobPage::default();
    for r in &rows {
        let d = columns::digest(&r.try_get::<String, _>("digest")?)?;
        page.scanned += 1;
        if r.try_get::<bool, _>("unreferenced")? {
            page.candidates.push(d);
        }
        page.last = Some(d);
    }
    Ok(page)
}

pub(super) async fn sweep_orphans(
    cat: &PostgresCatalog,
    candidates: &[Digest],
    blobs: &dyn BlobStore,
) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    for d in candidates {
        let hex = d.to_hex();
        let mut w = cat.begin().await?;
        if !try_lock_digest(w.conn(), &hex).await? {
            continue;
        }
        let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = $1")
            .bind(&hex)
            .fetch_optional(w.conn())
            .await?;
        if known.is_none() {
            let size = blobs.size(d).await?.unwrap_or(0);
            blobs.delete(d).await?;
            report.blobs_deleted += 1;
            report.bytes_deleted += size;
        }
        w.tx.rollback().await?;
    }
    Ok(report)
}

pub(super) async fn committed_blobs(
    cat: &PostgresCatalog,
    after: Option<&Digest>,
    limit: u32,
) -> Result<Vec<(Digest, u64)>> {
    let rows = sqlx::query(
        "SELECT digest, MAX(size) AS size FROM files WHERE digest > $1 GROUP BY digest ORDER BY digest LIMIT $2",
    )
    .bind(after.map(Digest::to_hex).unwrap_or_default())
    .bind(i64::from(limit))
    .fetch_all(&cat.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                columns::digest(&r.try_get::<String, _>("digest")?)?,
                u64_of(r.try_get("size")?),
            ))
        })
        .collect()
}

pub(super) async fn blob_users(cat: &PostgresCatalog, digest: &Digest, limit: u32) -> Result<Vec<BlobUser>> {
    let rows = sqlx::query(
        "SELECT v.repo, v.name, v.version, f.path FROM files f JOIN versions v ON v.id = f.version_id
         WHERE f.digest = $1 ORDER BY v.repo, v.name, v.id, f.path LIMIT $2",
    )
    .bind(digest.to_hex())
    .bind(i64::from(limit))
    .fetch_all(&cat.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let (repo, name, version) = parse_ids(r)?;
            let path: String = r.try_get("path")?;
            Ok(BlobUser {
                repo,
                name,
                version,
                path: intact_core::FilePath::parse(&path).map_err(|e| corrupt(e.to_string()))?,
            })
        })
        .collect()
}
