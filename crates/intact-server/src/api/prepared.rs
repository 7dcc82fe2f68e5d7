//! Warm small files of hosted repos, answered before routing from answers prepared once.
//!
//! A plain `GET` of a whole small file (no query, no `Range`, no conditional header) has an
//! answer that never changes while its version exists: the same headers, the same verified
//! bytes, whoever asks. The first such read prepares it (its headers built, its bytes read
//! and checked against their sha256); later reads of the same path get a copy of that
//! answer from the front door, after authentication, without the router, the path's
//! parsing, the manifest lookup or the headers' formatting.
//!
//! Only hosted repos: a group answers from whichever member has the version first, which
//! can change, and a proxy's copies are touched on every read for their eviction order.
//! An answer is kept with the store's count of version deletions at the time its version
//! was looked up, and served only while that count is unchanged: a version deleted here is
//! never answered from here again, nor one deleted on another replica once that deletion
//! reaches this process through the event log (the manifest cache's delay, no longer).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use bytes::Bytes;

/// Counted per answer on top of its path and body: its headers (about ten, some with values
/// of their own), the entry and the cache's node.
const ANSWER_OVERHEAD: u64 = 2048;

/// One prepared answer.
pub struct Prepared {
    headers: HeaderMap,
    body: Bytes,
    /// The store's deletion count when the version was looked up.
    deletions: u64,
    /// Whether its repo is open to anonymous reads (else, with access control on, the
    /// answer is `private` to caches).
    anonymous_read: bool,
}

#[derive(Clone)]
struct ByWeight;

impl quick_cache::Weighter<Box<str>, Arc<Prepared>> for ByWeight {
    fn weight(&self, path: &Box<str>, answer: &Arc<Prepared>) -> u64 {
        path.len() as u64 + answer.body.len() as u64 + ANSWER_OVERHEAD
    }
}

/// The hit and miss counters of `intact_cache_lookups_total{cache="prepared_answer"}`, looked
/// up once (the recorder is installed before the first request).
fn lookups() -> &'static (metrics::Counter, metrics::Counter) {
    static COUNTERS: std::sync::OnceLock<(metrics::Counter, metrics::Counter)> = std::sync::OnceLock::new();
    COUNTERS.get_or_init(|| {
        let name = intact_store::telemetry::CACHE_LOOKUPS;
        (
            metrics::counter!(name, "cache" => "prepared_answer", "result" => "hit"),
            metrics::counter!(name, "cache" => "prepared_answer", "result" => "miss"),
        )
    })
}

/// Prepared answers by the path they were asked by, bounded by bytes.
pub struct PreparedFiles {
    cache: Option<quick_cache::sync::Cache<Box<str>, Arc<Prepared>, ByWeight>>,
}

impl PreparedFiles {
    /// Keeps up to `capacity` bytes of answers; 0 keeps none.
    pub fn new(capacity: u64) -> Self {
        let cache = (capacity > 0).then(|| {
            // An estimate of the entry count for the cache's sizing, not a limit.
            let items = usize::try_from(capacity / (4096 + ANSWER_OVERHEAD))
                .unwrap_or(usize::MAX)
                .max(16);
            quick_cache::sync::Cache::with_weighter(items, capacity, ByWeight)
        });
        Self { cache }
    }

    /// Whether `req` is a plain read of a whole file that a prepared answer may serve.
    pub fn may_answer(req: &Request) -> bool {
        let h = req.headers();
        req.method() == Method::GET
            && req.uri().query().is_none()
            && !h.contains_key(header::RANGE)
            && !h.contains_key(header::IF_NONE_MATCH)
            && !h.contains_key(header::IF_RANGE)
    }

