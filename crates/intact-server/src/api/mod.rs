//! The artifact API, `/api/v1`: transactions, one-shot publish, reads, browsing, the event
//! log and admin operations. See docs/http-api.md for the contract.

pub(crate) mod blobs;
pub mod error;
mod guard;
pub(crate) mod import;
pub(crate) mod prepared;
mod publish;
pub(crate) mod reads;
pub(crate) mod tags;
pub(crate) mod tokens;
pub(crate) mod transactions;
mod unread_body;
pub(crate) mod uploads;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::{Extension, Json, Router, middleware};
use intact_store::tokens::Access;
use serde::Deserialize;
use serde_json::json;

use self::error::{ApiError, ApiResult};
pub(crate) use self::guard::require_json;
pub(crate) use self::reads::needed_a_token;
use crate::config::{RepoConfig, RepoFormat, RepoKind};
use crate::http::Caller;
use crate::openapi::schemas::{EventsPage, GcAnswer, OpenTransactions, VerifyAnswer};
use crate::state::AppState;

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let limits = state.limits.clone();
    let upload_slot = || middleware::from_fn_with_state(limits.clone(), crate::limits::upload_slot);
    let api = Router::new()
        .route("/repos", get(list_repos))
        .route("/repos/{repo}/transactions", post(transactions::create))
        .route(
            "/repos/{repo}/publish",
            post(publish::publish)
                .layer(DefaultBodyLimit::disable())
                .layer(upload_slot()),
        )
        .route("/repos/{repo}/names", get(reads::names))
        .route(
            "/repos/{repo}/{*rest}",
            get(reads::read).put(reads::write).delete(reads::remove),
        )
        .route("/repos/{repo}", get(reads::repo_info))
        .route("/transactions", get(open_transactions))
        .route("/transactions/{id}", get(transactions::get).delete(transactions::abort))
        .route("/transactions/{id}/commit", post(transactions::commit))
        .route("/transactions/{id}/renew", post(transactions::renew))
        .route(
            "/transactions/{id}/files/{*path}",
            put(transactions::put_file)
                .layer(upload_slot())
                .delete(transactions::delete_file),
        )
        .route("/transactions/{id}/import", post(import::import).layer(upload_slot()))
        .route("/transactions/{id}/uploads", post(uploads::create))
        .route(
            "/transactions/{id}/uploads/{upload}",
            // The requests that stream bytes take an upload slot, as PUT file does.
            patch(uploads::append)
                .put(uploads::complete)
                .layer(upload_slot())
                .merge(get(uploads::status).delete(uploads::discard)),
        )
        .route("/events", get(events))
        .route("/blobs/missing", post(blobs::missing))
        .route("/openapi.json", get(crate::openapi::serve))
        .route(
            "/admin/gc",
            get(admin_gc_status)
                .post(admin_gc)
                .route_layer(middleware::from_fn(guard::require_json)),
        )
        .route(
            "/admin/verify",
            post(admin_verify).route_layer(middleware::from_fn(guard::require_json)),
        )
        .route(
            "/tokens",
            get(tokens::list)
                .post(tokens::create)
                .route_layer(middleware::from_fn(guard::require_json)),
        )
        .route(
            "/tokens/{name}",
            axum::routing::delete(tokens::revoke).route_layer(middleware::from_fn(guard::require_json)),
        )
        .merge(crate::staging::routes())
        .merge(crate::hooks::routes())
        .method_not_allowed_fallback(method_not_allowed);
    let routes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::observe::metrics::render))
        .nest("/api/v1", api)
        .merge(crate::go::routes(&limits))
        .merge(crate::ui::routes())
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "not_found", "message": "no such endpoint"})),
            )
        })
        .with_state(state.clone())
        // JSON bodies (and every other buffered one) up to `limits.max_body_bytes`; uploads
        // stream and disable it on their routes.
        .layer(DefaultBodyLimit::max(
            usize::try_from(limits.settings.max_body_bytes).unwrap_or(usize::MAX),
        ))
        .layer(middleware::from_fn_with_state(
            limits.clone(),
            crate::limits::explain_body_limit,
        ));
    // The front door wraps the router as a whole, so it sees every request, whichever route
    // or fallback answers it, and runs before routing. As a layer of the router (`.layer`)
    // it ran after the route lookup, once per route, with a boxed copy of that route's
    // service cloned for every request: work a prepared answer never needed. (The outer
    // router has no routes: everything goes to its fallback, the front door.)
    let front_door = tower::Layer::layer(&middleware::from_fn_with_state(state, front_door), routes);
    Router::new().fallback_service(front_door)
}

