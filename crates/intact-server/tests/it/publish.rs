//! The one-request multipart publish, from reqwest and from the real `curl` binary, and its
//! all-or-nothing promise when a request goes wrong half way.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use intact_core::{Digest, FilePath, Name, RepoName, Timestamp, Version};
use intact_store::store::BeginRequest;
use intact_store::{FsBlobStore, ManualClock, OpenOutcome, SqliteCatalog, Store, StoreConfig, VersionSpec};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Server, assert_error, json_of};

async fn publish_form(s: &Server, form: Form) -> (StatusCode, Value) {
    let resp = s
        .http
        .post(s.url("/api/v1/repos/files/publish"))
        .multipart(form)
        .send()
        .await
        .expect("multipart publish");
    json_of(resp).await
}

/// A form whose field names go out verbatim (reqwest would percent-encode the `/` of
/// `dir/x.bin` by default).
fn form() -> Form {
    Form::new().percent_encode_noop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_publish_with_reqwest() {
    let s = Server::start().await;
    let cli = b"pretend this is a tarball".to_vec();
    let x = vec![7u8; 10_000];
    let f = form()
        .text("name", "tools/cli")
        .text("version", "1.4.0")
        .text("metadata", r#"{"os":"linux"}"#)
        .part("file", Part::bytes(cli.clone()).file_name("cli.tar.gz"))
        .part("dir/x.bin", Part::bytes(x.clone()).file_name("whatever-local-name.bin"));
    let (status, m) = publish_form(&s, f).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["name"], "tools/cli");
    assert_eq!(m["version"], "1.4.0");
    assert_eq!(m["metadata"], json!({"os": "linux"}));
    assert_eq!(
        m["files"],
        json!([
            {"path": "cli.tar.gz", "size": cli.len(), "sha256": Digest::of(&cli).to_hex()},
            {"path": "dir/x.bin", "size": x.len(), "sha256": Digest::of(&x).to_hex()},
        ])
    );
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/tools/cli/@v/1.4.0/cli.tar.gz").await,
        (StatusCode::OK, cli.clone())
    );
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/tools/cli/@v/1.4.0/dir/x.bin").await,
        (StatusCode::OK, x)
    );

    // Publishing the version again without a key: the same content gets the same version
    // back (200); other content is a conflict that says what differs.
    let again = |cli: Vec<u8>| {
        form()
            .text("name", "tools/cli")
            .text("version", "1.4.0")
            .text("metadata", r#"{"os":"linux"}"#)
            .part("file", Part::bytes(cli).file_name("cli.tar.gz"))
            .part("dir/x.bin", Part::bytes(vec![7u8; 10_000]).file_name("x.bin"))
    };
    let (status, same) = publish_form(&s, again(cli.clone())).await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same, m);
    let got = publish_form(&s, again(b"another build".to_vec())).await;
    assert_error(&got, StatusCode::CONFLICT, "conflict", None);
    assert_eq!(got.1["differences"]["changed"][0]["path"], "cli.tar.gz", "{}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|t| t.contains("cli.tar.gz")),
        "{}",
        got.1
    );

    // `auto` plus an idempotency key: the retry answers 200 with the same manifest.
    let keyed = || {
        form()
            .text("name", "tools/auto")
            .text("version", "auto")
            .text("idempotency_key", "ci-run-77")
            .part("files", Part::bytes(b"abc".to_vec()).file_name("a.txt"))
    };
    let (status, first) = publish_form(&s, keyed()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["version"], "1");
    let (status, retry) = publish_form(&s, keyed()).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry, first);
    assert_eq!(s.versions("tools/auto").await, ["1"]);

    // No file parts: a metadata-only version.
    let (status, m) = publish_form(
        &s,
        form()
            .text("name", "tools/empty")
            .text("version", "0.1")
            .text("metadata", "{}"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["files"], json!([]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_publish_with_real_curl() {
    let Ok(out) = tokio::process::Command::new("curl").arg("--version").output().await else {
        eprintln!("SKIP multipart_publish_with_real_curl: no `curl` binary on PATH");
        return;
    };
    assert!(out.status.success(), "curl --version failed");
    let s = Server::start().await;
    let local = tempfile::tempdir().expect("tempdir");
    let tarball = crate::pseudo_random(42, 300_000);
    let readme = b"# README\nhello from curl\n".to_vec();
    std::fs::write(local.path().join("cli.tar.gz"), &tarball).expect("write");
    std::fs::write(local.path().join("README.md"), &readme).expect("write");
    // The command from docs/http-api.md, verbatim apart from the paths and the port.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args([
            "-F",
            "name=tools/cli",
            "-F",
            "version=1.4.0",
            "-F",
            r#"metadata={"os":"linux"}"#,
        ])
        .arg("-F")
        .arg(format!("file=@{}", local.path().join("cli.tar.gz").display()))
        .arg("-F")
        .arg(format!("docs/README.md=@{}", local.path().join("README.md").display()))
        .arg(s.url("/api/v1/repos/files/publish"))
        .output()
        .await
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let (body, code) = stdout.rsplit_once('\n').expect("status line");
    assert_eq!(code, "201", "{body}");
    let m: Value = serde_json::from_str(body).expect("json manifest");
    assert_eq!(m["metadata"], json!({"os": "linux"}));
    assert_eq!(
        m["files"],
        json!([
            {"path": "cli.tar.gz", "size": tarball.len(), "sha256": Digest::of(&tarball).to_hex()},
            {"path": "docs/README.md", "size": readme.len(), "sha256": Digest::of(&readme).to_hex()},
        ])
    );
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/tools/cli/@v/1.4.0/cli.tar.gz").await,
        (StatusCode::OK, tarball)
    );
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/tools/cli/@v/1.4.0/docs/README.md")
            .await,
        (StatusCode::OK, readme)
    );

    // curl reading the file back, with a range.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-r", "0-7"])
        .arg(s.url("/api/v1/repos/files/tools/cli/@v/1.4.0/docs/README.md"))
        .output()
        .await
        .expect("run curl");
    assert!(out.status.success());
    assert_eq!(out.stdout, b"# README");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_publish_errors_leave_nothing_behind() {
    let s = Server::start().await;

    // A file part before name/version.
    let f = form()
        .part("file", Part::bytes(b"x".to_vec()).file_name("a.bin"))
        .text("name", "bad/order")
        .text("version", "1");
    let got = publish_form(&s, f).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("body"));
    assert!(
        got.1["message"]
            .as_str()
            .is_some_and(|m| m.contains("name") && m.contains("version")),
        "{}",
        got.1
    );

    // Metadata that is not JSON, or not an object.
    let f = form()
        .text("name", "bad/meta")
        .text("version", "1")
        .text("metadata", "{not json");
    assert_error(
        &publish_form(&s, f).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("metadata"),
    );
    let f = form()
        .text("name", "bad/meta")
        .text("version", "1")
        .text("metadata", "[1,2]");
    assert_error(
        &publish_form(&s, f).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("metadata"),
    );
    // Unknown text fields and bad lease values.
    let f = form()
        .text("name", "bad/meta")
        .text("version", "1")
        .text("colour", "blue");
    assert_error(
        &publish_form(&s, f).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("body"),
    );
    let f = form()
        .text("name", "bad/meta")
        .text("version", "1")
        .text("lease_seconds", "soon");
    assert_error(
        &publish_form(&s, f).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("lease_seconds"),
    );
    // Invalid names and versions.
    let f = form().text("name", "../etc").text("version", "1");
    assert_error(
        &publish_form(&s, f).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("name"),
    );
    let f = form().text("name", "ok").text("version", "1/2");
    assert_error(
        &publish_form(&s, f).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("version"),
    );

    // An invalid path as a field name, and as a file name of a `file` part.
    for (field, file_name) in [
        ("../evil.bin", "x"),
        ("a//b", "x"),
        ("@v/x", "x"),
        ("file", "../../evil"),
        ("file", "/abs"),
    ] {
        let f = form()
            .text("name", "bad/path")
            .text("version", "1")
            .part(field, Part::bytes(b"x".to_vec()).file_name(file_name));
        assert_error(
            &publish_form(&s, f).await,
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("path"),
        );
    }

    // Failure after a file was already staged: the whole publish is rolled back.
    let staged = b"staged by a publish that later fails".to_vec();
    let f = form()
        .text("name", "bad/midway")
        .text("version", "1")
        .part("ok.bin", Part::bytes(staged.clone()).file_name("ok.bin"))
        .part("a/../b", Part::bytes(b"never".to_vec()).file_name("b"));
    assert_error(
        &publish_form(&s, f).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("path"),
    );
    assert!(
        !s.blob_path(&Digest::of(&staged)).exists(),
        "the rolled-back publish's blob is deleted"
    );

    // A body cut off half way through a file part (the client went away).
    let boundary = "XyZzYbOuNdArY";
    let mut body = Vec::new();
    for (k, v) in [("name", "bad/truncated"), ("version", "1")] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"big.bin\"; filename=\"big.bin\"\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(&crate::pseudo_random(9, 200_000));
    let head = format!(
        "POST /api/v1/repos/files/publish HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len() + 1_000_000
    );
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    sock.write_all(head.as_bytes()).await.expect("write");
    sock.write_all(&body).await.expect("write");
    sock.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    // Reading to the end waits for the handler to finish (and roll back).
    let _ = sock.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a cut-off publish must not succeed: {answer}"
    );

    // None of it is visible, and no transaction still holds the versions.
    let events = s.events(0).await;
    assert!(events.iter().all(|e| e["kind"] != "committed"), "{events:?}");
    for name in ["bad/order", "bad/meta", "bad/path", "bad/midway", "bad/truncated"] {
        assert!(s.versions(name).await.is_empty(), "{name}");
        let (id, _) = s.open(json!({"name": name, "version": "1"})).await;
        assert_eq!(s.abort(&id).await, StatusCode::NO_CONTENT);
    }
    let rolled_back: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "aborted" && e["data"]["reason"] == "rolled back")
        .collect();
    assert!(rolled_back.iter().any(|e| e["name"] == "bad/midway"), "{events:?}");

    // Publishing into repos that take no publishes.
    for (repo, status, code) in [
        ("go-private", StatusCode::BAD_REQUEST, "unsupported"),
        ("go", StatusCode::BAD_REQUEST, "unsupported"),
        ("go-public", StatusCode::BAD_REQUEST, "unsupported"),
        ("nope", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let resp = s
            .http
            .post(s.url(&format!("/api/v1/repos/{repo}/publish")))
            .multipart(form().text("name", "x").text("version", "1"))
            .send()
            .await
            .expect("publish");
        assert_error(&json_of(resp).await, status, code, None);
    }
    // Not multipart at all.
    let resp = s
        .http
        .post(s.url("/api/v1/repos/files/publish"))
        .body("name=x")
        .send()
        .await
        .expect("publish");
    let (status, v) = json_of(resp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].is_string(), "{v}");
    s.stop().await;
}

