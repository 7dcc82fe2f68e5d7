//! One access log line and one set of request metrics per request, written when the answer's
//! last byte has gone out (or the client went away first), so the line says what was really
//! sent and how long it took. Every answer carries its request id in `X-Request-Id`: the id a
//! client or load balancer sent, when it is a plain token, else one made here.
//!
//! The line is a `tracing` event at target `intact::access` (level `info`; `warn` for 5xx),
//! so `INTACT_LOG=info,intact::access=off` turns it off and `--log-format json` makes it a
//! JSON object like every other line.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::metrics::{ABANDONED, RECEIVED_BYTES, REQUEST_SECONDS, REQUESTS, SENT_BYTES};
use crate::http::ClientAddr;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use http_body::{Frame, SizeHint};

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client.
const MAX_ID_LEN: usize = 128;

/// What is known of a request when it arrives.
pub struct Arrival {
    started: Instant,
    method: Method,
    route: &'static str,
    /// The path as asked (no query string: it may carry what does not belong in a log);
    /// only kept when access lines are logged at all.
    path: Option<String>,
    request_id: HeaderValue,
    client: Option<IpAddr>,
}

impl Arrival {
    pub fn of(req: &Request) -> Self {
        let logged = tracing::enabled!(target: "intact::access", tracing::Level::INFO);
        Self {
            started: Instant::now(),
            method: req.method().clone(),
            route: super::route::of(req.uri().path()),
            path: logged.then(|| req.uri().path().to_owned()),
            request_id: request_id(req),
            client: req.extensions().get::<ClientAddr>().map(|a| a.0),
        }
    }

    /// The request's id, as it is logged and sent back.
    pub fn request_id(&self) -> &str {
        // Only ids of visible ASCII are kept or made (`request_id`), so this never falls back.
        self.request_id.to_str().unwrap_or("-")
    }
}

/// The request id a client sent, when it is 1-128 characters of letters, digits and
/// `-._:`, else a new random one (16 hex digits). Restricted so an id cannot forge a log
/// line or a header.
fn request_id(req: &Request) -> HeaderValue {
    if let Some(sent) = req.headers().get(&REQUEST_ID) {
        let bytes = sent.as_bytes();
        if !bytes.is_empty()
            && bytes.len() <= MAX_ID_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
        {
            return sent.clone();
        }
    }
    let id = format!("{:016x}", rand::random::<u64>());
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Who the request turned out to be from (known once authentication ran) and how much of its
/// body was read.
struct Outcome {
    token: Option<Arc<str>>,
    received: u64,
}

/// A request not answered yet. Dropped before [`Pending::answer`] (the client went away
/// while the handler worked, and hyper dropped the request's future; or the handler
/// panicked), it still writes its line and metrics, as status 499 ("client closed request",
/// nginx's name for it) and `complete=false`.
pub struct Pending {
    arrival: Option<Arrival>,
    token: Option<Arc<str>>,
}

impl Pending {
    pub fn new(arrival: Arrival) -> Self {
        Self {
            arrival: Some(arrival),
            token: None,
        }
    }

    /// The token the request authenticated with, once known.
    pub fn authenticated(&mut self, token: Option<Arc<str>>) {
        self.token = token;
    }

    /// The answer, with its request id, and its body wrapped to log and count once the body
    /// is done.
    pub fn answer(mut self, resp: Response, received: u64) -> Response {
        match self.arrival.take() {
            Some(arrival) => finish(
                resp,
                arrival,
                Outcome {
                    token: self.token.take(),
                    received,
                },
            ),
            None => resp,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(arrival) = self.arrival.take() {
            let tally = Tally {
                arrival,
                outcome: Outcome {
                    token: self.token.take(),
                    received: 0,
                },
                status: client_closed(),
                sent: 0,
                expected: None,
            };
            tally.record(false);
        }
    }
}

/// nginx's status for a request whose client closed the connection before the answer.
fn client_closed() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// The answer, with its request id, and its body wrapped to log and count once the body is
/// done.
fn finish(mut resp: Response, arrival: Arrival, outcome: Outcome) -> Response {
    resp.headers_mut()
        .insert(REQUEST_ID.clone(), arrival.request_id.clone());
    let status = resp.status();
    // How long the body says it is: hyper stops polling a body once it has written that many
    // bytes (it never sees its end), so a body that yielded all of them was delivered whole.
    let expected = resp.body().size_hint().exact().or_else(|| {
        resp.headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    });
    let (parts, body) = resp.into_parts();
    let tally = Tally {
        arrival,
        outcome,
        status,
        sent: 0,
        expected,
    };
    Response::from_parts(
        parts,
        Body::new(Tallied {
            inner: body,
            tally: Some(tally),
        }),
    )
}

struct Tally {
    arrival: Arrival,
    outcome: Outcome,
    status: StatusCode,
    sent: u64,
    /// The body's length, when known before sending.
    expected: Option<u64>,
}

impl Tally {
    fn record(self, complete: bool) {
        let a = &self.arrival;
        let took = a.started.elapsed();
        handles::count(a.route, &a.method, self.status, |h| {
            h.requests.increment(1);
            h.seconds.record(took.as_secs_f64());
            if self.outcome.received > 0 {
                h.received.increment(self.outcome.received);
            }
            if self.sent > 0 {
                h.sent.increment(self.sent);
            }
            if !complete {
                h.abandoned.increment(1);
            }
        });
        let Some(path) = &a.path else { return };
        let id = a.request_id.to_str().unwrap_or("-");
        let token = self.outcome.token.as_deref().unwrap_or("-");
        let client = a.client.map(|c| c.to_string());
        // Microsecond precision is plenty, and keeps the number short.
        let ms = took.as_micros() as f64 / 1000.0;
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    target: "intact::access",
                    method = %a.method,
                    path = %path,
                    route = %a.route,
                    status = self.status.as_u16(),
                    bytes_in = self.outcome.received,
                    bytes_out = self.sent,
                    ms,
                    request_id = %id,
                    token = %token,
                    client = %client.as_deref().unwrap_or("-"),
                    complete,
                    "request"
                )
            };
        }
        if self.status.is_server_error() {
            line!(warn);
        } else {
            line!(info);
        }
    }
}