/// What every request passes before routing, in this order: the access log's note of its
/// arrival (its line is written when the answer's last byte is out), the watch on its body
/// (`unread_body`), the guard, authentication, the rate limit. The rate limit keys by the
/// token authentication finds, so it comes after it; a request without a token this process
/// remembers is counted against its address by authentication itself, before any catalog
/// work (refused ones too: a flood of made-up tokens is metered like any other), and not
/// again by the rate limit. One layer, not four: each layer of its own cost a clone of the
/// router's boxed service, a boxed future and a clone of the state on every request.
async fn front_door(State(state): State<AppState>, req: axum::extract::Request, next: middleware::Next) -> Response {
    use tracing::Instrument;
    let arrival = crate::observe::access::Arrival::of(&req);
    // Every line logged while the request is handled names it, so a commit or a refusal can
    // be joined with its access line (work a request starts for others, like a shared
    // upstream fetch, runs in a task of its own and is not counted as any one request's).
    // At error level, so that it exists under any filter that lets a line through (under
    // `warn,intact::commit=info` too); a span writes no line of its own.
    let span = tracing::error_span!(target: "intact::request", "request", request_id = %arrival.request_id());
    // Logged even if this future is dropped before it answers (the client left).
    let mut pending = crate::observe::access::Pending::new(arrival);
    async move {
        let (mut req, watch) = unread_body::watch(req);
        let resp = match admit(&state, &mut req).await {
            Ok(()) => {
                pending.authenticated(req.extensions().get::<Caller>().and_then(|c| c.token.clone()));
                match state.prepared.answer(&req, state.store.deletions()) {
                    Some(prepared) => prepared,
                    None => next.run(req).await,
                }
            }
            Err(refused) => refused,
        };
        let resp = unread_body::finish(resp, &watch);
        pending.answer(resp, watch.bytes_read())
    }
    .instrument(span)
    .await
}

async fn admit(state: &AppState, req: &mut axum::extract::Request) -> Result<(), Response> {
    if let Some(refused) = guard::refusal(&state.limits, req) {
        return Err(refused);
    }
    crate::http::auth::admit(state, req).await?;
    match crate::limits::rate_refusal(&state.limits, req) {
        Some(refused) => Err(refused),
        None => Ok(()),
    }
}

/// A path that exists for other methods: the JSON error shape, like every other error.
async fn method_not_allowed(method: axum::http::Method) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"error": "method_not_allowed", "message": format!("{method} is not allowed here")})),
    )
        .into_response()
}

/// Looks a repo up by its (already decoded) name: 404 when unknown.
pub(crate) fn repo_or_404<'a>(state: &'a AppState, name: &str) -> ApiResult<&'a RepoConfig> {
    intact_core::RepoName::parse(name)?;
    state
        .repo(name)
        .ok_or_else(|| ApiError::NotFound(format!("repo {name}")))
}

/// Writes through the generic API go to hosted generic repos only.
pub(crate) fn writable_repo<'a>(state: &'a AppState, name: &str) -> ApiResult<&'a RepoConfig> {
    let repo = repo_or_404(state, name)?;
    match (repo.kind, repo.format) {
        (RepoKind::Hosted, RepoFormat::Generic) => Ok(repo),
        (RepoKind::Hosted, RepoFormat::Go) => Err(ApiError::WrongRepo(format!(
            "repo {name} is a Go repo: publish modules with `intact go publish` or POST /go/{name}/publish"
        ))),
        (kind, _) => Err(ApiError::WrongRepo(format!(
            "repo {name} is a {} repo: only hosted repos accept publishes",
            match kind {
                RepoKind::Proxy => "proxy",
                _ => "group",
            }
        ))),
    }
}

