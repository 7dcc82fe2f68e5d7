//! The route a request is logged and counted under: the path template of the endpoint it
//! asked for (`/api/v1/transactions/{id}/files/{*path}`), never the path itself, so the
//! metrics' label set stays small whatever clients send. Judged from the path alone, before
//! routing, by the outermost layer (which sees every request, refused ones included); Go
//! protocol paths are told apart by what they ask for (`.info`, `.zip`, `@v/list`...).

/// Every template [`of`] answers with, but `unmatched`.
pub const TEMPLATES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/repos",
    "/api/v1/repos/{repo}",
    "/api/v1/repos/{repo}/transactions",
    "/api/v1/repos/{repo}/publish",
    "/api/v1/repos/{repo}/names",
    "/api/v1/repos/{repo}/stage",
    "/api/v1/repos/{repo}/stage/status",
    "/api/v1/repos/{repo}/{*rest}",
    "/api/v1/transactions",
    "/api/v1/transactions/{id}",
    "/api/v1/transactions/{id}/commit",
    "/api/v1/transactions/{id}/renew",
    "/api/v1/transactions/{id}/files/{*path}",
    "/api/v1/transactions/{id}/import",
    "/api/v1/transactions/{id}/uploads",
    "/api/v1/transactions/{id}/uploads/{upload}",
    "/api/v1/events",
    "/api/v1/blobs/missing",
    "/api/v1/admin/gc",
    "/api/v1/admin/verify",
    "/api/v1/tokens",
    "/api/v1/tokens/{name}",
    "/api/v1/jobs/{id}",
    "/api/v1/hooks",
    "/api/v1/hooks/{name}",
    "/api/v1/openapi.json",
    "/go/{repo}/publish",
    "/go/{repo}/{module}/@v/list",
    "/go/{repo}/{module}/@latest",
    "/go/{repo}/{module}/@v/{version}.info",
    "/go/{repo}/{module}/@v/{version}.mod",
    "/go/{repo}/{module}/@v/{version}.zip",
    "/go/{repo}/sumdb/{*rest}",
    "/go/{repo}/{*rest}",
    "/ui/{*page}",
];

/// The template of the endpoint `path` asks for; `unmatched` for a path no endpoint serves.
pub fn of(path: &str) -> &'static str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let mut parts = rest.splitn(4, '/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("healthz"), None, ..) => "/healthz",
        (Some("readyz"), None, ..) => "/readyz",
        (Some("metrics"), None, ..) => "/metrics",
        // The web UI's pages and assets share one label: `/` and everything under `/ui/`.
        (Some(""), None, ..) | (Some("ui"), ..) => "/ui/{*page}",
        (Some("api"), Some("v1"), Some(section), tail) => api(section, tail),
        (Some("go"), Some(repo), Some(tail), more) if !repo.is_empty() => go(tail, more),
        _ => "unmatched",
    }
}

/// `/api/v1/{section}/{tail}`.
fn api(section: &str, tail: Option<&str>) -> &'static str {
    let mut segs = tail.map(|t| t.split('/'));
    let mut next = || segs.as_mut().and_then(Iterator::next);
    let (first, second, third) = (next(), next(), next());
    match (section, first, second, third) {
        ("repos", None, ..) => "/api/v1/repos",
        ("repos", Some(_), None, _) => "/api/v1/repos/{repo}",
        ("repos", Some(_), Some("transactions"), None) => "/api/v1/repos/{repo}/transactions",
        ("repos", Some(_), Some("publish"), None) => "/api/v1/repos/{repo}/publish",
        ("repos", Some(_), Some("names"), None) => "/api/v1/repos/{repo}/names",
        ("repos", Some(_), Some("stage"), None) => "/api/v1/repos/{repo}/stage",
        ("repos", Some(_), Some("stage"), Some("status")) => "/api/v1/repos/{repo}/stage/status",
        ("repos", Some(_), Some(_), _) => "/api/v1/repos/{repo}/{*rest}",
        ("transactions", None, ..) => "/api/v1/transactions",
        ("transactions", Some(_), None, _) => "/api/v1/transactions/{id}",
        ("transactions", Some(_), Some("commit"), None) => "/api/v1/transactions/{id}/commit",
        ("transactions", Some(_), Some("renew"), None) => "/api/v1/transactions/{id}/renew",
        ("transactions", Some(_), Some("files"), Some(_)) => "/api/v1/transactions/{id}/files/{*path}",
        ("transactions", Some(_), Some("import"), None) => "/api/v1/transactions/{id}/import",
        ("transactions", Some(_), Some("uploads"), None) => "/api/v1/transactions/{id}/uploads",
        ("transactions", Some(_), Some("uploads"), Some(_)) if tail.is_some_and(|t| t.split('/').count() == 3) => {
            "/api/v1/transactions/{id}/uploads/{upload}"
        }
        ("events", None, ..) => "/api/v1/events",
        ("blobs", Some("missing"), None, _) => "/api/v1/blobs/missing",
        ("admin", Some("gc"), None, _) => "/api/v1/admin/gc",
        ("admin", Some("verify"), None, _) => "/api/v1/admin/verify",
        ("tokens", None, ..) => "/api/v1/tokens",
        ("tokens", Some(_), None, _) => "/api/v1/tokens/{name}",
        ("jobs", Some(_), None, _) => "/api/v1/jobs/{id}",
        ("hooks", None, ..) => "/api/v1/hooks",
        ("hooks", Some(_), None, _) => "/api/v1/hooks/{name}",
        ("openapi.json", None, ..) => "/api/v1/openapi.json",
        _ => "unmatched",
    }
}

