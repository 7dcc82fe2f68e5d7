//! Authentication and access control, one layer under every front-end.
//!
//! A request may present a token as `Authorization: Bearer TOKEN`, or as HTTP basic auth with
//! the token as the password and any user name (what the go command sends from `.netrc`); a
//! GET or HEAD without either may present it as the web UI's `intact_token` cookie.
//! The layer decides what the request needs from its method and path alone, before any
//! handler runs, so a refused request does nothing:
//!
//! - reading a repo (any GET/HEAD under it, staging an artifact, fetching through a proxy
//!   repo) needs `read` on it, or the repo's `anonymous_read`;
//! - writing (transactions, publishes) needs `publish` on the repo; a transaction's routes
//!   are judged by the repo the catalog says the transaction writes into;
//! - the server's admin operations (gc, verify, tokens) need `admin` on `*`;
//! - the repo list, the event log and the list of open transactions are open to every caller,
//!   filtered to what it may read.
//!
//! Until the first token exists (and unless `[auth] required`), nothing is enforced: the
//! embedded default stays frictionless on loopback. Once one exists it stays enforced,
//! revoked tokens included (revoking the last token must not reopen the server).
//!
//! A token is looked up in the catalog once, then remembered (`token_cache`) for as long as
//! the catalog's token census says nothing changed; a revocation (by any replica, or by
//! `intact token revoke` on the host) waits until no server can still believe the token
//! before it answers, so it is in force from the next request on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use intact_core::TxnId;
use intact_store::tokens::{self, Access, Presented, TokenRecord};
use serde_json::json;

use super::caller::Caller;
use super::reply::Refusal;
use crate::limits;
use crate::state::AppState;

/// How long "no token exists yet" is believed before the catalog is asked again: the first
/// token, made by `intact token create` on the host, is enforced within this long.
const NO_TOKENS_RECHECK: Duration = Duration::from_secs(1);

/// Whether access control is on. Once on, it stays on for the life of the process.
pub struct Gate {
    required: bool,
    on: AtomicBool,
    /// Milliseconds since `epoch` of the last "no tokens" answer.
    checked_at_ms: AtomicU64,
    epoch: Instant,
}

impl Gate {
    pub fn new(required: bool) -> Self {
        Self {
            required,
            on: AtomicBool::new(required),
            checked_at_ms: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
        }
    }

    /// Whether requests must be authorized (asks the catalog at most once a second while
    /// no token exists).
    async fn enforced(&self, state: &AppState) -> intact_store::Result<bool> {
        if self.required || self.on.load(Ordering::Acquire) {
            return Ok(true);
        }
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.checked_at_ms.load(Ordering::Acquire);
        if last != u64::MAX && now_ms.saturating_sub(last) < NO_TOKENS_RECHECK.as_millis() as u64 {
            return Ok(false);
        }
        if state.store.catalog().has_tokens().await? {
            self.on.store(true, Ordering::Release);
            tracing::info!("a token exists: access control is on");
            return Ok(true);
        }
        self.checked_at_ms.store(now_ms, Ordering::Release);
        Ok(false)
    }

    /// Turns access control on now (a token was just created through this server).
    pub fn switch_on(&self) {
        self.on.store(true, Ordering::Release);
    }
}

/// What a request needs, judged from its method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Need {
    /// Open to everyone (health checks, the 404 fallback).
    Nothing,
    /// Open to every caller; the handler shows only what the caller may read.
    Filtered,
    /// Some valid token (a transaction or job id nobody knows: the handler answers 404).
    AnyToken,
    Repo(String, Access),
    /// `read` on the repo; refused as "not found", like an unknown id, so that ids do not
    /// reveal the names of repos the caller may not read.
    HiddenIn(String, String),
    /// `admin` on `*`.
    ServerAdmin,
    /// `publish` on at least one repo.
    PublishSomewhere,
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A path segment as the router hands it to a handler: percent-decoded. A segment that is not
/// UTF-8 once decoded is kept as spelled (the router refuses such a path; judged as spelled it
/// names no repo and no transaction, so it can only fail closed).
fn decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map_or_else(|_| s.to_owned(), |d| d.into_owned())
}

fn segment(s: &str) -> String {
    s.to_owned()
}

