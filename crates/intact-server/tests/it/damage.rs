//! Bit rot under a running server: a damaged blob is never served as a complete body, is
//! quarantined, and `verify` names the versions that need repair; a damaged copy in a proxy
//! (staging) repo is fetched again instead.

use intact_core::Digest;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{Server, assert_error, json_of};

fn rot(s: &Server, content: &[u8]) {
    let path = s.blob_path(&Digest::of(content));
    let mut bytes = std::fs::read(&path).expect("read blob");
    bytes[0] ^= 0x01;
    std::fs::write(&path, bytes).expect("rot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_blobs_are_never_served_whole() {
    let s = Server::start().await;
    let small = b"release notes".to_vec();
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    s.publish("rot", "1", &[("notes.txt", &small), ("image.bin", &big)])
        .await;
    rot(&s, &small);
    rot(&s, &big);

    // The small file: refused before any byte.
    let got = json_of(
        s.http
            .get(s.url("/api/v1/repos/files/rot/@v/1/notes.txt"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_error(&got, StatusCode::INTERNAL_SERVER_ERROR, "blob_damaged", None);

    // The large one: the body is cut short of its length (never a complete wrong body).
    let resp = s
        .http
        .get(s.url("/api/v1/repos/files/rot/@v/1/image.bin"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK, "headers go out before the damage shows");
    match resp.bytes().await {
        Err(_) => {}
        Ok(body) => assert!(body.len() < big.len(), "a damaged file was served whole"),
    }

    // Quarantined: later reads say the blob is missing; verify names both files. (A fresh
    // client: the cut connection must not be reused.)
    let http = crate::client();
    let mut verify = Value::Null;
    for _ in 0..100 {
        verify = json_of(
            http.post(s.url("/api/v1/admin/verify"))
                .json(&json!({}))
                .send()
                .await
                .expect("verify"),
        )
        .await
        .1;
        if verify["problems"].as_array().is_some_and(|p| p.len() == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(verify["ok"], false, "{verify}");
    let mut named: Vec<String> = verify["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .flat_map(|p| p["versions"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    named.sort();
    assert_eq!(named, ["files/rot@1:image.bin", "files/rot@1:notes.txt"], "{verify}");
    let got = json_of(
        s.http
            .get(s.url("/api/v1/repos/files/rot/@v/1/image.bin"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_error(&got, StatusCode::INTERNAL_SERVER_ERROR, "blob_missing", None);
    let quarantined = std::fs::read_dir(s.data.join("quarantine"))
        .expect("quarantine dir")
        .count();
    assert_eq!(quarantined, 2, "the damaged bytes are kept aside for inspection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_cached_copy_is_staged_again() {
    let up = tempfile::tempdir().expect("upstream");
    std::fs::create_dir_all(up.path().join("build-7")).expect("mkdir");
    let payload: Vec<u8> = (0..500_000u32).map(|i| (i % 239) as u8).collect();
    std::fs::write(up.path().join("build-7/payload.bin"), &payload).expect("write");
    let config = intact_server::Config::from_toml(&format!(
        r#"
[[repo]]
name = "builds"
kind = "proxy"
format = "generic"
upstream = "file://{}"
[repo.artifacts]
payload = {{ files = ["payload.bin"] }}
"#,
        up.path().display()
    ))
    .expect("config");
    let s = Server::start_with(config).await;
    let url = s.url("/api/v1/repos/builds/build-7/@v/payload/payload.bin");
    let first = s.http.get(&url).send().await.expect("get").bytes().await.expect("body");
    assert_eq!(first.as_ref(), payload.as_slice());
    rot(&s, &payload);
    // The damaged copy costs one cut response at most (a cut connection may also fail the
    // next request that tried to reuse it)...
    if let Ok(resp) = s.http.get(&url).send().await {
        let _ = resp.bytes().await;
    }
    // ...then the repo fetches it again from upstream and serves the right bytes.
    let mut served = Vec::new();
    for _ in 0..50 {
        let Ok(resp) = crate::client().get(&url).send().await else {
            continue;
        };
        if resp.status() == StatusCode::OK
            && let Ok(b) = resp.bytes().await
            && b.as_ref() == payload.as_slice()
        {
            served = b.to_vec();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(served, payload, "the cached copy was not staged again");
}

/// A range that covers the whole file (`bytes=0-`, as download managers and resuming clients
/// send for a fresh download, or its other spellings) *is* a whole download: a damaged blob
/// must not go out complete through it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_covering_the_whole_file_never_serves_damage_whole() {
    let s = Server::start().await;
    let small = b"release notes".to_vec();
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    for (file, content) in [("notes.txt", &small), ("image.bin", &big)] {
        let len = content.len() + 1;
        for (i, range) in [
            "bytes=0-".to_owned(),
            format!("bytes=0-{}", len - 1),
            format!("bytes=-{len}"),
        ]
        .into_iter()
        .enumerate()
        {
            // Other content each round (one more byte), so every round starts from a blob
            // nobody has read (or quarantined) yet.
            let version = format!("{file}-{i}");
            let mut content = content.clone();
            content.push(i as u8);
            s.publish("ranged", &version, &[(file, content.as_slice())]).await;
            rot(&s, &content);
            let url = s.url(&format!("/api/v1/repos/files/ranged/@v/{version}/{file}"));
            let Ok(resp) = crate::client().get(&url).header("range", &range).send().await else {
                continue;
            };
            let status = resp.status();
            if let Ok(body) = resp.bytes().await {
                assert!(
                    !(status.is_success() && body.len() == len),
                    "{file} {range}: {status} served the damaged file whole"
                );
            }
        }
    }
}

/// `HEAD` sends no bytes, but its answer must not promise bytes that are gone: a file whose
/// blob was quarantined (or lost) answers like `GET` does, not `200` with its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_does_not_promise_a_lost_blob() {
    let s = Server::start().await;
    let content = b"a file that will be lost".to_vec();
    s.publish("lost", "1", &[("f.txt", &content)]).await;
    std::fs::remove_file(s.blob_path(&Digest::of(&content))).expect("lose the blob");
    let url = s.url("/api/v1/repos/files/lost/@v/1/f.txt");
    let get = s.http.get(&url).send().await.expect("get").status();
    let head = s.http.head(&url).send().await.expect("head").status();
    assert_eq!(get, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(head, get, "HEAD answered {head} for a file GET cannot serve");
}

/// The Go proxy answers in its own protocol's format even when storage fails under it: a
/// `.zip` whose blob is lost is a plain-text 500 (the go command prints the body), never the
/// artifact API's JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_go_zip_is_a_plain_text_error() {
    let s = Server::start().await;
    let scratch = tempfile::tempdir().expect("scratch");
    let dir = scratch.path().join("m");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("go.mod"), "module example.com/lost\n").expect("go.mod");
    std::fs::write(dir.join("m.go"), "package lost\n").expect("m.go");
    let mut zip = std::io::Cursor::new(Vec::new());
    intact_go::zip::create_from_dir(&dir, "example.com/lost", "v1.0.0", &mut zip).expect("zip");
    let (status, v) = json_of(
        s.http
            .post(s.url("/go/go-private/publish?module=example.com/lost&version=v1.0.0"))
            .body(zip.into_inner())
            .send()
            .await
            .expect("go publish"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let digest = Digest::parse(v["zip_sha256"].as_str().expect("zip_sha256")).expect("digest");
    std::fs::remove_file(s.blob_path(&digest)).expect("lose the zip's blob");

    let resp = s
        .http
        .get(s.url("/go/go-private/example.com/lost/@v/v1.0.0.zip"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let body = resp.text().await.expect("body");
    assert!(!body.trim_start().starts_with('{'), "not JSON: {body}");
    assert!(!body.is_empty(), "says what went wrong");
}
