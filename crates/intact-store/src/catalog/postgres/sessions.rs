//! Resumable upload sessions and their pieces on the shared catalog (see
//! `Catalog::create_upload_session`): a piece is counted under the session's row lock, so
//! two replicas adding a piece at the same offset cannot both succeed.

use intact_core::{FilePath, TxnState};

use super::*;
use crate::catalog::columns::{i64_of, u64_of};
use crate::catalog::{UploadPiece, UploadSession};

/// Refuses unless transaction `id` is open and its lease unexpired at `now`.
async fn check_open(tx: &mut sqlx::PgConnection, id: &str, now: Timestamp) -> Result<()> {
    let row: Option<(String, i64)> = sqlx::query_as("SELECT state, expires_at FROM txns WHERE id = $1 FOR SHARE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let txn = TxnId::parse(id).map_err(|e| corrupt(format!("transaction id {id}: {e}")))?;
    let Some((state, expires_at)) = row else {
        return Err(Error::not_found(format!("transaction {id}")));
    };
    let state = TxnState::parse(&state).ok_or_else(|| corrupt(format!("bad state {state}")))?;
    if state != TxnState::Open {
        return Err(Error::TxnNotOpen { id: txn, state });
    }
    if Timestamp(expires_at) <= now {
        return Err(Error::TxnNotOpen {
            id: txn,
            state: TxnState::Expired,
        });
    }
    Ok(())
}

pub(super) async fn create(cat: &PostgresCatalog, s: &UploadSession) -> Result<()> {
    let mut w = cat.begin().await?;
    let now = cat.now(&mut w).await?;
    check_open(w.conn(), s.txn.as_str(), now).await?;
    sqlx::query(
        "INSERT INTO upload_sessions (id, txn_id, path, size, sha256, received, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 0, $6, $7)",
    )
    .bind(&s.upload)
    .bind(s.txn.as_str())
    .bind(s.path.as_str())
    .bind(s.size.map(i64_of))
    .bind(s.sha256.map(|d| d.to_hex()))
    .bind(now.millis())
    .bind(now.millis())
    .execute(w.conn())
    .await?;
    cat.commit(w).await
}

pub(super) async fn get(cat: &PostgresCatalog, upload: &str) -> Result<UploadSession> {
    let row = sqlx::query(
        "SELECT id, txn_id, path, size, sha256, received, created_at FROM upload_sessions WHERE id = $1 AND ended = 0",
    )
    .bind(upload)
    .fetch_optional(&cat.pool)
    .await?
    .ok_or_else(|| Error::not_found(format!("upload {upload}")))?;
    session_of(&row)
}

fn session_of(row: &PgRow) -> Result<UploadSession> {
    let txn: String = row.try_get("txn_id")?;
    let path: String = row.try_get("path")?;
    let sha256: Option<String> = row.try_get("sha256")?;
    Ok(UploadSession {
        upload: row.try_get("id")?,
        txn: TxnId::parse(&txn).map_err(|e| corrupt(format!("transaction id {txn}: {e}")))?,
        path: FilePath::parse(&path).map_err(|e| corrupt(format!("path {path}: {e}")))?,
        size: row.try_get::<Option<i64>, _>("size")?.map(u64_of),
        sha256: sha256
            .map(|d| Digest::parse(&d).map_err(|e| corrupt(format!("sha256 {d}: {e}"))))
            .transpose()?,
        offset: u64_of(row.try_get("received")?),
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

pub(super) async fn pieces(cat: &PostgresCatalog, upload: &str) -> Result<Vec<UploadPiece>> {
    let rows: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT start, len, name FROM upload_pieces WHERE session_id = $1 ORDER BY start")
            .bind(upload)
            .fetch_all(&cat.pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(start, len, name)| UploadPiece {
            start: u64_of(start),
            len: u64_of(len),
            name,
        })
        .collect())
}

pub(super) async fn add_piece(cat: &PostgresCatalog, upload: &str, piece: &UploadPiece) -> Result<u64> {
    let mut w = cat.begin().await?;
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT txn_id, received FROM upload_sessions WHERE id = $1 AND ended = 0 FOR UPDATE")
            .bind(upload)
            .fetch_optional(w.conn())
            .await?;
    // Read once the session's row is held: the lease is judged after any wait for it.
    let now = cat.now(&mut w).await?;
    let Some((txn, received)) = row else {
        return Err(Error::not_found(format!("upload {upload}")));
    };
    check_open(w.conn(), &txn, now).await?;
    let offset = u64_of(received);
    if offset != piece.start {
        return Err(Error::UploadOffset {
            upload: upload.to_owned(),
            offset,
            detail: format!(" (a piece starting at {} was not counted)", piece.start),
        });
    }
    let end = piece.start + piece.len;
    sqlx::query("INSERT INTO upload_pieces (session_id, start, len, name) VALUES ($1, $2, $3, $4)")
        .bind(upload)
        .bind(i64_of(piece.start))
        .bind(i64_of(piece.len))
        .bind(&piece.name)
        .execute(w.conn())
        .await?;
    sqlx::query("UPDATE upload_sessions SET received = $1, updated_at = $2 WHERE id = $3")
        .bind(i64_of(end))
        .bind(now.millis())
        .bind(upload)
        .execute(w.conn())
        .await?;
    cat.commit(w).await?;
    Ok(end)
}

pub(super) async fn discard(cat: &PostgresCatalog, upload: &str) -> Result<bool> {
    let mut w = cat.begin().await?;
    let n = sqlx::query("UPDATE upload_sessions SET ended = 1 WHERE id = $1 AND ended = 0")
        .bind(upload)
        .execute(w.conn())
        .await?
        .rows_affected();
    cat.commit(w).await?;
    Ok(n > 0)
}

pub(super) async fn discard_finished(cat: &PostgresCatalog) -> Result<u64> {
    // A read first: the reaper asks every second, and almost always nothing has ended.
    let any: Option<i64> = sqlx::query_scalar(
        "SELECT 1::BIGINT FROM upload_sessions s WHERE s.ended = 0 AND NOT EXISTS
           (SELECT 1 FROM txns t WHERE t.id = s.txn_id AND t.state = 'open') LIMIT 1",
    )
    .fetch_optional(&cat.pool)
    .await?;
    if any.is_none() {
        return Ok(0);
    }
    let mut w = cat.begin().await?;
    let n = sqlx::query(
        "UPDATE upload_sessions SET ended = 1 WHERE ended = 0 AND NOT EXISTS
           (SELECT 1 FROM txns t WHERE t.id = upload_sessions.txn_id AND t.state = 'open')",
    )
    .execute(w.conn())
    .await?
    .rows_affected();
    cat.commit(w).await?;
    Ok(n)
}

pub(super) async fn ended(cat: &PostgresCatalog, limit: u32) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM upload_sessions WHERE ended = 1 LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&cat.pool)
            .await?,
    )
}

pub(super) async fn forget(cat: &PostgresCatalog, uploads: &[String]) -> Result<()> {
    if uploads.is_empty() {
        return Ok(());
    }
    let mut w = cat.begin().await?;
    sqlx::query("DELETE FROM upload_pieces WHERE session_id = ANY($1)")
        .bind(uploads)
        .execute(w.conn())
        .await?;
    sqlx::query("DELETE FROM upload_sessions WHERE id = ANY($1) AND ended = 1")
        .bind(uploads)
        .execute(w.conn())
        .await?;
    cat.commit(w).await
}
