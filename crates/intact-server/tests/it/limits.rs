//! `[limits]` against the real server: each limit is hit and answered with its status, code
//! and a message naming the configuration key, and what a refused request sent is not
//! stored. Rates per token are unit-tested in `limits/rate.rs` (no authentication layer sets
//! a token in this suite).

use bytes::Bytes;
use intact_server::Config;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::{RawResponse, Server, assert_error, json_of, raw_exchange};

/// A server whose `[limits]` section is `limits` (everything else the embedded default).
async fn server_with(limits: &str) -> Server {
    let config = Config::from_toml(&format!("[limits]\n{limits}\n")).expect("config");
    Server::start_with(config).await
}

/// Asserts a limit's refusal: status, code, the field at fault, and the key in the message.
#[track_caller]
fn assert_limit(got: &(StatusCode, Value), status: StatusCode, code: &str, field: Option<&str>, key: &str) {
    assert_error(got, status, code, field);
    assert_eq!(got.1["limit"], key, "{}", got.1);
    let message = got.1["message"].as_str().unwrap_or_default();
    assert!(message.contains(key), "the message names {key}: {message}");
}

async fn staged_paths(s: &Server, txn: &str) -> Vec<String> {
    let v = s.txn(txn).await;
    let mut paths: Vec<String> = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_owned())
        .collect();
    paths.sort();
    paths
}

async fn publish_form(s: &Server, form: Form) -> (StatusCode, Value) {
    let resp = s
        .http
        .post(s.url("/api/v1/repos/files/publish"))
        .multipart(form)
        .send()
        .await
        .expect("publish");
    json_of(resp).await
}

