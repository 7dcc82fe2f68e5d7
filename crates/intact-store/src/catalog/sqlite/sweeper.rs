//! The sweeper's record on the embedded catalog: one row, changed under the single writer.

use super::super::sweeper::{SweepProgress, SweeperRecord};
use super::*;

fn progress_of(json: &str) -> Result<SweepProgress> {
    serde_json::from_str(json).map_err(|e| super::super::columns::corrupt(format!("sweeper progress: {e}")))
}

fn json_of(progress: &SweepProgress) -> Result<String> {
    serde_json::to_string(progress).map_err(|e| Error::Catalog {
        context: "encoding sweeper progress".into(),
        source: e.into(),
    })
}

pub(super) async fn claim(cat: &SqliteCatalog, holder: &str, lease: Duration) -> Result<Option<SweepProgress>> {
    let (mut tx, now) = cat.begin().await?;
    let row = sqlx::query("SELECT holder, lease_until, progress FROM sweeper WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    let current: Option<String> = row.try_get("holder")?;
    let lease_until: i64 = row.try_get("lease_until")?;
    if current.as_deref().is_some_and(|h| h != holder) && lease_until > now.millis() {
        tx.rollback().await?;
        return Ok(None);
    }
    let progress = progress_of(&row.try_get::<String, _>("progress")?)?;
    sqlx::query("UPDATE sweeper SET holder = ?, lease_until = ? WHERE id = 1")
        .bind(holder)
        .bind(now.plus(lease).millis())
        .execute(&mut *tx)
        .await?;
    // No event: followers need not wake.
    tx.commit().await?;
    Ok(Some(progress))
}

pub(super) async fn save(cat: &SqliteCatalog, holder: &str, progress: &SweepProgress, lease: Duration) -> Result<bool> {
    let json = json_of(progress)?;
    let (mut tx, now) = cat.begin().await?;
    let updated = sqlx::query("UPDATE sweeper SET lease_until = ?, progress = ? WHERE id = 1 AND holder = ?")
        .bind(now.plus(lease).millis())
        .bind(json)
        .bind(holder)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(updated == 1)
}

pub(super) async fn release(cat: &SqliteCatalog, holder: &str) -> Result<()> {
    let (mut tx, now) = cat.begin().await?;
    sqlx::query("UPDATE sweeper SET lease_until = ? WHERE id = 1 AND holder = ?")
        .bind(now.millis())
        .bind(holder)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn record(cat: &SqliteCatalog) -> Result<SweeperRecord> {
    let row = sqlx::query("SELECT holder, lease_until, progress FROM sweeper WHERE id = 1")
        .fetch_one(&cat.read)
        .await?;
    Ok(SweeperRecord {
        holder: row.try_get("holder")?,
        lease_until: Timestamp(row.try_get("lease_until")?),
        now: cat.clock.now(),
        progress: progress_of(&row.try_get::<String, _>("progress")?)?,
    })
}
