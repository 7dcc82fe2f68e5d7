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
pub mod error;
mod hosted;
pub mod layout;
pub mod proxy;
pub mod request;
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

use self::error::ProxyError;
use self::proxy::{ProxyRepo, ProxySettings};
use self::request::{FileKind, GoRequest};
use crate::config::{Config, RepoConfig, RepoFormat, RepoKind};
use crate::state::AppState;

/// Defaults of the Go-related repo settings.
pub const DEFAULT_FETCH_TIMEOUT_SECONDS: u64 = 300;
pub const DEFAULT_FAILURE_CACHE_SECONDS: u64 = 30;
pub const DEFAULT_LIST_CACHE_SECONDS: u64 = 60;

/// The Go front-end's state: each proxy repo's upstream, in-flight fetches and caches.
#[derive(Debug)]
pub struct GoState {
    proxies: HashMap<RepoName, Arc<ProxyRepo>>,
    /// Temp files (downloads, uploads) live next to the blobs, so a crash's leftovers are
    /// swept by the store's start-up recovery.
    tmp_dir: PathBuf,
}

impl GoState {
    /// Checks every Go repo's settings (a bad upstream fails start-up, naming the repo) and
    /// builds the proxies' clients.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let tmp_dir = config.data_dir.join("tmp");
        let mut proxies = HashMap::new();
        for repo in config.repos.iter().filter(|r| r.format == RepoFormat::Go) {
            let n = &repo.name;
            if repo.kind != RepoKind::Proxy {
                if !repo.exclude.is_empty() {
                    bail!("repo {n}: exclude applies to proxy repos only");
                }
                continue;
            }
            let upstream = repo
                .upstream
                .as_deref()
                .ok_or_else(|| anyhow!("repo {n}: a proxy repo needs an upstream"))?;
            let entries =
                upstream::parse_list(upstream).map_err(|e| anyhow!("repo {n}: upstream {upstream:?}: {e}"))?;
            for glob in &repo.exclude {
                if glob.trim().is_empty() || glob.contains(',') {
                    bail!(
                        "repo {n}: exclude pattern {glob:?} must be one non-empty glob (list several as separate strings)"
                    );
                }
                if intact_go::pattern::path_match_checked(glob, glob).is_none() {
                    bail!("repo {n}: exclude pattern {glob:?} is not a valid glob");
                }
            }
            let secs = |v: Option<u64>, d: u64| Duration::from_secs(v.unwrap_or(d));
            let fetch_timeout = secs(repo.fetch_timeout_seconds, DEFAULT_FETCH_TIMEOUT_SECONDS);
            if fetch_timeout.is_zero() {
                bail!("repo {n}: fetch_timeout_seconds must be at least 1");
            }
            let settings = ProxySettings {
                name: n.clone(),
                upstream: entries,
                exclude: repo.exclude.clone(),
                fetch_timeout,
                failure_ttl: secs(repo.failure_cache_seconds, DEFAULT_FAILURE_CACHE_SECONDS),
                list_ttl: secs(repo.list_cache_seconds, DEFAULT_LIST_CACHE_SECONDS),
                tmp_dir: tmp_dir.clone(),
            };
            proxies.insert(
                n.clone(),
                Arc::new(ProxyRepo::new(settings).map_err(|e| anyhow!("repo {n}: {e}"))?),
            );
        }
        Ok(Self { proxies, tmp_dir })
    }

    pub fn proxy(&self, repo: &RepoName) -> Option<&Arc<ProxyRepo>> {
        self.proxies.get(repo)
    }

    pub fn tmp_dir(&self) -> &FsPath {
        &self.tmp_dir
    }
}

/// Routes under `/go`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/go/{repo}/publish",
            post(hosted::publish)
                .layer(DefaultBodyLimit::disable())
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
    method: Method,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    match serve(&state, &method, &headers, path).await {
        Ok(resp) => resp,
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
    match repo.kind {
        RepoKind::Group => repo.members.iter().filter_map(|m| state.repo(m.as_str())).collect(),
        _ => vec![repo],
    }
}