/// Text fields after the first file part arrive once the transaction is already open with
/// what came before: honouring them is impossible, ignoring them loses metadata (or, for an
/// idempotency key, turns a retry into a second version). They are refused, naming the field,
/// and the publish is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_fields_after_a_file_part_are_refused() {
    let s = Server::start().await;
    let staged = b"bytes staged before the late field".to_vec();
    for (field, value) in [
        ("metadata", r#"{"os":"linux"}"#),
        ("idempotency_key", "farm-job-1"),
        ("lease_seconds", "600"),
        ("name", "late/other"),
        ("version", "2"),
    ] {
        let f = form()
            .text("name", "late/field")
            .text("version", "auto")
            .part("a.bin", Part::bytes(staged.clone()).file_name("a.bin"))
            .text(field, value);
        let got = publish_form(&s, f).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some(field));
        let msg = got.1["message"].as_str().unwrap_or_default();
        assert!(msg.contains("before the first file part"), "{field}: {msg}");
        // A retry with the same key is refused the same way: never a second version.
        if field == "idempotency_key" {
            let f = form()
                .text("name", "late/field")
                .text("version", "auto")
                .part("a.bin", Part::bytes(staged.clone()).file_name("a.bin"))
                .text(field, value);
            assert_error(
                &publish_form(&s, f).await,
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some(field),
            );
        }
    }
    // A text field given twice is ambiguous, before the files as well.
    for (field, value) in [
        ("name", "twice/other"),
        ("version", "2"),
        ("metadata", "{}"),
        ("idempotency_key", "k"),
        ("lease_seconds", "60"),
    ] {
        let mut f = form()
            .text("name", "twice/field")
            .text("version", "1")
            .text(field, value);
        if field != "name" && field != "version" {
            f = f.text(field, value);
        }
        let got = publish_form(&s, f).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some(field));
        let msg = got.1["message"].as_str().unwrap_or_default();
        assert!(msg.contains("more than once"), "{field}: {msg}");
    }
    assert!(s.versions("late/field").await.is_empty());
    assert!(s.versions("late/other").await.is_empty());
    assert!(s.versions("twice/field").await.is_empty());
    assert!(
        s.events(0).await.iter().all(|e| e["kind"] != "committed"),
        "a refused publish committed"
    );
    assert!(
        !s.blob_path(&Digest::of(&staged)).exists(),
        "the refused publish's staged blob is rolled back"
    );
    // In the documented order, every field is honoured.
    let f = form()
        .text("name", "late/field")
        .text("version", "auto")
        .text("metadata", r#"{"os":"linux"}"#)
        .text("idempotency_key", "farm-job-1")
        .text("lease_seconds", "600")
        .part("a.bin", Part::bytes(staged.clone()).file_name("a.bin"));
    let (status, m) = publish_form(&s, f).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["metadata"], json!({"os": "linux"}));
    s.stop().await;
}

