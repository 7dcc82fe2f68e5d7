//! Staging, end to end: the real `intact` binary staging build artifacts from an upstream on
//! loopback (an HTTP directory tree with autoindex pages, request counters, a gate that holds
//! a file's download mid-stream, and a switch that makes a file fail), from a `file://`
//! directory, and from a real S3-compatible server (moto) when it is installed. The archives
//! are real ones built here: tar, tar.gz, tar.bz2, zip, and hostile ones.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::harness::{Server, blob_files, client, pattern, runtime};

// ---------------------------------------------------------------------------------------------
// The test upstream: a directory served over HTTP like nginx's autoindex.

#[derive(Default)]
struct UpState {
    root: PathBuf,
    /// Requests per path (any method), and GETs per path.
    all: Mutex<HashMap<String, u64>>,
    gets: Mutex<HashMap<String, u64>>,
    /// Paths whose GET sends its first 64 KiB, then waits for the gate to open.
    gates: Mutex<HashMap<String, tokio::sync::watch::Receiver<bool>>>,
    /// Paths answered with 500.
    failing: Mutex<HashSet<String>>,
}

pub(crate) struct HttpUpstream {
    addr: SocketAddr,
    state: Arc<UpState>,
    gate_tx: Mutex<HashMap<String, tokio::sync::watch::Sender<bool>>>,
}

impl HttpUpstream {
    /// Serves `root` under `/images` on a loopback port, on the current runtime.
    pub(crate) async fn start(root: &Path) -> HttpUpstream {
        let state = Arc::new(UpState {
            root: root.to_owned(),
            ..UpState::default()
        });
        let app = axum::Router::new()
            .route("/images/{*path}", axum::routing::get(serve))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HttpUpstream {
            addr,
            state,
            gate_tx: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/images", self.addr)
    }

    pub(crate) fn gets(&self, path: &str) -> u64 {
        self.state.gets.lock().expect("lock").get(path).copied().unwrap_or(0)
    }

    fn requests(&self, path: &str) -> u64 {
        self.state.all.lock().expect("lock").get(path).copied().unwrap_or(0)
    }

    /// Holds `path`'s download after its first chunk until `open_gate`.
    pub(crate) fn close_gate(&self, path: &str) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        self.state.gates.lock().expect("lock").insert(path.to_owned(), rx);
        self.gate_tx.lock().expect("lock").insert(path.to_owned(), tx);
    }

    pub(crate) fn open_gate(&self, path: &str) {
        if let Some(tx) = self.gate_tx.lock().expect("lock").get(path) {
            let _ = tx.send(true);
        }
    }

    fn set_failing(&self, path: &str, failing: bool) {
        let mut f = self.state.failing.lock().expect("lock");
        if failing {
            f.insert(path.to_owned());
        } else {
            f.remove(path);
        }
    }
}

fn encode(seg: &str) -> String {
    seg.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn serve(State(st): State<Arc<UpState>>, method: Method, UrlPath(path): UrlPath<String>) -> Response {
    *st.all.lock().expect("lock").entry(path.clone()).or_default() += 1;
    if method == Method::GET {
        *st.gets.lock().expect("lock").entry(path.clone()).or_default() += 1;
    }
    if st.failing.lock().expect("lock").contains(&path) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "injected failure").into_response();
    }
    if path.split('/').any(|s| s == ".." || s == ".") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let local = path
        .trim_end_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .fold(st.root.clone(), |p, s| p.join(s));
    let Ok(meta) = std::fs::metadata(&local) else {
        return (StatusCode::NOT_FOUND, "404 Not Found").into_response();
    };
    if meta.is_dir() {
        // nginx autoindex style.
        let mut html = format!(
            "<html><head><title>Index of /{path}</title></head><body><h1>Index of /{path}</h1><hr><pre><a href=\"../\">../</a>\n"
        );
        let mut entries: Vec<_> = std::fs::read_dir(&local).expect("read dir").flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let n = e.file_name().to_string_lossy().into_owned();
            let slash = if e.path().is_dir() { "/" } else { "" };
            html.push_str(&format!(
                "<a href=\"{}{slash}\">{n}{slash}</a>   01-Jan-2026 00:00   -\n",
                encode(&n)
            ));
        }
        html.push_str("</pre><hr></body></html>\n");
        return ([(header::CONTENT_TYPE, "text/html")], html).into_response();
    }
    let bytes = std::fs::read(&local).expect("read file");
    let len = bytes.len();
    let gate = st.gates.lock().expect("lock").get(&path).cloned();
    let body = match gate {
        None => Body::from(bytes),
        Some(rx) => {
            let first = bytes[..len.min(64 * 1024)].to_vec();
            let rest = bytes[len.min(64 * 1024)..].to_vec();
            let stream = futures::stream::iter(vec![0u8, 1]).then(move |i| {
                let (first, rest) = (first.clone(), rest.clone());
                let mut rx = rx.clone();
                async move {
                    if i == 0 {
                        Ok::<_, std::io::Error>(bytes::Bytes::from(first))
                    } else {
                        while !*rx.borrow_and_update() {
                            if rx.changed().await.is_err() {
                                break;
                            }
                        }
                        Ok(bytes::Bytes::from(rest))
                    }
                }
            });
            Body::from_stream(stream)
        }
    };
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_LENGTH,
        HeaderValue::from_str(&len.to_string()).expect("len"),
    );
    resp
}

