//! Slow-loris clients in both directions: one that trickles (or stops sending) its request
//! head or body, and one that stops reading a large response. Neither may hold a connection,
//! a task or an open blob for ever.

use std::time::Duration;

use intact_server::Config;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Server;

fn quick_timeouts() -> Config {
    let mut config = Config::embedded_default();
    config.http.header_timeout_seconds = 2;
    config.http.idle_timeout_seconds = 2;
    config
}

/// Reads until the server closes the connection (or a guard of 60 s runs out: a failure).
async fn closed_by_server(sock: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(60), sock.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept a stalled connection open: {}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_dropped() {
    let s = Server::start_with(quick_timeouts()).await;
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        .await
        .expect("write");
    closed_by_server(&mut sock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_is_dropped() {
    let s = Server::start_with(quick_timeouts()).await;
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    sock.write_all(
        b"POST /api/v1/repos/files/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
    )
    .await
    .expect("write");
    let answer = String::from_utf8_lossy(&closed_by_server(&mut sock).await).into_owned();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a stalled body gets a 4xx or a closed connection: {answer}"
    );
}

/// How many of this process's open files are the blob with `digest`.
fn open_handles_on(path: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_response_is_dropped() {
    let s = Server::start_with(quick_timeouts()).await;
    let big: Vec<u8> = (0..64_000_000u32).map(|i| (i % 251) as u8).collect();
    let (id, _) = s.open(serde_json::json!({"name": "big", "version": "1"})).await;
    assert_eq!(s.put(&id, "big.bin", big.clone()).await.0, StatusCode::CREATED);
    assert_eq!(s.commit(&id).await.0, StatusCode::CREATED);
    let blob = s.blob_path(&intact_core::Digest::of(&big));

    let mut sock = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    sock.write_all(b"GET /api/v1/repos/files/big/@v/1/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    // Read the head, then stop reading: the server's writes back up and stall.
    let mut head = [0u8; 512];
    let n = sock.read(&mut head).await.expect("head");
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    let mut held = 0;
    for _ in 0..20 {
        held = open_handles_on(&blob);
        if held > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(held, 1, "the server streams the blob while the client reads");
    // The client never reads again: within the idle timeout the server gives up on it and
    // lets the blob go (a guard, not a measurement: it has 60 s to do so).
    let mut released = false;
    for _ in 0..600 {
        if open_handles_on(&blob) == 0 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(released, "a client that stopped reading still holds the blob open");
    drop(sock);
}

/// A client that connects and sends nothing, or only the start of the HTTP/2 preface, has
/// sent no request head at all: the head deadline applies to it too (the easiest slow-loris
/// there is: hold thousands of connections open by never writing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_a_request_head_is_dropped() {
    let s = Server::start_with(quick_timeouts()).await;
    for sent in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
        let mut sock = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
        sock.write_all(sent).await.expect("write");
        closed_by_server(&mut sock).await;
    }
}

/// The same promise over HTTP/2 (cleartext, prior knowledge): a client that stops reading a
/// response must not hold the blob open for ever. (HTTP/2 flow control stalls a stream
/// without stalling the connection's writes, so the cut-off for a client that stops reading
/// never sees it; a server that does not speak HTTP/2 keeps the promise trivially.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_stops_reading_a_response_is_dropped() {
    let s = Server::start_with(quick_timeouts()).await;
    let big: Vec<u8> = (0..64_000_000u32).map(|i| (i % 251) as u8).collect();
    let (id, _) = s.open(serde_json::json!({"name": "big", "version": "1"})).await;
    assert_eq!(s.put(&id, "big.bin", big.clone()).await.0, StatusCode::CREATED);
    assert_eq!(s.commit(&id).await.0, StatusCode::CREATED);
    let blob = s.blob_path(&intact_core::Digest::of(&big));
    let _ = crate::client();
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let Ok(resp) = h2.get(s.url("/api/v1/repos/files/big/@v/1/big.bin")).send().await else {
        // Not spoken: no stream to stall.
        return;
    };
    assert_eq!(resp.status(), StatusCode::OK);
    // The response is never read: once the stream's window is used up the server's body
    // stalls. Within the idle timeout the server must let the blob go (60 s guard).
    let mut released = false;
    for _ in 0..600 {
        if open_handles_on(&blob) == 0 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        released,
        "an HTTP/2 client that stopped reading still holds the blob open"
    );
    drop(resp);
}

/// What the cut-offs must never touch: a long poll that waits longer than every timeout
/// before its answer, and a download to a client that reads slowly but steadily for longer
/// than the idle timeout. Both end complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_and_slow_steady_downloads_are_not_cut() {
    let s = Server::start_with(quick_timeouts()).await;
    // Three times the head and idle timeouts with nothing sent either way.
    let resp = s
        .http
        .get(s.url("/api/v1/events?after=0&wait_seconds=6"))
        .send()
        .await
        .expect("long poll answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["events"], serde_json::json!([]), "{v}");

    let big: Vec<u8> = (0..6_000_000u32).map(|i| (i % 247) as u8).collect();
    s.publish("steady", "1", &[("big.bin", &big)]).await;
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    sock.write_all(
        b"GET /api/v1/repos/files/steady/@v/1/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    // About 1 MB a second: six seconds for the whole body, never a pause near 2 s.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 50_000];
    loop {
        let n = sock.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(got[head_end..] == big[..], "the slow reader got the whole file");
}

/// Shutting down with a long poll in flight ends within the bounded grace period instead of
/// waiting for the poll, and the requests still in flight then are really dropped: nothing of
/// the stopped server keeps serving (or holding its store) behind its back. Guards of 60 s
/// and 30 s, not measurements: the poll would otherwise wait 300 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_with_a_long_poll_in_flight() {
    let s = Server::start_with(quick_timeouts()).await;
    let poll = {
        let (http, url) = (s.http.clone(), s.url("/api/v1/events?after=0&wait_seconds=300"));
        tokio::spawn(async move { http.get(url).send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(60), s.stop())
        .await
        .expect("the server stopped although a long poll was waiting");
    let answer = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("the long poll was still being served after the server stopped")
        .expect("join");
    assert!(answer.is_err(), "the dropped request got no answer: {answer:?}");
}
