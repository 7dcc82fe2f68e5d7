//! Flights on the shared catalog: each claim holds the flight's advisory lock (a row lock
//! cannot cover a row not yet inserted), and a finish notifies every replica's listener on
//! the events channel (followers of flights and of events share the wake-up; a spurious one
//! costs a query).

use super::super::flight::{self, FlightClaim, FlightEnd, FlightFailure, FlightRow, FlightState};
use super::*;

fn parse_row(r: &PgRow) -> Result<FlightRow> {
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
        running: r.try_get("running")?,
        expires_at: Timestamp(r.try_get("expires_at")?),
        failure,
    })
}

const SELECT: &str = "SELECT holder, running, expires_at, failure_kind, failure_message, failed_at, failed_until
                      FROM flights WHERE key = $1";

pub(super) async fn claim(cat: &PostgresCatalog, key: &str, holder: &str, lease: Duration) -> Result<FlightClaim> {
    let mut w = cat.begin().await?;
    lock(w.conn(), "flight", key).await?;
    let now = cat.now(&mut w).await?;
    let row = match sqlx::query(SELECT).bind(key).fetch_optional(w.conn()).await? {
        Some(r) => Some(parse_row(&r)?),
        None => None,
    };
    if let Some(answer) = flight::judge_claim(row.as_ref(), holder, now) {
        w.tx.rollback().await?;
        return Ok(answer);
    }
    sqlx::query(
        "INSERT INTO flights (key, holder, running, expires_at) VALUES ($1, $2, TRUE, $3)
         ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, running = TRUE, expires_at = excluded.expires_at,
             failure_kind = NULL, failure_message = NULL, failed_at = NULL, failed_until = NULL",
    )
    .bind(key)
    .bind(holder)
    .bind(now.plus(lease).millis())
    .execute(w.conn())
    .await?;
    cat.commit(w).await?;
    Ok(FlightClaim::Leading)
}

pub(super) async fn renew(cat: &PostgresCatalog, key: &str, holder: &str, lease: Duration) -> Result<bool> {
    let mut w = cat.begin().await?;
    lock(w.conn(), "flight", key).await?;
    let now = cat.now(&mut w).await?;
    let updated = sqlx::query(
        "UPDATE flights SET expires_at = $1 WHERE key = $2 AND holder = $3 AND running AND expires_at > $4",
    )
    .bind(now.plus(lease).millis())
    .bind(key)
    .bind(holder)
    .bind(now.millis())
    .execute(w.conn())
    .await?
    .rows_affected();
    cat.commit(w).await?;
    Ok(updated == 1)
}

pub(super) async fn finish(cat: &PostgresCatalog, key: &str, holder: &str, end: &FlightEnd) -> Result<()> {
    let mut w = cat.begin().await?;
    lock(w.conn(), "flight", key).await?;
    let now = cat.now(&mut w).await?;
    match end {
        FlightEnd::Succeeded => {
            sqlx::query("DELETE FROM flights WHERE key = $1 AND holder = $2")
                .bind(key)
                .bind(holder)
                .execute(w.conn())
                .await?;
        }
        FlightEnd::Failed {
            kind,
            message,
            remember_for,
        } => {
            sqlx::query(
                "UPDATE flights SET running = FALSE, failure_kind = $1, failure_message = $2, failed_at = $3,
                     failed_until = $4
                 WHERE key = $5 AND holder = $6",
            )
            .bind(kind)
            .bind(message)
            .bind(now.millis())
            .bind(remember_for.map(|d| now.plus(d).millis()))
            .bind(key)
            .bind(holder)
            .execute(w.conn())
            .await?;
        }
    }
    // Delivered at commit, to every replica.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(EVENTS_CHANNEL)
        .execute(w.conn())
        .await?;
    cat.commit(w).await
}

pub(super) async fn flight(cat: &PostgresCatalog, key: &str) -> Result<Option<FlightState>> {
    match sqlx::query(SELECT).bind(key).fetch_optional(&cat.pool).await? {
        Some(r) => Ok(Some(parse_row(&r)?.state())),
        None => Ok(None),
    }
}

/// No lock per key: a row that ended long ago is only ever replaced by a claim, which upserts
/// it whether or not this delete ran first.
pub(super) async fn prune(cat: &PostgresCatalog, older_than: Duration) -> Result<u64> {
    let mut w = cat.begin().await?;
    let cutoff = cat.now(&mut w).await?.minus(older_than).millis();
    let res = sqlx::query(
        "DELETE FROM flights
         WHERE (NOT running AND COALESCE(failed_until, failed_at, 0) < $1)
            OR (running AND expires_at < $1)",
    )
    .bind(cutoff)
    .execute(w.conn())
    .await?;
    cat.commit(w).await?;
    Ok(res.rows_affected())
}
