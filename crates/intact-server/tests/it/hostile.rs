//! Input from outside: traversal and encoding tricks in every place a client names something
//! (repo, name, version, file path, transaction id, query), sent byte for byte over a raw
//! socket so no client library normalises them first; and malformed JSON bodies.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{RawResponse, Server, assert_error, files_under, json_of, raw_request, report};

/// One hostile request.
struct Case {
    method: &'static str,
    target: Vec<u8>,
    body: Vec<u8>,
    json: bool,
}

/// Hostile spellings of a name, version or path segment run. Each is used where a name, a
/// version and a file path go.
fn hostile_segments(marker: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "..",
        ".",
        "../..",
        "../../../../../../tmp",
        "a/../b",
        "a/./b",
        "%2e%2e",
        "%2E%2E",
        "%2e%2e/%2e%2e",
        ".%2e",
        "%2e.",
        "%2f..",
        "..%2f",
        "..%2f..%2f",
        "a%2f..%2f..%2fb",
        "..%5c",
        "..%5c..%5cb",
        "%5c",
        "a%5cb",
        "%00",
        "a%00b",
        "a%00.txt",
        "%c0%ae%c0%ae",
        "%c0%af",
        "%e0%80%ae",
        "%ff%fe",
        "%252e%252e",
        "%252e%252e%252f",
        "%25",
        "a%20b",
        "%20",
        "%09",
        "%0d%0aX-Injected:%201",
        "%C3%A9t%C3%A9",
        "%E2%80%AE",
        "a~b",
        "a:b",
        "a*b",
        "a%3Fb",
        "a%23b",
        "@v",
        "@versions",
        "a/@v",
        "%40v",
        ".hidden/..",
        "a/",
        "a//b",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    v.push(format!("../../{marker}"));
    v.push(format!("%2e%2e%2f%2e%2e%2f{marker}"));
    v.push(format!("..%5c..%5c{marker}"));
    v.push("a".repeat(2000));
    v.push("b".repeat(256));
    v
}

fn case(method: &'static str, target: String) -> Case {
    Case {
        method,
        target: target.into_bytes(),
        body: Vec::new(),
        json: true,
    }
}

