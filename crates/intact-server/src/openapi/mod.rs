//! The OpenAPI 3.1 document of the HTTP API, served at `/api/v1/openapi.json`. It is derived
//! from the code: the request and answer types are the ones the handlers (de)serialize, and
//! each endpoint's description sits in `paths`. A test checks that every endpoint the router
//! serves is in it, and the test suite runs a property-based client (schemathesis) against a
//! real server, checking that no request gets a 5xx and every answer matches the document.

mod paths;
pub mod schemas;

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "intact",
        description = "An artifact store and caching proxy in which every version lands whole or not at all. \
                       Every error answer is a JSON object with a stable `error` code and a `message`. \
                       The Go module proxy protocol (`/go/{repo}/...`) is described in docs/go-proxy.md.",
        license(name = "Apache-2.0"),
    ),
    paths(
        paths::healthz, paths::readyz, paths::metrics, paths::openapi,
        paths::list_repos, paths::repo_info, paths::names, paths::versions, paths::latest,
        paths::manifest, paths::file, paths::tagged_manifest, paths::tagged_file,
        paths::list_tags, paths::get_tag, paths::move_tag, paths::delete_tag, paths::tag_history,
        paths::create_transaction, paths::open_transactions, paths::get_transaction, paths::abort_transaction,
        paths::renew_transaction, paths::commit_transaction, paths::put_file, paths::delete_file,
        paths::import_files, paths::publish,
        paths::create_upload, paths::upload_status, paths::append_upload, paths::complete_upload,
        paths::discard_upload,
        paths::events, paths::blobs_missing,
        paths::gc, paths::gc_status, paths::verify,
        paths::list_tokens, paths::create_token, paths::revoke_token,
        paths::list_hooks, paths::create_hook, paths::show_hook, paths::delete_hook,
        paths::stage, paths::stage_status, paths::job,
    ),
    modifiers(&Authentication, &Links, &OptionalBodies),
    security((), ("token" = []), ("basic" = [])),
    tags(
        (name = "reads", description = "Repositories, names, versions, manifests and file bytes."),
        (name = "publishing", description = "Transactions and one-shot publishes: a version becomes visible whole, at its commit."),
        (name = "tags", description = "Movable pointers to versions, moved by compare-and-swap, with their history."),
        (name = "events", description = "The event log, in commit order."),
        (name = "admin", description = "Garbage collection, verification, tokens, webhooks (scope `*:admin` once access control is on; \
                                         until the first token exists, with `[auth] required` off, every call is open, as the document does not say). \
                                         Every admin `POST` needs `Content-Type: application/json`."),
        (name = "staging", description = "Build-artifact staging from a generic proxy repo's upstream."),
        (name = "operations", description = "Liveness, readiness, metrics and this document."),
    ),
)]
pub struct ApiDoc;

/// A token as `Authorization: Bearer TOKEN`, or as the password of HTTP basic auth (what the
/// go command sends from `.netrc`).
struct Authentication;

impl utoipa::Modify for Authentication {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
        // The document-wide default allows anonymous calls (reads may be open). Admin calls
        // always need a token, and the operations endpoints never look at one.
        let token_only = vec![
            SecurityRequirement::new("token", Vec::<String>::new()),
            SecurityRequirement::new("basic", Vec::<String>::new()),
        ];
        for item in doc.paths.paths.values_mut() {
            for op in operations_mut(item) {
                let tags = op.tags.as_deref().unwrap_or_default();
                if tags.iter().any(|t| t == "admin") {
                    op.security = Some(token_only.clone());
                } else if tags.iter().any(|t| t == "operations") {
                    op.security = Some(vec![SecurityRequirement::default()]);
                }
            }
        }
    }
}

fn operations_mut(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Request bodies that may be left out (an empty body means `{}`): utoipa marks every body
/// it is given as required.
struct OptionalBodies;

impl utoipa::Modify for OptionalBodies {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for path in ["/api/v1/admin/gc", "/api/v1/admin/verify"] {
            if let Some(body) = doc
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|op| op.request_body.as_mut())
            {
                body.required = Some(utoipa::openapi::Required::False);
            }
        }
    }
}

/// Where an answer names what later calls take: the id of a transaction just opened, the name
/// of a webhook just made. Tools that walk the API (schemathesis' stateful phase, client
/// generators) follow these.
struct Links;

impl Links {
    fn add(doc: &mut utoipa::openapi::OpenApi, path: &str, status: &str, field: &str, targets: &[(&str, &str)]) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::link::LinkBuilder;
        let Some(item) = doc.paths.paths.get_mut(path) else {
            return;
        };
        let Some(op) = item.post.as_mut() else {
            return;
        };
        let Some(RefOr::T(resp)) = op.responses.responses.get_mut(status) else {
            return;
        };
        for (name, operation_id) in targets {
            let link = LinkBuilder::new()
                .operation_id(*operation_id)
                .parameter(field, format!("$response.body#/{field}"))
                .build();
            resp.links.insert((*name).to_owned(), RefOr::T(link));
        }
    }
}

impl utoipa::Modify for Links {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let txn = [
            ("get", "get_transaction"),
            ("put_file", "put_file"),
            ("import", "import_files"),
            ("renew", "renew_transaction"),
            ("commit", "commit_transaction"),
            ("abort", "abort_transaction"),
        ];
        for status in ["201", "200"] {
            Self::add(doc, "/api/v1/repos/{repo}/transactions", status, "id", &txn);
        }
        let hook = [("show", "show_hook"), ("delete", "delete_hook")];
        Self::add(doc, "/api/v1/hooks", "201", "name", &hook);
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        spell_links(&mut doc);
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
}

