//! The request guard in front of every route: HTTP/1.1's `Host` rules (a request without
//! `Host`, or with two, is a 400), and the refusal of browser cross-site writes (a web page
//! must not be able to publish into, or collect garbage on, a loopback intact) while
//! same-origin browsers and clients that send no browser headers (curl, go, the CLI) work.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::{RawResponse, Server, assert_error, json_of, raw_exchange, raw_request};

async fn exchange(s: &Server, request: &[u8]) -> RawResponse {
    let (answer, buf) = raw_exchange(s.addr, request).await;
    answer.unwrap_or_else(|| panic!("unparseable response: {:?}", String::from_utf8_lossy(&buf)))
}

fn body_text(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_rules() {
    let s = Server::start().await;
    // HTTP/1.1 without Host, or with two: 400 naming Host, on every front-end.
    for target in ["/healthz", "/api/v1/repos", "/go/go-private/example.com/m/@v/list"] {
        let r = exchange(
            &s,
            format!("GET {target} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 400, "{target} without Host: {}", body_text(&r));
        assert!(body_text(&r).contains("Host"), "{target}: {}", body_text(&r));
        let r = exchange(
            &s,
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(r.status, 400, "{target} with two Hosts: {}", body_text(&r));
        assert!(body_text(&r).contains("Host"), "{target}: {}", body_text(&r));
    }
    // The artifact API answers with its JSON error shape.
    let r = exchange(&s, b"GET /api/v1/repos HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    let v = r.json().unwrap_or_else(|| panic!("not JSON: {}", body_text(&r)));
    assert_eq!(v["error"], "bad_request", "{v}");
    assert_eq!(v["field"], "host", "{v}");
    // A Host that is not `host[:port]`.
    for host in ["a b", "user@127.0.0.1", "127.0.0.1:port", "[::1", "a/b"] {
        let r = exchange(
            &s,
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 400, "Host: {host}: {}", body_text(&r));
    }
    // A write without Host is refused before it runs: nothing is published.
    let body = br#"{"name": "no-host", "version": "1"}"#;
    let r = exchange(
        &s,
        &[
            format!(
                "POST /api/v1/repos/files/transactions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
            body,
        ]
        .concat(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", body_text(&r));
    let (status, v) = s.get_json("/api/v1/repos/files/names").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["names"], json!([]), "{v}");

    // HTTP/1.0 may omit Host (RFC 9112 requires it of HTTP/1.1 only); two are still wrong.
    let r = exchange(&s, b"GET /healthz HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    let r = exchange(&s, b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n").await;
    assert_eq!(r.status, 400, "{}", body_text(&r));
    // Ordinary requests, including the absolute form and an empty Host, are served.
    for head in [
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: localhost:7333\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: [::1]:7333\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
        "GET http://127.0.0.1/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    ] {
        let r = exchange(&s, head.as_bytes()).await;
        assert_eq!(r.status, 200, "{head:?}: {}", body_text(&r));
    }
    s.stop().await;
}

async fn publish_with(s: &Server, name: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let form = Form::new()
        .text("name", name.to_owned())
        .text("version", "1")
        .part("file", Part::bytes(b"payload".to_vec()).file_name("a.txt"));
    let mut req = s.http.post(s.url("/api/v1/repos/files/publish")).multipart(form);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    json_of(req.send().await.expect("publish")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_cross_site_writes_are_refused() {
    let s = Server::start().await;
    let own_origin = format!("http://{}", s.addr);
    let other_port = format!("http://127.0.0.1:{}", s.addr.port().wrapping_add(1));
    // What a page elsewhere makes the browser send with a form POST or a fetch.
    let refused: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("origin", "http://evil.example")], "origin"),
        (vec![("origin", "null")], "origin"),
        // Another port of the same host is another origin (and the same *site*).
        (vec![("origin", other_port.as_str())], "origin"),
        (vec![("origin", "https://127.0.0.1")], "origin"),
        (vec![("sec-fetch-site", "cross-site")], "sec-fetch-site"),
        (vec![("sec-fetch-site", "same-site")], "sec-fetch-site"),
        (
            vec![("sec-fetch-site", "cross-site"), ("origin", own_origin.as_str())],
            "sec-fetch-site",
        ),
        (
            vec![("sec-fetch-site", "same-site"), ("origin", other_port.as_str())],
            "sec-fetch-site",
        ),
    ];
    for (i, (headers, field)) in refused.iter().enumerate() {
        let got = publish_with(&s, &format!("cross/{i}"), headers).await;
        assert_error(&got, StatusCode::FORBIDDEN, "cross_site", Some(field));
        let msg = got.1["message"].as_str().unwrap_or_default();
        assert!(msg.to_lowercase().contains(field), "{headers:?}: {msg}");
    }
    // Same-origin browsers, user-initiated requests and non-browser clients are served.
    let allowed: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("origin", own_origin.as_str())],
        vec![("sec-fetch-site", "same-origin"), ("origin", own_origin.as_str())],
        vec![("sec-fetch-site", "none")],
    ];
    for (i, headers) in allowed.iter().enumerate() {
        let (status, v) = publish_with(&s, &format!("same/{i}"), headers).await;
        assert_eq!(status, StatusCode::CREATED, "{headers:?}: {v}");
    }

    // Every state-changing method on every front-end, refused before its handler runs.
    let (txn, _) = s.open(json!({"name": "held", "version": "1"})).await;
    let evil = [("Origin", "http://evil.example"), ("Content-Type", "application/json")];
    for (method, target, body) in [
        (
            "POST",
            "/api/v1/repos/files/transactions".to_owned(),
            r#"{"name":"x","version":"1"}"#,
        ),
        ("PUT", format!("/api/v1/transactions/{txn}/files/a.txt"), "bytes"),
        ("POST", format!("/api/v1/transactions/{txn}/commit"), ""),
        ("DELETE", format!("/api/v1/transactions/{txn}"), ""),
        ("PATCH", format!("/api/v1/transactions/{txn}"), "{}"),
        ("POST", "/api/v1/admin/gc".to_owned(), r#"{"grace_seconds":0}"#),
        ("POST", "/api/v1/admin/verify".to_owned(), "{}"),
        (
            "POST",
            "/api/v1/repos/files/stage".to_owned(),
            r#"{"name":"b","artifacts":["x"]}"#,
        ),
        (
            "POST",
            "/go/go-private/publish?module=example.com/m&version=v1.0.0".to_owned(),
            "PK",
        ),
        ("POST", "/no/such/endpoint".to_owned(), ""),
    ] {
        let r = raw_request(s.addr, method, target.as_bytes(), &evil, body.as_bytes()).await;
        assert_eq!(r.status, 403, "{method} {target}: {}", body_text(&r));
        let v = r
            .json()
            .unwrap_or_else(|| panic!("{method} {target}: {}", body_text(&r)));
        assert_eq!(v["error"], "cross_site", "{v}");
        assert_eq!(v["field"], "origin", "{v}");
    }
    let t = s.txn(&txn).await;
    assert_eq!(t["state"], "open", "{t}");
    assert_eq!(t["files"], json!([]), "{t}");
    // Reads stay open to any page: a browser does not let that page see the answer.
    let r = raw_request(
        s.addr,
        "GET",
        b"/api/v1/repos/files/same/0/@v/1/a.txt",
        &[("Origin", "http://evil.example"), ("Sec-Fetch-Site", "cross-site")],
        b"",
    )
    .await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"payload"[..]));
    // Nothing of the refused requests was published.
    let (status, v) = s.get_json("/api/v1/repos/files/names").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["names"], json!(["same/0", "same/1", "same/2", "same/3"]), "{v}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_require_a_json_content_type() {
    let s = Server::start().await;
    // A browser can send these cross-site without a preflight (simple requests); JSON it
    // cannot, so requiring it closes that door even where no Origin is sent.
    for path in ["/api/v1/admin/gc", "/api/v1/admin/verify"] {
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
        ] {
            let mut req = s.http.post(s.url(path)).body("{}");
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let got = json_of(req.send().await.expect("admin")).await;
            assert_error(&got, StatusCode::FORBIDDEN, "json_required", Some("content-type"));
        }
        for (content_type, body) in [
            ("application/json", "{}"),
            ("application/json; charset=utf-8", "{}"),
            ("application/json", ""),
        ] {
            let resp = s
                .http
                .post(s.url(path))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("admin");
            let (status, v) = json_of(resp).await;
            assert_eq!(status, StatusCode::OK, "{path} {content_type} {body:?}: {v}");
        }
    }
    // Bad JSON is still a 400 naming the body.
    let resp = s
        .http
        .post(s.url("/api/v1/admin/gc"))
        .header("content-type", "application/json")
        .body("{\"grace_seconds\": -1}")
        .send()
        .await
        .expect("gc");
    assert_error(
        &json_of(resp).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("body"),
    );
    s.stop().await;
}

/// A stored file is served from intact's own origin, so an HTML (or SVG) artifact opened in a
/// browser would be a same-origin page: its script could publish, abort transactions and
/// collect garbage with `Sec-Fetch-Site: same-origin`, walking past the cross-site check (a
/// build's coverage report from a proxied upstream is enough). Files are served sandboxed,
/// as an opaque origin whose writes the guard refuses like any other site's, and never
/// content-sniffed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_files_are_not_same_origin_pages() {
    let s = Server::start().await;
    let page = b"<script>fetch('/api/v1/admin/gc', {method: 'POST'})</script>".to_vec();
    s.publish("report", "1", &[("index.html", &page), ("logo.svg", b"<svg/>")])
        .await;
    for file in ["index.html", "logo.svg"] {
        let resp = s
            .http
            .get(s.url(&format!("/api/v1/repos/files/report/@v/1/{file}")))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::OK);
        let csp = resp
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        assert!(
            directives
                .iter()
                .any(|d| d.split_whitespace().next() == Some("sandbox") && !d.contains("allow-same-origin")),
            "{file}: served as a same-origin page (Content-Security-Policy: {csp:?})"
        );
        assert_eq!(
            resp.headers().get("x-content-type-options").map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{file}"
        );
    }
}
