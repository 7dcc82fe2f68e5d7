//! Access control against the real server: open until the first token exists, then every
//! write and admin path refused without a token (401), with a token of the wrong scope (403)
//! and with a revoked or expired one (401), each time with nothing done; anonymous read only
//! where a repo allows it; Bearer and basic auth alike.

use std::time::Duration;

use base64::Engine;
use intact_server::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{Server, json_of};

const CONFIG: &str = r#"
[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "other"
kind = "hosted"

[[repo]]
name = "public"
kind = "hosted"
anonymous_read = true

[[repo]]
name = "go-private"
kind = "hosted"
format = "go"
"#;

async fn server() -> Server {
    Server::start_with(Config::from_toml(CONFIG).expect("config")).await
}

/// A request with an optional bearer token.
async fn call(s: &Server, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = s.http.request(method, s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    } else {
        req = req.header("content-type", "application/json");
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// The names in `GET /api/v1/repos` as `token` (or an anonymous caller) sees it.
async fn repos_listed_to(s: &Server, token: Option<&str>) -> Vec<String> {
    let (_, v) = call(s, Method::GET, "/api/v1/repos", token, None).await;
    v["repos"]
        .as_array()
        .expect("repos")
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect()
}

async fn make_token(s: &Server, admin: Option<&str>, name: &str, scopes: &[&str]) -> String {
    let (status, v) = call(
        s,
        Method::POST,
        "/api/v1/tokens",
        admin,
        Some(json!({"name": name, "scopes": scopes})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert!(v.get("secret_sha256").is_none(), "the hash is never shown: {v}");
    v["secret"].as_str().expect("secret").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_until_the_first_token_then_closed() {
    let s = server().await;
    // No token yet: the embedded default's frictionless loopback use.
    s.publish("tools/a", "1", &[("a.txt", b"a")]).await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;

    let (status, v) = call(&s, Method::GET, "/api/v1/repos/files/tools/a/@v/1", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"], "unauthorized");
    assert!(v["message"].as_str().expect("message").contains("read"), "{v}");
    let (status, v) = call(&s, Method::GET, "/api/v1/repos/files/tools/a/@v/1", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // Health checks stay open; the repo list shows an anonymous caller only what it may read.
    assert_eq!(call(&s, Method::GET, "/healthz", None, None).await.0, StatusCode::OK);
    assert_eq!(repos_listed_to(&s, None).await, ["public"]);
    let (_, v) = call(&s, Method::GET, "/api/v1/repos", Some(&admin), None).await;
    assert_eq!(v["repos"].as_array().expect("repos").len(), 4);

    // A WWW-Authenticate challenge for both schemes.
    let resp = s
        .http
        .get(s.url("/api/v1/repos/files/tools/a/@v/1"))
        .send()
        .await
        .expect("get");
    let challenges: Vec<&str> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(challenges.iter().any(|c| c.starts_with("Bearer")), "{challenges:?}");
    assert!(challenges.iter().any(|c| c.starts_with("Basic")), "{challenges:?}");
}

/// Revoking every token does not reopen the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_last_token_keeps_access_control_on() {
    let s = server().await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let (status, v) = call(&s, Method::DELETE, "/api/v1/tokens/root", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["revoked_at"].is_string(), "{v}");
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/files/transactions",
        None,
        Some(json!({"name": "x", "version": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    let (status, v) = call(&s, Method::GET, "/api/v1/tokens", Some(&admin), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["message"].as_str().expect("message").contains("revoked"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_read_only_where_a_repo_allows_it() {
    let s = server().await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let publisher = make_token(&s, Some(&admin), "pub", &["public:publish"]).await;
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/public/transactions",
        Some(&publisher),
        Some(json!({"name": "n", "version": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    let resp = s
        .http
        .put(s.url(&format!("/api/v1/transactions/{id}/files/f.txt")))
        .bearer_auth(&publisher)
        .body("hello")
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (status, v) = call(
        &s,
        Method::POST,
        &format!("/api/v1/transactions/{id}/commit"),
        Some(&publisher),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");

    // Anyone reads `public`; writing it still needs a token.
    assert_eq!(
        s.get_bytes("/api/v1/repos/public/n/@v/1/f.txt").await,
        (StatusCode::OK, b"hello".to_vec())
    );
    let (status, _) = call(
        &s,
        Method::POST,
        "/api/v1/repos/public/transactions",
        None,
        Some(json!({"name": "n", "version": "2"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The event log shows an anonymous caller only `public`'s events.
    let (_, v) = call(&s, Method::GET, "/api/v1/events", None, None).await;
    let repos: Vec<&str> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["repo"].as_str())
        .collect();
    assert_eq!(repos, ["public"], "{v}");
}

/// Basic auth with the token as the password and any user name, as the go command sends it
/// from `.netrc`; the Go protocol paths answer refusals in text/plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_go_refusals_in_text() {
    let s = server().await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let reader = make_token(&s, Some(&admin), "go-reader", &["go-private:read"]).await;
    let path = "/go/go-private/example.com/m/@v/list";
    let resp = s.http.get(s.url(path)).send().await.expect("get");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let text = resp.text().await.expect("text");
    assert!(text.contains("token"), "{text}");

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("whoever:{reader}"));
    let resp = s
        .http
        .get(s.url(path))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .expect("get");
    // Let through: the repo answers for itself (it holds no such module).
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{:?}", resp.text().await);

    let wrong = base64::engine::general_purpose::STANDARD.encode("whoever:intact_not-a-token");
    let resp = s
        .http
        .get(s.url(path))
        .header("authorization", format!("Basic {wrong}"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// Every write path and every admin path, tried without a token, with a token of the wrong
/// scope and with a revoked one: refused, with a message, and nothing done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_and_admin_path_refuses_missing_wrong_and_revoked_tokens() {
    let s = server().await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let reader = make_token(&s, Some(&admin), "reader", &["files:read", "go-private:read"]).await;
    let elsewhere = make_token(&s, Some(&admin), "elsewhere", &["other:admin"]).await;
    let revoked = make_token(&s, Some(&admin), "gone", &["*:admin"]).await;
    let (status, _) = call(&s, Method::DELETE, "/api/v1/tokens/gone", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);

    // A transaction of the admin's to aim the transaction routes at.
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/files/transactions",
        Some(&admin),
        Some(json!({"name": "t", "version": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let txn = v["id"].as_str().expect("id").to_owned();
    let events_before = s_events(&s, &admin).await;

    struct Case {
        method: Method,
        path: String,
        body: Option<Value>,
        /// Whether it is a server admin operation (the repo-scoped token is refused too).
        admin_only: bool,
    }
    let case = |method: Method, path: &str, body: Option<Value>, admin_only: bool| Case {
        method,
        path: path.to_owned(),
        body,
        admin_only,
    };
    let cases = [
        case(
            Method::POST,
            "/api/v1/repos/files/transactions",
            Some(json!({"name": "x", "version": "1"})),
            false,
        ),
        case(
            Method::PUT,
            &format!("/api/v1/transactions/{txn}/files/a.txt"),
            None,
            false,
        ),
        case(Method::POST, &format!("/api/v1/transactions/{txn}/commit"), None, false),
        case(Method::POST, &format!("/api/v1/transactions/{txn}/renew"), None, false),
        case(Method::DELETE, &format!("/api/v1/transactions/{txn}"), None, false),
        case(Method::POST, "/api/v1/repos/files/publish", None, false),
        case(Method::POST, "/go/go-private/publish", None, false),
        case(Method::POST, "/api/v1/admin/gc", Some(json!({})), true),
        case(Method::GET, "/api/v1/admin/gc", None, true),
        case(Method::POST, "/api/v1/admin/verify", Some(json!({})), true),
        case(Method::GET, "/api/v1/tokens", None, true),
        case(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "sneaky", "scopes": ["*:admin"]})),
            true,
        ),
        case(Method::DELETE, "/api/v1/tokens/root", None, true),
        case(Method::GET, "/api/v1/hooks", None, true),
        case(
            Method::POST,
            "/api/v1/hooks",
            Some(json!({"name": "sneaky", "repo": "*", "url": "http://127.0.0.1:9/"})),
            true,
        ),
        case(Method::GET, "/api/v1/hooks/sneaky", None, true),
        case(Method::DELETE, "/api/v1/hooks/sneaky", None, true),
    ];
    for c in &cases {
        let what = format!("{} {}", c.method, c.path);
        let (status, v) = call(&s, c.method.clone(), &c.path, None, c.body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} without a token: {v}");
        assert_eq!(v["error"], "unauthorized", "{what}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains("token")),
            "{what}: {v}"
        );

        let (status, v) = call(&s, c.method.clone(), &c.path, Some(&reader), c.body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what} with a read token: {v}");
        assert_eq!(v["error"], "forbidden", "{what}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains("reader")),
            "names the token: {what}: {v}"
        );

        if c.admin_only {
            let (status, v) = call(&s, c.method.clone(), &c.path, Some(&elsewhere), c.body.clone()).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{what} with another repo's admin token: {v}"
            );
        } else {
            let (status, v) = call(&s, c.method.clone(), &c.path, Some(&elsewhere), c.body.clone()).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{what} with a token for another repo: {v}"
            );
        }

        let (status, v) = call(&s, c.method.clone(), &c.path, Some(&revoked), c.body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} with a revoked token: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains("revoked")),
            "{what}: {v}"
        );
    }

    // Nothing was done: the transaction is open with no files, no version or token appeared,
    // the event log did not move, and `root` still works.
    let (status, t) = call(
        &s,
        Method::GET,
        &format!("/api/v1/transactions/{txn}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["state"], "open", "{t}");
    assert_eq!(t["files"], json!([]), "{t}");
    let (_, names) = call(&s, Method::GET, "/api/v1/repos/files/names", Some(&admin), None).await;
    assert_eq!(names["names"], json!([]), "{names}");
    let (status, list) = call(&s, Method::GET, "/api/v1/tokens", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let token_names: Vec<&str> = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(token_names, ["elsewhere", "gone", "reader", "root"]);
    assert_eq!(s_events(&s, &admin).await, events_before);
}

async fn s_events(s: &Server, token: &str) -> Vec<Value> {
    let (status, v) = call(s, Method::GET, "/api/v1/events?limit=10000", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["events"].as_array().expect("events").clone()
}

/// A token that expires stops working then (judged by the server's clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refused() {
    let s = server().await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/tokens",
        Some(&admin),
        Some(json!({"name": "short", "scopes": ["files:publish"], "expires_in_seconds": 60})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let short = v["secret"].as_str().expect("secret").to_owned();
    let create = json!({"name": "e", "version": "1"});
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/files/transactions",
        Some(&short),
        Some(create.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    s.clock.advance(Duration::from_secs(61));
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/files/transactions",
        Some(&short),
        Some(json!({"name": "e", "version": "2"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("expired")), "{v}");
}

/// Bad token requests are 4xx naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_requests_are_refused_clearly() {
    let s = server().await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    for (body, field) in [
        (json!({"name": "bad name", "scopes": ["*:read"]}), "name"),
        (json!({"name": "x", "scopes": ["files:write"]}), "scope"),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (
            json!({"name": "x", "scopes": ["*:read"], "expires_in_seconds": 0}),
            "expires_in_seconds",
        ),
    ] {
        let (status, v) = call(&s, Method::POST, "/api/v1/tokens", Some(&admin), Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/tokens",
        Some(&admin),
        Some(json!({"name": "root", "scopes": ["*:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "a name is never reused: {v}");
    let (status, v) = call(&s, Method::DELETE, "/api/v1/tokens/nobody", Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let resp = s
        .http
        .get(s.url("/api/v1/repos"))
        .header("authorization", "Digest whatever")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (_, v) = json_of(resp).await;
    assert!(v["message"].as_str().is_some_and(|m| m.contains("Bearer")), "{v}");
}

/// Percent-escapes in a path reach the handler decoded: access is judged on the decoded path
/// too, so an escaped transaction id or repo name cannot slip a token past its scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_paths_are_judged_as_the_handler_sees_them() {
    let s = server().await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let elsewhere = make_token(&s, Some(&admin), "elsewhere", &["other:publish"]).await;
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/files/transactions",
        Some(&admin),
        Some(json!({"name": "t", "version": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let txn = v["id"].as_str().expect("id").to_owned();
    // Every character of the id escaped.
    let escaped: String = txn.bytes().map(|b| format!("%{b:02X}")).collect();
    let resp = s
        .http
        .put(s.url(&format!("/api/v1/transactions/{escaped}/files/a.txt")))
        .bearer_auth(&elsewhere)
        .body("sneaked in")
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{:?}", resp.text().await);
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/fil%65s/transactions",
        Some(&elsewhere),
        Some(json!({"name": "u", "version": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (_, t) = call(
        &s,
        Method::GET,
        &format!("/api/v1/transactions/{txn}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(t["files"], json!([]), "{t}");
    // And an escaped name of a repo open to anonymous reads is still that repo.
    let (status, _) = call(&s, Method::GET, "/api/v1/repos/publi%63/names", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

/// A token may hold only so many transactions open; committing or aborting frees the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transactions_per_token_are_limited() {
    let mut config = Config::from_toml(CONFIG).expect("config");
    config.limits.max_open_transactions_per_token = 2;
    let s = Server::start_with(config).await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let ci = make_token(&s, Some(&admin), "ci", &["files:publish"]).await;
    let open = |v: &str| json!({"name": "n", "version": v});
    let (status, a) = call(
        &s,
        Method::POST,
        "/api/v1/repos/files/transactions",
        Some(&ci),
        Some(open("1")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/files/transactions",
        Some(&ci),
        Some(open("2")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/files/transactions",
        Some(&ci),
        Some(open("3")),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"], "too_many_transactions", "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("ci") && m.contains("max_open_transactions_per_token")),
        "{v}"
    );
    // Another token is not held to ci's count.
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/files/transactions",
        Some(&admin),
        Some(open("3")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = a["id"].as_str().expect("id");
    let (status, _) = call(
        &s,
        Method::DELETE,
        &format!("/api/v1/transactions/{id}"),
        Some(&ci),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/files/transactions",
        Some(&ci),
        Some(open("4")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
}

/// `GET /api/v1/transactions` lists the open transactions of the repos the caller may read,
/// and its limit counts only those: transactions of other repos that expire sooner do not
/// use it up (they once did, the list being cut before it was filtered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transactions_are_listed_per_readable_repo_and_limit() {
    let s = server().await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let reader = make_token(&s, Some(&admin), "reader", &["files:read"]).await;
    // Three in `other`, expiring soonest; one in `files`, one in `public` (anyone reads it).
    for v in ["1", "2", "3"] {
        let body = json!({"name": "n", "version": v, "lease_seconds": 30});
        let (status, v) = call(
            &s,
            Method::POST,
            "/api/v1/repos/other/transactions",
            Some(&admin),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    for repo in ["files", "public"] {
        let body = json!({"name": "n", "version": "1", "lease_seconds": 600});
        let path = format!("/api/v1/repos/{repo}/transactions");
        let (status, v) = call(&s, Method::POST, &path, Some(&admin), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let repos_of = |v: &Value| -> Vec<String> {
        let mut repos: Vec<String> = v["transactions"]
            .as_array()
            .expect("transactions")
            .iter()
            .filter_map(|t| t["repo"].as_str().map(str::to_owned))
            .collect();
        repos.sort();
        repos
    };
    let (status, v) = call(&s, Method::GET, "/api/v1/transactions?limit=2", Some(&reader), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(repos_of(&v), ["files", "public"], "{v}");
    let (_, v) = call(&s, Method::GET, "/api/v1/transactions?limit=1", None, None).await;
    assert_eq!(repos_of(&v), ["public"], "{v}");
    let (_, v) = call(&s, Method::GET, "/api/v1/transactions?limit=100", Some(&admin), None).await;
    assert_eq!(repos_of(&v), ["files", "other", "other", "other", "public"], "{v}");
}

/// An authenticated request counts against its token's rate, not its address's: one token
/// over its rate is refused (429 naming the limit) while another token from the same address
/// is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_rate_is_counted_per_token() {
    let mut config = Config::from_toml(CONFIG).expect("config");
    config.limits.rate_per_token = intact_server::limits::RateSettings {
        per_second: 1,
        burst: 3,
    };
    let s = Server::start_with(config).await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let busy = make_token(&s, Some(&admin), "busy", &["*:read"]).await;
    let other = make_token(&s, Some(&admin), "other", &["*:read"]).await;
    let mut refused = None;
    for _ in 0..20 {
        let (status, v) = call(&s, Method::GET, "/api/v1/repos/files/names", Some(&busy), None).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(v);
            break;
        }
    }
    let v = refused.expect("a token over its rate is refused");
    assert_eq!(v["error"], "rate_limited", "{v}");
    assert_eq!(v["limit"], "limits.rate_per_token", "{v}");
    let (status, v) = call(&s, Method::GET, "/api/v1/repos/files/names", Some(&other), None).await;
    assert_eq!(status, StatusCode::OK, "another token has its own rate: {v}");
}

/// Requests whose tokens nobody made are counted against their address before any catalog
/// work: a flood of made-up tokens meets the address's rate (429), as anonymous requests do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_tokens_are_counted_against_their_address() {
    let mut config = Config::from_toml(CONFIG).expect("config");
    config.limits.rate_per_address = intact_server::limits::RateSettings {
        per_second: 1,
        burst: 5,
    };
    let s = Server::start_with(config).await;
    let mut refused = None;
    for i in 0..30 {
        let (status, v) = call(
            &s,
            Method::GET,
            "/api/v1/repos/files/names",
            Some(&format!("intact_madeup{i}")),
            None,
        )
        .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(v);
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    }
    let v = refused.expect("made-up tokens past the address's rate are refused with 429");
    assert_eq!(v["limit"], "limits.rate_per_address", "{v}");
}

/// Counting is fair both ways. Looking up a token this server does not remember yet (its
/// first use, or after a token change elsewhere made the server forget) does not spend the
/// address's budget for anonymous requests, so clients behind one address (a NAT, a proxy)
/// do not starve each other when the tokens are forgotten; and refused requests are counted
/// all the same: a malformed `Authorization` against the address, a 403 against its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lookups_and_refusals_are_counted_where_they_belong() {
    async fn anonymous_served_before_429(s: &Server) -> u32 {
        for served in 0..20 {
            let (status, v) = call(s, Method::GET, "/api/v1/repos/public/names", None, None).await;
            if status == StatusCode::TOO_MANY_REQUESTS {
                return served;
            }
            assert_eq!(status, StatusCode::OK, "{v}");
        }
        panic!("anonymous requests were never refused");
    }
    let config = || {
        let mut config = Config::from_toml(CONFIG).expect("config");
        config.limits.rate_per_address = intact_server::limits::RateSettings {
            per_second: 1,
            burst: 4,
        };
        config.limits.rate_per_token = intact_server::limits::RateSettings {
            per_second: 1,
            burst: 3,
        };
        config
    };

    // Tokens looked up for the first time leave the address's budget to anonymous readers
    // (the first token is made anonymously: that one request is the address's).
    let s = Server::start_with(config()).await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let reader = make_token(&s, Some(&admin), "reader", &["files:read"]).await;
    let (status, v) = call(&s, Method::GET, "/api/v1/repos/files/names", Some(&reader), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let served = anonymous_served_before_429(&s).await;
    assert!(served >= 3, "token lookups spent the address's budget: {served} served");

    // A 403 is counted against the token that was refused (its burst is 3, one spent above).
    for _ in 0..2 {
        let (status, v) = call(&s, Method::GET, "/api/v1/repos/other/names", Some(&reader), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    }
    let (status, v) = call(&s, Method::GET, "/api/v1/repos/files/names", Some(&reader), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "403s were not counted: {v}");
    assert_eq!(v["limit"], "limits.rate_per_token", "{v}");

    // A malformed Authorization header is counted against the address.
    let s = Server::start_with(config()).await;
    for _ in 0..4 {
        let resp = s
            .http
            .get(s.url("/api/v1/repos/public/names"))
            .header("authorization", "Digest username=x")
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let (status, v) = call(&s, Method::GET, "/api/v1/repos/public/names", None, None).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "malformed headers were not counted: {v}"
    );
}

/// `[auth] required = true`: closed before any token exists. Writes and private reads are
/// refused (401) with nothing done, anonymous read still works where a repo allows it, and
/// the first token cannot be made through the server (it is made on the host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_auth_is_closed_before_the_first_token() {
    let mut config = Config::from_toml(CONFIG).expect("config");
    config.auth.required = true;
    let s = Server::start_with(config).await;
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/files/transactions",
        None,
        Some(json!({"name": "tools/a", "version": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    let (status, v) = call(&s, Method::GET, "/api/v1/repos/files/names", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    let (status, v) = call(&s, Method::GET, "/api/v1/repos/public/names", None, None).await;
    assert_eq!(status, StatusCode::OK, "anonymous read stays open where allowed: {v}");
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/tokens",
        None,
        Some(json!({"name": "root", "scopes": ["*:admin"]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    let (status, v) = call(&s, Method::GET, "/go/go-private/example.com/m/@v/list", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    let (status, v) = call(&s, Method::GET, "/api/v1/tokens", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(
        repos_listed_to(&s, None).await,
        ["public"],
        "only readable repos are listed"
    );
}

/// A token this server remembers (used a moment ago) is refused from the first request after
/// a revocation made elsewhere has answered: here straight in the catalog, as `intact token
/// revoke --data-dir` on the host or another replica does, which then waits the settling time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_token_is_refused_once_a_revocation_elsewhere_answers() {
    let s = server().await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let reader = make_token(&s, Some(&admin), "reader", &["files:read"]).await;
    for _ in 0..5 {
        let (status, v) = call(&s, Method::GET, "/api/v1/repos/files/names", Some(&reader), None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let host = intact_store::tokens::open_catalog(
        &s.data,
        &intact_store::CatalogChoice::Embedded,
        intact_store::tokens::MissingCatalog::Refuse,
    )
    .await
    .expect("the catalog, as the host CLI opens it");
    host.revoke_token("reader").await.expect("revoke").expect("exists");
    tokio::time::sleep(intact_store::tokens::REVOCATION_SETTLES).await;
    let (status, v) = call(&s, Method::GET, "/api/v1/repos/files/names", Some(&reader), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("revoked")), "{v}");
}

/// A web page must not mint the first admin token (a page whose host name resolves to this
/// server passes the cross-site check): while no token exists, token creation refuses
/// browsers; and the repo list never shows credentials written into an upstream URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_cannot_mint_the_first_token_and_upstream_credentials_stay_hidden() {
    let mut config = Config::from_toml(CONFIG).expect("config");
    let mut proxy = intact_server::config::RepoConfig::new(
        "mirror",
        intact_server::config::RepoKind::Proxy,
        intact_server::config::RepoFormat::Go,
    );
    proxy.upstream = Some("https://bot:hunter2@proxy.example.com/go".into());
    config.repos.push(proxy);
    let s = Server::start_with(config).await;
    let host = s.addr.to_string();
    let resp = s
        .http
        .post(s.url("/api/v1/tokens"))
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"name": "evil", "scopes": ["*:admin"]}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let (_, v) = json_of(resp).await;
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("intact token create")),
        "{v}"
    );
    let (status, v) = call(&s, Method::GET, "/api/v1/tokens", None, None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["tokens"], json!([]), "nothing was made: {v}");

    for path in ["/api/v1/repos", "/api/v1/repos/mirror"] {
        let (status, v) = call(&s, Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let text = v.to_string();
        assert!(
            !text.contains("hunter2") && text.contains("https://***@proxy.example.com/go"),
            "{path}: {text}"
        );
    }
}

/// A staging job of a repo the caller may not read answers exactly as an unknown job does:
/// job ids do not reveal which repos exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_unreadable_repos_look_unknown() {
    let up = tempfile::tempdir().expect("upstream");
    std::fs::create_dir_all(up.path().join("b1")).expect("mkdir");
    std::fs::write(up.path().join("b1/payload.bin"), b"payload").expect("write");
    let config = Config::from_toml(&format!(
        r#"
[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "secret-builds"
kind = "proxy"
format = "generic"
upstream = "file://{}"

[repo.artifacts]
payload = {{ files = ["payload.bin"], extract = false }}
"#,
        up.path().display()
    ))
    .expect("config");
    let s = Server::start_with(config).await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let (status, v) = call(
        &s,
        Method::POST,
        "/api/v1/repos/secret-builds/stage",
        Some(&admin),
        Some(json!({"name": "b1", "background": ["payload"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let job = v["background"][0]["job"].as_str().expect("job id").to_owned();
    let (status, v) = call(&s, Method::GET, &format!("/api/v1/jobs/{job}"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let other = make_token(&s, Some(&admin), "other", &["files:read"]).await;
    for token in [None, Some(other.as_str())] {
        let (status, hidden) = call(&s, Method::GET, &format!("/api/v1/jobs/{job}"), token, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{hidden}");
        assert!(!hidden.to_string().contains("secret-builds"), "{hidden}");
        let unknown = format!("{}0", &job[..job.len() - 1]);
        let unknown = if unknown == job {
            format!("{}1", &job[..job.len() - 1])
        } else {
            unknown
        };
        let (_, v) = call(&s, Method::GET, &format!("/api/v1/jobs/{unknown}"), Some(&admin), None).await;
        assert_eq!(
            hidden["message"].as_str().map(|m| m.replace(&job, "ID")),
            v["message"].as_str().map(|m| m.replace(&unknown, "ID"))
        );
    }
}

/// Whether the store holds some bytes tells something about what others published: only a
/// caller who may publish somewhere may ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_publishers_may_ask_which_blobs_are_stored() {
    let s = server().await;
    let admin = make_token(&s, None, "root", &["*:admin"]).await;
    let reader = make_token(&s, Some(&admin), "reader", &["files:read", "public:read"]).await;
    let publisher = make_token(&s, Some(&admin), "pub", &["other:publish"]).await;
    let digest = intact_core::Digest::of(b"anything").to_hex();
    let body = json!({"digests": [digest]});
    let path = "/api/v1/blobs/missing";
    let (status, v) = call(&s, Method::POST, path, None, Some(body.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    let (status, v) = call(&s, Method::POST, path, Some(&reader), Some(body.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["message"].as_str().unwrap_or_default().contains("only publishers"),
        "{v}"
    );
    let (status, v) = call(&s, Method::POST, path, Some(&publisher), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["missing"], json!([digest]));

    // Bytes stored only in a repo the publisher may not read are missing to them, and cannot
    // be added by digest: a digest is no key to another repo's files.
    let secret: &[u8] = b"the embargoed cut";
    let put = |token: String, txn: String, file: &'static str, bytes: Option<&'static [u8]>| {
        let s = &s;
        async move {
            let mut req = s
                .http
                .put(s.url(&format!("/api/v1/transactions/{txn}/files/{file}")))
                .bearer_auth(token);
            req = match bytes {
                Some(b) => req.body(b),
                None => req.header("x-blob-sha256", intact_core::Digest::of(secret).to_hex()),
            };
            json_of(req.send().await.expect("put")).await
        }
    };
    let open = |repo: &'static str, token: String, version: &'static str| {
        let s = &s;
        async move {
            let (status, t) = call(
                s,
                Method::POST,
                &format!("/api/v1/repos/{repo}/transactions"),
                Some(&token),
                Some(json!({"name": "cut", "version": version})),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{t}");
            t["id"].as_str().expect("id").to_owned()
        }
    };
    let hidden = open("files", admin.clone(), "1").await;
    let (status, v) = put(admin.clone(), hidden.clone(), "cut.mov", Some(secret)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, v) = call(
        &s,
        Method::POST,
        &format!("/api/v1/transactions/{hidden}/commit"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let secret_digest = intact_core::Digest::of(secret).to_hex();
    let ask = json!({"digests": [secret_digest]});
    let (_, v) = call(&s, Method::POST, path, Some(&publisher), Some(ask.clone())).await;
    assert_eq!(v["missing"], json!([secret_digest]), "hidden from the publisher");
    let (_, v) = call(&s, Method::POST, path, Some(&admin), Some(ask.clone())).await;
    assert_eq!(v["missing"], json!([]), "held for a caller who may read it");
    let mine = open("other", publisher.clone(), "1").await;
    let (status, v) = put(publisher.clone(), mine.clone(), "copy.mov", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "blob_not_stored", "{v}");
    // Uploading the bytes is the way in; then the same transaction may add them again.
    let (status, v) = put(publisher.clone(), mine.clone(), "copy.mov", Some(secret)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, v) = put(publisher.clone(), mine.clone(), "again.mov", None).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
}
