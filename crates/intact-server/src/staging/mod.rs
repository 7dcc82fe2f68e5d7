//! Build-artifact staging: generic proxy repos that fetch named artifacts from an upstream
//! archive on first request, exactly once, and commit each as one atomic version.
//! (Implemented with the staging issue; this holds its state and hooks.)

use axum::Router;
use intact_core::{Name, Version};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::error::ApiError;
use crate::config::{Config, RepoConfig};
use crate::state::AppState;

#[derive(Debug, Default)]
pub struct StagingState {}

impl StagingState {
    pub fn new(_config: &Config) -> anyhow::Result<Self> {
        Ok(Self {})
    }
}

/// Routes added to `/api/v1` by staging.
pub fn routes() -> Router<AppState> {
    Router::new()
}

pub fn start_background(_state: &AppState, _shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    Vec::new()
}

/// Called by the read path when a proxy repo lacks a version: stage it, or say why not.
pub async fn stage_on_read(
    _state: &AppState,
    repo: &RepoConfig,
    name: &Name,
    version: &Version,
) -> Result<(), ApiError> {
    Err(ApiError::NotFound(format!("version {}/{name}@{version}", repo.name)))
}

/// Applies per-repo disk caps (LRU eviction of staged versions). Returns a summary, if any.
pub async fn enforce_limits(_state: &AppState) -> Result<Option<serde_json::Value>, ApiError> {
    Ok(None)
}

/// Records a read of a version (least-recently-used bookkeeping for proxy repos).
pub fn touch(_state: &AppState, _manifest: &intact_core::Manifest) {}
