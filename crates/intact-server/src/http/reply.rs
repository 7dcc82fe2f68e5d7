//! How every front-end shapes an error body, and the one place that decides which shape a
//! path gets: the GOPROXY protocol paths answer `text/plain` (the go command prints such a
//! body after the status line), everything else the artifact API's JSON
//! `{"error": CODE, "message": TEXT, ...}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The body format of an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `{"error": code, "message": ..., ...}`.
    Json,
    /// The message alone, one line: what the go command shows its user.
    Text,
}

impl BodyFormat {
    /// The format of the front-end that serves `path` (a request's raw path). Go's publish
    /// endpoint is intact's own JSON API, not the GOPROXY protocol.
    pub fn for_path(path: &str) -> Self {
        if path.starts_with("/go/") && !path.ends_with("/publish") {
            Self::Text
        } else {
            Self::Json
        }
    }
}

/// An outcome a front-end answers with: its status, stable code and message, and the body
/// format it speaks. Each front-end's error type implements it, so that the layers under
/// every front-end (authentication, limits, file serving) answer in the format of the
/// front-end the request was for.
pub trait ErrorReply {
    fn status(&self) -> StatusCode;
    /// The stable `error` code of a JSON body.
    fn code(&self) -> &'static str;
    fn message(&self) -> String;
    /// Extra fields of a JSON body (`field`, `retryable`, ...), if any.
    fn details(&self) -> Option<Value> {
        None
    }
    fn format(&self) -> BodyFormat;

    /// The response: status, body in the front-end's format, never cached (a failure is an
    /// answer about this moment only).
    fn reply(&self) -> Response {
        let status = self.status();
        let message = self.message();
        let mut resp = match self.format() {
            BodyFormat::Text => {
                let mut r = (status, format!("{}\n", message.trim_end())).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                r
            }
            BodyFormat::Json => {
                let mut body = json!({"error": self.code(), "message": message});
                if let (Some(Value::Object(extra)), Some(obj)) = (self.details(), body.as_object_mut()) {
                    for (k, v) in extra {
                        obj.entry(k).or_insert(v);
                    }
                }
                (status, Json(body)).into_response()
            }
        };
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// A refusal by one of the shared layers (authentication, limits, the request guard), in the
/// format of the front-end the request was for.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra JSON fields (e.g. `field`).
    pub details: Option<Value>,
    pub format: BodyFormat,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>, path: &str) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            format: BodyFormat::for_path(path),
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl ErrorReply for Refusal {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn code(&self) -> &'static str {
        self.code
    }
    fn message(&self) -> String {
        self.message.clone()
    }
    fn details(&self) -> Option<Value> {
        self.details.clone()
    }
    fn format(&self) -> BodyFormat {
        self.format
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.reply()
    }
}
