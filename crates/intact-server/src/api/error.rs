//! The artifact API's one mapping from errors to HTTP status codes and JSON bodies. Every
//! body has `"error"` (a stable code a client branches on) and `"message"` (for humans);
//! validation errors also name the `field` and the `rule`.

use axum::extract::path::ErrorKind as PathErrorKind;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use intact_core::ValidationError;
use intact_store::Error as StoreError;
use serde_json::json;

use crate::http::reply::{BodyFormat, ErrorReply};

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

impl ErrorReply for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } | Self::WrongRepo(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Coded { status, .. } | Self::OverLimit { status, .. } => *status,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Store(e) => store_status_and_code(e).0,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::WrongRepo(_) => "unsupported",
            Self::Internal(_) => "internal",
            Self::Unavailable(_) => "unavailable",
            Self::Coded { code, .. } | Self::OverLimit { code, .. } => code,
            Self::BodyTooLarge(_) => "too_large",
            Self::Store(e) => store_status_and_code(e).1,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::BadRequest { field, message } => format!("{field}: {message}"),
            Self::NotFound(what) => format!("{what} not found"),
            Self::WrongRepo(m)
            | Self::Internal(m)
            | Self::Unavailable(m)
            | Self::BodyTooLarge(m)
            | Self::Coded { message: m, .. }
            | Self::OverLimit { message: m, .. } => m.clone(),
            Self::Store(e) => e.to_string(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            Self::BadRequest { field, .. } => Some(json!({"field": field})),
            Self::WrongRepo(_) => Some(json!({"field": "repo"})),
            Self::Unavailable(_) => Some(json!({"retryable": true})),
            Self::OverLimit { field, limit, .. } => Some(json!({"field": field, "limit": limit})),
            Self::BodyTooLarge(_) => Some(json!({"field": "body", "limit": "limits.max_body_bytes"})),
            Self::Store(e) => store_details(e),
            _ => None,
        }
    }

    fn format(&self) -> BodyFormat {
        BodyFormat::Json
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(message = %self.message(), "backend unavailable");
        } else if status.is_server_error() || matches!(self, Self::Store(StoreError::StorageFull { .. })) {
            tracing::error!(code = self.code(), message = %self.message(), "request failed");
        }
        // An upload cut at `limits.max_file_bytes` ends as a body error: said as the limit.
        if let Self::Store(StoreError::Body(e)) = &self
            && let Some(max) = crate::limits::body::file_limit_of(e)
        {
            return crate::limits::body::file_too_large(max).into_response();
        }
        let body_too_large = matches!(self, Self::BodyTooLarge(_));
        let upload_offset = match &self {
            Self::Store(StoreError::UploadOffset { offset, .. }) => Some(*offset),
            _ => None,
        };
        let mut resp = self.reply();
        if let Some(offset) = upload_offset {
            // Where to resume, as a resumable upload's HEAD says it too.
            super::uploads::offset_headers(resp.headers_mut(), offset);
        }
        if body_too_large {
            resp.extensions_mut().insert(crate::limits::BodyOverLimit);
        }
        resp
    }
}

/// A storage outcome's status and stable code, as every JSON front-end answers it.
pub fn store_status_and_code(e: &StoreError) -> (StatusCode, &'static str) {
    match e {
        StoreError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
        StoreError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
        StoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        StoreError::Exists { .. } => (StatusCode::CONFLICT, "exists"),
        StoreError::Locked { .. } => (StatusCode::CONFLICT, "locked"),
        StoreError::TagMoved { .. } => (StatusCode::CONFLICT, "tag_moved"),
        StoreError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
        StoreError::TxnNotOpen { .. } => (StatusCode::CONFLICT, "not_open"),
        StoreError::UploadsInProgress { .. } => (StatusCode::CONFLICT, "uploads_in_progress"),
        StoreError::BodyIdle { .. } | StoreError::BodyTooSlow { .. } => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
        StoreError::PathClash(_) => (StatusCode::BAD_REQUEST, "path_conflict"),
        StoreError::BlobDamaged { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "blob_damaged"),
        StoreError::StorageFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
        StoreError::IdempotencyMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_mismatch"),
        StoreError::ChecksumMismatch { .. } => (StatusCode::BAD_REQUEST, "checksum_mismatch"),
        StoreError::BlobNotStored { .. } => (StatusCode::CONFLICT, "blob_not_stored"),
        StoreError::UploadOffset { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "upload_offset"),
        StoreError::WaitTimeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        StoreError::Body(_) => (StatusCode::BAD_REQUEST, "body"),
        StoreError::Unavailable { .. } | StoreError::CatalogUnavailable { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        StoreError::BlobMissing { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "blob_missing"),
        StoreError::TooManyFiles { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_files"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// The extra JSON fields a storage outcome's body carries.
fn store_details(e: &StoreError) -> Option<serde_json::Value> {
    Some(match e {
        StoreError::Invalid(v) => json!({"field": v.field, "rule": v.rule, "value": v.value}),
        StoreError::BadRequest { field, .. } => json!({"field": field}),
        StoreError::Locked { holder, expires_at, .. } => {
            json!({"holder": {"id": holder, "expires_at": expires_at}})
        }
        StoreError::Conflict { diff, .. } => json!({"differences": diff}),
        StoreError::TagMoved { current, .. } => json!({"current": current}),
        StoreError::TxnNotOpen { state, .. } => json!({"state": state}),
        StoreError::UploadsInProgress { .. }
        | StoreError::Unavailable { .. }
        | StoreError::CatalogUnavailable { .. } => {
            json!({"retryable": true})
        }
        StoreError::PathClash(_) => json!({"field": "files"}),
        StoreError::IdempotencyMismatch { .. } => json!({"field": "idempotency_key"}),
        StoreError::ChecksumMismatch { expected, actual } => {
            json!({"field": "x-checksum-sha256", "expected": expected, "actual": actual})
        }
        StoreError::BlobNotStored { digest } => json!({"field": "x-blob-sha256", "sha256": digest}),
        StoreError::UploadOffset { offset, .. } => json!({"field": "content-range", "offset": offset}),
        StoreError::TooManyFiles { limit, .. } => {
            json!({"field": "files", "limit": "limits.max_files_per_transaction", "max": limit})
        }
        _ => return None,
    })
}

/// Maps a storage outcome to a response. Public so the other front-ends can reuse the JSON
/// shape where they want the same codes.
pub fn store_error_response(e: StoreError) -> Response {
    if let StoreError::BlobMissing { .. } = e {
        tracing::error!(error = %e, "committed blob missing; run `intact verify`");
    }
    ApiError::Store(e).into_response()
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