use futures::StreamExt as _;

// ---------------------------------------------------------------------------------------------
// Archives.

fn tar_bytes(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data.as_slice()).expect("tar entry");
    }
    b.into_inner().expect("tar")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn gzip_best(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(data).expect("bzip2");
    e.finish().expect("bzip2")
}

fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).expect("zip entry");
        w.write_all(data).expect("zip data");
    }
    w.finish().expect("zip").into_inner()
}

/// A tar whose symlink points out of the tree.
fn tar_symlink_escape() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_link_name_literal("../../../../etc/passwd").expect("link name");
    b.append_data(&mut h, "passwd-link", std::io::empty())
        .expect("symlink entry");
    let data = b"harmless".to_vec();
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "readme.txt", data.as_slice()).expect("entry");
    b.into_inner().expect("tar")
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
}

// ---------------------------------------------------------------------------------------------
// Helpers over the server's API.

async fn post_stage(http: &reqwest::Client, srv: &Server, repo: &str, body: Value) -> (StatusCode, Value) {
    let resp = http
        .post(srv.url(&format!("/api/v1/repos/{repo}/stage")))
        .json(&body)
        .send()
        .await
        .expect("stage request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get_json(http: &reqwest::Client, url: String) -> (StatusCode, Value) {
    let resp = http.get(url).send().await.expect("get");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn status_of(http: &reqwest::Client, srv: &Server, repo: &str, name: &str, arts: &str, wait: u64) -> Value {
    let (s, v) = get_json(
        http,
        srv.url(&format!(
            "/api/v1/repos/{repo}/stage/status?name={name}&artifacts={arts}&wait_seconds={wait}"
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

fn state_of<'a>(status: &'a Value, art: &str) -> &'a Value {
    status["artifacts"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["artifact"] == art))
        .unwrap_or_else(|| panic!("{art} missing from {status}"))
}

/// Every blob digest that committed versions of `repo` reference (via the non-staging
/// `@versions` listing, so nothing gets staged by looking).
async fn referenced_blobs(http: &reqwest::Client, srv: &Server, repo: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let (_, names) = get_json(http, srv.url(&format!("/api/v1/repos/{repo}/names?prefix="))).await;
    for n in names["names"].as_array().into_iter().flatten() {
        let n = n.as_str().expect("name");
        let (_, versions) = get_json(http, srv.url(&format!("/api/v1/repos/{repo}/{n}/@versions"))).await;
        for v in versions["versions"].as_array().into_iter().flatten() {
            let v = v["version"].as_str().expect("version");
            let (s, m) = get_json(http, srv.url(&format!("/api/v1/repos/{repo}/{n}/@v/{v}"))).await;
            assert_eq!(s, StatusCode::OK, "{m}");
            for f in m["files"].as_array().into_iter().flatten() {
                out.insert(f["sha256"].as_str().expect("sha").to_owned());
            }
        }
    }
    out
}

/// Runs gc with no grace and checks the blob files on disk are exactly those referenced.
async fn assert_no_leaked_blobs(http: &reqwest::Client, srv: &Server, repos: &[&str]) {
    let resp = http
        .post(srv.url("/api/v1/admin/gc"))
        .json(&json!({"grace_seconds": 0}))
        .send()
        .await
        .expect("gc");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut referenced = BTreeSet::new();
    for r in repos {
        referenced.extend(referenced_blobs(http, srv, r).await);
    }
    assert_eq!(
        blob_files(&srv.data_dir),
        referenced,
        "blob files on disk vs. committed manifests"
    );
}

/// Files left in the staging temp area (must be none once nothing is staging).
fn staging_leftovers(data_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data_dir.join("staging").join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

async fn read_file(
    http: &reqwest::Client,
    srv: &Server,
    repo: &str,
    name: &str,
    version: &str,
    path: &str,
) -> (StatusCode, Vec<u8>) {
    let resp = http
        .get(srv.url(&format!("/api/v1/repos/{repo}/{name}/@v/{version}/{path}")))
        .send()
        .await
        .expect("read");
    let s = resp.status();
    (s, resp.bytes().await.expect("body").to_vec())
}

pub(crate) fn staging_repo(name: &str, upstream: &str, extra: &str, artifacts: &str) -> String {
    format!(
        "[[repo]]\nname = \"{name}\"\nkind = \"proxy\"\nformat = \"generic\"\nupstream = \"{upstream}\"\n{extra}\n[repo.artifacts]\n{artifacts}\n"
    )
}

pub(crate) const BUILD: &str = "x86-alex-release/R19-2003.0.0";

/// The build directory of the HTTP/file upstream tests: a payload pair, archives, raw files.
pub(crate) fn populate_build(root: &Path) -> HashMap<&'static str, Vec<u8>> {
    let mut files = HashMap::new();
    let dir = root.join(BUILD);
    let bin = pattern(1, 300_000);
    let json = br#"{"sha": "x"}"#.to_vec();
    write(&dir, "chromeos_R19_full_dev.bin", &bin);
    write(&dir, "chromeos_R19_full_dev.bin.json", &json);
    let suites = tar_bytes(&[
        ("suites/a.txt", b"suite a\n".to_vec()),
        ("suites/deep/b.bin", pattern(2, 100_000)),
        ("control", b"control file\n".to_vec()),
    ]);
    write(&dir, "test_suites.tar.bz2", &bzip2(&suites));
    write(
        &dir,
        "autotest_packages.tar",
        &tar_bytes(&[("packages/p1.tar", pattern(3, 5_000))]),
    );
    write(
        &dir,
        "extra.zip",
        &zip_bytes(&[("zipped/one.txt", b"one"), ("zipped/two.txt", b"two")]),
    );
    // Slow background artifact: big enough for a first chunk and a rest.
    let slow = tar_bytes(&[("slow/data.bin", pattern(4, 600_000)), ("slow/readme", b"r".to_vec())]);
    write(&dir, "slow.tar.gz", &gzip(&slow));
    write(&dir, "debug.txt", b"debug log\n");
    files.insert("bin", bin);
    files.insert("json", json);
    files
}

pub(crate) const ARTIFACTS: &str = r#"full_payload = { files = ["*_full_dev.bin", "*_full_dev.bin.json"] }
test_suites  = { files = ["test_suites.tar.bz2"], extract = true }
autotest     = { files = ["autotest_packages.tar"], extract = true }
extra        = { files = ["extra.zip", "debug.txt"], extract = true }
slow         = { files = ["slow.tar.gz"], extract = true }
missing      = { files = ["not_there.bin"] }
nomatch      = { files = ["*.nothing"] }
"#;

// ---------------------------------------------------------------------------------------------

#[test]
fn concurrent_requests_share_one_download() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    rt.block_on(async {
        let up = HttpUpstream::start(&tmp.path().join("up")).await;
        let files = populate_build(&tmp.path().join("up"));
        let bin_path = format!("{BUILD}/chromeos_R19_full_dev.bin");
        up.close_gate(&bin_path);
        let config = staging_repo("builds", &up.url(), "failure_cache_seconds = 3600", ARTIFACTS);
        let srv = Server::start(&tmp.path().join("data"), Some(&config), &[]);
        let http = client();

        let mut tasks = Vec::new();
        for _ in 0..50 {
            let http = http.clone();
            let url = srv.url("/api/v1/repos/builds/stage");
            tasks.push(tokio::spawn(async move {
                let resp = http
                    .post(url)
                    .json(&json!({"name": BUILD, "artifacts": ["full_payload"]}))
                    .send()
                    .await
                    .expect("stage");
                let s = resp.status();
                (s, resp.json::<Value>().await.expect("json"))
            }));
        }
        // The download is held mid-stream until the status shows it staging.
        loop {
            let st = status_of(&http, &srv, "builds", BUILD, "full_payload", 0).await;
            if state_of(&st, "full_payload")["state"] == "staging" && up.gets(&bin_path) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // let the other requests pile up
        up.open_gate(&bin_path);
        let mut fingerprints = BTreeSet::new();
        for t in tasks {
            let (s, v) = t.await.expect("join");
            assert_eq!(s, StatusCode::OK, "{v}");
            assert_eq!(v["items"][0]["state"], "staged");
            assert_eq!(v["items"][0]["files"], 2);
            fingerprints.insert(v["items"][0]["fingerprint"].as_str().expect("fp").to_owned());
        }
        assert_eq!(fingerprints.len(), 1, "every waiter got the same version");
        assert_eq!(up.gets(&bin_path), 1, "exactly one upstream download");
        assert_eq!(up.gets(&format!("{BUILD}/chromeos_R19_full_dev.bin.json")), 1);

        // Already staged: answered at once, no new download.
        let (s, v) = post_stage(
            &http,
            &srv,
            "builds",
            json!({"name": BUILD, "artifacts": ["full_payload"]}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(up.gets(&bin_path), 1);
        let (s, body) = read_file(
            &http,
            &srv,
            "builds",
            BUILD,
            "full_payload",
            "chromeos_R19_full_dev.bin",
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body, files["bin"]);
        let (s, body) = read_file(
            &http,
            &srv,
            "builds",
            BUILD,
            "full_payload",
            "chromeos_R19_full_dev.bin.json",
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body, files["json"]);

        // Extracted archives of every kind become the version's files; a raw file is its own version.
        let (s, v) = post_stage(
            &http,
            &srv,
            "builds",
            json!({"name": BUILD, "artifacts": ["test_suites", "autotest", "extra"], "files": ["debug.txt"]}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, body) = read_file(&http, &srv, "builds", BUILD, "test_suites", "suites/deep/b.bin").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body, pattern(2, 100_000));
        let (s, body) = read_file(&http, &srv, "builds", BUILD, "autotest", "packages/p1.tar").await;
        assert_eq!((s, body), (StatusCode::OK, pattern(3, 5_000)));
        let (s, body) = read_file(&http, &srv, "builds", BUILD, "extra", "zipped/two.txt").await;
        assert_eq!((s, body), (StatusCode::OK, b"two".to_vec()));
        let (s, body) = read_file(&http, &srv, "builds", BUILD, "extra", "debug.txt").await;
        assert_eq!((s, body), (StatusCode::OK, b"debug log\n".to_vec()));
        let (s, body) = read_file(&http, &srv, "builds", BUILD, "debug.txt", "debug.txt").await;
        assert_eq!((s, body), (StatusCode::OK, b"debug log\n".to_vec()));

        // Bad requests name what is wrong.
        let (s, v) = post_stage(&http, &srv, "builds", json!({"name": BUILD, "artifacts": ["nope"]})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["message"].as_str().expect("msg").contains("nope"), "{v}");
        let (s, v) = post_stage(
            &http,
            &srv,
            "builds",
            json!({"name": "../etc", "artifacts": ["full_payload"]}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let (s, v) = post_stage(&http, &srv, "builds", json!({"name": BUILD, "artifacts": ["nomatch"]})).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        assert!(v["message"].as_str().expect("msg").contains("*.nothing"), "{v}");
        assert!(staging_leftovers(&srv.data_dir).is_empty());
    });
}

#[test]
fn foreground_answers_while_background_stages() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    rt.block_on(async {
        let up = HttpUpstream::start(&tmp.path().join("up")).await;
        populate_build(&tmp.path().join("up"));
        let slow_path = format!("{BUILD}/slow.tar.gz");
        let slow_size = std::fs::metadata(tmp.path().join("up").join(&slow_path))
            .expect("meta")
            .len();
        up.close_gate(&slow_path);
        let config = staging_repo("builds", &up.url(), "", ARTIFACTS);
        let srv = Server::start(&tmp.path().join("data"), Some(&config), &[]);
        let http = client();

        let (s, v) = post_stage(
            &http,
            &srv,
            "builds",
            json!({"name": BUILD, "artifacts": ["full_payload"], "background": ["slow"]}),
        )
        .await;
        // The answer came while the slow artifact's download is held by the gate.
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["items"][0]["artifact"], "full_payload");
        assert_eq!(v["items"][0]["state"], "staged");
        assert_eq!(v["background"][0]["artifact"], "slow");
        assert_eq!(v["background"][0]["state"], "staging");
        let job_id = v["background"][0]["job"].as_str().expect("job id").to_owned();

        // The job shows progress: bytes of the first chunk, out of the known total.
        let job = loop {
            let (s, job) = get_json(&http, srv.url(&format!("/api/v1/jobs/{job_id}"))).await;
            assert_eq!(s, StatusCode::OK, "{job}");
            assert_eq!(job["state"], "staging", "{job}");
            if job["bytes_done"].as_u64().unwrap_or(0) > 0 {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(job["repo"], "builds");
        assert_eq!(job["name"], BUILD);
        assert_eq!(job["artifact"], "slow");
        assert_eq!(job["bytes_total"], slow_size);
        assert!(job["bytes_done"].as_u64().expect("done") < slow_size);
        let st = status_of(&http, &srv, "builds", BUILD, "full_payload,slow,autotest", 0).await;
        assert_eq!(st["done"], false);
        assert_eq!(state_of(&st, "full_payload")["state"], "staged");
        assert_eq!(state_of(&st, "slow")["state"], "staging");
        assert_eq!(state_of(&st, "slow")["job"], job_id.as_str());
        assert!(state_of(&st, "slow")["bytes_done"].as_u64().expect("bytes") > 0);
        assert_eq!(state_of(&st, "autotest")["state"], "absent");
        // Nothing of the slow artifact is visible yet.
        let (_, versions) = get_json(&http, srv.url(&format!("/api/v1/repos/builds/{BUILD}/@versions"))).await;
        assert_eq!(versions["versions"].as_array().expect("list").len(), 1, "{versions}");

        up.open_gate(&slow_path);
        let st = status_of(&http, &srv, "builds", BUILD, "full_payload,slow", 120).await;
        assert_eq!(st["done"], true, "{st}");
        assert_eq!(state_of(&st, "slow")["state"], "staged");
        assert_eq!(state_of(&st, "slow")["files"], 2);
        let (s, job) = get_json(&http, srv.url(&format!("/api/v1/jobs/{job_id}"))).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(job["state"], "staged", "{job}");
        assert_eq!(job["bytes_done"], slow_size);
        assert!(job["finished_at"].is_string());
        let (s, body) = read_file(&http, &srv, "builds", BUILD, "slow", "slow/data.bin").await;
        assert_eq!((s, body), (StatusCode::OK, pattern(4, 600_000)));
        assert_eq!(up.gets(&slow_path), 1);
        let (s, _) = get_json(&http, srv.url("/api/v1/jobs/nope-1")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    });
}

#[test]
fn reading_an_unstaged_artifact_stages_it_and_the_cli_stages_with_progress() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    rt.block_on(async {
        let up = HttpUpstream::start(&tmp.path().join("up")).await;
        populate_build(&tmp.path().join("up"));
        let config = staging_repo("builds", &up.url(), "", ARTIFACTS);
        let srv = Server::start(&tmp.path().join("data"), Some(&config), &[]);
        let http = client();

        let (s, body) = read_file(&http, &srv, "builds", BUILD, "test_suites", "suites/a.txt").await;
        assert_eq!((s, body), (StatusCode::OK, b"suite a\n".to_vec()));
        assert_eq!(up.gets(&format!("{BUILD}/test_suites.tar.bz2")), 1);
        let (s, body) = read_file(&http, &srv, "builds", BUILD, "test_suites", "control").await;
        assert_eq!((s, body), (StatusCode::OK, b"control file\n".to_vec()));
        assert_eq!(
            up.gets(&format!("{BUILD}/test_suites.tar.bz2")),
            1,
            "staged once, then served"
        );
        // A version that is no configured artifact is simply not found (no upstream request).
        let before = up.requests(&format!("{BUILD}/whatever"));
        let (s, _) = read_file(&http, &srv, "builds", BUILD, "whatever", "x").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(up.requests(&format!("{BUILD}/whatever")), before);
        // A missing build: 404 naming the missing upstream file.
        let (s, v) = get_json(&http, srv.url("/api/v1/repos/builds/no/such/build/@v/missing")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(v["message"].as_str().expect("msg").contains("not_there.bin"), "{v}");

        // The CLI: foreground artifacts, then waits for the background one.
        let out = tokio::task::spawn_blocking({
            let base = srv.base.clone();
            move || {
                Command::new(crate::harness::BIN)
                    .args([
                        "stage",
                        "--server",
                        &base,
                        "builds",
                        BUILD,
                        "full_payload",
                        "--background",
                        "autotest",
                        "--wait",
                    ])
                    .output()
                    .expect("run intact stage")
            }
        })
        .await
        .expect("join");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(
            stdout.contains(&format!("staged builds/{BUILD}@full_payload: 2 files")),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("staged builds/{BUILD}@autotest")), "{stdout}");
        // A failing item makes the CLI fail with the server's reason.
        let out = Command::new(crate::harness::BIN)
            .args(["stage", "--server", &srv.base, "builds", BUILD, "missing"])
            .output()
            .expect("run intact stage");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not_there.bin"));
    });
}

#[test]
fn malicious_archives_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let up = tmp.path().join("up");
    let dir = up.join(BUILD);
    write(
        &dir,
        "slip.zip",
        &zip_bytes(&[("ok.txt", b"fine"), ("../../evil.txt", b"pwned")]),
    );
    write(&dir, "link.tar", &tar_symlink_escape());
    // 64 MiB of zeros: a ratio far past the limit (and nothing beyond it is written).
    let bomb = gzip_best(&tar_bytes(&[("zeros.bin", vec![0u8; 64 << 20])]));
    write(&dir, "bomb.tar.gz", &bomb);
    write(&dir, "good.tar", &tar_bytes(&[("good.txt", b"good".to_vec())]));
    let artifacts = r#"slip = { files = ["slip.zip"], extract = true }
link = { files = ["link.tar"], extract = true }
bomb = { files = ["bomb.tar.gz"], extract = true }
good = { files = ["good.tar"], extract = true }
"#;
    let config = staging_repo("builds", &format!("file://{}", up.display()), "", artifacts);
    let srv = Server::start(&tmp.path().join("data"), Some(&config), &[]);
    let http = client();
    let rt = runtime();
    rt.block_on(async {
        let (s, v) = post_stage(&http, &srv, "builds", json!({"name": BUILD, "artifacts": ["good"]})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for (art, needle) in [("slip", "evil.txt"), ("link", "passwd-link"), ("bomb", "limit")] {
            let (s, v) = post_stage(&http, &srv, "builds", json!({"name": BUILD, "artifacts": [art]})).await;
            assert_eq!(s, StatusCode::BAD_GATEWAY, "{art}: {v}");
            assert_eq!(v["error"], "bad_archive", "{art}: {v}");
            let msg = v["message"].as_str().expect("message");
            assert!(msg.contains(needle), "{art}: {msg}");
            assert_eq!(v["items"][0]["state"], "failed");
            let st = status_of(&http, &srv, "builds", BUILD, art, 0).await;
            assert_eq!(state_of(&st, art)["state"], "failed", "{st}");
            assert_eq!(state_of(&st, art)["error"], "bad_archive");
            assert!(state_of(&st, art)["until"].is_string());
        }
        // Nothing written outside, nothing visible, nothing left behind.
        assert!(!tmp.path().join("evil.txt").exists() && !tmp.path().join("data").join("evil.txt").exists());
        let (_, versions) = get_json(&http, srv.url(&format!("/api/v1/repos/builds/{BUILD}/@versions"))).await;
        let list: Vec<&str> = versions["versions"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|v| v["version"].as_str())
            .collect();
        assert_eq!(list, ["good"]);
        assert!(
            staging_leftovers(&srv.data_dir).is_empty(),
            "{:?}",
            staging_leftovers(&srv.data_dir)
        );
        assert_no_leaked_blobs(&http, &srv, &["builds"]).await;
    });
}

#[test]
fn failures_are_remembered_then_retried() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    rt.block_on(async {
        let up = HttpUpstream::start(&tmp.path().join("up")).await;
        populate_build(&tmp.path().join("up"));
        // "sticky" remembers failures for an hour, "brief" for one second; same upstream.
        let config = format!(
            "{}{}",
            staging_repo("sticky", &up.url(), "failure_cache_seconds = 3600", ARTIFACTS),
            staging_repo("brief", &up.url(), "failure_cache_seconds = 1", ARTIFACTS)
        );
        let srv = Server::start(&tmp.path().join("data"), Some(&config), &[]);
        let http = client();
        let missing = "gone/build-1";
        let missing_path = format!("{missing}/not_there.bin");

        // A storm for a missing file: one upstream request, every waiter gets the 404.
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let http = http.clone();
            let url = srv.url("/api/v1/repos/sticky/stage");
            tasks.push(tokio::spawn(async move {
                let resp = http
                    .post(url)
                    .json(&json!({"name": missing, "artifacts": ["missing"]}))
                    .send()
                    .await
                    .expect("stage");
                (resp.status(), resp.json::<Value>().await.expect("json"))
            }));
        }
        for t in tasks {
            let (s, v) = t.await.expect("join");
            assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
            assert!(v["message"].as_str().expect("msg").contains("not_there.bin"), "{v}");
        }
        assert_eq!(up.requests(&missing_path), 1);
        for _ in 0..5 {
            let (s, v) = post_stage(
                &http,
                &srv,
                "sticky",
                json!({"name": missing, "artifacts": ["missing"]}),
            )
            .await;
            assert_eq!(s, StatusCode::NOT_FOUND);
            let msg = v["message"].as_str().expect("msg");
            assert!(
                msg.contains("not_there.bin") && msg.contains("a remembered answer from") && msg.contains("until"),
                "a remembered failure says so and until when: {msg}"
            );
        }
        assert_eq!(
            up.requests(&missing_path),
            1,
            "remembered: the upstream is not asked again"
        );

        // An upstream error: 502 with the cause. It is not remembered: once the upstream has
        // recovered, the very next request stages the artifact.
        let bin = format!("{BUILD}/chromeos_R19_full_dev.bin");
        up.set_failing(&bin, true);
        let (s, v) = post_stage(
            &http,
            &srv,
            "sticky",
            json!({"name": BUILD, "artifacts": ["full_payload"]}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
        assert_eq!(v["error"], "upstream");
        assert!(v["message"].as_str().expect("msg").contains("500"), "{v}");
        let st = status_of(&http, &srv, "sticky", BUILD, "full_payload", 0).await;
        assert_eq!(state_of(&st, "full_payload")["state"], "failed", "{st}");
        assert_eq!(state_of(&st, "full_payload")["remembered"], false, "{st}");
        up.set_failing(&bin, false);
        let (s, v) = post_stage(
            &http,
            &srv,
            "sticky",
            json!({"name": BUILD, "artifacts": ["full_payload"]}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "a transient failure is not remembered: {v}");

        // With a short memory, the next request after it retries (once) and succeeds.
        let brief_build = "brief/build";
        write(&tmp.path().join("up").join(brief_build), "late.bin", b"");
        std::fs::remove_file(tmp.path().join("up").join(brief_build).join("late.bin")).expect("rm");
        let late = format!("{brief_build}/late.bin");
        let (s, v) = post_stage(
            &http,
            &srv,
            "brief",
            json!({"name": brief_build, "files": ["late.bin"]}),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        let first = up.requests(&late);
        assert_eq!(first, 1);
        write(&tmp.path().join("up").join(brief_build), "late.bin", b"now here");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (s, v) = post_stage(
            &http,
            &srv,
            "brief",
            json!({"name": brief_build, "files": ["late.bin"]}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(up.gets(&late), 1, "one retry after the failure was forgotten");
        let (s, body) = read_file(&http, &srv, "brief", brief_build, "late.bin", "late.bin").await;
        assert_eq!((s, body), (StatusCode::OK, b"now here".to_vec()));
        // Raw files must be valid versions; artifacts must be configured.
        let (s, v) = post_stage(
            &http,
            &srv,
            "brief",
            json!({"name": brief_build, "files": ["sub/x.bin"]}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["field"], "files");
    });
}

#[test]
fn killed_mid_extraction_leaves_no_partial_artifact() {
    let tmp = tempfile::tempdir().expect("tmp");
    let up = tmp.path().join("up");
    let dir = up.join(BUILD);
    // Many small files: extraction, storing and committing each take a while.
    let entries: Vec<(String, Vec<u8>)> = (0..3000)
        .map(|i| {
            (
                format!("tree/d{}/f{i}.bin", i % 37),
                pattern(100 + i as u64, 1500 + (i % 700)),
            )
        })
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = entries.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    write(&dir, "big.tar.gz", &gzip(&tar_bytes(&refs)));
    write(&dir, "small.bin", b"small");
    let artifacts = "big = { files = [\"big.tar.gz\"], extract = true }\nsmall = { files = [\"small.bin\"] }\n";
    let config = staging_repo("builds", &format!("file://{}", up.display()), "", artifacts);
    let data = tmp.path().join("data");
    let http = client();
    let rt = runtime();
    rt.block_on(async {
        let srv = Server::start(&data, Some(&config), &[]);
        let (s, v) = post_stage(&http, &srv, "builds", json!({"name": BUILD, "artifacts": ["small"]})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // Kill once while the archive is being unpacked or stored (no transaction yet), once
        // while its files are being staged into the open transaction (rolled back at
        // start-up). Each time, after the restart nothing of it exists.
        let mut srv = srv;
        for targets in [&["extracting", "storing"][..], &["committing"][..]] {
            let (s, v) = post_stage(&http, &srv, "builds", json!({"name": BUILD, "background": ["big"]})).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let job = v["background"][0]["job"].as_str().expect("job").to_owned();
            let phase = loop {
                let (_, j) = get_json(&http, srv.url(&format!("/api/v1/jobs/{job}"))).await;
                let phase = j["phase"].as_str().unwrap_or("").to_owned();
                assert_ne!(j["state"], "staged", "the kill must land before the commit: {j}");
                if targets.contains(&phase.as_str()) {
                    break phase;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            srv.kill9();
            eprintln!("killed during {phase}");

            srv = Server::start(&data, Some(&config), &[]);
            let st = status_of(&http, &srv, "builds", BUILD, "big,small", 0).await;
            assert_eq!(state_of(&st, "big")["state"], "absent", "{st}");
            assert_eq!(state_of(&st, "small")["state"], "staged");
            let (_, versions) = get_json(&http, srv.url(&format!("/api/v1/repos/builds/{BUILD}/@versions"))).await;
            assert_eq!(versions["versions"].as_array().expect("list").len(), 1, "{versions}");
            assert!(staging_leftovers(&data).is_empty(), "{:?}", staging_leftovers(&data));
            assert!(
                !data.join("staging").join("txns").exists(),
                "no journal outside the catalog"
            );
            assert_no_leaked_blobs(&http, &srv, &["builds"]).await;
        }

        // And it stages fine afterwards.
        let (s, v) = post_stage(&http, &srv, "builds", json!({"name": BUILD, "artifacts": ["big"]})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["items"][0]["files"], 3000);
        let (s, body) = read_file(&http, &srv, "builds", BUILD, "big", "tree/d5/f42.bin").await;
        assert_eq!((s, body), (StatusCode::OK, pattern(142, 1500 + 42)));
        assert_no_leaked_blobs(&http, &srv, &["builds"]).await;
    });
}

#[test]
fn lru_eviction_keeps_whole_versions() {
    let tmp = tempfile::tempdir().expect("tmp");
    let up = tmp.path().join("up");
    let dir = up.join(BUILD);
    // Four artifacts of two 50,000-byte files each (100,000 bytes per version).
    let mut artifacts = String::new();
    for a in ["a1", "a2", "a3", "a4"] {
        write(
            &dir,
            &format!("{a}-x.bin"),
            &pattern(crate::harness::seed_of(a), 50_000),
        );
        write(
            &dir,
            &format!("{a}-y.bin"),
            &pattern(crate::harness::seed_of(a) + 1, 50_000),
        );
        artifacts.push_str(&format!("{a} = {{ files = [\"{a}-*\"] }}\n"));
    }
    let upstream = format!("file://{}", up.display());
    let data = tmp.path().join("data");
    let http = client();
    let rt = runtime();
    rt.block_on(async {
        let config = staging_repo("builds", &upstream, "max_size = 250000", &artifacts);
        let srv = Server::start(&data, Some(&config), &[]);
        for a in ["a1", "a2"] {
            let (s, v) = post_stage(&http, &srv, "builds", json!({"name": BUILD, "artifacts": [a]})).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        // Reading a1 makes a2 the least recently used.
        let (s, _) = read_file(&http, &srv, "builds", BUILD, "a1", "a1-x.bin").await;
        assert_eq!(s, StatusCode::OK);
        let (s, v) = post_stage(&http, &srv, "builds", json!({"name": BUILD, "artifacts": ["a3"]})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let st = status_of(&http, &srv, "builds", BUILD, "a1,a2,a3", 0).await;
        assert_eq!(state_of(&st, "a1")["state"], "staged", "{st}");
        assert_eq!(state_of(&st, "a2")["state"], "absent", "{st}");
        assert_eq!(state_of(&st, "a3")["state"], "staged", "{st}");
        // The survivors are whole; the evicted version's blobs go with gc.
        for a in ["a1", "a3"] {
            for (f, seed) in [("x", 0), ("y", 1)] {
                let (s, body) = read_file(&http, &srv, "builds", BUILD, a, &format!("{a}-{f}.bin")).await;
                assert_eq!(
                    (s, body),
                    (StatusCode::OK, pattern(crate::harness::seed_of(a) + seed, 50_000))
                );
            }
        }
        assert_no_leaked_blobs(&http, &srv, &["builds"]).await;
        // a3 was read last: it is now the most recent.
        drop(srv);

        // `intact gc` honours a smaller cap after a restart: only the most recently read stays.
        let config = staging_repo("builds", &upstream, "max_size = 120000", &artifacts);
        let srv = Server::start(&data, Some(&config), &[]);
        let out = tokio::task::spawn_blocking({
            let base = srv.base.clone();
            move || {
                Command::new(crate::harness::BIN)
                    .args(["gc", "--server", &base, "--grace-seconds", "0", "--json"])
                    .output()
                    .expect("intact gc")
            }
        })
        .await
        .expect("join");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("gc json");
        let evicted: Vec<&str> = report["evicted"]["builds"]
            .as_array()
            .expect("evicted")
            .iter()
            .filter_map(|v| v["version"].as_str())
            .collect();
        assert_eq!(evicted, ["a1"], "{report}");
        let st = status_of(&http, &srv, "builds", BUILD, "a1,a3", 0).await;
        assert_eq!(state_of(&st, "a1")["state"], "absent");
        assert_eq!(state_of(&st, "a3")["state"], "staged");
        assert_no_leaked_blobs(&http, &srv, &["builds"]).await;
    });
}

// ---------------------------------------------------------------------------------------------
// S3: a real S3-compatible server (moto), when installed.

struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Result<Moto, String> {
    let probe = Command::new("python3")
        .args(["-c", "import moto.server, flask, flask_cors"])
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if !probe.status.success() {
        return Err("python package moto[server] is not installed (pip install 'moto[server]')".into());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting moto: {e}"))?;
    let moto = Moto { child, port };
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(moto);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("moto did not start listening within 30 s".into())
}

/// Starts `intact serve` with extra environment variables (the S3 credentials).
struct EnvServer {
    child: Child,
    base: String,
}

impl Drop for EnvServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_with_env(data_dir: &Path, config: &str, env: &[(&str, &str)]) -> EnvServer {
    use std::io::BufRead;
    let cfg = data_dir.with_extension("toml");
    std::fs::write(&cfg, config).expect("config");
    let log = std::fs::File::create(data_dir.with_extension("log")).expect("log");
    let mut cmd = Command::new(crate::harness::BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn intact");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = lines.next().and_then(Result::ok).unwrap_or_else(|| {
        panic!(
            "intact did not start: {}",
            std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default()
        )
    });
    std::thread::spawn(move || for _ in lines {});
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("address")
        .to_owned();
    EnvServer {
        child,
        base: format!("http://{addr}"),
    }
}

#[test]
fn s3_upstream() {
    let moto = match start_moto() {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipping s3_upstream: {why}");
            return;
        }
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let http = client();
    let rt = runtime();
    rt.block_on(async {
        let endpoint = format!("http://127.0.0.1:{}", moto.port);
        // moto takes unsigned requests: create the bucket and upload the build with plain PUTs.
        let put = |path: String, body: Vec<u8>| {
            let http = http.clone();
            let url = format!("{endpoint}/{path}");
            async move {
                let r = http.put(url).body(body).send().await.expect("put");
                assert!(r.status().is_success(), "{}", r.status());
            }
        };
        put("artifacts".into(), Vec::new()).await;
        let bin = pattern(9, 200_000);
        put(
            format!("artifacts/images/{BUILD}/chromeos_R19_full_dev.bin"),
            bin.clone(),
        )
        .await;
        put(
            format!("artifacts/images/{BUILD}/chromeos_R19_full_dev.bin.json"),
            b"{}".to_vec(),
        )
        .await;
        let suites = gzip(&tar_bytes(&[("suites/a.txt", b"from s3\n".to_vec())]));
        put(format!("artifacts/images/{BUILD}/test_suites.tar.gz"), suites).await;
        let artifacts = r#"full_payload = { files = ["*_full_dev.bin", "*_full_dev.bin.json"] }
test_suites = { files = ["test_suites.tar.gz"], extract = true }
missing = { files = ["nope.bin"] }
"#;
        let extra = format!("s3_endpoint = \"{endpoint}\"\ns3_region = \"us-east-1\"\ns3_allow_http = true");
        let config = staging_repo("s3builds", "s3://artifacts/images", &extra, artifacts);
        let secret = "s3cr3t-never-printed";
        let srv = start_with_env(
            &tmp.path().join("data"),
            &config,
            &[("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", secret)],
        );
        let resp = http
            .post(format!("{}/api/v1/repos/s3builds/stage", srv.base))
            .json(&json!({"name": BUILD, "artifacts": ["full_payload", "test_suites"]}))
            .send()
            .await
            .expect("stage");
        let s = resp.status();
        let v: Value = resp.json().await.expect("json");
        assert_eq!(s, StatusCode::OK, "{v}");
        let got = http
            .get(format!(
                "{}/api/v1/repos/s3builds/{BUILD}/@v/full_payload/chromeos_R19_full_dev.bin",
                srv.base
            ))
            .send()
            .await
            .expect("read");
        assert_eq!(got.status(), StatusCode::OK);
        assert_eq!(got.bytes().await.expect("body").to_vec(), bin);
        let got = http
            .get(format!(
                "{}/api/v1/repos/s3builds/{BUILD}/@v/test_suites/suites/a.txt",
                srv.base
            ))
            .send()
            .await
            .expect("read");
        assert_eq!(got.bytes().await.expect("body").as_ref(), b"from s3\n");
        let resp = http
            .post(format!("{}/api/v1/repos/s3builds/stage", srv.base))
            .json(&json!({"name": BUILD, "artifacts": ["missing"]}))
            .send()
            .await
            .expect("stage");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let v: Value = resp.json().await.expect("json");
        assert!(v["message"].as_str().expect("msg").contains("nope.bin"), "{v}");
        // The repo listing shows the S3 settings but never a credential.
        let listing = http
            .get(format!("{}/api/v1/repos", srv.base))
            .send()
            .await
            .expect("repos")
            .text()
            .await
            .expect("text");
        assert!(!listing.contains(secret));
        drop(srv);
        let log = std::fs::read_to_string(tmp.path().join("data").with_extension("log")).unwrap_or_default();
        assert!(!log.contains(secret), "the secret key leaked into the log");
    });
}
