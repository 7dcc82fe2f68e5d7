//! A graceful stop with the real binary: SIGTERM stops new connections, lets a download in
//! flight finish whole, exits successfully, and leaves open transactions to their leases.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{self, Server};

#[test]
fn sigterm_finishes_requests_in_flight_and_leaves_open_transactions_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, None, &[]);
    let rt = harness::runtime();
    let http = harness::client();
    const SIZE: usize = 48 << 20;
    let content: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let open_id = rt.block_on(async {
        let create = |version: &str| {
            http.post(server.url("/api/v1/repos/files/transactions"))
                .json(&json!({"name": "big", "version": version, "lease_seconds": 3600}))
                .send()
        };
        let txn: Value = create("1").await.expect("create").json().await.expect("json");
        let id = txn["id"].as_str().expect("id").to_owned();
        let put = http
            .put(server.url(&format!("/api/v1/transactions/{id}/files/big.bin")))
            .body(content.clone())
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
        let open: Value = create("2").await.expect("create").json().await.expect("json");
        open["id"].as_str().expect("id").to_owned()
    });

    // A download under way: its head and a little of its body read.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(
        conn,
        "GET /api/v1/repos/files/big/@v/1/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let n = conn.read(&mut buf).expect("read");
    got.extend_from_slice(&buf[..n]);

    // SIGTERM from another thread while the client goes on reading, slowly at first.
    let stopping = std::thread::spawn(move || server.terminate(Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(500));
    let refused_at = Instant::now();
    loop {
        // New connections are refused once the listener is closed.
        match TcpStream::connect(&addr) {
            Err(_) => break,
            Ok(mut c) => {
                // Accepted by the kernel's backlog before the close, but never served.
                let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
                c.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
                let mut b = [0u8; 64];
                if matches!(c.read(&mut b), Ok(0) | Err(_)) {
                    break;
                }
            }
        }
        assert!(
            refused_at.elapsed() < Duration::from_secs(5),
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    loop {
        let n = conn.read(&mut buf).expect("the download in flight goes on");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got[..40])
    );
    assert!(
        got[body_at..] == content[..],
        "the download finished whole: {} of {SIZE} bytes",
        got.len() - body_at
    );
    let status = stopping
        .join()
        .expect("terminate")
        .expect("exited within the grace period");
    assert!(status.success(), "exit status {status}");

    // The transaction left open is still open after the restart.
    let server = Server::start(&data, None, &[]);
    rt.block_on(async {
        let resp = http
            .get(server.url(&format!("/api/v1/transactions/{open_id}")))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::OK);
        let txn: Value = resp.json().await.expect("json");
        assert_eq!(txn["state"], "open", "{txn}");
    });
}
