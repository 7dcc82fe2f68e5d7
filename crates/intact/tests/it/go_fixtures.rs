//! Go fixtures for the proxy tests: real-looking modules with dependencies between them,
//! written in the GOPROXY file layout (`{escaped module}/@v/{version}.{info,mod,zip}`,
//! `@v/list`), the go.sum lines the go command will check them against (computed with
//! intact_go, independently of the server), a loopback HTTP upstream serving the same layout
//! that counts requests and injects faults, and a go command isolated from the machine.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use intact_go::{dirhash, info::Info, module_path, zip as gozip};

/// One module version to publish into the fixture proxy.
pub struct Fixture {
    pub module: &'static str,
    pub version: String,
    pub time: String,
    /// Source files relative to the module root (go.mod included when the module has one).
    pub files: Vec<(String, String)>,
}

impl Fixture {
    fn new(module: &'static str, version: &str, time: &str, files: &[(&str, &str)]) -> Self {
        Fixture {
            module,
            version: version.to_owned(),
            time: time.to_owned(),
            files: files.iter().map(|(p, c)| ((*p).to_owned(), (*c).to_owned())).collect(),
        }
    }
}

pub const PSEUDO: &str = "v0.0.0-20240102030405-abcdefabcdef";
pub const MANY_COUNT: usize = 2000;

pub fn many_version(i: usize) -> String {
    format!("v1.{}.{}", i / 100, i % 100)
}

/// The modules: app -> lib/v2 -> util, plus an upper-case path, a `+incompatible` version,
/// a pseudo-version, a module with 2,000 versions, and small modules for fault injection.
pub fn modules() -> Vec<Fixture> {
    let mut out = vec![
        Fixture::new(
            "example.com/util",
            "v1.0.0",
            "2024-01-01T00:00:00Z",
            &[
                ("go.mod", "module example.com/util\n\ngo 1.19\n"),
                (
                    "util.go",
                    "package util\n\nfunc Greeting() string { return \"hello from util v1.0.0\" }\n",
                ),
            ],
        ),
        Fixture::new(
            "example.com/util",
            "v1.1.0",
            "2024-01-05T00:00:00Z",
            &[
                ("go.mod", "module example.com/util\n\ngo 1.19\n"),
                (
                    "util.go",
                    "package util\n\nfunc Greeting() string { return \"hello from util v1.1.0\" }\n",
                ),
                ("LICENSE", "Fixture licence: do what you like.\n"),
            ],
        ),
        Fixture::new(
            "example.com/lib/v2",
            "v2.0.0",
            "2024-01-02T00:00:00Z",
            &[
                (
                    "go.mod",
                    "module example.com/lib/v2\n\ngo 1.19\n\nrequire example.com/util v1.0.0\n",
                ),
                (
                    "lib.go",
                    "package lib\n\nimport \"example.com/util\"\n\nfunc Message() string { return \"lib v2.0.0 says \" + util.Greeting() }\n",
                ),
            ],
        ),
        Fixture::new(
            "example.com/lib/v2",
            "v2.1.0",
            "2024-01-06T00:00:00Z",
            &[
                (
                    "go.mod",
                    "module example.com/lib/v2\n\ngo 1.19\n\nrequire example.com/util v1.1.0\n",
                ),
                (
                    "lib.go",
                    "package lib\n\nimport \"example.com/util\"\n\nfunc Message() string { return \"lib v2.1.0 says \" + util.Greeting() }\n",
                ),
                ("internal/x/x.go", "package x\n\nconst X = 1\n"),
            ],
        ),
        Fixture::new(
            "github.com/Azure/go-thing",
            "v1.0.0",
            "2024-01-03T00:00:00Z",
            &[
                ("go.mod", "module github.com/Azure/go-thing\n\ngo 1.19\n"),
                (
                    "thing.go",
                    "package thing\n\nfunc Name() string { return \"Azure thing\" }\n",
                ),
            ],
        ),
        // No go.mod: served with the synthesized `module example.com/legacy` as its .mod.
        Fixture::new(
            "example.com/legacy",
            "v2.0.0+incompatible",
            "2024-01-04T00:00:00Z",
            &[(
                "legacy.go",
                "package legacy\n\nfunc Old() string { return \"legacy v2 without go.mod\" }\n",
            )],
        ),
        Fixture::new(
            "example.com/pseudo",
            PSEUDO,
            "2024-01-02T03:04:05Z",
            &[
                ("go.mod", "module example.com/pseudo\n\ngo 1.19\n"),
                ("pseudo.go", "package pseudo\n\nconst Commit = \"abcdefabcdef\"\n"),
            ],
        ),
    ];
    for name in ["flaky", "trunc", "short", "wrongmod", "slow", "secret"] {
        let module: &'static str = Box::leak(format!("example.com/{name}").into_boxed_str());
        out.push(Fixture {
            module,
            version: "v1.0.0".into(),
            time: "2024-02-01T00:00:00Z".into(),
            files: vec![
                ("go.mod".into(), format!("module {module}\n\ngo 1.19\n")),
                (
                    format!("{name}.go"),
                    format!("package {name}\n\nconst Name = \"{name}\"\n"),
                ),
                // Some bulk, so a truncated body is really cut mid-file.
                ("data.txt".into(), "intact fixture data\n".repeat(4000)),
            ],
        });
    }
    let last = many_version(MANY_COUNT - 1);
    out.push(Fixture {
        module: "example.com/many",
        version: last.clone(),
        time: "2024-03-01T00:00:00Z".into(),
        files: vec![
            ("go.mod".into(), "module example.com/many\n\ngo 1.19\n".into()),
            (
                "many.go".into(),
                format!("package many\n\nconst Version = \"{last}\"\n"),
            ),
        ],
    });
    out
}

