//! The web UI's pages over plain HTTP: what a hostile name or metadata value becomes, the
//! headers every page carries, that the UI never shadows the API, that a cookie never
//! authorises a write, and that versions page newest first by cursor.

use intact_server::Config;
use reqwest::StatusCode;
use serde_json::json;

use crate::Server;

/// The cookie sign-in sets for the token `secret`: its hash, never the token.
fn cookie_of(secret: &str) -> String {
    format!("intact_token={}", intact_store::tokens::secret_hash(secret))
}

async fn page(s: &Server, path: &str, cookie: Option<&str>) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut req = s.http.get(s.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", cookie_of(c));
    }
    let resp = req.send().await.expect("get page");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("page text"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_metadata_and_queries_are_escaped_and_pages_carry_a_strict_policy() {
    let s = Server::start().await;
    let hostile = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";
    let (id, _) = s
        .open(json!({"name": "shot/comp", "version": "1", "metadata": {"note": hostile, hostile: "key"}}))
        .await;
    s.put(&id, "a.txt", b"hello".to_vec()).await;
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");

    let (status, headers, html) = page(&s, "/ui/repos/files/shot/comp/@v/1", None).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"), "{html}");
    let csp = headers["content-security-policy"].to_str().expect("csp");
    for rule in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(rule), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.contains_key("referrer-policy"));
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    // The page's only script is the embedded file; no inline script, no handler attribute.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(html.contains("<script src=\"/ui/assets/app.js\" defer></script>"));
    assert!(!html.contains("<img"), "no element from the metadata: {html}");

    // What a query says is never echoed as markup: a bad prefix is refused, a cursor is
    // percent-encoded into its link.
    let (status, _, html) = page(&s, "/ui/repos/files?prefix=%3Cscript%3E", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!html.contains("<script>"), "{html}");
    let (status, _, html) = page(&s, "/ui/repos/files/shot/comp/@versions?before=%22%3E%3Cb%3E", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!html.contains("\"><b>"), "{html}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_never_shadows_the_api_and_serves_its_assets() {
    let s = Server::start().await;
    for (path, status) in [
        ("/", StatusCode::OK),
        ("/ui/activity", StatusCode::OK),
        ("/ui/sign-in", StatusCode::OK),
        ("/ui/repos/files", StatusCode::OK),
        ("/ui/repos/nope", StatusCode::NOT_FOUND),
        ("/ui/repos/files/nope/@versions", StatusCode::OK),
        ("/ui/repos/files/nope/@v/1", StatusCode::NOT_FOUND),
    ] {
        let (got, headers, html) = page(&s, path, None).await;
        assert_eq!(got, status, "{path}: {html}");
        assert!(headers.contains_key("content-security-policy"), "{path}");
    }
    let (status, v) = s.get_json("/api/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
    let (status, v) = s.get_json("/api/v1/repos").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(s.get_bytes("/healthz").await, (StatusCode::OK, b"ok\n".to_vec()));
    for (asset, kind) in [
        ("/ui/assets/app.js", "text/javascript"),
        ("/ui/assets/app.css", "text/css"),
    ] {
        let resp = s.http.get(s.url(asset)).send().await.expect("asset");
        assert_eq!(resp.status(), StatusCode::OK);
        let content_type = resp.headers()["content-type"].to_str().expect("type").to_owned();
        assert!(content_type.starts_with(kind), "{asset}: {content_type}");
    }
    s.stop().await;
}

const CONFIG: &str = r#"
[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "public"
kind = "hosted"
anonymous_read = true
"#;

async fn make_token(s: &Server, admin: Option<&str>, name: &str, scopes: &[&str]) -> String {
    let mut req = s
        .http
        .post(s.url("/api/v1/tokens"))
        .json(&json!({"name": name, "scopes": scopes}));
    if let Some(a) = admin {
        req = req.bearer_auth(a);
    }
    let resp = req.send().await.expect("create token");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let v: serde_json::Value = resp.json().await.expect("json");
    v["secret"].as_str().expect("secret").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_reads_what_its_token_may_and_never_writes() {
    let s = Server::start_with(Config::from_toml(CONFIG).expect("config")).await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let reader = make_token(&s, Some(&admin), "reader", &["files:read"]).await;

    // Anonymous: the public repo only; the private one reads as unknown.
    let (_, _, home) = page(&s, "/", None).await;
    assert!(
        home.contains("/ui/repos/public") && !home.contains("/ui/repos/files"),
        "{home}"
    );
    let (status, _, _) = page(&s, "/ui/repos/files", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // With the reader's cookie: both, and who is signed in (by name, never the secret).
    let (_, _, home) = page(&s, "/", Some(&reader)).await;
    assert!(
        home.contains("/ui/repos/files") && home.contains("signed in as"),
        "{home}"
    );
    assert!(!home.contains(&reader), "the token must never be written into a page");
    let (status, _, _) = page(&s, "/ui/repos/files", Some(&reader)).await;
    assert_eq!(status, StatusCode::OK);
    // A stale cookie reads as signed out, not locked out.
    let (status, _, home) = page(&s, "/", Some("intact_0000")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains("Sign in"), "{home}");

    // The admin's token as a cookie on a write: not believed (as if no token were sent).
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/api/v1/repos/files/transactions",
            json!({"name": "n", "version": "1"}),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/tokens",
            json!({"name": "evil", "scopes": ["*:admin"]}),
        ),
        (
            reqwest::Method::PUT,
            "/api/v1/repos/files/n/@tags/hero",
            json!({"version": "1"}),
        ),
    ] {
        let resp = s
            .http
            .request(method.clone(), s.url(path))
            .header("cookie", cookie_of(&admin))
            .json(&body)
            .send()
            .await
            .expect("write with a cookie");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // The same token in the header is believed.
    let resp = s
        .http
        .post(s.url("/api/v1/repos/files/transactions"))
        .bearer_auth(&admin)
        .json(&json!({"name": "n", "version": "1"}))
        .send()
        .await
        .expect("write with a header");
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Sign-in sets the cookie (HttpOnly, SameSite=Strict) for a live token only, and a
    // cross-site form post is refused by the guard before it is looked at.
    let _ = crate::client(); // installs the crypto provider
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = no_redirects
        .post(s.url("/ui/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={reader}"))
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(cookie.starts_with(&format!("{};", cookie_of(&reader))), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    // The cookie is sent to every port of this host (cookies are not kept apart by port), so
    // it holds no secret that works as a header: the token's hash reads with the cookie
    // only, and the token itself as a cookie is not believed either.
    assert!(
        !cookie.contains(&reader),
        "the token itself is never the cookie: {cookie}"
    );
    let hash = intact_store::tokens::secret_hash(&reader);
    let (status, _, home) = page(&s, "/ui/repos/files", Some(&reader)).await;
    assert_eq!(status, StatusCode::OK, "{home}");
    let resp = s
        .http
        .get(s.url("/ui/repos/files"))
        .bearer_auth(&hash)
        .send()
        .await
        .expect("the hash as a header");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s
        .http
        .get(s.url("/ui/repos/files"))
        .header("cookie", format!("intact_token={reader}"))
        .send()
        .await
        .expect("the token as a cookie");
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "a token in the cookie reads as none"
    );
    let resp = s
        .http
        .post(s.url("/ui/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=intact_not-a-token")
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(!resp.headers().contains_key("set-cookie"));
    let body = resp.text().await.expect("text");
    assert!(!body.contains("intact_not-a-token"), "{body}");
    let resp = s
        .http
        .post(s.url("/ui/sign-in"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={reader}"))
        .send()
        .await
        .expect("cross-site sign in");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(!resp.headers().contains_key("set-cookie"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_page_newest_first_by_cursor() {
    let s = Server::start().await;
    for v in 1..=55 {
        s.publish("many", &v.to_string(), &[("f", format!("{v}").as_bytes())])
            .await;
    }
    let (status, _, first) = page(&s, "/ui/repos/files/many/@versions", None).await;
    assert_eq!(status, StatusCode::OK);
    let shown = |html: &str| -> Vec<String> {
        html.split("/ui/repos/files/many/@v/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next().map(str::to_owned))
            .collect()
    };
    let versions = shown(&first);
    assert_eq!(versions.len(), 50, "{first}");
    assert_eq!(versions[0], "55");
    assert_eq!(versions[49], "6");
    assert!(
        first.contains("href=\"/ui/repos/files/many/@versions?before=6\""),
        "{first}"
    );
    let (_, _, second) = page(&s, "/ui/repos/files/many/@versions?before=6", None).await;
    assert_eq!(shown(&second), ["5", "4", "3", "2", "1"]);
    assert!(!second.contains("before=1"), "no page after the oldest: {second}");
    s.stop().await;
}

/// A measurement, not a check (`cargo test -p intact-server --test it -- --ignored
/// versions_page_timing --nocapture`): the versions page of a name with 100,000 versions, its
/// first page and one deep in the history. The rows are written straight into the catalog
/// (the listing reads only the versions table), as committing 100,000 versions one by one
/// would take minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand with --ignored --nocapture"]
async fn versions_page_timing_with_100000_versions() {
    let s = Server::start().await;
    s.publish("big/name", "0", &[("f", b"x")]).await;
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
               INSERT INTO versions (repo, name, version, auto_number, metadata, fingerprint, txn_id, seq,
                                     created_at, last_access, total_size, file_count)
               SELECT 'files', 'big/name', 'v' || i, NULL, '{}', 'x', NULL, 1000000 + i,
                      1700000000000 + i, 1700000000000 + i, 1, 1 FROM n;";
    let status = std::process::Command::new("sqlite3")
        // The server's own writes (last-access times) may hold the lock for a moment.
        .args(["-cmd", ".timeout 10000"])
        .arg(s.data.join("catalog.db"))
        .arg(sql)
        .status()
        .expect("sqlite3");
    assert!(status.success());
    for (what, path) in [
        ("first page", "/ui/repos/files/big/name/@versions".to_owned()),
        (
            "50,000 deep",
            "/ui/repos/files/big/name/@versions?before=v50000".to_owned(),
        ),
        ("the oldest", "/ui/repos/files/big/name/@versions?before=v2".to_owned()),
    ] {
        let mut times = Vec::new();
        for _ in 0..20 {
            let started = std::time::Instant::now();
            let (status, _, html) = page(&s, &path, None).await;
            times.push(started.elapsed());
            assert_eq!(status, StatusCode::OK, "{html}");
        }
        times.sort();
        println!(
            "versions page, {what}: median {:?}, max {:?} (20 requests, 100,001 versions)",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    s.stop().await;
}

/// A Go module's version page shows the two go.sum lines, exactly as the publish answered
/// them (the `h1:` of the zip and of the go.mod), through the group too; internal names
/// (`@gomod/...`) stay out of the modules list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_module_version_shows_its_go_sum_lines() {
    let s = Server::start().await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("go.mod"), "module example.com/hello\n").expect("go.mod");
    std::fs::write(dir.path().join("hello.go"), "package hello\n").expect("hello.go");
    let mut zip = std::io::Cursor::new(Vec::new());
    intact_go::zip::create_from_dir(dir.path(), "example.com/hello", "v1.2.3", &mut zip).expect("zip");
    let resp = s
        .http
        .post(s.url("/go/go-private/publish?module=example.com/hello&version=v1.2.3"))
        .body(zip.into_inner())
        .send()
        .await
        .expect("go publish");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let published: serde_json::Value = resp.json().await.expect("json");
    let h1 = published["h1"].as_str().expect("h1");
    let go_mod_h1 = published["go_mod_h1"].as_str().expect("go_mod_h1");
    assert!(h1.starts_with("h1:") && go_mod_h1.starts_with("h1:"), "{published}");
    let lines = format!("example.com/hello v1.2.3 {h1}\nexample.com/hello v1.2.3/go.mod {go_mod_h1}");
    for repo in ["go-private", "go"] {
        let (status, _, html) = page(&s, &format!("/ui/repos/{repo}/example.com/hello/@v/v1.2.3"), None).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("<pre class=\"go-sum\""), "{html}");
        assert!(html.contains(&lines), "{repo}: {html}");
        let (status, _, html) = page(&s, &format!("/ui/repos/{repo}"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("example.com/hello"), "{html}");
        assert!(!html.contains("@gomod"), "{html}");
    }
    s.stop().await;
}
