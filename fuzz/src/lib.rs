//! Shared pieces of the fuzz targets: an in-process intact server (the real router over a
//! store in a temp dir, no sockets) that the HTTP targets feed requests to, and the checks
//! every HTTP answer must pass whatever the request was.
//!
//! The server and its tokio runtime are built once per fuzzing process; each input is one or
//! a few requests through `tower::ServiceExt::oneshot`, so a run does thousands of requests a
//! second instead of starting a server per input.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use intact_server::AppState;
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// A module version the Go targets find in the file upstream of `go-mirror`.
pub const MIRROR_MODULE: &str = "example.com/fuzz/mirror";
/// A module version the Go targets find published in `go-private`.
pub const HOSTED_MODULE: &str = "example.com/fuzz/hosted";
pub const MODULE_VERSION: &str = "v1.0.0";

/// The server: runtime, router and state over a store in its own temp dir.
pub struct Server {
    runtime: Runtime,
    router: Router,
    pub state: AppState,
    pub dir: PathBuf,
}

/// One answer, body read whole (fuzz bodies are small).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Where a target keeps its server's files: tmpfs when there is one, so the store's fsyncs
/// cost nothing and the disk is not worn by millions of commits.
fn scratch_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("INTACT_FUZZ_TMP") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// Removes the directories of earlier runs of `target` whose process is gone (a libFuzzer
/// process exits without running destructors, so it cannot clean up after itself).
fn sweep_stale(root: &Path, target: &str) {
    let prefix = format!("intact-fuzz-{target}-");
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The configuration every HTTP target runs: one repo of each kind, with local upstreams so
/// nothing leaves the machine.
fn config_text(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"
listen = "127.0.0.1:0"
data_dir = "{d}/data"

[store]
gc_interval_seconds = 0

# A fuzzer sends thousands of requests a second from nowhere: a rate limit would answer
# most of them 429 before they reached the code under test.
[limits]
rate_per_address = {{ per_second = 0, burst = 0 }}
rate_per_token = {{ per_second = 0, burst = 0 }}

[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "all"
kind = "group"
members = ["files", "builds"]

[[repo]]
name = "builds"
kind = "proxy"
upstream = "file://{d}/upstream"
max_size = 1000000
failure_cache_seconds = 0

[repo.artifacts]
bins = {{ files = ["*.bin"] }}
pack = {{ files = ["pack.tar"], extract = true }}
notes = {{ files = ["docs/notes.txt"] }}

[[repo]]
name = "go-private"
kind = "hosted"
format = "go"

[[repo]]
name = "go-mirror"
kind = "proxy"
format = "go"
upstream = "file://{d}/goproxy"
checksum_db = "off"
exclude = ["example.com/private/*"]
failure_cache_seconds = 0

[[repo]]
name = "go"
kind = "group"
format = "go"
members = ["go-private", "go-mirror"]
"#
    )
}

/// A tar holding two small files, for the `pack` artifact.
fn tar_bytes() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [("pack/a.txt", &b"alpha\n"[..]), ("pack/b/c.txt", b"gamma\n")] {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, data).expect("tar entry");
    }
    tar.into_inner().expect("tar")
}

/// A module zip for `module@version` with a go.mod and one source file.
pub fn module_zip(module: &str, version: &str) -> Vec<u8> {
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::write(src.path().join("go.mod"), format!("module {module}\n\ngo 1.19\n")).expect("write go.mod");
    std::fs::write(src.path().join("a.go"), "package a\n\nconst A = 1\n").expect("write a.go");
    let mut out = std::io::Cursor::new(Vec::new());
    intact_go::zip::create_from_dir(src.path(), module, version, &mut out).expect("module zip");
    out.into_inner()
}

