//! Answers given before the request body was read to its end close the connection, and say
//! so (`Connection: close`).
//!
//! A handler may refuse an upload without reading it (a rolled-back transaction, a guard's
//! refusal, a JSON body over its limit). hyper then writes the answer's head first and only
//! afterwards notices the body was dropped half-read; unless the rest had already arrived,
//! it closes the connection, but the head went out promising keep-alive. A client reuses
//! the closing connection and its next request fails without an answer — a create or a
//! commit whose client cannot tell whether it happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures::StreamExt;

/// Whether the request has no body at all: one without `Content-Length` and
/// `Transfer-Encoding` has none (RFC 9112 §6.3), nor has `Content-Length: 0`. Judged on the
/// headers because the body itself is wrapped (the listener's idle timeout) by then, and the
/// wrapper does not say when it is empty: asked of the body, every GET looked unread and was
/// answered `Connection: close`, so no connection was ever kept alive.
fn has_no_body(parts: &axum::http::request::Parts, body: &Body) -> bool {
    if body.is_end_stream() {
        return true;
    }
    let headers = &parts.headers;
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return false;
    }
    match headers.get(header::CONTENT_LENGTH) {
        None => true,
        Some(v) => v.as_bytes() == b"0",
    }
}

/// How much of a request's body was read, and whether to its end; `None` for a request
/// without a body.
pub(crate) struct Watch(Option<Arc<Reading>>);

#[derive(Default)]
pub(crate) struct Reading {
    to_end: AtomicBool,
    bytes: AtomicU64,
}

impl Watch {
    /// Body bytes read so far (for the access log).
    pub(crate) fn bytes_read(&self) -> u64 {
        self.0.as_ref().map_or(0, |r| r.bytes.load(Ordering::Acquire))
    }
}

/// Wraps the body of `req` (if it has one) to count what is read and notice its end.
pub(crate) fn watch(req: Request) -> (Request, Watch) {
    let (parts, body) = req.into_parts();
    if has_no_body(&parts, &body) {
        return (Request::from_parts(parts, body), Watch(None));
    }
    let reading = Arc::new(Reading::default());
    let (counted, ended) = (reading.clone(), reading.clone());
    // Polled only once the body's own stream has ended (not after an error).
    let end = futures::stream::poll_fn(move |_| {
        ended.to_end.store(true, Ordering::Release);
        Poll::Ready(None)
    });
    let watched = Body::from_stream(
        body.into_data_stream()
            .inspect(move |chunk| {
                if let Ok(c) = chunk {
                    counted.bytes.fetch_add(c.len() as u64, Ordering::AcqRel);
                }
            })
            .chain(end),
    );
    (Request::from_parts(parts, watched), Watch(Some(reading)))
}

/// The answer, marked `Connection: close` when the body it answers was not read to its end.
pub(crate) fn finish(mut resp: Response, watch: &Watch) -> Response {
    if let Watch(Some(reading)) = watch
        && !reading.to_end.load(Ordering::Acquire)
    {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
