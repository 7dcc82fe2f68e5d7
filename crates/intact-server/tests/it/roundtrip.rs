//! A version's whole life over HTTP: open, stream files in, nothing visible, commit, read back
//! with the caching and range semantics the read path promises.

use intact_core::Digest;
use reqwest::StatusCode;
use reqwest::header;
use serde_json::json;

use crate::{Server, assert_error, str_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_round_trip() {
    let s = Server::start().await;
    let top: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let nested: Vec<u8> = (0..=255u8).cycle().take(5000).collect();

    // Open.
    let resp = s
        .http
        .post(s.url("/api/v1/repos/files/transactions"))
        .json(
            &json!({"name": "shots/010/comp", "version": "1.0.0", "metadata": {"artist": "kim"}, "lease_seconds": 600}),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp
        .headers()
        .get(header::LOCATION)
        .expect("Location header")
        .to_str()
        .expect("ascii")
        .to_owned();
    let t: serde_json::Value = resp.json().await.expect("json");
    let id = str_of(&t, "id");
    assert_eq!(location, format!("/api/v1/transactions/{id}"));
    assert!(id.starts_with("tx_"), "{t}");
    assert_eq!(t["repo"], "files");
    assert_eq!(t["name"], "shots/010/comp");
    assert_eq!(t["version"], "1.0.0");
    assert_eq!(t["state"], "open");
    assert_eq!(t["metadata"], json!({"artist": "kim"}));
    assert_eq!(t["lease_seconds"], 600);
    assert_eq!(t["files"], json!([]));
    assert!(t["created_at"].is_string() && t["expires_at"].is_string(), "{t}");
    // The Location header leads to the transaction.
    let (status, via_location) = s.get_json(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(via_location["id"], id.as_str());

    // Upload two files, one nested.
    let (status, f1) = s.put(&id, "top.txt", top.to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{f1}");
    assert_eq!(
        f1,
        json!({"path": "top.txt", "size": top.len(), "sha256": Digest::of(top).to_hex()})
    );
    let (status, f2) = s.put(&id, "deep/er/nested.bin", nested.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{f2}");
    assert_eq!(
        f2,
        json!({"path": "deep/er/nested.bin", "size": 5000, "sha256": Digest::of(&nested).to_hex()})
    );

    // Staged, not visible.
    let staged = s.txn(&id).await;
    assert_eq!(staged["state"], "open");
    let mut paths: Vec<String> = staged["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| str_of(f, "path"))
        .collect();
    paths.sort();
    assert_eq!(paths, ["deep/er/nested.bin", "top.txt"]);
    assert_error(
        &s.get_json("/api/v1/repos/files/shots/010/comp/@v/1.0.0").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &s.get_json("/api/v1/repos/files/shots/010/comp/@v/1.0.0/top.txt").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert!(s.versions("shots/010/comp").await.is_empty());

    // Commit: 201 with the manifest; again: 200, same manifest.
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["repo"], "files");
    assert_eq!(m["name"], "shots/010/comp");
    assert_eq!(m["version"], "1.0.0");
    assert_eq!(m["metadata"], json!({"artist": "kim"}));
    assert_eq!(m["transaction"], id.as_str());
    assert!(m["seq"].as_i64().is_some_and(|n| n > 0), "{m}");
    assert_eq!(
        m["files"],
        json!([
            {"path": "deep/er/nested.bin", "size": 5000, "sha256": Digest::of(&nested).to_hex()},
            {"path": "top.txt", "size": top.len(), "sha256": Digest::of(top).to_hex()},
        ])
    );
    let (status, again) = s.commit(&id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, m);
    assert_eq!(s.txn(&id).await["state"], "committed");

    // Reads.
    let (status, got) = s.get_json("/api/v1/repos/files/shots/010/comp/@v/1.0.0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, m);
    assert_eq!(s.versions("shots/010/comp").await, ["1.0.0"]);
    let file_url = s.url("/api/v1/repos/files/shots/010/comp/@v/1.0.0/top.txt");
    let (status, bytes) = s
        .get_bytes("/api/v1/repos/files/shots/010/comp/@v/1.0.0/deep/er/nested.bin")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, nested);

    let resp = s.http.get(&file_url).send().await.expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    let etag = format!("\"{}\"", Digest::of(top).to_hex());
    let h = resp.headers().clone();
    assert_eq!(h[header::ETAG], etag.as_str());
    assert_eq!(h["x-checksum-sha256"], Digest::of(top).to_hex().as_str());
    assert_eq!(h[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    assert_eq!(h[header::ACCEPT_RANGES], "bytes");
    assert_eq!(h[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(h[header::CONTENT_LENGTH], top.len().to_string().as_str());
    assert!(h.contains_key(header::LAST_MODIFIED));
    assert_eq!(resp.bytes().await.expect("body").as_ref(), top);

    // HEAD: the same headers, no body.
    let resp = s.http.head(&file_url).send().await.expect("head");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_LENGTH], top.len().to_string().as_str());
    assert_eq!(resp.headers()[header::ETAG], etag.as_str());
    assert!(resp.bytes().await.expect("body").is_empty());

    // If-None-Match -> 304 without a body.
    let resp = s
        .http
        .get(&file_url)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(resp.headers()[header::ETAG], etag.as_str());
    assert!(resp.bytes().await.expect("body").is_empty());
    let resp = s
        .http
        .get(&file_url)
        .header(header::IF_NONE_MATCH, "\"something-else\"")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);

    // Ranges.
    let size = top.len();
    let cases: [(&str, usize, usize); 4] = [
        ("bytes=0-9", 0, 10),
        ("bytes=30-", 30, size),
        ("bytes=-6", size - 6, size),
        ("bytes=30-999", 30, size),
    ];
    for (range, start, end) in cases {
        let resp = s
            .http
            .get(&file_url)
            .header(header::RANGE, range)
            .send()
            .await
            .expect("range");
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            resp.headers()[header::CONTENT_RANGE],
            format!("bytes {start}-{}/{size}", end - 1).as_str(),
            "{range}"
        );
        assert_eq!(
            resp.headers()[header::CONTENT_LENGTH],
            (end - start).to_string().as_str(),
            "{range}"
        );
        assert_eq!(resp.bytes().await.expect("body").as_ref(), &top[start..end], "{range}");
    }
    for unsatisfiable in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 10, size + 20),
        "bytes=-0".to_owned(),
    ] {
        let resp = s
            .http
            .get(&file_url)
            .header(header::RANGE, &unsatisfiable)
            .send()
            .await
            .expect("range");
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{unsatisfiable}");
        assert_eq!(
            resp.headers()[header::CONTENT_RANGE],
            format!("bytes */{size}").as_str()
        );
    }
    // Multiple ranges: the whole file.
    let resp = s
        .http
        .get(&file_url)
        .header(header::RANGE, "bytes=0-1,5-6")
        .send()
        .await
        .expect("range");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.expect("body").as_ref(), top);
    // If-Range with another validator: the whole file; with ours: the range.
    let resp = s
        .http
        .get(&file_url)
        .header(header::RANGE, "bytes=0-3")
        .header(header::IF_RANGE, "\"0000\"")
        .send()
        .await
        .expect("range");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!resp.headers().contains_key(header::CONTENT_RANGE));
    assert_eq!(resp.bytes().await.expect("body").as_ref(), top);
    let resp = s
        .http
        .get(&file_url)
        .header(header::RANGE, "bytes=0-3")
        .header(header::IF_RANGE, &etag)
        .send()
        .await
        .expect("range");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.expect("body").as_ref(), &top[..4]);

    // Unknown file of a known version; unknown version.
    assert_error(
        &s.get_json("/api/v1/repos/files/shots/010/comp/@v/1.0.0/missing.txt")
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &s.get_json("/api/v1/repos/files/shots/010/comp/@v/9.9.9").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_header_guards_uploads() {
    let s = Server::start().await;
    let (id, _) = s.open(json!({"name": "sums", "version": "1"})).await;
    let body = b"the real bytes".to_vec();
    let wrong = Digest::of(b"other bytes").to_hex();

    let resp = s
        .http
        .put(s.url(&format!("/api/v1/transactions/{id}/files/a.bin")))
        .header("x-checksum-sha256", &wrong)
        .body(body.clone())
        .send()
        .await
        .expect("put");
    let got = crate::json_of(resp).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "checksum_mismatch",
        Some("x-checksum-sha256"),
    );
    assert_eq!(got.1["expected"], wrong.as_str());
    assert_eq!(got.1["actual"], Digest::of(&body).to_hex().as_str());
    assert_eq!(
        s.txn(&id).await["files"],
        json!([]),
        "a refused body must stage nothing"
    );
    assert!(
        !s.blob_path(&Digest::of(&body)).exists(),
        "a refused body must leave no blob"
    );

    // Upper-case hex is the same digest.
    let resp = s
        .http
        .put(s.url(&format!("/api/v1/transactions/{id}/files/a.bin")))
        .header("x-checksum-sha256", Digest::of(&body).to_hex().to_uppercase())
        .body(body.clone())
        .send()
        .await
        .expect("put");
    let (status, v) = crate::json_of(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["sha256"], Digest::of(&body).to_hex().as_str());
    assert_eq!(s.txn(&id).await["files"].as_array().map(Vec::len), Some(1));

    for malformed in ["xyz", "00", &"g".repeat(64), &format!("{wrong}00")] {
        let resp = s
            .http
            .put(s.url(&format!("/api/v1/transactions/{id}/files/b.bin")))
            .header("x-checksum-sha256", malformed)
            .body(body.clone())
            .send()
            .await
            .expect("put");
        let got = crate::json_of(resp).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{malformed}: {}", got.1);
        assert_eq!(
            got.1["field"], "x-checksum-sha256",
            "the 400 must name the header: {}",
            got.1
        );
    }
    assert_eq!(s.txn(&id).await["files"].as_array().map(Vec::len), Some(1));
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["files"].as_array().map(Vec::len), Some(1));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_put_replaces_the_path() {
    let s = Server::start().await;
    let (id, _) = s.open(json!({"name": "replace", "version": "1"})).await;
    let (status, _) = s.put(&id, "dir/f.txt", b"first".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = s.put(&id, "dir/f.txt", b"second, longer".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    let staged = s.txn(&id).await;
    assert_eq!(staged["files"].as_array().map(Vec::len), Some(1), "{staged}");
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        m["files"],
        json!([{"path": "dir/f.txt", "size": 14, "sha256": Digest::of(b"second, longer").to_hex()}])
    );
    let (status, bytes) = s.get_bytes("/api/v1/repos/files/replace/@v/1/dir/f.txt").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, b"second, longer");
    s.stop().await;
}

/// Sends a PUT whose body stops short of what its framing promised, then half-closes: the
/// client died mid-upload. Returns what the server answered (possibly nothing).
async fn cut_off_put(s: &Server, target: &str, framing: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    let head = format!("PUT {target} HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n");
    sock.write_all(head.as_bytes()).await.expect("write");
    sock.write_all(body).await.expect("write");
    sock.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    // Reading to the end waits for the handler to finish.
    let _ = sock.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_upload_stages_nothing() {
    let s = Server::start().await;
    let (id, _) = s.open(json!({"name": "cut/off", "version": "1"})).await;
    let part = crate::pseudo_random(3, 300_000);
    let target = format!("/api/v1/transactions/{id}/files/partial.bin");

    // Content-Length promises more than arrives.
    let answer = cut_off_put(&s, &target, &format!("Content-Length: {}", part.len() * 4), &part).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
    // Chunked, without the terminating chunk.
    let mut chunked = format!("{:x}\r\n", part.len()).into_bytes();
    chunked.extend_from_slice(&part);
    chunked.extend_from_slice(b"\r\n");
    let answer = cut_off_put(&s, &target, "Transfer-Encoding: chunked", &chunked).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");

    assert_eq!(s.txn(&id).await["files"], json!([]), "a partial body was staged");
    assert!(!s.blob_path(&Digest::of(&part)).exists());
    assert_eq!(
        crate::files_under(&s.data.join("tmp")),
        Vec::<std::path::PathBuf>::new(),
        "partial temp files left"
    );
    // The transaction is still usable.
    let (status, v) = s.put(&id, "partial.bin", part.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, _) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/cut/off/@v/1/partial.bin").await,
        (StatusCode::OK, part)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_of_the_grammar_round_trip() {
    let s = Server::start().await;
    // The longest name (1023 bytes in four 255-byte segments), the longest version, `+` in a
    // version (a literal in a URL path, never a space), dot-led segments, an empty file.
    let long_name = ["n".repeat(255), "a".repeat(255), "m".repeat(255), "e".repeat(255)].join("/");
    let long_version = format!("1.0.0+{}", "b".repeat(122));
    assert_eq!(long_version.len(), 128);
    for (name, version, path) in [
        (long_name.as_str(), "1", "f.bin"),
        ("tools/cli", long_version.as_str(), "f.bin"),
        ("...x/.y", "1.0.0+build.5", ".hidden/..z"),
        ("UPPER/lower", "V1_rc-2", "A-b_c.D"),
    ] {
        let m = s.publish(name, version, &[(path, b"edge")]).await;
        assert_eq!(m["name"], name);
        assert_eq!(m["version"], version);
        let (status, bytes) = s
            .get_bytes(&format!("/api/v1/repos/files/{name}/@v/{version}/{path}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{name}@{version}/{path}");
        assert_eq!(bytes, b"edge");
        // `+` percent-encoded arrives as the same version.
        let encoded = version.replace('+', "%2B");
        let (status, v) = s.get_json(&format!("/api/v1/repos/files/{name}/@v/{encoded}")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["version"], version);
        assert_eq!(s.versions(name).await, [version]);
    }
    // Names differing only in case are different names.
    let (status, _) = s.get_json("/api/v1/repos/files/upper/lower/@v/V1_rc-2").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An empty file: 200 with no bytes; any range of it is unsatisfiable.
    s.publish("empty", "1", &[("zero.bin", b"")]).await;
    let url = s.url("/api/v1/repos/files/empty/@v/1/zero.bin");
    let resp = s.http.get(&url).send().await.expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_LENGTH], "0");
    assert_eq!(
        resp.headers()[header::ETAG],
        format!("\"{}\"", Digest::of(b"").to_hex()).as_str()
    );
    assert!(resp.bytes().await.expect("body").is_empty());
    let resp = s
        .http
        .get(&url)
        .header(header::RANGE, "bytes=0-")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(resp.headers()[header::CONTENT_RANGE], "bytes */0");
    // Weak and listed validators match too.
    for inm in [
        format!("W/\"{}\"", Digest::of(b"").to_hex()),
        format!("\"x\", \"{}\"", Digest::of(b"").to_hex()),
        "*".into(),
    ] {
        let resp = s
            .http
            .get(&url)
            .header(header::IF_NONE_MATCH, &inm)
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{inm}");
    }
    s.stop().await;
}

/// `@latest` answers the manifest of the version committed last (not the highest), is never
/// cached, and names the version's own URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_is_the_version_committed_last() {
    let s = Server::start().await;
    let (status, v) = s.get_json("/api/v1/repos/files/tools/x/@latest").await;
    assert_error(&(status, v), StatusCode::NOT_FOUND, "not_found", None);
    for version in ["2.0.0", "10.0.0", "1.5.0"] {
        s.publish("tools/x", version, &[("f", version.as_bytes())]).await;
    }
    let resp = s
        .http
        .get(s.url("/api/v1/repos/files/tools/x/@latest"))
        .send()
        .await
        .expect("latest");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-cache");
    assert_eq!(
        resp.headers()[header::CONTENT_LOCATION],
        "/api/v1/repos/files/tools/x/@v/1.5.0"
    );
    let m: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(str_of(&m, "version"), "1.5.0");
    assert_eq!(m["files"][0]["path"], "f");
}
