//! Uploads in flight, with leases (see `Catalog::start_upload`).

use super::*;

pub(super) async fn start(cat: &SqliteCatalog, txn: &TxnId, upload: &str, lease: Duration) -> Result<()> {
    let (mut tx, now) = cat.begin().await?;
    sqlx::query("DELETE FROM uploads WHERE expires_at <= ?")
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO uploads (id, txn_id, expires_at) VALUES (?, ?, ?)")
        .bind(upload)
        .bind(txn.as_str())
        .bind(now.plus(lease).millis())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn renew(cat: &SqliteCatalog, upload: &str, lease: Duration) -> Result<()> {
    let (mut tx, now) = cat.begin().await?;
    sqlx::query("UPDATE uploads SET expires_at = ? WHERE id = ?")
        .bind(now.plus(lease).millis())
        .bind(upload)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn end(cat: &SqliteCatalog, upload: &str) -> Result<()> {
    let (mut tx, _) = cat.begin().await?;
    sqlx::query("DELETE FROM uploads WHERE id = ?")
        .bind(upload)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn in_flight(cat: &SqliteCatalog, txn: &TxnId) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM uploads WHERE txn_id = ? AND expires_at > ?")
        .bind(txn.as_str())
        .bind(cat.clock.now().millis())
        .fetch_one(&cat.read)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}
