//! Uploads over real connections: a commit racing an upload, a client that stops sending
//! without closing, sockets whose peer vanished.

use std::time::Duration;

use intact_store::StoreConfig;
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::mpsc;

use crate::{Server, assert_error, json_of, raw_exchange};

/// A request body fed by the test, chunk by chunk; it ends when the sender drops.
fn fed_body() -> (reqwest::Body, mpsc::Sender<Result<Vec<u8>, std::io::Error>>) {
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    (reqwest::Body::wrap_stream(stream), tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_racing_an_upload_is_refused_as_retryable_then_lands_whole() {
    let s = Server::start().await;
    let (id, _) = s.open(json!({"name": "parallel", "version": "1"})).await;
    assert_eq!(s.put(&id, "a.bin", b"first".to_vec()).await.0, StatusCode::CREATED);
    let (body, feed) = fed_body();
    feed.send(Ok(b"half of ".to_vec())).await.expect("feed");
    let upload = {
        let (http, url) = (s.http.clone(), s.url(&format!("/api/v1/transactions/{id}/files/b.bin")));
        tokio::spawn(async move { json_of(http.put(url).body(body).send().await.expect("put")).await })
    };
    // Lets the upload reach the server (ordering only: otherwise the test could only pass).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = s.commit(&id).await;
    assert_error(&refused, StatusCode::CONFLICT, "uploads_in_progress", None);
    assert_eq!(refused.1["retryable"], true, "{}", refused.1);
    feed.send(Ok(b"the second file".to_vec())).await.expect("feed");
    drop(feed);
    let (status, v) = upload.await.expect("join");
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["files"].as_array().map(Vec::len), Some(2), "{m}");
    let (status, bytes) = s.get_bytes("/api/v1/repos/files/parallel/@v/1/b.bin").await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, &b"half of the second file"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_gets_408_and_stages_nothing() {
    let s = Server::start_with_store(StoreConfig {
        upload_idle_timeout: Duration::from_secs(2),
        ..StoreConfig::default()
    })
    .await;
    let (id, _) = s.open(json!({"name": "stalled", "version": "1"})).await;
    let (body, feed) = fed_body();
    feed.send(Ok(b"a few bytes, then silence".to_vec()))
        .await
        .expect("feed");
    let resp = s
        .http
        .put(s.url(&format!("/api/v1/transactions/{id}/files/x.bin")))
        .body(body)
        .send();
    // A guard against hanging for ever (the idle timeout is 2 s), not a measurement.
    let resp = tokio::time::timeout(Duration::from_secs(60), resp)
        .await
        .expect("the server must end a stalled upload")
        .expect("response");
    let got = json_of(resp).await;
    assert_error(&got, StatusCode::REQUEST_TIMEOUT, "body_timeout", None);
    drop(feed);
    let t = s.txn(&id).await;
    assert_eq!(t["state"], "open", "{t}");
    assert_eq!(t["files"], json!([]), "{t}");
}

/// An upload refused before its body has arrived (here: into a rolled-back transaction)
/// ends its connection, and the answer says so (`Connection: close`). hyper writes the
/// answer's head before it notices the body was dropped half-read, then closes anyway; a
/// head promising keep-alive makes a client reuse the closing connection, and its next
/// request (a commit, say) fails without an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_refused_before_its_body_arrived_says_connection_close() {
    let s = Server::start().await;
    let (id, _) = s.open(json!({"name": "refused/early", "version": "1"})).await;
    assert_eq!(s.abort(&id).await, StatusCode::NO_CONTENT);
    // Headers announce 1 MB; only the first KiB is sent (and the write side stays open).
    let mut req = format!(
        "PUT /api/v1/transactions/{id}/files/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n"
    )
    .into_bytes();
    req.extend_from_slice(&[7u8; 1024]);
    let (resp, buf) = raw_exchange(s.addr, &req).await;
    let resp = resp.unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(&buf)));
    assert_eq!(resp.status, 409, "{:?}", resp.json());
    assert_eq!(resp.json().map(|v| v["error"].clone()), Some(json!("not_open")));
    assert_eq!(
        resp.header("connection"),
        Some("close"),
        "the connection ends here; the answer must not invite reuse: {:?}",
        resp.headers
    );

    // A request whose body was read to its end keeps its connection.
    let (id, _) = s.open(json!({"name": "refused/early", "version": "2"})).await;
    let req = format!(
        "PUT /api/v1/transactions/{id}/files/small.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
    );
    let (resp, _) = raw_exchange(s.addr, req.as_bytes()).await;
    let resp = resp.expect("answer");
    assert_eq!(resp.status, 201, "{:?}", resp.json());
    assert_eq!(resp.header("connection"), None, "{:?}", resp.headers);
}

