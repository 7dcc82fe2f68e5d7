//! A name's versions, the newest commit first, paged by cursor (`before` = the last version
//! shown): one backwards walk of the listing index per page, however many versions the name
//! has. A group shows each member's versions; the version links read through the group.

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use intact_core::{Name, Version};
use intact_store::tokens::Access;
use serde::Deserialize;

use super::html::{esc, link, seg, size, table, time};
use super::names::{format_of, kind_of, repo_url, versions_url};
use super::page::{self, Page};
use crate::api::reads::{NameGrammar, ReadTarget, parse_target};
use crate::config::{RepoConfig, RepoKind};
use crate::http::Caller;
use crate::state::AppState;

/// Versions per page.
const PAGE: u32 = 50;

/// The URL of a version's page.
pub(super) fn version_url(repo: &str, name: &str, version: &str) -> String {
    format!(
        "/ui/repos/{}/{}/@v/{}",
        seg(repo),
        super::html::path(name),
        seg(version)
    )
}

#[derive(Deserialize)]
pub(super) struct VersionsQuery {
    before: Option<String>,
    /// A group's member whose versions to page through.
    member: Option<String>,
}

/// `/ui/repos/{repo}/{name...}/@versions` and `/ui/repos/{repo}/{name...}/@v/{version}`,
/// split as the API splits its read paths; `@latest` and `@t/{tag}` lead to the version they
/// name.
pub(super) async fn dispatch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<VersionsQuery>, QueryRejection>,
) -> Response {
    let Ok(Path((repo, rest))) = path else {
        return page::error(&caller, StatusCode::BAD_REQUEST, "the URL path is not valid UTF-8");
    };
    let Some(config) = state.repo(&repo).filter(|_| caller.may(&state, &repo, Access::Read)) else {
        return page::hidden(&caller, &repo);
    };
    let target = match parse_target(&rest, NameGrammar::of(config)) {
        Ok(t) => t,
        Err(e) => return page::api_error(&caller, &e),
    };
    match target {
        ReadTarget::Versions(name) => {
            let Ok(Query(q)) = query else {
                return page::error(
                    &caller,
                    StatusCode::BAD_REQUEST,
                    "the query string is not before=&member=",
                );
            };
            versions(&state, &caller, config, &name, q).await
        }
        ReadTarget::Manifest(name, version) => super::version::page(&state, &caller, config, &name, &version).await,
        ReadTarget::Latest(name) => {
            for member in state.members(config) {
                match state.store.latest_version(&member.name, &name).await {
                    Ok(Some(v)) => {
                        return Redirect::to(&version_url(&repo, name.as_str(), v.as_str())).into_response();
                    }
                    Ok(None) => {}
                    Err(e) => return page::error(&caller, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
                }
            }
            page::error(
                &caller,
                StatusCode::NOT_FOUND,
                &format!("no version of {name} in repo {repo}"),
            )
        }
        ReadTarget::TaggedManifest(name, tag) => match crate::api::tags::find(&state, config, &name, &tag).await {
            Ok((_, record)) => {
                Redirect::to(&version_url(&repo, name.as_str(), record.version.as_str())).into_response()
            }
            Err(e) => page::api_error(&caller, &e),
        },
        _ => page::error(
            &caller,
            StatusCode::NOT_FOUND,
            "no such page: a name's pages are {name}/@versions and {name}/@v/{version}",
        ),
    }
}

async fn versions(state: &AppState, caller: &Caller, repo: &RepoConfig, name: &Name, q: VersionsQuery) -> Response {
    let before = match q.before.as_deref().map(Version::parse).transpose() {
        Ok(b) => b,
        Err(e) => return page::error(caller, StatusCode::BAD_REQUEST, &format!("before: {e}")),
    };
    let members = state.members(repo);
    // One member's pages at a time: a group names the member it pages through.
    let shown: Vec<&RepoConfig> = match &q.member {
        Some(m) => match members.iter().find(|r| r.name.as_str() == m.as_str()) {
            Some(r) => vec![*r],
            None => {
                return page::error(
                    caller,
                    StatusCode::BAD_REQUEST,
                    &format!("{m} is not a member of {}", repo.name),
                );
            }
        },
        None => members.clone(),
    };
    let is_group = repo.kind == RepoKind::Group;
    let mut body = format!(
        "<p class=\"meta\">{} · {} repository · <a href=\"/api/v1/repos/{}/{}/@versions\">as JSON</a></p>",
        esc(kind_of(repo)),
        esc(format_of(repo)),
        seg(repo.name.as_str()),
        super::html::path(name.as_str()),
    );
    match tags_table(state, repo, name).await {
        Ok(t) => body.push_str(&t),
        Err(e) => return page::error(caller, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
    // Read before the versions are listed: the script follows the event log from here, so a
    // commit that lands meanwhile is shown (once: rows carry their version).
    let events_end = match state.store.catalog().last_event_seq().await {
        Ok(seq) => seq,
        Err(e) => return page::error(caller, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let mut any = false;
    for member in shown {
        let listed = match state
            .store
            .list_versions_newest_first(&member.name, name, before.as_ref(), PAGE + 1)
            .await
        {
            Ok(p) => p,
            Err(intact_store::Error::BadRequest { message, .. }) => {
                return page::error(caller, StatusCode::BAD_REQUEST, &format!("before: {message}"));
            }
            Err(e) => return page::error(caller, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        };
        if listed.is_empty() && is_group {
            continue;
        }
        any |= !listed.is_empty();
        let more = listed.len() > PAGE as usize;
        let rows: Vec<Vec<String>> = listed
            .iter()
            .take(PAGE as usize)
            .map(|v| {
                vec![
                    link(
                        &version_url(repo.name.as_str(), name.as_str(), v.version.as_str()),
                        v.version.as_str(),
                    ),
                    time(v.created_at),
                    v.files.to_string(),
                    esc(&size(v.size)),
                ]
            })
            .collect();
        let caption = match is_group {
            true => format!("Versions in member {}, newest first", member.name),
            false => "Versions, newest first".to_owned(),
        };
        let mut listing = table(&caption, &["Version", "Committed", "Files", "Size"], &rows);
        if before.is_none() && !is_group {
            // The first page of one repo's versions is live: the script adds new commits.
            listing = listing.replacen(
                "<tbody>",
                &format!(
                    "<tbody id=\"versions\" data-repo=\"{}\" data-name=\"{}\" data-live=\"true\" data-after=\"{events_end}\">",
                    esc(repo.name.as_str()),
                    esc(name.as_str()),
                ),
                1,
            );
        }
        body.push_str(&listing);
        let mut pager = Vec::new();
        if before.is_some() {
            pager.push(link(&versions_url(repo.name.as_str(), name.as_str()), "← Newest"));
        }
        if let (true, Some(last)) = (more, listed.get(PAGE as usize - 1)) {
            let member_query = match is_group {
                true => format!("&member={}", seg(member.name.as_str())),
                false => String::new(),
            };
            pager.push(format!(
                "<a rel=\"next\" href=\"{}?before={}{}\">Older versions →</a>",
                esc(&versions_url(repo.name.as_str(), name.as_str())),
                seg(last.version.as_str()),
                esc(&member_query),
            ));
        }
        if !pager.is_empty() {
            body.push_str(&format!(
                "<nav aria-label=\"Pages\" class=\"pager\">{}</nav>",
                pager.join(" ")
            ));
        }
    }
    if !any && is_group {
        body.push_str("<p>No member of this group holds a version of this name.</p>");
    }
    Page::new(name.to_string(), body)
        .crumb("/", "Repositories")
        .crumb(repo_url(repo.name.as_str()), repo.name.to_string())
        .crumb("", name.to_string())
        .render(caller)
}

/// The name's tags (in a group, the first member's tag of each name wins, as reads resolve).
async fn tags_table(state: &AppState, repo: &RepoConfig, name: &Name) -> intact_store::Result<String> {
    let tags = tags_of(state, repo, name).await?;
    if tags.is_empty() {
        return Ok(String::new());
    }
    let rows: Vec<Vec<String>> = tags
        .iter()
        .map(|t| {
            vec![
                esc(t.tag.as_str()),
                link(
                    &version_url(repo.name.as_str(), name.as_str(), t.version.as_str()),
                    t.version.as_str(),
                ),
                time(t.moved_at),
                esc(t.moved_by.as_deref().unwrap_or("anonymous")),
            ]
        })
        .collect();
    Ok(table("Tags", &["Tag", "Points at", "Moved", "By"], &rows))
}

/// Every tag of `name` in `repo` (a group's members in order, the first of each tag kept).
pub(super) async fn tags_of(
    state: &AppState,
    repo: &RepoConfig,
    name: &Name,
) -> intact_store::Result<Vec<intact_store::TagRecord>> {
    let mut tags: Vec<intact_store::TagRecord> = Vec::new();
    for member in state.members(repo) {
        for record in state.store.catalog().tags(&member.name, name).await? {
            if !tags.iter().any(|t| t.tag == record.tag) {
                tags.push(record);
            }
        }
    }
    tags.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(tags)
}
