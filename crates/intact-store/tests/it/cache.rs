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

/// docs/scale-out.md, "When something fails": "a replica's local cache is damaged | the
/// cached copy fails verification and is dropped; the object store is read instead". The
/// bytes in the object store are good, so the read that finds the damaged copy must serve
/// them, not fail (the HTTP API answers that failure `500 blob_damaged`; on a staging proxy
/// repo it also deletes the version for every replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_cache_entry_is_dropped_and_the_object_store_read_instead() {
    use intact_core::{FilePath, Name, RepoName, Version};
    use intact_store::OpenOutcome;
    use intact_store::store::BeginRequest;

    let cache_dir = tempfile::tempdir().expect("cache dir");
    let remote = Arc::new(MemoryBlobStore::new());
    let cache = Arc::new(
        CachedBlobStore::open(remote.clone(), cache_dir.path(), 1 << 20)
            .await
            .expect("open cache"),
    );
    let h = crate::sqlite(tempfile::tempdir().expect("tempdir"), cache.clone(), remote.clone()).await;
    let repo = RepoName::parse("files").expect("repo");
    let name = Name::parse("app").expect("name");
    let flipped: Vec<u8> = (0..5_000u32).map(|i| (i % 251) as u8).collect();
    let truncated: Vec<u8> = (0..7_000u32).map(|i| (i % 241) as u8).collect();
    let t = match h
        .store
        .begin(BeginRequest {
            repo: repo.clone(),
            name: name.clone(),
            version: "1".parse().expect("version spec"),
            metadata: serde_json::json!({}),
            lease: None,
            idempotency_key: None,
            wait: Duration::ZERO,
            base: None,
        })
        .await
        .expect("begin")
    {
        OpenOutcome::Created(t) => t,
        other => panic!("expected a new transaction, got {other:?}"),
    };
    for (p, bytes) in [("flipped", &flipped), ("truncated", &truncated)] {
        let mut body = bytes.as_slice();
        h.store
            .put_file(&t.id, FilePath::parse(p).expect("path"), &mut body, None, None)
            .await
            .expect("put_file");
    }
    h.store.commit(&t.id).await.expect("commit");
    let m = h
        .store
        .manifest(&repo, &name, &Version::parse("1").expect("v"))
        .await
        .expect("manifest");

    for (p, content) in [("flipped", &flipped), ("truncated", &truncated)] {
        let file = m.file(p).expect("file").clone();
        let mut cold = h.store.read_file_verified(&file).await.expect("cold read");
        let mut out = Vec::new();
        cold.body.read_to_end(&mut out).await.expect("cold body");
        assert!(out == *content);
        assert!(
            cached(&cache, &file.sha256).await,
            "{p}: the cold read filled the cache"
        );

        // The replica's disk damages its copy (the object store's is intact).
        let entry = cache_dir.path().join(file.sha256.to_hex());
        let mut damaged = std::fs::read(&entry).expect("cache entry");
        if p == "flipped" {
            damaged[100] ^= 0xff;
        } else {
            damaged.truncate(1_000);
        }
        std::fs::write(&entry, &damaged).expect("damage the cache entry");

        let mut read = h
            .store
            .read_file_verified(&file)
            .await
            .unwrap_or_else(|e| panic!("{p}: the object store holds good bytes, yet the read failed: {e}"));
        let mut got = Vec::new();
        read.body.read_to_end(&mut got).await.expect("body");
        assert!(got == *content, "{p}: the object store's bytes are served");
        assert_eq!(
            remote.size(&file.sha256).await.expect("size"),
            Some(content.len() as u64),
            "{p}: the good remote copy stays"
        );

        // A ranged read cannot be hashed, but a copy of the wrong size is caught: the range
        // comes whole from the object store instead of short from the damaged copy.
        if p == "truncated" {
            // The read above filled the cache again: damage the new copy the same way.
            let mut refill = h.store.read_file_verified(&file).await.expect("refill");
            refill.body.read_to_end(&mut Vec::new()).await.expect("refill body");
            assert!(cached(&cache, &file.sha256).await, "{p}: refilled");
            std::fs::write(&entry, &damaged).expect("damage the cache entry again");
            let range = 500..6_500;
            let mut read = h
                .store
                .read_file(&file, Some(range.clone()))
                .await
                .unwrap_or_else(|e| panic!("{p}: a range of good remote bytes failed: {e}"));
            let mut got = Vec::new();
            read.body.read_to_end(&mut got).await.expect("ranged body");
            assert!(
                got == content[500..6_500],
                "{p}: the range came back {} bytes, not the object store's 6,000",
                got.len()
            );
        }
    }
}

/// A user's bad day: `[blobs] local_cache.dir` set to the data dir itself (docs/scale-out.md
/// says the data dir holds "the optional blob cache"). Opening the cache removes every file
/// in its dir that is not named by a digest: in the data dir that is the embedded catalog
/// (`catalog.db` and its WAL) and the data dir's lock file. Either the store refuses that
/// configuration, or what was committed is still there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_dir_that_is_the_data_dir_never_costs_the_catalog() {
    use intact_core::{FilePath, Name, RepoName, Version};
    use intact_store::store::BeginRequest;
    use intact_store::{BlobSettings, CatalogChoice, LocalCacheSettings, OpenOutcome, Store, StoreConfig};

    let dir = tempfile::tempdir().expect("data dir");
    let garage = tokio::task::spawn_blocking(intact_testkit::shared_garage)
        .await
        .expect("start garage");
    let blobs = BlobSettings::S3(
        crate::s3_settings(garage, "cache-in-data-dir"),
        Some(LocalCacheSettings {
            dir: dir.path().to_owned(),
            max_size: 1 << 20,
        }),
    );
    let open = || Store::open(dir.path(), &CatalogChoice::Embedded, &blobs, StoreConfig::default());
    let repo = RepoName::parse("files").expect("repo");
    let name = Name::parse("app").expect("name");
    let v1 = Version::parse("1").expect("v");
    {
        let store = match open().await {
            Ok(store) => store,
            // Refused, saying why: nothing lost.
            Err(_) => return,
        };
        let t = match store
            .begin(BeginRequest {
                repo: repo.clone(),
                name: name.clone(),
                version: "1".parse().expect("version spec"),
                metadata: serde_json::json!({}),
                lease: None,
                idempotency_key: None,
                wait: Duration::ZERO,
                base: None,
            })
            .await
            .expect("begin")
        {
            OpenOutcome::Created(t) => t,
            other => panic!("expected a new transaction, got {other:?}"),
        };
        let mut body: &[u8] = b"precious";
        store
            .put_file(&t.id, FilePath::parse("f").expect("path"), &mut body, None, None)
            .await
            .expect("put_file");
        store.commit(&t.id).await.expect("commit");
    }
    let store = open().await.expect("reopen");
    assert!(
        store.has_version(&repo, &name, &v1).await.expect("lookup").is_some(),
        "a committed version vanished across a restart: the cache's start-up removed the catalog"
    );
}
