//! The event log: appended inside the transaction that changes what it records.

use super::*;

pub(super) async fn append_event(
    tx: &mut sqlx::SqliteConnection,
    now: Timestamp,
    kind: &str,
    ids: (&str, &str, &str),
    txn_id: Option<&str>,
    data: serde_json::Value,
) -> Result<i64> {
    let res =
        sqlx::query("INSERT INTO events (at, kind, repo, name, version, txn_id, data) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(now.millis())
            .bind(kind)
            .bind(ids.0)
            .bind(ids.1)
            .bind(ids.2)
            .bind(txn_id)
            .bind(data.to_string())
            .execute(&mut *tx)
            .await?;
    Ok(res.last_insert_rowid())
}

pub(super) async fn events(cat: &SqliteCatalog, after: i64, limit: u32) -> Result<Vec<Event>> {
    let rows = sqlx::query(
        "SELECT seq, at, kind, repo, name, version, txn_id, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&cat.read)
    .await?;
    rows.iter()
        .map(|r| {
            let (repo, name, version) = parse_ids(r)?;
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
                data: parse_json(&r.try_get::<String, _>("data")?)?,
            })
        })
        .collect()
}

pub(super) fn event_wakeups(cat: &SqliteCatalog) -> watch::Receiver<u64> {
    cat.writes.subscribe()
}

pub(super) async fn last_event_seq(cat: &SqliteCatalog) -> Result<i64> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
        .fetch_one(&cat.read)
        .await?;
    Ok(seq.unwrap_or(0))
}
