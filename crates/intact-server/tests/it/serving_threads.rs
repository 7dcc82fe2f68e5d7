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

/// Work one serving thread started (a single-flight fetch is spawned on the thread of the
/// request that led it) and a request on another thread waits for: at shutdown the first
/// thread, with nothing in flight of its own, must not end its runtime, and with it that
/// work, while the other thread is still serving the waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_no_serving_thread_ends_work_another_still_waits_for() {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::State;
    use axum::routing::get;
    use intact_server::config::HttpSettings;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{oneshot, watch};

    type Flight = Arc<Mutex<Option<oneshot::Receiver<&'static str>>>>;
    async fn thread_name() -> String {
        std::thread::current().name().unwrap_or_default().to_owned()
    }
    // Starts the work on this request's thread; it needs a moment after shutdown began.
    async fn start(State(flight): State<Flight>) -> &'static str {
        let (tx, rx) = oneshot::channel();
        *flight.lock().expect("flight") = Some(rx);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = tx.send("fetched");
        });
        "started"
    }
    async fn wait(State(flight): State<Flight>) -> String {
        let rx = flight.lock().expect("flight").take().expect("started first");
        match rx.await {
            Ok(v) => v.to_owned(),
            Err(_) => "interrupted".to_owned(),
        }
    }

    let flight: Flight = Arc::default();
    let app = Router::new()
        .route("/thread", get(thread_name))
        .route("/start", get(start))
        .route("/wait", get(wait))
        .with_state(flight.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopping) = watch::channel(false);
    let settings = HttpSettings {
        threads: 2,
        ..HttpSettings::default()
    };
    let server = tokio::spawn(async move {
        intact_server::listener::serve_on_threads(listener, app, &settings, 1 << 20, None, stopping).await
    });

    // One request on a keep-alive connection, the head of its answer and its body.
    async fn ask(conn: &mut tokio::net::TcpStream, path: &str) -> String {
        conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .await
            .expect("send");
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = conn.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed mid-answer: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .and_then(|v| v.trim().parse().ok())
                    .expect("content-length");
                if body.len() >= len {
                    return body.to_owned();
                }
            }
        }
    }
    // A connection on each serving thread: a connection stays on the thread that accepted it.
    let mut by_thread: std::collections::HashMap<String, tokio::net::TcpStream> = Default::default();
    for _ in 0..200 {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = ask(&mut conn, "/thread").await;
        by_thread.entry(name).or_insert(conn);
        if by_thread.len() == 2 {
            break;
        }
    }
    assert_eq!(
        by_thread.len(),
        2,
        "two serving threads, each accepting: {:?}",
        by_thread.keys()
    );
    let mut conns = by_thread.into_values();
    let (mut leader, mut waiter) = (conns.next().expect("one"), conns.next().expect("other"));
    assert_eq!(ask(&mut leader, "/start").await, "started");
    waiter
        .write_all(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("send");
    // Stop only once the waiter's request is being served (an unread request would be
    // dropped by the shutdown, not answered).
    while flight.lock().expect("flight").is_some() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The leader's thread has nothing in flight now: shutdown ends its connections at once.
    drop(leader);
    let _ = stop.send(true);
    let mut answer = String::new();
    // A guard against a hang, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(30), waiter.read_to_string(&mut answer))
        .await
        .expect("an answer within the grace period")
        .expect("read");
    assert!(answer.ends_with("fetched"), "the waiter's answer: {answer}");
    server.await.expect("server task").expect("served");
}

/// A publish still receiving its body when the shutdown grace ends is cancelled, and its
/// transaction rolled back (as when its client hangs up): the rollback must still run though
/// the serving thread that cancelled it ends right after, or the version stays locked until
/// the lease runs out, after the restart too (a hosted repo's transactions outlive one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_cut_by_shutdown_is_rolled_back() {
    use intact_store::{Catalog, SqliteCatalog, SystemClock};
    use tokio::io::AsyncWriteExt;

    let mut config = Config::embedded_default();
    config.http.threads = 1;
    let mut s = Server::start_with(config).await;
    let catalog = SqliteCatalog::open(&s.data.join("catalog.db"), std::sync::Arc::new(SystemClock))
        .await
        .expect("catalog");
    let boundary = "cutcutcut";
    let head = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"name\"\r\n\r\ntool\r\n\
         --{boundary}\r\ncontent-disposition: form-data; name=\"version\"\r\n\r\n1\r\n\
         --{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n"
    );
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    conn.write_all(
        format!(
            "POST /api/v1/repos/files/publish HTTP/1.1\r\nhost: t\r\n\
             content-type: multipart/form-data; boundary={boundary}\r\ncontent-length: {}\r\n\r\n{head}",
            head.len() + (1 << 20)
        )
        .as_bytes(),
    )
    .await
    .expect("send");
    conn.write_all(&[7u8; 4096]).await.expect("send");
    // A guard against a hang, not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(30);
    while catalog
        .open_transactions(None, 10)
        .await
        .expect("open transactions")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the publish never opened its transaction");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The body never ends: the shutdown's grace runs out and cancels the publish.
    let _ = s.shutdown.send(true);
    s.task
        .take()
        .expect("server task")
        .await
        .expect("server task")
        .expect("served");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = catalog.open_transactions(None, 10).await.expect("open transactions");
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cancelled publish's transaction is still open: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(conn);
}
