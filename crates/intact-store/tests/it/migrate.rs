//! `intact_store::migrate`: an embedded store (SQLite + files) copied into a PostgreSQL
//! catalog with its own blob store, whole, resumably and verified.

use std::time::Duration;

use intact_core::{Digest, FilePath, Name, RepoName, Version};
use intact_store::migrate::{migrate, verify_copy};
use intact_store::store::BeginRequest;
use intact_store::{OpenOutcome, VersionSpec};
use tokio::io::AsyncReadExt;

use crate::Harness;

fn repo() -> RepoName {
    RepoName::parse("files").expect("repo")
}

async fn publish(h: &Harness, name: &str, version: &str, metadata: serde_json::Value, files: &[(&str, &[u8])]) {
    let t = match h
        .store
        .begin(BeginRequest {
            repo: repo(),
            name: Name::parse(name).expect("name"),
            version: version.parse().expect("version"),
            metadata,
            lease: None,
            idempotency_key: None,
            wait: Duration::ZERO,
            base: None,
        })
        .await
        .expect("begin")
    {
        OpenOutcome::Created(t) => t,
        other => panic!("{other:?}"),
    };
    for (p, bytes) in files {
        let mut body = *bytes;
        h.store
            .put_file(&t.id, FilePath::parse(p).expect("path"), &mut body, None, None)
            .await
            .expect("put");
    }
    h.store.commit(&t.id).await.expect("commit");
}

async fn read(h: &Harness, name: &str, version: &str, path: &str) -> Vec<u8> {
    let m = h
        .store
        .manifest(
            &repo(),
            &Name::parse(name).expect("name"),
            &Version::parse(version).expect("v"),
        )
        .await
        .expect("manifest");
    let f = m.file(path).expect("file").clone();
    let mut out = Vec::new();
    h.store
        .read_file(&f, None)
        .await
        .expect("read")
        .body
        .read_to_end(&mut out)
        .await
        .expect("body");
    out
}

