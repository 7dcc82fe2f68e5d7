//! Tags: `{name}/@tags/{tag}` moves by compare-and-swap (PUT), removal (DELETE), where a tag
//! points and its history (GET); `{name}/@t/{tag}/...` reads through a tag (reads.rs).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use intact_core::{Name, Tag, Version};
use intact_store::{TagExpectation, TagMove, TagMoved};
use serde::{Deserialize, Deserializer};

use super::error::{ApiError, ApiResult};
use crate::config::RepoConfig;
use crate::http::Caller;
use crate::openapi::schemas::{TagHistoryPage, TagMoveAnswer, TagsPage};
use crate::state::AppState;

/// The most history entries one page answers.
const MAX_HISTORY_PAGE: u32 = 1000;

/// `PUT {name}/@tags/{tag}`: point the tag at `version`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoveTagBody {
    /// The version to point the tag at: a committed version of the name.
    pub version: String,
    /// Compare-and-swap: the version the tag must point at now for the move to happen;
    /// `null`: the tag must not exist yet; left out: move it wherever it points.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub expect: Option<Option<String>>,
}

/// Tells `"expect": null` (`Some(None)`) from a missing `expect` (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn expectation(expect: Option<Option<String>>) -> ApiResult<TagExpectation> {
    Ok(match expect {
        None => TagExpectation::Any,
        Some(None) => TagExpectation::Absent,
        Some(Some(v)) => TagExpectation::Version(
            Version::parse(&v).map_err(|e| intact_core::ValidationError { field: "expect", ..e })?,
        ),
    })
}

/// Tags are kept by hosted repos; groups and proxies hold none of their own.
fn tagging_repo<'a>(state: &'a AppState, repo: &'a RepoConfig) -> ApiResult<&'a RepoConfig> {
    super::writable_repo(state, repo.name.as_str())
}

fn answer(moved: &TagMoved, tag: &Tag) -> Response {
    let body = TagMoveAnswer {
        tag: tag.clone(),
        version: moved.now.as_ref().map(|r| r.version.clone()),
        previous: moved.previous.clone(),
        moved: moved.moved,
        moved_at: moved.now.as_ref().map(|r| r.moved_at),
        moved_by: moved.now.as_ref().and_then(|r| r.moved_by.clone()),
    };
    Json(body).into_response()
}

pub(crate) async fn put(
    state: &AppState,
    repo: &RepoConfig,
    caller: Option<&Caller>,
    name: Name,
    tag: Tag,
    body: Result<Json<MoveTagBody>, JsonRejection>,
) -> ApiResult<Response> {
    let repo = tagging_repo(state, repo)?;
    let Json(body) = body?;
    let version = Version::parse(&body.version)?;
    let mv = TagMove {
        repo: repo.name.clone(),
        name,
        tag: tag.clone(),
        version: Some(version),
        expect: expectation(body.expect)?,
        by: caller.and_then(|c| c.token_name()).map(str::to_owned),
    };
    let moved = state.store.move_tag(&mv).await?;
    Ok(answer(&moved, &tag))
}

/// `DELETE {name}/@tags/{tag}[?expect=V]`: removes the tag (the history keeps its moves).
pub(crate) async fn delete(
    state: &AppState,
    repo: &RepoConfig,
    caller: Option<&Caller>,
    name: Name,
    tag: Tag,
    expect: Option<String>,
) -> ApiResult<Response> {
    let repo = tagging_repo(state, repo)?;
    let mv = TagMove {
        repo: repo.name.clone(),
        name,
        tag: tag.clone(),
        version: None,
        expect: expectation(expect.map(Some))?,
        by: caller.and_then(|c| c.token_name()).map(str::to_owned),
    };
    let moved = state.store.move_tag(&mv).await?;
    if !moved.moved {
        return Err(ApiError::NotFound(format!("tag {tag} of {}/{}", mv.repo, mv.name)));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Where `tag` points, and the repo that holds it: `repo`, or (a group) the first member
/// that has it, whose version is the one meant (another member may hold other content under
/// the same version string).
pub(crate) async fn find<'a>(
    state: &'a AppState,
    repo: &'a RepoConfig,
    name: &Name,
    tag: &Tag,
) -> ApiResult<(&'a RepoConfig, intact_store::TagRecord)> {
    for member in state.members(repo) {
        if let Some(record) = state.store.catalog().tag(&member.name, name, tag).await? {
            return Ok((member, record));
        }
    }
    Err(ApiError::NotFound(format!("tag {tag} of {}/{name}", repo.name)))
}

/// `GET {name}/@tags/{tag}`.
pub(crate) async fn get(state: &AppState, repo: &RepoConfig, name: &Name, tag: &Tag) -> ApiResult<Response> {
    let (_, record) = find(state, repo, name, tag).await?;
    Ok(no_cache(Json(record).into_response()))
}

/// `GET {name}/@tags`: every tag of the name (a group: of each member, the first member's
/// winning).
pub(crate) async fn list(state: &AppState, repo: &RepoConfig, name: &Name) -> ApiResult<Response> {
    let mut tags: Vec<intact_store::TagRecord> = Vec::new();
    for member in state.members(repo) {
        for record in state.store.catalog().tags(&member.name, name).await? {
            if !tags.iter().any(|t| t.tag == record.tag) {
                tags.push(record);
            }
        }
    }
    tags.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(no_cache(Json(TagsPage { tags }).into_response()))
}

/// `GET {name}/@tags/{tag}/@history[?before=SEQ&limit=N]`: the tag's moves, newest first.
pub(crate) async fn history(
    state: &AppState,
    repo: &RepoConfig,
    name: &Name,
    tag: &Tag,
    before: Option<i64>,
    limit: Option<u32>,
) -> ApiResult<Response> {
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > MAX_HISTORY_PAGE {
        return Err(ApiError::bad("limit", format!("must be 1-{MAX_HISTORY_PAGE}")));
    }
    // The member whose tag reads answer (the first that has it); when none has it now, the
    // first with any history (a removed tag's moves).
    let holders = match find(state, repo, name, tag).await {
        Ok((member, _)) => vec![member],
        Err(ApiError::NotFound(_)) => state.members(repo),
        Err(e) => return Err(e),
    };
    for member in holders {
        let history = state
            .store
            .catalog()
            .tag_history(&member.name, name, tag, before, limit)
            .await?;
        if !history.is_empty() {
            let next = (history.len() == limit as usize)
                .then(|| history.last().map(|e| e.seq))
                .flatten();
            return Ok(no_cache(
                Json(TagHistoryPage {
                    history,
                    next_before: next,
                })
                .into_response(),
            ));
        }
    }
    if before.is_some() {
        return Ok(no_cache(
            Json(TagHistoryPage {
                history: Vec::new(),
                next_before: None,
            })
            .into_response(),
        ));
    }
    Err(ApiError::NotFound(format!(
        "tag {tag} of {}/{name} (it never existed)",
        repo.name
    )))
}

/// Tags move: their answers are never kept by caches without asking again.
pub(crate) fn no_cache(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
