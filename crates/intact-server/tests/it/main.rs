//! The HTTP-level integration suite: every test starts a real server on `127.0.0.1:0` over a
//! fresh data dir and drives it over TCP with real clients (reqwest, a raw socket that does
//! not normalise paths, the `curl` binary). Lease time is a [`ManualClock`] the test advances,
//! so expiry is deterministic; nothing asserts how long anything took.

mod auth;
mod by_digest;
mod corpus;
mod damage;
mod disk_full;
mod events;
mod guard;
mod hostile;
mod import;
mod large;
mod limits;
mod locking;
mod outage;
mod paths;
mod postgres;
mod publish;
mod races;
mod roundtrip;
mod s3;
mod serving_threads;
mod slow_clients;
mod tags;
mod tls;
mod ui;
mod uploads;
mod upstream_only;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use intact_core::{Digest, Timestamp};
use intact_server::{AppState, Config};
use intact_store::{BlobStore, FsBlobStore, ManualClock, SqliteCatalog, Store, StoreConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running server over its own temporary data dir, plus the handles tests poke at.
pub struct Server {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:port`
    pub base: String,
    pub http: reqwest::Client,
    /// The store's clock: advance it to expire leases.
    pub clock: ManualClock,
    /// `root/data` is the data dir; `root` itself must hold nothing else, so a test can
    /// prove nothing was written outside the data dir.
    pub root: tempfile::TempDir,
    pub data: PathBuf,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// One reqwest client per caller; the crypto provider must be installed first because the
/// workspace builds reqwest with `rustls-no-provider`.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        // A guard against a hung test, not a timing assertion.
        .timeout(Duration::from_secs(120))
        .build()
        .expect("reqwest client")
}

impl Server {
    /// A server over the embedded default configuration.
    pub async fn start() -> Self {
        Self::start_with(Config::embedded_default()).await
    }

    /// A server over `config` (its repos; the data dir is a fresh temporary one).
    pub async fn start_with(config: Config) -> Self {
        let store_config = config.store_config();
        Self::start_in(tempfile::tempdir().expect("tempdir"), config, store_config).await
    }

    /// A server whose store has `store_config` (short timeouts for the tests that need them).
    pub async fn start_with_store(store_config: StoreConfig) -> Self {
        Self::start_in(
            tempfile::tempdir().expect("tempdir"),
            Config::embedded_default(),
            store_config,
        )
        .await
    }

    /// A server whose data dir is `root/data` (e.g. `root` on a small file system).
    pub async fn start_in(root: tempfile::TempDir, config: Config, store_config: StoreConfig) -> Self {
        Self::start_over(root, config, store_config, None).await
    }

    /// A server over the embedded default configuration whose blobs live in `blobs`.
    pub async fn start_on_blobs(blobs: Arc<dyn BlobStore>) -> Self {
        let config = Config::embedded_default();
        let store_config = config.store_config();
        Self::start_over(tempfile::tempdir().expect("tempdir"), config, store_config, Some(blobs)).await
    }

    /// A server over `config` whose blobs live in `blobs`.
    pub async fn start_on_blobs_with(config: Config, blobs: Arc<dyn BlobStore>) -> Self {
        let store_config = config.store_config();
        Self::start_over(tempfile::tempdir().expect("tempdir"), config, store_config, Some(blobs)).await
    }

    /// A server whose data dir is `root/data`, its blobs in `blobs` (default: files there).
    async fn start_over(
        root: tempfile::TempDir,
        config: Config,
        store_config: StoreConfig,
        blobs: Option<Arc<dyn BlobStore>>,
    ) -> Self {
        let data = root.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        let clock = ManualClock::new(Timestamp::from_system(SystemTime::now()));
        let catalog = SqliteCatalog::open(&data.join("catalog.db"), Arc::new(clock.clone()))
            .await
            .expect("open catalog");
        let blobs = match blobs {
            Some(blobs) => blobs,
            None => Arc::new(FsBlobStore::open(&data).await.expect("open blobs")),
        };
        let store = Store::new(Arc::new(catalog), blobs, Arc::new(clock.clone()), store_config);
        let config = Config {
            data_dir: data.clone(),
            ..config
        };
        let state = AppState::new(Arc::new(config), Arc::new(store)).expect("app state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(intact_server::run(listener, state, rx));
        Self {
            addr,
            base: format!("http://{addr}"),
            http: client(),
            clock,
            root,
            data,
            shutdown,
            task: Some(task),
        }
    }

    /// A server opened the way `intact serve` opens one (`intact_server::open`: the catalog
    /// `config` names, recovery, then serving), over `data` (which may be shared with other
    /// servers when the catalog is). `clock` then drives nothing: the store reads the
    /// catalog's clock.
    pub async fn start_opened(root: tempfile::TempDir, data: PathBuf, config: Config) -> Self {
        let config = Config {
            data_dir: data.clone(),
            ..config
        };
        let state = intact_server::open(config).await.expect("open the server");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(intact_server::run(listener, state, rx));
        Self {
            addr,
            base: format!("http://{addr}"),
            http: client(),
            clock: ManualClock::new(Timestamp::from_system(SystemTime::now())),
            root,
            data,
            shutdown,
            task: Some(task),
        }
    }

    /// A server over `store` as it is (a replica's: its catalog and blobs shared with other
    /// servers), with the embedded default configuration and a data dir of its own for what
    /// stays local. `clock` then drives nothing: the store has its own.
    pub async fn start_on_store(store: Store) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let data = root.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        let config = Config {
            data_dir: data.clone(),
            ..Config::embedded_default()
        };
        let state = AppState::new(Arc::new(config), Arc::new(store)).expect("app state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(intact_server::run(listener, state, rx));
        Self {
            addr,
            base: format!("http://{addr}"),
            http: client(),
            clock: ManualClock::new(Timestamp::from_system(SystemTime::now())),
            root,
            data,
            shutdown,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and reports whether it ran to a clean end.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task panicked")
                .expect("server returned an error");
        }
    }

    /// Where the blob with `digest` lives on disk.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.data.join("blobs").join("sha256").join(&hex[..2]).join(hex)
    }

    /// `POST /api/v1/repos/files/transactions` with `body`.
    pub async fn create(&self, body: Value) -> (StatusCode, Value) {
        self.create_in("files", body).await
    }

    pub async fn create_in(&self, repo: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url(&format!("/api/v1/repos/{repo}/transactions")))
            .json(&body)
            .send()
            .await
            .expect("create transaction");
        json_of(resp).await
    }

    /// Creates a transaction that must succeed with 201; returns its id and body.
    pub async fn open(&self, body: Value) -> (String, Value) {
        let (status, v) = self.create(body).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        (str_of(&v, "id"), v)
    }

    pub async fn put(&self, txn: &str, path: &str, bytes: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let resp = self
            .http
            .put(self.url(&format!("/api/v1/transactions/{txn}/files/{path}")))
            .body(bytes)
            .send()
            .await
            .expect("put file");
        json_of(resp).await
    }

    pub async fn commit(&self, txn: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url(&format!("/api/v1/transactions/{txn}/commit")))
            .send()
            .await
            .expect("commit");
        json_of(resp).await
    }

    pub async fn abort(&self, txn: &str) -> StatusCode {
        self.http
            .delete(self.url(&format!("/api/v1/transactions/{txn}")))
            .send()
            .await
            .expect("abort")
            .status()
    }

    pub async fn txn(&self, txn: &str) -> Value {
        let (status, v) = self.get_json(&format!("/api/v1/transactions/{txn}")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.http.get(self.url(path)).send().await.expect("get")).await
    }

    pub async fn get_bytes(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let resp = self.http.get(self.url(path)).send().await.expect("get");
        let status = resp.status();
        (status, resp.bytes().await.expect("body").to_vec())
    }

    /// Every committed version of `name` in `files`, oldest first (all pages).
    pub async fn versions(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let q = after.as_ref().map(|a| format!("&after={a}")).unwrap_or_default();
            let (status, v) = self
                .get_json(&format!("/api/v1/repos/files/{name}/@versions?limit=10000{q}"))
                .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            for e in v["versions"].as_array().expect("versions array") {
                out.push(str_of(e, "version"));
            }
            match v["next"].as_str() {
                Some(n) => after = Some(n.to_owned()),
                None => return out,
            }
        }
    }

    /// Opens, uploads `files` and commits `name@version`; returns the manifest.
    pub async fn publish(&self, name: &str, version: &str, files: &[(&str, &[u8])]) -> Value {
        let (id, _) = self.open(json!({"name": name, "version": version})).await;
        for (path, bytes) in files {
            let (status, v) = self.put(&id, path, bytes.to_vec()).await;
            assert_eq!(status, StatusCode::CREATED, "{v}");
        }
        let (status, m) = self.commit(&id).await;
        assert_eq!(status, StatusCode::CREATED, "{m}");
        m
    }

    /// All events after `after` (no waiting).
    pub async fn events(&self, after: i64) -> Vec<Value> {
        let (status, v) = self
            .get_json(&format!("/api/v1/events?after={after}&limit=10000"))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["events"].as_array().expect("events array").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Status and JSON body; a body that is not JSON fails the test with its text.
pub async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("response body");
    if text.is_empty() {
        return (status, Value::Null);
    }
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text}"));
    (status, v)
}

pub fn str_of(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key:?} is not a string in {v}"))
        .to_owned()
}

/// Asserts an error response: status, `error` code, and (when given) the `field` it names.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str, field: Option<&str>) {
    let (s, v) = got;
    assert_eq!(*s, status, "{v}");
    assert_eq!(v["error"], code, "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without message: {v}"
    );
    if let Some(field) = field {
        assert_eq!(v["field"], field, "{v}");
    }
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Sends one request with the request target written byte for byte, exactly as given: no
/// client-side normalisation of `..`, `//` or percent escapes (reqwest's `url` would resolve
/// them before the server ever saw them).
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &[u8],
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut req = Vec::new();
    req.extend_from_slice(method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    let (answer, buf) = raw_exchange(addr, &req).await;
    answer.unwrap_or_else(|| panic!("unparseable response: {:?}", String::from_utf8_lossy(&buf)))
}

/// Writes `request` byte for byte (nothing added) and reads one response: until it is
/// complete by its framing, or the server closes. Writing goes on beside reading, so a server
/// that answers before reading the whole body (a refused upload) is heard, and the write side
/// is never shut down early (hyper may drop a half-closed connection's answer). Returns the
/// parsed response, if any, and the bytes read.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (Option<RawResponse>, Vec<u8>) {
    let sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = sock.into_split();
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        // Keep the write half open until the reader is done.
        std::future::pending::<()>().await;
        drop(wr);
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if complete_response(&buf) {
            break;
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    writer.abort();
    (parse_raw(&buf), buf)
}

/// Whether `buf` holds a whole response by its own framing (Content-Length or chunked);
/// a response framed by closing the connection is complete only at EOF.
fn complete_response(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let Some(r) = parse_raw(buf) else {
        return false;
    };
    if r.header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        return dechunk(&buf[end + 4..]).is_some();
    }
    // 1xx, 204 and 304 answers have no body.
    if r.status < 200 || r.status == 204 || r.status == 304 {
        return true;
    }
    match r.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => buf.len() >= end + 4 + len,
        None => false,
    }
}

fn parse_raw(buf: &[u8]) -> Option<RawResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(RawResponse { status, headers, body })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).ok()?.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// Every file under `dir`, relative to it (directories are not listed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).expect("under dir").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Deterministic pseudo-random bytes (xorshift), so big bodies need no fixture files.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// How big the reliability suites run: `ci` (the default) or `full` (`./scripts/test --full`
/// sets `INTACT_SUITE_SIZE=full`). Picks the CI or the full-size figure.
pub fn sized<T>(ci: T, full: T) -> T {
    match std::env::var("INTACT_SUITE_SIZE").as_deref() {
        Ok("full") => full,
        _ => ci,
    }
}

/// Records what a reliability suite tried and what held: printed, and appended as one JSON
/// line to `$INTACT_RELIABILITY_REPORT` when set (`scripts/test` prints the collected lines
/// at the end, since cargo hides the output of passing tests).
pub fn report(suite: &str, figures: Value) {
    let size = sized("ci", "full");
    let line = json!({"suite": suite, "size": size, "figures": figures});
    println!("RELIABILITY {line}");
    if let Ok(path) = std::env::var("INTACT_RELIABILITY_REPORT")
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}
