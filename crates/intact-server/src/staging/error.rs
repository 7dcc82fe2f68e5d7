//! Staging's outcomes and their one mapping to HTTP status codes. Upstream trouble is a 502
//! (the upstream failed, or sent an archive intact refuses), "not there upstream" a 404, a
//! bounded wait that ran out a 504 naming what was awaited.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::error::ApiError;
use crate::http::reply::{BodyFormat, ErrorReply};
use intact_core::Timestamp;

use crate::singleflight::{Failure, FlightError, remembered_note};

/// Why an artifact could not be staged. Shared by every waiter of a flight, and remembered
/// for the repo's `failure_cache_seconds`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StageError {
    /// The request asked for something this repo cannot stage (unknown artifact, bad file name).
    #[error("{field}: {message}")]
    BadRequest { field: &'static str, message: String },
    /// The upstream has no such file or directory, or a pattern matched nothing.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The upstream failed: an error status, a refused or cut connection, a truncated body.
    #[error("{0}")]
    Upstream(String),
    /// An archive that extraction refused (path escape, link out of the tree, bomb, corrupt).
    #[error("{file}: {message}")]
    BadArchive { file: String, message: String },
    /// Upstream content that cannot become one version (two files with one path, a name
    /// outside the path grammar).
    #[error("{0}")]
    BadContent(String),
    /// A bounded wait ran out; the staging goes on.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    /// The staging's upstream transfers ran past their overall deadline
    /// (`fetch_deadline_seconds`) and were abandoned.
    #[error(
        "{what} did not finish within its deadline of {seconds}s (fetch_deadline_seconds): the upstream is too slow; nothing was staged"
    )]
    Deadline { what: String, seconds: u64 },
    /// The disk under the store is full: nothing was staged. Resumes once space is freed.
    #[error("{0}")]
    InsufficientStorage(String),
    /// The catalog or the blob store could not be reached: a moment's outage of this server,
    /// nothing about the artifact. Retryable; resumes by itself once they answer again.
    #[error("{0}")]
    Unavailable(String),
    /// A fault on this side (local disk, catalog).
    #[error("{0}")]
    Internal(String),
}

impl StageError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Upstream(_) | Self::BadArchive { .. } | Self::BadContent(_) => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } | Self::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad_request",
            Self::NotFound { .. } => "not_found",
            Self::Upstream(_) => "upstream",
            Self::BadArchive { .. } => "bad_archive",
            Self::BadContent(_) => "bad_upstream_content",
            Self::Timeout { .. } | Self::Deadline { .. } => "timeout",
            Self::InsufficientStorage(_) => "insufficient_storage",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The JSON body (without per-item details).
    pub fn body(&self) -> serde_json::Value {
        let mut v = json!({"error": self.code(), "message": self.to_string()});
        match self {
            Self::BadRequest { field, .. } => v["field"] = json!(field),
            // As the artifact API says it: a client may retry as it is.
            Self::Unavailable(_) => v["retryable"] = json!(true),
            _ => {}
        }
        v
    }

    /// This failure as served again from the failure memory: same status and code, and the
    /// message says it is remembered, since and until when.
    pub fn remembered(&self, at: Timestamp, until: Timestamp) -> Self {
        let note = remembered_note(at, until);
        match self {
            Self::BadRequest { field, message } => Self::BadRequest {
                field,
                message: format!("{message} ({note})"),
            },
            Self::NotFound { what } => Self::NotFound {
                what: format!("{what} ({note})"),
            },
            Self::Upstream(m) => Self::Upstream(format!("{m} ({note})")),
            Self::BadArchive { file, message } => Self::BadArchive {
                file: file.clone(),
                message: format!("{message} ({note})"),
            },
            Self::BadContent(m) => Self::BadContent(format!("{m} ({note})")),
            Self::Timeout { what, seconds } => Self::Timeout {
                what: format!("{what} ({note})"),
                seconds: *seconds,
            },
            Self::Deadline { what, seconds } => Self::Deadline {
                what: format!("{what} ({note})"),
                seconds: *seconds,
            },
            Self::InsufficientStorage(m) => Self::InsufficientStorage(format!("{m} ({note})")),
            Self::Unavailable(m) => Self::Unavailable(format!("{m} ({note})")),
            Self::Internal(m) => Self::Internal(format!("{m} ({note})")),
        }
    }

    pub(crate) fn bad(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }
}

