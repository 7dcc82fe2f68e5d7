//! Proxy repositories fetch only from their configured upstream: no path, query, header or
//! request target can make intact connect anywhere else, nor leave the upstream's base path.

use std::sync::{Arc, Mutex};

use intact_server::Config;
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::Server;

/// A listener that records every request line it gets and answers 404.
async fn recorder() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = Vec::new();
                // One request head per connection is enough: answer and close.
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&got).to_string();
                let line = head.lines().next().unwrap_or("<nothing>").to_owned();
                log.lock().expect("log").push(line);
                let _ = tcp
                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found")
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_fetch_only_from_their_configured_upstream() {
    let (upstream, upstream_seen) = recorder().await;
    let (evil, evil_seen) = recorder().await;
    let config = Config::from_toml(&format!(
        r#"
[[repo]]
name = "gop"
kind = "proxy"
format = "go"
upstream = "http://{upstream}/goproxy"
checksum_db = "off"

[[repo]]
name = "builds"
kind = "proxy"
format = "generic"
upstream = "http://{upstream}/archive"

[repo.artifacts]
payload = {{ files = ["payload.bin"] }}
"#
    ))
    .expect("config");
    let s = Server::start_with(config).await;
    let e = evil.as_str();
    let hostile_gets = [
        format!("/go/gop/http://{e}/m/@v/list"),
        format!("/go/gop/http:%2F%2F{e}%2Fm/@v/list"),
        format!("/go/gop/{e}/m/@v/list"),
        format!("/go/gop/{e}/m/@v/v1.0.0.info"),
        format!("/go/gop/example.com/m/@v/list?upstream=http://{e}/&url=http://{e}/"),
        "/go/gop/../../../etc/passwd".to_owned(),
        "/go/gop/example.com/%2e%2e/%2e%2e/m/@v/list".to_owned(),
        "/go/gop/example.com/m/@v/..%2f..%2f..%2fx.info".to_owned(),
        format!("/go/gop/@{e}/m/@v/list"),
        format!("/api/v1/repos/builds/b/@v/payload/http:%2F%2F{e}%2Fx"),
        format!("/api/v1/repos/builds/http:%2F%2F{e}/@v/payload"),
        "/api/v1/repos/builds/..%2F..%2Fsecret/@v/payload".to_owned(),
    ];
    for path in &hostile_gets {
        for host in [None, Some(e)] {
            let mut req = s.http.get(s.url(path));
            if let Some(h) = host {
                req = req
                    .header("x-forwarded-host", h)
                    .header("forwarded", format!("host={h}"))
                    .header("x-original-url", format!("http://{h}/"));
            }
            let resp = req.send().await.expect("get");
            assert!(
                resp.status().is_client_error() || resp.status().is_server_error(),
                "{path}: {}",
                resp.status()
            );
        }
    }
    let stage = [
        json!({"name": format!("http://{e}/x"), "artifacts": ["payload"]}),
        json!({"name": "b1", "files": [format!("http://{e}/x")]}),
        json!({"name": "b1", "files": ["../../x"]}),
        json!({"name": "../../b1", "artifacts": ["payload"]}),
        json!({"name": "b1", "artifacts": ["payload"], "upstream": format!("http://{e}/")}),
    ];
    for body in &stage {
        let resp = s
            .http
            .request(Method::POST, s.url("/api/v1/repos/builds/stage"))
            .json(body)
            .send()
            .await
            .expect("stage");
        assert!(!resp.status().is_success(), "{body}: {}", resp.status());
    }
    // An absolute-form request target naming another host is served (or refused) as a
    // request to this server; it never makes intact connect there.
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    tcp.write_all(
        format!("GET http://{e}/go/gop/example.com/m/@v/list HTTP/1.1\r\nHost: {e}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("write");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.expect("read");
    assert!(answer.starts_with(b"HTTP/1.1 "), "{}", String::from_utf8_lossy(&answer));

    let evil_seen = evil_seen.lock().expect("log").clone();
    assert!(
        evil_seen.is_empty(),
        "intact connected to a host it was not configured with: {evil_seen:?}"
    );
    let upstream_seen = upstream_seen.lock().expect("log").clone();
    // The legitimate requests did reach the upstream, under its base paths only.
    assert!(!upstream_seen.is_empty(), "the test reached the upstream at all");
    for line in &upstream_seen {
        let target = line.split(' ').nth(1).unwrap_or_default();
        assert!(
            (target.starts_with("/goproxy/") || target.starts_with("/archive/"))
                && !target.contains("..")
                && !target.to_ascii_lowercase().contains("%2e%2e"),
            "a request left the upstream's base path: {line}"
        );
    }
}
