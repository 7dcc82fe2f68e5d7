//! Build-artifact staging: generic proxy repos that fetch named artifacts of a build from an
//! upstream archive (HTTP(S) directory tree, local directory, S3-compatible bucket) on first
//! request, exactly once, and commit each as one atomic version (version = artifact name).
//! See docs/staging.md.
//!
//! * Concurrent requests for one (repo, build, artifact) share one run through
//!   [`SingleFlight`]: detached from any request, its outcome (success or failure) reaches
//!   every waiter, waits are bounded by `fetch_timeout_seconds`. Definitive failures (not
//!   found upstream, a refused archive) are remembered for `failure_cache_seconds`; transient
//!   ones (an outage, a cut download, a timeout) are not, so the next request tries again.
//! * A run's upstream transfers have an overall deadline (`fetch_deadline_seconds`), so a
//!   trickling upstream cannot keep a run alive for ever.
//! * Each run is a job with live progress (`GET /api/v1/jobs/{id}`).
//! * Proxy repos with `max_size` evict whole versions, least recently read first, after each
//!   staging commit and on `intact gc`. Hosted repos are never touched.

pub(crate) mod api;
mod error;
pub(crate) mod jobs;
pub mod listing;
mod stager;
mod upstream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use intact_core::{Manifest, Name, RepoName, Version};
use intact_store::VersionUse;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::error::StageError;
use self::jobs::{JobOutcome, Jobs};
use self::stager::{Dirs, Item, Run};
use self::upstream::Upstream;
use crate::api::error::ApiError;
use crate::config::{Config, RepoConfig, RepoFormat, RepoKind};
use crate::shared_flight::across_replicas;
use crate::singleflight::SingleFlight;
use crate::state::AppState;

/// Default of `fetch_timeout_seconds`: the longest a request waits for a staging in progress.
const DEFAULT_FETCH_TIMEOUT: u64 = 600;
/// Default of `failure_cache_seconds`.
const DEFAULT_FAILURE_TTL: u64 = 30;
/// Default of `fetch_deadline_seconds`: the longest a run's upstream transfers may take.
const DEFAULT_FETCH_DEADLINE: u64 = 3600;
/// How often recorded reads are written to the catalog.
const ACCESS_FLUSH_EVERY: Duration = Duration::from_secs(10);

type Flights = SingleFlight<(Name, Version), Arc<Manifest>, StageError>;

/// One staging repo: its configuration, upstream and single-flight group.
pub(crate) struct RepoStaging {
    config: RepoConfig,
    upstream: Arc<Upstream>,
    flights: Flights,
    fetch_timeout: Duration,
    fetch_deadline: Duration,
    failure_ttl: Duration,
    /// Serializes evictions of this repo.
    evicting: tokio::sync::Mutex<()>,
}

impl RepoStaging {
    fn name(&self) -> &RepoName {
        &self.config.name
    }

    /// What `version` names in this repo: a configured artifact, or (when `raw` allows it)
    /// a raw file of the build directory.
    fn item(&self, version: &Version, raw: bool) -> Option<Item> {
        match self.config.artifacts.get(version.as_str()) {
            Some(spec) => Some(Item::Artifact {
                files: spec.files.clone(),
                extract: spec.extract,
            }),
            None => raw.then(|| Item::File(version.to_string())),
        }
    }
}

/// Staging's state: the staging repos and the job registry.
pub struct StagingState {
    repos: HashMap<RepoName, Arc<RepoStaging>>,
    jobs: Jobs,
    dirs: Dirs,
    limits: intact_archive::Limits,
}

