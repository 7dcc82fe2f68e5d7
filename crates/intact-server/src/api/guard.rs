//! The request guard in front of every route of every front-end: HTTP/1.1's `Host` rules, and
//! the refusal of browser cross-site writes.
//!
//! intact listens on loopback without authentication, so any web page the user opens could
//! make the browser send it requests: an HTML form's POST or a `fetch` without custom headers
//! is a "simple" request, sent without a CORS preflight. Browsers say where such a request
//! comes from (`Sec-Fetch-Site`, and `Origin` on every non-GET), while curl, go and the intact
//! CLI send neither; so a state-changing request that a browser marks as coming from another
//! origin is refused, and everything else is served. The same reasoning as Go's
//! `net/http.CrossOriginProtection`: `Sec-Fetch-Site` decides when present (it survives a
//! reverse proxy that rewrites `Host`), else `Origin` must name this server.
//!
//! Admin `POST`s additionally require a JSON content type ([`require_json`]): a browser cannot
//! send one cross-site without a preflight, which intact never grants.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::forwarded::ClientView;
use crate::limits::Limits;

/// Why the guard answered instead of the route.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    /// The header at fault, lower case.
    field: &'static str,
    message: String,
}

impl Refusal {
    /// In the format of the front-end `path` belongs to (`http::reply`: the GOPROXY protocol
    /// paths `text/plain`, the rest the artifact API's JSON).
    fn into_response(self, path: &str) -> Response {
        crate::http::reply::Refusal::new(self.status, self.code, self.message, path)
            .with_details(json!({"field": self.field}))
            .into_response()
    }
}

/// The guard, first of the checks every request passes (`api::front_door`): `Host`, the
/// headers' size (`limits.max_header_bytes`) and singletons, then cross-site writes. The
/// refusal when one fails.
pub(crate) fn refusal(limits: &Limits, req: &Request) -> Option<Response> {
    check_host(req.version(), req.headers())
        .and_then(|()| check_headers(req.headers(), limits.settings.max_header_bytes))
        .and_then(|()| check_cross_site(req))
        .err()
        .map(|refusal| refusal.into_response(req.uri().path()))
}

/// Methods that change nothing here: the only ones a cross-site page may send.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

fn bad_host(message: String) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        code: "bad_request",
        field: "host",
        message: format!("bad request: {message}"),
    }
}

/// RFC 9112 §3.2: a server must answer 400 to an HTTP/1.1 request without `Host`, and to any
/// request with more than one `Host` or an invalid one. HTTP/1.0 may omit it; hyper passes
/// all of these through, so they are checked here.
fn check_host(version: Version, headers: &HeaderMap) -> Result<(), Refusal> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(bad_host(
            "more than one Host header; a request names exactly one host".into(),
        ));
    }
    match first {
        None if version == Version::HTTP_11 => Err(bad_host(
            "missing Host header; every HTTP/1.1 request must have one".into(),
        )),
        None => Ok(()),
        Some(host) if host_is_valid(host.as_bytes()) => Ok(()),
        Some(host) => Err(bad_host(format!(
            "Host header {:?} is not host[:port]",
            String::from_utf8_lossy(&host.as_bytes()[..host.len().min(100)])
        ))),
    }
}

