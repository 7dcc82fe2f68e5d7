//! The sweeper's record on the shared catalog: one row, changed under its row lock, judged by
//! the database's clock so every replica agrees on when a lease lapsed.

use super::super::sweeper::{SweepProgress, SweeperRecord};
use super::*;

fn progress_of(json: &str) -> Result<SweepProgress> {
    serde_json::from_str(json).map_err(|e| corrupt(format!("sweeper progress: {e}")))
}

fn json_of(progress: &SweepProgress) -> Result<String> {
    serde_json::to_string(progress).map_err(|e| Error::Catalog {
        context: "encoding sweeper progress".into(),
        source: e.into(),
    })
}

pub(super) async fn claim(cat: &PostgresCatalog, holder: &str, lease: Duration) -> Result<Option<SweepProgress>> {
    let mut w = cat.begin().await?;
    let row = sqlx::query("SELECT holder, lease_until, progress FROM sweeper WHERE id = 1 FOR UPDATE")
        .fetch_one(w.conn())
        .await?;
    let now = cat.now(&mut w).await?;
    let current: Option<String> = row.try_get("holder")?;
    let lease_until: i64 = row.try_get("lease_until")?;
    if current.as_deref().is_some_and(|h| h != holder) && lease_until > now.millis() {
        w.tx.rollback().await?;
        return Ok(None);
    }
    let progress = progress_of(&row.try_get::<String, _>("progress")?)?;
    sqlx::query("UPDATE sweeper SET holder = $1, lease_until = $2 WHERE id = 1")
        .bind(holder)
        .bind(now.plus(lease).millis())
        .execute(w.conn())
        .await?;
    w.tx.commit().await?;
    Ok(Some(progress))
}

pub(super) async fn save(
    cat: &PostgresCatalog,
    holder: &str,
    progress: &SweepProgress,
    lease: Duration,
) -> Result<bool> {
    let json = json_of(progress)?;
    let mut w = cat.begin().await?;
    sqlx::query("SELECT 1 FROM sweeper WHERE id = 1 FOR UPDATE")
        .execute(w.conn())
        .await?;
    let now = cat.now(&mut w).await?;
    let updated = sqlx::query("UPDATE sweeper SET lease_until = $1, progress = $2 WHERE id = 1 AND holder = $3")
        .bind(now.plus(lease).millis())
        .bind(json)
        .bind(holder)
        .execute(w.conn())
        .await?
        .rows_affected();
    w.tx.commit().await?;
    Ok(updated == 1)
}

pub(super) async fn release(cat: &PostgresCatalog, holder: &str) -> Result<()> {
    let mut w = cat.begin().await?;
    sqlx::query("SELECT 1 FROM sweeper WHERE id = 1 FOR UPDATE")
        .execute(w.conn())
        .await?;
    let now = cat.now(&mut w).await?;
    sqlx::query("UPDATE sweeper SET lease_until = $1 WHERE id = 1 AND holder = $2")
        .bind(now.millis())
        .bind(holder)
        .execute(w.conn())
        .await?;
    w.tx.commit().await?;
    Ok(())
}

pub(super) async fn record(cat: &PostgresCatalog) -> Result<SweeperRecord> {
    let row = sqlx::query(
        "SELECT holder, lease_until, progress,
                (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT AS now
         FROM sweeper WHERE id = 1",
    )
    .fetch_one(&cat.pool)
    .await?;
    let offset = cat.time_offset.as_ref().map_or(0, OffsetClock::offset_millis);
    Ok(SweeperRecord {
        holder: row.try_get("holder")?,
        lease_until: Timestamp(row.try_get("lease_until")?),
        now: Timestamp(row.try_get::<i64, _>("now")?.saturating_add(offset)),
        progress: progress_of(&row.try_get::<String, _>("progress")?)?,
    })
}