/// `/go/{repo}/{tail}{/more}`.
fn go(tail: &str, more: Option<&str>) -> &'static str {
    if tail == "publish" && more.is_none() {
        return "/go/{repo}/publish";
    }
    // No module path starts with `sumdb` (a first element needs a dot).
    if tail == "sumdb" {
        return "/go/{repo}/sumdb/{*rest}";
    }
    // What follows the module path: `more` holds it whole for a one-element module such as
    // `example.com` (`@v/list`), else after a slash (`a/@v/list`).
    let Some(rest) = more else {
        return "/go/{repo}/{*rest}";
    };
    let asks = |what: &str| rest == what || rest.strip_suffix(what).is_some_and(|m| m.ends_with('/'));
    let version_file = |ext: &str| {
        let at_v = rest.starts_with("@v/") || rest.contains("/@v/");
        at_v && rest.ends_with(ext)
    };
    if asks("@v/list") {
        "/go/{repo}/{module}/@v/list"
    } else if asks("@latest") {
        "/go/{repo}/{module}/@latest"
    } else if version_file(".info") {
        "/go/{repo}/{module}/@v/{version}.info"
    } else if version_file(".mod") {
        "/go/{repo}/{module}/@v/{version}.mod"
    } else if version_file(".zip") {
        "/go/{repo}/{module}/@v/{version}.zip"
    } else {
        "/go/{repo}/{*rest}"
    }
}

#[cfg(test)]
mod tests {
    use super::of;

    #[test]
    fn every_endpoint_has_its_template() {
        for (path, want) in [
            ("/healthz", "/healthz"),
            ("/readyz", "/readyz"),
            ("/metrics", "/metrics"),
            ("/api/v1/repos", "/api/v1/repos"),
            ("/api/v1/repos/main", "/api/v1/repos/{repo}"),
            ("/api/v1/repos/main/transactions", "/api/v1/repos/{repo}/transactions"),
            ("/api/v1/repos/main/publish", "/api/v1/repos/{repo}/publish"),
            ("/api/v1/repos/main/names", "/api/v1/repos/{repo}/names"),
            ("/api/v1/repos/main/stage", "/api/v1/repos/{repo}/stage"),
            ("/api/v1/repos/main/stage/status", "/api/v1/repos/{repo}/stage/status"),
            ("/api/v1/repos/main/app/1.0/bin/a.tar", "/api/v1/repos/{repo}/{*rest}"),
            ("/api/v1/transactions/t1", "/api/v1/transactions/{id}"),
            ("/api/v1/transactions/t1/commit", "/api/v1/transactions/{id}/commit"),
            ("/api/v1/transactions/t1/import", "/api/v1/transactions/{id}/import"),
            ("/api/v1/transactions/t1/renew", "/api/v1/transactions/{id}/renew"),
            ("/api/v1/transactions/t1/uploads", "/api/v1/transactions/{id}/uploads"),
            (
                "/api/v1/transactions/t1/uploads/u1",
                "/api/v1/transactions/{id}/uploads/{upload}",
            ),
            ("/api/v1/transactions/t1/uploads/u1/x", "unmatched"),
            (
                "/api/v1/transactions/t1/files/a/b.txt",
                "/api/v1/transactions/{id}/files/{*path}",
            ),
            ("/api/v1/events", "/api/v1/events"),
            ("/api/v1/transactions", "/api/v1/transactions"),
            ("/api/v1/admin/gc", "/api/v1/admin/gc"),
            ("/api/v1/admin/verify", "/api/v1/admin/verify"),
            ("/api/v1/tokens", "/api/v1/tokens"),
            ("/api/v1/tokens/ci", "/api/v1/tokens/{name}"),
            ("/api/v1/jobs/j1", "/api/v1/jobs/{id}"),
            ("/api/v1/hooks", "/api/v1/hooks"),
            ("/api/v1/hooks/ci", "/api/v1/hooks/{name}"),
            ("/go/mods/publish", "/go/{repo}/publish"),
            ("/go/mods/sumdb/sum.golang.org/tile/8/0/000", "/go/{repo}/sumdb/{*rest}"),
            ("/go/mods/sumdb/sum.golang.org/latest", "/go/{repo}/sumdb/{*rest}"),
            ("/go/mods/example.com/a/@v/list", "/go/{repo}/{module}/@v/list"),
            ("/go/mods/example.com/a/@latest", "/go/{repo}/{module}/@latest"),
            (
                "/go/mods/example.com/a/@v/v1.0.0.info",
                "/go/{repo}/{module}/@v/{version}.info",
            ),
            (
                "/go/mods/example.com/a/@v/v1.0.0.mod",
                "/go/{repo}/{module}/@v/{version}.mod",
            ),
            (
                "/go/mods/example.com/a/@v/v1.0.0.zip",
                "/go/{repo}/{module}/@v/{version}.zip",
            ),
            ("/go/mods/example.com/a", "/go/{repo}/{*rest}"),
            ("/go/mods/example.com/@v/list", "/go/{repo}/{module}/@v/list"),
            (
                "/go/mods/example.com/@v/v1.0.0.zip",
                "/go/{repo}/{module}/@v/{version}.zip",
            ),
            ("/go/mods/example.com/@latest", "/go/{repo}/{module}/@latest"),
            ("/", "/ui/{*page}"),
            ("/ui/repos/files/a/b/@versions", "/ui/{*page}"),
            ("/favicon.ico", "unmatched"),
            ("/api/v2/repos", "unmatched"),
            ("/api/v1/transactions/t1/files", "unmatched"),
            ("/go//x", "unmatched"),
        ] {
            assert_eq!(of(path), want, "{path}");
            assert!(
                want == "unmatched" || super::TEMPLATES.contains(&want),
                "{want} is not listed"
            );
        }
    }
}