/// A body sent in chunks without `Content-Length`, so only counting can stop it.
fn chunked(bytes: Vec<u8>) -> reqwest::Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> = bytes.chunks(16).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_json_bodies_over_their_limits_are_413_and_open_nothing() {
    let s = server_with("max_body_bytes = 1024\nmax_metadata_bytes = 200").await;

    let big_metadata = json!({"name": "m", "version": "1", "metadata": {"notes": "x".repeat(300)}});
    let got = s.create(big_metadata).await;
    assert_limit(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        Some("metadata"),
        "limits.max_metadata_bytes",
    );

    let big_body = json!({"name": "m", "version": "1", "idempotency_key": "k".repeat(2000)});
    let got = s.create(big_body).await;
    assert_limit(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        Some("body"),
        "limits.max_body_bytes",
    );
    assert!(
        got.1["message"].as_str().unwrap_or_default().contains("1024"),
        "{}",
        got.1
    );

    // Neither refusal opened a transaction: the version is free, and metadata at the limit
    // is taken.
    let (id, _) = s
        .open(json!({"name": "m", "version": "1", "metadata": {"notes": "x".repeat(150)}}))
        .await;
    let (status, v) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_max_file_bytes_is_413_and_not_staged() {
    let s = server_with("max_file_bytes = 100").await;
    let (id, _) = s.open(json!({"name": "f", "version": "1"})).await;

    // Refused from its Content-Length, before a byte is read.
    let got = s.put(&id, "declared.bin", vec![7u8; 101]).await;
    assert_limit(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        Some("file"),
        "limits.max_file_bytes",
    );
    // Refused while streaming, when it says no length.
    let got = s.put(&id, "streamed.bin", chunked(vec![7u8; 101])).await;
    assert_limit(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        Some("file"),
        "limits.max_file_bytes",
    );
    assert!(staged_paths(&s, &id).await.is_empty(), "a refused file is not staged");

    // At the limit, either way, it is taken.
    let (status, v) = s.put(&id, "exact.bin", vec![7u8; 100]).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, v) = s.put(&id, "exact-streamed.bin", chunked(vec![8u8; 100])).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(staged_paths(&s, &id).await, ["exact-streamed.bin", "exact.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_takes_at_most_max_files_paths() {
    let s = server_with("max_files_per_transaction = 2").await;
    let (id, _) = s.open(json!({"name": "many", "version": "1"})).await;
    for path in ["a", "b"] {
        let (status, v) = s.put(&id, path, path.as_bytes().to_vec()).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let got = s.put(&id, "c", b"c".to_vec()).await;
    assert_limit(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_files",
        Some("files"),
        "limits.max_files_per_transaction",
    );
    assert_eq!(got.1["max"], 2, "{}", got.1);
    // Replacing a staged path adds none, so it is still allowed.
    let (status, v) = s.put(&id, "b", b"b2".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(staged_paths(&s, &id).await, ["a", "b"]);
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["files"].as_array().map(Vec::len), Some(2), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_leaves_no_version() {
    let s = server_with(
        "max_body_bytes = 1024\nmax_file_bytes = 100\nmax_metadata_bytes = 200\nmax_files_per_transaction = 2",
    )
    .await;
    let form = || Form::new().text("name", "p").text("version", "1");
    let file = |name: &str, len: usize| Part::bytes(vec![1u8; len]).file_name(name.to_owned());

    let got = publish_form(&s, form().part("big.bin", file("big.bin", 101))).await;
    assert_limit(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        Some("file"),
        "limits.max_file_bytes",
    );

    let three = form()
        .part("a", file("a", 1))
        .part("b", file("b", 1))
        .part("c", file("c", 1));
    let got = publish_form(&s, three).await;
    assert_limit(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_files",
        Some("files"),
        "limits.max_files_per_transaction",
    );

    let long_field = Form::new()
        .text("name", "p")
        .text("version", "1")
        .text("idempotency_key", "k".repeat(1025));
    let got = publish_form(&s, long_field).await;
    assert_limit(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        Some("idempotency_key"),
        "limits.max_body_bytes",
    );

    let big_metadata = form().text("metadata", json!({"notes": "x".repeat(300)}).to_string());
    let got = publish_form(&s, big_metadata).await;
    assert_limit(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        Some("metadata"),
        "limits.max_metadata_bytes",
    );

    assert!(s.versions("p").await.is_empty(), "a refused publish leaves no version");
    // Nor a lock: the same publish within the limits goes through.
    let got = publish_form(&s, form().part("a", file("a", 100)).part("b", file("b", 1))).await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert_eq!(s.versions("p").await, ["1"]);
}

/// A module zip of `example.com/m@v1.0.0` with a go.mod and `extra` more files.
fn module_zip(dir: &std::path::Path, extra: usize) -> Vec<u8> {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("go.mod"), "module example.com/m\n").expect("write go.mod");
    for i in 0..extra {
        std::fs::write(dir.join(format!("f{i}.go")), "package m\n").expect("write");
    }
    let mut zip = std::io::Cursor::new(Vec::new());
    intact_go::zip::create_from_dir(dir, "example.com/m", "v1.0.0", &mut zip).expect("zip");
    zip.into_inner()
}

async fn go_publish(s: &Server, zip: Vec<u8>) -> (StatusCode, Value) {
    let resp = s
        .http
        .post(s.url("/go/go-private/publish?module=example.com/m&version=v1.0.0"))
        .body(zip)
        .send()
        .await
        .expect("go publish");
    json_of(resp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_publish_keeps_the_file_limits() {
    let scratch = tempfile::tempdir().expect("scratch");
    let zip = module_zip(&scratch.path().join("m"), 3);

    let s = server_with(&format!("max_file_bytes = {}", zip.len() - 1)).await;
    let got = go_publish(&s, zip.clone()).await;
    assert_limit(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        Some("file"),
        "limits.max_file_bytes",
    );
    assert!(!info_status(&s).await.is_success(), "nothing was published");

    // go.mod and three files: four in the zip.
    let s = server_with("max_files_per_transaction = 3").await;
    let got = go_publish(&s, zip.clone()).await;
    assert_limit(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_files",
        Some("files"),
        "limits.max_files_per_transaction",
    );
    assert!(!info_status(&s).await.is_success(), "nothing was published");

    let s = server_with("max_files_per_transaction = 4").await;
    let got = go_publish(&s, zip).await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert_eq!(info_status(&s).await, StatusCode::OK);
}

async fn info_status(s: &Server) -> StatusCode {
    s.http
        .get(s.url("/go/go-private/example.com/m/@v/v1.0.0.info"))
        .send()
        .await
        .expect("info")
        .status()
}

async fn exchange(s: &Server, request: &[u8]) -> RawResponse {
    let (answer, buf) = raw_exchange(s.addr, request).await;
    answer.unwrap_or_else(|| panic!("unparseable response: {:?}", String::from_utf8_lossy(&buf)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_at_the_header_limit_with_the_longest_url_is_answered_by_intact() {
    let s = server_with("max_header_bytes = 1024").await;
    // Headers that add up to the limit (names and values), and a URL as long as hyper takes:
    // the connection's buffer has room for both, so intact answers, not the HTTP library.
    // (65,520 bytes: with a room of 32 KiB this head got hyper's bare 431.)
    let url = format!("/api/v1/repos/files/{}", "n".repeat(65_500));
    let host = "Host: 127.0.0.1\r\n";
    let used = "host".len() + "127.0.0.1".len() + "connection".len() + "close".len() + "x-padding".len();
    let padding = "p".repeat(1024 - used);
    let head = format!("GET {url} HTTP/1.1\r\n{host}X-Padding: {padding}\r\nConnection: close\r\n\r\n");
    let r = exchange(&s, head.as_bytes()).await;
    assert_ne!(r.status, 431, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.json().is_some(),
        "intact's own JSON answer: {}",
        String::from_utf8_lossy(&r.body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_max_header_bytes_are_431_in_each_front_ends_format() {
    let s = server_with("max_header_bytes = 1024").await;
    let padding = "p".repeat(1100);
    let request = |target: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {padding}\r\nConnection: close\r\n\r\n")
    };
    let r = exchange(&s, request("/api/v1/repos").as_bytes()).await;
    assert_eq!(r.status, 431);
    let v = r.json().expect("JSON on the API");
    assert_eq!(v["error"], "too_large", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limits.max_header_bytes"),
        "{v}"
    );

    let r = exchange(&s, request("/go/go-private/example.com/m/@v/list").as_bytes()).await;
    assert_eq!(r.status, 431);
    assert!(
        r.header("content-type").is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        r.headers
    );
    assert!(String::from_utf8_lossy(&r.body).contains("limits.max_header_bytes"));

    // Under the limit, served.
    let small = "GET /api/v1/repos HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: pp\r\nConnection: close\r\n\r\n";
    assert_eq!(exchange(&s, small.as_bytes()).await.status, 200);
}

/// Sends `request` until the rate refuses one (a bucket of one a second and a small burst
/// cannot let 50 through unless the test took most of a minute); returns that refusal.
async fn until_refused(request: impl Fn() -> reqwest::RequestBuilder) -> reqwest::Response {
    for _ in 0..50 {
        let resp = request().send().await.expect("request");
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            return resp;
        }
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    panic!("50 requests passed a rate of 1 a second");
}

fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_rate_an_address_gets_429_with_retry_after() {
    let s = server_with("rate_per_address = { per_second = 1, burst = 3 }").await;
    let refused = until_refused(|| s.http.get(s.url("/api/v1/repos"))).await;
    assert!(
        retry_after(&refused).is_some_and(|s| s >= 1),
        "Retry-After in whole seconds"
    );
    let got = json_of(refused).await;
    assert_limit(
        &got,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        None,
        "limits.rate_per_address",
    );
    assert_eq!(got.1["retryable"], true, "{}", got.1);

    // The Go protocol answers text/plain.
    let refused = until_refused(|| s.http.get(s.url("/go/go-private/example.com/m/@v/list"))).await;
    assert!(retry_after(&refused).is_some_and(|s| s >= 1));
    assert!(
        refused
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/plain"))
    );
    assert!(refused.text().await.expect("body").contains("limits.rate_per_address"));

    // A liveness probe is never counted.
    for _ in 0..10 {
        let (status, _) = s.get_bytes("/healthz").await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_by_the_rate_changes_nothing() {
    let s = server_with("rate_per_address = { per_second = 1, burst = 1 }").await;
    // Empty the bucket, then ask to open a transaction at once; should the bucket have
    // refilled in between (a stalled machine), roll that one back and try another version.
    let mut attempt = 0;
    let refused_version = loop {
        attempt += 1;
        assert!(attempt <= 20, "never refused");
        until_refused(|| s.http.get(s.url("/api/v1/repos"))).await;
        let version = attempt.to_string();
        let got = s.create(json!({"name": "limited", "version": version})).await;
        if got.0 == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(got.1["error"], "rate_limited", "{}", got.1);
            break version;
        }
        assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
        let id = got.1["id"].as_str().expect("id").to_owned();
        while s.abort(&id).await == StatusCode::TOO_MANY_REQUESTS {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    // Once the bucket allows the next request, no transaction holds that version.
    let (status, v) = loop {
        let got = s.create(json!({"name": "limited", "version": refused_version})).await;
        if got.0 != StatusCode::TOO_MANY_REQUESTS {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(status, StatusCode::CREATED, "the refused create opened nothing: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_max_concurrent_uploads_are_503_busy() {
    let s = server_with("max_concurrent_uploads = 1").await;
    let (id, _) = s.open(json!({"name": "busy", "version": "1"})).await;

    // The first upload streams and holds the only slot until its body ends. A probe into no
    // transaction stores nothing whatever it meets: once it meets 503, the first upload holds
    // the slot. A probe holds the slot for the moment it is handled, so the first upload can
    // itself be refused as busy when it arrives just then; it is started again when it is.
    let probe = s.url("/api/v1/transactions/txn_00000000000000000000000000/files/probe");
    // Bounded by time, not by a count of probes: with the whole suite running on two cores,
    // the first upload can take many seconds to reach the server.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (tx, first, busy) = 'holding: loop {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        let first = {
            let request = s
                .http
                .put(s.url(&format!("/api/v1/transactions/{id}/files/first.bin")))
                .body(reqwest::Body::wrap_stream(stream));
            tokio::spawn(async move { json_of(request.send().await.expect("first upload")).await })
        };
        // A first upload already refused has dropped its body; the loop below sees its answer.
        let _ = tx.send(Ok(Bytes::from_static(b"first "))).await;
        loop {
            let got = json_of(s.http.put(&probe).body("x").send().await.expect("probe")).await;
            if got.0 == StatusCode::SERVICE_UNAVAILABLE {
                break 'holding (tx, first, got);
            }
            if first.is_finished() {
                let answer = first.await.expect("first upload task");
                assert_eq!(
                    answer.0,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the streaming upload was answered before its body ended: {answer:?}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the streaming upload never held the slot: {}",
                got.1
            );
            // Paced well under the per-address rate, which would answer 429 instead (the
            // first upload may take a while to start on a loaded machine).
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    assert_limit(
        &busy,
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        None,
        "limits.max_concurrent_uploads",
    );

    let resp = s
        .http
        .put(s.url(&format!("/api/v1/transactions/{id}/files/second.bin")))
        .body("second")
        .send()
        .await
        .expect("second upload");
    assert_eq!(
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let got = json_of(resp).await;
    assert_eq!(got.0, StatusCode::SERVICE_UNAVAILABLE, "{}", got.1);
    let got = publish_form(&s, Form::new().text("name", "other").text("version", "1")).await;
    assert_eq!(got.0, StatusCode::SERVICE_UNAVAILABLE, "{}", got.1);
    let got = go_publish(&s, b"not even a zip".to_vec()).await;
    assert_limit(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        None,
        "limits.max_concurrent_uploads",
    );

    // Reads are not uploads.
    let (status, v) = s.get_json("/api/v1/repos").await;
    assert_eq!(status, StatusCode::OK, "{v}");

    tx.send(Ok(Bytes::from_static(b"upload"))).await.expect("send");
    drop(tx);
    let (status, v) = first.await.expect("first upload task");
    assert_eq!(status, StatusCode::CREATED, "{v}");
    // The refused upload was never staged; with the slot free again, uploads go through.
    assert_eq!(staged_paths(&s, &id).await, ["first.bin"]);
    let (status, v) = s.put(&id, "third.bin", b"third".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
}
