//! The Go module proxy, end to end: the real `intact` binary serving hosted, proxy and group
//! Go repos, a fixture upstream (a `file://` directory and the same layout over HTTP on
//! loopback, with request counters and injected faults), and the real `go` command with a
//! fresh module cache per client. go.sum is written from hashes computed independently with
//! intact_go, and builds run with `-mod=readonly`, so the go command checks every byte.
//!
//! Run by hand without `go`, these tests print why and return early; under the test command
//! (scripts/test, which installs it) a missing `go` fails them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::go_fixtures::{
    Fault, HttpUpstream, MANY_COUNT, Proxy, build_proxy, go_binary, go_command, many_version, need_go, run, run_ok,
    write_app,
};
use crate::harness::{self, Server};

/// Repo settings the tests vary.
struct Settings {
    fetch_timeout: u64,
    list_cache: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            fetch_timeout: 300,
            list_cache: 0,
        }
    }
}

fn config(file_upstream: &Path, http_upstream: &str, s: &Settings) -> String {
    format!(
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
upstream = "file://{file}"
checksum_db = "off"
exclude = ["example.com/secret"]

[[repo]]
name = "go-http"
kind = "proxy"
format = "go"
upstream = "{http}"
checksum_db = "off"
exclude = ["example.com/secret"]
failure_cache_seconds = 1
fetch_timeout_seconds = {timeout}
list_cache_seconds = {list_cache}

[[repo]]
name = "gofile"
kind = "group"
format = "go"
members = ["go-private", "go-file"]

[[repo]]
name = "go"
kind = "group"
format = "go"
members = ["go-private", "go-http"]
"#,
        file = file_upstream.display(),
        http = http_upstream,
        timeout = s.fetch_timeout,
        list_cache = s.list_cache,
    )
}

struct Env {
    tmp: tempfile::TempDir,
    proxy: Proxy,
    upstream: HttpUpstream,
    server: Server,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Env {
    fn start(s: Settings) -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let proxy = build_proxy(tmp.path());
        let upstream = HttpUpstream::start(proxy.dir.clone());
        let server = Server::start(
            &tmp.path().join("data"),
            Some(&config(&proxy.dir, &upstream.base, &s)),
            &[],
        );
        Env {
            tmp,
            proxy,
            upstream,
            server,
            rt: harness::runtime(),
            http: harness::client(),
        }
    }

    fn get(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        self.request(reqwest::Method::GET, path, &[])
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        self.rt.block_on(async {
            let mut req = self.http.request(method, self.server.url(path));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let resp = req.send().await.expect("request");
            let (status, headers) = (resp.status(), resp.headers().clone());
            (status, headers, resp.bytes().await.expect("body").to_vec())
        })
    }