impl std::fmt::Debug for StagingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagingState")
            .field("repos", &self.repos.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl StagingState {
    /// The repo a staging job stages into (access control reads a job as its repo).
    pub(crate) fn job_repo(&self, id: &str) -> Option<RepoName> {
        self.jobs.get(id).map(|job| job.key.0.clone())
    }

    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let mut repos = HashMap::new();
        for repo in &config.repos {
            if !(repo.kind == RepoKind::Proxy && repo.format == RepoFormat::Generic) {
                continue;
            }
            for (art, spec) in &repo.artifacts {
                for pattern in &spec.files {
                    listing::check_pattern(pattern)
                        .map_err(|e| anyhow::anyhow!("repo {}: artifact {art}: {e}", repo.name))?;
                }
            }
            let fetch_deadline = Duration::from_secs(repo.fetch_deadline_seconds.unwrap_or(DEFAULT_FETCH_DEADLINE));
            if fetch_deadline.is_zero() {
                anyhow::bail!("repo {}: fetch_deadline_seconds must be at least 1", repo.name);
            }
            let staging = RepoStaging {
                upstream: Arc::new(Upstream::from_config(repo)?),
                flights: SingleFlight::new(Duration::from_secs(
                    repo.failure_cache_seconds.unwrap_or(DEFAULT_FAILURE_TTL),
                )),
                fetch_timeout: Duration::from_secs(repo.fetch_timeout_seconds.unwrap_or(DEFAULT_FETCH_TIMEOUT)),
                fetch_deadline,
                failure_ttl: Duration::from_secs(repo.failure_cache_seconds.unwrap_or(DEFAULT_FAILURE_TTL)),
                evicting: tokio::sync::Mutex::new(()),
                config: repo.clone(),
            };
            repos.insert(repo.name.clone(), Arc::new(staging));
        }
        Ok(Self {
            repos,
            jobs: Jobs::new(intact_core::Timestamp::from_system(std::time::SystemTime::now())),
            dirs: Dirs::new(&config.data_dir),
            limits: intact_archive::Limits::default(),
        })
    }

    /// Every staging job this process remembers, oldest first (the activity page's list).
    pub(crate) fn jobs(&self) -> Vec<Arc<jobs::Job>> {
        self.jobs.all()
    }

    /// A staging repo's fetches from upstream running now and failures remembered now, each
    /// named `name@version`.
    pub(crate) fn flights_now(&self, name: &RepoName) -> Option<crate::singleflight::FlightsNow<String>> {
        let now = self.repos.get(name)?.flights.now();
        let key = |(n, v): &(Name, Version)| format!("{n}@{v}");
        Some(crate::singleflight::FlightsNow {
            running: now.running.iter().map(key).collect(),
            failures: now
                .failures
                .into_iter()
                .map(|f| crate::singleflight::RememberedFailure {
                    key: key(&f.key),
                    at: f.at,
                    remembered_for: f.remembered_for,
                    error: f.error,
                })
                .collect(),
        })
    }

    pub(crate) fn repo(&self, name: &RepoName) -> Option<&Arc<RepoStaging>> {
        self.repos.get(name)
    }
}

/// Routes added to `/api/v1` by staging.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/repos/{repo}/stage", post(api::post_stage))
        .route("/repos/{repo}/stage/status", get(api::status))
        .route("/jobs/{id}", get(api::job))
}

/// Start-up recovery, before serving: drops a dead process's staging temp files. (Its open
/// staging transactions are the catalog's to end: rolled back at start-up on the embedded
/// catalog with the rest of the proxy repos', lapsing with their worker lease on a shared one.)
pub async fn recover(state: &AppState) {
    if state.staging.repos.is_empty() {
        return;
    }
    let dirs = state.staging.dirs.clone();
    match tokio::task::spawn_blocking(move || dirs.recover()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "staging start-up cleanup failed"),
        Err(e) => tracing::warn!(error = %e, "staging start-up cleanup failed"),
    }
}

/// The periodic flush of read times for least-recently-used eviction (and a last one at
/// shutdown).
pub fn start_background(state: &AppState, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    if state.staging.repos.is_empty() {
        return Vec::new();
    }
    let store = state.store.clone();
    let mut stop = shutdown;
    vec![tokio::spawn(async move {
        let mut tick = tokio::time::interval(ACCESS_FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => {
                    let _ = store.flush_access().await;
                    return;
                }
            }
            if let Err(e) = store.flush_access().await {
                tracing::warn!(error = %e, "writing read times failed");
            }
        }
    })]
}

/// Called by the read path when a proxy repo lacks a version: stage it if it is a configured
/// artifact of the repo (`NotFound` otherwise, so group reads fall through).
pub async fn stage_on_read(
    state: &AppState,
    repo: &RepoConfig,
    name: &Name,
    version: &Version,
) -> Result<(), ApiError> {
    let Some(rs) = state.staging.repo(&repo.name) else {
        return Err(ApiError::NotFound(format!("version {}/{name}@{version}", repo.name)));
    };
    let Some(item) = rs.item(version, false) else {
        return Err(ApiError::NotFound(format!(
            "version {}/{name}@{version} (not a configured artifact)",
            repo.name
        )));
    };
    stage(state, rs, name, version, item, rs.fetch_timeout).await?;
    Ok(())
}

