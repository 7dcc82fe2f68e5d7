//! Three `intact serve` processes as replicas behind a load balancer: one PostgreSQL catalog
//! (a fresh database per test), one shared blob directory, and a counting fake Go upstream.
//! Cold requests spread over the replicas cost the upstream one request per file; SIGKILL of
//! the replica leading a slow fetch leaves another to complete it, with nothing partial; a
//! follower of `/events` on any replica sees every commit made on the others, in order.

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
name = "files"
kind = "hosted"

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

/// Publishes `name@version` (one file) through `base`'s artifact API.
async fn publish(http: &reqwest::Client, base: &str, name: &str, version: &str) {
    let txn: serde_json::Value = http
        .post(format!("{base}/api/v1/repos/files/transactions"))
        .json(&serde_json::json!({"name": name, "version": version, "wait_seconds": 30}))
        .send()
        .await
        .expect("begin")
        .error_for_status()
        .expect("begin status")
        .json()
        .await
        .expect("begin body");
    let id = txn["id"].as_str().expect("transaction id").to_owned();
    http.put(format!("{base}/api/v1/transactions/{id}/files/data.bin"))
        .body(format!("{name}@{version}"))
        .send()
        .await
        .expect("put")
        .error_for_status()
        .expect("put status");
    http.post(format!("{base}/api/v1/transactions/{id}/commit"))
        .send()
        .await
        .expect("commit")
        .error_for_status()
        .expect("commit status");
}

/// Follows `base`'s `/events` from the start until `want` commits were seen: (seq, name@version).
async fn follow(http: &reqwest::Client, base: &str, want: usize) -> Vec<(i64, String)> {
    let (mut after, mut seen) = (0i64, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < want {
        assert!(Instant::now() < deadline, "{base} saw only {seen:?}");
        let page: serde_json::Value = http
            .get(format!("{base}/api/v1/events?after={after}&wait_seconds=10"))
            .send()
            .await
            .expect("events")
            .json()
            .await
            .expect("events body");
        for e in page["events"].as_array().expect("events") {
            let seq = e["seq"].as_i64().expect("seq");
            assert!(seq > after, "{base}: event {seq} after {after}: out of order");
            after = seq;
            if e["kind"] == "committed" && e["repo"] == "files" {
                seen.push((
                    seq,
                    format!(
                        "{}@{}",
                        e["name"].as_str().unwrap_or(""),
                        e["version"].as_str().unwrap_or("")
                    ),
                ));
            }
        }
    }
    seen
}

/// Twelve commits spread over three replicas, published while a follower on every replica
/// long-polls `/events`: each follower sees all twelve, in one and the same order.
#[test]
fn every_replicas_event_follower_sees_the_commits_of_all_in_one_order() {
    let r = Replicas::start(3);
    let rt = harness::runtime();
    let bases: Vec<String> = (0..3).map(|i| r.base(i)).collect();
    let seen = rt.block_on(async {
        let followers: Vec<_> = bases
            .iter()
            .map(|b| {
                let (http, b) = (r.http.clone(), b.clone());
                tokio::spawn(async move { follow(&http, &b, 12).await })
            })
            .collect();
        let publishers: Vec<_> = (0..12)
            .map(|i| {
                let (http, b) = (r.http.clone(), bases[i % 3].clone());
                tokio::spawn(
                    async move { publish(&http, &b, &format!("app{}", i % 4), &format!("{}", i / 4 + 1)).await },
                )
            })
            .collect();
        for p in publishers {
            p.await.expect("publisher");
        }
        let mut seen = Vec::new();
        for f in followers {
            seen.push(f.await.expect("follower"));
        }
        seen
    });
    let mut all: Vec<String> = seen[0].iter().map(|(_, v)| v.clone()).collect();
    all.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("app{}@{}", i % 4, i / 4 + 1)).collect();
    expected.sort();
    assert_eq!(all, expected, "a commit is missing");
    assert_eq!(seen[1], seen[0], "replicas 0 and 1 saw different orders");
    assert_eq!(seen[2], seen[0], "replicas 0 and 2 saw different orders");
}
