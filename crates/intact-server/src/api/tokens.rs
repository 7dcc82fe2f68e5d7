//! `/api/v1/tokens`: create, list and revoke API tokens (the authentication layer lets only
//! `*:admin` tokens here once access control is on).

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use intact_store::tokens::{self, Scope, TokenRecord};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use crate::http::Caller;
use crate::openapi::schemas::{NewTokenAnswer, TokenList};
use crate::state::AppState;

/// The longest a token may be made to last by `expires_in_seconds` (ten years).
const MAX_LIFETIME_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// A new token: its name, scopes (`REPO:ACCESS`, e.g. `releases:publish`, `*:admin`) and
/// lifetime (none: it does not expire).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires_in_seconds: Option<u64>,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Extension<Caller>,
    headers: HeaderMap,
    body: Result<Json<CreateToken>, JsonRejection>,
) -> ApiResult<Response> {
    // While no token exists every request may do everything, and a web page whose host name
    // is made to resolve to this server (DNS rebinding) passes the cross-site check. Such a
    // page must not mint the first admin token and lock the owner out: while access control
    // is off, a browser (which always says where a POST comes from) cannot make tokens.
    if !caller.enforced && (headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site")) {
        return Err(ApiError::Coded {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: "no token exists yet, and a browser may not make the first one: make it on the server's host \
                      with `intact token create NAME --scope '*:admin' --config ...` (or --data-dir)"
                .into(),
        });
    }
    let Json(req) = body?;
    let scopes = req
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()?;
    let expires_at = match req.expires_in_seconds {
        None => None,
        Some(0) => return Err(ApiError::bad("expires_in_seconds", "must be at least 1")),
        Some(s) if s > MAX_LIFETIME_SECONDS => {
            return Err(ApiError::bad(
                "expires_in_seconds",
                format!(
                    "must be at most {MAX_LIFETIME_SECONDS} (ten years); leave it out for a token that does not expire"
                ),
            ));
        }
        Some(s) => Some(state.store.now().plus(Duration::from_secs(s))),
    };
    let (record, secret) = tokens::create(state.store.catalog().as_ref(), &req.name, scopes, expires_at).await?;
    state.auth.switch_on();
    tracing::info!(token = %record.name, scopes = ?record.scopes.iter().map(ToString::to_string).collect::<Vec<_>>(), "token created");
    Ok((StatusCode::CREATED, Json(NewTokenAnswer { token: record, secret })).into_response())
}

pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Json<TokenList>> {
    let tokens = state.store.catalog().tokens().await?;
    Ok(Json(TokenList { tokens }))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<TokenRecord>> {
    let Path(name) = path?;
    tokens::validate_token_name(&name)?;
    match state.store.catalog().revoke_token(&name).await? {
        Some(record) => {
            // In force here at once; answered only once no other server can still believe
            // the token (each reads the token census often and trusts its memory briefly).
            state.tokens.forget_all();
            tokio::time::sleep(tokens::REVOCATION_SETTLES).await;
            tracing::info!(token = %record.name, "token revoked");
            Ok(Json(record))
        }
        None => Err(ApiError::NotFound(format!("token {name}"))),
    }
}
