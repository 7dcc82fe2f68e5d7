//! Resumable uploads against the real server: a request cut half-way by a raw TCP client
//! resumes where it broke (64 MiB in CI, 1 GiB at full size, with the throughput and the
//! server's memory measured against a plain upload), and `intact publish` finishes a file
//! whose connection a proxy cuts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{self, Server, client, runtime, sized};

const CHUNK: u64 = 1 << 20;

fn chunk(i: u64) -> bytes::Bytes {
    // Varying content (not zeros) so nothing along the way can compress it away.
    let mut v = vec![(i % 251) as u8; CHUNK as usize];
    v[..8].copy_from_slice(&i.to_le_bytes());
    bytes::Bytes::from(v)
}

/// The chunks from `from` (a multiple of CHUNK) up to `to`, as a request body.
fn body(from: u64, to: u64) -> reqwest::Body {
    let chunks = (from / CHUNK..to.div_ceil(CHUNK)).map(move |i| {
        let c = chunk(i);
        let end = ((i + 1) * CHUNK).min(to) - i * CHUNK;
        Ok::<_, std::io::Error>(c.slice(..end as usize))
    });
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

fn sha256_of(size: u64) -> String {
    let mut hasher = Sha256::new();
    for i in 0..size / CHUNK {
        hasher.update(chunk(i));
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

async fn open_txn(http: &reqwest::Client, server: &Server, version: &str) -> String {
    let t: Value = http
        .post(server.url("/api/v1/repos/files/transactions"))
        .json(&json!({"name": "big", "version": version}))
        .send()
        .await
        .expect("txn")
        .error_for_status()
        .expect("201")
        .json()
        .await
        .expect("json");
    t["id"].as_str().expect("id").to_owned()
}

async fn offset(http: &reqwest::Client, url: &str) -> u64 {
    let resp = http.head(url).send().await.expect("head");
    assert_eq!(resp.status(), 200);
    resp.headers()["upload-offset"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number")
}

/// A PATCH whose connection is closed after half its body keeps that half: the upload
/// resumes at it, completes, and the version reads back whole.
#[test]
fn an_upload_cut_half_way_resumes_where_it_broke() {
    let size: u64 = sized(64 << 20, 1 << 30);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), None, &[]);
    let rt = runtime();
    let http = client();
    let expected = sha256_of(size);
    let baseline = server.peak_rss_kib();

    // A plain upload of the same size first, to compare with.
    let started = std::time::Instant::now();
    rt.block_on(async {
        let id = open_txn(&http, &server, "plain").await;
        http.put(server.url(&format!("/api/v1/transactions/{id}/files/image.bin")))
            .header("content-length", size)
            .body(body(0, size))
            .send()
            .await
            .expect("put")
            .error_for_status()
            .expect("201");
        http.post(server.url(&format!("/api/v1/transactions/{id}/commit")))
            .send()
            .await
            .expect("commit")
            .error_for_status()
            .expect("201");
    });
    let plain_secs = started.elapsed().as_secs_f64();
    let after_plain = server.peak_rss_kib();

    let started = std::time::Instant::now();
    let (id, url) = rt.block_on(async {
        let id = open_txn(&http, &server, "resumed").await;
        let resp = http
            .post(server.url(&format!("/api/v1/transactions/{id}/uploads")))
            .json(&json!({"path": "image.bin", "size": size, "sha256": expected}))
            .send()
            .await
            .expect("start");
        assert_eq!(resp.status(), 201);
        let location = resp.headers()["location"].to_str().expect("ascii").to_owned();
        (id, server.url(&location))
    });
    let half = size / 2 + 12_345;
    rt.block_on(async {
        // A raw client: the head, half the body, then the connection closes.
        let authority = server.base.trim_start_matches("http://").to_owned();
        let path = url.trim_start_matches(&server.base).to_owned();
        let mut tcp = tokio::net::TcpStream::connect(&authority).await.expect("connect");
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {size}\r\nContent-Range: bytes 0-{}/{size}\r\n\r\n",
            size - 1
        );
        tcp.write_all(head.as_bytes()).await.expect("head");
        let mut sent = 0u64;
        let mut i = 0;
        while sent < half {
            let c = chunk(i);
            let n = (half - sent).min(CHUNK) as usize;
            tcp.write_all(&c[..n]).await.expect("body");
            sent += n as u64;
            i += 1;
        }
        tcp.shutdown().await.expect("close the sending side");
        // Whatever the server answers (if anything) is read, then the connection drops.
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), tcp.read_to_end(&mut answer)).await;
        drop(tcp);
    });
    // The server notices the broken body and keeps what arrived, durably, before it counts.
    let mut held = 0;
    harness::wait_until(
        "the cut request's bytes are counted",
        std::time::Duration::from_secs(60),
        || {
            held = rt.block_on(offset(&http, &url));
            held == half
        },
    );
    assert_eq!(held, half, "every byte that arrived before the cut counts");
    rt.block_on(async {
        // A retry that starts anywhere else is told where to resume.
        let resp = http
            .patch(&url)
            .header("content-range", format!("bytes 0-9/{size}"))
            .header("content-length", 10)
            .body(vec![0u8; 10])
            .send()
            .await
            .expect("wrong start");
        assert_eq!(resp.status(), 416);
        assert_eq!(resp.headers()["upload-offset"], held.to_string().as_str());
        assert_eq!(resp.headers()["range"], format!("0-{}", held - 1).as_str());
        let err: Value = resp.json().await.expect("json");
        assert_eq!(err["error"], "upload_offset", "{err}");

        // The rest, from a chunk boundary at or before the offset: the client resends the
        // chunk's start, trimmed here to begin exactly at the offset.
        let first = held / CHUNK;
        let rest = futures::stream::iter(first..size.div_ceil(CHUNK)).map(move |i| {
            let c = chunk(i);
            let skip = if i == first { held - i * CHUNK } else { 0 };
            Ok::<_, std::io::Error>(c.slice(skip as usize..))
        });
        let resp = http
            .patch(&url)
            .header("content-range", format!("bytes {held}-{}/{size}", size - 1))
            .header("content-length", size - held)
            .body(reqwest::Body::wrap_stream(rest))
            .send()
            .await
            .expect("resume");
        assert_eq!(resp.status(), 202);
        assert_eq!(resp.headers()["upload-offset"], size.to_string().as_str());
        let staged: Value = http
            .put(&url)
            .header("x-checksum-sha256", &expected)
            .send()
            .await
            .expect("complete")
            .error_for_status()
            .expect("201")
            .json()
            .await
            .expect("json");
        assert_eq!(staged["sha256"], json!(expected));
        assert_eq!(staged["size"], json!(size));
        assert_eq!(http.head(&url).send().await.expect("head").status(), 404, "completed");
        http.post(server.url(&format!("/api/v1/transactions/{id}/commit")))
            .send()
            .await
            .expect("commit")
            .error_for_status()
            .expect("201");
    });
    let resumed_secs = started.elapsed().as_secs_f64();
    let peak = server.peak_rss_kib();
    rt.block_on(async {
        let resp = http
            .get(server.url("/api/v1/repos/files/big/@v/resumed/image.bin"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200);
        let mut hasher = Sha256::new();
        let mut stream = resp.bytes_stream();
        let mut total = 0u64;
        while let Some(c) = stream.next().await {
            let c = c.expect("chunk");
            total += c.len() as u64;
            hasher.update(&c);
        }
        let got: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!((total, got), (size, expected));
    });
    assert_eq!(
        std::fs::read_dir(dir.path().join("data/uploads"))
            .expect("uploads dir")
            .count(),
        0,
        "the pieces are deleted once the upload completed"
    );
    let mib = size as f64 / f64::from(1 << 20);
    harness::report(
        "resumable_upload",
        json!({
            "bytes": size,
            "cut_at": half,
            "plain_put_mib_per_s": (mib / plain_secs).round(),
            "resumable_mib_per_s": (mib / resumed_secs).round(),
            "server_peak_rss_kib": {"before": baseline, "after_plain": after_plain, "after_resumed": peak},
            "violations": 0,
        }),
    );
}