/// Two keyed retries of one publish at once: the second resumes the first's transaction and
/// finds the first still uploading (a retryable 409). It must leave that transaction alone, so
/// the first, once its upload ends, commits the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_retry_never_rolls_back_the_request_it_resumed() {
    let s = Server::start().await;
    let content = b"the one build".to_vec();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    tx.send(Ok(content[..4].to_vec())).await.expect("feed");
    let slow = form()
        .text("name", "keyed/twins")
        .text("version", "1")
        .text("idempotency_key", "job-42")
        .part(
            "build.bin",
            Part::stream(reqwest::Body::wrap_stream(stream)).file_name("build.bin"),
        );
    let first = {
        let (http, url) = (s.http.clone(), s.url("/api/v1/repos/files/publish"));
        tokio::spawn(async move { json_of(http.post(url).multipart(slow).send().await.expect("first")).await })
    };
    // Lets the first request open the transaction and start its upload (ordering only).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let retry = form()
        .text("name", "keyed/twins")
        .text("version", "1")
        .text("idempotency_key", "job-42")
        .part("build.bin", Part::bytes(content.clone()).file_name("build.bin"));
    let got = publish_form(&s, retry).await;
    assert_error(&got, StatusCode::CONFLICT, "uploads_in_progress", None);
    tx.send(Ok(content[4..].to_vec())).await.expect("feed");
    drop(tx);
    let (status, m) = first.await.expect("join");
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the first request's transaction survived the retry: {m}"
    );
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/keyed/twins/@v/1/build.bin").await,
        (StatusCode::OK, content)
    );
}

