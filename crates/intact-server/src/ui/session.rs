//! Signing in with a token and out again. The form POSTs the token; for a valid one the
//! `intact_token` cookie is set (`HttpOnly`, so no script reads it; `SameSite=Strict`, so no
//! other site's page sends it; `Secure` when this server speaks TLS). The cookie holds the
//! token's SHA-256 (what the catalog looks tokens up by), never the token: cookies are not
//! kept apart by port, so a browser signed in at `127.0.0.1:8080` sends the cookie to every
//! other server on `127.0.0.1` it visits, and what those may log must not be a secret that
//! also works as `Authorization` (to write, or to administer). The authentication layer
//! believes the cookie for GET and HEAD only: it lets a browser read what the token may read
//! (pages, downloads, the event log) and can never authorise a write, so a forged form on
//! another site has nothing to ride on. The form's own POST is a write like any other: the
//! guard refuses it cross-site (`Sec-Fetch-Site`, else `Origin`). A token is never written
//! back into a page, a URL or a log line.

use axum::Extension;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use intact_store::tokens::{self, Presented};
use serde::Deserialize;

use super::html::esc;
use super::page::Page;
use crate::http::Caller;
use crate::state::AppState;

/// The cookie a browser presents its token in.
pub const COOKIE: &str = "intact_token";

/// The longest secret accepted (intact's are 71 characters).
const MAX_SECRET: usize = 512;

/// `GET /ui/sign-in`.
pub(super) async fn form(Extension(caller): Extension<Caller>) -> Response {
    sign_in_page(&caller, StatusCode::OK, None)
}

fn sign_in_page(caller: &Caller, status: StatusCode, problem: Option<&str>) -> Response {
    let mut body = String::new();
    if let Some(p) = problem {
        body.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", esc(p)));
    }
    if let Some(name) = caller.token_name() {
        body.push_str(&format!(
            "<p>You are signed in as <strong>{}</strong>. Signing in again replaces that token.</p>",
            esc(name)
        ));
    }
    if !caller.enforced {
        body.push_str("<p>Access control is off on this server: everything is readable without a token.</p>");
    }
    body.push_str(
        "<form class=\"sign-in\" method=\"post\" action=\"/ui/sign-in\">\
         <label for=\"token\">Token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" required autocomplete=\"off\" spellcheck=\"false\" \
         aria-describedby=\"token-help\">\
         <p id=\"token-help\" class=\"meta\">A token from <code>intact token create</code> (it starts with \
         <code>intact_</code>). This browser keeps it in a cookie only scripts cannot read, sends it only to \
         this server and only to read.</p>\
         <button type=\"submit\">Sign in</button></form>",
    );
    let mut page = Page::new("Sign in", body)
        .crumb("/", "Repositories")
        .crumb("", "Sign in");
    page.status = status;
    page.render(caller)
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
}

/// `POST /ui/sign-in`: checks the token and, when it is live, sets the cookie.
pub(super) async fn sign_in(State(state): State<AppState>, req: Request) -> Response {
    let caller = req.extensions().get::<Caller>().cloned().unwrap_or_default();
    // A guess at a token costs a lookup in the catalog: metered like a presented token.
    if let Some(refused) = crate::limits::count_token_lookup(&state.limits, &req) {
        return refused;
    }
    let Ok(axum::Form(form)) = axum::Form::<SignInForm>::from_request(req, &state).await else {
        return sign_in_page(&caller, StatusCode::BAD_REQUEST, Some("the form needs a token"));
    };
    let secret = form.token.trim();
    if secret.is_empty() || secret.len() > MAX_SECRET || !secret.bytes().all(is_cookie_safe) {
        return sign_in_page(&caller, StatusCode::UNAUTHORIZED, Some("that is not a token"));
    }
    let presented = tokens::authenticate(state.store.catalog().as_ref(), secret, state.store.now()).await;
    let token = match presented {
        Ok(Presented::Valid(t)) => t,
        Ok(Presented::Unusable(why)) => {
            return sign_in_page(&caller, StatusCode::UNAUTHORIZED, Some(&format!("that token {why}")));
        }
        Ok(Presented::Unknown) => {
            return sign_in_page(&caller, StatusCode::UNAUTHORIZED, Some("that token is not known here"));
        }
        Err(e) => {
            return sign_in_page(
                &caller,
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&format!("checking the token failed: {e}; try again shortly")),
            );
        }
    };
    state.auth.switch_on();
    tracing::info!(token = %token.name, "signed in to the web UI");
    let secure = if state.config.tls.is_some() { "; Secure" } else { "" };
    // The hash, not the secret (see the module doc): believed as a cookie, for reads only.
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
        tokens::secret_hash(secret)
    );
    with_cookie(Redirect::to("/").into_response(), &cookie)
}

/// `POST /ui/sign-out`: forgets the cookie.
pub(super) async fn sign_out(State(state): State<AppState>) -> Response {
    let secure = if state.config.tls.is_some() { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}");
    with_cookie(Redirect::to("/").into_response(), &cookie)
}

fn with_cookie(mut resp: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    super::page::security_headers(resp.headers_mut());
    resp
}

/// A byte a cookie value may hold as it is (RFC 6265 `cookie-octet`): intact's secrets are
/// letters, digits and `_`, so anything else is not one of them.
fn is_cookie_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// The hash of the token a request's `Cookie` headers carry (as sign-in set it), if any.
pub(crate) fn cookie_hash(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::*;

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn the_token_cookie_is_found_among_others() {
        let hash = tokens::secret_hash("intact_abc");
        assert_eq!(cookie_hash(&cookies(&[])), None);
        assert_eq!(
            cookie_hash(&cookies(&[&format!("a=1; intact_token={hash}; b=2")])),
            Some(hash.clone())
        );
        assert_eq!(
            cookie_hash(&cookies(&["a=1", &format!("intact_token={hash}")])),
            Some(hash.clone())
        );
        assert_eq!(cookie_hash(&cookies(&[&format!("xintact_token={hash}")])), None);
        assert_eq!(cookie_hash(&cookies(&["intact_token="])), None);
        // Nothing that could not be a hash (and so could not have been set by sign-in): not
        // a token itself either.
        assert_eq!(cookie_hash(&cookies(&["intact_token=intact_abc"])), None);
        assert_eq!(
            cookie_hash(&cookies(&[&format!("intact_token={}", hash.to_uppercase())])),
            None
        );
        assert_eq!(cookie_hash(&cookies(&[&format!("intact_token={hash}0")])), None);
    }
}
