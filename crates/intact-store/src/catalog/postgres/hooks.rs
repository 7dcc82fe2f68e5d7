//! Webhooks on the shared catalog (see `crate::hooks`): a claim is one conditional update,
//! so two replicas cannot both hold a hook.

use super::*;
use crate::hooks::{HookProgress, HookRecord, NewHook};

const COLUMNS: &str = "name, repo, url, events, created_at, cursor, delivered, failures, next_attempt_at,
                       last_attempt_at, last_status, last_error";

fn parse(r: &PgRow) -> Result<HookRecord> {
    super::super::columns::hook_from_row(r)
}

pub(super) async fn create(cat: &PostgresCatalog, hook: &NewHook) -> Result<HookRecord> {
    let mut w = cat.begin().await?;
    let now = cat.now(&mut w).await?;
    // Delivery starts after the last event already written: a new hook gets what happens
    // from now on, not the whole history.
    let cursor: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
        .fetch_one(w.conn())
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO hooks (name, repo, url, secret, events, created_at, cursor) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT DO NOTHING",
    )
    .bind(&hook.name)
    .bind(&hook.repo)
    .bind(&hook.url)
    .bind(&hook.secret)
    .bind(hook.events.join(","))
    .bind(now.millis())
    .bind(cursor)
    .execute(w.conn())
    .await?
    .rows_affected();
    if inserted == 0 {
        w.tx.rollback().await?;
        return Err(Error::Exists {
            what: format!("a hook named {}", hook.name),
        });
    }
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM hooks WHERE name = $1"))
        .bind(&hook.name)
        .fetch_one(w.conn())
        .await?;
    let record = parse(&row)?;
    cat.commit(w).await?;
    Ok(record)
}

pub(super) async fn list(cat: &PostgresCatalog) -> Result<Vec<HookRecord>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM hooks ORDER BY name"))
        .fetch_all(&cat.pool)
        .await?;
    rows.iter().map(parse).collect()
}

pub(super) async fn delete(cat: &PostgresCatalog, name: &str) -> Result<bool> {
    let deleted = sqlx::query("DELETE FROM hooks WHERE name = $1")
        .bind(name)
        .execute(&cat.pool)
        .await?
        .rows_affected();
    Ok(deleted == 1)
}

pub(super) async fn claim(
    cat: &PostgresCatalog,
    name: &str,
    holder: &str,
    lease: Duration,
) -> Result<Option<(HookRecord, String)>> {
    let mut w = cat.begin().await?;
    let now = cat.now(&mut w).await?;
    let row = sqlx::query(&format!(
        "UPDATE hooks SET holder = $1, held_until = $2
         WHERE name = $3 AND (holder IS NULL OR holder = $1 OR held_until <= $4)
           AND (next_attempt_at IS NULL OR next_attempt_at <= $4)
         RETURNING {COLUMNS}, secret"
    ))
    .bind(holder)
    .bind(now.plus(lease).millis())
    .bind(name)
    .bind(now.millis())
    .fetch_optional(w.conn())
    .await?;
    let claimed = match row {
        Some(r) => Some((parse(&r)?, r.try_get::<String, _>("secret")?)),
        None => None,
    };
    cat.commit(w).await?;
    Ok(claimed)
}

pub(super) async fn record(cat: &PostgresCatalog, name: &str, holder: &str, progress: &HookProgress) -> Result<bool> {
    let mut w = cat.begin().await?;
    let now = cat.now(&mut w).await?;
    let failed = progress.failure.as_ref();
    let updated = sqlx::query(
        "UPDATE hooks SET cursor = GREATEST(cursor, $1), delivered = delivered + $2,
             failures = CASE WHEN $3 THEN failures + 1 ELSE 0 END,
             next_attempt_at = $4, last_attempt_at = $5, last_status = $6, last_error = $7
         WHERE name = $8 AND holder = $9",
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
    .execute(w.conn())
    .await?
    .rows_affected();
    cat.commit(w).await?;
    Ok(updated == 1)
}