/// A multipart publish under an idempotency key that already published a version is a retry
/// only if it sends that version's content. Other file bytes under a used key (a re-run CI
/// job reusing its job id) were never published: `200` with the old manifest would tell the
/// client they were. They are refused as a reused key, naming what differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_idempotency_key_with_other_files_is_refused() {
    let s = Server::start().await;
    let keyed = |bytes: &[u8], extra: bool| {
        let mut f = form()
            .text("name", "tools/job")
            .text("version", "auto")
            .text("idempotency_key", "ci-job-9")
            .part("files", Part::bytes(bytes.to_vec()).file_name("a.txt"));
        if extra {
            f = f.part("files", Part::bytes(b"more".to_vec()).file_name("b.txt"));
        }
        f
    };
    let (status, first) = publish_form(&s, keyed(b"first build", false)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, retry) = publish_form(&s, keyed(b"first build", false)).await;
    assert_eq!((status, &retry), (StatusCode::OK, &first), "the same publish again");
    for (bytes, extra, differs) in [(&b"second build"[..], false, "a.txt"), (b"first build", true, "b.txt")] {
        let got = publish_form(&s, keyed(bytes, extra)).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_mismatch", None);
        let message = got.1["message"].as_str().unwrap_or_default();
        assert!(message.contains("ci-job-9") && message.contains(differs), "{}", got.1);
    }
    assert_eq!(s.versions("tools/job").await, ["1"]);
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/tools/job/@v/1/a.txt").await,
        (StatusCode::OK, b"first build".to_vec())
    );
}

