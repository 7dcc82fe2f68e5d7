//! What is happening now: open transactions with their holders and lease expiry, staging
//! jobs with their progress, and the event log's newest entries. The script keeps it live:
//! it follows `/api/v1/events` (a long poll, filtered by the same token) and adds each event
//! as it is committed, and reloads the transactions and jobs every few seconds.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use intact_store::tokens::Access;

use super::html::{esc, link, size, table, time};
use super::names::versions_url;
use super::page::{self, Page};
use super::versions::version_url;
use crate::http::Caller;
use crate::state::AppState;

/// Open transactions listed at most.
const MAX_TRANSACTIONS: u32 = 200;
/// Events shown when the page opens.
const RECENT_EVENTS: i64 = 50;

pub(super) async fn page(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    match body(&state, &caller).await {
        Ok(body) => Page::new("Activity", body)
            .crumb("/", "Repositories")
            .crumb("", "Activity")
            .render(&caller),
        Err(e) => page::error(&caller, axum::http::StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn body(state: &AppState, caller: &Caller) -> intact_store::Result<String> {
    let may_read = |repo: &str| caller.may(state, repo, Access::Read);
    let mut out = String::from("<section id=\"now\" aria-labelledby=\"now-heading\" data-refresh=\"3\">");
    out.push_str("<h2 id=\"now-heading\">Now</h2>");

    let readable = caller.readable_repos(state);
    let txns = state
        .store
        .open_transactions(readable.as_deref(), MAX_TRANSACTIONS)
        .await?;
    if txns.is_empty() {
        out.push_str("<p>No transaction is open.</p>");
    } else {
        let rows: Vec<Vec<String>> = txns
            .iter()
            .map(|t| {
                vec![
                    format!(
                        "{} / {} @ <code>{}</code>",
                        esc(t.repo.as_str()),
                        link(&versions_url(t.repo.as_str(), t.name.as_str()), t.name.as_str()),
                        esc(t.version.as_str())
                    ),
                    esc(t.owner.as_deref().unwrap_or("anonymous")),
                    time(t.created_at),
                    time(t.expires_at),
                    t.staged_files.to_string(),
                    format!("<code>{}</code>", esc(t.id.as_str())),
                ]
            })
            .collect();
        out.push_str(&table(
            "Open transactions",
            &[
                "Writing",
                "Held by",
                "Opened",
                "Lease until",
                "Files staged",
                "Transaction",
            ],
            &rows,
        ));
    }

    let jobs: Vec<serde_json::Value> = state
        .staging
        .jobs()
        .iter()
        .rev()
        .filter(|j| may_read(j.key.0.as_str()))
        .map(|j| j.to_json())
        .collect();
    if jobs.is_empty() {
        out.push_str("<p>No staging job since this server started.</p>");
    } else {
        let rows: Vec<Vec<String>> = jobs.iter().map(job_row).collect();
        out.push_str(&table(
            "Staging jobs (this server)",
            &["Artifact", "State", "Progress", "Started", "Outcome"],
            &rows,
        ));
    }
    out.push_str(&upstream(state, caller));
    out.push_str("</section>");

    let last = state.store.catalog().last_event_seq().await?;
    let events = state
        .store
        .catalog()
        .events((last - RECENT_EVENTS).max(0), RECENT_EVENTS as u32)
        .await?;
    let rows: Vec<Vec<String>> = events
        .iter()
        .rev()
        .filter(|e| may_read(e.repo.as_str()))
        .map(|e| {
            vec![
                e.seq.to_string(),
                time(e.at),
                esc(&e.kind),
                link(
                    &version_url(e.repo.as_str(), e.name.as_str(), e.version.as_str()),
                    &format!("{}/{}@{}", e.repo, e.name, e.version),
                ),
            ]
        })
        .collect();
    out.push_str("<section aria-labelledby=\"events-heading\"><h2 id=\"events-heading\">Events</h2>");
    out.push_str(
        "<p class=\"meta\" id=\"events-status\" role=\"status\" aria-live=\"polite\">Newest first; new events appear as they are committed.</p>",
    );
    out.push_str(
        &table("Recent events", &["#", "At", "Event", "Version"], &rows).replacen(
            "<tbody>",
            &format!("<tbody id=\"events\" data-after=\"{last}\">"),
            1,
        ),
    );
    out.push_str("</section>");
    Ok(out)
}

/// Each proxy repo's fetches from upstream running now (in this process), and the upstream
/// failures it remembers (answered from memory until they are forgotten).
fn upstream(state: &AppState, caller: &Caller) -> String {
    let mut running = Vec::new();
    let mut failures = Vec::new();
    for repo in state
        .config
        .repos
        .iter()
        .filter(|r| caller.may(state, r.name.as_str(), Access::Read))
    {
        let now = match repo.format {
            crate::config::RepoFormat::Go => state.go.proxy(&repo.name).map(|p| p.flights_now()),
            crate::config::RepoFormat::Generic => state.staging.flights_now(&repo.name),
        };
        let Some(now) = now else { continue };
        for what in now.running {
            running.push(vec![esc(repo.name.as_str()), esc(&what)]);
        }
        for f in now.failures {
            failures.push(vec![
                esc(repo.name.as_str()),
                esc(&f.key),
                time(f.at),
                format!("{} s", f.remembered_for.as_secs()),
                esc(&f.error),
            ]);
        }
    }
    let mut out = String::new();
    match running.is_empty() {
        true => out.push_str("<p>No fetch from an upstream is running.</p>"),
        false => out.push_str(&table(
            "Upstream fetches in flight (this server)",
            &["Repository", "Fetching"],
            &running,
        )),
    }
    match failures.is_empty() {
        true => out.push_str("<p>No upstream failure is remembered.</p>"),
        false => out.push_str(&table(
            "Remembered upstream failures (answered from memory until forgotten)",
            &["Repository", "What", "Failed", "Forgotten in", "Error"],
            &failures,
        )),
    }
    out
}

/// A staging job's row, from the JSON its status endpoint answers with.
fn job_row(j: &serde_json::Value) -> Vec<String> {
    let text = |key: &str| j[key].as_str().unwrap_or("").to_owned();
    let done = j["bytes_done"].as_u64().unwrap_or(0);
    let progress = match j["bytes_total"].as_u64() {
        Some(total) if total > 0 => format!(
            "<progress value=\"{done}\" max=\"{total}\" aria-label=\"bytes staged\"></progress> {} of {}",
            esc(&size(done)),
            esc(&size(total))
        ),
        _ => esc(&size(done)),
    };
    let started = j["started_at"]
        .as_str()
        .and_then(intact_core::Timestamp::parse_rfc3339)
        .map(time)
        .unwrap_or_default();
    vec![
        format!(
            "{} / {} ({})",
            esc(&text("repo")),
            esc(&text("name")),
            esc(&text("artifact"))
        ),
        format!("{} · {}", esc(&text("state")), esc(&text("phase"))),
        progress,
        started,
        esc(&text("error")),
    ]
}
