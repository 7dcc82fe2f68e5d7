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

/// The catalog's tables (the sweeper's single row aside). Only these are analyzed: the
/// database may hold other applications' tables, which are theirs to look after.
const TABLES: &[&str] = &[
    "blobs",
    "versions",
    "files",
    "names",
    "txns",
    "idempotency",
    "staged",
    "events",
    "flights",
    "uploads",
    "tokens",
    "hooks",
    "tags",
    "tag_moves",
    "upload_sessions",
    "upload_pieces",
];

/// Autovacuum's default analyze threshold: a table is stale once this many rows plus a tenth
/// of its rows changed since its last analysis.
const STALE_ROWS: i64 = 50;

/// One replica at a time analyzes (the others skip the round): an arbitrary constant,
/// "intactan", distinct from the event log's "intactev".
const ANALYZE_LOCK: i64 = 0x696e_7461_6374_616e;

/// Analyzes every catalog table whose statistics are stale; returns the ones analyzed (none
/// when another replica is doing it right now).
pub(super) async fn refresh(cat: &PostgresCatalog) -> Result<Vec<String>> {
    let mut tx = cat.pool.begin().await?;
    let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(ANALYZE_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !ours {
        tx.rollback().await?;
        return Ok(Vec::new());
    }
    // The counters are the statistics system's, flushed by each backend within seconds of
    // its changes: a round may run on slightly old counts, and the next one catches up.
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT relname::TEXT, n_live_tup, n_mod_since_analyze FROM pg_stat_user_tables
         WHERE schemaname = current_schema() AND relname::TEXT = ANY($1)",
    )
    .bind(TABLES)
    .fetch_all(&mut *tx)
    .await?;
    let mut analyzed = Vec::new();
    for (table, live, changed) in rows {
        if !is_stale(live, changed) {
            continue;
        }
        // `table` is one of `TABLES` (the query matched it against them), never outside text.
        let analyze = format!("ANALYZE {table}");
        sqlx::query(&analyze).persistent(false).execute(&mut *tx).await?;
        analyzed.push(table);
    }
    tx.commit().await?;
    Ok(analyzed)
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