/// A TCP proxy in front of `upstream` that cuts the first connection carrying more than
/// `cut_after` request bytes, once; every other connection passes whole.
fn cutting_proxy(rt: &tokio::runtime::Runtime, upstream: String, cut_after: u64) -> (String, Arc<AtomicBool>) {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cut = Arc::new(AtomicBool::new(false));
    let has_cut = cut.clone();
    rt.spawn(async move {
        while let Ok((mut downstream, _)) = listener.accept().await {
            let (upstream, cut) = (upstream.clone(), cut.clone());
            tokio::spawn(async move {
                let Ok(up) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut up_read, mut up_write) = up.into_split();
                let (mut down_read, mut down_write) = downstream.split();
                let answers = tokio::io::copy(&mut up_read, &mut down_write);
                let requests = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut sent = 0u64;
                    loop {
                        let n = match down_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if sent + n as u64 > cut_after && !cut.swap(true, Ordering::SeqCst) {
                            let keep = (cut_after - sent) as usize;
                            let _ = up_write.write_all(&buf[..keep]).await;
                            return;
                        }
                        if up_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        sent += n as u64;
                    }
                };
                // Either side ending ends both: a cut drops the connection both ways.
                tokio::select! {
                    _ = answers => {}
                    () = requests => {}
                }
            });
        }
    });
    (format!("http://{addr}"), has_cut)
}

/// `intact publish` sends files several at once; the large one goes as a resumable upload,
/// its connection is cut part-way, and the publish resumes it and ends with the right bytes.
#[test]
fn publish_resumes_a_file_whose_connection_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), None, &[]);
    let rt = runtime();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let large = harness::pattern(7, 20 << 20);
    std::fs::write(src.join("large.bin"), &large).expect("write");
    for i in 0..6 {
        std::fs::write(src.join(format!("small{i}.txt")), harness::pattern(100 + i, 10_000)).expect("write");
    }
    // Cut 13 MiB into the connection that carries the large file (the small ones go first
    // on other connections, well under it).
    let (proxy, cut) = cutting_proxy(&rt, server.base.trim_start_matches("http://").to_owned(), 13 << 20);
    let (ok, out, err) = harness::cli(
        &proxy,
        None,
        &[
            "publish",
            "files",
            "cut/plate",
            "1",
            src.to_str().expect("utf8"),
            "--jobs",
            "3",
            "--resumable-from",
            &(1u64 << 20).to_string(),
        ],
        &[],
    );
    assert!(ok, "publish: {out}{err}");
    assert!(cut.load(Ordering::SeqCst), "the proxy cut a connection");
    assert!(err.contains("large.bin") && err.contains("resuming at byte"), "{err}");
    assert!(out.contains("published files/cut/plate@1: 7 files"), "{out}");
    let dest = dir.path().join("out");
    let (ok, out, err) = harness::cli(
        &server.base,
        None,
        &["get", "files", "cut/plate", "1", "--out", dest.to_str().expect("utf8")],
        &[],
    );
    assert!(ok, "{out}{err}");
    assert!(
        std::fs::read(dest.join("large.bin")).expect("read") == large,
        "the bytes read back"
    );
    for i in 0..6 {
        assert_eq!(
            std::fs::read(dest.join(format!("small{i}.txt"))).expect("read"),
            harness::pattern(100 + i, 10_000)
        );
    }
}
