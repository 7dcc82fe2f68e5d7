//! Webhooks: `/api/v1/hooks` (admin) to create, list, show and delete them, and the deliverer
//! that POSTs matching events of the durable event log to each hook, signed, in order, at
//! least once (docs/operations.md#webhooks).

pub(crate) mod api;
pub mod deliver;

use axum::Router;
use axum::middleware;
use axum::routing::get;

use crate::state::AppState;

/// Routes under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/hooks",
            get(api::list)
                .post(api::create)
                .route_layer(middleware::from_fn(crate::api::require_json)),
        )
        .route(
            "/hooks/{name}",
            get(api::show)
                .delete(api::delete)
                .route_layer(middleware::from_fn(crate::api::require_json)),
        )
}
