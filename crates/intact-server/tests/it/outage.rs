//! The Go proxy and staging while the catalog is unreachable (a PostgreSQL catalog reached
//! through a TCP relay the test cuts, as a database restart or a network failure would):
//! they answer a retryable 503 saying so, like the artifact API, not a 500 "internal"; and
//! serve again by themselves once the catalog is back.

use std::time::Duration;

use intact_server::Config;
use intact_testkit::{Relay, TestDatabase};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{Server, json_of};

/// A hosted Go repo, and a staging repo over the `file://` upstream `upstream`.
fn config(catalog_url: &str, upstream: &std::path::Path) -> Config {
    let text = format!(
        r#"
[catalog]
url = "{catalog_url}"

[[repo]]
name = "go-private"
kind = "hosted"
format = "go"

[[repo]]
name = "builds"
kind = "proxy"
format = "generic"
upstream = "file://{}"
[repo.artifacts]
payload = {{ files = ["*.bin"] }}
"#,
        upstream.display()
    );
    Config::from_toml(&text).expect("config")
}

/// A module zip of `module@version` with one package file.
fn module_zip(dir: &std::path::Path, module: &str, version: &str) -> Vec<u8> {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("go.mod"), format!("module {module}\n")).expect("write go.mod");
    std::fs::write(dir.join("m.go"), "package m\n").expect("write m.go");
    let mut zip = std::io::Cursor::new(Vec::new());
    intact_go::zip::create_from_dir(dir, module, version, &mut zip).expect("zip");
    zip.into_inner()
}

async fn text_of(s: &Server, path: &str) -> (StatusCode, String) {
    let resp = s.http.get(s.url(path)).send().await.expect("get");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

async fn stage(s: &Server, name: &str) -> (StatusCode, Value) {
    let resp = s
        .http
        .post(s.url("/api/v1/repos/builds/stage"))
        .json(&json!({"name": name, "artifacts": ["payload"]}))
        .send()
        .await
        .expect("stage");
    json_of(resp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_and_staging_answer_a_retryable_503_while_the_catalog_is_unreachable() {
    let db = TestDatabase::create().await;
    let relay = Relay::start("127.0.0.1:5432").await;
    let via_relay = db
        .url
        .replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port), 1);
    assert_ne!(via_relay, db.url, "the test database is on 127.0.0.1:5432");
    let root = tempfile::tempdir().expect("tempdir");
    let upstream = tempfile::tempdir().expect("upstream");
    for build in ["b/1", "b/2"] {
        let dir = upstream.path().join(build);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("p.bin"), format!("payload of {build}")).expect("write");
    }
    let data = root.path().join("data");
    let s = Server::start_opened(root, data, config(&via_relay, upstream.path())).await;

    let src = tempfile::tempdir().expect("module source");
    let zip = module_zip(src.path(), "example.com/m", "v1.0.0");
    let resp = s
        .http
        .post(s.url("/go/go-private/publish?module=example.com/m&version=v1.0.0"))
        .body(zip)
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status(), StatusCode::CREATED, "{:?}", resp.text().await);
    let (status, v) = stage(&s, "b/1").await;
    assert_eq!(status, StatusCode::OK, "{v}");

    let ready = s.http.get(s.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);

    relay.cut();
    // Not ready, saying why, as soon as the last good answer's second is over.
    tokio::time::sleep(intact_store::store::READINESS_TTL).await;
    let ready = s.http.get(s.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let why = ready.text().await.expect("body");
    assert!(why.contains("catalog"), "{why}");
    // Liveness is not readiness: the process is fine.
    let health = s.http.get(s.url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK, "/healthz during a catalog outage");
    // Metrics answer within a scraper's timeout, saying the catalog is down.
    let asked = tokio::time::Instant::now();
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the scrape took {:?}",
        asked.elapsed()
    );
    assert!(metrics.contains("intact_catalog_up 0"), "{metrics}");
    for path in [
        "/go/go-private/example.com/m/@v/list",
        "/go/go-private/example.com/m/@v/v1.0.1.info",
    ] {
        let (status, text) = text_of(&s, path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {text}");
        assert!(
            text.contains("catalog unavailable") && text.contains("try again"),
            "{path}: the answer says what is wrong and that a retry is the remedy: {text}"
        );
    }
    let (status, v) = stage(&s, "b/2").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(
        (&v["error"], &v["retryable"]),
        (&json!("unavailable"), &json!(true)),
        "{v}"
    );
    // A staging repo's version read through the artifact API (which stages on demand).
    let (status, v) = s.get_json("/api/v1/repos/builds/b/2/@v/payload").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(
        (&v["error"], &v["retryable"]),
        (&json!("unavailable"), &json!(true)),
        "{v}"
    );

    // Back by itself once the catalog is: nothing about the outage was remembered.
    relay.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while s.http.get(s.url("/readyz")).send().await.expect("readyz").status() != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready again after the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, v) = stage(&s, "b/2").await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "only 503 while reconnecting: {v}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "staging did not come back within 60 s of the catalog: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, text) = text_of(&s, "/go/go-private/example.com/m/@v/list").await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "v1.0.0\n"));
    s.stop().await;
}
