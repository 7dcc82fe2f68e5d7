//! Resumable upload sessions and their pieces (see `Catalog::create_upload_session`).

use super::*;
use crate::catalog::columns::{i64_of, u64_of};
use crate::catalog::{UploadPiece, UploadSession};

/// Refuses unless transaction `id` is open and its lease unexpired at `now`.
async fn check_open(tx: &mut sqlx::SqliteConnection, id: &str, now: Timestamp) -> Result<()> {
    let row: Option<(String, i64)> = sqlx::query_as("SELECT state, expires_at FROM txns WHERE id = ?")
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

pub(super) async fn create(cat: &SqliteCatalog, s: &UploadSession) -> Result<()> {
    let (mut tx, now) = cat.begin().await?;
    check_open(&mut tx, s.txn.as_str(), now).await?;
    sqlx::query(
        "INSERT INTO upload_sessions (id, txn_id, path, size, sha256, received, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
    )
    .bind(&s.upload)
    .bind(s.txn.as_str())
    .bind(s.path.as_str())
    .bind(s.size.map(i64_of))
    .bind(s.sha256.map(|d| d.to_hex()))
    .bind(now.millis())
    .bind(now.millis())
    .execute(&mut *tx)
    .await?;
    cat.commit(tx).await
}

pub(super) async fn get(cat: &SqliteCatalog, upload: &str) -> Result<UploadSession> {
    let row = sqlx::query(
        "SELECT id, txn_id, path, size, sha256, received, created_at FROM upload_sessions WHERE id = ? AND ended = 0",
    )
    .bind(upload)
    .fetch_optional(&cat.read)
    .await?
    .ok_or_else(|| Error::not_found(format!("upload {upload}")))?;
    session_of(&row)
}

fn session_of(row: &SqliteRow) -> Result<UploadSession> {
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

pub(super) async fn pieces(cat: &SqliteCatalog, upload: &str) -> Result<Vec<UploadPiece>> {
    let rows: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT start, len, name FROM upload_pieces WHERE session_id = ? ORDER BY start")
            .bind(upload)
            .fetch_all(&cat.read)
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

pub(super) async fn add_piece(cat: &SqliteCatalog, upload: &str, piece: &UploadPiece) -> Result<u64> {
    let (mut tx, now) = cat.begin().await?;
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT txn_id, received FROM upload_sessions WHERE id = ? AND ended = 0")
            .bind(upload)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((txn, received)) = row else {
        return Err(Error::not_found(format!("upload {upload}")));
    };
    check_open(&mut tx, &txn, now).await?;
    let offset = u64_of(received);
    if offset != piece.start {
        return Err(Error::UploadOffset {
            upload: upload.to_owned(),
            offset,
            detail: format!(" (a piece starting at {} was not counted)", piece.start),
        });
    }
    let end = piece.start + piece.len;
    sqlx::query("INSERT INTO upload_pieces (session_id, start, len, name) VALUES (?, ?, ?, ?)")
        .bind(upload)
        .bind(i64_of(piece.start))
        .bind(i64_of(piece.len))
        .bind(&piece.name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE upload_sessions SET received = ?, updated_at = ? WHERE id = ?")
        .bind(i64_of(end))
        .bind(now.millis())
        .bind(upload)
        .execute(&mut *tx)
        .await?;
    cat.commit(tx).await?;
    Ok(end)
}

pub(super) async fn discard(cat: &SqliteCatalog, upload: &str) -> Result<bool> {
    let (mut tx, _) = cat.begin().await?;
    let n = sqlx::query("UPDATE upload_sessions SET ended = 1 WHERE id = ? AND ended = 0")
        .bind(upload)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    cat.commit(tx).await?;
    Ok(n > 0)
}

pub(super) async fn discard_finished(cat: &SqliteCatalog) -> Result<u64> {
    // A read first: the reaper asks every second, and almost always nothing has ended.
    let any: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM upload_sessions s WHERE s.ended = 0 AND NOT EXISTS
           (SELECT 1 FROM txns t WHERE t.id = s.txn_id AND t.state = 'open') LIMIT 1",
    )
    .fetch_optional(&cat.read)
    .await?;
    if any.is_none() {
        return Ok(0);
    }
    let (mut tx, _) = cat.begin().await?;
    let n = sqlx::query(
        "UPDATE upload_sessions SET ended = 1 WHERE ended = 0 AND NOT EXISTS
           (SELECT 1 FROM txns t WHERE t.id = upload_sessions.txn_id AND t.state = 'open')",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    cat.commit(tx).await?;
    Ok(n)
}

pub(super) async fn ended(cat: &SqliteCatalog, limit: u32) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM upload_sessions WHERE ended = 1 LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&cat.read)
            .await?,
    )
}

pub(super) async fn forget(cat: &SqliteCatalog, uploads: &[String]) -> Result<()> {
    if uploads.is_empty() {
        return Ok(());
    }
    let (mut tx, _) = cat.begin().await?;
    for upload in uploads {
        sqlx::query("DELETE FROM upload_pieces WHERE session_id = ?")
            .bind(upload)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM upload_sessions WHERE id = ? AND ended = 1")
            .bind(upload)
            .execute(&mut *tx)
            .await?;
    }
    cat.commit(tx).await
}