/// `latest` means the newest version to readers (`@latest`, `intact get REPO NAME latest`), so
/// no version may be published under that name, in any case, by either way of publishing. A
/// version so named that is already stored (published before the rule) stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_named_latest_is_refused_but_one_stored_before_stays_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(Timestamp::from_system(SystemTime::now())));
    let catalog = SqliteCatalog::open(&dir.path().join("catalog.db"), clock.clone())
        .await
        .expect("catalog");
    let blobs = Arc::new(FsBlobStore::open(dir.path()).await.expect("blobs"));
    let store = Store::new(Arc::new(catalog), blobs, clock, StoreConfig::default());
    // Straight through the store, as a catalog from before the rule holds it.
    let before = BeginRequest {
        repo: RepoName::parse("files").expect("repo"),
        name: Name::parse("tools/cli").expect("name"),
        version: VersionSpec::Exact(Version::parse("latest").expect("version")),
        metadata: json!({}),
        lease: None,
        idempotency_key: None,
        wait: Duration::ZERO,
        base: None,
    };
    let OpenOutcome::Created(t) = store.begin(before).await.expect("begin") else {
        panic!("a new transaction expected");
    };
    let mut body: &[u8] = b"published before the rule";
    store
        .put_file(&t.id, FilePath::parse("a.txt").expect("path"), &mut body, None, None)
        .await
        .expect("put");
    store.commit(&t.id).await.expect("commit");
    let s = Server::start_on_store(store).await;

    for version in ["latest", "Latest", "LATEST"] {
        let got = s.create(json!({"name": "tools/cli", "version": version})).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "invalid", Some("version"));
        assert!(
            got.1["message"].as_str().is_some_and(|m| m.contains("reserved")),
            "{}",
            got.1
        );
        let f = form()
            .text("name", "tools/cli")
            .text("version", version)
            .part("b.txt", Part::bytes(b"new".to_vec()).file_name("b.txt"));
        assert_error(
            &publish_form(&s, f).await,
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("version"),
        );
    }
    // Versions that only contain the word are versions like any other.
    for version in ["latest-2", "2.0-latest"] {
        let (status, v) = s.create(json!({"name": "tools/cli", "version": version})).await;
        assert_eq!(status, StatusCode::CREATED, "{version}: {v}");
    }
    // Reading is as it was: by its own URL, and as the newest commit.
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/tools/cli/@v/latest/a.txt").await,
        (StatusCode::OK, b"published before the rule".to_vec())
    );
    let (status, m) = s.get_json("/api/v1/repos/files/tools/cli/@latest").await;
    assert_eq!((status, m["version"].as_str()), (StatusCode::OK, Some("latest")), "{m}");
    s.stop().await;
}