    fn text(&self, path: &str) -> (StatusCode, String) {
        let (status, _, body) = self.get(path);
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn json(&self, path: &str) -> Value {
        let (status, _, body) = self.get(path);
        assert_eq!(status, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("json")
    }

    /// Committed versions of `name` in `repo`, through the generic API.
    fn stored(&self, repo: &str, name: &str) -> Vec<String> {
        let v = self.json(&format!("/api/v1/repos/{repo}/{name}/@versions"));
        v["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|v| v["version"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Names in `repo` under `prefix`, internal ones included when the prefix asks for them.
    fn names(&self, repo: &str, prefix: &str) -> Vec<String> {
        let v = self.json(&format!("/api/v1/repos/{repo}/names?prefix={prefix}"));
        v["names"]
            .as_array()
            .expect("names")
            .iter()
            .map(|n| n.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn goproxy(&self, repo: &str) -> String {
        self.server.url(&format!("/go/{repo}"))
    }

    /// A fresh go client (own HOME, GOPATH, GOMODCACHE, GOCACHE) with its own copy of the app.
    fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let home = self.tmp.path().join("clients").join(name);
        let app = home.join("app");
        write_app(&app, &self.proxy.sums);
        (home, app)
    }
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

#[test]
fn go_protocol_over_an_http_upstream() {
    let env = Env::start(Settings::default());
    let up = &env.upstream;
    let util = &env.proxy.files["example.com/util"]["v1.1.0"];

    // .mod alone is fetched with .info, never with the zip.
    let (status, h, body) = env.get("/go/go/example.com/util/@v/v1.1.0.mod");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "content-type"), "text/plain; charset=utf-8");
    assert_eq!(body, util.go_mod);
    assert_eq!(up.count("example.com/util/@v/v1.1.0.mod"), 1);
    assert_eq!(up.count("example.com/util/@v/v1.1.0.info"), 1);
    assert_eq!(
        up.count("example.com/util/@v/v1.1.0.zip"),
        0,
        "a .mod request must not download the zip"
    );
    assert!(
        env.stored("go-http", "example.com/util").is_empty(),
        "only the @gomod version exists yet"
    );
    assert_eq!(
        env.names("go-http", "@gomod/"),
        vec!["@gomod/example.com/util".to_owned()]
    );

    let (status, h, body) = env.get("/go/go/example.com/util/@v/v1.1.0.info");
    assert_eq!(
        (status, header(&h, "content-type")),
        (StatusCode::OK, "application/json")
    );
    assert_eq!(body, util.info);

    let (status, h, body) = env.get("/go/go/example.com/util/@v/v1.1.0.zip");
    assert_eq!(
        (status, header(&h, "content-type")),
        (StatusCode::OK, "application/zip")
    );
    assert_eq!(body, util.zip, "the zip is served byte for byte");
    assert!(header(&h, "etag").len() > 60);
    // The zip completed the version: .info and .mod were reused, not fetched again.
    for f in ["info", "mod", "zip"] {
        assert_eq!(up.count(&format!("example.com/util/@v/v1.1.0.{f}")), 1, ".{f}");
    }
    assert_eq!(env.stored("go-http", "example.com/util"), vec!["v1.1.0"]);
    let manifest = env.json("/api/v1/repos/go-http/example.com/util/@v/v1.1.0");
    let paths: Vec<&str> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(paths, vec!["go.mod", "info.json", "module.zip"]);
    assert_eq!(
        manifest["metadata"]["h1"].as_str(),
        Some(
            intact_go::dirhash::hash_zip(std::io::Cursor::new(&util.zip))
                .expect("h1")
                .as_str()
        )
    );
    // Browsing hides the internal namespace.
    assert!(env.names("go-http", "").iter().all(|n| !n.starts_with('@')));

    // HEAD and ranges come from the shared file server.
    let (status, h, body) = env.request(reqwest::Method::HEAD, "/go/go/example.com/util/@v/v1.1.0.zip", &[]);
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(header(&h, "content-length"), util.zip.len().to_string());
    let (status, _, body) = env.request(
        reqwest::Method::GET,
        "/go/go/example.com/util/@v/v1.1.0.zip",
        &[("range", "bytes=0-9")],
    );
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &util.zip[..10])
    );

    // list merges upstream and stored versions; @latest falls back to what is stored when
    // the upstream has no @latest.
    let (status, h, body) = env.get("/go/go/example.com/util/@v/list");
    assert_eq!(
        (status, header(&h, "content-type")),
        (StatusCode::OK, "text/plain; charset=utf-8")
    );
    assert_eq!(String::from_utf8_lossy(&body), "v1.0.0\nv1.1.0\n");
    let (status, h, body) = env.get("/go/go/example.com/util/@latest");
    assert_eq!(
        (status, header(&h, "content-type")),
        (StatusCode::OK, "application/json")
    );
    assert_eq!(body, util.info);

    // Upstream down: list serves what is stored; with nothing stored, the failure (502).
    up.fault("example.com/util/@v/list", Fault::Status(500));
    assert_eq!(
        env.text("/go/go/example.com/util/@v/list"),
        (StatusCode::OK, "v1.1.0\n".to_owned())
    );
    up.fault("example.com/lib/v2/@v/list", Fault::Status(503));
    let (status, text) = env.text("/go/go/example.com/lib/v2/@v/list");
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{text}");
    assert!(text.contains("503"), "{text}");
    up.clear_fault("example.com/util/@v/list");
    up.clear_fault("example.com/lib/v2/@v/list");

    // Case-encoded paths: stored with their case, served under the escaped URL only.
    let thing = &env.proxy.files["github.com/Azure/go-thing"]["v1.0.0"];
    let (status, _, body) = env.get("/go/go/github.com/!azure/go-thing/@v/v1.0.0.zip");
    assert_eq!((status, body.as_slice()), (StatusCode::OK, thing.zip.as_slice()));
    assert_eq!(env.stored("go-http", "github.com/Azure/go-thing"), vec!["v1.0.0"]);
    assert_eq!(
        env.get("/go/go/github.com/Azure/go-thing/@v/v1.0.0.zip").0,
        StatusCode::NOT_FOUND
    );
    assert!(
        env.stored("go-http", "github.com/azure/go-thing").is_empty(),
        "two spellings are two modules"
    );

    // +incompatible: the `+` survives URLs and storage; the .mod is the synthesized one.
    let (status, body) = env.text("/go/go/example.com/legacy/@v/v2.0.0+incompatible.mod");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "module example.com/legacy\n"));
    assert_eq!(
        env.get("/go/go/example.com/legacy/@v/v2.0.0+incompatible.zip").0,
        StatusCode::OK
    );
    assert_eq!(env.stored("go-http", "example.com/legacy"), vec!["v2.0.0+incompatible"]);

