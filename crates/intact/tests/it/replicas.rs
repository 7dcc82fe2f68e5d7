//! Three `intact serve` processes as replicas behind a load balancer: one PostgreSQL catalog
//! (a fresh database per test), one shared blob directory, and a counting fake Go upstream.
//! Cold requests spread over the replicas cost the upstream one request per file; SIGKILL of
//! the replica leading a slow fetch leaves another to complete it, with nothing partial.

use std::time::{Duration, Instant};

use intact_testkit::TestDatabase;
use reqwest::StatusCode;

use crate::go_fixtures::{Fault, HttpUpstream, Proxy, build_proxy};
use crate::harness::{self, Server};

fn config(db: &TestDatabase, upstream: &str) -> String {
    format!(
        r#"
[catalog]
url = "{url}"

[[repo]]
name = "go"
kind = "proxy"
format = "go"
upstream = "{upstream}"
fetch_timeout_seconds = 120
"#,
        url = db.url,
    )
}

struct Replicas {
    /// The shared data (blob) directory and the replicas' logs.
    _tmp: tempfile::TempDir,
    proxy: Proxy,
    upstream: HttpUpstream,
    servers: Vec<Option<Server>>,
    http: reqwest::Client,
    // Dropped last: the servers are gone by then.
    _db: TestDatabase,
}

impl Replicas {
    fn start(n: usize) -> Replicas {
        let rt = harness::runtime();
        let db = rt.block_on(TestDatabase::create());
        let tmp = tempfile::tempdir().expect("tempdir");
        let proxy = build_proxy(tmp.path());
        let upstream = HttpUpstream::start(proxy.dir.clone());
        let data = tmp.path().join("data");
        let text = config(&db, &upstream.base);
        let servers = (0..n)
            .map(|i| {
                let side = tmp.path().join(format!("replica{i}"));
                Some(Server::start_beside(&data, &side, Some(&text), &[]))
            })
            .collect();
        Replicas {
            _tmp: tmp,
            proxy,
            upstream,
            servers,
            http: harness::client(),
            _db: db,
        }
    }

    fn base(&self, i: usize) -> String {
        self.servers[i].as_ref().expect("replica alive").base.clone()
    }
}

/// GETs `path` on `base` (in its own thread: callers run many at once).
fn get(http: &reqwest::Client, base: &str, path: &str) -> std::thread::JoinHandle<(StatusCode, Vec<u8>)> {
    let (http, url) = (http.clone(), format!("{base}{path}"));
    std::thread::spawn(move || {
        harness::runtime().block_on(async move {
            match http.get(&url).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    (status, resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
                }
                // The replica was killed under the request.
                Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
            }
        })
    })
}

const MODULE: &str = "example.com/util";
const VERSION: &str = "v1.1.0";

/// Cold requests for one module version, three clients on each of three replicas, each asking
/// `.info`, `.mod`, `.zip` as the go command does: the upstream sees one request per file,
/// and every client gets the same bytes.
#[test]
fn cold_go_requests_over_three_replicas_cost_one_upstream_request_per_file() {
    let r = Replicas::start(3);
    // Slow enough that every replica's requests arrive while the first fetch runs.
    for f in ["info", "mod", "zip"] {
        r.upstream.fault(
            &format!("{MODULE}/@v/{VERSION}.{f}"),
            Fault::Slow(Duration::from_millis(800)),
        );
    }
    let fixture = &r.proxy.files[MODULE][VERSION];
    let clients: Vec<_> = (0..9)
        .map(|c| {
            let (http, base) = (r.http.clone(), r.base(c % 3));
            std::thread::spawn(move || {
                ["info", "mod", "zip"].map(|f| {
                    get(&http, &base, &format!("/go/go/{MODULE}/@v/{VERSION}.{f}"))
                        .join()
                        .expect("get")
                })
            })
        })
        .collect();
    for (c, client) in clients.into_iter().enumerate() {
        let [info, go_mod, zip] = client.join().expect("client");
        for (f, (status, _)) in [("info", &info), ("mod", &go_mod), ("zip", &zip)] {
            assert_eq!(*status, StatusCode::OK, "client {c}: .{f}");
        }
        assert_eq!(go_mod.1, fixture.go_mod, "client {c}: .mod bytes");
        assert_eq!(zip.1, r.proxy.zip_of(MODULE, VERSION), "client {c}: .zip bytes");
    }
    let counts = r.upstream.counts();
    println!("upstream requests: {counts:#?}");
    for f in ["info", "mod", "zip"] {
        assert_eq!(
            r.upstream.count(&format!("{MODULE}/@v/{VERSION}.{f}")),
            1,
            "the upstream saw more than one request for .{f}: {counts:?}"
        );
    }
}

/// SIGKILL of the replica leading a slow fetch: a replica that was waiting for it takes the
/// flight over once the dead leader's lease lapses, completes the fetch, and serves it; what
/// is stored is the whole version (nothing partial), served identically by every replica.
#[test]
fn a_replica_killed_while_leading_a_slow_fetch_is_taken_over() {
    let mut r = Replicas::start(3);
    let zip_path = format!("{MODULE}/@v/{VERSION}.zip");
    r.upstream.fault(&zip_path, Fault::Slow(Duration::from_secs(4)));
    let url = format!("/go/go/{MODULE}/@v/{VERSION}.zip");
    let leader = get(&r.http, &r.base(0), &url);
    let deadline = Instant::now() + Duration::from_secs(60);
    while r.upstream.count(&zip_path) == 0 {
        assert!(Instant::now() < deadline, "the leader never asked upstream");
        std::thread::sleep(Duration::from_millis(20));
    }
    let follower = get(&r.http, &r.base(1), &url);
    // Lets the follower join the flight (ordering only: were it late, it would lead a
    // flight of its own after the kill, and the checks below hold all the same).
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    r.servers[0].take().expect("leader").kill9();
    let _ = leader.join();
    let (status, body) = follower.join().expect("follower");
    println!(
        "the follower answered {:?} after the leader was killed",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, r.proxy.zip_of(MODULE, VERSION));
    assert_eq!(
        r.upstream.count(&zip_path),
        2,
        "one fetch by the dead leader, one by the follower"
    );
    for i in [1, 2] {
        let (status, body) = get(&r.http, &r.base(i), &url).join().expect("get");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r.proxy.zip_of(MODULE, VERSION), "replica {i}");
        let (status, info) = get(&r.http, &r.base(i), &format!("/go/go/{MODULE}/@v/{VERSION}.info"))
            .join()
            .expect("get");
        assert_eq!(
            status,
            StatusCode::OK,
            "replica {i}: the stored version lacks its .info"
        );
        assert!(!info.is_empty());
    }
    assert_eq!(r.upstream.count(&zip_path), 2, "served from the store after that");
}
