//! API tokens on the embedded catalog (see `tokens.rs`).

use super::super::token_record;
use super::*;

const COLUMNS: &str = "name, secret_sha256, scopes, created_at, expires_at, revoked_at";

fn parse(r: &SqliteRow) -> Result<TokenRecord> {
    token_record(
        r.try_get("name")?,
        r.try_get("secret_sha256")?,
        &r.try_get::<String, _>("scopes")?,
        r.try_get("created_at")?,
        r.try_get("expires_at")?,
        r.try_get("revoked_at")?,
    )
}

fn scopes_json(token: &NewToken) -> Result<String> {
    serde_json::to_string(&token.scopes).map_err(|e| Error::Catalog {
        context: "writing a token's scopes".into(),
        source: Box::new(e),
    })
}

pub(super) async fn create(cat: &SqliteCatalog, token: &NewToken) -> Result<TokenRecord> {
    let (mut tx, now) = cat.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO tokens (name, secret_sha256, scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT DO NOTHING",
    )
    .bind(&token.name)
    .bind(&token.secret_sha256)
    .bind(scopes_json(token)?)
    .bind(now.millis())
    .bind(token.expires_at.map(|t| t.millis()))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Err(Error::Exists {
            what: format!(
                "a token named {} (names are never reused, even once revoked)",
                token.name
            ),
        });
    }
    tx.commit().await?;
    Ok(TokenRecord {
        name: token.name.clone(),
        secret_sha256: token.secret_sha256.clone(),
        scopes: token.scopes.clone(),
        created_at: now,
        expires_at: token.expires_at,
        revoked_at: None,
    })
}

pub(super) async fn list(cat: &SqliteCatalog) -> Result<Vec<TokenRecord>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM tokens ORDER BY name"))
        .fetch_all(&cat.read)
        .await?;
    rows.iter().map(parse).collect()
}

pub(super) async fn by_secret_hash(cat: &SqliteCatalog, secret_sha256: &str) -> Result<Option<TokenRecord>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tokens WHERE secret_sha256 = ?"))
        .bind(secret_sha256)
        .fetch_optional(&cat.read)
        .await?;
    row.as_ref().map(parse).transpose()
}

pub(super) async fn revoke(cat: &SqliteCatalog, name: &str) -> Result<Option<TokenRecord>> {
    let (mut tx, now) = cat.begin().await?;
    sqlx::query("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL")
        .bind(now.millis())
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tokens WHERE name = ?"))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    row.as_ref().map(parse).transpose()
}

pub(super) async fn any(cat: &SqliteCatalog) -> Result<bool> {
    let any: i64 = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tokens)")
        .fetch_one(&cat.read)
        .await?;
    Ok(any != 0)
}

pub(super) async fn open_txns_owned_by(cat: &SqliteCatalog, owner: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM txns WHERE owner = ? AND state = 'open'")
        .bind(owner)
        .fetch_one(&cat.read)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Answered from the partial index of open transactions' expiries.
pub(super) async fn count_open_txns(cat: &SqliteCatalog) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM txns WHERE state = 'open'")
        .fetch_one(&cat.read)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(super) async fn import(cat: &SqliteCatalog, token: &TokenRecord) -> Result<bool> {
    let scopes = serde_json::to_string(&token.scopes).map_err(|e| Error::Catalog {
        context: "writing a token's scopes".into(),
        source: Box::new(e),
    })?;
    let (mut tx, _) = cat.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO tokens (name, secret_sha256, scopes, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT DO NOTHING",
    )
    .bind(&token.name)
    .bind(&token.secret_sha256)
    .bind(scopes)
    .bind(token.created_at.millis())
    .bind(token.expires_at.map(|t| t.millis()))
    .bind(token.revoked_at.map(|t| t.millis()))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(inserted == 1)
}

pub(super) async fn census(cat: &SqliteCatalog) -> Result<crate::tokens::TokenCensus> {
    let (tokens, revoked): (i64, i64) = sqlx::query_as("SELECT COUNT(*), COUNT(revoked_at) FROM tokens")
        .fetch_one(&cat.read)
        .await?;
    Ok(crate::tokens::TokenCensus {
        tokens: u64::try_from(tokens).unwrap_or(0),
        revoked: u64::try_from(revoked).unwrap_or(0),
    })
}
