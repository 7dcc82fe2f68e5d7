//! Who gets a version: racing publishers, idempotent retries, rollback, lease expiry on the
//! virtual clock, lock waiters, and re-publishing a committed version (same content: the same
//! version; other content: `conflict`).

use std::sync::Arc;
use std::time::Duration;

use intact_core::Digest;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{Server, assert_error, client, json_of, str_of};

/// What one racing publisher saw.
#[derive(Debug)]
enum Outcome {
    /// Opened the transaction and committed it.
    Won {
        txn: String,
        commit: StatusCode,
        content: Vec<u8>,
    },
    /// Opening was refused (`locked`), or, having opened after the winner committed, the
    /// commit was (`conflict`: other content).
    Refused(StatusCode, Value),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_race_one_version() {
    let s = Arc::new(Server::start().await);
    const CLIENTS: usize = 20;
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (s, barrier) = (s.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            // Each publisher has its own client, so its own connections.
            let http = client();
            let content = format!("publisher {i} was here").repeat(100).into_bytes();
            barrier.wait().await;
            let resp = http
                .post(s.url("/api/v1/repos/files/transactions"))
                .json(&json!({"name": "race/target", "version": "1.0", "metadata": {"publisher": i}}))
                .send()
                .await
                .expect("create");
            let (status, v) = json_of(resp).await;
            if status != StatusCode::CREATED {
                return Outcome::Refused(status, v);
            }
            let txn = str_of(&v, "id");
            let resp = http
                .put(s.url(&format!("/api/v1/transactions/{txn}/files/payload.bin")))
                .body(content.clone())
                .send()
                .await
                .expect("put");
            assert_eq!(resp.status(), StatusCode::CREATED);
            let resp = http
                .post(s.url(&format!("/api/v1/transactions/{txn}/commit")))
                .send()
                .await
                .expect("commit");
            let commit = resp.status();
            if commit == StatusCode::CONFLICT {
                let (status, v) = json_of(resp).await;
                return Outcome::Refused(status, v);
            }
            Outcome::Won { txn, commit, content }
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("publisher task"));
    }
    let winners: Vec<_> = outcomes.iter().filter(|o| matches!(o, Outcome::Won { .. })).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one publisher may open the version: {outcomes:?}"
    );
    let Outcome::Won { txn, commit, content } = winners[0] else {
        unreachable!()
    };
    assert_eq!(*commit, StatusCode::CREATED);
    for o in &outcomes {
        if let Outcome::Refused(status, v) = o {
            assert_eq!(*status, StatusCode::CONFLICT, "{v}");
            match v["error"].as_str() {
                Some("locked") => {
                    assert_eq!(v["holder"]["id"], txn.as_str(), "{v}");
                    assert!(v["holder"]["expires_at"].is_string(), "{v}");
                }
                // Opened once the winner had committed: its different content conflicts,
                // and the message says what differs.
                Some("conflict") => {
                    assert!(v["differences"]["changed"][0]["path"] == "payload.bin", "{v}");
                }
                other => panic!("unexpected refusal {other:?}: {v}"),
            }
        }
    }
    let (status, bytes) = s.get_bytes("/api/v1/repos/files/race/target/@v/1.0/payload.bin").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&bytes, content);
    assert_eq!(s.versions("race/target").await, ["1.0"]);
    let committed: Vec<_> = s
        .events(0)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "committed")
        .collect();
    assert_eq!(committed.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_return_the_same_transaction_and_version() {
    let s = Server::start().await;
    for (name, spec, key) in [
        ("idem/auto", "auto", "farm-job-1"),
        ("idem/exact", "2.0.0", "farm-job-2"),
    ] {
        let req = json!({"name": name, "version": spec, "metadata": {"job": key}, "idempotency_key": key});
        let (status, first) = s.create(req.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        let id = str_of(&first, "id");
        let version = str_of(&first, "version");
        if spec == "auto" {
            assert_eq!(version, "1");
        }
        // Retry while open: the same transaction, 200.
        let (status, retry) = s.create(req.clone()).await;
        assert_eq!(status, StatusCode::OK, "{retry}");
        assert_eq!(retry["id"], id.as_str());
        assert_eq!(retry["version"], version.as_str());
        assert_eq!(retry["state"], "open");
        let (status, _) = s.put(&id, "out.bin", key.as_bytes().to_vec()).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, m) = s.commit(&id).await;
        assert_eq!(status, StatusCode::CREATED, "{m}");
        // Retry after commit: 200 with the manifest of the same version.
        let (status, retry) = s.create(req.clone()).await;
        assert_eq!(status, StatusCode::OK, "{retry}");
        assert_eq!(retry["id"], id.as_str());
        assert_eq!(retry["state"], "committed");
        assert_eq!(retry["version"], version.as_str());
        assert_eq!(retry["manifest"], m);
        assert_eq!(
            s.versions(name).await,
            std::slice::from_ref(&version),
            "a retry never creates a second version"
        );
        // Without the key, the same request is a new publish of the committed version: the
        // same content is the same version (200), other content a conflict naming it.
        let again = json!({"name": name, "version": version, "metadata": {"job": key}});
        let (id2, _) = s.open(again.clone()).await;
        let (status, _) = s.put(&id2, "out.bin", key.as_bytes().to_vec()).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, same) = s.commit(&id2).await;
        assert_eq!(status, StatusCode::OK, "{same}");
        assert_eq!(same, m);
        let (id3, _) = s.open(again).await;
        let got = s.commit(&id3).await;
        assert_error(&got, StatusCode::CONFLICT, "conflict", None);
        assert_eq!(got.1["differences"]["only_existing"], json!(["out.bin"]), "{}", got.1);
        assert_eq!(s.versions(name).await, std::slice::from_ref(&version));
    }

    // The Idempotency-Key header does the same.
    let with_header = |key: &'static str, body: Value| {
        s.http
            .post(s.url("/api/v1/repos/files/transactions"))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let body = json!({"name": "idem/header", "version": "auto"});
    let (status, first) = json_of(with_header("hdr-1", body.clone()).await.expect("create")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, retry) = json_of(with_header("hdr-1", body.clone()).await.expect("create")).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry["id"], first["id"]);
    // The body's key is the same key as the header's.
    let (status, retry) = s
        .create(json!({"name": "idem/header", "version": "auto", "idempotency_key": "hdr-1"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry["id"], first["id"]);
    // Header and body disagreeing is a bad request.
    let got = json_of(
        with_header(
            "hdr-1",
            json!({"name": "idem/header", "version": "auto", "idempotency_key": "hdr-2"}),
        )
        .await
        .expect("create"),
    )
    .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("idempotency_key"));

    // The key reused for another request: 422, whatever differs.
    for other in [
        json!({"name": "idem/header", "version": "auto", "metadata": {"x": 1}}),
        json!({"name": "idem/header", "version": "7"}),
        json!({"name": "idem/other", "version": "auto"}),
    ] {
        let got = json_of(with_header("hdr-1", other.clone()).await.expect("create")).await;
        assert_error(
            &got,
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_mismatch",
            Some("idempotency_key"),
        );
    }
    // Empty or control-character keys are refused.
    for bad in ["", "a\u{7}b"] {
        let got = s
            .create(json!({"name": "idem/bad", "version": "1", "idempotency_key": bad}))
            .await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("idempotency_key"));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_rolls_back_and_reclaims_blobs() {
    let s = Server::start().await;
    let (id, _) = s.open(json!({"name": "rollback/me", "version": "1"})).await;
    let content = b"bytes only this aborted transaction ever staged".to_vec();
    let (status, _) = s.put(&id, "f.bin", content.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let blob = s.blob_path(&Digest::of(&content));
    assert!(
        blob.is_file(),
        "staged bytes are durable under their digest before commit: {}",
        blob.display()
    );

    assert_eq!(s.abort(&id).await, StatusCode::NO_CONTENT);
    let t = s.txn(&id).await;
    assert_eq!(t["state"], "aborted");
    assert_eq!(t["files"], json!([]));
    assert!(!blob.exists(), "an aborted transaction's unreferenced blob is deleted");
    let got = s.commit(&id).await;
    assert_error(&got, StatusCode::CONFLICT, "not_open", None);
    assert_eq!(got.1["state"], "aborted");
    let got = s.put(&id, "g.bin", b"late".to_vec()).await;
    assert_error(&got, StatusCode::CONFLICT, "not_open", None);
    let got = json_of(
        s.http
            .post(s.url(&format!("/api/v1/transactions/{id}/renew")))
            .send()
            .await
            .expect("renew"),
    )
    .await;
    assert_error(&got, StatusCode::CONFLICT, "not_open", None);
    assert_eq!(
        s.abort(&id).await,
        StatusCode::NO_CONTENT,
        "a second DELETE is harmless"
    );
    assert!(s.versions("rollback/me").await.is_empty());
    assert_error(
        &s.get_json("/api/v1/repos/files/rollback/me/@v/1/f.bin").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    // The version is free again.
    let (id2, _) = s.open(json!({"name": "rollback/me", "version": "1"})).await;
    let (status, _) = s.commit(&id2).await;
    assert_eq!(status, StatusCode::CREATED);
    // A committed transaction cannot be rolled back.
    let resp = s
        .http
        .delete(s.url(&format!("/api/v1/transactions/{id2}")))
        .send()
        .await
        .expect("delete");
    let got = json_of(resp).await;
    assert_error(&got, StatusCode::CONFLICT, "not_open", None);
    assert_eq!(got.1["state"], "committed");
    // Unknown (well-formed) transaction ids are 404.
    let unknown = "tx_aaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_error(
        &s.get_json(&format!("/api/v1/transactions/{unknown}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(&s.commit(unknown).await, StatusCode::NOT_FOUND, "not_found", None);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_cannot_commit_and_frees_the_version() {
    let s = Server::start().await;
    let (id, _) = s
        .open(json!({"name": "lease/x", "version": "1", "lease_seconds": 10}))
        .await;
    let content = b"staged by a transaction that will expire".to_vec();
    let (status, _) = s.put(&id, "f.bin", content.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    // While the lease runs, the version is locked.
    let got = s.create(json!({"name": "lease/x", "version": "1"})).await;
    assert_error(&got, StatusCode::CONFLICT, "locked", None);
    assert_eq!(got.1["holder"]["id"], id.as_str());

    s.clock.advance(Duration::from_secs(11));
    let got = s.commit(&id).await;
    assert_error(&got, StatusCode::CONFLICT, "not_open", None);
    assert_eq!(got.1["state"], "expired");
    assert_eq!(s.txn(&id).await["state"], "expired");
    let got = json_of(
        s.http
            .post(s.url(&format!("/api/v1/transactions/{id}/renew")))
            .send()
            .await
            .expect("renew"),
    )
    .await;
    assert_error(&got, StatusCode::CONFLICT, "not_open", None);
    // Whoever noticed the expiry (this commit or the reaper), the staged bytes are garbage now:
    // a collection with no grace period removes them.
    let (status, gc) = json_of(
        s.http
            .post(s.url("/api/v1/admin/gc"))
            .json(&json!({"grace_seconds": 0}))
            .send()
            .await
            .expect("gc"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{gc}");
    assert!(
        !s.blob_path(&Digest::of(&content)).exists(),
        "an expired transaction's staged blob is reclaimed"
    );
    // The lock is released: a new transaction for the same version goes through.
    let m = s.publish("lease/x", "1", &[("f.bin", b"the second attempt")]).await;
    assert_eq!(m["version"], "1");
    assert_eq!(s.versions("lease/x").await, ["1"]);
    // The expiry is in the event log.
    let expired: Vec<_> = s
        .events(0)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "aborted" && e["transaction"] == id.as_str())
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["data"]["reason"], "lease expired");

    // Uploads renew the lease: a transaction touched every 6 s on a 10 s lease lives on.
    let (id, _) = s
        .open(json!({"name": "lease/renewed", "version": "1", "lease_seconds": 10}))
        .await;
    for i in 0..4 {
        s.clock.advance(Duration::from_secs(6));
        let (status, v) = s.put(&id, &format!("f{i}"), vec![i]).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    s.clock.advance(Duration::from_secs(6));
    let (status, v) = json_of(
        s.http
            .post(s.url(&format!("/api/v1/transactions/{id}/renew")))
            .send()
            .await
            .expect("renew"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "open");
    s.clock.advance(Duration::from_secs(6));
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["files"].as_array().map(Vec::len), Some(4));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_waiters_proceed_when_the_holder_finishes() {
    let s = Arc::new(Server::start().await);

    // Holder aborts: the waiter gets the version.
    let (holder, _) = s
        .open(json!({"name": "wait/x", "version": "1", "lease_seconds": 300}))
        .await;
    let waiter = {
        let s = s.clone();
        // wait_seconds is the maximum (300) and the guard below is far shorter, so a waiter
        // that was not woken by the abort would fail the test instead of quietly retrying
        // once its own wait ran out.
        tokio::spawn(async move {
            s.create(json!({"name": "wait/x", "version": "1", "wait_seconds": 300}))
                .await
        })
    };
    // Let the waiter reach the lock first (ordering only: the outcome is the same either way).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the waiter returned while the version was held");
    assert_eq!(s.abort(&holder).await, StatusCode::NO_CONTENT);
    let (status, v) = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the waiter was not woken by the holder's abort")
        .expect("waiter task");
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let waiter_id = str_of(&v, "id");
    assert_ne!(waiter_id, holder);
    let (status, _) = s.commit(&waiter_id).await;
    assert_eq!(status, StatusCode::CREATED);

    // Holder commits: the waiter proceeds with a transaction of its own, whose content is
    // compared with the committed version at commit.
    let (holder, _) = s.open(json!({"name": "wait/y", "version": "1"})).await;
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move {
            s.create(json!({"name": "wait/y", "version": "1", "wait_seconds": 300}))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = s.commit(&holder).await;
    assert_eq!(status, StatusCode::CREATED);
    let got = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the waiter was not woken by the holder's commit")
        .expect("waiter task");
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    let (status, _) = s.commit(&str_of(&got.1, "id")).await;
    assert_eq!(status, StatusCode::OK, "the same (empty) content is the same version");

    // wait_seconds past the maximum is refused up front.
    let got = s
        .create(json!({"name": "wait/z", "version": "1", "wait_seconds": 301}))
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("wait_seconds"));
}

/// A publisher whose lease expired cannot overwrite what another committed after taking its
/// lock over: the lock is only taken over once its holder has *expired* (in the same catalog
/// transaction), after which the old holder can never commit (`not_open`/`expired`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_publisher_cannot_overwrite_a_newer_commit() {
    let s = Server::start().await;
    let (a, _) = s
        .open(json!({"name": "stale/x", "version": "1", "lease_seconds": 10}))
        .await;
    let (status, _) = s.put(&a, "f.bin", b"A's content".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    s.clock.advance(Duration::from_secs(11));
    // B takes the expired lock over and commits different content.
    let (b, _) = s.open(json!({"name": "stale/x", "version": "1"})).await;
    let (status, _) = s.put(&b, "f.bin", b"B's content".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, mb) = s.commit(&b).await;
    assert_eq!(status, StatusCode::CREATED);
    // A comes back.
    let got = s.commit(&a).await;
    assert_error(&got, StatusCode::CONFLICT, "not_open", None);
    assert_eq!(got.1["state"], "expired");
    let got = s.put(&a, "f.bin", b"A again".to_vec()).await;
    assert_error(&got, StatusCode::CONFLICT, "not_open", None);
    let (status, bytes) = s.get_bytes("/api/v1/repos/files/stale/x/@v/1/f.bin").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, b"B's content");
    assert_eq!(s.get_json("/api/v1/repos/files/stale/x/@v/1").await.1, mb);

    // Identical content re-committed: a repeated commit and an idempotent retry are both 200.
    let req = json!({"name": "stale/y", "version": "1", "idempotency_key": "same-content"});
    let (c, _) = s.open(req.clone()).await;
    let (status, _) = s.put(&c, "f.bin", b"C".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, mc) = s.commit(&c).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again) = s.commit(&c).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, mc);
    let (status, retry) = s.create(req).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry["manifest"], mc);
    assert_eq!(s.versions("stale/y").await, ["1"]);
    s.stop().await;
}
