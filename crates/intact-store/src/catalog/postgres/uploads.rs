//! Uploads in flight on every replica, with leases (see `Catalog::start_upload`), judged by
//! the database's clock.

use super::*;

pub(super) async fn start(cat: &PostgresCatalog, txn: &TxnId, upload: &str, lease: Duration) -> Result<()> {
    let mut w = cat.begin().await?;
    let now = cat.now(&mut w).await?;
    sqlx::query("DELETE FROM uploads WHERE expires_at <= $1")
        .bind(now.millis())
        .execute(w.conn())
        .await?;
    sqlx::query("INSERT INTO uploads (id, txn_id, expires_at) VALUES ($1, $2, $3)")
        .bind(upload)
        .bind(txn.as_str())
        .bind(now.plus(lease).millis())
        .execute(w.conn())
        .await?;
    cat.commit(w).await
}

pub(super) async fn renew(cat: &PostgresCatalog, upload: &str, lease: Duration) -> Result<()> {
    let mut w = cat.begin().await?;
    let now = cat.now(&mut w).await?;
    sqlx::query("UPDATE uploads SET expires_at = $1 WHERE id = $2")
        .bind(now.plus(lease).millis())
        .bind(upload)
        .execute(w.conn())
        .await?;
    cat.commit(w).await
}

pub(super) async fn end(cat: &PostgresCatalog, upload: &str) -> Result<()> {
    sqlx::query("DELETE FROM uploads WHERE id = $1")
        .bind(upload)
        .execute(&cat.pool)
        .await?;
    Ok(())
}

pub(super) async fn in_flight(cat: &PostgresCatalog, txn: &TxnId) -> Result<u64> {
    let mut w = cat.begin().await?;
    let now = cat.now(&mut w).await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM uploads WHERE txn_id = $1 AND expires_at > $2")
        .bind(txn.as_str())
        .bind(now.millis())
        .fetch_one(w.conn())
        .await?;
    w.tx.rollback().await?;
    Ok(u64::try_from(n).unwrap_or(0))
}
