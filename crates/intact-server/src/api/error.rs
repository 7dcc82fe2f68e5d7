//! The artifact API's one mapping from errors to HTTP status codes and JSON bodies. Every
//! body has `"error"` (a stable code a client branches on) and `"message"` (for humans);
//! validation errors also name the `field` and the `rule`.

use axum::Json;
use axum::extract::path::ErrorKind as PathErrorKind;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use intact_core::ValidationError;
use intact_store::Error as StoreError;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    Store(StoreError),
    /// A request-level problem found by the front-end itself.
    BadRequest {
        field: &'static str,
        message: String,
    },
    NotFound(String),
    /// The repository exists but does not support this operation.
    WrongRepo(String),
    /// Something broke that the client cannot fix.
    Internal(String),
    /// The catalog or blob store could not be reached (a front-end's own outcome, e.g.
    /// staging's): 503 `unavailable`, retryable, like a store error saying so.
    Unavailable(String),
    /// A JSON (or other buffered) body over `limits.max_body_bytes`: 413, its message
    /// completed with the number by `limits::explain_body_limit`.
    BodyTooLarge(String),
    /// A request over one of `[limits]`: `limit` is its configuration key, `field` what was
    /// too large (`body`, `file`, `metadata`, `files`).
    OverLimit {
        status: StatusCode,
        code: &'static str,
        field: &'static str,
        limit: &'static str,
        message: String,
    },
    /// A front-end's own outcome with its status and stable code (e.g. staging's 502
    /// `bad_archive` or 504 `timeout`).
    Coded {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            field,
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::Store(StoreError::Invalid(e))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        body_rejection(r.status(), r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        body_rejection(r.status(), r.body_text())
    }
}

/// A body that could not be read or parsed: 413 when it is over the size limit (the client
/// must send less, not fix a field), else 400 naming the body.
fn body_rejection(status: StatusCode, message: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BodyTooLarge(format!("body: {message} (limits.max_body_bytes)"))
    } else {
        ApiError::BadRequest { field: "body", message }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::BadRequest {
            field: "query",
            message: r.body_text(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        let message = match &r {
            // axum would name its own capture (`rest`), which means nothing to a client.
            PathRejection::FailedToDeserializePathParams(e)
                if matches!(e.kind(), PathErrorKind::InvalidUtf8InPathParam { .. }) =>
            {
                "the URL path is not UTF-8 once percent-decoded (an overlong or truncated escape such as %c0%ae)"
                    .to_owned()
            }
            _ => r.body_text(),
        };
        Self::BadRequest { field: "path", message }
    }
}

fn body(status: StatusCode, value: serde_json::Value) -> Response {
    (status, Json(value)).into_response()
}

/// 503 `unavailable`, retryable: the catalog or blob store could not be reached.
fn unavailable(message: String) -> Response {
    tracing::error!(%message, "backend unavailable");
    body(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": "unavailable", "retryable": true, "message": message}),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest { field, message } => body(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_request", "field": field, "message": format!("{field}: {message}")}),
            ),
            Self::NotFound(what) => body(
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": format!("{what} not found")}),
            ),
            Self::WrongRepo(message) => body(
                StatusCode::BAD_REQUEST,
                json!({"error": "unsupported", "field": "repo", "message": message}),
            ),
            Self::Internal(message) => {
                tracing::error!(%message, "internal error");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal", "message": message}),
                )
            }
            Self::Coded { status, code, message } => body(status, json!({"error": code, "message": message})),
            Self::OverLimit {
                status,
                code,
                field,
                limit,
                message,
            } => body(
                status,
                json!({"error": code, "field": field, "limit": limit, "message": message}),
            ),
            Self::BodyTooLarge(message) => {
                let mut resp = body(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": "too_large", "field": "body", "limit": "limits.max_body_bytes", "message": message}),
                );
                resp.extensions_mut().insert(crate::limits::BodyOverLimit);
                resp
            }
            Self::Unavailable(message) => unavailable(message),
            Self::Store(e) => store_error_response(e),
        }
    }
}

/// Maps a storage outcome to a response. Public so the other front-ends can reuse the JSON
/// shape where they want the same codes.
pub fn store_error_response(e: StoreError) -> Response {
    let message = e.to_string();
    match e {
        StoreError::Invalid(v) => body(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid", "field": v.field, "rule": v.rule, "value": v.value, "message": message}),
        ),
        StoreError::BadRequest { field, .. } => body(
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "field": field, "message": message}),
        ),
        StoreError::NotFound { .. } => body(StatusCode::NOT_FOUND, json!({"error": "not_found", "message": message})),
        StoreError::Locked { holder, expires_at, .. } => body(
            StatusCode::CONFLICT,
            json!({"error": "locked", "holder": {"id": holder, "expires_at": expires_at}, "message": message}),
        ),
        StoreError::Conflict { diff, .. } => body(
            StatusCode::CONFLICT,
            json!({"error": "conflict", "differences": diff, "message": message}),
        ),
        StoreError::TxnNotOpen { state, .. } => body(
            StatusCode::CONFLICT,
            json!({"error": "not_open", "state": state, "message": message}),
        ),
        StoreError::UploadsInProgress { .. } => body(
            StatusCode::CONFLICT,
            json!({"error": "uploads_in_progress", "retryable": true, "message": message}),
        ),
        StoreError::BodyIdle { .. } => body(
            StatusCode::REQUEST_TIMEOUT,
            json!({"error": "body_timeout", "message": message}),
        ),
        StoreError::PathClash(_) => body(
            StatusCode::BAD_REQUEST,
            json!({"error": "path_conflict", "field": "files", "message": message}),
        ),
        StoreError::BlobDamaged { .. } => body(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "blob_damaged", "message": message}),
        ),
        StoreError::StorageFull { .. } => {
            tracing::error!(%message, "out of space");
            body(
                StatusCode::INSUFFICIENT_STORAGE,
                json!({"error": "insufficient_storage", "message": message}),
            )
        }
        StoreError::IdempotencyMismatch { .. } => body(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "idempotency_mismatch", "field": "idempotency_key", "message": message}),
        ),
        StoreError::ChecksumMismatch { expected, actual } => body(
            StatusCode::BAD_REQUEST,
            json!({"error": "checksum_mismatch", "field": "x-checksum-sha256", "expected": expected, "actual": actual, "message": message}),
        ),
        StoreError::WaitTimeout { .. } => body(
            StatusCode::GATEWAY_TIMEOUT,
            json!({"error": "timeout", "message": message}),
        ),
        StoreError::Body(e) => match crate::limits::body::file_limit_of(&e) {
            Some(max) => crate::limits::body::file_too_large(max).into_response(),
            None => body(StatusCode::BAD_REQUEST, json!({"error": "body", "message": message})),
        },
        StoreError::TooManyFiles { limit, .. } => body(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "too_many_files", "field": "files", "limit": "limits.max_files_per_transaction", "max": limit, "message": message}),
        ),
        StoreError::Unavailable { .. } | StoreError::CatalogUnavailable { .. } => unavailable(message),
        StoreError::BlobMissing { .. } => {
            tracing::error!(%message, "committed blob missing; run `intact verify`");
            body(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "blob_missing", "message": message}),
            )
        }
        other => {
            tracing::error!(error = %other, "storage error");
            body(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal", "message": other.to_string()}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_backend_is_a_retryable_503() {
        for e in [
            StoreError::CatalogUnavailable {
                source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            },
            StoreError::Unavailable {
                context: "reading s3://b/k".into(),
                source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            },
        ] {
            let what = e.to_string();
            let resp = store_error_response(e);
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
        }
    }
}