/// What the request needs. Judged on the decoded segments, as the handlers see them, so an
/// escape cannot make one path look like another. A catalog failure while looking a
/// transaction up is an error (503), never a pass.
async fn need_of(state: &AppState, method: &Method, path: &str) -> intact_store::Result<Need> {
    let decoded: Vec<String> = path.trim_start_matches('/').split('/').map(decoded).collect();
    let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
    Ok(match parts.as_slice() {
        ["healthz"] | ["readyz"] | ["metrics"] | ["api", "v1", "openapi.json"] => Need::Nothing,
        ["api", "v1", "repos"] => Need::Filtered,
        ["api", "v1", "events"] | ["api", "v1", "transactions"] => Need::Filtered,
        ["api", "v1", "repos", repo, "transactions"] | ["api", "v1", "repos", repo, "publish"] => {
            Need::Repo(segment(repo), Access::Publish)
        }
        // Staging an artifact fetches it from the repo's configured upstream: a read, as a
        // proxy repo's GET is.
        ["api", "v1", "repos", repo, "stage"] => Need::Repo(segment(repo), Access::Read),
        ["api", "v1", "repos", repo, ..] => Need::Repo(
            segment(repo),
            if is_safe(method) { Access::Read } else { Access::Publish },
        ),
        ["api", "v1", "transactions", id, ..] => {
            let access = if is_safe(method) { Access::Read } else { Access::Publish };
            match TxnId::parse(id) {
                Ok(id) => match state.store.catalog().txn_status(&id).await {
                    Ok(status) => Need::Repo(status.repo.to_string(), access),
                    // Unknown here: the handler answers 404 to whoever may ask at all.
                    Err(intact_store::Error::NotFound { .. }) => Need::AnyToken,
                    Err(e) => return Err(e),
                },
                Err(_) => Need::AnyToken,
            }
        }
        ["api", "v1", "jobs", id] => match state.staging.job_repo(id) {
            // Said as the handler says an unknown job.
            Some(repo) => Need::HiddenIn(
                repo.to_string(),
                format!("job {:?}", id.chars().take(64).collect::<String>()),
            ),
            None => Need::AnyToken,
        },
        ["api", "v1", "admin", ..] | ["api", "v1", "tokens", ..] | ["api", "v1", "hooks", ..] => Need::ServerAdmin,
        // Whether the store holds some bytes is a publisher's question: others may not probe.
        ["api", "v1", "blobs", "missing"] => Need::PublishSomewhere,
        ["api", ..] => Need::AnyToken,
        ["go", repo, "publish"] => Need::Repo(segment(repo), Access::Publish),
        ["go", repo, ..] => Need::Repo(
            segment(repo),
            if is_safe(method) { Access::Read } else { Access::Publish },
        ),
        _ => Need::Nothing,
    })
}

/// The secret a request presents, if any.
fn presented_secret(headers: &HeaderMap) -> Result<Option<String>, String> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Authorization header; send one".into());
    }
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not visible ASCII".to_owned())?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err("Authorization: Bearer without a token".into());
        }
        return Ok(Some(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| "Authorization: Basic with invalid base64".to_owned())?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| "Authorization: Basic credentials are not UTF-8".to_owned())?;
        let Some((_user, password)) = decoded.split_once(':') else {
            return Err("Authorization: Basic credentials are not USER:PASSWORD".into());
        };
        if password.is_empty() {
            return Err("Authorization: Basic with an empty password; send the token as the password".into());
        }
        return Ok(Some(password.to_owned()));
    }
    Err(format!(
        "unsupported Authorization scheme {:?}; send `Bearer TOKEN`, or basic auth with the token as the password",
        scheme.chars().take(20).collect::<String>()
    ))
}

fn unauthorized(path: &str, message: String) -> Response {
    let mut resp = Refusal::new(StatusCode::UNAUTHORIZED, "unauthorized", message, path).into_response();
    // Both schemes are accepted; the go command and browsers understand Basic.
    resp.headers_mut().append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"intact\""),
    );
    resp.headers_mut().append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"intact\""),
    );
    resp
}

fn forbidden(path: &str, message: String) -> Response {
    Refusal::new(StatusCode::FORBIDDEN, "forbidden", message, path).into_response()
}

const HOW: &str = "send `Authorization: Bearer TOKEN` (or basic auth with the token as the password; \
                   the intact CLI reads INTACT_TOKEN); `intact token create` makes one";

