//! The artifact API end to end with its blobs in S3 (a Garage started by the test setup):
//! a multi-MiB publish read back whole and by range, gc removing unreferenced blobs from the
//! bucket, verify finding a blob damaged in the bucket.

use std::sync::Arc;

use intact_core::Digest;
use intact_store::{BlobStore, BlobTestHooks, CachedBlobStore, S3BlobStore, S3Settings};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::{Server, json_of};

/// Settings for blobs under `test`'s own prefix of the bucket of the Garage this test binary
/// shares (started on first use).
pub async fn garage_settings(test: &str) -> S3Settings {
    let garage = tokio::task::spawn_blocking(intact_testkit::shared_garage)
        .await
        .expect("start garage");
    let mut settings =
        S3Settings::from_url(&format!("s3://{}/{}", garage.bucket, garage.prefix(test))).expect("s3 url");
    settings.endpoint = Some(garage.endpoint.clone());
    settings.region = Some(garage.region.clone());
    settings.credentials = Some((garage.access_key_id.clone(), garage.secret_access_key.clone()));
    settings
}

async fn garage_blobs(test: &str) -> S3BlobStore {
    S3BlobStore::open(&garage_settings(test).await)
        .await
        .expect("open S3 blob store")
}

async fn admin(s: &Server, what: &str, body: Value) -> Value {
    let (status, v) = json_of(
        s.http
            .post(s.url(&format!("/api/v1/admin/{what}")))
            .json(&body)
            .send()
            .await
            .expect(what),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_artifact_api_publishes_reads_collects_and_verifies_blobs_in_s3() {
    let blobs = Arc::new(garage_blobs("artifact-api").await);
    let s = Server::start_on_blobs(blobs.clone()).await;

    // 12 MiB: a multipart upload into the bucket.
    let big: Vec<u8> = (0..12u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let small = b"notes about the render".to_vec();
    let m = s
        .publish("shots/s3", "1", &[("frames.bin", &big), ("notes.txt", &small)])
        .await;
    assert_eq!(m["files"].as_array().map(Vec::len), Some(2), "{m}");
    assert_eq!(
        blobs.size(&Digest::of(&big)).await.expect("size"),
        Some(big.len() as u64),
        "the blob is in the bucket"
    );

    let (status, whole) = s.get_bytes("/api/v1/repos/files/shots/s3/@v/1/frames.bin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(whole == big, "whole read differs ({} bytes)", whole.len());
    let resp = s
        .http
        .get(s.url("/api/v1/repos/files/shots/s3/@v/1/frames.bin"))
        .header(header::RANGE, "bytes=5000000-9000000")
        .send()
        .await
        .expect("range");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let part = resp.bytes().await.expect("range body");
    assert!(part[..] == big[5_000_000..=9_000_000], "range differs");

    // gc: a file uploaded twice leaves its first blob unreferenced; an orphan was never
    // registered at all. Both leave the bucket; committed blobs stay.
    let (id, _) = s.open(json!({"name": "shots/s3", "version": "2"})).await;
    assert_eq!(s.put(&id, "f", b"first take".to_vec()).await.0, StatusCode::CREATED);
    assert_eq!(s.put(&id, "f", b"second take".to_vec()).await.0, StatusCode::CREATED);
    assert_eq!(s.commit(&id).await.0, StatusCode::CREATED);
    let orphan = Digest::of(b"orphan");
    blobs.store_raw(&orphan, b"orphan").await.expect("orphan");
    let gc = admin(&s, "gc", json!({"grace_seconds": 0})).await;
    assert_eq!(
        (gc["blobs_deleted"].as_u64(), gc["orphan_blobs_deleted"].as_u64()),
        (Some(1), Some(1)),
        "{gc}"
    );
    assert_eq!(blobs.size(&Digest::of(b"first take")).await.expect("size"), None);
    assert_eq!(blobs.size(&orphan).await.expect("size"), None);
    assert!(blobs.size(&Digest::of(b"second take")).await.expect("size").is_some());
    assert!(blobs.size(&Digest::of(&big)).await.expect("size").is_some());

    // verify: damage in the bucket is found and named.
    assert_eq!(admin(&s, "verify", json!({})).await["ok"], true);
    blobs
        .store_raw(&Digest::of(&small), b"notes about the RENDER")
        .await
        .expect("damage");
    let verify = admin(&s, "verify", json!({})).await;
    assert_eq!(verify["ok"], false, "{verify}");
    let problems = verify["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{verify}");
    assert_eq!(problems[0]["problem"], "hash mismatch", "{verify}");
    assert_eq!(
        problems[0]["versions"],
        json!(["files/shots/s3@1:notes.txt"]),
        "{verify}"
    );
    // Reading it now fails rather than serving wrong bytes, and quarantines it.
    let (status, _) = s.get_bytes("/api/v1/repos/files/shots/s3/@v/1/notes.txt").await;
    assert!(status.is_server_error(), "{status}");
    assert_eq!(
        blobs.size(&Digest::of(&small)).await.expect("size"),
        None,
        "quarantined"
    );
    s.stop().await;
}

/// With a local cache in front of the bucket, a file read once is served from local disk:
/// it still reads back after its object left the bucket (content-addressed: never stale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_reads_come_from_the_local_cache() {
    let remote = Arc::new(garage_blobs("local-cache").await);
    let cache_dir = tempfile::tempdir().expect("cache dir");
    let cached = Arc::new(
        CachedBlobStore::open(remote.clone(), cache_dir.path(), 64 << 20)
            .await
            .expect("open cache"),
    );
    let s = Server::start_on_blobs(cached.clone()).await;
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    s.publish("cached", "1", &[("f.bin", &content)]).await;
    let digest = Digest::of(&content);
    let (status, cold) = s.get_bytes("/api/v1/repos/files/cached/@v/1/f.bin").await;
    assert!(status == StatusCode::OK && cold == content, "cold read");
    let mut filled = false;
    for _ in 0..200 {
        if cached.contains(&digest) {
            filled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(filled, "the cold read filled the cache");
    remote.delete(&digest).await.expect("delete from the bucket");
    assert_eq!(remote.size(&digest).await.expect("size"), None);
    let (status, warm) = s.get_bytes("/api/v1/repos/files/cached/@v/1/f.bin").await;
    assert!(status == StatusCode::OK && warm == content, "warm read from local disk");
    s.stop().await;
}

/// `/readyz` reaches the blob store itself, past a replica's local cache: with the S3
/// endpoint cut off it says not ready (within its deadline, though the S3 client retries
/// for minutes), and ready again once the endpoint is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_blob_store_through_an_outage() {
    let mut settings = garage_settings("readiness").await;
    let endpoint = settings.endpoint.clone().expect("endpoint");
    let target: &'static str = Box::leak(endpoint.trim_start_matches("http://").to_owned().into_boxed_str());
    let relay = intact_testkit::Relay::start(target).await;
    settings.endpoint = Some(format!("http://127.0.0.1:{}", relay.port));
    let remote = Arc::new(S3BlobStore::open(&settings).await.expect("open S3 blob store"));
    let cache_dir = tempfile::tempdir().expect("cache dir");
    let cached = Arc::new(
        CachedBlobStore::open(remote, cache_dir.path(), 64 << 20)
            .await
            .expect("open cache"),
    );
    let s = Server::start_on_blobs(cached).await;
    let ready = s.http.get(s.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);

    relay.cut();
    tokio::time::sleep(intact_store::store::READINESS_TTL).await;
    let asked = tokio::time::Instant::now();
    let ready = s.http.get(s.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        asked.elapsed() < intact_store::store::READINESS_DEADLINE + std::time::Duration::from_secs(2),
        "the probe waited {:?}",
        asked.elapsed()
    );
    let why = ready.text().await.expect("body");
    assert!(why.contains("blob store"), "{why}");

    relay.restore();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while s.http.get(s.url("/readyz")).send().await.expect("readyz").status() != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
