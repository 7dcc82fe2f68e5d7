//! The Go module proxy front-end: the GOPROXY protocol (go.dev/ref/mod, "GOPROXY protocol")
//! over hosted, proxy and group repos of format `go`, at `/go/{repo}/`, plus publishing into
//! hosted repos. See docs/go-proxy.md for the behaviour users rely on.
//!
//! * `request`: protocol paths, `!`-unescaping, validation.
//! * `layout`: how module versions are stored (one intact version per module version).
//! * `proxy`: misses, single-flight, `list`/`@latest` caching; `upstream`: GOPROXY lists.
//! * `check`: what a version passes before it is committed; `hosted`: publishing.
//! * `error`: the one mapping to status codes (404/410 "not here", 5xx otherwise).

mod check;
pub mod direct;
pub mod error;
mod hosted;
pub mod layout;
pub mod proxy;
pub mod request;
pub mod settings;
pub mod sumdb;
pub mod upstream;
pub mod versions;

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use intact_core::RepoName;
use intact_go::semver;

use self::error::{MemberFailures, ProxyError};
use self::proxy::{ProxyRepo, ProxySettings};
use self::request::{FileKind, GoRequest};
use crate::config::{Config, RepoConfig, RepoFormat, RepoKind};
use crate::state::AppState;

/// Defaults of the Go-related repo settings.
pub const DEFAULT_FETCH_TIMEOUT_SECONDS: u64 = 300;
pub const DEFAULT_FAILURE_CACHE_SECONDS: u64 = 30;
pub const DEFAULT_FETCH_DEADLINE_SECONDS: u64 = 600;
pub const DEFAULT_LIST_CACHE_SECONDS: u64 = 60;

/// The Go front-end's state: each proxy repo's upstream, in-flight fetches and caches.
#[derive(Debug)]
pub struct GoState {
    proxies: HashMap<RepoName, Arc<ProxyRepo>>,
    /// Each proxy repo's checksum database (sum.golang.org unless configured otherwise).
    sumdbs: HashMap<RepoName, Arc<sumdb::ChecksumDb>>,
    /// Temp files of downloads and uploads (zips being checked before their files become
    /// blobs). The Go front-end's own directory: the blob store may keep no local files at
    /// all. A crash's leftovers are removed at start-up ([`GoState::remove_leftovers`]).
    tmp_dir: PathBuf,
}

impl GoState {
    /// Builds the proxies' clients. The settings were checked with the configuration
    /// ([`settings::problems`]); a bad one still fails here, naming the repo.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let tmp_dir = config.data_dir.join(TMP_DIR);
        let mut proxies = HashMap::new();
        let mut sumdbs = HashMap::new();
        for repo in config.repos.iter().filter(|r| r.format == RepoFormat::Go) {
            let n = &repo.name;
            if let Some(problem) = settings::problems(repo).into_iter().next() {
                bail!("{problem}");
            }
            if repo.kind != RepoKind::Proxy {
                continue;
            }
            let upstream = repo
                .upstream
                .as_deref()
                .ok_or_else(|| anyhow!("repo {n}: a proxy repo needs an upstream"))?;
            let entries = upstream::parse_list(upstream).map_err(|e| anyhow!("repo {n}: upstream: {e}"))?;
            let rules = intact_go::rules::Rules::parse(&repo.allow, &repo.deny)
                .map_err(|bad| anyhow!("repo {n}: {}", bad.join("; ")))?;
            let secs = |v: Option<u64>, d: u64| Duration::from_secs(v.unwrap_or(d));
            let fetch_timeout = secs(repo.fetch_timeout_seconds, DEFAULT_FETCH_TIMEOUT_SECONDS);
            if fetch_timeout.is_zero() {
                bail!("repo {n}: fetch_timeout_seconds must be at least 1");
            }
            let fetch_deadline = secs(repo.fetch_deadline_seconds, DEFAULT_FETCH_DEADLINE_SECONDS);
            if fetch_deadline.is_zero() {
                bail!("repo {n}: fetch_deadline_seconds must be at least 1");
            }
            let sumdb = match crate::config::ChecksumDbSetting::database(repo.checksum_db.as_ref()) {
                Some(db_config) => {
                    let db = sumdb::ChecksumDb::new(
                        &db_config,
                        n.clone(),
                        repo.network_mode.unwrap_or_default(),
                        fetch_timeout,
                        fetch_deadline,
                    )
                    .map_err(|e| anyhow!("repo {n}: checksum_db: {e}"))?;
                    let db = Arc::new(db);
                    sumdbs.insert(n.clone(), db.clone());
                    Some(db)
                }
                None => None,
            };
            let settings = ProxySettings {
                name: n.clone(),
                upstream: entries,
                exclude: repo.exclude.clone(),
                rules,
                network_mode: repo.network_mode.unwrap_or_default(),
                sumdb,
                no_sum: repo.no_sum.clone(),
                fetch_timeout,
                fetch_deadline,
                failure_ttl: secs(repo.failure_cache_seconds, DEFAULT_FAILURE_CACHE_SECONDS),
                list_ttl: secs(repo.list_cache_seconds, DEFAULT_LIST_CACHE_SECONDS),
                tmp_dir: tmp_dir.clone(),
                direct: Some(direct_settings(config, repo)),
            };
            proxies.insert(
                n.clone(),
                Arc::new(ProxyRepo::new(settings).map_err(|e| anyhow!("repo {n}: {e}"))?),
            );
        }
        Ok(Self {
            proxies,
            sumdbs,
            tmp_dir,
        })
    }

    pub fn proxy(&self, repo: &RepoName) -> Option<&Arc<ProxyRepo>> {
        self.proxies.get(repo)
    }

    pub fn tmp_dir(&self) -> &FsPath {
        &self.tmp_dir
    }

    /// Removes temp files a dead process left behind. Only at start-up, by the process that
    /// holds the data dir's lock: every file there is then a leftover. Returns how many.
    pub fn remove_leftovers(&self) -> std::io::Result<u64> {
        let entries = match std::fs::read_dir(&self.tmp_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
            removed += 1;
        }
        Ok(removed)
    }
}

