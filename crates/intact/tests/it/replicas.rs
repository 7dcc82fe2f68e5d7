//! Three `intact serve` processes as replicas behind a load balancer, on the scale-out
//! engines: one PostgreSQL catalog (a fresh database per test), one bucket prefix in a real S3
//! server (Garage), a data dir of its own per replica (temp files only), a counting fake Go
//! upstream and a counting HTTP staging upstream. A hundred publishers racing for one version
//! over the replicas make exactly one; cold Go and staging requests spread over the replicas
//! cost the upstream one request per file; SIGKILL of the replica leading a slow fetch leaves
//! another to complete it, with nothing partial; a follower of `/events` on any replica sees
//! every commit made on the others, in order.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::go_fixtures::{Fault, HttpUpstream, Proxy, build_proxy};
use crate::harness::{self, Server};
use crate::staging as staging_fixtures;
use crate::torture::backend::Backend;

fn config(engines: &str, go_upstream: &str, staging_upstream: &str) -> String {
    format!(
        r#"{engines}
[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "go"
kind = "proxy"
format = "go"
upstream = "{go_upstream}"
checksum_db = "off"
fetch_timeout_seconds = 120

{staging}"#,
        staging = staging_fixtures::staging_repo(
            "builds",
            staging_upstream,
            "fetch_timeout_seconds = 120",
            staging_fixtures::ARTIFACTS
        ),
    )
}

struct Replicas {
    /// The replicas' data dirs and logs, and the upstreams' files.
    tmp: tempfile::TempDir,
    proxy: Proxy,
    upstream: HttpUpstream,
    staging_upstream: staging_fixtures::HttpUpstream,
    servers: Vec<Option<Server>>,
    http: reqwest::Client,
    /// Runs the staging upstream.
    rt: tokio::runtime::Runtime,
    // Dropped last: the servers are gone by then.
    _backend: Backend,
}

impl Replicas {
    fn start(n: usize) -> Replicas {
        let rt = harness::runtime();
        let backend = Backend::postgres_and_s3(&rt, "replicas");
        let tmp = tempfile::tempdir().expect("tempdir");
        let proxy = build_proxy(tmp.path());
        let upstream = HttpUpstream::start(proxy.dir.clone());
        let builds = tmp.path().join("builds-upstream");
        let staging_upstream = rt.block_on(staging_fixtures::HttpUpstream::start(&builds));
        staging_fixtures::populate_build(&builds);
        let text = config(&backend.config(), &upstream.base, &staging_upstream.url());
        let env = backend.env();
        let servers = (0..n)
            .map(|i| {
                let side = tmp.path().join(format!("replica{i}"));
                let data = tmp.path().join(format!("replica{i}-data"));
                Some(Server::start_with_env(&data, &side, Some(&text), &[], &env))
            })
            .collect();
        Replicas {
            tmp,
            proxy,
            upstream,
            staging_upstream,
            servers,
            http: harness::client(),
            rt,
            _backend: backend,
        }
    }

    /// The warnings and errors in every replica's log, for a failure message.
    fn troubles(&self) -> String {
        (0..self.servers.len())
            .map(|i| {
                let log = std::fs::read_to_string(self.tmp.path().join(format!("replica{i}.log"))).unwrap_or_default();
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .collect();
                format!("replica {i}:\n{}\n", lines.join("\n"))
            })
            .collect()
    }

    fn base(&self, i: usize) -> String {
        self.servers[i].as_ref().expect("replica alive").base.clone()
    }
}

/// GETs `path` on `base` in its own thread, with a runtime and a client of its own: a client
/// shared across runtimes may pick a pooled connection whose runtime is gone (reqwest then
/// fails the request with "runtime dropped the dispatch task", which no server caused).
fn get(base: &str, path: &str) -> std::thread::JoinHandle<(StatusCode, Vec<u8>)> {
    let url = format!("{base}{path}");
    std::thread::spawn(move || {
        harness::runtime().block_on(async move {
            match harness::client().get(&url).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    (status, resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
                }
                // The replica was killed under the request (or the connection failed: the
                // error is kept as the body, for the failure message).
                Err(e) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no answer: {e:?}").into_bytes(),
                ),
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
            let base = r.base(c % 3);
            std::thread::spawn(move || {
                ["info", "mod", "zip"].map(|f| {
                    get(&base, &format!("/go/go/{MODULE}/@v/{VERSION}.{f}"))
                        .join()
                        .expect("get")
                })
            })
        })
        .collect();
    for (c, client) in clients.into_iter().enumerate() {
        let [info, go_mod, zip] = client.join().expect("client");
        for (f, (status, body)) in [("info", &info), ("mod", &go_mod), ("zip", &zip)] {
            assert_eq!(
                *status,
                StatusCode::OK,
                "client {c}: .{f}: {}\n{}",
                String::from_utf8_lossy(body),
                r.troubles()
            );
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
    let leader = get(&r.base(0), &url);
    let deadline = Instant::now() + Duration::from_secs(60);
    while r.upstream.count(&zip_path) == 0 {
        assert!(Instant::now() < deadline, "the leader never asked upstream");
        std::thread::sleep(Duration::from_millis(20));
    }
    let follower = get(&r.base(1), &url);
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
        let (status, body) = get(&r.base(i), &url).join().expect("get");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r.proxy.zip_of(MODULE, VERSION), "replica {i}");
        let (status, info) = get(&r.base(i), &format!("/go/go/{MODULE}/@v/{VERSION}.info"))
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
    let txn: Value = http
        .post(format!("{base}/api/v1/repos/files/transactions"))
        .json(&json!({"name": name, "version": version, "wait_seconds": 30}))
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
        let page: Value = http
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
    let rt = &r.rt;
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

/// One publisher's attempt at `race@1` through `base`: `Some(content)` when its commit made the
/// version, `None` when another publisher held or had made it (409). Anything else fails.
async fn race_once(http: &reqwest::Client, base: &str, i: usize) -> Option<Vec<u8>> {
    let resp = http
        .post(format!("{base}/api/v1/repos/files/transactions"))
        .json(&json!({"name": "race", "version": "1", "metadata": {"publisher": i}}))
        .send()
        .await
        .expect("begin");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status == StatusCode::CONFLICT {
        return None;
    }
    assert_eq!(status, StatusCode::CREATED, "publisher {i}: begin: {v}");
    let id = v["id"].as_str().expect("transaction id").to_owned();
    let content = format!("publisher {i}'s payload").into_bytes();
    let resp = http
        .put(format!("{base}/api/v1/transactions/{id}/files/payload"))
        .body(content.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), StatusCode::CREATED, "publisher {i}: upload");
    let resp = http
        .post(format!("{base}/api/v1/transactions/{id}/commit"))
        .send()
        .await
        .expect("commit");
    match resp.status() {
        StatusCode::CREATED => Some(content),
        StatusCode::CONFLICT => None,
        other => panic!(
            "publisher {i}: commit answered {other}: {}",
            resp.text().await.unwrap_or_default()
        ),
    }
}

/// A hundred publishers of one version with different content, spread over three replicas
/// and released at once: exactly one commits, the other 99 are told 409, and every replica
/// reads back the winner's manifest and bytes.
#[test]
fn a_hundred_publishers_racing_over_three_replicas_make_exactly_one_version() {
    let r = Replicas::start(3);
    let bases: Vec<String> = (0..3).map(|i| r.base(i)).collect();
    let winners: Vec<(usize, Vec<u8>)> = r.rt.block_on(async {
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(100));
        let racers: Vec<_> = (0..100)
            .map(|i| {
                let (http, base, start) = (r.http.clone(), bases[i % 3].clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    race_once(&http, &base, i).await.map(|c| (i, c))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            winners.extend(racer.await.expect("racer"));
        }
        winners
    });
    assert_eq!(winners.len(), 1, "exactly one publisher commits race@1");
    let (winner, content) = &winners[0];
    let manifests: Vec<Value> = bases
        .iter()
        .map(|base| {
            r.rt.block_on(async {
                let versions: Value = r
                    .http
                    .get(format!("{base}/api/v1/repos/files/race/@versions"))
                    .send()
                    .await
                    .expect("list")
                    .json()
                    .await
                    .expect("list body");
                let listed: Vec<&str> = versions["versions"]
                    .as_array()
                    .expect("versions")
                    .iter()
                    .filter_map(|v| v["version"].as_str())
                    .collect();
                assert_eq!(listed, ["1"], "{base}: one version");
                let bytes = r
                    .http
                    .get(format!("{base}/api/v1/repos/files/race/@v/1/payload"))
                    .send()
                    .await
                    .expect("read")
                    .bytes()
                    .await
                    .expect("read body");
                assert_eq!(bytes.as_ref(), content.as_slice(), "{base}: the winner's bytes");
                r.http
                    .get(format!("{base}/api/v1/repos/files/race/@v/1"))
                    .send()
                    .await
                    .expect("manifest")
                    .json()
                    .await
                    .expect("manifest body")
            })
        })
        .collect();
    assert_eq!(manifests[0]["metadata"]["publisher"], json!(winner));
    assert_eq!(manifests[1], manifests[0], "replicas 0 and 1 read different manifests");
    assert_eq!(manifests[2], manifests[0], "replicas 0 and 2 read different manifests");
}

/// Cold staging requests for one artifact, three clients on each of three replicas, while the
/// upstream holds the download mid-stream: the upstream sees one download per file, every
/// client gets the same version, and every replica serves its bytes.
#[test]
fn cold_staging_over_three_replicas_costs_one_upstream_download_per_file() {
    let r = Replicas::start(3);
    let build = staging_fixtures::BUILD;
    let bin = format!("{build}/chromeos_R19_full_dev.bin");
    let json_file = format!("{build}/chromeos_R19_full_dev.bin.json");
    r.staging_upstream.close_gate(&bin);
    let bases: Vec<String> = (0..3).map(|i| r.base(i)).collect();
    let answers: Vec<(StatusCode, Value)> = r.rt.block_on(async {
        let clients: Vec<_> = (0..9)
            .map(|c| {
                let (http, base) = (r.http.clone(), bases[c % 3].clone());
                tokio::spawn(async move {
                    let resp = http
                        .post(format!("{base}/api/v1/repos/builds/stage"))
                        .json(&json!({"name": build, "artifacts": ["full_payload"]}))
                        .send()
                        .await
                        .expect("stage");
                    let status = resp.status();
                    (status, resp.json().await.unwrap_or(Value::Null))
                })
            })
            .collect();
        // Every replica's requests arrive while the one download is held.
        let deadline = Instant::now() + Duration::from_secs(60);
        while r.staging_upstream.gets(&bin) == 0 {
            assert!(Instant::now() < deadline, "nobody downloaded {bin}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        r.staging_upstream.open_gate(&bin);
        let mut answers = Vec::new();
        for c in clients {
            answers.push(c.await.expect("client"));
        }
        answers
    });
    let mut fingerprints = std::collections::BTreeSet::new();
    for (c, (status, v)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::OK, "client {c}: {v}");
        assert_eq!(v["items"][0]["state"], "staged", "client {c}: {v}");
        fingerprints.insert(v["items"][0]["fingerprint"].as_str().expect("fingerprint").to_owned());
    }
    assert_eq!(fingerprints.len(), 1, "every client got the same version");
    assert_eq!(r.staging_upstream.gets(&bin), 1, "one download of the payload");
    assert_eq!(r.staging_upstream.gets(&json_file), 1, "one download of its .json");
    let want = std::fs::read(r.tmp.path().join("builds-upstream").join(&bin)).expect("upstream file");
    for base in &bases {
        let bytes = r.rt.block_on(async {
            r.http
                .get(format!(
                    "{base}/api/v1/repos/builds/{build}/@v/full_payload/chromeos_R19_full_dev.bin"
                ))
                .send()
                .await
                .expect("read")
                .bytes()
                .await
                .expect("read body")
        });
        assert!(bytes.as_ref() == want.as_slice(), "{base} serves the staged bytes");
    }
    assert_eq!(r.staging_upstream.gets(&bin), 1, "served from the store after that");
}

/// A resumable upload started on one replica continues on another: the session lives in the
/// shared catalog and its pieces in the bucket, never on a replica's disk.
#[test]
fn a_resumable_upload_continues_on_another_replica() {
    let r = Replicas::start(2);
    let (a, b) = (r.base(0), r.base(1));
    let content = harness::pattern(42, (10 << 20) + 777);
    let split = (9 << 20) + 5;
    let sha: String = {
        use sha2::Digest as _;
        sha2::Sha256::digest(&content)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    r.rt.block_on(async {
        let http = &r.http;
        let t: Value = http
            .post(format!("{a}/api/v1/repos/files/transactions"))
            .json(&json!({"name": "moved", "version": "1"}))
            .send()
            .await
            .expect("txn")
            .json()
            .await
            .expect("json");
        let id = t["id"].as_str().expect("id").to_owned();
        let started = http
            .post(format!("{a}/api/v1/transactions/{id}/uploads"))
            .json(&json!({"path": "f.bin", "size": content.len(), "sha256": sha}))
            .send()
            .await
            .expect("start");
        assert_eq!(started.status(), StatusCode::CREATED);
        let location = started.headers()["location"].to_str().expect("ascii").to_owned();
        let first = http
            .patch(format!("{a}{location}"))
            .body(content[..split].to_vec())
            .send()
            .await
            .expect("first part on replica 0");
        assert_eq!(first.status(), StatusCode::ACCEPTED);
        let head = http
            .head(format!("{b}{location}"))
            .send()
            .await
            .expect("head on replica 1");
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers()["upload-offset"], split.to_string().as_str());
        let rest = http
            .patch(format!("{b}{location}"))
            .header(
                "content-range",
                format!("bytes {split}-{}/{}", content.len() - 1, content.len()),
            )
            .body(content[split..].to_vec())
            .send()
            .await
            .expect("rest on replica 1");
        assert_eq!(rest.status(), StatusCode::ACCEPTED, "{}", r.troubles());
        let staged: Value = http
            .put(format!("{b}{location}"))
            .send()
            .await
            .expect("complete")
            .json()
            .await
            .expect("json");
        assert_eq!(staged["sha256"], json!(sha), "{staged}");
        let commit = http
            .post(format!("{a}/api/v1/transactions/{id}/commit"))
            .send()
            .await
            .expect("commit");
        assert_eq!(commit.status(), StatusCode::CREATED);
    });
    let (status, got) = get(&b, "/api/v1/repos/files/moved/@v/1/f.bin").join().expect("get");
    assert_eq!(status, StatusCode::OK);
    assert!(got == content, "the bytes read back");
}
