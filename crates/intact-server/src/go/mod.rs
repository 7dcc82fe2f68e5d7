//! The Go module proxy front-end (GOPROXY protocol) over hosted, proxy and group repos.
//! (Implemented with the Go proxy issue; this holds its state and routes.)

use axum::Router;

use crate::config::Config;
use crate::state::AppState;

/// Caches and single-flight state of the Go front-end.
#[derive(Debug, Default)]
pub struct GoState {}

impl GoState {
    pub fn new(_config: &Config) -> anyhow::Result<Self> {
        Ok(Self {})
    }
}

/// Routes under `/go`.
pub fn routes() -> Router<AppState> {
    Router::new()
}