/// The Go front-end's temp directory, under the data dir.
pub const TMP_DIR: &str = "go-tmp";

/// Where a repo's `direct` upstream keeps the go command's module cache (its git clones are
/// reused by later fetches) and home, under the data dir.
pub const DIRECT_DIR: &str = "go-direct";

fn direct_settings(config: &Config, repo: &RepoConfig) -> direct::DirectSettings {
    let d = repo.direct.clone().unwrap_or_default();
    direct::DirectSettings {
        go: d.go.unwrap_or_else(|| PathBuf::from("go")),
        // Absolute: the go command refuses a relative GOPATH or GOMODCACHE, and the data dir
        // may be given relative (the default is).
        work_dir: {
            let dir = config.data_dir.join(DIRECT_DIR).join(repo.name.as_str());
            std::path::absolute(&dir).unwrap_or(dir)
        },
        netrc: d.netrc,
        git_config: d.git_config,
        insecure: d.insecure,
        env: d.env,
    }
}

/// Routes under `/go`.
pub fn routes(limits: &Arc<crate::limits::Limits>) -> Router<AppState> {
    Router::new()
        .route(
            "/go/{repo}/publish",
            post(hosted::publish)
                .layer(DefaultBodyLimit::disable())
                .layer(axum::middleware::from_fn_with_state(
                    limits.clone(),
                    crate::limits::upload_slot,
                ))
                .fallback(publish_other_method),
        )
        .route("/go/{repo}/{*rest}", get(read).fallback(read_other_method))
}