    // Pseudo-versions are served and count for @latest, but are not listed.
    let pseudo = "v0.0.0-20240102030405-abcdefabcdef";
    assert_eq!(
        env.get(&format!("/go/go/example.com/pseudo/@v/{pseudo}.zip")).0,
        StatusCode::OK
    );
    assert_eq!(
        env.text("/go/go/example.com/pseudo/@v/list"),
        (StatusCode::OK, String::new())
    );
    let latest: Value = serde_json::from_slice(&env.get("/go/go/example.com/pseudo/@latest").2).expect("json");
    assert_eq!(latest["Version"], pseudo);

    // A branch query is passed through, answered, and not stored.
    let (status, body) = env.text("/go/go/example.com/util/@v/main.info");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("v1.1.0"), "{body}");
    assert_eq!(env.stored("go-http", "example.com/util"), vec!["v1.1.0"]);
    assert_eq!(env.get("/go/go/example.com/util/@v/main.zip").0, StatusCode::NOT_FOUND);

    // A module with 2,000 versions: the list is complete and in semver order.
    for round in ["first", "again"] {
        let start = Instant::now();
        let (status, list) = env.text("/go/go/example.com/many/@v/list");
        let took = start.elapsed();
        assert_eq!(status, StatusCode::OK);
        let versions: Vec<&str> = list.lines().collect();
        assert_eq!(versions.len(), MANY_COUNT);
        let want: Vec<String> = (0..MANY_COUNT).map(many_version).collect();
        assert_eq!(versions, want);
        println!("list of {MANY_COUNT} versions through the group ({round}): {took:?}");
    }

    // Not here, or not a protocol path: 404 with a plain-text reason; never a 400 or 500.
    for (path, needle) in [
        ("/go/go/example.com/nope/@v/v1.0.0.info", "not found"),
        ("/go/go/example.com/nope/@v/list", "not found"),
        ("/go/go/example.com/util/@v/v9.9.9.zip", "not found"),
        ("/go/go/example.com/util/@v/v1.1.zip", "not canonical"),
        ("/go/go/example.com/lib/v2/@v/v1.0.0.mod", "v2"),
        ("/go/go/Example.com/util/@v/list", "invalid"),
        ("/go/go/example.com/..%5cx/@v/list", "invalid"),
        ("/go/go/example.com%2f..%2f..%2fetc/@v/list", "invalid"),
        ("/go/go/example.com/util/@v/v1.1.0.tar", "expected"),
        ("/go/go/example.com/util", "expected"),
        ("/go/files/example.com/util/@v/list", "not a Go repo"),
        ("/go/nope/example.com/util/@v/list", "no repo"),
        ("/go/go/example.com/secret/@v/v1.0.0.info", "exclude"),
    ] {
        let (status, h, body) = env.get(path);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(header(&h, "content-type"), "text/plain; charset=utf-8", "{path}");
        assert!(body.contains(needle), "{path}: {body}");
    }
    assert!(
        up.counts().keys().all(|p| !p.contains("secret")),
        "excluded modules are never asked upstream"
    );

    // The protocol is read-only; the publish endpoint only takes POST. Both say so.
    let (status, h, _) = env.request(reqwest::Method::PUT, "/go/go/example.com/util/@v/v1.1.0.zip", &[]);
    assert_eq!(
        (status, header(&h, "allow")),
        (StatusCode::METHOD_NOT_ALLOWED, "GET, HEAD")
    );
    let (status, _, body) = env.get("/go/go-private/publish");
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let v: Value = serde_json::from_slice(&body).expect("a JSON error");
    assert_eq!(v["error"], "method_not_allowed");
}

