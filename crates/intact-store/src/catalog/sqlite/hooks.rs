//! Webhooks on the embedded catalog (see `crate::hooks`).

use super::*;
use crate::hooks::{HookProgress, HookRecord, NewHook};

const COLUMNS: &str = "name, repo, url, events, created_at, cursor, delivered, failures, next_attempt_at,
                       last_attempt_at, last_status, last_error";

fn parse(r: &SqliteRow) -> Result<HookRecord> {
    super::super::columns::hook_from_row(r)
}

pub(super) async fn create(cat: &SqliteCatalog, hook: &NewHook) -> Result<HookRecord> {
    let (mut tx, now) = cat.begin().await?;
    // Delivery starts after the last event already written: a new hook gets what happens
    // from now on, not the whole history.
    let cursor: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
        .fetch_one(&mut *tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO hooks (name, repo, url, secret, events, created_at, cursor) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT DO NOTHING",
    )
    .bind(&hook.name)
    .bind(&hook.repo)
    .bind(&hook.url)
    .bind(&hook.secret)
    .bind(hook.events.join(","))
    .bind(now.millis())
    .bind(cursor)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Err(Error::Exists {
            what: format!("a hook named {}", hook.name),
        });
    }
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM hooks WHERE name = ?"))
        .bind(&hook.name)
        .fetch_one(&mut *tx)
        .await?;
    let record = parse(&row)?;
    tx.commit().await?;
    Ok(record)
}

pub(super) async fn list(cat: &SqliteCatalog) -> Result<Vec<HookRecord>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM hooks ORDER BY name"))
        .fetch_all(&cat.read)
        .await?;
    rows.iter().map(parse).collect()
}

pub(super) async fn delete(cat: &SqliteCatalog, name: &str) -> Result<bool> {
    let (mut tx, _) = cat.begin().await?;
    let deleted = sqlx::query("DELETE FROM hooks WHERE name = ?")
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(deleted == 1)
}

pub(super) async fn claim(
    cat: &SqliteCatalog,
    name: &str,
    holder: &str,
    lease: Duration,
) -> Result<Option<(HookRecord, String)>> {
    let (mut tx, now) = cat.begin().await?;
    let row = sqlx::query(&format!(
        "UPDATE hooks SET holder = ?, held_until = ?
         WHERE name = ? AND (holder IS NULL OR holder = ? OR held_until <= ?)
           AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
         RETURNING {COLUMNS}, secret"
    ))
    .bind(holder)
    .bind(now.plus(lease).millis())
    .bind(name)
    .bind(holder)
    .bind(now.millis())
    .bind(now.millis())
    .fetch_optional(&mut *tx)
    .await?;
    let claimed = match row {
        Some(r) => Some((parse(&r)?, r.try_get::<String, _>("secret")?)),
        None => None,
    };
    tx.commit().await?;
    Ok(claimed)
}

pub(super) async fn record(cat: &SqliteCatalog, name: &str, holder: &str, progress: &HookProgress) -> Result<bool> {
    let (mut tx, now) = cat.begin().await?;
    let failed = progress.failure.as_ref();
    let updated = sqlx::query(
        "UPDATE hooks SET cursor = MAX(cursor, ?), delivered = delivered + ?,
             failures = CASE WHEN ? THEN failures + 1 ELSE 0 END,
             next_attempt_at = ?, last_attempt_at = ?, last_status = ?, last_error = ?
         WHERE name = ? AND holder = ?",
    )
    .bind(progress.cursor)
    .bind(i64::try_from(progress.delivered).unwrap_or(i64::MAX))
    .bind(failed.is_some())
    .bind(failed.map(|f| now.millis().saturating_add(f.retry_in_ms)))
    .bind(now.millis())
    .bind(failed.and_then(|f| f.status).map(i64::from))
    .bind(failed.map(|f| f.error.clone()))
    .bind(name)
    .bind(holder)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(updated == 1)
}
