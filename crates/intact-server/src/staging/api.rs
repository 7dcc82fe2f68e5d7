//! Staging's HTTP surface: `POST /repos/{repo}/stage`, `GET /repos/{repo}/stage/status`
//! (with its long-poll form) and `GET /jobs/{id}`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use intact_core::{FilePath, Name, Version};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::StageError;
use super::jobs::JobOutcome;
use super::{Item, RepoStaging, stage, summary};
use crate::api::error::{ApiError, ApiResult};
use crate::singleflight::Failure;
use crate::state::AppState;

/// Longest long poll of the status endpoint.
const MAX_WAIT: u64 = 300;
/// Most items one request may name.
const MAX_ITEMS: usize = 1000;

/// The artifacts of one build to stage: `artifacts` (configured artifact names) and raw
/// `files` in the foreground (the answer waits for them), `background` ones after.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "x86-release/R1", "artifacts": ["payload"], "files": ["notes.txt"], "background": ["suites"]}))]
pub(crate) struct StageRequest {
    name: String,
    #[serde(default)]
    artifacts: Vec<String>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    background: Vec<String>,
}

/// The staging repo named in the path: 404 for unknown repos, 400 for repos that do not stage.
fn staging_repo<'a>(state: &'a AppState, repo: &str) -> ApiResult<&'a Arc<RepoStaging>> {
    let config = crate::api::repo_or_404(state, repo)?;
    state.staging.repo(&config.name).ok_or_else(|| {
        ApiError::WrongRepo(format!(
            "repo {repo} is not a staging repo (kind = \"proxy\", format = \"generic\" with an upstream)"
        ))
    })
}

struct Wanted {
    version: Version,
    item: Item,
    kind: &'static str,
}

fn artifact(rs: &RepoStaging, field: &'static str, a: &str) -> Result<Wanted, StageError> {
    let version = Version::parse(a).map_err(|e| StageError::bad(field, e.to_string()))?;
    let item = rs.item(&version, false).ok_or_else(|| {
        let known: Vec<&String> = rs.config.artifacts.keys().collect();
        StageError::bad(
            field,
            format!("unknown artifact {a:?} of repo {}; configured: {known:?}", rs.name()),
        )
    })?;
    Ok(Wanted {
        version,
        item,
        kind: "artifact",
    })
}

fn raw_file(rs: &RepoStaging, f: &str) -> Result<Wanted, StageError> {
    FilePath::parse(f).map_err(|e| StageError::bad("files", e.to_string()))?;
    let version = Version::parse(f).map_err(|_| {
        StageError::bad(
            "files",
            format!("{f:?}: a raw file is staged as the version named like it, so its name must be a valid version (1-128 of [A-Za-z0-9._+-])"),
        )
    })?;
    if rs.config.artifacts.contains_key(f) {
        return Err(StageError::bad(
            "files",
            format!("{f:?} is also the name of an artifact; ask for it under \"artifacts\""),
        ));
    }
    Ok(Wanted {
        version,
        item: Item::File(f.to_owned()),
        kind: "file",
    })
}

fn staged_json(w: &Wanted, m: &intact_core::Manifest) -> Value {
    let mut v = json!({"artifact": w.version, "kind": w.kind, "state": "staged"});
    if let (Value::Object(o), Value::Object(s)) = (&mut v, summary(m)) {
        o.extend(s);
    }
    v
}

fn failed_json(w: &Wanted, e: &StageError) -> Value {
    json!({"artifact": w.version, "kind": w.kind, "state": "failed", "error": e.code(), "message": e.to_string()})
}