#[test]
fn go_build_test_and_list_through_a_group_with_a_file_upstream() {
    let Some(go) = need_go("go_build_test_and_list_through_a_group_with_a_file_upstream") else {
        return;
    };
    let env = Env::start(Settings::default());
    let goproxy = env.goproxy("gofile");
    let (home, app) = env.client("builder");
    let go_in_app = || {
        let mut c = go_command(&go, &home, &goproxy);
        c.current_dir(&app).env("GOFLAGS", "-modcacherw -mod=readonly");
        c
    };

    let start = Instant::now();
    let mut c = go_in_app();
    c.args(["mod", "download", "-x"]);
    run_ok(c, "go mod download");
    println!(
        "cold `go mod download` of the app's dependencies through intact: {:?}",
        start.elapsed()
    );
    let mut c = go_in_app();
    c.args(["build", "-o"]).arg(home.join("app-bin")).arg(".");
    run_ok(c, "go build");
    let out = run_ok(Command::new(home.join("app-bin")), "the built app");
    assert!(out.contains("lib v2.1.0 says hello from util v1.1.0"), "{out}");
    assert!(
        out.contains("Azure thing") && out.contains("legacy v2 without go.mod"),
        "{out}"
    );
    assert!(out.contains(&format!("many {}", many_version(MANY_COUNT - 1))), "{out}");
    let mut c = go_in_app();
    c.args(["test", "./..."]);
    let out = run_ok(c, "go test");
    assert!(out.contains("ok"), "{out}");
    // go verified every zip and go.mod against go.sum (written from independently computed
    // hashes); `go mod verify` re-checks the extracted module cache too.
    let mut c = go_in_app();
    c.args(["mod", "verify"]);
    let out = run_ok(c, "go mod verify");
    assert!(out.contains("all modules verified"), "{out}");

    let start = Instant::now();
    let mut c = go_in_app();
    c.args(["list", "-m", "-versions", "example.com/many"]);
    let out = run_ok(c, "go list -m -versions");
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"example.com/many"));
    assert_eq!(fields.len(), 1 + MANY_COUNT, "every version is listed");
    println!(
        "`go list -m -versions` of a {MANY_COUNT}-version module: {:?}",
        start.elapsed()
    );
    let mut c = go_in_app();
    c.args([
        "list",
        "-m",
        "-versions",
        "example.com/util",
        "github.com/Azure/go-thing",
    ]);
    let out = run_ok(c, "go list -m -versions");
    assert!(out.contains("example.com/util v1.0.0 v1.1.0"), "{out}");
    assert!(out.contains("github.com/Azure/go-thing v1.0.0"), "{out}");

    // Everything landed in the file proxy repo as complete versions.
    assert_eq!(env.stored("go-file", "example.com/lib/v2"), vec!["v2.1.0"]);
    assert_eq!(env.stored("go-file", "github.com/Azure/go-thing"), vec!["v1.0.0"]);
}