/// Requests without a body keep their connection: a GET (no `Content-Length`, no
/// `Transfer-Encoding`) and a POST with `Content-Length: 0`. Every GET was once answered
/// `Connection: close`, because the body wrapper of the idle timeout hid that it was empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_body_keep_their_connection() {
    let s = Server::start().await;
    s.publish("kept", "1", &[("f.txt", b"kept alive")]).await;
    for req in [
        "GET /api/v1/repos/files/kept/@v/1/f.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned(),
        "GET /api/v1/repos HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned(),
        "HEAD /api/v1/repos/files/kept/@v/1/f.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned(),
    ] {
        let (resp, _) = raw_exchange(s.addr, req.as_bytes()).await;
        let resp = resp.expect("answer");
        assert_eq!(resp.status, 200, "{req}");
        assert_eq!(resp.header("connection"), None, "{req}: {:?}", resp.headers);
    }
    let (id, _) = s.open(json!({"name": "kept", "version": "2"})).await;
    let req = format!("POST /api/v1/transactions/{id}/renew HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
    let (resp, _) = raw_exchange(s.addr, req.as_bytes()).await;
    let resp = resp.expect("answer");
    assert_eq!(resp.status, 200, "{:?}", resp.json());
    assert_eq!(resp.header("connection"), None, "{:?}", resp.headers);
}

/// Accepted sockets carry TCP keepalive, so a peer that vanished without a FIN is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_sockets_have_tcp_keepalive() {
    let s = Server::start().await;
    let conn = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    let client_port = conn.local_addr().expect("addr").port();
    // The server accepts asynchronously; look until its side shows up (bounded).
    let mut seen = String::new();
    for _ in 0..50 {
        let out = std::process::Command::new("ss")
            .args(["-tnoH", "state", "established"])
            .arg(format!("( sport = :{} and dport = :{client_port} )", s.addr.port()))
            .output()
            .expect("ss (iproute2) is needed by this test");
        seen = String::from_utf8_lossy(&out.stdout).into_owned();
        if !seen.trim().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.contains("keepalive"),
        "the server's socket has no keepalive timer: {seen:?}"
    );
    drop(conn);
}

/// A resumable upload's PATCH stores no more than its `Content-Range` names, even when the
/// body (chunked: no length to check first) holds more: the named bytes count, the rest do
/// not, and the answer says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_longer_than_its_range_counts_only_the_range() {
    let s = Server::start().await;
    let (id, _) = s
        .open(serde_json::json!({"name": "resumable/range", "version": "1"}))
        .await;
    let resp = s
        .http
        .post(s.url(&format!("/api/v1/transactions/{id}/uploads")))
        .json(&serde_json::json!({"path": "f.bin"}))
        .send()
        .await
        .expect("create upload");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().expect("location").to_owned();
    let chunks = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"0123456789"))]);
    let resp = s
        .http
        .patch(s.url(&location))
        .header("content-range", "bytes 0-1")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = s.http.head(s.url(&location)).send().await.expect("head");
    assert_eq!(resp.headers()["upload-offset"], "2", "only the named bytes count");
}
