//! Planner statistics for the catalog's tables, kept fresh by the catalog itself.
//!
//! Without statistics PostgreSQL's planner cannot tell the covering listing index
//! `versions_listing (repo, name, seq) INCLUDE (version, ...)` from the unique key
//! `(repo, name, version)`: both look like they find one row, and it picks the covering one,
//! which finds a version by reading every version of its name (6 ms per lookup at 20,000
//! versions, growing with the name). The same holds for the commit path's and the access
//! tracker's lookups. Autovacuum gathers statistics, but only up to a minute after a table
//! changes, and not at all where it is switched off (it is on some servers). So the catalog
//! analyzes its own tables once enough of a table changed since it was last analyzed (the
//! threshold autovacuum uses by default), whoever runs the server.

use super::*;

/// The catalog's tables (the sweeper's single row aside), in the order a round analyzes
/// them: the ones lookups and listings read first. Only these are analyzed: the database may
/// hold other applications' tables, which are theirs to look after.
const TABLES: &[&str] = &[
    "versions",
    "files",
    "names",
    "txns",
    "staged",
    "events",
    "tags",
    "tag_moves",
    "blobs",
    "idempotency",
    "flights",
    "uploads",
    "tokens",
    "hooks",
    "upload_sessions",
    "upload_pieces",
];

/// Autovacuum's default analyze threshold: a table is stale once this many rows plus a tenth
/// of its rows changed since its last analysis.
const STALE_ROWS: i64 = 50;

/// One replica at a time analyzes (the others skip the round): an arbitrary constant,
/// "intactan", distinct from the event log's "intactev".
const ANALYZE_LOCK: i64 = 0x696e_7461_6374_616e;

/// How long an `ANALYZE` waits for its table's lock (held by a `VACUUM`, a migration's DDL)
/// before the table is left for the next round. Waiting longer would queue whatever comes
/// for the table next (a migration's DDL, then every read behind that) behind this round.
const LOCK_WAIT: &str = "SET LOCAL lock_timeout = '1s'";

/// PostgreSQL's `lock_not_available`, what `lock_timeout` raises.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Analyzes every catalog table whose statistics are stale; returns the ones analyzed (none
/// when another replica is doing it right now).
///
/// Each table in a transaction of its own: an `ANALYZE` resets its table's count of changes
/// at once, but the statistics it gathered are rolled back with its transaction, so one
/// transaction for all would lose every table's statistics to a later table's failure while
/// their counts said they were fresh, for days on a quiet catalog.
pub(super) async fn refresh(cat: &PostgresCatalog) -> Result<Vec<String>> {
    let mut analyzed = Vec::new();
    for table in stale_tables(cat).await? {
        match analyze(cat, table).await? {
            Analyzed::Done => analyzed.push(table.to_owned()),
            Analyzed::TableBusy => {}
            Analyzed::AnotherReplica => break,
        }
    }
    Ok(analyzed)
}

/// The catalog tables whose statistics are stale, in [`TABLES`]' order. The counts are the
/// statistics system's, flushed by each backend within seconds of its changes: a round may
/// run on slightly old counts, and the next one catches up.
async fn stale_tables(cat: &PostgresCatalog) -> Result<Vec<&'static str>> {
    let rows: Vec<(String, i64, i64, bool)> = sqlx::query_as(
        "SELECT s.relname::TEXT, s.n_live_tup, s.n_mod_since_analyze, pg_has_role(c.relowner, 'USAGE')
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
         WHERE s.schemaname = current_schema() AND s.relname::TEXT = ANY($1)",
    )
    .bind(TABLES)
    .fetch_all(&cat.pool)
    .await?;
    let mut stale = Vec::new();
    for table in TABLES {
        let Some((_, live, changed, owned)) = rows.iter().find(|r| r.0 == *table) else {
            continue;
        };
        if !is_stale(*live, *changed) {
            continue;
        }
        if !owned {
            // PostgreSQL skips it with a warning and leaves its count: it would be stale in
            // every round. Said once per process.
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    table,
                    "the catalog's role does not own its tables, so it cannot keep their planner \
                     statistics; run the catalog as the role that applied the migrations, or leave \
                     analyzing to autovacuum"
                );
            }
            continue;
        }
        stale.push(*table);
    }
    Ok(stale)
}

enum Analyzed {
    Done,
    /// Its lock was held beyond [`LOCK_WAIT`]: left for the next round.
    TableBusy,
    /// Another replica holds the round's lock: it carries on.
    AnotherReplica,
}

async fn analyze(cat: &PostgresCatalog, table: &'static str) -> Result<Analyzed> {
    let mut tx = cat.pool.begin().await?;
    let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(ANALYZE_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !ours {
        tx.rollback().await?;
        return Ok(Analyzed::AnotherReplica);
    }
    sqlx::query(LOCK_WAIT).execute(&mut *tx).await?;
    // `table` is one of `TABLES`, never outside text.
    let statement = format!("ANALYZE {table}");
    match sqlx::query(&statement).persistent(false).execute(&mut *tx).await {
        Ok(_) => {
            tx.commit().await?;
            Ok(Analyzed::Done)
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(LOCK_NOT_AVAILABLE) => {
            tx.rollback().await?;
            Ok(Analyzed::TableBusy)
        }
        Err(e) => Err(e.into()),
    }
}

/// Says so in the log when the server does not vacuum on its own: the catalog keeps its
/// planner statistics but does not vacuum (that needs a session of its own and can take long
/// on big tables), so dead rows from updated and deleted versions, transactions and flights
/// would accumulate, and index-only listings would keep visiting the table.
pub(super) async fn warn_if_never_vacuumed(pool: &PgPool) -> Result<()> {
    let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(pool)
        .await?;
    if autovacuum != "on" {
        tracing::warn!(
            "autovacuum is off on the catalog's PostgreSQL server: intact keeps its tables' \
             planner statistics itself, but nothing removes dead rows; turn autovacuum on or \
             schedule VACUUM"
        );
    }
    Ok(())
}

fn is_stale(live: i64, changed: i64) -> bool {
    changed >= STALE_ROWS + live.max(0) / 10
}

#[cfg(test)]
mod tests {
    use super::is_stale;

    #[test]
    fn a_table_is_stale_once_a_tenth_of_it_and_fifty_rows_changed() {
        assert!(!is_stale(0, 49));
        assert!(is_stale(0, 50));
        assert!(!is_stale(20_000, 2_049));
        assert!(is_stale(20_000, 2_050));
        assert!(!is_stale(-1, 10), "a negative estimate counts as empty");
    }
}
