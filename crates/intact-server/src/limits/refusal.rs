//! The answer a limit gives, in the body format of the front-end asked.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A request refused by a limit.
pub(crate) struct LimitRefusal {
    pub status: StatusCode,
    /// The stable error code a client branches on (`rate_limited`, `busy`, ...).
    pub code: &'static str,
    /// The configuration key of the limit, e.g. `limits.rate_per_address`.
    pub limit: &'static str,
    pub message: String,
    /// Seconds after which the same request may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl LimitRefusal {
    /// In the format of the front-end `path` belongs to (`http::reply`), with `Retry-After`
    /// when waiting helps.
    pub(crate) fn into_response(self, path: &str) -> Response {
        let mut details = json!({"limit": self.limit});
        if let Some(seconds) = self.retry_after {
            details["retryable"] = json!(true);
            details["retry_after_seconds"] = json!(seconds);
        }
        let mut resp = crate::http::reply::Refusal::new(self.status, self.code, self.message, path)
            .with_details(details)
            .into_response();
        if let Some(seconds) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        resp
    }
}
