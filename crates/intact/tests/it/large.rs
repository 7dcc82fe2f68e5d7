//! A 1 GiB upload and download through the real server, with its peak memory checked: bodies
//! stream through bounded buffers, so the resident set must not grow with the file.

use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::harness::{Server, client, runtime};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 1 << 20;
/// Allowed growth of the server's peak RSS while moving 1 GiB each way.
const MAX_GROWTH_KIB: u64 = 96 * 1024;

fn chunk(i: u64) -> bytes::Bytes {
    // Varying content (not zeros) so nothing along the way can compress it away.
    let mut v = vec![(i % 251) as u8; CHUNK];
    v[..8].copy_from_slice(&i.to_le_bytes());
    bytes::Bytes::from(v)
}

#[test]
fn one_gib_round_trip_keeps_server_memory_flat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), None, &[]);
    let rt = runtime();
    let http = client();
    rt.block_on(async {
        // Warm up: one small publish so the baseline includes pools, caches and buffers.
        let t: Value = http
            .post(server.url("/api/v1/repos/files/transactions"))
            .json(&json!({"name": "big", "version": "warmup"}))
            .send()
            .await
            .expect("txn")
            .json()
            .await
            .expect("json");
        let id = t["id"].as_str().expect("id");
        http.put(server.url(&format!("/api/v1/transactions/{id}/files/small")))
            .body(vec![1u8; 4 << 20])
            .send()
            .await
            .expect("put");
        http.post(server.url(&format!("/api/v1/transactions/{id}/commit")))
            .send()
            .await
            .expect("commit");
        let _ = http
            .get(server.url("/api/v1/repos/files/big/@v/warmup/small"))
            .send()
            .await
            .expect("get")
            .bytes()
            .await;
    });
    let baseline = server.peak_rss_kib();

    let started = std::time::Instant::now();
    let expected = rt.block_on(async {
        let t: Value = http
            .post(server.url("/api/v1/repos/files/transactions"))
            .json(&json!({"name": "big", "version": "1"}))
            .send()
            .await
            .expect("txn")
            .json()
            .await
            .expect("json");
        let id = t["id"].as_str().expect("id").to_owned();
        let mut hasher = Sha256::new();
        for i in 0..GIB / CHUNK as u64 {
            hasher.update(chunk(i));
        }
        let expected: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let body = futures::stream::iter((0..GIB / CHUNK as u64).map(|i| Ok::<_, std::io::Error>(chunk(i))));
        let staged: Value = http
            .put(server.url(&format!("/api/v1/transactions/{id}/files/image.bin")))
            .header("content-length", GIB)
            .header("x-checksum-sha256", &expected)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .expect("put")
            .error_for_status()
            .expect("201")
            .json()
            .await
            .expect("json");
        assert_eq!(staged["size"], json!(GIB));
        assert_eq!(staged["sha256"], json!(expected));
        http.post(server.url(&format!("/api/v1/transactions/{id}/commit")))
            .send()
            .await
            .expect("commit")
            .error_for_status()
            .expect("201");
        expected
    });
    let upload_secs = started.elapsed().as_secs_f64();
    let after_upload = server.peak_rss_kib();

    let started = std::time::Instant::now();
    rt.block_on(async {
        let resp = http
            .get(server.url("/api/v1/repos/files/big/@v/1/image.bin"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200);
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(c) = stream.next().await {
            let c = c.expect("chunk");
            total += c.len() as u64;
            hasher.update(&c);
        }
        let got: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(total, GIB);
        assert_eq!(got, expected);
    });
    let download_secs = started.elapsed().as_secs_f64();
    let peak = server.peak_rss_kib();
    println!(
        "1 GiB: upload {upload_secs:.1}s ({:.0} MiB/s), download {download_secs:.1}s ({:.0} MiB/s); \
         server peak RSS {baseline} KiB before, {after_upload} KiB after upload, {peak} KiB after download",
        1024.0 / upload_secs,
        1024.0 / download_secs
    );
    assert!(baseline > 0, "could not read the server's VmHWM");
    assert!(
        peak.saturating_sub(baseline) < MAX_GROWTH_KIB,
        "server memory grew by {} KiB moving 1 GiB (limit {MAX_GROWTH_KIB} KiB)",
        peak - baseline
    );
}