    /// The prepared answer to `req`, if there is one and its version may still exist.
    pub fn answer(&self, req: &Request, deletions_now: u64) -> Option<Response> {
        let cache = self.cache.as_ref()?;
        let path = req.uri().path();
        if !path.starts_with("/api/v1/repos/") || !Self::may_answer(req) {
            return None;
        }
        let Some(prepared) = cache.get(path).filter(|p| p.deletions == deletions_now) else {
            // Not prepared yet, a version deleted since, or not a file at all (a manifest,
            // a listing): the router answers.
            lookups().1.increment(1);
            return None;
        };
        lookups().0.increment(1);
        let mut resp = Response::new(Body::from(prepared.body.clone()));
        *resp.headers_mut() = prepared.headers.clone();
        let enforced = req
            .extensions()
            .get::<crate::http::Caller>()
            .is_some_and(|c| c.enforced);
        if enforced && !prepared.anonymous_read {
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, crate::http::serve_file::immutable(true));
        }
        Some(resp)
    }

    /// Keeps the answer for `path` (its full path, as the front door sees it), made from a
    /// version looked up when the store's deletion count was `deletions`.
    pub fn keep(&self, path: &str, headers: HeaderMap, body: Bytes, deletions: u64, anonymous_read: bool) {
        if let Some(cache) = &self.cache {
            cache.insert(
                path.into(),
                Arc::new(Prepared {
                    headers,
                    body,
                    deletions,
                    anonymous_read,
                }),
            );
        }
    }

    /// Bytes of answers held now.
    pub fn weight(&self) -> u64 {
        self.cache.as_ref().map_or(0, quick_cache::sync::Cache::weight)
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use axum::response::Response;
    use intact_core::{Name, RepoName, Version};
    use tower::ServiceExt;

    use crate::config::Config;
    use crate::state::AppState;

    const CONFIG: &str = r#"
[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "all"
kind = "group"
members = ["files"]
"#;

    async fn send(app: &axum::Router, method: &str, uri: &str, headers: &[(&str, &str)], body: Body) -> Response {
        let mut req = Request::builder().method(method).uri(uri).header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        app.clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("answer")
    }

    async fn body_of(resp: Response) -> Vec<u8> {
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body")
            .to_vec()
    }

    /// A server with `tool@1.0` holding `a.txt` in the hosted repo `files`.
    async fn serving() -> (tempfile::TempDir, AppState, axum::Router) {
        let (dir, state, app) = server(CONFIG).await;
        publish(&app, "files", &[]).await;
        (dir, state, app)
    }

    async fn server(config: &str) -> (tempfile::TempDir, AppState, axum::Router) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::from_toml(config).expect("config");
        config.data_dir = dir.path().join("data");
        let state = crate::open(config).await.expect("open");
        let app = crate::api::router(state.clone());
        (dir, state, app)
    }

    /// Publishes `tool@1.0` with `a.txt` in `repo`.
    async fn publish(app: &axum::Router, repo: &str, auth: &[(&str, &str)]) {
        let mut json = vec![("content-type", "application/json")];
        json.extend_from_slice(auth);
        let resp = send(
            app,
            "POST",
            &format!("/api/v1/repos/{repo}/transactions"),
            &json,
            Body::from(r#"{"name":"tool","version":"1.0"}"#),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let txn: serde_json::Value = serde_json::from_slice(&body_of(resp).await).expect("json");
        let id = txn["id"].as_str().expect("id").to_owned();
        let resp = send(
            app,
            "PUT",
            &format!("/api/v1/transactions/{id}/files/a.txt"),
            auth,
            Body::from("hello, prepared\n"),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let resp = send(
            app,
            "POST",
            &format!("/api/v1/transactions/{id}/commit"),
            &json,
            Body::empty(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }

    /// With access control on: a prepared answer is still only given to callers who may read
    /// (authentication runs first), and is `private` to caches where reading needed a token,
    /// `public` where the repo is open to anonymous reads.
    #[tokio::test]
    async fn prepared_answers_keep_access_control_and_private_caching() {
        let (_dir, state, app) = server(
            r#"
[auth]
required = true

[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "open"
kind = "hosted"
anonymous_read = true
"#,
        )
        .await;
        let scope = "*:admin".parse().expect("scope");
        let (_, secret) = intact_store::tokens::create(state.store.catalog().as_ref(), "t", vec![scope], None)
            .await
            .expect("token");
        let bearer = format!("Bearer {secret}");
        let auth = [("authorization", bearer.as_str())];
        publish(&app, "files", &auth).await;
        publish(&app, "open", &auth).await;
        for _ in 0..2 {
            let resp = send(&app, "GET", FILE, &auth, Body::empty()).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(
                resp.headers()[header::CACHE_CONTROL],
                "private, max-age=31536000, immutable"
            );
            let resp = send(&app, "GET", FILE, &[], Body::empty()).await;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "no token, no bytes");
            let resp = send(&app, "GET", "/api/v1/repos/open/tool/@v/1.0/a.txt", &[], Body::empty()).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(
                resp.headers()[header::CACHE_CONTROL],
                "public, max-age=31536000, immutable"
            );
        }
        assert!(state.prepared.weight() > 0, "the answers were prepared");
    }

    const FILE: &str = "/api/v1/repos/files/tool/@v/1.0/a.txt";

    #[tokio::test]
    async fn a_repeated_read_gets_the_same_answer_from_the_prepared_one() {
        let (_dir, state, app) = serving().await;
        assert_eq!(state.prepared.weight(), 0);
        let first = send(&app, "GET", FILE, &[], Body::empty()).await;
        assert_eq!(first.status(), StatusCode::OK);
        assert!(state.prepared.weight() > 0, "the first read prepares its answer");
        let second = send(&app, "GET", FILE, &[], Body::empty()).await;
        assert_eq!(second.status(), StatusCode::OK);
        let without_id = |r: &Response| {
            let mut h = r.headers().clone();
            h.remove("x-request-id");
            h
        };
        assert_eq!(without_id(&first), without_id(&second));
        assert_eq!(first.headers()[header::CONTENT_LENGTH], "16");
        assert_eq!(body_of(first).await, body_of(second).await);

        // What a prepared answer cannot say is still answered by the full path.
        let etag = send(&app, "GET", FILE, &[], Body::empty()).await.headers()[header::ETAG].clone();
        let etag = etag.to_str().expect("ascii");
        let resp = send(&app, "GET", FILE, &[("if-none-match", etag)], Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        let resp = send(&app, "GET", FILE, &[("range", "bytes=0-4")], Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body_of(resp).await, b"hello");
        let resp = send(&app, "HEAD", FILE, &[], Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(body_of(resp).await.is_empty());
        let resp = send(&app, "GET", &format!("{FILE}?x=1"), &[], Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body_of(resp).await, b"hello, prepared\n");
    }

    #[tokio::test]
    async fn a_deleted_version_is_never_answered_from_a_prepared_answer() {
        let (_dir, state, app) = serving().await;
        assert_eq!(
            send(&app, "GET", FILE, &[], Body::empty()).await.status(),
            StatusCode::OK
        );
        state
            .store
            .delete_version(
                &RepoName::parse("files").expect("repo"),
                &Name::parse("tool").expect("name"),
                &Version::parse("1.0").expect("version"),
                "test",
            )
            .await
            .expect("delete");
        let resp = send(&app, "GET", FILE, &[], Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }

    /// A group answers from whichever member has the version first, which can change: its
    /// reads are never prepared.
    #[tokio::test]
    async fn reads_through_a_group_are_not_prepared() {
        let (_dir, state, app) = serving().await;
        let resp = send(&app, "GET", "/api/v1/repos/all/tool/@v/1.0/a.txt", &[], Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(state.prepared.weight(), 0);
    }
}