fn write_upstreams(dir: &Path) {
    let builds = dir.join("upstream");
    for build in ["b1", "team/b2"] {
        let b = builds.join(build);
        std::fs::create_dir_all(b.join("docs")).expect("mkdir upstream");
        std::fs::write(b.join("x.bin"), b"x-bytes").expect("write");
        std::fs::write(b.join("y.bin"), b"y-bytes").expect("write");
        std::fs::write(b.join("raw.txt"), b"raw file\n").expect("write");
        std::fs::write(b.join("docs/notes.txt"), b"notes\n").expect("write");
        std::fs::write(b.join("pack.tar"), tar_bytes()).expect("write");
    }
    let v = dir.join("goproxy").join(MIRROR_MODULE).join("@v");
    std::fs::create_dir_all(&v).expect("mkdir goproxy");
    std::fs::write(v.join("list"), format!("{MODULE_VERSION}\nv1.1.0\nnot-a-version\n")).expect("write");
    std::fs::write(
        v.join(format!("{MODULE_VERSION}.info")),
        format!(r#"{{"Version":"{MODULE_VERSION}","Time":"2024-01-02T03:04:05Z"}}"#),
    )
    .expect("write");
    std::fs::write(
        v.join(format!("{MODULE_VERSION}.mod")),
        format!("module {MIRROR_MODULE}\n"),
    )
    .expect("write");
    std::fs::write(
        v.join(format!("{MODULE_VERSION}.zip")),
        module_zip(MIRROR_MODULE, MODULE_VERSION),
    )
    .expect("write");
    // v1.1.0 is listed, but the upstream has none of its files: "not found".
}

impl Server {
    /// Builds the server for fuzz target `target`: fresh temp dir, upstream trees, store,
    /// router, and one Go module published into `go-private`.
    pub fn start(target: &str) -> Server {
        let root = scratch_root();
        sweep_stale(&root, target);
        let dir = root.join(format!("intact-fuzz-{target}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create fuzz dir");
        write_upstreams(&dir);
        let config = intact_server::Config::from_toml(&config_text(&dir)).expect("fuzz config parses");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let state = runtime
            .block_on(intact_server::open(config))
            .expect("open the fuzz server's store");
        let router = intact_server::api::router(state.clone());
        let server = Server {
            runtime,
            router,
            state,
            dir,
        };
        let answer = server.send(
            Method::POST,
            &format!("/go/go-private/publish?module={HOSTED_MODULE}&version={MODULE_VERSION}"),
            &[],
            module_zip(HOSTED_MODULE, MODULE_VERSION),
        );
        assert!(
            answer.status.is_success(),
            "publishing the seed module: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        server
    }

    /// Sends one request; `None` when `uri` is not even a valid request target (hyper would
    /// have refused it before intact saw it).
    pub fn try_send(&self, method: Method, uri: &str, headers: &[(&str, &[u8])], body: Vec<u8>) -> Option<Answer> {
        let mut req = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            let value = http::HeaderValue::from_bytes(value).ok()?;
            req = req.header(*name, value);
        }
        let req = req.body(Body::from(body)).ok()?;
        Some(self.runtime.block_on(async {
            // A request that takes this long is a hang: the target's inputs never ask to wait.
            let resp = tokio::time::timeout(Duration::from_secs(60), self.router.clone().oneshot(req))
                .await
                .expect("request hung for 60 s")
                .expect("the router is infallible");
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await.expect("read response body").to_bytes();
            Answer { status, headers, body }
        }))
    }

    /// Like [`Server::try_send`] for requests the target builds itself (always valid).
    pub fn send(&self, method: Method, uri: &str, headers: &[(&str, &[u8])], body: Vec<u8>) -> Answer {
        self.try_send(method, uri, headers, body)
            .unwrap_or_else(|| panic!("invalid request built by the target: {uri}"))
    }

    /// Ends every transaction still open and returns their ids. The HTTP targets call this
    /// after each input: a publish that failed must have rolled its transaction back, and
    /// transactions opened on purpose must not lock a later input's version.
    pub fn close_open_transactions(&self) -> Vec<String> {
        let store = self.state.store.clone();
        let repos: Vec<_> = self.state.config.repos.iter().map(|r| r.name.clone()).collect();
        self.runtime.block_on(async move {
            let mut closed = Vec::new();
            for repo in &repos {
                let open = store.catalog().open_txns(repo, 10_000).await.expect("list open transactions");
                for id in open {
                    store.abort(&id).await.expect("roll back an open transaction");
                    closed.push(id.as_str().to_owned());
                }
            }
            closed
        })
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    pub fn store(&self) -> &Arc<intact_store::Store> {
        &self.state.store
    }
}

/// The promises every artifact-API answer keeps, whatever was asked: bad input is never a
/// 5xx, and every error is the JSON shape `{"error", "message"}`.
pub fn check_api_answer(what: &str, a: &Answer) {
    assert!(
        !a.status.is_server_error(),
        "{what}: {} {}",
        a.status,
        String::from_utf8_lossy(&a.body)
    );
    if a.status.is_client_error() {
        let v = a.json().unwrap_or_else(|| {
            panic!(
                "{what}: {} without a JSON body: {:?}",
                a.status,
                String::from_utf8_lossy(&a.body)
            )
        });
        assert!(v["error"].is_string(), "{what}: error code missing: {v}");
        assert!(v["message"].is_string(), "{what}: message missing: {v}");
    }
}

/// Percent-encodes every byte that may not appear raw in a URI path or query, so an
/// arbitrary string becomes a request target that reaches intact's own parsing.
pub fn encode_uri_part(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
