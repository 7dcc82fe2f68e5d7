//! Webhooks with the real binary and a receiver the test runs: every wanted event arrives,
//! in order, signed; a receiver that fails is retried until it recovers; what was not yet
//! delivered when the server is killed is delivered after it restarts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::harness::{self, Server};

/// What the receiver got: deliveries in arrival order.
#[derive(Default)]
struct Received {
    deliveries: Mutex<Vec<(HeaderMap, Value)>>,
    /// While set, every delivery is answered 503.
    failing: AtomicBool,
    /// Attempts answered 503.
    refused: AtomicUsize,
    /// Deliveries whose signature did not verify.
    bad_signatures: AtomicUsize,
    secret: Mutex<String>,
}

/// Starts the receiver on its own thread; its URL.
fn receiver(got: Arc<Received>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let rt = harness::runtime();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                    let got = got.clone();
                    async move {
                        if got.failing.load(Ordering::SeqCst) {
                            got.refused.fetch_add(1, Ordering::SeqCst);
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let secret = got.secret.lock().expect("lock").clone();
                        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
                        mac.update(&body);
                        let want = format!("sha256={}", hex_of(&mac.finalize().into_bytes()));
                        let sent = headers
                            .get("x-intact-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        if sent != want {
                            got.bad_signatures.fetch_add(1, Ordering::SeqCst);
                            return StatusCode::UNAUTHORIZED;
                        }
                        let event: Value = serde_json::from_slice(&body).expect("JSON body");
                        got.deliveries.lock().expect("lock").push((headers, event));
                        StatusCode::NO_CONTENT
                    }
                }),
            );
            let _ = axum::serve(listener, app).await;
        });
    });
    url
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn intact(server: &Server, args: &[&str]) -> (bool, String, String) {
    harness::cli(&server.base, None, args, &[])
}

/// Delivered events by seq (duplicates allowed: delivery is at least once).
fn delivered(got: &Received) -> BTreeMap<i64, Value> {
    got.deliveries
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, e)| (e["seq"].as_i64().expect("seq"), e.clone()))
        .collect()
}

