//! The stylesheet and the script, compiled into the binary: nothing to install or serve
//! beside it, and nothing from another origin (the Content-Security-Policy allows only these).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Short: a new release's pages must not run an old script for long.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    super::page::security_headers(h);
    resp
}

pub(super) async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

pub(super) async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}
