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