/// Recorded by code and text (timeouts keep their seconds), so a follower on another replica
/// answers with the same status and code the leader's clients got.
impl crate::shared_flight::SharedFailure for StageError {
    fn record(&self) -> (String, String) {
        match self {
            Self::BadRequest { field, message } => (format!("bad_request:{field}"), message.clone()),
            Self::NotFound { what } => ("not_found".into(), what.clone()),
            Self::Upstream(m) => ("upstream".into(), m.clone()),
            Self::BadArchive { file, message } => (format!("bad_archive:{file}"), message.clone()),
            Self::BadContent(m) => ("bad_content".into(), m.clone()),
            Self::Timeout { what, seconds } => (format!("timeout:{seconds}"), what.clone()),
            Self::Deadline { what, seconds } => (format!("deadline:{seconds}"), what.clone()),
            Self::InsufficientStorage(m) => ("insufficient_storage".into(), m.clone()),
            Self::Unavailable(m) => ("unavailable".into(), m.clone()),
            Self::Internal(m) => ("internal".into(), m.clone()),
        }
    }

    fn rebuild(kind: &str, message: &str) -> Self {
        let m = message.to_owned();
        let seconds = |k: &str| kind.strip_prefix(k).and_then(|s| s.parse().ok()).unwrap_or(0);
        match kind.split_once(':') {
            // The field names of bad requests are this program's own: one of them, or none.
            Some(("bad_request", field)) => Self::BadRequest {
                field: ["files", "wait_seconds", "artifact", "file", "path", "name", "version"]
                    .into_iter()
                    .find(|f| *f == field)
                    .unwrap_or("request"),
                message: m,
            },
            Some(("bad_archive", file)) => Self::BadArchive {
                file: file.to_owned(),
                message: m,
            },
            Some(("timeout", _)) => Self::Timeout {
                what: m,
                seconds: seconds("timeout:"),
            },
            Some(("deadline", _)) => Self::Deadline {
                what: m,
                seconds: seconds("deadline:"),
            },
            _ => match kind {
                "not_found" => Self::NotFound { what: m },
                "upstream" => Self::Upstream(m),
                "bad_content" => Self::BadContent(m),
                "insufficient_storage" => Self::InsufficientStorage(m),
                "unavailable" => Self::Unavailable(m),
                _ => Self::Internal(m),
            },
        }
    }

    fn timed_out(what: &str, seconds: u64) -> Self {
        Self::Timeout {
            what: format!("{what} (led by another replica)"),
            seconds,
        }
    }
}

/// What upstream answered about the artifact (missing, an archive or names intact refuses) is
/// remembered for `failure_cache_seconds`; an outage, a cut download, a timeout or a local
/// fault is not: the next request tries again.
impl Failure for StageError {
    fn is_definitive(&self) -> bool {
        matches!(
            self,
            Self::BadRequest { .. } | Self::NotFound { .. } | Self::BadArchive { .. } | Self::BadContent(_)
        )
    }
}