/// Authenticates the request (run by `api::front_door` for every request), decides what it
/// needs, and either refuses it (401 without a usable token, 403 without the scope) or lets
/// it on with its [`Caller`] inserted.
pub async fn admit(state: &AppState, req: &mut Request) -> Result<(), Response> {
    // Health, readiness, metrics and the API's description are open to everyone and must answer while the catalog
    // is down (that is when they matter): nothing about the caller is looked up for them.
    // Asking the catalog whether access control is on made `/healthz` a 503 during a catalog
    // outage, and a liveness probe would have restarted a process that was fine.
    if matches!(
        req.uri().path(),
        "/healthz" | "/readyz" | "/metrics" | "/api/v1/openapi.json"
    ) {
        req.extensions_mut().insert(Caller::default());
        return Ok(());
    }
    let path = req.uri().path().to_owned();
    let limits = &state.limits;
    let secret = match presented_secret(req.headers()) {
        Ok(s) => s,
        Err(why) => {
            let key = limits::rate_key(req.extensions());
            return Err(limits::counted_refusal(limits, &key, &path, unauthorized(&path, why)));
        }
    };
    // A browser's token, by the hash the web UI's sign-in set as a cookie (`ui::session`):
    // believed for reads only, so a cookie, which a browser attaches by itself, never
    // authorises a write. A stale one (revoked, expired, unknown) reads as no token: the
    // browser is signed out, not locked out.
    let from_cookie = secret.is_none() && matches!(*req.method(), Method::GET | Method::HEAD);
    let hash = match from_cookie {
        true => crate::ui::session::cookie_hash(req.headers()),
        false => secret.as_deref().map(tokens::secret_hash),
    };
    let remembered = hash.as_deref().and_then(|hash| state.tokens.get(hash));
    // Counted before any catalog work: a request without a token against its address, the
    // lookup of a token not remembered against its address's lookup budget.
    let counted_first = match (&hash, &remembered) {
        (None, _) => limits::count_address_first(limits, req),
        (Some(_), None) => limits::count_token_lookup(limits, req),
        (Some(_), Some(_)) => None,
    };
    if let Some(refused) = counted_first {
        return Err(refused);
    }
    let looked_up = hash.is_some() && remembered.is_none();
    let token = match hash {
        None => None,
        Some(hash) => match authenticate(state, hash, remembered).await {
            Ok(Presented::Valid(t)) => {
                state.auth.switch_on();
                Some(t)
            }
            Ok(Presented::Unusable(_) | Presented::Unknown) if from_cookie => None,
            Ok(Presented::Unusable(why)) => {
                let refused = unauthorized(&path, format!("{why}; {HOW}"));
                if looked_up {
                    return Err(refused);
                }
                // Remembered, so no lookup counted it: its address pays.
                let key = limits::rate_key(req.extensions());
                return Err(limits::counted_refusal(limits, &key, &path, refused));
            }
            Ok(Presented::Unknown) => {
                return Err(unauthorized(
                    &path,
                    format!("the token presented is not known here; {HOW}"),
                ));
            }
            Err(e) => return Err(unavailable(&path, &e)),
        },
    };
    let enforced = match state.auth.enforced(state).await {
        Ok(on) => on,
        Err(e) => return Err(unavailable(&path, &e)),
    };
    let caller = Caller {
        token: token.as_ref().map(|t| Arc::from(t.name.as_str())),
        record: token,
        enforced,
    };
    if enforced {
        let need = match need_of(state, req.method(), &path).await {
            Ok(need) => need,
            Err(e) => return Err(unavailable(&path, &e)),
        };
        if let Some(refused) = refusal(state, &caller, &need, &path) {
            // A refused token pays from its own budget (an anonymous request was counted
            // against its address already).
            return Err(match &caller.token {
                Some(name) => limits::counted_refusal(limits, &limits::RateKey::Token(name.clone()), &path, refused),
                None => refused,
            });
        }
    }
    req.extensions_mut().insert(caller);
    Ok(())
}

/// What the presented secret is worth: from this process's memory of tokens when it is
/// believed (no catalog round trip on the warm path), else from the catalog.
async fn authenticate(
    state: &AppState,
    hash: String,
    remembered: Option<Arc<TokenRecord>>,
) -> intact_store::Result<Presented<Arc<TokenRecord>>> {
    let now = state.store.now();
    if let Some(t) = remembered {
        return Ok(match t.unusable(now) {
            Some(why) => Presented::Unusable(why),
            None => Presented::Valid(t),
        });
    }
    let generation = state.tokens.generation();
    Ok(
        match tokens::authenticate_hash(state.store.catalog().as_ref(), &hash, now).await? {
            Presented::Valid(t) => {
                let t = Arc::new(t);
                state.tokens.remember(hash, t.clone(), generation);
                Presented::Valid(t)
            }
            Presented::Unusable(why) => Presented::Unusable(why),
            Presented::Unknown => Presented::Unknown,
        },
    )
}

fn unavailable(path: &str, e: &intact_store::Error) -> Response {
    tracing::error!(error = %e, "checking a token failed");
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("checking the request's token failed: {e}; try again shortly"),
        path,
    )
    .with_details(json!({"retryable": true}))
    .into_response()
}

