//! A body larger than any buffer, streamed both ways and compared by sha256.

use futures::StreamExt;
use intact_core::{Digest, DigestHasher};
use reqwest::StatusCode;
use reqwest::header;
use serde_json::json;

use crate::Server;

const CHUNK: usize = 1 << 20;
const CHUNKS: usize = 64;

/// Chunk `i` of the generated body: deterministic, so it is made twice instead of kept.
fn chunk(i: usize) -> Vec<u8> {
    crate::pseudo_random(0x5eed_0000 + i as u64, CHUNK)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_streams_up_and_down() {
    let s = Server::start().await;
    let mut expected = DigestHasher::new();
    for i in 0..CHUNKS {
        expected.update(&chunk(i));
    }
    let expected: Digest = expected.finish();
    let size = (CHUNK * CHUNKS) as u64;

    let (id, _) = s.open(json!({"name": "big/one", "version": "1"})).await;
    let body = futures::stream::iter(0..CHUNKS).map(|i| Ok::<_, std::io::Error>(chunk(i)));
    let resp = s
        .http
        .put(s.url(&format!("/api/v1/transactions/{id}/files/big.bin")))
        .header("x-checksum-sha256", expected.to_hex())
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("upload");
    let (status, v) = crate::json_of(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v, json!({"path": "big.bin", "size": size, "sha256": expected.to_hex()}));
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");

    let resp = s
        .http
        .get(s.url("/api/v1/repos/files/big/one/@v/1/big.bin"))
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_LENGTH], size.to_string().as_str());
    let mut got = DigestHasher::new();
    let mut stream = resp.bytes_stream();
    while let Some(piece) = stream.next().await {
        got.update(&piece.expect("body chunk"));
    }
    assert_eq!(got.len(), size);
    assert_eq!(got.finish(), expected);

    // A range in the middle of the big file, across a chunk boundary.
    let start = CHUNK as u64 * 10 - 100;
    let resp = s
        .http
        .get(s.url("/api/v1/repos/files/big/one/@v/1/big.bin"))
        .header(header::RANGE, format!("bytes={start}-{}", start + 199))
        .send()
        .await
        .expect("range");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let bytes = resp.bytes().await.expect("body");
    let mut want = chunk(9)[CHUNK - 100..].to_vec();
    want.extend_from_slice(&chunk(10)[..100]);
    assert_eq!(bytes.as_ref(), want.as_slice());
    s.stop().await;
}