impl From<intact_store::Error> for StageError {
    fn from(e: intact_store::Error) -> Self {
        match e {
            intact_store::Error::WaitTimeout { what, seconds } => Self::Timeout { what, seconds },
            // Another staging of the same artifact still holds it past this run's wait.
            locked @ intact_store::Error::Locked { .. } => Self::Timeout {
                what: format!("another staging of it to commit ({locked})"),
                seconds: super::stager::LEASE.as_secs(),
            },
            intact_store::Error::Invalid(v) => Self::bad(v.field, v.to_string()),
            // The upstream's files cannot all exist at once on a client (`x` and `x/y`, or
            // paths differing only in case in a case-insensitive repo): its content, not a
            // fault here, and the same on every try.
            intact_store::Error::PathClash(c) => {
                Self::BadContent(format!("the upstream files cannot be one version: {c}"))
            }
            // More upstream files than one version may hold here: the same on every try.
            too_many @ intact_store::Error::TooManyFiles { .. } => {
                Self::BadContent(format!("the upstream artifact cannot be one version: {too_many}"))
            }
            full @ intact_store::Error::StorageFull { .. } => Self::InsufficientStorage(full.to_string()),
            down @ (intact_store::Error::Unavailable { .. } | intact_store::Error::CatalogUnavailable { .. }) => {
                Self::Unavailable(crate::go::error::unavailable_message(&down))
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<FlightError<StageError>> for StageError {
    fn from(e: FlightError<StageError>) -> Self {
        match e {
            FlightError::Failed(e) => (*e).clone(),
            FlightError::Timeout { what, seconds } => Self::Timeout { what, seconds },
            FlightError::Interrupted { what } => Self::Internal(format!("{what} was interrupted")),
            FlightError::Remembered { error, at, until } => error.remembered(at, until),
        }
    }
}

impl From<StageError> for ApiError {
    fn from(e: StageError) -> Self {
        match e {
            StageError::BadRequest { field, message } => ApiError::BadRequest { field, message },
            // The read path falls through to the next group member on NotFound.
            StageError::NotFound { what } => ApiError::NotFound(what),
            StageError::Internal(message) => ApiError::Internal(message),
            StageError::Unavailable(message) => ApiError::Unavailable(message),
            other => ApiError::Coded {
                status: other.status(),
                code: other.code(),
                message: other.to_string(),
            },
        }
    }
}

impl ErrorReply for StageError {
    fn status(&self) -> StatusCode {
        StageError::status(self)
    }

    fn code(&self) -> &'static str {
        StageError::code(self)
    }

    fn message(&self) -> String {
        self.to_string()
    }

    fn details(&self) -> Option<serde_json::Value> {
        Some(self.body())
    }

    fn format(&self) -> BodyFormat {
        BodyFormat::Json
    }
}

impl IntoResponse for StageError {
    fn into_response(self) -> Response {
        if matches!(self, Self::Internal(_)) {
            tracing::error!(error = %self, "staging failed");
        }
        self.reply()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk is the server's condition, said as such (507, retryable), like the
    /// artifact API and the Go proxy say it; not a 500 "internal".
    #[test]
    fn a_full_disk_is_insufficient_storage() {
        let e = StageError::from(intact_store::Error::StorageFull {
            context: "the catalog".into(),
        });
        assert_eq!(e.status(), StatusCode::INSUFFICIENT_STORAGE, "{e:?}");
        assert_eq!(e.code(), "insufficient_storage");
        assert!(!e.is_definitive());
    }

    /// An unreachable catalog or blob store is a moment's outage of this server: 503
    /// `unavailable` with `retryable`, like the artifact API says it; not a 500 "internal",
    /// and not remembered as an answer about the artifact.
    #[test]
    fn an_unreachable_backend_is_a_retryable_503() {
        for e in [
            intact_store::Error::CatalogUnavailable {
                source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            },
            intact_store::Error::Unavailable {
                context: "reading s3://b/k".into(),
                source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            },
        ] {
            let what = e.to_string();
            let e = StageError::from(e);
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}: {e:?}");
            assert_eq!(e.code(), "unavailable");
            assert_eq!(e.body()["retryable"], true, "{}", e.body());
            assert!(!e.is_definitive(), "{e:?}");
            let (kind, text) = crate::shared_flight::SharedFailure::record(&e);
            let rebuilt: StageError = crate::shared_flight::SharedFailure::rebuild(&kind, &text);
            assert_eq!(
                rebuilt.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "another replica answers the same"
            );
            // Read through the artifact API (a staging repo's files), the same answer.
            let resp = ApiError::from(e.clone()).into_response();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(e.into_response().status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }
}