/// utoipa 5.5 writes a link's fields in Rust's spelling (`operation_id`); OpenAPI's is
/// camelCase (`operationId`), and tools ignore the other.
fn spell_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|responses| responses.values_mut())
        .filter_map(|resp| resp.get_mut("links").and_then(|l| l.as_object_mut()))
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (rust, openapi) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(v) = link.remove(rust) {
                link.insert(openapi.to_owned(), v);
            }
        }
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> Response {
    let mut resp = document().into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    use super::document;
    use crate::config::Config;
    use crate::observe::route;

    /// The operations of the document: (method, path template).
    fn operations() -> Vec<(Method, String)> {
        let doc: serde_json::Value = serde_json::from_str(document()).expect("the document is JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let mut out = Vec::new();
        for (path, item) in paths {
            for method in item.as_object().expect("path item").keys() {
                if let Ok(m) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) {
                    out.push((m, path.clone()));
                }
            }
        }
        out
    }

    /// A path the template describes, with a value for each parameter (a version's name and
    /// a file's path with a `/`, as clients send them).
    fn concrete(template: &str) -> String {
        let name = if template.starts_with("/api/v1/repos/") {
            "app/cli"
        } else {
            "ci"
        };
        template
            .replace("{repo}", "files")
            .replace("{name}", name)
            .replace("{version}", "1.0")
            .replace("{path}", "bin/tool.txt")
            .replace("{id}", "tx_aaaaaaaaaaaaaaaaaaaaaaaaaa")
    }

    /// Admin operations say they need a token (no anonymous alternative), the operations
    /// endpoints that they need none, reads that either will do; the bodies that may be left
    /// out are not required.
    #[test]
    fn security_and_optional_bodies_are_per_operation() {
        let doc: serde_json::Value = serde_json::from_str(document()).expect("the document is JSON");
        let op = |path: &str, method: &str| doc["paths"][path][method].clone();
        let token_only = serde_json::json!([{"token": []}, {"basic": []}]);
        for (path, method) in [
            ("/api/v1/admin/gc", "post"),
            ("/api/v1/admin/verify", "post"),
            ("/api/v1/tokens", "get"),
            ("/api/v1/hooks/{name}", "delete"),
        ] {
            assert_eq!(op(path, method)["security"], token_only, "{method} {path}");
        }
        for path in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
            assert_eq!(op(path, "get")["security"], serde_json::json!([{}]), "{path}");
        }
        assert!(
            op("/api/v1/repos", "get").get("security").is_none(),
            "reads follow the default"
        );
        let anonymous_allowed = doc["security"].as_array().expect("default security");
        assert!(anonymous_allowed.contains(&serde_json::json!({})));
        for path in ["/api/v1/admin/gc", "/api/v1/admin/verify"] {
            assert_eq!(op(path, "post")["requestBody"]["required"], false, "{path}");
        }
        assert_eq!(op("/api/v1/hooks", "post")["requestBody"]["required"], true);
    }

    /// Every endpoint the server counts requests under (the metrics' route templates, apart
    /// from the Go protocol's, which docs/go-proxy.md describes) is described by the document.
    #[test]
    fn every_endpoint_is_documented() {
        let documented: BTreeSet<&str> = operations().iter().map(|(_, p)| route::of(&concrete(p))).collect();
        assert!(!documented.contains("unmatched"), "{documented:?}");
        let served: BTreeSet<&str> = route::TEMPLATES
            .iter()
            .copied()
            // The Go protocol and the web UI's HTML pages are not JSON API endpoints.
            .filter(|t| !t.starts_with("/go/") && !t.starts_with("/ui/"))
            .collect();
        assert_eq!(documented, served, "documented vs served endpoints");
    }

    /// The links name operations that exist.
    #[test]
    fn links_lead_to_documented_operations() {
        let doc: serde_json::Value = serde_json::from_str(document()).expect("the document is JSON");
        let ids: BTreeSet<&str> = doc["paths"]
            .as_object()
            .expect("paths")
            .values()
            .flat_map(|item| item.as_object().expect("item").values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let mut links = 0;
        for item in doc["paths"].as_object().expect("paths").values() {
            for op in item.as_object().expect("item").values() {
                for resp in op["responses"].as_object().into_iter().flat_map(|r| r.values()) {
                    for link in resp["links"].as_object().into_iter().flat_map(|l| l.values()) {
                        links += 1;
                        let target = link["operationId"].as_str().expect("operationId");
                        assert!(ids.contains(target), "link to unknown operation {target}");
                    }
                }
            }
        }
        assert_eq!(links, 14, "transaction (2 answers x 6) and webhook (2) links");
    }

    /// Every operation of the document reaches a handler: the router neither answers "no such
    /// endpoint" nor "method not allowed" for it.
    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::from_toml("[[repo]]\nname = \"files\"\nkind = \"hosted\"\n").expect("config");
        config.data_dir = dir.path().join("data");
        let state = crate::open(config).await.expect("open");
        let app = crate::api::router(state);
        for (method, template) in operations() {
            let req = Request::builder()
                .method(method.clone())
                .uri(concrete(&template))
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("request");
            let resp = app.clone().oneshot(req).await.expect("answer");
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
            let text = String::from_utf8_lossy(&body);
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {template}: {text}");
            assert!(
                !text.contains("no such endpoint"),
                "{method} {template} is documented but not routed: {text}"
            );
        }
    }
}
