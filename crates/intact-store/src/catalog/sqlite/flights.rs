//! Flights on the embedded catalog: rows under the single writer; followers in this process
//! are woken by the commit's write notification.

use super::super::flight::{self, FlightClaim, FlightEnd, FlightFailure, FlightRow, FlightState};
use super::*;

fn parse_row(r: &SqliteRow) -> Result<FlightRow> {
    let failure = match r.try_get::<Option<String>, _>("failure_kind")? {
        Some(kind) => Some(FlightFailure {
            kind,
            message: r.try_get::<Option<String>, _>("failure_message")?.unwrap_or_default(),
            at: Timestamp(r.try_get::<Option<i64>, _>("failed_at")?.unwrap_or(0)),
            until: r.try_get::<Option<i64>, _>("failed_until")?.map(Timestamp),
        }),
        None => None,
    };
    Ok(FlightRow {
        holder: r.try_get("holder")?,
        running: r.try_get::<i64, _>("running")? != 0,
        expires_at: Timestamp(r.try_get("expires_at")?),
        failure,
    })
}

const SELECT: &str = "SELECT holder, running, expires_at, failure_kind, failure_message, failed_at, failed_until
                      FROM flights WHERE key = ?";

pub(super) async fn claim(cat: &SqliteCatalog, key: &str, holder: &str, lease: Duration) -> Result<FlightClaim> {
    let (mut tx, now) = cat.begin().await?;
    let row = match sqlx::query(SELECT).bind(key).fetch_optional(&mut *tx).await? {
        Some(r) => Some(parse_row(&r)?),
        None => None,
    };
    if let Some(answer) = flight::judge_claim(row.as_ref(), holder, now) {
        // Nothing changed: no commit, so followers are not woken for nothing.
        tx.rollback().await?;
        return Ok(answer);
    }
    sqlx::query(
        "INSERT INTO flights (key, holder, running, expires_at) VALUES (?, ?, 1, ?)
         ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, running = 1, expires_at = excluded.expires_at,
             failure_kind = NULL, failure_message = NULL, failed_at = NULL, failed_until = NULL",
    )
    .bind(key)
    .bind(holder)
    .bind(now.plus(lease).millis())
    .execute(&mut *tx)
    .await?;
    cat.commit(tx).await?;
    Ok(FlightClaim::Leading)
}

pub(super) async fn renew(cat: &SqliteCatalog, key: &str, holder: &str, lease: Duration) -> Result<bool> {
    let (mut tx, now) = cat.begin().await?;
    let updated = sqlx::query(
        "UPDATE flights SET expires_at = ? WHERE key = ? AND holder = ? AND running = 1 AND expires_at > ?",
    )
    .bind(now.plus(lease).millis())
    .bind(key)
    .bind(holder)
    .bind(now.millis())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(updated == 1)
}

pub(super) async fn finish(cat: &SqliteCatalog, key: &str, holder: &str, end: &FlightEnd) -> Result<()> {
    let (mut tx, now) = cat.begin().await?;
    match end {
        FlightEnd::Succeeded => {
            sqlx::query("DELETE FROM flights WHERE key = ? AND holder = ?")
                .bind(key)
                .bind(holder)
                .execute(&mut *tx)
                .await?;
        }
        FlightEnd::Failed {
            kind,
            message,
            remember_for,
        } => {
            sqlx::query(
                "UPDATE flights SET running = 0, failure_kind = ?, failure_message = ?, failed_at = ?, failed_until = ?
                 WHERE key = ? AND holder = ?",
            )
            .bind(kind)
            .bind(message)
            .bind(now.millis())
            .bind(remember_for.map(|d| now.plus(d).millis()))
            .bind(key)
            .bind(holder)
            .execute(&mut *tx)
            .await?;
        }
    }
    // Wakes followers in this process (the only one on an embedded catalog).
    cat.commit(tx).await
}

pub(super) async fn flight(cat: &SqliteCatalog, key: &str) -> Result<Option<FlightState>> {
    match sqlx::query(SELECT).bind(key).fetch_optional(&cat.read).await? {
        Some(r) => Ok(Some(parse_row(&r)?.state())),
        None => Ok(None),
    }
}

pub(super) async fn prune(cat: &SqliteCatalog, older_than: Duration) -> Result<u64> {
    let (mut tx, now) = cat.begin().await?;
    let cutoff = now.minus(older_than).millis();
    let res = sqlx::query(
        "DELETE FROM flights
         WHERE (running = 0 AND COALESCE(failed_until, failed_at, 0) < ?)
            OR (running = 1 AND expires_at < ?)",
    )
    .bind(cutoff)
    .bind(cutoff)
    .execute(&mut *tx)
    .await?;
    cat.commit(tx).await?;
    Ok(res.rows_affected())
}
