//! The answer a limit gives, in the body format of the front-end asked.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Whether `path` is on the GOPROXY protocol, whose clients (the go command) print a
/// `text/plain` body; everything else, Go publish included, answers the artifact API's JSON.
pub(crate) fn is_go_protocol_path(path: &str) -> bool {
    path.starts_with("/go/") && !path.ends_with("/publish")
}

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
    pub(crate) fn into_response(self, path: &str) -> Response {
        let mut resp = if is_go_protocol_path(path) {
            let mut r = (self.status, format!("{}\n", self.message)).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        } else {
            let mut body = json!({"error": self.code, "limit": self.limit, "message": self.message});
            if let Some(seconds) = self.retry_after {
                body["retryable"] = json!(true);
                body["retry_after_seconds"] = json!(seconds);
            }
            (self.status, Json(body)).into_response()
        };
        let headers = resp.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        resp
    }
}