/// A response body that counts what it yields and records the request when it ends or is
/// dropped (a client that went away).
struct Tallied {
    inner: Body,
    tally: Option<Tally>,
}

impl HttpBody for Tallied {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(t)) = (frame.data_ref(), self.tally.as_mut()) {
                    t.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(t) = self.tally.take() {
                    t.record(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(t) = self.tally.take() {
                    t.record(false);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tallied {
    fn drop(&mut self) {
        if let Some(t) = self.tally.take() {
            // hyper stops polling a body that says it has ended, or once it has written the
            // length the answer announced (and never polls a HEAD answer's): dropped then,
            // it was delivered whole.
            let complete = self.inner.is_end_stream()
                || t.arrival.method == Method::HEAD
                || t.expected.is_some_and(|n| n == t.sent);
            t.record(complete);
        }
    }
}

/// The metric handles of each (route, method, status), looked up in the registry once per
/// worker thread instead of on every request: a lookup builds the label set, hashes it and
/// searches the registry under a lock, and a request made five of them.
mod handles {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use axum::http::{Method, StatusCode};
    use metrics::{Counter, Histogram, counter, histogram};

    use super::{ABANDONED, RECEIVED_BYTES, REQUEST_SECONDS, REQUESTS, SENT_BYTES, method_label, status_label};

    pub(super) struct Handles {
        pub requests: Counter,
        pub seconds: Histogram,
        pub received: Counter,
        pub sent: Counter,
        pub abandoned: Counter,
    }

    /// A thread's table stops growing here (a client can make statuses and methods vary only
    /// within small fixed sets, so this is never reached in practice); past it, handles are
    /// looked up each time.
    const MAX_ENTRIES: usize = 4096;

    thread_local! {
        // Keyed by the route's address: routes are `&'static str`s from one table.
        static TABLE: RefCell<HashMap<(usize, &'static str, u16), Handles>> = RefCell::new(HashMap::new());
    }

    fn lookup(route: &'static str, method: &'static str, status: StatusCode) -> Handles {
        Handles {
            requests: counter!(REQUESTS, "route" => route, "method" => method, "status" => status_label(status)),
            seconds: histogram!(REQUEST_SECONDS, "route" => route),
            received: counter!(RECEIVED_BYTES, "route" => route),
            sent: counter!(SENT_BYTES, "route" => route),
            abandoned: counter!(ABANDONED, "route" => route),
        }
    }

    pub(super) fn count(route: &'static str, method: &Method, status: StatusCode, f: impl FnOnce(&Handles)) {
        let method = method_label(method);
        let key = (route.as_ptr() as usize, method, status.as_u16());
        let mut f = Some(f);
        // `try_with`: a body dropped while the thread's locals are torn down still counts.
        let _ = TABLE.try_with(|table| {
            let Some(f) = f.take() else { return };
            let mut table = table.borrow_mut();
            if let Some(h) = table.get(&key) {
                return f(h);
            }
            let h = lookup(route, method, status);
            f(&h);
            if table.len() < MAX_ENTRIES {
                table.insert(key, h);
            }
        });
        if let Some(f) = f {
            f(&lookup(route, method, status));
        }
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The status as a label, without an allocation for the common ones.
fn status_label(s: StatusCode) -> metrics::SharedString {
    let common = match s.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        206 => "206",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        410 => "410",
        413 => "413",
        416 => "416",
        422 => "422",
        429 => "429",
        499 => "499",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return metrics::SharedString::from(s.as_u16().to_string()),
    };
    metrics::SharedString::const_str(common)
}
