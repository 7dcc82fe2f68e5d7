//! The frame every page shares (head, navigation, who is signed in), the security headers
//! every UI answer carries, and error pages.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::html::{esc, link};
use crate::api::error::ApiError;
use crate::http::Caller;
use crate::http::reply::ErrorReply;

/// Scripts and styles only from this server's own files (no inline script, so an injected
/// `<script>` or `onclick` would not run even if escaping failed), no framing, forms only to
/// this server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The headers of every UI answer.
pub fn security_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// One page: its title, its breadcrumb trail (links built with `html::link`, the last entry
/// plain text) and its body (HTML built with `html::esc`).
pub struct Page {
    pub title: String,
    pub crumbs: Vec<(String, String)>,
    pub body: String,
    pub status: StatusCode,
}

impl Page {
    pub fn new(title: impl Into<String>, body: String) -> Self {
        Self {
            title: title.into(),
            crumbs: Vec::new(),
            body,
            status: StatusCode::OK,
        }
    }

    /// Adds a breadcrumb (`url` empty: the current page, not a link).
    pub fn crumb(mut self, url: impl Into<String>, text: impl Into<String>) -> Self {
        self.crumbs.push((url.into(), text.into()));
        self
    }

    pub fn render(self, caller: &Caller) -> Response {
        let mut crumbs = String::new();
        if !self.crumbs.is_empty() {
            crumbs.push_str("<nav aria-label=\"Breadcrumb\" class=\"crumbs\"><ol>");
            let last = self.crumbs.len() - 1;
            for (i, (url, text)) in self.crumbs.iter().enumerate() {
                if i == last || url.is_empty() {
                    crumbs.push_str(&format!("<li aria-current=\"page\">{}</li>", esc(text)));
                } else {
                    crumbs.push_str(&format!("<li>{}</li>", link(url, text)));
                }
            }
            crumbs.push_str("</ol></nav>");
        }
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · intact</title>\
             <link rel=\"stylesheet\" href=\"/ui/assets/app.css\">\
             <script src=\"/ui/assets/app.js\" defer></script></head>\
             <body><a class=\"skip\" href=\"#main\">Skip to content</a>\
             <header class=\"top\"><nav aria-label=\"Main\"><a class=\"brand\" href=\"/\">intact</a>\
             <a href=\"/\">Repositories</a><a href=\"/ui/activity\">Activity</a>{who}</nav></header>\
             <main id=\"main\" tabindex=\"-1\">{crumbs}<h1>{title}</h1>{body}</main></body></html>\n",
            title = esc(&self.title),
            who = who(caller),
            body = self.body,
        );
        let mut resp = (self.status, html).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        // A page shows what its caller's token may read: never kept by a shared cache, and
        // always asked again (live numbers).
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        security_headers(h);
        resp
    }
}

/// Who the page is shown to, and the way to sign in or out. The token's name only, never
/// the token.
fn who(caller: &Caller) -> String {
    if !caller.enforced {
        return "<span class=\"who\">access control off</span>".into();
    }
    match caller.token_name() {
        Some(name) => format!(
            "<form class=\"who\" method=\"post\" action=\"/ui/sign-out\"><span>signed in as <strong>{}</strong></span>\
             <button type=\"submit\">Sign out</button></form>",
            esc(name)
        ),
        None => "<a class=\"who\" href=\"/ui/sign-in\">Sign in</a>".into(),
    }
}

/// An error page: the status and message an API client would get, said in HTML, with a way
/// to sign in when a token would help.
pub fn error(caller: &Caller, status: StatusCode, message: &str) -> Response {
    let mut body = format!("<p class=\"error\" role=\"alert\">{}</p>", esc(message));
    if caller.enforced && caller.token_name().is_none() {
        body.push_str("<p>Some repositories need a token: <a href=\"/ui/sign-in\">sign in</a>.</p>");
    }
    body.push_str("<p><a href=\"/\">Back to the repositories</a></p>");
    let title = status.canonical_reason().unwrap_or("Error");
    let mut page = Page::new(title, body);
    page.status = status;
    page.render(caller)
}

/// An API outcome as an error page.
pub fn api_error(caller: &Caller, e: &ApiError) -> Response {
    error(caller, e.status(), &e.message())
}

/// The page of a repo the caller may not read: said like an unknown one, so that the UI does
/// not reveal which repos exist to those who may not read them.
pub fn hidden(caller: &Caller, repo: &str) -> Response {
    error(caller, StatusCode::NOT_FOUND, &format!("repo {repo} not found"))
}