/// Other methods on the (read-only) protocol paths: 405 with a reason, like every Go error.
async fn read_other_method() -> Response {
    let mut resp = (
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: the GOPROXY protocol is read-only (GET, HEAD); publish with POST /go/{repo}/publish\n",
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

/// Other methods on the publish endpoint: 405 with the API's JSON error shape.
async fn publish_other_method() -> Response {
    let body = serde_json::json!({
        "error": "method_not_allowed",
        "message": "POST /go/{repo}/publish?module=M&version=V with the module zip as the body",
    });
    let mut resp = (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    resp
}

async fn read(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    // The request itself, not `Method` and `HeaderMap` extractors: those clone the headers.
    request: axum::extract::Request,
) -> Response {
    let private = path
        .as_ref()
        .ok()
        .and_then(|Path((repo, _))| state.repo(repo))
        .is_some_and(|repo| crate::api::needed_a_token(&request, repo));
    match serve(&state, request.method(), request.headers(), path).await {
        Ok(mut resp) => {
            // Stored files' answers are cacheable for a year: only privately when reading
            // them needed a token.
            let immutable = crate::http::serve_file::immutable(false);
            if private && resp.headers().get(header::CACHE_CONTROL) == Some(&immutable) {
                resp.headers_mut()
                    .insert(header::CACHE_CONTROL, crate::http::serve_file::immutable(true));
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

fn go_repo<'a>(state: &'a AppState, name: &str) -> Result<&'a RepoConfig, ProxyError> {
    match state.repo(name) {
        Some(r) if r.format == RepoFormat::Go => Ok(r),
        Some(_) => Err(ProxyError::NotFound(format!("not found: repo {name} is not a Go repo"))),
        None => Err(ProxyError::NotFound(format!(
            "not found: no repo {:?}",
            name.chars().take(64).collect::<String>()
        ))),
    }
}

/// The repos that answer for `repo`: its members, in order, for a group; else itself.
fn members<'a>(state: &'a AppState, repo: &'a RepoConfig) -> Vec<&'a RepoConfig> {
    state.members(repo)
}

/// Collects the members' reasons for `repo` (a group's answer names each).
fn failures(repo: &RepoConfig) -> MemberFailures {
    MemberFailures::new((repo.kind == RepoKind::Group).then_some(repo.name.as_str()))
}

async fn serve(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ProxyError> {
    let Path((repo, rest)) = path.map_err(|e| ProxyError::NotFound(format!("not found: {}", e.body_text())))?;
    let repo = go_repo(state, &repo)?;
    // No module path starts with `sumdb/` (its first element would need a dot).
    if let Some(sumdb_path) = rest.strip_prefix("sumdb/") {
        return serve_sumdb(state, repo, sumdb_path).await;
    }
    match request::parse(&rest)? {
        GoRequest::List { module } => {
            let list = list(state, repo, &module).await?;
            Ok(dynamic(
                versions::render(&list).into_bytes(),
                "text/plain; charset=utf-8",
            ))
        }
        GoRequest::Latest { module } => {
            let (info, _) = latest(state, repo, &module).await?;
            Ok(dynamic(info, "application/json"))
        }
        GoRequest::File { module, version, kind } => {
            serve_file(state, repo, &module, &version, kind, method, headers).await
        }
    }
}

/// `sumdb/{name}/{rest}`: the checksum database `name` of the repo (of a group's first proxy
/// member that has it).
async fn serve_sumdb(state: &AppState, repo: &RepoConfig, path: &str) -> Result<Response, ProxyError> {
    let (name, rest) = path.split_once('/').unwrap_or((path, ""));
    let db = members(state, repo)
        .into_iter()
        .filter_map(|m| state.go.sumdbs.get(&m.name))
        .find(|db| db.name == name)
        .ok_or_else(|| {
            ProxyError::NotFound(format!(
                "not found: repo {} proxies no checksum database {name:?}",
                repo.name
            ))
        })?;
    let answer = db.serve(&state.store, rest).await?;
    let mut resp = (StatusCode::OK, answer.body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
    h.insert(
        header::CACHE_CONTROL,
        if answer.immutable {
            crate::http::serve_file::immutable(false)
        } else {
            HeaderValue::from_static("no-cache")
        },
    );
    Ok(resp)
}

/// A generated answer (`list`, `@latest`, a branch query): it can change, so no long caching.
fn dynamic(body: Vec<u8>, content_type: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn serve_file(
    state: &AppState,
    repo: &RepoConfig,
    module: &str,
    version: &str,
    kind: FileKind,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ProxyError> {
    let candidates = members(state, repo);
    if let Err(not_canonical) = request::canonical_for(module, version) {
        // `@v/master.info`: a query (a branch, a tag, a non-canonical spelling) only an
        // upstream can answer; passed through, never stored. A canonical version that does
        // not fit the module's major version is simply not found.
        let is_query = intact_go::module_path::canonical_version(version).as_deref() != Some(version);
        if kind != FileKind::Info || !is_query {
            return Err(not_canonical);
        }
        let mut failed = failures(repo);
        for member in &candidates {
            let Some(p) = state.go.proxy(&member.name) else {
                failed.add(
                    member.name.as_str(),
                    ProxyError::NotFound(format!(
                        "{version} is not a version, and a hosted repo answers versions only"
                    )),
                );
                continue;
            };
            match p.query_info(module, version).await {
                Ok(info) => return Ok(dynamic(info, FileKind::Info.content_type())),
                Err(e) => failed.add(member.name.as_str(), e),
            }
        }
        return Err(failed.into_error(&format!("{module}@{version}"), || not_canonical));
    }
    let v = layout::version(version)?;
    for member in &candidates {
        // An excluded or refused module is never served by that proxy, not even a copy
        // stored before the pattern or rule was added (the fetch below says why).
        if state
            .go
            .proxy(&member.name)
            .is_some_and(|p| p.excludes(module) || p.refuse_version(module, version).is_err())
        {
            continue;
        }
        let is_proxy = state.go.proxy(&member.name).is_some();
        if let Some(found) = layout::find(&state.store, &member.name, module, &v, kind, is_proxy).await? {
            match send(state, method, headers, &found.file, kind, found.committed_at()).await {
                // (Offline, a copy deleted could never be fetched again: the error stays.)
                Err(ProxyError::LostBytes(_)) if state.go.proxy(&member.name).is_some_and(|p| !p.is_offline()) => {
                    // A cached copy whose bytes were damaged (quarantined) or lost: drop it and
                    // fetch it again below, rather than failing every request for it.
                    let m = &found.manifest;
                    tracing::warn!(repo = %m.repo, module, version, "a cached module version lost a blob; fetching it again");
                    state
                        .store
                        .delete_version(
                            &m.repo,
                            &m.name,
                            &m.version,
                            "a blob was damaged or missing; fetched again",
                        )
                        .await?;
                }
                sent => return sent,
            }
        }
    }
    let mut failed = failures(repo);
    for member in &candidates {
        let Some(p) = state.go.proxy(&member.name) else {
            failed.add(
                member.name.as_str(),
                ProxyError::NotFound(format!("not found: {module}@{version} is not in repo {}", member.name)),
            );
            continue;
        };
        match p.fetch(&state.store, module, &v, kind).await {
            Ok(m) => match m.file(layout::file_name(kind)) {
                Some(file) => return send(state, method, headers, file, kind, m.created_at).await,
                None => failed.add(
                    member.name.as_str(),
                    ProxyError::Internal(format!("stored {module}@{version} lacks its .{}", kind.extension())),
                ),
            },
            Err(e) => failed.add(member.name.as_str(), e),
        }
    }
    Err(failed.into_error(&format!("{module}@{version}"), || {
        ProxyError::NotFound(format!("not found: {module}@{version} is not in repo {}", repo.name))
    }))
}

async fn send(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    file: &intact_core::FileEntry,
    kind: FileKind,
    committed_at: intact_core::Timestamp,
) -> Result<Response, ProxyError> {
    // Go clients get text/plain errors, like every other Go answer.
    crate::http::serve_file::send_file(&state.store, method, headers, file, kind.content_type(), committed_at)
        .await
        .map_err(ProxyError::from)
}

/// The merged `list` of `repo` (every member's, for a group). Not found only when no member
/// knows the module; a member's outage is the answer only when no other member has versions.
async fn list(state: &AppState, repo: &RepoConfig, module: &str) -> Result<Vec<String>, ProxyError> {
    layout::module_name(module)?;
    let mut lists = Vec::new();
    let mut failed = failures(repo);
    for member in members(state, repo) {
        match state.go.proxy(&member.name) {
            Some(p) => match p.list(&state.store, module).await {
                Ok(l) => lists.push(l),
                // A strict member's outage is the group's answer: other members' versions
                // must not stand in for a list the upstream could not give.
                Err(e) if p.is_strict() && e.is_upstream_failure() && repo.kind == RepoKind::Group => {
                    return Err(e.map_text(|m| format!("{}: {m}", member.name)));
                }
                Err(e) => failed.add(member.name.as_str(), e),
            },
            None => {
                let stored = layout::stored_versions(&state.store, &member.name, module).await?;
                if stored.is_empty() {
                    failed.add(
                        member.name.as_str(),
                        ProxyError::NotFound(format!("not found: {module}: no versions in repo {}", member.name)),
                    );
                } else {
                    lists.push(stored);
                }
            }
        }
    }
    if lists.is_empty() {
        return Err(failed.into_error(module, || {
            ProxyError::NotFound(format!("not found: {module}: no versions in repo {}", repo.name))
        }));
    }
    Ok(versions::merge(lists))
}

/// `@latest` of `repo`: for a group, the latest of its members' answers.
async fn latest(state: &AppState, repo: &RepoConfig, module: &str) -> Result<(Vec<u8>, String), ProxyError> {
    layout::module_name(module)?;
    let mut answers = Vec::new();
    let mut failed = failures(repo);
    for member in members(state, repo) {
        let answer = match state.go.proxy(&member.name) {
            Some(p) => p.latest(&state.store, module).await,
            None => proxy::stored_latest(&state.store, &member.name, module, false, false)
                .await
                .and_then(|found| {
                    found.ok_or_else(|| {
                        ProxyError::NotFound(format!("not found: {module}: no versions in repo {}", member.name))
                    })
                }),
        };
        let strict = state.go.proxy(&member.name).is_some_and(|p| p.is_strict());
        match answer {
            Ok(a) => answers.push(a),
            Err(e) if strict && e.is_upstream_failure() && repo.kind == RepoKind::Group => {
                return Err(e.map_text(|m| format!("{}: {m}", member.name)));
            }
            Err(e) => failed.add(member.name.as_str(), e),
        }
    }
    let Some(best) = semver::latest(answers.iter().map(|(_, v)| v.as_str())).map(str::to_owned) else {
        return Err(failed.into_error(module, || {
            ProxyError::NotFound(format!("not found: {module}: no versions in repo {}", repo.name))
        }));
    };
    answers
        .into_iter()
        .find(|(_, v)| *v == best)
        .ok_or_else(|| ProxyError::Internal("latest version vanished".into()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// The go command refuses a relative GOPATH or GOMODCACHE, and the default data dir is
    /// relative: `direct` must still work there.
    #[test]
    fn the_direct_work_dir_is_absolute_under_a_relative_data_dir() {
        let config = Config {
            data_dir: PathBuf::from("./intact-data"),
            ..Config::default()
        };
        let repo = RepoConfig::new("go-public", RepoKind::Proxy, RepoFormat::Go);
        let settings = direct_settings(&config, &repo);
        assert!(settings.work_dir.is_absolute(), "{:?}", settings.work_dir);
        assert!(
            settings.work_dir.ends_with("intact-data/go-direct/go-public"),
            "{:?}",
            settings.work_dir
        );
    }

    /// A module zip of `module@version` whose one package file holds `code`.
    fn module_zip(src: &Path, module: &str, version: &str, code: &str) -> Vec<u8> {
        std::fs::create_dir_all(src).expect("mkdir");
        std::fs::write(src.join("go.mod"), format!("module {module}\n")).expect("write");
        std::fs::write(src.join("m.go"), code).expect("write");
        let mut zip = std::io::Cursor::new(Vec::new());
        intact_go::zip::create_from_dir(src, module, version, &mut zip).expect("zip");
        zip.into_inner()
    }

    /// Writes `module@version` into a GOPROXY file layout under `up`, with `go_mod` as its
    /// `.mod`; returns the zip.
    fn publish_upstream(up: &Path, module: &str, version: &str, go_mod: &str) -> Vec<u8> {
        let src = up.parent().expect("parent").join("src").join(module).join(version);
        let zip = module_zip(&src, module, version, "package m\n");
        let dir = up
            .join(intact_go::module_path::escape_path(module).expect("escape"))
            .join("@v");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let info = intact_go::info::Info::new(version, "2024-01-01T00:00:00Z").expect("info");
        std::fs::write(dir.join(format!("{version}.info")), info.to_json()).expect("write");
        std::fs::write(dir.join(format!("{version}.mod")), go_mod).expect("write");
        std::fs::write(dir.join(format!("{version}.zip")), &zip).expect("write");
        std::fs::write(dir.join("list"), format!("{version}\n")).expect("write");
        zip
    }

    async fn app(root: &Path) -> Router {
        app_with(root, &["example.com/private/*"], None).await
    }

    /// The test repos: `go-file` proxies `root/up` excluding `exclude`; with `http_upstream`,
    /// `go-http` proxies it (1 s fetch deadline, 5 s waits, no failure memory) and group `gohttp` is
    /// `go-private` + `go-http`.
    async fn app_with(root: &Path, exclude: &[&str], http_upstream: Option<&str>) -> Router {
        app_configured(root, exclude, http_upstream, "").await
    }

    /// `app_with`, with `proxy_settings` (TOML lines) added to both proxy repos.
    async fn app_configured(
        root: &Path,
        exclude: &[&str],
        http_upstream: Option<&str>,
        proxy_settings: &str,
    ) -> Router {
        let mut text = format!(
            r#"
[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "go-private"
kind = "hosted"
format = "go"

[[repo]]
name = "go-file"
kind = "proxy"
format = "go"
upstream = "file://{}"
checksum_db = "off"
exclude = {exclude:?}
{proxy_settings}

[[repo]]
name = "go"
kind = "group"
format = "go"
members = ["go-private", "go-file"]
"#,
            root.join("up").display()
        );
        if let Some(url) = http_upstream {
            text.push_str(&format!(
                r#"
[[repo]]
name = "go-http"
kind = "proxy"
format = "go"
upstream = "{url}"
checksum_db = "off"
fetch_deadline_seconds = 1
fetch_timeout_seconds = 5
failure_cache_seconds = 0
{proxy_settings}

[[repo]]
name = "gohttp"
kind = "group"
format = "go"
members = ["go-private", "go-http"]
"#
            ));
        }
        let mut config = Config::from_toml(&text).expect("config");
        config.data_dir = root.join("data");
        let store = intact_store::Store::open_local(&config.data_dir, intact_store::StoreConfig::default())
            .await
            .expect("store");
        let state = AppState::new(Arc::new(config), store).expect("state");
        crate::api::router(state)
    }

    /// An upstream on loopback that records the raw (still percent-encoded) path of every
    /// request. `example.com/m/@v/list` answers a list; `example.com/slow/...` trickles a
    /// byte a second for ever; `example.com/packed/@v/v1.0.0.*` serves `packed_zip` and its
    /// `.info`/`.mod`; anything else is 404.
    async fn recording_upstream(packed_zip: Vec<u8>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::http::Uri;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = Router::new().fallback(move |uri: Uri| {
            let (log, packed_zip) = (log.clone(), packed_zip.clone());
            async move {
                let path = uri.path().to_owned();
                log.lock().expect("lock").push(path.clone());
                match path.as_str() {
                    "/example.com/m/@v/list" => (StatusCode::OK, "v1.0.0\n").into_response(),
                    "/example.com/packed/@v/v1.0.0.info" => {
                        (StatusCode::OK, r#"{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}"#).into_response()
                    }
                    "/example.com/packed/@v/v1.0.0.mod" => {
                        (StatusCode::OK, "module example.com/packed\n").into_response()
                    }
                    "/example.com/packed/@v/v1.0.0.zip" => (StatusCode::OK, packed_zip).into_response(),
                    p if p.starts_with("/example.com/slow/") => {
                        let trickle = futures::stream::unfold((), |()| async {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x")), ()))
                        });
                        Response::new(axum::body::Body::from_stream(trickle))
                    }
                    _ => (StatusCode::NOT_FOUND, "not found").into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (base, seen)
    }

    /// `zip` with every entry's compression method set to `method` (bzip2 is 12), in the
    /// local headers and the central directory alike.
    fn with_compression_method(mut zip: Vec<u8>, method: u16) -> Vec<u8> {
        let mut i = 0;
        while i + 12 <= zip.len() {
            let at = match &zip[i..i + 4] {
                b"PK\x03\x04" => i + 8,
                b"PK\x01\x02" => i + 10,
                _ => {
                    i += 1;
                    continue;
                }
            };
            zip[at..at + 2].copy_from_slice(&method.to_le_bytes());
            i += 4;
        }
        zip
    }

    /// A stored (uncompressed) module zip of `module@version`.
    fn stored_module_zip(module: &str, version: &str) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file(format!("{module}@{version}/go.mod"), stored)
            .expect("entry");
        w.write_all(format!("module {module}\n").as_bytes()).expect("write");
        w.start_file(format!("{module}@{version}/m.go"), stored).expect("entry");
        w.write_all(b"package m\n").expect("write");
        w.finish().expect("zip").into_inner()
    }

    #[tokio::test]
    async fn excluded_modules_are_not_served_even_when_stored() {
        let root = tempfile::tempdir().expect("tempdir");
        let up = root.path().join("up");
        publish_upstream(&up, "example.com/m", "v1.0.0", "module example.com/m\n");
        {
            let app = app_with(root.path(), &[], None).await;
            for f in ["info", "mod", "zip"] {
                let (s, _, _) = call(&app, "GET", &format!("/go/go-file/example.com/m/@v/v1.0.0.{f}"), vec![]).await;
                assert_eq!(s, StatusCode::OK, ".{f}");
            }
        }
        // The module is excluded afterwards (and the upstream forgets it, so only the stored
        // copy could answer).
        std::fs::remove_dir_all(&up).expect("rm upstream");
        std::fs::create_dir_all(&up).expect("mkdir");
        let app = app_with(root.path(), &["example.com/m"], None).await;
        for repo in ["go-file", "go"] {
            for tail in ["@v/v1.0.0.info", "@v/v1.0.0.mod", "@v/v1.0.0.zip", "@v/list", "@latest"] {
                let uri = format!("/go/{repo}/example.com/m/{tail}");
                let (s, _, body) = call(&app, "GET", &uri, vec![]).await;
                let body = String::from_utf8_lossy(&body);
                assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {body}");
                assert!(body.contains("exclude"), "{uri}: {body}");
            }
        }
        // Still stored: excluding hides, it does not delete.
        let (s, _, _) = call(&app, "GET", "/api/v1/repos/go-file/example.com/m/@v/v1.0.0", vec![]).await;
        assert_eq!(s, StatusCode::OK);
    }

    /// A cached module version whose blob rotted is dropped and fetched again in the same
    /// request: the client gets the right bytes, never the damaged ones, and never a 500.
    #[tokio::test]
    async fn a_damaged_cached_copy_is_fetched_again() {
        let root = tempfile::tempdir().expect("tempdir");
        let up = root.path().join("up");
        let zip = publish_upstream(&up, "example.com/m", "v1.0.0", "module example.com/m\n");
        let app = app_with(root.path(), &[], None).await;
        let uri = "/go/go/example.com/m/@v/v1.0.0.zip";
        let (s, _, body) = call(&app, "GET", uri, vec![]).await;
        assert_eq!((s, body.len()), (StatusCode::OK, zip.len()));
        let hex = intact_core::Digest::of(&zip).to_hex();
        let blob = root.path().join("data/blobs/sha256").join(&hex[..2]).join(&hex);
        let mut rotten = std::fs::read(&blob).expect("blob");
        rotten[10] ^= 0xff;
        std::fs::write(&blob, rotten).expect("rot");
        let (s, ct, body) = call(&app, "GET", uri, vec![]).await;
        assert_eq!(s, StatusCode::OK, "{ct}: {}", String::from_utf8_lossy(&body));
        assert!(body == zip, "the damaged copy was served");
    }

    /// A `.mod`-only copy whose go.mod rotted must not be copied into the complete version
    /// when the `.zip` is fetched later: the damaged bytes would be stored under their own
    /// (matching) digest and served from then on as if they were right. It is fetched again
    /// instead, and both files are served right.
    #[tokio::test]
    async fn a_damaged_mod_only_copy_is_not_laundered_into_the_full_version() {
        let root = tempfile::tempdir().expect("tempdir");
        let up = root.path().join("up");
        let go_mod = "module example.com/m\n";
        let zip = publish_upstream(&up, "example.com/m", "v1.0.0", go_mod);
        let app = app_with(root.path(), &[], None).await;
        let base = "/go/go/example.com/m/@v/v1.0.0";
        let (s, _, body) = call(&app, "GET", &format!("{base}.mod"), vec![]).await;
        assert_eq!((s, body.as_slice()), (StatusCode::OK, go_mod.as_bytes()));
        let hex = intact_core::Digest::of(go_mod.as_bytes()).to_hex();
        let blob = root.path().join("data/blobs/sha256").join(&hex[..2]).join(&hex);
        std::fs::write(&blob, "module example.com/M\n").expect("rot");
        let (s, _, body) = call(&app, "GET", &format!("{base}.zip"), vec![]).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert!(body == zip, "the zip");
        let (s, _, body) = call(&app, "GET", &format!("{base}.mod"), vec![]).await;
        assert_eq!(
            (s, String::from_utf8_lossy(&body).into_owned()),
            (StatusCode::OK, go_mod.to_owned()),
            "the go.mod served after the zip was fetched"
        );
    }

    #[tokio::test]
    async fn a_groups_not_found_gives_every_members_reason() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("up")).expect("mkdir");
        let app = app(root.path()).await;
        for uri in [
            "/go/go/example.com/private/x/@v/v1.0.0.info",
            "/go/go/example.com/private/x/@v/v1.0.0.zip",
            "/go/go/example.com/private/x/@v/list",
            "/go/go/example.com/private/x/@latest",
        ] {
            let (s, _, body) = call(&app, "GET", uri, vec![]).await;
            let body = String::from_utf8_lossy(&body);
            assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {body}");
            assert!(
                body.contains("go-private: ") && body.contains("go-file: ") && body.contains("exclude"),
                "{uri}: each member says why: {body}"
            );
        }
        // A single repo keeps its own message.
        let (_, _, body) = call(&app, "GET", "/go/go-file/example.com/private/x/@v/list", vec![]).await;
        assert!(!String::from_utf8_lossy(&body).contains("go-private"));
    }

    #[tokio::test]
    async fn queries_reach_the_upstream_escaped_and_bad_ones_never_do() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("up")).expect("mkdir");
        let (base, seen) = recording_upstream(Vec::new()).await;
        let app = app_with(root.path(), &[], Some(&base)).await;
        // `#` and `%` are allowed in a Go version string; they travel as data.
        for (uri, upstream_path) in [
            (
                "/go/gohttp/example.com/m/@v/list%23.info",
                "/example.com/m/@v/list%23.info",
            ),
            (
                "/go/gohttp/example.com/m/@v/%252e%252e%252fetc%252fpasswd.info",
                "/example.com/m/@v/%252e%252e%252fetc%252fpasswd.info",
            ),
            (
                "/go/gohttp/example.com/m/@v/feature%20x.info",
                "/example.com/m/@v/feature%20x.info",
            ),
        ] {
            let (s, _, body) = call(&app, "GET", uri, vec![]).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {}", String::from_utf8_lossy(&body));
            let seen = seen.lock().expect("lock").clone();
            assert_eq!(seen.last().map(String::as_str), Some(upstream_path), "{uri}: {seen:?}");
        }
        // Not a version Go would ever send: answered here.
        let before = seen.lock().expect("lock").len();
        for uri in [
            "/go/gohttp/example.com/m/@v/a%3Fb.info",
            "/go/gohttp/example.com/m/@v/..%2f..%2fx.info",
            "/go/gohttp/example.com/m/@v/Xy.info",
            "/go/gohttp/example.com/m/@v/%C3%A9.info",
            "/go/gohttp/example.com/m/@v/v1.0.0..info",
        ] {
            let (s, _, body) = call(&app, "GET", uri, vec![]).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {}", String::from_utf8_lossy(&body));
        }
        assert_eq!(
            seen.lock().expect("lock").len(),
            before,
            "nothing bad was asked upstream"
        );
    }

    #[tokio::test]
    async fn a_trickling_upstream_runs_into_the_fetch_deadline() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("up")).expect("mkdir");
        let (base, _) = recording_upstream(Vec::new()).await;
        let app = app_with(root.path(), &[], Some(&base)).await;
        for uri in [
            "/go/go-http/example.com/slow/@v/v1.0.0.zip",
            "/go/go-http/example.com/slow/@v/v1.0.0.mod",
            "/go/go-http/example.com/slow/@v/list",
            "/go/go-http/example.com/slow/@latest",
            "/go/go-http/example.com/slow/@v/main.info",
        ] {
            let (s, _, body) = call(&app, "GET", uri, vec![]).await;
            let body = String::from_utf8_lossy(&body);
            assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{uri}: {body}");
            assert!(
                body.contains("deadline of 1s") && body.contains("fetch_deadline_seconds"),
                "{uri}: {body}"
            );
        }
    }

    #[tokio::test]
    async fn unsupported_zip_compression_is_bad_input_or_bad_upstream_content() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("up")).expect("mkdir");
        let packed = with_compression_method(stored_module_zip("example.com/packed", "v1.0.0"), 12);
        let (base, _) = recording_upstream(packed.clone()).await;
        let app = app_with(root.path(), &[], Some(&base)).await;
        let (s, ct, body) = call(
            &app,
            "POST",
            "/go/go-private/publish?module=example.com/packed&version=v1.0.0",
            packed,
        )
        .await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(
            (s, ct.as_str()),
            (StatusCode::BAD_REQUEST, "application/json"),
            "{body}"
        );
        assert!(body.contains("compression method"), "{body}");
        let (s, _, body) = call(&app, "GET", "/go/go-http/example.com/packed/@v/v1.0.0.zip", vec![]).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
        assert!(body.contains("compression method"), "{body}");
        let (s, _, _) = call(
            &app,
            "GET",
            "/api/v1/repos/go-http/example.com/packed/@v/v1.0.0",
            vec![],
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "not cached");
    }

    mod rules;

    async fn call(app: &Router, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, String, Vec<u8>) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            // What every HTTP/1.1 client sends; the router refuses requests without it.
            .header(header::HOST, "localhost")
            .body(Body::from(body))
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes().to_vec();
        (status, ct, bytes)
    }

    #[tokio::test]
    async fn routes_map_outcomes_to_status_codes() {
        let root = tempfile::tempdir().expect("tempdir");
        let up = root.path().join("up");
        let zip = publish_upstream(&up, "example.com/m", "v1.0.0", "module example.com/m\n");
        publish_upstream(&up, "example.com/bad", "v1.0.0", "module example.com/other\n");
        let app = app(root.path()).await;

        let (s, ct, body) = call(&app, "GET", "/go/go/example.com/m/@v/v1.0.0.mod", vec![]).await;
        assert_eq!(
            (s, ct.as_str(), body.as_slice()),
            (
                StatusCode::OK,
                "text/plain; charset=utf-8",
                &b"module example.com/m\n"[..]
            )
        );
        let (s, ct, body) = call(&app, "GET", "/go/go/example.com/m/@v/v1.0.0.zip", vec![]).await;
        assert_eq!((s, ct.as_str()), (StatusCode::OK, "application/zip"));
        assert_eq!(body, zip);
        let (s, _, body) = call(&app, "GET", "/go/go/example.com/m/@v/list", vec![]).await;
        assert_eq!((s, body.as_slice()), (StatusCode::OK, &b"v1.0.0\n"[..]));
        let (s, ct, _) = call(&app, "GET", "/go/go/example.com/m/@latest", vec![]).await;
        assert_eq!((s, ct.as_str()), (StatusCode::OK, "application/json"));

        // "Not here" is 404 text/plain, whatever the reason.
        for uri in [
            "/go/nope/example.com/m/@v/list",
            "/go/files/example.com/m/@v/list",
            "/go/go/example.com/missing/@v/v1.0.0.info",
            "/go/go/example.com/private/x/@v/v1.0.0.info",
            "/go/go/example.com/m/@v/v1.0.zip",
            "/go/go/example.com/m/@v/v1.0.0.tgz",
            "/go/go/Example.com/m/@v/list",
        ] {
            let (s, ct, body) = call(&app, "GET", uri, vec![]).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {}", String::from_utf8_lossy(&body));
            assert_eq!(ct, "text/plain; charset=utf-8", "{uri}");
        }
        // Invalid upstream content is a 502 and is not stored.
        let (s, _, body) = call(&app, "GET", "/go/go/example.com/bad/@v/v1.0.0.info", vec![]).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("example.com/other"));
        let (s, _, body) = call(
            &app,
            "GET",
            "/api/v1/repos/go-file/names?prefix=@gomod/example.com/bad",
            vec![],
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            !String::from_utf8_lossy(&body).contains("bad"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let (s, _, _) = call(&app, "PUT", "/go/go/example.com/m/@v/v1.0.0.zip", vec![]).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);

        // Publishing: hosted Go repos only; 201, then 200 for the same bytes, 409 for others.
        let publish = "/go/go-private/publish?module=example.com/m&version=v1.0.0";
        let (s, ct, _) = call(
            &app,
            "POST",
            "/go/go-file/publish?module=example.com/m&version=v1.0.0",
            zip.clone(),
        )
        .await;
        assert_eq!((s, ct.as_str()), (StatusCode::BAD_REQUEST, "application/json"));
        let (s, _, body) = call(&app, "POST", publish, zip.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let h1 = intact_go::dirhash::hash_zip(std::io::Cursor::new(&zip)).expect("h1");
        assert_eq!(v["h1"], h1.as_str());
        assert_eq!(call(&app, "POST", publish, zip.clone()).await.0, StatusCode::OK);
        let other = module_zip(
            &root.path().join("src2"),
            "example.com/m",
            "v1.0.0",
            "package m\n\nconst Changed = 1\n",
        );
        let (s, _, body) = call(&app, "POST", publish, other).await;
        assert_eq!(s, StatusCode::CONFLICT, "{}", String::from_utf8_lossy(&body));
        let (s, _, _) = call(&app, "POST", publish, b"not a zip".to_vec()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _, body) = call(
            &app,
            "POST",
            "/go/go-private/publish?module=example.com/m&version=v1.0.1",
            vec![],
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
    }
}
