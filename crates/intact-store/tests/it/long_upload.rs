//! An upload that outlasts its transaction's lease keeps the transaction alive: the lease is
//! renewed while bytes stream in. Real time (a slow body over ~3 s against a 2 s lease), on
//! the wall clock, with a reaper sweeping every 100 ms as the server's does every second.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use intact_core::{FilePath, Name, RepoName};
use intact_store::store::BeginRequest;
use intact_store::{FsBlobStore, OpenOutcome, SqliteCatalog, Store, StoreConfig, SystemClock};
use tokio::io::{AsyncRead, ReadBuf};

/// Yields `chunks` chunks of 64 KiB, sleeping `pause` before each.
struct SlowBody {
    chunks: usize,
    pause: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for SlowBody {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.chunks == 0 {
            return Poll::Ready(Ok(()));
        }
        let pause = self.pause;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        self.chunks -= 1;
        let n = buf.remaining().min(64 * 1024);
        buf.put_slice(&vec![7u8; n]);
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_longer_than_the_lease_keeps_its_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = SqliteCatalog::open(&dir.path().join("catalog.db"), Arc::new(SystemClock))
        .await
        .expect("catalog");
    let blobs = FsBlobStore::open(dir.path()).await.expect("blobs");
    let store = Arc::new(Store::new(
        Arc::new(catalog),
        Arc::new(blobs),
        Arc::new(SystemClock),
        StoreConfig::default(),
    ));
    let reaper = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                store.expire_due().await.expect("reaper");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let req = BeginRequest {
        repo: RepoName::parse("files").expect("repo"),
        name: Name::parse("slow/upload").expect("name"),
        version: "1".parse().expect("version"),
        metadata: serde_json::json!({}),
        lease: Some(Duration::from_secs(2)),
        idempotency_key: None,
        wait: Duration::ZERO,
        base: None,
    };
    let OpenOutcome::Created(t) = store.begin(req).await.expect("begin") else {
        panic!("a new transaction")
    };
    let mut body = SlowBody {
        chunks: 10,
        pause: Duration::from_millis(300),
        sleep: None,
    };
    let entry = store
        .put_file(&t.id, FilePath::parse("big.bin").expect("path"), &mut body, None, None)
        .await
        .expect("the upload outlived the lease and still staged");
    store.commit(&t.id).await.expect("and the transaction commits");
    reaper.abort();
    assert!(entry.size > 0);
}
