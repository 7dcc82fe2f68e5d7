//! What only the S3 blob store has: multipart uploads, copies too large for CopyObject,
//! byte ranges served by the server, errors naming the bucket, and pending objects shared
//! with other replicas.

use std::time::Duration;

use futures::StreamExt;
use intact_core::Digest;
use intact_store::{BlobStore, BlobTestHooks, Error, S3BlobStore};
use tokio::io::AsyncReadExt;

use crate::{s3_blobs, s3_settings};

async fn read(blobs: &S3BlobStore, digest: &Digest, range: Option<std::ops::Range<u64>>) -> (u64, Vec<u8>) {
    let mut r = blobs.read(digest, range).await.expect("read");
    assert!(r.local_path.is_none());
    let mut out = Vec::new();
    r.body.read_to_end(&mut out).await.expect("read body");
    (r.size, out)
}

/// 20 MiB: three parts of a multipart upload; the copy to its final key streams through
/// this process (the copy limit set below it, as for blobs past CopyObject's 5 GiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_blob_past_the_copy_limit_round_trips_whole_and_by_range() {
    let blobs = s3_blobs("multipart", |s| s.server_copy_limit = 1 << 20).await;
    let content: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut body = content.as_slice();
    let pending = blobs.write(&mut body, None).await.expect("write");
    assert_eq!(pending.digest, Digest::of(&content));
    assert_eq!(pending.size, content.len() as u64);
    let digest = pending.digest;
    blobs.persist(pending).await.expect("persist");
    assert_eq!(
        blobs.pending_count().await.expect("pending"),
        0,
        "persist removes the pending object"
    );
    let (size, whole) = read(&blobs, &digest, None).await;
    assert_eq!(size, content.len() as u64);
    assert!(whole == content, "whole read differs");
    let range = 9_000_000..12_500_001u64;
    let (size, part) = read(&blobs, &digest, Some(range.clone())).await;
    assert_eq!(size, content.len() as u64, "the size is the whole blob's");
    assert!(
        part[..] == content[range.start as usize..range.end as usize],
        "range differs"
    );
    let (_, empty) = read(&blobs, &digest, Some(5..5)).await;
    assert!(empty.is_empty());
    assert_eq!(
        blobs
            .sizes(&[digest, Digest::of(b"absent")])
            .await
            .expect("sizes")
            .len(),
        1
    );
    let listed: Vec<Digest> = blobs.list(None).map(|d| d.expect("list")).collect().await;
    assert_eq!(listed, [digest]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_bucket_and_key_and_missing_blobs_read_as_missing() {
    let blobs = s3_blobs("errors", |_| {}).await;
    let absent = Digest::of(b"never stored");
    match blobs.read(&absent, None).await {
        Err(Error::BlobMissing { digest }) => assert_eq!(digest, absent),
        other => panic!("expected BlobMissing, got {:?}", other.map(|r| r.size)),
    }
    assert_eq!(blobs.size(&absent).await.expect("size"), None);
    blobs.delete(&absent).await.expect("deleting an absent blob is fine");

    let garage = tokio::task::spawn_blocking(intact_testkit::shared_garage)
        .await
        .expect("garage");
    let mut wrong = s3_settings(garage, "wrong-key");
    wrong.credentials = Some((garage.access_key_id.clone(), "0".repeat(64)));
    let err = S3BlobStore::open(&wrong)
        .await
        .expect_err("a wrong secret is refused at open");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("s3://{}/", garage.bucket)), "{err}");
    assert!(err.is_transient());
}

/// Other replicas share the bucket: a sweep never removes pending objects younger than the
/// configured floor, whatever age it is asked for (start-up recovery asks for zero).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_objects_younger_than_the_floor_survive_any_sweep() {
    let garage = tokio::task::spawn_blocking(intact_testkit::shared_garage)
        .await
        .expect("garage");
    let settings = s3_settings(garage, "pending-floor");
    let writer = S3BlobStore::open(&settings).await.expect("open");
    let mut body: &[u8] = b"another replica's upload";
    let pending = writer.write(&mut body, None).await.expect("write");
    // Another replica on the same bucket and prefix: it does not hold the pending object.
    let mut floored = settings.clone();
    floored.pending_min_age = Duration::from_secs(3600);
    let other = S3BlobStore::open(&floored).await.expect("open");
    assert_eq!(other.sweep_pending(Duration::ZERO).await.expect("sweep"), 0);
    assert_eq!(other.pending_count().await.expect("pending"), 1);
    // Without the floor, the same sweep takes it: the floor is what kept it.
    let unfloored = S3BlobStore::open(&settings).await.expect("open");
    assert_eq!(unfloored.sweep_pending(Duration::ZERO).await.expect("sweep"), 1);
    assert_eq!(writer.pending_count().await.expect("pending"), 0);
    assert!(writer.persist(pending).await.is_err(), "its bytes are gone");
}