/// `Host = uri-host [ ":" port ]` (RFC 3986): a registered name or IPv4 address, or an IP
/// literal in brackets, then an optional decimal port. Empty is allowed (a target without an
/// authority); user info is not.
fn host_is_valid(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    let (host_ok, rest) = if let Some(inner) = value.strip_prefix(b"[") {
        let Some(end) = inner.iter().position(|&c| c == b']') else {
            return false;
        };
        let literal = &inner[..end];
        (
            !literal.is_empty() && literal.iter().all(|c| c.is_ascii_hexdigit() || b":.".contains(c)),
            &inner[end + 1..],
        )
    } else {
        let end = value.iter().position(|&c| c == b':').unwrap_or(value.len());
        let name = &value[..end];
        let reg_name_char = |c: &u8| c.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(c);
        (!name.is_empty() && name.iter().all(reg_name_char), &value[end..])
    };
    let port_ok = match rest.split_first() {
        None => true,
        Some((b':', port)) => port.len() <= 5 && port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
}

/// Headers that mean one thing: two of them are ambiguous (a proxy may have read the other),
/// so the request is refused rather than one of them picked.
const SINGLETON_HEADERS: [&str; 7] = [
    "content-type",
    "x-checksum-sha256",
    "idempotency-key",
    "origin",
    "sec-fetch-site",
    "range",
    "if-range",
];

/// `max_header_bytes` caps the header names and values together (`limits.max_header_bytes`;
/// a head more than 68 KiB larger never gets here: hyper refuses it, see
/// `listener::connection_buffer`).
fn check_headers(headers: &HeaderMap, max_header_bytes: usize) -> Result<(), Refusal> {
    let total: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if total > max_header_bytes {
        return Err(Refusal {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            code: "too_large",
            field: "headers",
            message: format!(
                "request headers too large: {total} bytes, at most {max_header_bytes} (limits.max_header_bytes)"
            ),
        });
    }
    for name in SINGLETON_HEADERS {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                code: "bad_request",
                field: name,
                message: format!("bad request: more than one {name} header; send it once"),
            });
        }
    }
    Ok(())
}

fn cross_site(field: &'static str, why: String) -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        code: "cross_site",
        field,
        message: format!(
            "cross-site request refused: {why}. A web page of another origin may not change \
             anything here; clients that are not browsers (curl, go, the intact CLI) send no \
             Origin or Sec-Fetch-Site header and are served"
        ),
    }
}

fn check_cross_site(req: &Request) -> Result<(), Refusal> {
    if is_safe(req.method()) {
        return Ok(());
    }
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            // `none`: the user asked for it (typed a URL, used a bookmark), no page did.
            b"same-origin" | b"none" => Ok(()),
            other => Err(cross_site(
                "sec-fetch-site",
                format!(
                    "the browser says Sec-Fetch-Site: {} (only same-origin writes are accepted)",
                    String::from_utf8_lossy(&other[..other.len().min(40)])
                ),
            )),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    // Behind a trusted reverse proxy, the host the browser addressed is the one the proxy
    // forwarded (the listener fills `ClientView` from `X-Forwarded-*` only for trusted peers).
    // Else the absolute form (`POST http://host/...`) names the host in the target itself.
    let view = req.extensions().get::<ClientView>();
    let this = match (view.and_then(|v| v.host.as_ref()), req.uri().authority()) {
        (Some(forwarded), _) => forwarded.as_bytes(),
        (None, Some(a)) => a.as_str().as_bytes(),
        (None, None) => headers.get(header::HOST).map_or(&b""[..], HeaderValue::as_bytes),
    };
    if same_origin(origin.as_bytes(), this, view.and_then(|v| v.https)) {
        return Ok(());
    }
    Err(cross_site(
        "origin",
        format!(
            "Origin {} is not this server ({})",
            String::from_utf8_lossy(&origin.as_bytes()[..origin.len().min(100)]),
            String::from_utf8_lossy(&this[..this.len().min(100)])
        ),
    ))
}

/// Whether the `Origin` header (`scheme://host[:port]`, or `null`) names `host`, the
/// authority this request was sent to, with the scheme's default port spelled or not; and,
/// when it is known whether the client used HTTPS (`https`), that scheme. (Unknown for plain
/// HTTP from a peer that is not a trusted proxy: it may be a TLS-terminating proxy.)
fn same_origin(origin: &[u8], host: &[u8], https: Option<bool>) -> bool {
    let (rest, default_port, origin_https) = if let Some(r) = strip_prefix_ignore_case(origin, b"http://") {
        (r, &b":80"[..], false)
    } else if let Some(r) = strip_prefix_ignore_case(origin, b"https://") {
        (r, &b":443"[..], true)
    } else {
        return false;
    };
    if https.is_some_and(|https| https != origin_https) {
        return false;
    }
    if rest.is_empty() || host.is_empty() {
        return false;
    }
    let without_default = |a: &'_ [u8]| -> Vec<u8> {
        let a = a.strip_suffix(default_port).unwrap_or(a);
        a.to_ascii_lowercase()
    };
    without_default(rest) == without_default(host)
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &s[prefix.len()..])
}