async fn serve(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ProxyError> {
    let Path((repo, rest)) = path.map_err(|e| ProxyError::NotFound(format!("not found: {}", e.body_text())))?;
    let repo = go_repo(state, &repo)?;
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
        let mut failure = None;
        for member in &candidates {
            let Some(p) = state.go.proxy(&member.name) else {
                continue;
            };
            match p.query_info(module, version).await {
                Ok(info) => return Ok(dynamic(info, FileKind::Info.content_type())),
                Err(e) => failure = Some(ProxyError::worst(failure, e)),
            }
        }
        return Err(failure.unwrap_or(not_canonical));
    }
    let v = layout::version(version)?;
    for member in &candidates {
        if let Some(found) = layout::find(&state.store, &member.name, module, &v, kind).await? {
            return Ok(send(state, method, headers, &found.file, kind, found.committed_at()).await);
        }
    }
    let mut failure = None;
    for member in &candidates {
        let Some(p) = state.go.proxy(&member.name) else {
            continue;
        };
        match p.fetch(&state.store, module, &v, kind).await {
            Ok(m) => match m.file(layout::file_name(kind)) {
                Some(file) => return Ok(send(state, method, headers, file, kind, m.created_at).await),
                None => {
                    failure = Some(ProxyError::Internal(format!(
                        "stored {module}@{version} lacks its .{}",
                        kind.extension()
                    )))
                }
            },
            Err(e) => failure = Some(ProxyError::worst(failure, e)),
        }
    }
    Err(failure
        .unwrap_or_else(|| ProxyError::NotFound(format!("not found: {module}@{version} is not in repo {}", repo.name))))
}

async fn send(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    file: &intact_core::FileEntry,
    kind: FileKind,
    committed_at: intact_core::Timestamp,
) -> Response {
    match crate::serve_file::send_file(&state.store, method, headers, file, kind.content_type(), committed_at).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

/// The merged `list` of `repo` (every member's, for a group). Not found only when no member
/// knows the module; a member's outage is the answer only when no other member has versions.
async fn list(state: &AppState, repo: &RepoConfig, module: &str) -> Result<Vec<String>, ProxyError> {
    layout::module_name(module)?;
    let mut lists = Vec::new();
    let mut failure = None;
    for member in members(state, repo) {
        match state.go.proxy(&member.name) {
            Some(p) => match p.list(&state.store, module).await {
                Ok(l) => lists.push(l),
                Err(e) => failure = Some(ProxyError::worst(failure, e)),
            },
            None => {
                let stored = layout::stored_versions(&state.store, &member.name, module).await?;
                if !stored.is_empty() {
                    lists.push(stored);
                }
            }
        }
    }
    if lists.is_empty() {
        return Err(failure.unwrap_or_else(|| {
            ProxyError::NotFound(format!("not found: {module}: no versions in repo {}", repo.name))
        }));
    }
    Ok(versions::merge(lists.iter().map(Vec::as_slice)))
}

/// `@latest` of `repo`: for a group, the latest of its members' answers.
async fn latest(state: &AppState, repo: &RepoConfig, module: &str) -> Result<(Vec<u8>, String), ProxyError> {
    layout::module_name(module)?;
    let mut answers = Vec::new();
    let mut failure = None;
    for member in members(state, repo) {
        let answer = match state.go.proxy(&member.name) {
            Some(p) => p.latest(&state.store, module).await,
            None => proxy::stored_latest(&state.store, &member.name, module)
                .await
                .and_then(|found| {
                    found.ok_or_else(|| {
                        ProxyError::NotFound(format!("not found: {module}: no versions in repo {}", member.name))
                    })
                }),
        };
        match answer {
            Ok(a) => answers.push(a),
            Err(e) => failure = Some(ProxyError::worst(failure, e)),
        }
    }
    let Some(best) = semver::latest(answers.iter().map(|(_, v)| v.as_str())).map(str::to_owned) else {
        return Err(failure.unwrap_or_else(|| {
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
        let text = format!(
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
exclude = ["example.com/private/*"]

[[repo]]
name = "go"
kind = "group"
format = "go"
members = ["go-private", "go-file"]
"#,
            root.join("up").display()
        );
        let mut config = Config::from_toml(&text).expect("config");
        config.data_dir = root.join("data");
        let store = intact_store::Store::open_local(&config.data_dir, intact_store::StoreConfig::default())
            .await
            .expect("store");
        let state = AppState::new(Arc::new(config), store).expect("state");
        crate::api::router(state)
    }

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
