//! The event log in one global commit order, and the wake-ups of its followers.
//!
//! PostgreSQL takes identity values at insert, not at commit: two writers may take 7 and 8,
//! and 8 commit first. A follower that read "after 6" would then see 8, move on to "after 8",
//! and never see 7. So events are inserted only while holding one transaction-scoped advisory
//! lock, which is released by the commit: the writer holding it takes the next number and
//! commits before anyone else can take one, and numbers become visible in order. Writers hold
//! it only for the tail of their transaction (insert, commit), after all their other locks.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;

/// The advisory lock that orders event appends (an arbitrary constant, "intact-ev").
const EVENT_LOCK: i64 = 0x696e_7461_6374_6576;

/// An event waiting for its write to reach the end of its transaction.
#[derive(Debug)]
pub(super) struct NewEvent {
    pub at: Timestamp,
    pub kind: &'static str,
    pub repo: String,
    pub name: String,
    pub version: String,
    pub txn_id: Option<String>,
    pub data: serde_json::Value,
}

impl Write {
    /// Queues an event, appended (with its number) when this write commits.
    pub(super) fn event(&mut self, ev: NewEvent) {
        self.events.push(ev);
    }
}

/// Inserts `ev` now, taking the event lock (held until commit; taking it again is a no-op
/// within the transaction), and returns its sequence number. Only for the last steps of a
/// write: after this, the write may take no other lock.
pub(super) async fn insert(w: &mut Write, ev: &NewEvent) -> Result<i64> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(EVENT_LOCK)
        .execute(w.conn())
        .await?;
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (at, kind, repo, name, version, txn_id, data) VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING seq",
    )
    .bind(ev.at.millis())
    .bind(ev.kind)
    .bind(&ev.repo)
    .bind(&ev.name)
    .bind(&ev.version)
    .bind(ev.txn_id.as_deref())
    .bind(ev.data.to_string())
    .fetch_one(w.conn())
    .await?;
    // Delivered when (and only if) the transaction commits; identical notifications of one
    // transaction are folded into one.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(EVENTS_CHANNEL)
        .execute(w.conn())
        .await?;
    Ok(seq)
}

pub(super) async fn events(cat: &PostgresCatalog, after: i64, limit: u32) -> Result<Vec<Event>> {
    let rows = sqlx::query(
        "SELECT seq, at, kind, repo, name, version, txn_id, data FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&cat.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let (repo, name, version) = rows::parse_ids(r)?;
            Ok(Event {
                seq: r.try_get("seq")?,
                at: Timestamp(r.try_get("at")?),
                kind: r.try_get("kind")?,
                repo,
                name,
                version,
                transaction: r
                    .try_get::<Option<String>, _>("txn_id")?
                    .and_then(|s| TxnId::parse(&s).ok()),
                data: columns::parse_json(&r.try_get::<String, _>("data")?)?,
            })
        })
        .collect()
}

pub(super) async fn last_event_seq(cat: &PostgresCatalog) -> Result<i64> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
        .fetch_one(&cat.pool)
        .await?;
    Ok(seq.unwrap_or(0))
}

/// Starts listening for event appends by any replica. The returned sender's value changes on every
/// notification, and after every reconnection of the listening connection (notifications
/// sent while it was down are lost, so followers must look). Cancel the token to stop.
pub(super) async fn listen(pool: &PgPool) -> Result<(Arc<watch::Sender<u64>>, CancellationToken)> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    // Listening before `open` returns: no append committed after it goes unheard.
    listener.listen(EVENTS_CHANNEL).await?;
    let wakeups = Arc::new(watch::Sender::new(0u64));
    let bump = wakeups.clone();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        loop {
            let heard = tokio::select! {
                _ = stopped.cancelled() => return,
                heard = listener.try_recv() => heard,
            };
            match heard {
                Ok(Some(_)) => {}
                // The connection dropped and was re-established (listening again).
                Ok(None) => tracing::warn!("catalog event listener reconnected"),
                Err(e) => {
                    tracing::warn!(error = %e, "catalog event listener failed; retrying");
                    tokio::select! {
                        _ = stopped.cancelled() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    }
                }
            }
            bump.send_modify(|n| *n = n.wrapping_add(1));
        }
    });
    Ok((wakeups, stop))
}