/// Applies per-repo disk caps (LRU eviction of staged versions). Returns, per staging repo
/// with a `max_size`, the versions evicted; `None` when no repo has a cap.
pub async fn enforce_limits(state: &AppState) -> Result<Option<Value>, ApiError> {
    let mut report = serde_json::Map::new();
    for rs in state.staging.repos.values() {
        if rs.config.max_size.is_none() {
            continue;
        }
        let evicted = evict(state, rs, None).await?;
        report.insert(rs.name().to_string(), json!(evicted));
    }
    Ok((!report.is_empty()).then_some(Value::Object(report)))
}

/// Records a read of a version (least-recently-used bookkeeping for staging repos).
pub fn touch(state: &AppState, manifest: &Manifest) {
    if state.staging.repos.contains_key(&manifest.repo) {
        state.store.record_access(manifest);
    }
}

/// A staged version in a few fields, for answers and job outcomes.
pub(crate) fn summary(m: &Manifest) -> Value {
    json!({
        "files": m.files.len(),
        "size": m.total_size(),
        "created_at": m.created_at,
        "fingerprint": m.fingerprint(),
        "manifest": format!("/api/v1/repos/{}/{}/@v/{}", m.repo, m.name, m.version),
    })
}

/// Stages (name, version) of `rs`, or joins the staging in progress, waiting at most `wait`.
/// With a zero `wait` it only makes sure the staging runs (answering `Timeout` if it does).
pub(crate) async fn stage(
    state: &AppState,
    rs: &Arc<RepoStaging>,
    name: &Name,
    version: &Version,
    item: Item,
    wait: Duration,
) -> Result<Arc<Manifest>, StageError> {
    if let Some(m) = state.store.has_version(rs.name(), name, version).await? {
        return Ok(m);
    }
    let what = item.describe(rs.name(), name, version);
    let key = (name.clone(), version.clone());
    let work = {
        let state = state.clone();
        let rs = rs.clone();
        let (name, version) = (name.clone(), version.clone());
        // Called only for the leader, synchronously: the job exists before anyone asks.
        move || {
            let job = state
                .staging
                .jobs
                .start((rs.name().clone(), name.clone(), version.clone()), state.store.now());
            let run = Run {
                what: item.describe(rs.name(), &name, &version),
                fetch_deadline: rs.fetch_deadline,
                store: state.store.clone(),
                repo: rs.name().clone(),
                name: name.clone(),
                version: version.clone(),
                item,
                upstream: rs.upstream.clone(),
                dirs: state.staging.dirs.clone(),
                limits: state.staging.limits,
                job: job.clone(),
            };
            let flight = format!("staging/{}/{name}@{version}", rs.name());
            let follow_for = rs.fetch_deadline;
            let failure_ttl = rs.failure_ttl;
            async move {
                let lookup = || async { Ok(state.store.has_version(rs.name(), &name, &version).await?) };
                let result = across_replicas(
                    &state.store,
                    &flight,
                    &run.what.clone(),
                    follow_for,
                    failure_ttl,
                    lookup,
                    || run.run(),
                )
                .await;
                let jobs = &state.staging.jobs;
                match &result {
                    Ok(m) => {
                        tracing::info!(repo = %rs.name(), %name, %version, files = m.files.len(), size = m.total_size(), "staged");
                        jobs.finish(&job, JobOutcome::Staged(summary(m)), state.store.now());
                        if let Err(e) = evict(&state, &rs, Some((&name, &version))).await {
                            tracing::warn!(repo = %rs.name(), error = %e, "eviction after staging failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(repo = %rs.name(), %name, %version, error = %e, "staging failed");
                        jobs.finish(&job, JobOutcome::Failed { error: e.clone() }, state.store.now());
                    }
                }
                result
            }
        }
    };
    Ok(rs.flights.run(key, &what, wait, work).await?)
}

/// Evicts least-recently-read versions of `rs` down to its `max_size`, never one being
/// staged nor `just` (the version whose commit triggered this run).
async fn evict(
    state: &AppState,
    rs: &RepoStaging,
    just: Option<(&Name, &Version)>,
) -> Result<Vec<VersionUse>, StageError> {
    let Some(max) = rs.config.max_size else {
        return Ok(Vec::new());
    };
    let _one_at_a_time = rs.evicting.lock().await;
    let keep = |n: &Name, v: &Version| just == Some((n, v)) || rs.flights.is_running(&(n.clone(), v.clone()));
    // The store logs each deleted version.
    state.store.evict_lru(rs.name(), max, &keep).await.map_err(Into::into)
}

#[cfg(test)]
mod tests;