const CONFIG: &str = r#"
[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "other"
kind = "hosted"
"#;

#[test]
fn hooks_deliver_every_wanted_event_in_order_through_failures_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(CONFIG), &[]);
    let got = Arc::new(Received::default());
    let url = receiver(got.clone());
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"a").expect("write");
    let file = file.to_str().expect("utf8").to_owned();

    // Bad hooks are refused, naming the problem.
    let (ok, _, err) = intact(&server, &["hooks", "create", "x", "--repo", "nope", "--url", &url]);
    assert!(!ok && err.contains("repo"), "{err}");
    let (ok, _, err) = intact(
        &server,
        &["hooks", "create", "x", "--repo", "files", "--url", "ftp://x"],
    );
    assert!(!ok && err.contains("url"), "{err}");
    let (ok, _, err) = intact(
        &server,
        &[
            "hooks",
            "create",
            "x",
            "--repo",
            "files",
            "--url",
            &url,
            "--events",
            "committed,exploded",
        ],
    );
    assert!(!ok && err.contains("exploded"), "{err}");

    let (ok, out, err) = intact(
        &server,
        &[
            "hooks",
            "create",
            "ci",
            "--repo",
            "files",
            "--url",
            &url,
            "--events",
            "committed,aborted",
        ],
    );
    assert!(ok, "{out}{err}");
    let secret = out.lines().last().expect("secret").trim().to_owned();
    assert_eq!(secret.len(), 64, "{out}");
    *got.secret.lock().expect("lock") = secret;

    // Three commits and a rollback in `files`, one commit in `other` (not this hook's).
    for v in ["1", "2", "3"] {
        let (ok, out, err) = intact(&server, &["publish", "files", "app", v, &file]);
        assert!(ok, "{out}{err}");
    }
    let (ok, out, err) = intact(&server, &["publish", "other", "app", "1", &file]);
    assert!(ok, "{out}{err}");
    let rt = harness::runtime();
    let http = harness::client();
    rt.block_on(async {
        let txn: Value = http
            .post(server.url("/api/v1/repos/files/transactions"))
            .json(&serde_json::json!({"name": "app", "version": "4"}))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        let id = txn["id"].as_str().expect("id");
        let resp = http
            .delete(server.url(&format!("/api/v1/transactions/{id}")))
            .send()
            .await
            .expect("abort");
        assert!(resp.status().is_success());
    });
    harness::wait_until("four deliveries", Duration::from_secs(30), || {
        delivered(&got).len() == 4
    });
    let events = delivered(&got);
    let kinds: Vec<(&str, &str)> = events
        .values()
        .map(|e| (e["kind"].as_str().unwrap_or("?"), e["version"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(
        kinds,
        [
            ("committed", "1"),
            ("committed", "2"),
            ("committed", "3"),
            ("aborted", "4")
        ]
    );
    assert!(events.values().all(|e| e["repo"] == "files" && e["hook"] == "ci"));
    {
        let deliveries = got.deliveries.lock().expect("lock");
        let arrival: Vec<i64> = deliveries.iter().map(|(_, e)| e["seq"].as_i64().unwrap_or(0)).collect();
        let mut sorted = arrival.clone();
        sorted.sort_unstable();
        assert_eq!(arrival, sorted, "delivered in the log's order");
        let (headers, first) = &deliveries[0];
        assert_eq!(headers["x-intact-event"], "committed");
        assert_eq!(
            headers["x-intact-delivery"].to_str().expect("ascii"),
            format!("ci:{}", first["seq"])
        );
    }
    assert_eq!(got.bad_signatures.load(Ordering::SeqCst), 0);

    // The receiver fails: the next event is retried, and not skipped.
    got.failing.store(true, Ordering::SeqCst);
    let (ok, out, err) = intact(&server, &["publish", "files", "app", "5", &file]);
    assert!(ok, "{out}{err}");
    harness::wait_until("a refused attempt", Duration::from_secs(30), || {
        got.refused.load(Ordering::SeqCst) >= 1
    });
    let (ok, out, _) = intact(&server, &["hooks", "list"]);
    assert!(ok);
    assert!(out.contains("failing") && out.contains("503"), "{out}");

    // Killed while the delivery is outstanding; the restarted server delivers it once the
    // receiver is back.
    server.kill9();
    got.failing.store(false, Ordering::SeqCst);
    let server = Server::start(&data, Some(CONFIG), &[]);
    harness::wait_until("the event after the restart", Duration::from_secs(60), || {
        delivered(&got).values().any(|e| e["version"] == "5")
    });
    let (ok, out, _) = intact(&server, &["hooks", "list", "--json"]);
    assert!(ok);
    let hook: Value = serde_json::from_str(out.lines().next().expect("a hook")).expect("json");
    assert_eq!(hook["failures"], 0, "{hook}");
    assert!(hook["delivered"].as_u64().unwrap_or(0) >= 5, "{hook}");
    assert!(hook.get("secret").is_none(), "the secret is never shown again");

    // Deleted: nothing more is delivered.
    let (ok, _, err) = intact(&server, &["hooks", "delete", "ci"]);
    assert!(ok, "{err}");
    let before = got.deliveries.lock().expect("lock").len();
    let (ok, out, err) = intact(&server, &["publish", "files", "app", "6", &file]);
    assert!(ok, "{out}{err}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(got.deliveries.lock().expect("lock").len(), before);
}

/// Two replicas on one PostgreSQL catalog and one S3 bucket, publishes going to both: every
/// commit is delivered, in commit order, by whichever replica holds the hook. The first
/// replica runs alone at first, so it takes the hook; when it is killed, the other takes the
/// hook over (once the dead one's 30 s lease has run out) and delivers what followed:
/// nothing is lost, nothing arrives out of order.
#[test]
fn two_replicas_deliver_each_event_in_order_and_one_takes_over_when_the_other_dies() {
    let rt = harness::runtime();
    let backend = crate::torture::backend::Backend::postgres_and_s3(&rt, "hooks_replicas");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("{}\n{CONFIG}", backend.config());
    let env = backend.env();
    let start = |i: usize| {
        let side = dir.path().join(format!("replica{i}"));
        let data = dir.path().join(format!("replica{i}-data"));
        Some(Server::start_with_env(&data, &side, Some(&text), &[], &env))
    };
    let mut servers: Vec<Option<Server>> = vec![start(0)];
    let base = |servers: &[Option<Server>], i: usize| servers[i].as_ref().expect("alive").base.clone();
    let got = Arc::new(Received::default());
    let url = receiver(got.clone());
    let secret = "0123456789abcdef0123456789abcdef";
    *got.secret.lock().expect("lock") = secret.to_owned();
    let http = harness::client();
    let publish = |base: String, version: String| {
        let http = http.clone();
        rt.block_on(async move {
            let txn: Value = http
                .post(format!("{base}/api/v1/repos/files/transactions"))
                .json(&serde_json::json!({"name": "app", "version": version}))
                .send()
                .await
                .expect("begin")
                .json()
                .await
                .expect("begin body");
            let id = txn["id"].as_str().expect("transaction id");
            let resp = http
                .put(format!("{base}/api/v1/transactions/{id}/files/a.txt"))
                .body(version.clone())
                .send()
                .await
                .expect("upload");
            assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
            let resp = http
                .post(format!("{base}/api/v1/transactions/{id}/commit"))
                .send()
                .await
                .expect("commit");
            assert_eq!(
                resp.status(),
                reqwest::StatusCode::CREATED,
                "{}",
                resp.text().await.unwrap_or_default()
            );
        });
    };
    rt.block_on(async {
        let resp = http
            .post(format!("{}/api/v1/hooks", base(&servers, 0)))
            .json(&serde_json::json!({"name": "ci", "repo": "files", "url": url, "secret": secret}))
            .send()
            .await
            .expect("create hook");
        assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    });
    for v in 1..=4 {
        publish(base(&servers, 0), v.to_string());
    }
    harness::wait_until("4 deliveries", Duration::from_secs(30), || delivered(&got).len() >= 4);
    servers.push(start(1));
    for v in 5..=8 {
        publish(base(&servers, v % 2), v.to_string());
    }
    harness::wait_until("8 deliveries", Duration::from_secs(30), || delivered(&got).len() >= 8);

    // Killed: the survivor takes the hook over once the dead one's lease has run out.
    servers[0].take().expect("replica 0").kill9();
    for v in 9..=12 {
        publish(base(&servers, 1), v.to_string());
    }
    harness::wait_until("12 deliveries after the kill", Duration::from_secs(75), || {
        delivered(&got).len() >= 12
    });
    assert_eq!(got.bad_signatures.load(Ordering::SeqCst), 0);
    let arrivals: Vec<i64> = got
        .deliveries
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, e)| e["seq"].as_i64().expect("seq"))
        .collect();
    // At least once, in order: a redelivery after a takeover repeats the last event, never
    // goes further back.
    assert!(arrivals.windows(2).all(|w| w[0] <= w[1]), "out of order: {arrivals:?}");
    let versions: Vec<String> = delivered(&got)
        .values()
        .map(|e| e["version"].as_str().expect("version").to_owned())
        .collect();
    let expected: Vec<String> = (1..=12).map(|v: usize| v.to_string()).collect();
    assert_eq!(versions, expected, "every commit once, in commit order");
    drop(servers);
}
