//! Publishing only what changed: `POST /api/v1/blobs/missing` says which bytes the store
//! lacks, and `PUT .../files/{path}` with `x-blob-sha256` and no body adds a file by the
//! digest of bytes it holds, refused (never guessed) when it holds none.

use intact_core::Digest;
use reqwest::StatusCode;
use serde_json::json;

use crate::{Server, assert_error, json_of, str_of};

async fn missing(s: &Server, digests: serde_json::Value) -> (StatusCode, serde_json::Value) {
    let resp = s
        .http
        .post(s.url("/api/v1/blobs/missing"))
        .json(&json!({ "digests": digests }))
        .send()
        .await
        .expect("missing");
    json_of(resp).await
}

async fn put_by_digest(
    s: &Server,
    txn: &str,
    path: &str,
    digest: &str,
    body: &'static [u8],
) -> (StatusCode, serde_json::Value) {
    let resp = s
        .http
        .put(s.url(&format!("/api/v1/transactions/{txn}/files/{path}")))
        .header("x-blob-sha256", digest)
        .body(body)
        .send()
        .await
        .expect("put");
    json_of(resp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_files_are_added_by_digest_and_only_missing_bytes_are_uploaded() {
    let s = Server::start().await;
    s.publish(
        "seq/plate",
        "1",
        &[("f001.exr", b"frame one"), ("f002.exr", b"frame two")],
    )
    .await;
    let (one, two, new) = (
        Digest::of(b"frame one").to_hex(),
        Digest::of(b"frame two").to_hex(),
        Digest::of(b"frame two, changed").to_hex(),
    );

    // Asked in any order, with repeats: the missing ones, in the order asked, once each.
    let (status, v) = missing(&s, json!([new, one, new, two])).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"missing": [new]}));
    // Bad input names the entry at fault; too many is refused whole.
    let got = missing(&s, json!([one, "not-a-digest"])).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("digests"));
    assert!(str_of(&got.1, "message").contains("entry 1"), "{}", got.1);
    let too_many = vec![one.clone(); 10_001];
    assert_error(
        &missing(&s, json!(too_many)).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("digests"),
    );

    // Version 2: f001 by digest, f002 uploaded (it changed).
    let (id, _) = s.open(json!({"name": "seq/plate", "version": "2"})).await;
    let (status, f) = put_by_digest(&s, &id, "f001.exr", &one, b"").await;
    assert_eq!(status, StatusCode::CREATED, "{f}");
    assert_eq!(f, json!({"path": "f001.exr", "size": 9, "sha256": one}));
    let (status, f) = s.put(&id, "f002.exr", b"frame two, changed".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{f}");
    // Bytes the store does not hold: refused, naming the header; nothing staged.
    let unknown = Digest::of(b"never uploaded").to_hex();
    let got = put_by_digest(&s, &id, "f003.exr", &unknown, b"").await;
    assert_error(&got, StatusCode::CONFLICT, "blob_not_stored", Some("x-blob-sha256"));
    // A body with the header is a mistake, not an upload.
    let got = put_by_digest(&s, &id, "f004.exr", &one, b"frame one").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("x-blob-sha256"));
    let got = put_by_digest(&s, &id, "f005.exr", "xyz", b"").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid", Some("x-blob-sha256"));
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let paths: Vec<String> = m["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| str_of(f, "path"))
        .collect();
    assert_eq!(paths, ["f001.exr", "f002.exr"]);
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/seq/plate/@v/2/f001.exr").await,
        (StatusCode::OK, b"frame one".to_vec())
    );
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/seq/plate/@v/2/f002.exr").await,
        (StatusCode::OK, b"frame two, changed".to_vec())
    );
    // Now stored.
    assert_eq!(missing(&s, json!([new])).await.1, json!({"missing": []}));
}
