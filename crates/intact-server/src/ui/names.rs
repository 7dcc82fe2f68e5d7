//! The home page (the repositories the caller may read) and a repository's names, searched
//! by prefix and paged by cursor (the catalog's names index, walked from the prefix).

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use intact_core::Name;
use intact_store::tokens::Access;
use serde::Deserialize;

use super::html::{esc, link, path, seg, table};
use super::page::{self, Page};
use crate::config::{RepoConfig, RepoFormat, RepoKind};
use crate::http::Caller;
use crate::state::AppState;

/// Names per page.
const PAGE: u32 = 100;

pub(super) fn kind_of(repo: &RepoConfig) -> &'static str {
    match repo.kind {
        RepoKind::Hosted => "hosted",
        RepoKind::Proxy => "proxy",
        RepoKind::Group => "group",
    }
}

pub(super) fn format_of(repo: &RepoConfig) -> &'static str {
    match repo.format {
        RepoFormat::Generic => "generic",
        RepoFormat::Go => "Go modules",
    }
}

/// The URL of a repo's page.
pub(super) fn repo_url(repo: &str) -> String {
    format!("/ui/repos/{}", seg(repo))
}

/// The URL of a name's versions page.
pub(super) fn versions_url(repo: &str, name: &str) -> String {
    format!("/ui/repos/{}/{}/@versions", seg(repo), path(name))
}

/// `/`: every repository the caller may read.
pub(super) async fn home(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    let rows: Vec<Vec<String>> = state
        .config
        .repos
        .iter()
        .filter(|r| caller.may(&state, r.name.as_str(), Access::Read))
        .map(|r| {
            let view = r.public_view();
            let detail = match r.kind {
                RepoKind::Group => format!(
                    "members: {}",
                    esc(&r.members.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
                ),
                _ => view["upstream"]
                    .as_str()
                    .map(|u| format!("upstream: {}", esc(u)))
                    .unwrap_or_default(),
            };
            vec![
                link(&repo_url(r.name.as_str()), r.name.as_str()),
                esc(kind_of(r)),
                esc(format_of(r)),
                if r.anonymous_read {
                    "anyone".into()
                } else {
                    "token".into()
                },
                detail,
            ]
        })
        .collect();
    let body = if rows.is_empty() {
        "<p>No repository here is open to you. <a href=\"/ui/sign-in\">Sign in</a> with a token to see more.</p>"
            .to_owned()
    } else {
        table(
            "Repositories you may read",
            &["Repository", "Kind", "Format", "Read by", "Details"],
            &rows,
        )
    };
    Page::new("Repositories", body).render(&caller)
}

#[derive(Deserialize)]
pub(super) struct NamesQuery {
    prefix: Option<String>,
    after: Option<String>,
}

/// `/ui/repos/{repo}?prefix=&after=`: the names with committed versions, by prefix.
pub(super) async fn names(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(repo): Path<String>,
    query: Result<Query<NamesQuery>, QueryRejection>,
) -> Response {
    let Some(config) = state.repo(&repo).filter(|_| caller.may(&state, &repo, Access::Read)) else {
        return page::hidden(&caller, &repo);
    };
    let Ok(Query(q)) = query else {
        return page::error(
            &caller,
            StatusCode::BAD_REQUEST,
            "the query string is not prefix=&after=",
        );
    };
    let prefix = q.prefix.unwrap_or_default();
    if prefix.len() > 1024 || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "._-/~".contains(c)) {
        return page::error(
            &caller,
            StatusCode::BAD_REQUEST,
            "a prefix uses only the characters of names: letters, digits, '.', '_', '-', '~' and '/'",
        );
    }
    let (names, more) = match list_names(&state, config, &prefix, q.after.as_deref()).await {
        Ok(found) => found,
        Err(e) => return page::error(&caller, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let what = if config.format == RepoFormat::Go {
        "Modules"
    } else {
        "Names"
    };
    let mut body = format!(
        "<p class=\"meta\">{} · {} repository</p>\
         <form class=\"search\" method=\"get\" role=\"search\" action=\"{action}\">\
         <label for=\"prefix\">{what} starting with</label>\
         <input id=\"prefix\" name=\"prefix\" type=\"search\" value=\"{prefix}\" autocomplete=\"off\" spellcheck=\"false\">\
         <button type=\"submit\">Search</button></form>",
        esc(kind_of(config)),
        esc(format_of(config)),
        action = esc(&repo_url(&repo)),
        prefix = esc(&prefix),
    );
    if names.is_empty() {
        body.push_str(&format!(
            "<p>No {} here{}.</p>",
            what.to_lowercase(),
            match prefix.is_empty() {
                true => String::new(),
                false => format!(" starting with <code>{}</code>", esc(&prefix)),
            }
        ));
    } else {
        body.push_str("<ul class=\"names\">");
        for n in &names {
            body.push_str(&format!(
                "<li>{}</li>",
                link(&versions_url(&repo, n.as_str()), n.as_str())
            ));
        }
        body.push_str("</ul>");
    }
    if let (true, Some(last)) = (more, names.last()) {
        body.push_str(&format!(
            "<nav aria-label=\"Pages\" class=\"pager\"><a rel=\"next\" href=\"{}?prefix={}&amp;after={}\">Next {what} →</a></nav>",
            esc(&repo_url(&repo)),
            seg(&prefix),
            seg(last.as_str()),
        ));
    }
    Page::new(repo.clone(), body)
        .crumb("/", "Repositories")
        .crumb("", repo)
        .render(&caller)
}

/// A page of names (and whether more follow): across a group's members, merged and sorted;
/// the internal namespaces of Go repos (`@gomod/`, `@sumdb/`) left out. Those all begin with
/// `@`, so they sort together: once a page meets one, the listing jumps past them all.
async fn list_names(
    state: &AppState,
    repo: &RepoConfig,
    prefix: &str,
    after: Option<&str>,
) -> intact_store::Result<(Vec<Name>, bool)> {
    // Past every internal name: `@` then the last printable character names allow.
    const PAST_INTERNAL: &str = "@~";
    let mut all = std::collections::BTreeSet::new();
    let mut more = false;
    for member in state.members(repo) {
        let mut cursor = after.map(str::to_owned);
        // At most two rounds: the one that ended among the internal names, the one past them.
        for _ in 0..2 {
            let page = state
                .store
                .list_names(&member.name, prefix, cursor.as_deref(), PAGE + 1)
                .await?;
            let full = page.len() > PAGE as usize;
            let ended_internal = page.last().is_some_and(Name::is_internal);
            all.extend(page.into_iter().filter(|n| !n.is_internal()));
            if full && ended_internal && cursor.as_deref().is_none_or(|c| c < PAST_INTERNAL) {
                cursor = Some(PAST_INTERNAL.to_owned());
                continue;
            }
            more |= full;
            break;
        }
    }
    let list: Vec<Name> = all.into_iter().collect();
    more |= list.len() > PAGE as usize;
    Ok((list.into_iter().take(PAGE as usize).collect(), more))
}