/// The refusal of a request that lacks what it needs, if it does.
fn refusal(state: &AppState, caller: &Caller, need: &Need, path: &str) -> Option<Response> {
    match need {
        Need::Nothing | Need::Filtered => None,
        Need::AnyToken => match caller.record {
            Some(_) => None,
            None => Some(unauthorized(path, format!("this server requires a token here; {HOW}"))),
        },
        Need::Repo(repo, access) => {
            if caller.may(state, repo, *access) {
                return None;
            }
            match &caller.record {
                None => Some(unauthorized(
                    path,
                    format!(
                        "{} repo {repo} needs a token with {access} access; {HOW}",
                        verb(*access)
                    ),
                )),
                Some(t) => Some(forbidden(
                    path,
                    format!(
                        "token {} has no {access} access to repo {repo} (its scopes: {})",
                        t.name,
                        scopes_of(t)
                    ),
                )),
            }
        }
        Need::HiddenIn(repo, what) => {
            if caller.may(state, repo, Access::Read) {
                return None;
            }
            Some(Refusal::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"), path).into_response())
        }
        Need::PublishSomewhere => {
            if state
                .config
                .repos
                .iter()
                .any(|r| caller.may(state, r.name.as_str(), Access::Publish))
            {
                return None;
            }
            Some(match &caller.record {
                None => unauthorized(path, format!("this needs a token that may publish to some repo; {HOW}")),
                Some(t) => forbidden(
                    path,
                    format!(
                        "token {} may publish to no repo (its scopes: {}), and only publishers may ask which blobs are stored",
                        t.name,
                        scopes_of(t)
                    ),
                ),
            })
        }
        Need::ServerAdmin => match &caller.record {
            Some(t) if t.allows("*", Access::Admin) && admin_of_every_repo(t) => None,
            Some(t) => Some(forbidden(
                path,
                format!(
                    "this is a server admin operation: it needs a token with scope *:admin; token {} has {}",
                    t.name,
                    scopes_of(t)
                ),
            )),
            None => Some(unauthorized(
                path,
                format!("this is a server admin operation: it needs a token with scope *:admin; {HOW}"),
            )),
        },
    }
}

/// `*:admin` itself (a scope naming one repo is admin of that repo only).
fn admin_of_every_repo(t: &TokenRecord) -> bool {
    t.scopes
        .iter()
        .any(|s| s.access == Access::Admin && s.repo == tokens::RepoPattern::Any)
}

fn verb(access: Access) -> &'static str {
    match access {
        Access::Read => "reading",
        Access::Publish => "publishing to",
        Access::Admin => "administering",
    }
}

fn scopes_of(t: &TokenRecord) -> String {
    let all: Vec<String> = t.scopes.iter().map(ToString::to_string).collect();
    all.join(", ")
}

impl Caller {
    /// The repos this caller may read, `None` when that is every repo (access control off, or
    /// a scope on `*`): what a catalog query filters by, so that a list cut at its limit is
    /// cut after the filter. Agrees with [`Caller::may`] for `Access::Read`, since every access
    /// includes reading.
    pub fn readable_repos(&self, state: &AppState) -> Option<Vec<String>> {
        if !self.enforced {
            return None;
        }
        let scopes = self.record.as_ref().map_or(&[][..], |t| t.scopes.as_slice());
        let mut repos = Vec::new();
        for scope in scopes {
            match &scope.repo {
                tokens::RepoPattern::Any => return None,
                tokens::RepoPattern::Repo(repo) => repos.push(repo.as_str().to_owned()),
            }
        }
        let anonymous = state.config.repos.iter().filter(|r| r.anonymous_read);
        repos.extend(anonymous.map(|r| r.name.as_str().to_owned()));
        repos.sort_unstable();
        repos.dedup();
        Some(repos)
    }

    /// Whether this caller may do `access` in `repo`.
    pub fn may(&self, state: &AppState, repo: &str, access: Access) -> bool {
        if !self.enforced {
            return true;
        }
        if let Some(t) = &self.record
            && t.allows(repo, access)
        {
            return true;
        }
        access == Access::Read && state.repo(repo).is_some_and(|r| r.anonymous_read)
    }

    /// Whether this caller may do what only a server admin may (scope `*:admin`, as for
    /// `/api/v1/admin/*`): everyone while access control is off.
    pub fn is_server_admin(&self) -> bool {
        !self.enforced
            || self
                .record
                .as_ref()
                .is_some_and(|t| t.allows("*", Access::Admin) && admin_of_every_repo(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn secrets_come_from_bearer_or_basic_password() {
        assert_eq!(presented_secret(&HeaderMap::new()), Ok(None));
        assert_eq!(presented_secret(&headers("Bearer abc")), Ok(Some("abc".into())));
        assert_eq!(presented_secret(&headers("bearer   abc ")), Ok(Some("abc".into())));
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:sekrit");
        assert_eq!(
            presented_secret(&headers(&format!("Basic {basic}"))),
            Ok(Some("sekrit".into()))
        );
        for bad in ["Bearer", "Basic !!!", "Digest x", "Basic Zm9v"] {
            assert!(presented_secret(&headers(bad)).is_err(), "{bad}");
        }
        let mut two = headers("Bearer a");
        two.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert!(presented_secret(&two).is_err());
    }
}