pub(super) async fn stage_handler(
    state: AppState,
    repo: String,
    body: Result<Json<StageRequest>, JsonRejection>,
) -> Result<Response, Response> {
    let rs = staging_repo(&state, &repo)
        .map_err(IntoResponse::into_response)?
        .clone();
    let Json(req) = body.map_err(|e| ApiError::from(e).into_response())?;
    let name = Name::parse(&req.name).map_err(|e| ApiError::from(e).into_response())?;
    let bad = |e: StageError| e.into_response();
    if req.artifacts.len() + req.files.len() + req.background.len() > MAX_ITEMS {
        return Err(bad(StageError::bad(
            "artifacts",
            format!("at most {MAX_ITEMS} items per request"),
        )));
    }
    let mut fg: Vec<Wanted> = Vec::new();
    for a in &req.artifacts {
        let w = artifact(&rs, "artifacts", a).map_err(bad)?;
        if !fg.iter().any(|x| x.version == w.version) {
            fg.push(w);
        }
    }
    for f in &req.files {
        let w = raw_file(&rs, f).map_err(bad)?;
        if !fg.iter().any(|x| x.version == w.version) {
            fg.push(w);
        }
    }
    let mut bg: Vec<Wanted> = Vec::new();
    for a in &req.background {
        let w = artifact(&rs, "background", a).map_err(bad)?;
        if !fg.iter().chain(bg.iter()).any(|x| x.version == w.version) {
            bg.push(w);
        }
    }
    if fg.is_empty() && bg.is_empty() {
        return Err(bad(StageError::bad(
            "artifacts",
            "name at least one artifact or file to stage",
        )));
    }

    // Foreground: all at once, each through its single flight, each wait bounded.
    let results = futures::future::join_all(
        fg.iter()
            .map(|w| stage(&state, &rs, &name, &w.version, w.item.clone(), rs.fetch_timeout)),
    )
    .await;
    let mut items = Vec::new();
    let mut first_error: Option<StageError> = None;
    for (w, r) in fg.iter().zip(results) {
        match r {
            Ok(m) => items.push(staged_json(w, &m)),
            Err(e) => {
                items.push(failed_json(w, &e));
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        // Like devserver: background items start only once the foreground is in.
        let mut body = e.body();
        body["items"] = json!(items);
        return Err((e.status(), Json(body)).into_response());
    }

    // Background: make sure each runs (or joined), answer with its job.
    let mut background = Vec::new();
    for w in &bg {
        let key = (rs.name().clone(), name.clone(), w.version.clone());
        match stage(&state, &rs, &name, &w.version, w.item.clone(), Duration::ZERO).await {
            Ok(m) => background.push(staged_json(w, &m)),
            Err(StageError::Timeout { .. }) => {
                let mut v = json!({"artifact": w.version, "kind": w.kind, "state": "staging"});
                if let Some(job) = state.staging.jobs.latest(&key) {
                    v["job"] = json!(job.id);
                }
                background.push(v);
            }
            Err(e) => background.push(failed_json(w, &e)),
        }
    }
    Ok((
        StatusCode::OK,
        Json(json!({"repo": rs.name(), "name": name, "items": items, "background": background})),
    )
        .into_response())
}

pub(super) async fn post_stage(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<StageRequest>, JsonRejection>,
) -> Response {
    let repo = match path {
        Ok(Path(r)) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match stage_handler(state, repo, body).await {
        Ok(r) | Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusQuery {
    name: String,
    /// Comma-separated artifact (or raw file) names; default: every configured artifact.
    artifacts: Option<String>,
    wait_seconds: Option<u64>,
}

/// The state of one artifact of a build, and whether it is final (staged or failed).
async fn item_status(state: &AppState, rs: &RepoStaging, name: &Name, version: &Version) -> ApiResult<(Value, bool)> {
    let key = (rs.name().clone(), name.clone(), version.clone());
    let latest = state.staging.jobs.latest(&key);
    let running = rs.flights.is_running(&(name.clone(), version.clone()));
    if running && let Some(job) = latest.as_ref().filter(|j| j.finished().is_none()) {
        let mut v = job.to_json();
        v["job"] = json!(job.id);
        v["artifact"] = json!(version);
        v["state"] = json!("staging");
        for k in ["id", "repo", "name", "started_at"] {
            if let Value::Object(o) = &mut v {
                o.remove(k);
            }
        }
        return Ok((v, false));
    }
    if let Some(m) = state.store.has_version(rs.name(), name, version).await? {
        let mut v = json!({"artifact": version, "state": "staged"});
        if let (Value::Object(o), Value::Object(s)) = (&mut v, summary(&m)) {
            o.extend(s);
        }
        return Ok((v, true));
    }
    // The latest attempt failed. A definitive failure counts while the single flight
    // remembers it (`until`); a transient one is not remembered (`until` is when it happened:
    // the next request tries again) and stays the answer until a new attempt starts.
    if let Some(job) = &latest
        && let Some((at, JobOutcome::Failed { error })) = job.finished()
    {
        let remembered = error.is_definitive() && !rs.failure_ttl.is_zero();
        let until = if remembered { at.plus(rs.failure_ttl) } else { at };
        if !remembered || until > state.store.now() {
            let v = json!({"artifact": version, "state": "failed", "error": error.code(),
                           "message": error.to_string(), "job": job.id, "until": until,
                           "remembered": remembered});
            return Ok((v, true));
        }
    }
    Ok((json!({"artifact": version, "state": "absent"}), false))
}

pub(super) async fn status(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Path(repo) = path?;
    let rs = staging_repo(&state, &repo)?.clone();
    let Query(q) = query?;
    let name = Name::parse(&q.name)?;
    let wait = q.wait_seconds.unwrap_or(0);
    if wait > MAX_WAIT {
        return Err(ApiError::bad("wait_seconds", format!("must be at most {MAX_WAIT}")));
    }
    let versions: Vec<Version> = match q.artifacts.as_deref().filter(|s| !s.is_empty()) {
        Some(list) => list
            .split(',')
            .map(|a| Version::parse(a.trim()))
            .collect::<Result<_, _>>()?,
        None => rs
            .config
            .artifacts
            .keys()
            .filter_map(|a| Version::parse(a).ok())
            .collect(),
    };
    if versions.len() > MAX_ITEMS {
        return Err(ApiError::bad(
            "artifacts",
            format!("at most {MAX_ITEMS} items per request"),
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        // Subscribe before looking, so a job finishing in between still wakes us.
        let mut changed = state.staging.jobs.subscribe();
        let mut out = Vec::with_capacity(versions.len());
        let mut done = true;
        for v in &versions {
            let (s, fin) = item_status(&state, &rs, &name, v).await?;
            done &= fin;
            out.push(s);
        }
        if done || tokio::time::Instant::now() >= deadline {
            return Ok(Json(json!({"repo": rs.name(), "name": name, "done": done, "artifacts": out})).into_response());
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

pub(super) async fn job(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    let shown: String = id.chars().take(64).collect();
    let job = state
        .staging
        .jobs
        .get(&id)
        .ok_or_else(|| ApiError::NotFound(format!("job {shown:?}")))?;
    Ok(Json(job.to_json()).into_response())
}
