//! One version: its files (with download links), sizes, digests and metadata, when and by
//! which transaction (and token) it was committed, its tags, and for a Go module the go.sum
//! lines to copy.

use axum::http::StatusCode;
use axum::response::Response;
use intact_core::{Manifest, Name, Version};

use super::html::{esc, link, path, seg, size, table, time};
use super::names::{repo_url, versions_url};
use super::page::{self, Page};
use crate::config::{RepoConfig, RepoFormat};
use crate::go::layout::{MOD_FILE, ZIP_FILE};
use crate::http::Caller;
use crate::state::AppState;

/// Files listed on one page at most: a version may hold very many (a render's frames), and a
/// page is for people; the JSON manifest has them all.
const MAX_FILES_SHOWN: usize = 2000;

/// The API URL a file is downloaded from (through the repo the page was asked for).
fn download_url(repo: &str, m: &Manifest, file: &str) -> String {
    format!(
        "/api/v1/repos/{}/{}/@v/{}/{}",
        seg(repo),
        path(m.name.as_str()),
        seg(m.version.as_str()),
        path(file)
    )
}

pub(super) async fn page(
    state: &AppState,
    caller: &Caller,
    repo: &RepoConfig,
    name: &Name,
    version: &Version,
) -> Response {
    let m = match crate::api::reads::resolve_manifest(state, repo, name, version).await {
        Ok(m) => m,
        Err(e) => return page::api_error(caller, &e),
    };
    let committed_by = match &m.transaction {
        Some(id) => state.store.catalog().txn_owner(id).await.ok().flatten(),
        None => None,
    };
    let tags: Vec<String> = match super::versions::tags_of(state, repo, name).await {
        Ok(tags) => tags
            .into_iter()
            .filter(|t| &t.version == version)
            .map(|t| format!("<span class=\"tag\">{}</span>", esc(t.tag.as_str())))
            .collect(),
        Err(e) => return page::error(caller, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let repo_name = repo.name.as_str();
    let mut body = String::from("<dl class=\"facts\">");
    let mut fact = |term: &str, value: String| {
        body.push_str(&format!("<dt>{}</dt><dd>{value}</dd>", esc(term)));
    };
    fact("Repository", link(&repo_url(repo_name), repo_name));
    fact("Name", link(&versions_url(repo_name, name.as_str()), name.as_str()));
    fact("Version", format!("<code>{}</code>", esc(version.as_str())));
    fact("Committed", time(m.created_at));
    fact(
        "Committed by",
        esc(committed_by.as_deref().unwrap_or("anonymous (or intact itself)")),
    );
    fact(
        "Transaction",
        m.transaction
            .as_ref()
            .map_or_else(|| "unknown".into(), |t| format!("<code>{}</code>", esc(t.as_str()))),
    );
    fact("Event", format!("#{}", m.seq));
    fact(
        "Content",
        format!("{} files, {}", m.files.len(), esc(&size(m.total_size()))),
    );
    if !tags.is_empty() {
        fact("Tags", tags.join(" "));
    }
    body.push_str("</dl>");
    if repo.format == RepoFormat::Go && !name.is_internal() {
        body.push_str(&go_sum(state, &m).await);
    }
    let rows: Vec<Vec<String>> = m
        .files
        .iter()
        .take(MAX_FILES_SHOWN)
        .map(|f| {
            vec![
                link(&download_url(repo_name, &m, f.path.as_str()), f.path.as_str()),
                format!("<span title=\"{} bytes\">{}</span>", f.size, esc(&size(f.size))),
                format!("<code class=\"digest\">{}</code>", f.sha256.to_hex()),
            ]
        })
        .collect();
    body.push_str(&table("Files", &["Path", "Size", "SHA-256"], &rows));
    if m.files.len() > MAX_FILES_SHOWN {
        body.push_str(&format!(
            "<p class=\"meta\">The first {MAX_FILES_SHOWN} of {} files, by path; the manifest as JSON (below) lists them all.</p>",
            m.files.len()
        ));
    }
    let metadata = serde_json::to_string_pretty(&m.metadata).unwrap_or_else(|_| "{}".into());
    body.push_str(&format!(
        "<h2>Metadata</h2><pre class=\"metadata\">{}</pre>\
         <p><a href=\"/api/v1/repos/{}/{}/@v/{}\">This manifest as JSON</a></p>",
        esc(&metadata),
        seg(repo_name),
        path(name.as_str()),
        seg(version.as_str()),
    ));
    Page::new(format!("{name} {version}"), body)
        .crumb("/", "Repositories")
        .crumb(repo_url(repo_name), repo_name)
        .crumb(versions_url(repo_name, name.as_str()), name.to_string())
        .crumb("", version.to_string())
        .render(caller)
}

/// The two go.sum lines of a module version: the `h1:` of its zip and of its go.mod, as the
/// version's metadata recorded them when it was published or fetched (and checked against the
/// checksum database); the go.mod's is computed from the stored file when not recorded.
async fn go_sum(state: &AppState, m: &Manifest) -> String {
    let module = m.metadata["module"].as_str().unwrap_or(m.name.as_str());
    let zip_h1 = m.metadata["h1"].as_str().map(str::to_owned);
    let mut mod_h1 = m.metadata["go_mod_h1"].as_str().map(str::to_owned);
    if mod_h1.is_none()
        && let Some(f) = m.file(MOD_FILE)
        && let Ok(bytes) = crate::go::layout::read_small(&state.store, f).await
    {
        mod_h1 = Some(intact_go::dirhash::hash_go_mod(&bytes));
    }
    let mut lines = Vec::new();
    if let (Some(h1), Some(_)) = (&zip_h1, m.file(ZIP_FILE)) {
        lines.push(format!("{module} {} {h1}", m.version));
    }
    if let Some(h1) = &mod_h1 {
        lines.push(format!("{module} {}/go.mod {h1}", m.version));
    }
    if lines.is_empty() {
        return "<p>No go.sum lines: this version records neither hash.</p>".into();
    }
    format!(
        "<h2 id=\"go-sum-heading\">go.sum</h2>\
         <pre class=\"go-sum\" aria-labelledby=\"go-sum-heading\" tabindex=\"0\">{}</pre>\
         <button type=\"button\" class=\"copy\" data-copy=\".go-sum\">Copy go.sum lines</button>\
         <p class=\"meta\">Fetch it with <code>GOPROXY=&lt;this server&gt;/go/{}</code>: \
         <code>go get {}@{}</code></p>",
        esc(&lines.join("\n")),
        esc(&seg(m.repo.as_str())),
        esc(module),
        esc(m.version.as_str()),
    )
}
