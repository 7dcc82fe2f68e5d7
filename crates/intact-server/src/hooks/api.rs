//! `/api/v1/hooks`: create (the secret is shown once, in the answer), list, show, delete.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use intact_store::hooks::{self, HookRecord, NewHook};
use serde::Deserialize;

use crate::api::error::{ApiError, ApiResult};
use crate::openapi::schemas::{HookList, NewHookAnswer};
use crate::state::AppState;

/// A new webhook.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateHook {
    name: String,
    /// A configured repo, or `*`.
    repo: String,
    url: String,
    /// Default: `committed`.
    #[serde(default)]
    events: Option<Vec<String>>,
    /// Default: 32 random bytes, hex.
    #[serde(default)]
    secret: Option<String>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateHook>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(req) = body?;
    if req.repo != "*" && state.repo(&req.repo).is_none() {
        return Err(ApiError::bad(
            "repo",
            format!(
                "no repo named {:?} is configured (name one, or \"*\" for all)",
                req.repo
            ),
        ));
    }
    let secret = req.secret.unwrap_or_else(|| hex::encode(rand::random::<[u8; 32]>()));
    let new = NewHook {
        name: req.name,
        repo: req.repo,
        url: req.url,
        secret: secret.clone(),
        events: req.events.unwrap_or_else(|| vec!["committed".to_owned()]),
    };
    hooks::check(&new).map_err(|(field, message)| ApiError::bad(field, message))?;
    let record = state.store.catalog().create_hook(&new).await?;
    tracing::info!(
        hook = %record.name,
        repo = %record.repo,
        url = %intact_store::redact(&record.url),
        "webhook created"
    );
    Ok((StatusCode::CREATED, Json(NewHookAnswer { hook: record, secret })).into_response())
}

pub(super) async fn list(State(state): State<AppState>) -> ApiResult<Json<HookList>> {
    let hooks = state.store.catalog().hooks().await?;
    Ok(Json(HookList { hooks }))
}

pub(super) async fn show(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<HookRecord>> {
    let Path(name) = path?;
    let hooks = state.store.catalog().hooks().await?;
    let hook = hooks
        .into_iter()
        .find(|h| h.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("hook {name:?}")))?;
    Ok(Json(hook))
}

pub(super) async fn delete(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let Path(name) = path?;
    if state.store.catalog().delete_hook(&name).await? {
        tracing::info!(hook = %name, "webhook deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("hook {name:?}")))
    }
}