/// Route layer of the admin endpoints: a POST must say its body is JSON. POST is the one
/// state-changing method a page may send cross-site without a preflight; a DELETE (or PUT)
/// always needs one, which intact never grants, so a bodiless `DELETE /api/v1/tokens/{name}`
/// needs no content type.
pub(crate) async fn require_json(req: Request, next: Next) -> Response {
    if req.method() != Method::POST || is_json(req.headers()) {
        return next.run(req).await;
    }
    let got = req.headers().get(header::CONTENT_TYPE).map_or_else(
        || "none".to_owned(),
        |v| format!("{:?}", String::from_utf8_lossy(v.as_bytes())),
    );
    Refusal {
        status: StatusCode::FORBIDDEN,
        code: "json_required",
        field: "content-type",
        message: format!(
            "admin calls need Content-Type: application/json (got {got}), which a web page cannot \
             send cross-site; e.g. curl -X POST -H 'content-type: application/json' -d '{{}}' ..."
        ),
    }
    .into_response(req.uri().path())
}

/// `application/json`, or a `+json` type, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_grammar() {
        for ok in [
            "",
            "127.0.0.1",
            "127.0.0.1:7333",
            "localhost",
            "Intact.Example.com:443",
            "[::1]",
            "[::1]:7333",
            "[::ffff:127.0.0.1]:80",
            "host:",
        ] {
            assert!(host_is_valid(ok.as_bytes()), "{ok:?}");
        }
        for bad in [
            "a b",
            "user@127.0.0.1",
            "127.0.0.1:port",
            "[::1",
            "[]",
            "[::1]x",
            "a/b",
            ":80",
            "h:123456",
            "h:1:2",
            "a\tb",
        ] {
            assert!(!host_is_valid(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn origins() {
        for (origin, host) in [
            ("http://127.0.0.1:7333", "127.0.0.1:7333"),
            ("HTTP://LOCALHOST:7333", "localhost:7333"),
            ("http://example.com", "example.com:80"),
            ("https://example.com", "example.com"),
            ("https://example.com:443", "example.com"),
            ("http://[::1]:7333", "[::1]:7333"),
        ] {
            assert!(same_origin(origin.as_bytes(), host.as_bytes(), None), "{origin} {host}");
        }
        for (origin, host) in [
            ("http://127.0.0.1:7334", "127.0.0.1:7333"),
            ("http://127.0.0.1", "127.0.0.1:7333"),
            ("https://example.com", "example.com:80"),
            ("null", "127.0.0.1:7333"),
            ("http://", ""),
            ("file://", "127.0.0.1"),
            ("http://evil.example", "127.0.0.1"),
            ("http://127.0.0.1:7333/", "127.0.0.1:7333"),
        ] {
            assert!(
                !same_origin(origin.as_bytes(), host.as_bytes(), None),
                "{origin} {host}"
            );
        }
    }

    /// When the listener knows the client's scheme (TLS, or a trusted proxy's
    /// `X-Forwarded-Proto`), a page of the other scheme is another origin.
    #[test]
    fn origins_with_a_known_scheme() {
        assert!(same_origin(b"https://example.com", b"example.com", Some(true)));
        assert!(!same_origin(b"http://example.com", b"example.com", Some(true)));
        assert!(same_origin(b"http://example.com", b"example.com", Some(false)));
        assert!(!same_origin(b"https://example.com", b"example.com", Some(false)));
    }

    #[test]
    fn json_content_types() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).expect("header"));
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/problem+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!with("multipart/form-data; boundary=x"));
        assert!(!with("text/json+plain"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
