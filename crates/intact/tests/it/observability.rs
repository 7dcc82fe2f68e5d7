//! What operators see, with the real binary: an access line per request (naming the token,
//! carrying the request id the answer carries), a line per commit and rollback, the JSON log
//! format, and the Prometheus metrics on /metrics agreeing with what was done.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{self, BIN, Server};

/// The value of the sample `series` (name with its labels, exactly as rendered) in a
/// Prometheus text exposition; `None` when absent.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Waits until the server's log (written by a thread of its own) has a line satisfying `f`.
fn log_line(log: &Path, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| f(l)) {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "no log line {what}; log:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metrics(rt: &tokio::runtime::Runtime, http: &reqwest::Client, server: &Server) -> String {
    rt.block_on(async {
        let resp = http.get(server.url("/metrics")).send().await.expect("scrape");
        assert_eq!(resp.status(), StatusCode::OK);
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "content type {ct}");
        resp.text().await.expect("body")
    })
}

#[test]
fn access_lines_commit_lines_request_ids_and_metrics_agree_with_what_happened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, None, &[]);
    let log = data.with_extension("log");
    let rt = harness::runtime();
    let http = harness::client();

    // A token, so the access line can name it.
    let out = Command::new(BIN)
        .args(["token", "create", "ops-bot", "--scope", "*:admin", "--data-dir"])
        .arg(&data)
        .output()
        .expect("token create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let secret = stdout.lines().last().expect("secret").trim().to_owned();
    let auth = format!("Bearer {secret}");

    let before = metrics(&rt, &http, &server);
    let count = |text: &str, series: &str| sample(text, series).unwrap_or(0.0);

    rt.block_on(async {
        // A version published with one open transaction left aside, and one rolled back.
        let create = |version: &str| {
            http.post(server.url("/api/v1/repos/files/transactions"))
                .header("authorization", &auth)
                .json(&json!({"name": "obs", "version": version}))
                .send()
        };
        let resp = create("1.0").await.expect("create");
        assert_eq!(resp.status(), StatusCode::CREATED);
        let txn: Value = resp.json().await.expect("json");
        let id = txn["id"].as_str().expect("id").to_owned();
        let resp = http
            .put(server.url(&format!("/api/v1/transactions/{id}/files/a.txt")))
            .header("authorization", &auth)
            .body(vec![b'x'; 1000])
            .send()
            .await
            .expect("put");
        assert_eq!(resp.status(), StatusCode::CREATED);
        let resp = http
            .post(server.url(&format!("/api/v1/transactions/{id}/commit")))
            .header("authorization", &auth)
            .header("x-request-id", "commit-7")
            .send()
            .await
            .expect("commit");
        assert_eq!(resp.status(), StatusCode::CREATED);

        let aborted = create("2.0")
            .await
            .expect("create")
            .json::<Value>()
            .await
            .expect("json");
        let aborted = aborted["id"].as_str().expect("id").to_owned();
        let resp = http
            .delete(server.url(&format!("/api/v1/transactions/{aborted}")))
            .header("authorization", &auth)
            .send()
            .await
            .expect("abort");
        assert!(resp.status().is_success(), "{}", resp.status());
        let open = create("3.0").await.expect("create");
        assert_eq!(open.status(), StatusCode::CREATED);

        // A read with the caller's own request id: echoed, and in the access line.
        let resp = http
            .get(server.url("/api/v1/repos/files/obs/@v/1.0/a.txt"))
            .header("authorization", &auth)
            .header("x-request-id", "trace-42.a")
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-request-id"], "trace-42.a");
        assert_eq!(resp.bytes().await.expect("body").len(), 1000);

        // An id that could forge a log line or a header is replaced by one made here.
        let resp = http
            .get(server.url("/api/v1/repos/files/obs/@v/1.0/a.txt"))
            .header("authorization", &auth)
            .header("x-request-id", "evil id\"=1")
            .send()
            .await
            .expect("get");
        let made = resp.headers()["x-request-id"].to_str().expect("ascii").to_owned();
        assert_eq!(made.len(), 16, "{made}");
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");

        // Refused before any handler runs: still logged, still counted.
        let resp = http
            .get(server.url("/api/v1/repos/files/obs/@v/1.0/a.txt"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().contains_key("x-request-id"));
    });

    let line = log_line(&log, "for the read with its own id", |l| {
        l.contains("request_id=trace-42.a")
    });
    for field in [
        "intact::access",
        "method=GET",
        "path=/api/v1/repos/files/obs/@v/1.0/a.txt",
        "route=/api/v1/repos/{repo}/{*rest}",
        "status=200",
        "bytes_out=1000",
        "token=ops-bot",
        "client=127.0.0.1",
        "complete=true",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    let put = log_line(&log, "for the upload", |l| {
        l.contains("intact::access") && l.contains("method=PUT")
    });
    assert!(put.contains("bytes_in=1000") && put.contains("status=201"), "{put}");
    let committed = log_line(&log, "for the commit", |l| l.contains("version committed"));
    // Lines written while a request is handled carry its id, so they can be joined with
    // its access line.
    for field in [
        "repo=files",
        "name=obs",
        "version=1.0",
        "files=1",
        "bytes=1000",
        "request_id=commit-7",
    ] {
        assert!(committed.contains(field), "{field} missing from {committed}");
    }
    log_line(&log, "for the rollback", |l| {
        l.contains("transaction ended without a version") && l.contains("how=aborted")
    });
    log_line(&log, "for the refused read", |l| {
        l.contains("status=401") && l.contains("token=-")
    });

    let after = metrics(&rt, &http, &server);
    let grew = |series: &str| count(&after, series) - count(&before, series);
    let read = "intact_http_requests_total{route=\"/api/v1/repos/{repo}/{*rest}\",method=\"GET\",status=\"200\"}";
    assert_eq!(grew(read), 2.0, "two reads answered 200");
    let refused = "intact_http_requests_total{route=\"/api/v1/repos/{repo}/{*rest}\",method=\"GET\",status=\"401\"}";
    assert_eq!(grew(refused), 1.0);
    assert_eq!(grew("intact_commits_total{outcome=\"committed\"}"), 1.0);
    assert_eq!(grew("intact_transactions_ended_total{how=\"aborted\"}"), 1.0);
    assert_eq!(grew("intact_commit_duration_seconds_count"), 1.0);
    assert_eq!(
        grew("intact_http_received_bytes_total{route=\"/api/v1/transactions/{id}/files/{*path}\"}"),
        1000.0
    );
    assert!(grew("intact_http_sent_bytes_total{route=\"/api/v1/repos/{repo}/{*rest}\"}") >= 2000.0);
    assert_eq!(
        sample(&after, "intact_open_transactions"),
        Some(1.0),
        "3.0 is still open"
    );
    assert_eq!(sample(&after, "intact_catalog_up"), Some(1.0));
    assert!(sample(&after, "intact_data_dir_free_bytes").unwrap_or(0.0) > 0.0);
    assert!(
        after.contains("# HELP intact_http_requests_total"),
        "help texts are rendered"
    );
}

#[test]
fn a_download_the_client_abandons_is_logged_as_incomplete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, None, &[]);
    let log = data.with_extension("log");
    let rt = harness::runtime();
    let http = harness::client();
    const SIZE: usize = 64 << 20;
    rt.block_on(async {
        let txn: Value = http
            .post(server.url("/api/v1/repos/files/transactions"))
            .json(&json!({"name": "big", "version": "1"}))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        let id = txn["id"].as_str().expect("id").to_owned();
        let put = http
            .put(server.url(&format!("/api/v1/transactions/{id}/files/big.bin")))
            .body(vec![7u8; SIZE])
            .send()
            .await
            .expect("put");
        assert_eq!(put.status(), StatusCode::CREATED);
        let commit = http
            .post(server.url(&format!("/api/v1/transactions/{id}/commit")))
            .send()
            .await
            .expect("commit");
        assert_eq!(commit.status(), StatusCode::CREATED);
    });

    // A whole download of a streamed file (past the small-file cache) is complete: hyper
    // stops at its Content-Length without polling the body to its end.
    let whole = rt.block_on(async {
        let resp = http
            .get(server.url("/api/v1/repos/files/big/@v/1/big.bin"))
            .header("x-request-id", "whole-download")
            .send()
            .await
            .expect("get");
        resp.bytes().await.expect("body").len()
    });
    assert_eq!(whole, SIZE);
    let line = log_line(&log, "for the whole download", |l| {
        l.contains("request_id=whole-download")
    });
    assert!(
        line.contains("complete=true") && line.contains(&format!("bytes_out={SIZE}")),
        "{line}"
    );

    // A client that leaves while the answer is still being worked out (a long poll): logged
    // as 499, not forgotten.
    let mut poll = TcpStream::connect(server.base.trim_start_matches("http://")).expect("connect");
    write!(
        poll,
        "GET /api/v1/events?after=999999&wait_seconds=60 HTTP/1.1\r\nHost: x\r\nX-Request-Id: left-early\r\n\r\n"
    )
    .expect("send");
    std::thread::sleep(Duration::from_millis(500));
    drop(poll);
    let line = log_line(&log, "for the request whose client left", |l| {
        l.contains("request_id=left-early")
    });
    assert!(line.contains("status=499") && line.contains("complete=false"), "{line}");

    // Read the head and a little of the body, then hang up.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).expect("connect");
    write!(
        conn,
        "GET /api/v1/repos/files/big/@v/1/big.bin HTTP/1.1\r\nHost: x\r\nX-Request-Id: hang-up\r\n\r\n"
    )
    .expect("send");
    let mut buf = vec![0u8; 64 << 10];
    let n = conn.read(&mut buf).expect("read");
    assert!(n > 0);
    drop(conn);

    let line = log_line(&log, "for the abandoned download", |l| l.contains("request_id=hang-up"));
    assert!(line.contains("complete=false") && line.contains("status=200"), "{line}");
    let sent: u64 = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("bytes_out="))
        .and_then(|v| v.parse().ok())
        .expect("bytes_out");
    assert!(
        sent < SIZE as u64,
        "logged {sent} bytes sent of {SIZE}: the line says what really went out"
    );
    let text = metrics(&rt, &http, &server);
    assert!(
        sample(
            &text,
            "intact_http_abandoned_total{route=\"/api/v1/repos/{repo}/{*rest}\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
}

/// Opens a transaction for `name` and aborts it with request id `request_id` (the abort writes
/// a commit-target line while the request is handled).
async fn open_and_abort(http: &reqwest::Client, server: &Server, name: &str, request_id: &str) {
    let resp = http
        .post(server.url("/api/v1/repos/files/transactions"))
        .json(&json!({"name": name, "version": "1"}))
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let txn: Value = resp.json().await.expect("json");
    let id = txn["id"].as_str().expect("id").to_owned();
    let resp = http
        .delete(server.url(&format!("/api/v1/transactions/{id}")))
        .header("x-request-id", request_id)
        .send()
        .await
        .expect("abort");
    assert!(resp.status().is_success(), "{}", resp.status());
}

/// Under a filter that keeps commit lines and little else (one operations.md suggests), those
/// lines still name their request.
#[test]
fn lines_name_their_request_under_a_narrow_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let filter = [("INTACT_LOG".to_owned(), "warn,intact::commit=info".to_owned())];
    let server = Server::start_with_env(&data, &data, None, &[], &filter);
    let rt = harness::runtime();
    let http = harness::client();
    rt.block_on(async {
        open_and_abort(&http, &server, "narrow", "narrow-1").await;
    });
    let line = log_line(&data.with_extension("log"), "for the rollback", |l| {
        l.contains("transaction ended without a version")
    });
    assert!(line.contains("request_id=narrow-1"), "{line}");
}

#[test]
fn json_log_lines_are_one_object_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, None, &["--log-format", "json"]);
    let log = data.with_extension("log");
    let rt = harness::runtime();
    let http = harness::client();
    rt.block_on(async {
        let resp = http
            .get(server.url("/api/v1/repos/files/none/@v/1/a"))
            .header("x-request-id", "json-1")
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        open_and_abort(&http, &server, "logged", "json-2").await;
    });
    let line = log_line(&log, "for the request", |l| l.contains("json-1"));
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["target"], "intact::access");
    assert_eq!(v["status"], 404);
    assert_eq!(v["request_id"], "json-1");
    assert_eq!(v["route"], "/api/v1/repos/{repo}/{*rest}");
    // A line written while a request was handled names the request (its span).
    let line = log_line(&log, "for the rollback", |l| {
        l.contains("transaction ended without a version")
    });
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["how"], "aborted", "{line}");
    assert_eq!(v["span"]["request_id"], "json-2", "{line}");
    let text = std::fs::read_to_string(&log).expect("log");
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"));
    }
}
