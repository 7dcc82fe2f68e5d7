//! API tokens on the shared catalog (see `tokens.rs`).

use super::super::token_record;
use super::*;

const COLUMNS: &str = "name, secret_sha256, scopes, created_at, expires_at, revoked_at";

fn parse(r: &PgRow) -> Result<TokenRecord> {
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

pub(super) async fn create(cat: &PostgresCatalog, token: &NewToken) -> Result<TokenRecord> {
    let mut w = cat.begin().await?;
    let now = cat.now(&mut w).await?;
    let inserted = sqlx::query(
        "INSERT INTO tokens (name, secret_sha256, scopes, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
    )
    .bind(&token.name)
    .bind(&token.secret_sha256)
    .bind(scopes_json(token)?)
    .bind(now.millis())
    .bind(token.expires_at.map(|t| t.millis()))
    .execute(w.conn())
    .await?
    .rows_affected();
    if inserted == 0 {
        w.tx.rollback().await?;
        return Err(Error::Exists {
            what: format!(
                "a token named {} (names are never reused, even once revoked)",
                token.name
            ),
        });
    }
    cat.commit(w).await?;
    Ok(TokenRecord {
        name: token.name.clone(),
        secret_sha256: token.secret_sha256.clone(),
        scopes: token.scopes.clone(),
        created_at: now,
        expires_at: token.expires_at,
        revoked_at: None,
    })
}

pub(super) async fn list(cat: &PostgresCatalog) -> Result<Vec<TokenRecord>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM tokens ORDER BY name"))
        .fetch_all(&cat.pool)
        .await?;
    rows.iter().map(parse).collect()
}

pub(super) async fn by_secret_hash(cat: &PostgresCatalog, secret_sha256: &str) -> Result<Option<TokenRecord>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tokens WHERE secret_sha256 = $1"))
        .bind(secret_sha256)
        .fetch_optional(&cat.pool)
        .await?;
    row.as_ref().map(parse).transpose()
}

pub(super) async fn revoke(cat: &PostgresCatalog, name: &str) -> Result<Option<TokenRecord>> {
    let mut w = cat.begin().await?;
    let now = cat.now(&mut w).await?;
    sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
        .bind(now.millis())
        .bind(name)
        .execute(w.conn())
        .await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tokens WHERE name = $1"))
        .bind(name)
        .fetch_optional(w.conn())
        .await?;
    cat.commit(w).await?;
    row.as_ref().map(parse).transpose()
}

pub(super) async fn any(cat: &PostgresCatalog) -> Result<bool> {
    let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tokens)")
        .fetch_one(&cat.pool)
        .await?;
    Ok(any)
}

pub(super) async fn open_txns_owned_by(cat: &PostgresCatalog, owner: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM txns WHERE owner = $1 AND state = 'open'")
        .bind(owner)
        .fetch_one(&cat.pool)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Answered from the partial index of open transactions' expiries.
pub(super) async fn count_open_txns(cat: &PostgresCatalog) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM txns WHERE state = 'open'")
        .fetch_one(&cat.pool)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(super) async fn import(cat: &PostgresCatalog, token: &TokenRecord) -> Result<bool> {
    let scopes = serde_json::to_string(&token.scopes).map_err(|e| Error::Catalog {
        context: "writing a token's scopes".into(),
        source: Box::new(e),
    })?;
    let inserted = sqlx::query(
        "INSERT INTO tokens (name, secret_sha256, scopes, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING",
    )
    .bind(&token.name)
    .bind(&token.secret_sha256)
    .bind(scopes)
    .bind(token.created_at.millis())
    .bind(token.expires_at.map(|t| t.millis()))
    .bind(token.revoked_at.map(|t| t.millis()))
    .execute(&cat.pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

pub(super) async fn census(cat: &PostgresCatalog) -> Result<crate::tokens::TokenCensus> {
    let (tokens, revoked): (i64, i64) = sqlx::query_as("SELECT COUNT(*), COUNT(revoked_at) FROM tokens")
        .fetch_one(&cat.pool)
        .await?;
    Ok(crate::tokens::TokenCensus {
        tokens: u64::try_from(tokens).unwrap_or(0),
        revoked: u64::try_from(revoked).unwrap_or(0),
    })
}