/// Imports (`intact import`, an admin's) go into hosted and proxy repos of any format: a
/// version exported from a proxy's cache is as good as one fetched upstream (the Go proxy
/// checks a stored version's hashes against the checksum database's record only when it
/// fetches, so an imported module version is served as it was exported: the exporting
/// server checked it). Groups hold nothing of their own.
pub(crate) fn importable_repo<'a>(state: &'a AppState, name: &str) -> ApiResult<&'a RepoConfig> {
    let repo = repo_or_404(state, name)?;
    match repo.kind {
        RepoKind::Hosted | RepoKind::Proxy => Ok(repo),
        RepoKind::Group => Err(ApiError::WrongRepo(format!(
            "repo {name} is a group repo: import into one of its hosted or proxy members"
        ))),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.readiness().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

/// The repos the caller may read.
async fn list_repos(State(state): State<AppState>, caller: Extension<Caller>) -> Json<serde_json::Value> {
    let repos: Vec<serde_json::Value> = state
        .config
        .repos
        .iter()
        .filter(|r| caller.may(&state, r.name.as_str(), Access::Read))
        .map(RepoConfig::public_view)
        .collect();
    Json(json!({ "repos": repos }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<i64>,
    wait_seconds: Option<u64>,
    limit: Option<u32>,
}

const MAX_WAIT: u64 = 300;

/// The event log, showing the caller only events of repos it may read (`next` still moves
/// past the others, so a follower never asks for them again).
async fn events(
    State(state): State<AppState>,
    caller: Extension<Caller>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult<Json<EventsPage>> {
    let Query(q) = query?;
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad("after", "must be a sequence number >= 0"));
    }
    let wait = q.wait_seconds.unwrap_or(0);
    if wait > MAX_WAIT {
        return Err(ApiError::bad("wait_seconds", format!("must be at most {MAX_WAIT}")));
    }
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let mut events = state.store.events(after, Duration::from_secs(wait), limit).await?;
    let next = events.last().map_or(after, |e| e.seq);
    events.retain(|e| caller.may(&state, e.repo.as_str(), Access::Read));
    Ok(Json(EventsPage { events, next }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenTransactionsQuery {
    limit: Option<u32>,
}

/// The most open transactions one answer lists.
const MAX_OPEN_LISTED: u32 = 1000;

/// Every open transaction of the repos the caller may read, with its holder and lease, the
/// soonest to expire first.
async fn open_transactions(
    State(state): State<AppState>,
    caller: Extension<Caller>,
    query: Result<Query<OpenTransactionsQuery>, QueryRejection>,
) -> ApiResult<Json<OpenTransactions>> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_OPEN_LISTED).contains(&limit) {
        return Err(ApiError::bad("limit", format!("must be 1-{MAX_OPEN_LISTED}")));
    }
    let readable = caller.readable_repos(&state);
    let transactions = state.store.open_transactions(readable.as_deref(), limit).await?;
    debug_assert!(
        transactions
            .iter()
            .all(|t| caller.may(&state, t.repo.as_str(), Access::Read))
    );
    Ok(Json(OpenTransactions { transactions }))
}

/// How long an unreferenced blob must have been so before it is deleted (default:
/// `store.gc_grace_seconds`).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GcRequest {
    grace_seconds: Option<u64>,
}

/// The body is JSON (the route layer checked the content type); an empty one means `{}`.
async fn admin_gc(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> ApiResult<Json<GcAnswer>> {
    let body = body?;
    let req: GcRequest = if body.iter().all(u8::is_ascii_whitespace) {
        GcRequest::default()
    } else {
        Json::<GcRequest>::from_bytes(&body)?.0
    };
    let grace = req
        .grace_seconds
        .map_or(state.store.config().gc_grace, Duration::from_secs);
    let report = state.store.gc(grace).await?;
    let evicted = crate::staging::enforce_limits(&state).await?;
    Ok(Json(GcAnswer { report, evicted }))
}

/// The background sweeper: whether a pass runs and where it is, how the last one went, and
/// when the next is due.
async fn admin_gc_status(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let record = state.store.sweeper_status().await?;
    Ok(Json(sweeper_status(&record, &state.config.store)))
}

/// The sweeper's record as `GET /api/v1/admin/gc` (and `intact gc --status`) report it.
pub fn sweeper_status(
    record: &intact_store::catalog::SweeperRecord,
    settings: &crate::config::StoreSettings,
) -> serde_json::Value {
    let progress = &record.progress;
    let running = progress.phase != intact_store::catalog::SweepPhase::Idle
        && record.holder.is_some()
        && record.lease_until > record.now;
    let next_pass_due = (settings.gc_interval_seconds > 0).then(|| {
        progress.last_pass.as_ref().map_or(record.now, |last| {
            last.finished.plus(Duration::from_secs(settings.gc_interval_seconds))
        })
    });
    let mut v = serde_json::to_value(progress).unwrap_or_default();
    v["running"] = json!(running);
    v["holder"] = json!(record.holder);
    v["lease_until"] = json!(record.lease_until);
    v["now"] = json!(record.now);
    v["next_pass_due"] = json!(next_pass_due);
    v["interval_seconds"] = json!(settings.gc_interval_seconds);
    v["orphan_sweep_interval_seconds"] = json!(settings.orphan_sweep_interval_seconds);
    v["page_size"] = json!(settings.gc_page_size);
    v
}

async fn admin_verify(State(state): State<AppState>) -> ApiResult<Json<VerifyAnswer>> {
    let report = state.store.verify().await?;
    Ok(Json(VerifyAnswer {
        ok: report.problems.is_empty(),
        report,
    }))
}