/// Checks one answer: a 4xx, never 2xx/3xx/5xx, with a JSON `error` when the route matched.
fn check(c: &Case, r: &RawResponse, failures: &mut Vec<String>) {
    let target = String::from_utf8_lossy(&c.target);
    let shown: String = target.chars().take(120).collect();
    if !(400..500).contains(&r.status) {
        failures.push(format!(
            "{} {shown} -> {} {}",
            c.method,
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
        return;
    }
    // HEAD answers carry no body. A 405 (a multi-segment "repo" lands on the GET-only read
    // route) has none either: that gap is pinned by `method_not_allowed_has_a_json_body`.
    if c.json && c.method != "HEAD" && r.status != 405 {
        match r.json() {
            Some(v) if v["error"].is_string() => {}
            _ => failures.push(format!(
                "{} {shown} -> {} without a JSON error: {:?}",
                c.method,
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_are_refused_everywhere() {
    let s = Server::start().await;
    let marker = format!("intact-escape-{}-{}", std::process::id(), s.addr.port());
    // A real open transaction, so file uploads reach path validation.
    let (txn, _) = s.open(json!({"name": "target", "version": "1"})).await;
    // And a real committed version, so reads reach every later validation step.
    // (Published under another repo-less name below and checked not to change.)

    let segs = hostile_segments(&marker);
    let mut cases: Vec<Case> = Vec::new();
    for seg in &segs {
        // Reads: as the name, the version and the file path.
        cases.push(case("GET", format!("/api/v1/repos/files/{seg}/@v/1/f.txt")));
        cases.push(case("GET", format!("/api/v1/repos/files/{seg}/@v/1")));
        cases.push(case("GET", format!("/api/v1/repos/files/{seg}/@versions")));
        cases.push(case("HEAD", format!("/api/v1/repos/files/{seg}/@v/1/f.txt")));
        cases.push(case("GET", format!("/api/v1/repos/files/target/@v/{seg}/f.txt")));
        cases.push(case("GET", format!("/api/v1/repos/files/target/@v/{seg}")));
        cases.push(case("GET", format!("/api/v1/repos/files/target/@v/1/{seg}")));
        cases.push(case("GET", format!("/api/v1/repos/files/target/@v/1/dir/{seg}")));
        cases.push(case("GET", format!("/api/v1/repos/files/target/@versions?after={seg}")));
        // As the repo.
        cases.push(case("GET", format!("/api/v1/repos/{seg}/target/@v/1/f.txt")));
        cases.push(case("GET", format!("/api/v1/repos/{seg}")));
        cases.push(case("GET", format!("/api/v1/repos/{seg}/names")));
        cases.push(case("POST", format!("/api/v1/repos/{seg}/transactions")));
        // As a transaction id.
        cases.push(case("GET", format!("/api/v1/transactions/{seg}")));
        cases.push(case("DELETE", format!("/api/v1/transactions/{seg}")));
        cases.push(case("POST", format!("/api/v1/transactions/{seg}/commit")));
        cases.push(case("PUT", format!("/api/v1/transactions/{seg}/files/f.txt")));
        cases.push(case("PUT", format!("/api/v1/transactions/tx_{seg}/files/f.txt")));
        // As the path of an upload into the open transaction.
        let mut put = case("PUT", format!("/api/v1/transactions/{txn}/files/{seg}"));
        put.body = format!("escaped bytes {marker}").into_bytes();
        cases.push(put);
        let mut put = case("PUT", format!("/api/v1/transactions/{txn}/files/dir/{seg}/f.txt"));
        put.body = format!("escaped bytes {marker}").into_bytes();
        cases.push(put);
    }
    // Odd shapes of the read path itself.
    for target in [
        "/api/v1/repos/files/@v/1/f.txt",
        "/api/v1/repos/files//target/@v/1/f.txt",
        "/api/v1/repos/files/target//@v/1/f.txt",
        "/api/v1/repos/files/target/@v//f.txt",
        "/api/v1/repos/files/target/@v/1/",
        "/api/v1/repos/files/target/@v/1//f.txt",
        "/api/v1/repos/files/target/@v/1/@v/2",
        "/api/v1/repos/files/target/@v/auto",
        "/api/v1/repos/files/target/@v/auto/f.txt",
        "/api/v1/repos/files/target/@v",
        "/api/v1/repos/files/target",
        "/api/v1/repos/files/target/@versions/x",
        "/api/v1/repos/files/target/@x/1",
        "/api/v1/repos/files/target/@V/1",
        "/api/v1/repos/files/target/@v/1/f.txt/..",
        "/api/v1/repos/files/target/@v/1/f.txt/.",
        "/api/v1/repos/files/target/@versions?limit=abc",
        "/api/v1/repos/files/target/@versions?limit=-1",
        "/api/v1/repos/files/target/@versions?colour=blue",
        "/api/v1/repos/files/names?prefix=%00",
        "/api/v1/repos/files/names?prefix=a%5cb",
        "/api/v1/repos/files/names?prefix=%C3%A9",
        "/api/v1/repos/files/names?bogus=1",
        "/api/v1/repos/nope/target/@v/1/f.txt",
        "/api/v1/repos/nope",
        "/api/v1/repos/go-private/../files/target/@v/1/f.txt",
        "/api/v1/events?after=-1",
        "/api/v1/events?after=abc",
        "/api/v1/events?wait_seconds=1000",
        "/api/v1/events?after=..",
        "/api/v1/transactions/TX_AAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/api/v1/transactions/tx_aaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "/api/v1/transactions/tx_aaaaaaaaaaaaaaaaaaaaaaaaa1",
        "/api/v1/transactions/tx_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "/api/v1//repos/files/target/@v/1/f.txt",
        "//api/v1/repos/files/target/@v/1/f.txt",
        "/api/v1/repos/files/../../../../etc/passwd",
        "/api/v1/../../../../etc/passwd",
        "/../../../../etc/passwd",
        "/api/v2/repos/files/target/@v/1/f.txt",
    ] {
        cases.push(case("GET", target.to_owned()));
    }
    let long_repo = "r".repeat(65);
    cases.push(case("GET", format!("/api/v1/repos/{long_repo}/target/@versions")));
    cases.push(case(
        "GET",
        format!("/api/v1/repos/files/target/@v/{}", "9".repeat(129)),
    ));
    cases.push(case(
        "GET",
        format!("/api/v1/repos/files/{}/@v/1", ["seg"; 300].join("/")),
    ));
    for target in [
        format!("/api/v1/transactions/{txn}/files/"),
        format!("/api/v1/transactions/{txn}/files//"),
        format!("/api/v1/transactions/{txn}/files///etc/passwd"),
        format!("/api/v1/transactions/{txn}/files/{}", ["d"; 600].join("/")),
    ] {
        cases.push(case("PUT", target));
    }
    // Bytes no URL may hold, sent raw: the HTTP parser refuses them before any route runs,
    // so there is no JSON body to expect, only the 4xx.
    for raw in [
        &b"/api/v1/repos/files/\xc3\xa9t\xc3\xa9/@v/1/f.txt"[..],
        b"/api/v1/repos/files/a\x00b/@v/1",
        b"/api/v1/repos/files/a\x7fb/@v/1",
    ] {
        cases.push(Case {
            method: "GET",
            target: raw.to_vec(),
            body: Vec::new(),
            json: false,
        });
    }
    assert!(cases.len() > 1000, "the table shrank: {}", cases.len());

    let mut failures = Vec::new();
    for c in &cases {
        let r = raw_request(
            s.addr,
            c.method,
            &c.target,
            &[("Content-Type", "application/octet-stream")],
            &c.body,
        )
        .await;
        check(c, &r, &mut failures);
    }

    // The same spellings in JSON bodies of `POST /transactions`, as name and as version.
    let mut json_cases = 0;
    for seg in &segs {
        // In JSON the string arrives as written: a percent escape is literal text, so decode
        // nothing; the server must refuse it either way.
        for body in [
            json!({"name": seg, "version": "1"}),
            json!({"name": "target2", "version": seg}),
        ] {
            let c = Case {
                method: "POST",
                target: b"/api/v1/repos/files/transactions".to_vec(),
                body: serde_json::to_vec(&body).expect("json"),
                json: true,
            };
            let r = raw_request(
                s.addr,
                "POST",
                &c.target,
                &[("Content-Type", "application/json")],
                &c.body,
            )
            .await;
            check(&c, &r, &mut failures);
            json_cases += 1;
        }
    }
    for body in [
        json!({"name": "a\u{0}b", "version": "1"}),
        json!({"name": "a\\..\\b", "version": "1"}),
        json!({"name": "\u{2e}\u{2e}", "version": "1"}),
        json!({"name": "ｆｉｌｅ", "version": "1"}),
        json!({"name": "a/\u{ff0e}\u{ff0e}/b", "version": "1"}),
        json!({"name": "x", "version": "9".repeat(129)}),
        json!({"name": "x", "version": ""}),
        json!({"name": "", "version": "1"}),
        json!({"name": "x", "version": "1\n"}),
        json!({"name": "x", "version": " 1"}),
        json!({"name": "x".repeat(1025), "version": "1"}),
    ] {
        let c = Case {
            method: "POST",
            target: b"/api/v1/repos/files/transactions".to_vec(),
            body: serde_json::to_vec(&body).expect("json"),
            json: true,
        };
        let r = raw_request(
            s.addr,
            "POST",
            &c.target,
            &[("Content-Type", "application/json")],
            &c.body,
        )
        .await;
        check(&c, &r, &mut failures);
        json_cases += 1;
    }
    assert!(json_cases >= 100);
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were not refused properly:\n{}",
        failures.len(),
        cases.len() + json_cases,
        failures.join("\n")
    );
    report(
        "hostile-requests",
        json!({"cases": cases.len() + json_cases, "violations": failures.len()}),
    );

    // Afterwards: nothing was created, nothing was staged, nothing was written outside the
    // data dir.
    let t = s.txn(&txn).await;
    assert_eq!(t["state"], "open");
    assert_eq!(t["files"], json!([]), "a hostile path was staged");
    let events = s.events(0).await;
    assert!(events.iter().all(|e| e["kind"] != "committed"), "{events:?}");
    let (status, names) = s.get_json("/api/v1/repos/files/names").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names["names"], json!([]));
    let top: Vec<String> = std::fs::read_dir(s.root.path())
        .expect("read root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, ["data"], "something was written next to the data dir");
    for entry in std::fs::read_dir(&s.data).expect("read data") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(
            [
                "catalog.db",
                "catalog.db-wal",
                "catalog.db-shm",
                "blobs",
                "tmp",
                "uploads"
            ]
            .contains(&name.as_str()),
            "unexpected {name} in the data dir"
        );
    }
    assert_eq!(
        files_under(&s.data.join("blobs")),
        Vec::<std::path::PathBuf>::new(),
        "a refused upload left a blob"
    );
    assert_eq!(
        files_under(&s.data.join("tmp")),
        Vec::<std::path::PathBuf>::new(),
        "a refused upload left a temp file"
    );
    assert_eq!(
        files_under(&s.data.join("uploads")),
        Vec::<std::path::PathBuf>::new(),
        "a refused request left a piece of a resumable upload"
    );
    for dir in [
        std::env::temp_dir(),
        s.root.path().parent().expect("parent").to_path_buf(),
    ] {
        for entry in std::fs::read_dir(&dir).expect("read tmp") {
            let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
            assert!(!name.contains(&marker), "{name} escaped into {}", dir.display());
        }
    }
    // A names prefix is a string prefix, not a path: `..` finds nothing and resolves nothing.
    let (status, v) = s.get_json("/api/v1/repos/files/names?prefix=../").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["names"], json!([]));
    assert_eq!(s.abort(&txn).await, StatusCode::NO_CONTENT);
    s.stop().await;
}

async fn post_raw_json(s: &Server, repo: &str, body: &str, content_type: Option<&str>) -> (StatusCode, Value) {
    let mut req = s
        .http
        .post(s.url(&format!("/api/v1/repos/{repo}/transactions")))
        .body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    json_of(req.send().await.expect("post")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_bodies_name_the_field() {
    let s = Server::start().await;
    const JSON: Option<&str> = Some("application/json");
    // (body, a word the message must contain)
    for (body, needle) in [
        ("{nope", "JSON"),
        ("", "JSON"),
        ("[]", "struct"),
        ("\"name\"", "struct"),
        (r#"{"version": "1"}"#, "name"),
        (r#"{"name": "a"}"#, "version"),
        (r#"{"name": 1, "version": "1"}"#, "name"),
        (r#"{"name": "a", "version": 1}"#, "version"),
        (r#"{"name": null, "version": "1"}"#, "name"),
        (
            r#"{"name": "a", "version": "1", "lease_seconds": "300"}"#,
            "lease_seconds",
        ),
        (r#"{"name": "a", "version": "1", "lease_seconds": -5}"#, "lease_seconds"),
        (r#"{"name": "a", "version": "1", "wait_seconds": 1.5}"#, "wait_seconds"),
        (
            r#"{"name": "a", "version": "1", "idempotency_key": 7}"#,
            "idempotency_key",
        ),
        (r#"{"name": "a", "version": "1", "colour": "blue"}"#, "colour"),
        (r#"{"name": "a", "version": "1", "Name": "b"}"#, "Name"),
    ] {
        let got = post_raw_json(&s, "files", body, JSON).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("body"));
        let msg = got.1["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: message {msg:?} should name {needle:?}");
    }
    // A JSON body without a JSON content type.
    let got = post_raw_json(&s, "files", r#"{"name": "a", "version": "1"}"#, None).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("body"));
    let got = post_raw_json(&s, "files", r#"{"name": "a", "version": "1"}"#, Some("text/plain")).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("body"));
    // Well-formed JSON that breaks a rule.
    for (body, field) in [
        (
            json!({"name": "a", "version": "1", "metadata": "not an object"}),
            "metadata",
        ),
        (json!({"name": "a", "version": "1", "metadata": [1]}), "metadata"),
        (
            json!({"name": "a", "version": "1", "lease_seconds": 0}),
            "lease_seconds",
        ),
        (
            json!({"name": "a", "version": "1", "lease_seconds": 10_000_000_000u64}),
            "lease_seconds",
        ),
        (
            json!({"name": "a", "version": "1", "wait_seconds": 301}),
            "wait_seconds",
        ),
    ] {
        assert_error(
            &s.create(body).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some(field),
        );
    }
    for (body, field) in [
        (json!({"name": "../a", "version": "1"}), "name"),
        (json!({"name": "a", "version": "1/2"}), "version"),
    ] {
        let got = s.create(body).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "invalid", Some(field));
        assert!(got.1["rule"].is_string() && got.1["value"].is_string(), "{}", got.1);
    }
    // Repos that take no publishes, unknown repos, malformed repo names.
    let ok = json!({"name": "a", "version": "1"});
    for repo in ["go-private", "go", "go-public"] {
        let got = s.create_in(repo, ok.clone()).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "unsupported", Some("repo"));
        assert!(got.1["message"].as_str().is_some_and(|m| m.contains(repo)), "{}", got.1);
    }
    assert_error(
        &s.create_in("nope", ok.clone()).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &s.create_in("a%2Fb", ok.clone()).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("repo"),
    );
    // None of it created anything.
    assert!(s.events(0).await.is_empty());
    s.stop().await;
}

/// The contract says every error has a JSON body with `error`. axum's default 405 (a path
/// that matches a route registered for other methods) has an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_not_allowed_has_a_json_body() {
    let s = Server::start().await;
    for (method, target) in [
        ("POST", "/api/v1/repos/a/b/transactions"),
        ("DELETE", "/api/v1/repos/files/x/@v/1"),
        ("PUT", "/api/v1/events"),
        ("GET", "/api/v1/transactions/tx_aaaaaaaaaaaaaaaaaaaaaaaaaa/commit"),
    ] {
        let r = raw_request(s.addr, method, target.as_bytes(), &[], b"").await;
        assert_eq!(r.status, 405, "{method} {target}");
        let v = r
            .json()
            .unwrap_or_else(|| panic!("{method} {target}: 405 without a JSON body"));
        assert!(v["error"].is_string(), "{method} {target}: {v}");
    }
    s.stop().await;
}
