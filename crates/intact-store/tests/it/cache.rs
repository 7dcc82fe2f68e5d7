//! The per-replica local cache in front of a remote blob store (here the in-memory store, a
//! real backend without local files): filled by whole reads once the bytes hashed right,
//! warm reads served from a local file, bounded by size with the least recently read
//! evicted, entries kept across a restart.

use std::sync::Arc;
use std::time::Duration;

use intact_core::Digest;
use intact_store::{BlobStore, BlobTestHooks, CachedBlobStore, MemoryBlobStore};
use tokio::io::AsyncReadExt;

async fn put(remote: &MemoryBlobStore, bytes: &[u8]) -> Digest {
    let mut body = bytes;
    let pending = remote.write(&mut body, None).await.expect("write");
    let digest = pending.digest;
    remote.persist(pending).await.expect("persist");
    digest
}

async fn read(cache: &CachedBlobStore, digest: &Digest, range: Option<std::ops::Range<u64>>) -> (Vec<u8>, bool) {
    let mut r = cache.read(digest, range).await.expect("read");
    let mut out = Vec::new();
    r.body.read_to_end(&mut out).await.expect("body");
    (out, r.local_path.is_some())
}

/// Fills happen in the background once a read ended: wait for it (bounded).
async fn cached(cache: &CachedBlobStore, digest: &Digest) -> bool {
    for _ in 0..200 {
        if cache.contains(digest) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_read_fills_the_cache_and_warm_reads_come_from_a_local_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let remote = Arc::new(MemoryBlobStore::new());
    let cache = CachedBlobStore::open(remote.clone(), dir.path(), 1 << 30)
        .await
        .expect("open");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let digest = put(&remote, &content).await;

    let (part, local) = read(&cache, &digest, Some(10..20)).await;
    assert_eq!(
        (part.as_slice(), local),
        (&content[10..20], false),
        "a cold range read passes through"
    );
    assert!(!cache.contains(&digest), "a range read does not fill");
    let (whole, local) = read(&cache, &digest, None).await;
    assert!(whole == content && !local, "the cold read comes from the remote store");
    assert!(cached(&cache, &digest).await, "the whole read filled the cache");
    assert_eq!(cache.cached_bytes(), content.len() as u64);

    let (whole, local) = read(&cache, &digest, None).await;
    assert!(whole == content && local, "warm: the same bytes, from a local file");
    let (part, local) = read(&cache, &digest, Some(1_000_000..1_000_100)).await;
    assert!(part[..] == content[1_000_000..1_000_100] && local);
    // Served locally even once the remote copy is gone (content-addressed: never stale).
    remote.delete(&digest).await.expect("delete remote");
    assert!(read(&cache, &digest, None).await.1);
    // Deleting through the cache removes the local copy too.
    cache.delete(&digest).await.expect("delete");
    assert!(!cache.contains(&digest));
    assert_eq!(cache.cached_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_stays_within_its_size_evicting_the_least_recently_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let remote = Arc::new(MemoryBlobStore::new());
    let cache = CachedBlobStore::open(remote.clone(), dir.path(), 250)
        .await
        .expect("open");
    let a = put(&remote, &[1u8; 100]).await;
    let b = put(&remote, &[2u8; 100]).await;
    let c = put(&remote, &[3u8; 100]).await;
    let too_big = put(&remote, &[4u8; 300]).await;
    read(&cache, &a, None).await;
    assert!(cached(&cache, &a).await);
    read(&cache, &b, None).await;
    assert!(cached(&cache, &b).await);
    assert!(read(&cache, &a, None).await.1, "a is read again: now b is the oldest");
    read(&cache, &c, None).await;
    assert!(cached(&cache, &c).await);
    assert!(cache.contains(&a) && !cache.contains(&b), "b was least recently read");
    assert!(cache.cached_bytes() <= 250);
    read(&cache, &too_big, None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !cache.contains(&too_big),
        "a blob larger than the cache is never cached"
    );
    let files = std::fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(files, 2, "evicted entries leave no file behind");

    // A restart keeps what was cached.
    drop(cache);
    let cache = CachedBlobStore::open(remote.clone(), dir.path(), 250)
        .await
        .expect("reopen");
    assert!(cache.contains(&a) && cache.contains(&c));
    assert!(read(&cache, &c, None).await.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_remote_bytes_never_become_a_cache_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let remote = Arc::new(MemoryBlobStore::new());
    let cache = CachedBlobStore::open(remote.clone(), dir.path(), 1 << 20)
        .await
        .expect("open");
    let digest = Digest::of(b"the real bytes");
    remote.store_raw(&digest, b"the rotten bytes").await.expect("damage");
    read(&cache, &digest, None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!cache.contains(&digest));
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "no leftover fill"
    );
}