/// The main module that uses the fixtures (not served by any proxy).
pub fn write_app(dir: &Path, sums: &str) {
    let many = many_version(MANY_COUNT - 1);
    let files = [
        (
            "go.mod".to_owned(),
            format!(
                "module example.com/app\n\ngo 1.19\n\nrequire (\n\texample.com/legacy v2.0.0+incompatible\n\texample.com/lib/v2 v2.1.0\n\texample.com/many {many}\n\texample.com/pseudo {PSEUDO}\n\tgithub.com/Azure/go-thing v1.0.0\n)\n\nrequire example.com/util v1.1.0 // indirect\n"
            ),
        ),
        (
            "main.go".to_owned(),
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/legacy\"\n\tlib \"example.com/lib/v2\"\n\t\"example.com/many\"\n\t\"example.com/pseudo\"\n\tthing \"github.com/Azure/go-thing\"\n)\n\nfunc Describe() string {\n\treturn fmt.Sprintf(\"%s | %s | %s | many %s | pseudo %s\", lib.Message(), thing.Name(), legacy.Old(), many.Version, pseudo.Commit)\n}\n\nfunc main() { fmt.Println(Describe()) }\n"
                .to_owned(),
        ),
        (
            "main_test.go".to_owned(),
            "package main\n\nimport (\n\t\"strings\"\n\t\"testing\"\n)\n\nfunc TestDescribe(t *testing.T) {\n\tif d := Describe(); !strings.Contains(d, \"hello from util v1.1.0\") || !strings.Contains(d, \"Azure thing\") {\n\t\tt.Fatalf(\"unexpected: %s\", d)\n\t}\n}\n"
                .to_owned(),
        ),
        ("go.sum".to_owned(), sums.to_owned()),
    ];
    for (p, c) in files {
        write(&dir.join(p), c.as_bytes());
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// The three files of one module version, as the fixture proxy serves them.
pub struct VersionFiles {
    pub info: Vec<u8>,
    pub go_mod: Vec<u8>,
    pub zip: Vec<u8>,
}

/// A fixture proxy on disk.
pub struct Proxy {
    /// The root of the GOPROXY file layout.
    pub dir: PathBuf,
    /// go.sum lines for every fixture version (`M V h1:` and `M V/go.mod h1:`), sorted.
    pub sums: String,
    /// Module -> version -> files.
    pub files: BTreeMap<String, BTreeMap<String, VersionFiles>>,
}

impl Proxy {
    pub fn zip_of(&self, module: &str, version: &str) -> &[u8] {
        &self.files[module][version].zip
    }
}

pub fn escaped(module: &str) -> String {
    module_path::escape_path(module).expect("escape")
}

/// Builds every fixture into `root/proxy` (zips made with intact_go's create_from_dir).
pub fn build_proxy(root: &Path) -> Proxy {
    let dir = root.join("proxy");
    let mut sums = Vec::new();
    let mut files: BTreeMap<String, BTreeMap<String, VersionFiles>> = BTreeMap::new();
    let mut lists: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for fx in modules() {
        let src = root.join("src").join(format!("{}@{}", escaped(fx.module), fx.version));
        for (p, c) in &fx.files {
            write(&src.join(p), c.as_bytes());
        }
        let mut zip = Cursor::new(Vec::new());
        let created = gozip::create_from_dir(&src, fx.module, &fx.version, &mut zip).expect("create zip");
        let zip = zip.into_inner();
        assert_eq!(dirhash::hash_zip(Cursor::new(&zip)).expect("hash"), created.h1);
        let go_mod = fx
            .files
            .iter()
            .find(|(p, _)| p == "go.mod")
            .map(|(_, c)| c.clone().into_bytes())
            .unwrap_or_else(|| gozip::synthesized_go_mod(fx.module));
        let info = Info::new(fx.version.clone(), fx.time.clone()).expect("info").to_json();
        let base = dir.join(escaped(fx.module)).join("@v");
        let ev = module_path::escape_version(&fx.version).expect("escape version");
        write(&base.join(format!("{ev}.info")), &info);
        write(&base.join(format!("{ev}.mod")), &go_mod);
        write(&base.join(format!("{ev}.zip")), &zip);
        sums.push(format!("{} {} {}", fx.module, fx.version, created.h1));
        sums.push(format!(
            "{} {}/go.mod {}",
            fx.module,
            fx.version,
            dirhash::hash_go_mod(&go_mod)
        ));
        if !intact_go::semver::is_pseudo_version(&fx.version) {
            lists.entry(fx.module).or_default().push(fx.version.clone());
        }
        files
            .entry(fx.module.to_owned())
            .or_default()
            .insert(fx.version.clone(), VersionFiles { info, go_mod, zip });
    }
    lists.insert("example.com/many", (0..MANY_COUNT).map(many_version).collect());
    for (module, versions) in &lists {
        let mut body = versions.join("\n");
        body.push('\n');
        write(&dir.join(escaped(module)).join("@v/list"), body.as_bytes());
    }
    // A branch query the go command may send: answered upstream, never stored by intact.
    let q = Info::new("v1.1.0", "2024-01-05T00:00:00Z").expect("info").to_json();
    write(&dir.join("example.com/util/@v/main.info"), &q);
    sums.sort();
    let mut sums = sums.join("\n");
    sums.push('\n');
    Proxy { dir, sums, files }
}

/// What the HTTP upstream does instead of answering normally.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status.
    Status(u16),
    /// Announce the full length, send half, then cut the connection.
    CutMidBody,
    /// A clean response whose body is only the first half (no length announced).
    ShortBody,
    /// Serve `module example.com/other` as the .mod.
    WrongModule,
    /// Wait this long before answering.
    Slow(Duration),
}

#[derive(Default)]
struct UpstreamState {
    counts: Mutex<BTreeMap<String, usize>>,
    faults: Mutex<HashMap<String, Fault>>,
}

/// A GOPROXY-layout HTTP server on loopback, counting requests per path.
pub struct HttpUpstream {
    pub base: String,
    state: Arc<UpstreamState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl HttpUpstream {
    pub fn start(root: PathBuf) -> HttpUpstream {
        let state = Arc::new(UpstreamState::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(move |uri: Uri| {
                    let (st, root) = (st.clone(), root.clone());
                    async move { answer(&st, &root, &uri).await }
                });
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        HttpUpstream {
            base,
            state,
            _stop: stop_tx,
        }
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.state.counts.lock().expect("lock").clone()
    }

    pub fn count(&self, path: &str) -> usize {
        self.counts().get(path).copied().unwrap_or(0)
    }

    pub fn fault(&self, path: &str, fault: Fault) {
        self.state.faults.lock().expect("lock").insert(path.to_owned(), fault);
    }

    pub fn clear_fault(&self, path: &str) {
        self.state.faults.lock().expect("lock").remove(path);
    }
}

async fn answer(st: &UpstreamState, root: &Path, uri: &Uri) -> Response {
    let path = uri.path().trim_start_matches('/').to_owned();
    *st.counts.lock().expect("lock").entry(path.clone()).or_default() += 1;
    let fault = st.faults.lock().expect("lock").get(&path).cloned();
    if path.split('/').any(|s| s == ".." || s.is_empty()) {
        return (StatusCode::NOT_FOUND, "bad path").into_response();
    }
    if let Some(Fault::Slow(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let Ok(bytes) = tokio::fs::read(root.join(&path)).await else {
        return (StatusCode::NOT_FOUND, format!("not found: {path}")).into_response();
    };
    match fault {
        Some(Fault::Status(code)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "injected failure",
        )
            .into_response(),
        Some(Fault::CutMidBody) => {
            let full = bytes.len();
            let half = bytes[..full / 2].to_vec();
            // The headers and the first half go out; only then does the connection break.
            let first = futures::stream::once(async move { Ok::<_, std::io::Error>(half) });
            let cut = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected cut"))
            });
            Response::builder()
                .header(header::CONTENT_LENGTH, full)
                .body(Body::from_stream(futures::StreamExt::chain(first, cut)))
                .expect("response")
        }
        Some(Fault::ShortBody) => {
            let half = bytes[..bytes.len() / 2].to_vec();
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(half)];
            Response::builder()
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .expect("response")
        }
        Some(Fault::WrongModule) => (StatusCode::OK, "module example.com/other\n\ngo 1.19\n").into_response(),
        _ => (StatusCode::OK, bytes).into_response(),
    }
}

/// The go command, if there is one that runs.
pub fn go_binary() -> Option<PathBuf> {
    [PathBuf::from("go"), PathBuf::from("/usr/lib/go/bin/go")]
        .into_iter()
        .find(|go| {
            Command::new(go)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// The go command, or `None` to skip a test outside the test command. The test command
/// installs go: missing there, it is a failure, never a skip.
pub fn need_go(test: &str) -> Option<PathBuf> {
    let go = go_binary();
    if go.is_none() {
        assert!(
            std::env::var_os("INTACT_SUITE_SIZE").is_none(),
            "{test}: no go command, though the test command (scripts/test) installs golang-go"
        );
        eprintln!("skipping {test}: no go command (install golang-go; scripts/test does)");
    }
    go
}

/// `go` with a fresh home, module cache and build cache under `home`, talking only to `goproxy`.
pub fn go_command(go: &Path, home: &Path, goproxy: &str) -> Command {
    let mut cmd = Command::new(go);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GOPATH", home.join("gopath"))
        .env("GOMODCACHE", home.join("gopath/pkg/mod"))
        .env("GOCACHE", home.join("gocache"))
        .env("GOENV", "off")
        .env("GOFLAGS", "-modcacherw")
        .env("GO111MODULE", "on")
        .env("GOPROXY", goproxy)
        .env("GOSUMDB", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .stdin(Stdio::null());
    cmd
}

/// Runs a command to completion, killing it after `limit` (a hung client must fail the test,
/// not hang it).
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "command timed out after {limit:?}: {cmd:?}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs and asserts success, returning stdout.
pub fn run_ok(cmd: Command, what: &str) -> String {
    let out = run(cmd, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