#[test]
fn go_fifty_cold_clients_cause_one_upstream_request_per_file() {
    let Some(go) = need_go("go_fifty_cold_clients_cause_one_upstream_request_per_file") else {
        return;
    };
    let env = Env::start(Settings::default());
    let goproxy = env.goproxy("go");
    const CLIENTS: usize = 50;
    let clients: Vec<(PathBuf, PathBuf)> = (0..CLIENTS).map(|i| env.client(&format!("c{i}"))).collect();
    let start = Instant::now();
    let children: Vec<_> = clients
        .iter()
        .map(|(home, app)| {
            let mut c = go_command(&go, home, &goproxy);
            c.current_dir(app).args(["mod", "download"]);
            std::thread::spawn(move || run(c, Duration::from_secs(600)))
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.join().expect("client thread");
        assert!(
            out.status.success(),
            "client {i} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!(
        "{CLIENTS} concurrent cold `go mod download` clients: {:?}",
        start.elapsed()
    );

    let counts = env.upstream.counts();
    println!("upstream requests: {counts:#?}");
    assert!(!counts.is_empty());
    for (path, n) in &counts {
        assert_eq!(*n, 1, "upstream saw {n} requests for {path}");
    }
    // The metrics count exactly the fetches the upstream saw, and the waiters that joined one.
    let text = env.rt.block_on(async {
        env.http
            .get(env.server.url("/metrics"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body")
    });
    let fetched: f64 = ["ok", "not_found", "failed"]
        .iter()
        .filter_map(|o| {
            crate::observability::sample(
                &text,
                &format!("intact_upstream_fetches_total{{front_end=\"go\",outcome=\"{o}\"}}"),
            )
        })
        .sum();
    assert_eq!(fetched, counts.values().sum::<usize>() as f64, "{text}");
    println!(
        "waiters that joined a fetch under way: {:?}",
        crate::observability::sample(&text, "intact_coalesced_waiters_total{across=\"process\"}")
    );
    for module in [
        "example.com/lib/v2",
        "example.com/util",
        "github.com/!azure/go-thing",
        "example.com/legacy",
        "example.com/many",
    ] {
        assert!(
            counts
                .keys()
                .any(|p| p.starts_with(&format!("{module}/@v/")) && p.ends_with(".zip")),
            "no zip of {module} fetched"
        );
    }
    // Every client verified every byte against go.sum; a second round is served from intact alone.
    let (home, app) = env.client("second");
    let mut c = go_command(&go, &home, &goproxy);
    c.current_dir(&app)
        .env("GOFLAGS", "-modcacherw -mod=readonly")
        .args(["build", "./..."]);
    run_ok(c, "go build after the storm");
    assert_eq!(env.upstream.counts(), counts, "a warm build asks upstream nothing");
}

#[test]
fn go_upstream_failures_are_never_cached_and_recover() {
    let env = Env::start(Settings {
        fetch_timeout: 3,
        list_cache: 0,
    });
    let go = go_binary();
    if go.is_none() {
        eprintln!("go_upstream_failures_are_never_cached_and_recover: no go command; checking over HTTP only");
    }
    let up = &env.upstream;
    let cases: [(&str, &str, Fault, StatusCode, &str); 5] = [
        ("flaky", "zip", Fault::Status(500), StatusCode::BAD_GATEWAY, "500"),
        ("trunc", "zip", Fault::CutMidBody, StatusCode::BAD_GATEWAY, "cut short"),
        ("short", "zip", Fault::ShortBody, StatusCode::BAD_GATEWAY, "invalid zip"),
        (
            "wrongmod",
            "mod",
            Fault::WrongModule,
            StatusCode::BAD_GATEWAY,
            "example.com/other",
        ),
        (
            "slow",
            "zip",
            Fault::Slow(Duration::from_secs(6)),
            StatusCode::GATEWAY_TIMEOUT,
            "timed out",
        ),
    ];
    for (name, ext, fault, status, needle) in cases {
        let module = format!("example.com/{name}");
        let upstream_path = format!("{module}/@v/v1.0.0.{ext}");
        up.fault(&upstream_path, fault);
        let url = format!("/go/go/{module}/@v/v1.0.0.zip");
        let (got, text) = env.text(&url);
        assert_eq!(got, status, "{name}: {text}");
        assert!(text.contains(needle), "{name}: {text}");
        assert!(
            env.stored("go-http", &module).is_empty(),
            "{name}: a failed fetch left a version behind"
        );
        if ext == "mod" {
            assert!(
                env.names("go-http", &format!("@gomod/{module}")).is_empty(),
                "{name}: an invalid .mod was cached"
            );
        }
        // The real client sees a clean error naming the cause.
        if let Some(go) = &go {
            let home = env.tmp.path().join("fault-clients").join(name);
            std::fs::create_dir_all(&home).expect("home");
            let mut c = go_command(go, &home, &env.goproxy("go"));
            c.current_dir(&home)
                .args(["mod", "download", &format!("{module}@v1.0.0")]);
            let out = run(c, Duration::from_secs(120));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name}: go mod download should fail");
            assert!(stderr.contains(&status.as_u16().to_string()), "{name}: {stderr}");
            println!("{name}: the go command reports:\n{}", stderr.trim());
            assert!(
                env.stored("go-http", &module).is_empty(),
                "{name}: cached after the go client's try"
            );
        }
        // Upstream recovers: a later request succeeds (at once after a transient fault; after
        // the failure memory for content that broke Go's rules, a definitive answer).
        up.clear_fault(&upstream_path);
        // The failure memory is 1 s in these tests.
        harness::wait_until(
            &format!("{name} served after recovery"),
            Duration::from_secs(60),
            || env.get(&url).0 == StatusCode::OK,
        );
        let (_, _, body) = env.get(&url);
        assert_eq!(
            body,
            env.proxy.zip_of(&module, "v1.0.0"),
            "{name}: the recovered zip is whole"
        );
        assert_eq!(env.stored("go-http", &module), vec!["v1.0.0"], "{name}");
    }
    // No request caused more than one upstream request (this client's, the go command's, and
    // the first after recovery).
    assert!(up.count("example.com/flaky/@v/v1.0.0.zip") <= 4, "{:?}", up.counts());
}

#[test]
fn go_hosted_publish_then_build_a_consumer() {
    let env = Env::start(Settings::default());
    let tool = env.tmp.path().join("tool");
    let module = "example.com/private/tool";
    let go_mod = format!("module {module}\n\ngo 1.19\n\nrequire example.com/util v1.1.0\n");
    std::fs::create_dir_all(tool.join(".git")).expect("mkdir");
    std::fs::write(tool.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
    std::fs::write(tool.join("go.mod"), &go_mod).expect("write");
    std::fs::write(tool.join("tool.go"), "package tool\n\nimport \"example.com/util\"\n\nfunc Hello() string { return \"private tool uses \" + util.Greeting() }\n").expect("write");

    let publish = |dir: &Path| {
        let mut c = Command::new(harness::BIN);
        c.args(["go", "publish"])
            .arg(dir)
            .args(["--version", "v1.0.0", "--server", &env.server.base]);
        run(c, Duration::from_secs(120))
    };
    let out = publish(&tool);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The printed line is the go.sum line; check it against a zip built independently.
    let mut zip = std::io::Cursor::new(Vec::new());
    let created = intact_go::zip::create_from_dir(&tool, module, "v1.0.0", &mut zip).expect("zip");
    assert_eq!(stdout.trim(), format!("{module} v1.0.0 {}", created.h1));
    assert_eq!(env.stored("go-private", module), vec!["v1.0.0"]);
    let (status, _, served) = env.get(&format!("/go/go/{module}/@v/v1.0.0.zip"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        intact_go::dirhash::hash_zip(std::io::Cursor::new(&served)).expect("hash"),
        created.h1
    );
    let (_, text) = env.text(&format!("/go/go/{module}/@v/v1.0.0.mod"));
    assert_eq!(text, go_mod);
    let (_, text) = env.text(&format!("/go/go/{module}/@v/list"));
    assert_eq!(text, "v1.0.0\n");

    // Publishing the same content again is fine; changing a published version is not.
    let again = publish(&tool);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("identical"));
    std::fs::write(
        tool.join("tool.go"),
        "package tool\n\nfunc Hello() string { return \"changed\" }\n",
    )
    .expect("write");
    let changed = publish(&tool);
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert!(!changed.status.success(), "a changed re-publish must fail");
    assert!(
        stderr.contains("409") && stderr.contains("different content"),
        "{stderr}"
    );
    assert!(
        changed.stdout.is_empty(),
        "no go.sum line for a publish that failed: {}",
        String::from_utf8_lossy(&changed.stdout)
    );
    let (_, _, still) = env.get(&format!("/go/go/{module}/@v/v1.0.0.zip"));
    assert_eq!(still, served, "the published version did not change");

    // The endpoint refuses what is not a module zip, and non-hosted repos.
    env.rt.block_on(async {
        let post = |repo: &str, q: &str, body: Vec<u8>| {
            env.http
                .post(env.server.url(&format!("/go/{repo}/publish?{q}")))
                .body(body)
                .send()
        };
        let r = post(
            "go-private",
            "module=example.com/x&version=v1.0.0",
            b"not a zip".to_vec(),
        )
        .await
        .expect("post");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = post("go-private", "module=example.com/x&version=v1.0", zip.get_ref().clone())
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = post(
            "go-private",
            "module=example.com/x&version=v1.0.0",
            zip.get_ref().clone(),
        )
        .await
        .expect("post");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "the zip is for another module");
        let r = post(
            "go-http",
            "module=example.com/private/tool&version=v1.0.0",
            zip.get_ref().clone(),
        )
        .await
        .expect("post");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = post(
            "go",
            "module=example.com/private/tool&version=v1.0.0",
            zip.get_ref().clone(),
        )
        .await
        .expect("post");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    });

    // A consumer builds against the hosted module (and its proxied dependency) through the group.
    let Some(go) = need_go("go_hosted_publish_then_build_a_consumer (consumer build)") else {
        return;
    };
    let home = env.tmp.path().join("consumer-home");
    let app = home.join("consumer");
    std::fs::create_dir_all(&app).expect("mkdir");
    std::fs::write(app.join("go.mod"), format!("module example.com/consumer\n\ngo 1.19\n\nrequire {module} v1.0.0\n\nrequire example.com/util v1.1.0 // indirect\n")).expect("write");
    std::fs::write(
        app.join("main.go"),
        format!(
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"{module}\"\n)\n\nfunc main() {{ fmt.Println(tool.Hello()) }}\n"
        ),
    )
    .expect("write");
    let util_sums: String = env
        .proxy
        .sums
        .lines()
        .filter(|l| l.starts_with("example.com/util v1.1.0"))
        .map(|l| format!("{l}\n"))
        .collect();
    let sums = format!(
        "{module} v1.0.0 {}\n{module} v1.0.0/go.mod {}\n{util_sums}",
        created.h1,
        intact_go::dirhash::hash_go_mod(go_mod.as_bytes())
    );
    std::fs::write(app.join("go.sum"), sums).expect("write");
    let mut c = go_command(&go, &home, &env.goproxy("go"));
    c.current_dir(&app)
        .env("GOFLAGS", "-modcacherw -mod=readonly")
        .args(["build", "-o"])
        .arg(home.join("consumer-bin"))
        .arg(".");
    run_ok(c, "go build of the consumer");
    let out = run_ok(Command::new(home.join("consumer-bin")), "the consumer");
    assert_eq!(out.trim(), "private tool uses hello from util v1.1.0");
}

/// The go command, told no by a deny rule, stops with intact's reason (403 is not "not
/// here", so it does not try elsewhere); an offline repo serves what it stored and answers
/// 404, saying why, for the rest.
#[test]
fn go_rules_refuse_with_their_reason_and_offline_serves_only_what_is_stored() {
    let Some(go) = need_go("go_rules_refuse_with_their_reason_and_offline_serves_only_what_is_stored") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let proxy = build_proxy(tmp.path());
    let config = |settings: &str| {
        format!(
            r#"
[[repo]]
name = "go-ruled"
kind = "proxy"
format = "go"
upstream = "file://{}"
checksum_db = "off"
list_cache_seconds = 0
{settings}
"#,
            proxy.dir.display()
        )
    };
    let data = tmp.path().join("data");
    let download = |server: &Server, client: &str, target: &str| {
        let home = tmp.path().join(client);
        std::fs::create_dir_all(&home).expect("mkdir");
        let mut c = go_command(&go, &home, &server.url("/go/go-ruled"));
        c.current_dir(&home).args(["mod", "download", "-json", target]);
        let out = run(c, Duration::from_secs(300));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };

    let server = Server::start(&data, Some(&config(r#"deny = ["example.com/util@<v1.1.0"]"#)), &[]);
    let (ok, out) = download(&server, "denied", "example.com/util@v1.0.0");
    assert!(!ok, "a denied version downloaded: {out}");
    // With -json, go writes its error into JSON (quotes and `<` escaped).
    let error = serde_json::from_str::<Value>(&out)
        .ok()
        .and_then(|v| v["Error"].as_str().map(str::to_owned));
    let error = error.unwrap_or(out);
    assert!(
        error.contains("403 Forbidden")
            && error
                .contains(r#"example.com/util@v1.0.0 is denied by rule "example.com/util@<v1.1.0" of repo go-ruled"#),
        "go shows the rule: {error}"
    );
    let (ok, out) = download(&server, "allowed", "example.com/util@v1.1.0");
    assert!(ok && out.contains(r#""Version": "v1.1.0""#), "{out}");
    let (ok, out) = download(&server, "latest", "example.com/util@latest");
    assert!(ok && out.contains(r#""Version": "v1.1.0""#), "{out}");
    drop(server);

    let server = Server::start(&data, Some(&config(r#"network_mode = "offline""#)), &[]);
    let (ok, out) = download(&server, "offline-stored", "example.com/util@v1.1.0");
    assert!(ok, "a stored version is served offline: {out}");
    let (ok, out) = download(&server, "offline-missing", "example.com/lib/v2@v2.1.0");
    assert!(!ok, "offline, nothing is fetched: {out}");
    assert!(out.contains("404 Not Found") && out.contains("offline"), "{out}");
}
