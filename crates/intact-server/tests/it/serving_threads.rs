//! The serving threads (`[http] threads`): each accepts from the one listening socket, and
//! none outlives the server's future.

use std::time::{Duration, Instant};

use intact_server::Config;
use reqwest::StatusCode;

use crate::Server;

/// A server whose `run` future is dropped (its caller gave up on it, or crashed in a test)
/// must stop serving: its threads are not the caller's tasks, so nothing else would stop them,
/// and they would keep the data dir and its catalog open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_server_future_stops_its_serving_threads() {
    let mut s = Server::start().await;
    let (status, _) = s.create(serde_json::json!({"name": "tool", "version": "1"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let task = s.task.take().expect("server task");
    task.abort();
    let _ = task.await;
    // A guard against a hang, not a timing assertion: stopping takes milliseconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(s.addr).await.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server still accepts connections after its future was dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every serving thread answers: many connections at once (more than threads) are all served,
/// whichever thread accepted each, with one thread and with several.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_serving_thread_answers_its_connections() {
    for threads in [1, 3] {
        let mut config = Config::embedded_default();
        config.http.threads = threads;
        let s = Server::start_with(config).await;
        let mut clients = Vec::new();
        for _ in 0..12 {
            let http = crate::client();
            let url = s.url("/healthz");
            clients.push(tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..5 {
                    let resp = http.get(&url).send().await.expect("healthz");
                    if resp.status() == StatusCode::OK {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        for c in clients {
            assert_eq!(c.await.expect("client"), 5, "with {threads} serving thread(s)");
        }
        s.stop().await;
    }
}
