//! Size limits on what a request sends: JSON bodies and text fields (`max_body_bytes`),
//! uploaded files (`max_file_bytes`) and metadata (`max_metadata_bytes`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::io::{AsyncRead, ReadBuf};

use super::Limits;
use crate::api::error::ApiError;

/// Marks a 413 given because a JSON body passed `max_body_bytes` (axum's body limit, which
/// knows no configuration): [`explain_body_limit`] rewrites its message with the number.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyOverLimit;

/// Layer of the whole router: gives a body-limit refusal its limit and configuration key.
pub(crate) async fn explain_body_limit(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.extensions().get::<BodyOverLimit>().is_none() {
        return resp;
    }
    let max = limits.settings.max_body_bytes;
    let body = Json(json!({
        "error": "too_large",
        "field": "body",
        "limit": "limits.max_body_bytes",
        "message": format!("body: request body larger than {max} bytes, the most this server reads (limits.max_body_bytes); send less"),
    }));
    (StatusCode::PAYLOAD_TOO_LARGE, body).into_response()
}

/// 413 naming `limits.max_body_bytes`, for a text field (or body) the handler measured itself.
pub(crate) fn body_too_large(field: &'static str, max: u64) -> ApiError {
    ApiError::OverLimit {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "too_large",
        field,
        limit: "limits.max_body_bytes",
        message: format!("{field}: larger than {max} bytes, the most this server reads (limits.max_body_bytes)"),
    }
}

/// 413 naming `limits.max_file_bytes`.
pub(crate) fn file_too_large(max: u64) -> ApiError {
    ApiError::OverLimit {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "too_large",
        field: "file",
        limit: "limits.max_file_bytes",
        message: format!(
            "file: larger than {max} bytes, the most one uploaded file may be here (limits.max_file_bytes); nothing was stored"
        ),
    }
}

/// Refuses a body whose `Content-Length` already says it is over `max`, before reading it.
pub(crate) fn check_declared_length(headers: &HeaderMap, max: Option<u64>) -> Result<(), ApiError> {
    let Some(max) = max else { return Ok(()) };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > max => Err(file_too_large(max)),
        _ => Ok(()),
    }
}

/// Refuses metadata whose JSON text is over `max` bytes (400 naming `metadata`).
pub(crate) fn check_metadata(metadata: Option<&serde_json::Value>, max: u64) -> Result<(), ApiError> {
    let Some(metadata) = metadata else { return Ok(()) };
    let size = serde_json::to_vec(metadata).map_or(usize::MAX, |v| v.len());
    if u64::try_from(size).unwrap_or(u64::MAX) > max {
        return Err(ApiError::OverLimit {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_large",
            field: "metadata",
            limit: "limits.max_metadata_bytes",
            message: format!(
                "metadata: {size} bytes of JSON, more than the {max} a version's metadata may hold (limits.max_metadata_bytes)"
            ),
        });
    }
    Ok(())
}

/// The error a [`LimitedReader`] fails with past its limit; found again in the store's
/// `Error::Body` by [`file_limit_of`].
#[derive(Debug, thiserror::Error)]
#[error("uploaded file larger than {max} bytes (limits.max_file_bytes)")]
pub(crate) struct FileTooLarge {
    max: u64,
}

/// The limit a body error reports, when it is a [`LimitedReader`]'s.
pub(crate) fn file_limit_of(e: &std::io::Error) -> Option<u64> {
    e.get_ref()?.downcast_ref::<FileTooLarge>().map(|f| f.max)
}

/// A reader that fails once more than `max` bytes came through it (a file upload's body).
pub(crate) struct LimitedReader<R> {
    inner: R,
    max: Option<u64>,
    read: u64,
}

impl<R> LimitedReader<R> {
    pub(crate) fn new(inner: R, max: Option<u64>) -> Self {
        Self { inner, max, read: 0 }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LimitedReader<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            self.read += (buf.filled().len() - before) as u64;
            if let Some(max) = self.max
                && self.read > max
            {
                // A read that fails hands out no bytes (AsyncRead's contract).
                buf.set_filled(before);
                return Poll::Ready(Err(std::io::Error::other(FileTooLarge { max })));
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn a_limited_reader_passes_up_to_its_limit_and_fails_past_it() {
        let mut out = Vec::new();
        LimitedReader::new(&b"12345"[..], Some(5))
            .read_to_end(&mut out)
            .await
            .expect("at the limit");
        assert_eq!(out, b"12345");
        let err = LimitedReader::new(&b"123456"[..], Some(5))
            .read_to_end(&mut Vec::new())
            .await
            .expect_err("past the limit");
        assert_eq!(file_limit_of(&err), Some(5));
        LimitedReader::new(&b"123456"[..], None)
            .read_to_end(&mut Vec::new())
            .await
            .expect("no limit");
        assert_eq!(file_limit_of(&std::io::Error::other("other")), None);
    }

    #[test]
    fn metadata_is_measured_as_json() {
        let small = json!({"a": "b"});
        check_metadata(Some(&small), 9).expect(r#"{"a":"b"} is 9 bytes"#);
        assert!(check_metadata(Some(&small), 8).is_err());
        check_metadata(None, 0).expect("absent metadata");
    }
}