fn big(seed: u8) -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_is_copied_whole_resumably_and_verified() {
    let source = crate::sqlite_fs().await;
    let target = crate::postgres_fs().await;
    let shared = b"shared license text".as_slice();
    let large = big(1);
    publish(
        &source,
        "app",
        "1",
        serde_json::json!({"build": 1}),
        &[("LICENSE", shared), ("app.bin", &large)],
    )
    .await;
    publish(
        &source,
        "app",
        "2",
        serde_json::json!({"build": 2}),
        &[("LICENSE", shared), ("app.bin", b"v2")],
    )
    .await;
    publish(
        &source,
        "lib",
        "0.1",
        serde_json::json!({}),
        &[("LICENSE", shared), ("empty", b"")],
    )
    .await;
    // A version the source evicted (as a proxy cache does) is not copied.
    publish(&source, "gone", "1", serde_json::json!({}), &[("x", b"evicted")]).await;
    source
        .store
        .delete_version(
            &repo(),
            &Name::parse("gone").expect("n"),
            &Version::parse("1").expect("v"),
            "test",
        )
        .await
        .expect("evict");

    // An earlier run was interrupted after opening app@2 and staging one of its files.
    let interrupted = match target
        .store
        .begin(BeginRequest {
            repo: repo(),
            name: Name::parse("app").expect("name"),
            version: VersionSpec::Exact(Version::parse("2").expect("v")),
            metadata: serde_json::json!({"build": 2}),
            lease: Some(Duration::from_secs(3600)),
            idempotency_key: Some("intact-migrate:app@2".into()),
            wait: Duration::ZERO,
            base: None,
        })
        .await
        .expect("begin")
    {
        OpenOutcome::Created(t) => t,
        other => panic!("{other:?}"),
    };
    let mut body = shared;
    target
        .store
        .put_file(
            &interrupted.id,
            FilePath::parse("LICENSE").expect("p"),
            &mut body,
            None,
            None,
        )
        .await
        .expect("put");

    // Tokens, a revoked one too: each must work (or stay refused) against the target as it
    // did against the source.
    use intact_store::tokens::{self, Presented};
    let scopes = || vec!["files:publish".parse().expect("scope")];
    let (_, ci) = tokens::create(source.store.catalog().as_ref(), "ci", scopes(), None)
        .await
        .expect("token");
    let (_, old) = tokens::create(source.store.catalog().as_ref(), "old", scopes(), None)
        .await
        .expect("token");
    source.store.catalog().revoke_token("old").await.expect("revoke");

    let report = migrate(&source.store, &target.store, &|_| {}).await.expect("migrate");
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(report.versions_copied, 3, "{report:?}");
    assert_eq!(report.tokens_copied, 2, "{report:?}");
    let now = target.store.now();
    let judged = |secret: String| {
        let catalog = target.store.catalog().clone();
        async move {
            tokens::authenticate(catalog.as_ref(), &secret, now)
                .await
                .expect("auth")
        }
    };
    assert!(matches!(judged(ci).await, Presented::Valid(t) if t.name == "ci"));
    assert!(matches!(judged(old).await, Presented::Unusable(why) if why.contains("revoked")));
    // The interrupted run had put LICENSE in place: only the two app.bin and the empty file
    // are copied, LICENSE is found three times.
    assert_eq!((report.blobs_copied, report.blobs_already_there), (3, 3), "{report:?}");
    assert_eq!(report.bytes_copied, large.len() as u64 + 2, "{report:?}");
    assert_eq!(read(&target, "app", "1", "app.bin").await, large);
    assert_eq!(read(&target, "lib", "0.1", "LICENSE").await, shared);
    assert_eq!(read(&target, "lib", "0.1", "empty").await, b"");
    let m = target
        .store
        .manifest(
            &repo(),
            &Name::parse("app").expect("n"),
            &Version::parse("2").expect("v"),
        )
        .await
        .expect("manifest");
    assert_eq!(m.metadata, serde_json::json!({"build": 2}));
    assert_eq!(
        m.transaction.as_ref(),
        Some(&interrupted.id),
        "the interrupted transaction was resumed"
    );
    let gone = target
        .store
        .catalog()
        .manifest(
            &repo(),
            &Name::parse("gone").expect("n"),
            &Version::parse("1").expect("v"),
        )
        .await
        .expect("read");
    assert!(gone.is_none(), "an evicted version is not resurrected");
    // Listings come out in the source's commit order.
    let listed: Vec<String> = target
        .store
        .list_versions(&repo(), &Name::parse("app").expect("n"), None, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|v| v.version.to_string())
        .collect();
    assert_eq!(listed, ["1", "2"]);

    let check = verify_copy(&source.store, &target.store).await.expect("verify");
    assert!(check.problems.is_empty(), "{check:?}");
    assert_eq!(check.versions_checked, 3);

    // Running it again copies nothing.
    let again = migrate(&source.store, &target.store, &|_| {})
        .await
        .expect("migrate again");
    assert_eq!(
        (again.versions_copied, again.blobs_copied, again.versions_already_there),
        (0, 0, 3),
        "{again:?}"
    );
    assert_eq!((again.tokens_copied, again.tokens_already_there), (0, 2), "{again:?}");
    assert!(again.problems.is_empty(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_source_bytes_and_conflicting_targets_are_reported_not_copied() {
    let source = crate::sqlite_fs().await;
    let target = crate::postgres_fs().await;
    publish(&source, "ok", "1", serde_json::json!({}), &[("a", b"fine")]).await;
    publish(&source, "rotten", "1", serde_json::json!({}), &[("a", b"will rot")]).await;
    publish(&source, "clash", "1", serde_json::json!({}), &[("a", b"source side")]).await;
    source
        .hooks
        .store_raw(&Digest::of(b"will rot"), b"will r0t")
        .await
        .expect("damage");
    publish(&target, "clash", "1", serde_json::json!({}), &[("a", b"target side")]).await;

    let report = migrate(&source.store, &target.store, &|_| {}).await.expect("migrate");
    assert_eq!(report.versions_copied, 1, "{report:?}");
    assert_eq!(report.problems.len(), 2, "{report:?}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.starts_with("files/rotten@1") && p.contains("hash")),
        "{report:?}"
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.starts_with("files/clash@1") && p.contains("different content")),
        "{report:?}"
    );
    // Nothing of the damaged version reached the target, not even half-open.
    let rotten = target
        .store
        .catalog()
        .manifest(
            &repo(),
            &Name::parse("rotten").expect("n"),
            &Version::parse("1").expect("v"),
        )
        .await
        .expect("read");
    assert!(rotten.is_none());
    assert!(
        target
            .store
            .catalog()
            .open_txns(&repo(), 10)
            .await
            .expect("open")
            .is_empty()
    );
    assert!(
        target
            .blobs
            .size(&Digest::of(b"will r0t"))
            .await
            .expect("size")
            .is_none()
    );
    let check = verify_copy(&source.store, &target.store).await.expect("verify");
    assert_eq!(check.problems.len(), 2, "{check:?}");
}
