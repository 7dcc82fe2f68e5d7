//! The read side (the hot path): files, manifests, version listings and name browsing.
//! Group repos answer from their first member that has the version; generic proxy repos
//! stage a missing version on first read.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use intact_core::{Manifest, Name, RepoName, Tag, Version};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::prepared::PreparedFiles;
use super::repo_or_404;
use crate::config::{RepoConfig, RepoFormat, RepoKind};
use crate::http::serve_file::{content_type_for, etag_of, file_headers, immutable, send_file};
use crate::openapi::schemas::{NamesPage, VersionsPage};
use crate::staging::listing::percent_encode_path;
use crate::state::AppState;

/// What a path under `/repos/{repo}/` asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadTarget {
    Versions(Name),
    /// The manifest of the version committed last.
    Latest(Name),
    Manifest(Name, Version),
    File(Name, Version, String),
    /// `@t/{tag}`: the manifest of the version a tag points at.
    TaggedManifest(Name, Tag),
    /// `@t/{tag}/{path}`: a file of the version a tag points at.
    TaggedFile(Name, Tag, String),
    /// `@tags`: the name's tags.
    Tags(Name),
    /// `@tags/{tag}`: where a tag points (GET), moving it (PUT), removing it (DELETE).
    Tag(Name, Tag),
    /// `@tags/{tag}/@history`: its moves.
    TagHistory(Name, Tag),
}

/// Which names a read may ask for: those of the repo's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameGrammar {
    /// Generic repos: the names publishers may use (`Name::parse`).
    Published,
    /// Go repos: module paths (which may hold `~`) and the Go front-end's internal
    /// namespaces (`@gomod/...`, `@sumdb/...`), so that every version a Go repo stores can be
    /// read, which `intact export` does.
    Go,
}

/// The internal namespaces of Go repos (go/layout.rs `GOMOD_PREFIX`, go/sumdb.rs).
const GO_INTERNAL_NAMESPACES: [&str; 2] = ["@gomod", "@sumdb"];

impl NameGrammar {
    pub(crate) fn of(repo: &RepoConfig) -> Self {
        match repo.format {
            RepoFormat::Go => Self::Go,
            RepoFormat::Generic => Self::Published,
        }
    }

    /// Whether the name may begin with `first`, a segment starting with `@`.
    fn opens_with_namespace(self, first: &str) -> bool {
        self == Self::Go && GO_INTERNAL_NAMESPACES.contains(&first)
    }

    /// A read only looks a name up (storage paths never come from names), so a Go repo's
    /// reads may name what the Go front-end commits after its own validation.
    fn parse(self, name: &str) -> Result<Name, intact_core::ValidationError> {
        match self {
            Self::Published => Name::parse(name),
            Self::Go => Name::parse_internal(name),
        }
    }
}

/// Splits `{name...}/@versions`, `{name...}/@latest`, `{name...}/@v/{version}`,
/// `{name...}/@v/{version}/{path...}`, the same with `@t/{tag}` for a version named by a tag,
/// and `{name...}/@tags[/{tag}[/@history]]`.
/// Name segments never start with `@` (but for a Go repo's internal namespace as the first
/// one), so the first other `@` segment ends the name.
pub(crate) fn parse_target(rest: &str, grammar: NameGrammar) -> ApiResult<ReadTarget> {
    let segs: Vec<&str> = rest.split('/').collect();
    let skip = usize::from(segs.first().is_some_and(|s| grammar.opens_with_namespace(s)));
    let Some(at) = segs
        .iter()
        .skip(skip)
        .position(|s| s.starts_with('@'))
        .map(|i| i + skip)
    else {
        return Err(ApiError::bad(
            "path",
            "expected {name}/@versions, {name}/@latest, {name}/@v/{version}[/{path}], {name}/@t/{tag}[/{path}] or {name}/@tags[/{tag}[/@history]]",
        ));
    };
    let name = grammar.parse(&segs[..at].join("/"))?;
    match (segs[at], &segs[at + 1..]) {
        ("@versions", []) => Ok(ReadTarget::Versions(name)),
        ("@latest", []) => Ok(ReadTarget::Latest(name)),
        ("@v", [version]) => Ok(ReadTarget::Manifest(name, Version::parse(version)?)),
        ("@v", [version, path @ ..]) if !path.is_empty() => {
            let version = Version::parse(version)?;
            let path = path.join("/");
            intact_core::FilePath::parse(&path)?;
            Ok(ReadTarget::File(name, version, path))
        }
        ("@t", [tag]) => Ok(ReadTarget::TaggedManifest(name, Tag::parse(tag)?)),
        ("@t", [tag, path @ ..]) if !path.is_empty() => {
            let tag = Tag::parse(tag)?;
            let path = path.join("/");
            intact_core::FilePath::parse(&path)?;
            Ok(ReadTarget::TaggedFile(name, tag, path))
        }
        ("@tags", []) => Ok(ReadTarget::Tags(name)),
        ("@tags", [tag]) => Ok(ReadTarget::Tag(name, Tag::parse(tag)?)),
        ("@tags", [tag, "@history"]) => Ok(ReadTarget::TagHistory(name, Tag::parse(tag)?)),
        (marker, _) => Err(ApiError::bad(
            "path",
            format!(
                "unknown selector {marker:?}; expected @versions, @latest, @v/{{version}}, @t/{{tag}} or @tags[/{{tag}}[/@history]]"
            ),
        )),
    }
}

/// Whether reading `m` again can succeed after its blob turned out missing or damaged: it
/// was evicted while being read, or it is a copy in a proxy (staging) repo, which is dropped
/// here so that it is staged again from upstream. Forgets it from the cache either way. A
/// hosted version with a missing or damaged blob is real damage and stays a 500.
async fn can_read_again(state: &AppState, m: &Manifest) -> ApiResult<bool> {
    state.store.invalidate(&m.repo, &m.name, &m.version);
    if state.store.has_version(&m.repo, &m.name, &m.version).await?.is_none() {
        return Ok(true);
    }
    let is_cache = state
        .repo(m.repo.as_str())
        .is_some_and(|r| r.kind == RepoKind::Proxy && r.format == RepoFormat::Generic);
    if is_cache {
        tracing::warn!(repo = %m.repo, name = %m.name, version = %m.version, "a cached version lost a blob; staging it again");
        state
            .store
            .delete_version(
                &m.repo,
                &m.name,
                &m.version,
                "a blob was damaged or missing; staged again",
            )
            .await?;
        return Ok(true);
    }
    Ok(false)
}

/// Finds a committed version, following group membership and staging proxies on a miss.
pub(crate) async fn resolve_manifest(
    state: &AppState,
    repo: &RepoConfig,
    name: &Name,
    version: &Version,
) -> ApiResult<Arc<Manifest>> {
    let candidates = state.members(repo);
    for member in &candidates {
        if let Some(m) = state.store.has_version(&member.name, name, version).await? {
            return Ok(m);
        }
    }
    // The first staging repo's reason (e.g. the missing upstream file) beats a bare "not found".
    let mut why = None;
    for member in &candidates {
        if member.kind == RepoKind::Proxy && member.format == RepoFormat::Generic {
            match crate::staging::stage_on_read(state, member, name, version).await {
                Ok(()) => {
                    if let Some(m) = state.store.has_version(&member.name, name, version).await? {
                        return Ok(m);
                    }
                }
                Err(ApiError::NotFound(w)) => {
                    why.get_or_insert(w);
                }
                Err(e) => return Err(e),
            }
        }
    }
    Err(ApiError::NotFound(
        why.unwrap_or_else(|| format!("version {}/{name}@{version}", repo.name)),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    after: Option<String>,
    limit: Option<u32>,
    /// Tag history pages.
    before: Option<i64>,
}

pub(crate) async fn read(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<Page>, QueryRejection>,
    // The request itself, not `Method` and `HeaderMap` extractors: those clone the headers.
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let Path((repo, rest)) = path?;
    let repo = repo_or_404(&state, &repo)?;
    let private = needed_a_token(&request, repo);
    // A read through a tag answers as the read of its version in the repo that holds the tag
    // (in a group, the member that has it: another member may hold other content under the
    // same version string), marked as moving.
    let (target, tagged, repo) = match parse_target(&rest, NameGrammar::of(repo))? {
        ReadTarget::TaggedManifest(name, tag) => {
            let (member, record) = super::tags::find(&state, repo, &name, &tag).await?;
            (
                ReadTarget::Manifest(name, record.version.clone()),
                Some(record.version),
                member,
            )
        }
        ReadTarget::TaggedFile(name, tag, path) => {
            let (member, record) = super::tags::find(&state, repo, &name, &tag).await?;
            (
                ReadTarget::File(name, record.version.clone(), path),
                Some(record.version),
                member,
            )
        }
        other => (other, None, repo),
    };
    // The path a prepared answer is kept by (see `prepared`), when this read may make one:
    // the full path, as the front door sees it. Never for a read through a tag: the tag may
    // move, the kept answer would not.
    let prepare_as = (tagged.is_none()
        && matches!(target, ReadTarget::File(..))
        && repo.kind == RepoKind::Hosted
        && PreparedFiles::may_answer(&request))
    .then(|| {
        request
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| request.uri().path(), |u| u.0.path())
            .to_owned()
    });
    let resp = read_target(
        &state,
        repo,
        target,
        private,
        query,
        (request.method(), request.headers()),
        prepare_as,
    )
    .await;
    match (tagged, resp) {
        (Some(version), Ok(resp)) => Ok(tagged_answer(resp, repo, &rest, &version, private)),
        (_, resp) => resp,
    }
}

/// `PUT` under `/repos/{repo}/`: moving a tag (`{name}/@tags/{tag}`); nothing else there is
/// written this way.
pub(crate) async fn write(
    State(state): State<AppState>,
    caller: Option<axum::Extension<crate::http::Caller>>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<super::tags::MoveTagBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let Path((repo, rest)) = path?;
    let repo = repo_or_404(&state, &repo)?;
    match parse_target(&rest, NameGrammar::of(repo))? {
        ReadTarget::Tag(name, tag) => super::tags::put(&state, repo, caller.as_deref(), name, tag, body).await,
        _ => Err(not_writable("PUT")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Expect {
    expect: Option<String>,
}

/// `DELETE` under `/repos/{repo}/`: removing a tag (`{name}/@tags/{tag}[?expect=V]`).
pub(crate) async fn remove(
    State(state): State<AppState>,
    caller: Option<axum::Extension<crate::http::Caller>>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<Expect>, QueryRejection>,
) -> ApiResult<Response> {
    let Path((repo, rest)) = path?;
    let repo = repo_or_404(&state, &repo)?;
    match parse_target(&rest, NameGrammar::of(repo))? {
        ReadTarget::Tag(name, tag) => {
            let Query(q) = query?;
            super::tags::delete(&state, repo, caller.as_deref(), name, tag, q.expect).await
        }
        _ => Err(not_writable("DELETE")),
    }
}

/// Versions are written through transactions, never in place.
fn not_writable(method: &str) -> ApiError {
    ApiError::Coded {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!(
            "{method} is not allowed here: only tags ({{name}}/@tags/{{tag}}) are written under a repo; \
             versions are immutable, published through POST /api/v1/repos/{{repo}}/transactions"
        ),
    }
}

/// Marks an answer read through a tag: which version it is (`x-intact-version`, and
/// `Content-Location` for a manifest) and that it moves (`no-cache`).
fn tagged_answer(mut resp: Response, repo: &RepoConfig, rest: &str, version: &Version, private: bool) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if private { "private, no-cache" } else { "no-cache" }),
    );
    if let Ok(v) = HeaderValue::from_str(version.as_str()) {
        h.insert("x-intact-version", v);
    }
    // `{name}/@t/{tag}` -> `{name}/@v/{version}`: the manifest's own, immutable, URL.
    if let Some((name, _)) = rest.split_once("/@t/")
        && !rest[name.len() + 4..].contains('/')
    {
        let location = format!(
            "/api/v1/repos/{}/{}/@v/{}",
            percent_encode_path(repo.name.as_str()),
            percent_encode_path(name),
            percent_encode_path(version.as_str())
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            h.insert(header::CONTENT_LOCATION, v);
        }
    }
    resp
}

async fn read_target(
    state: &AppState,
    repo: &RepoConfig,
    target: ReadTarget,
    private: bool,
    query: Result<Query<Page>, QueryRejection>,
    (method, headers): (&axum::http::Method, &axum::http::HeaderMap),
    prepare_as: Option<String>,
) -> ApiResult<Response> {
    match target {
        ReadTarget::Versions(name) => {
            let Query(page) = query?;
            versions(state, repo, &name, page).await
        }
        ReadTarget::Tags(name) => super::tags::list(state, repo, &name).await,
        ReadTarget::Tag(name, tag) => super::tags::get(state, repo, &name, &tag).await,
        ReadTarget::TagHistory(name, tag) => {
            let Query(page) = query?;
            super::tags::history(state, repo, &name, &tag, page.before, page.limit).await
        }
        ReadTarget::TaggedManifest(..) | ReadTarget::TaggedFile(..) => Err(ApiError::Internal(
            "a read through a tag reached the reads of versions unresolved".into(),
        )),
        ReadTarget::Latest(name) => latest(state, repo, &name).await,
        ReadTarget::Manifest(name, version) => {
            let m = resolve_manifest(state, repo, &name, &version).await?;
            let mut resp = Json(&*m).into_response();
            let h = resp.headers_mut();
            h.insert(header::CACHE_CONTROL, immutable(private));
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", m.fingerprint())) {
                h.insert(header::ETAG, v);
            }
            Ok(resp)
        }
        ReadTarget::File(name, version, path) => {
            // At most two rounds: a proxy cache may evict the version between resolving its
            // manifest and opening its blob, or hold a damaged copy; then it is resolved again
            // (re-staged, or 404) instead of answering 500.
            let mut evicted_once = false;
            loop {
                // Read before the version is looked up: a deletion after it voids the answer.
                let deletions = state.store.deletions();
                let m = resolve_manifest(state, repo, &name, &version).await?;
                let file = m
                    .file(&path)
                    .ok_or_else(|| ApiError::NotFound(format!("file {path} in {}/{name}@{version}", repo.name)))?;
                crate::staging::touch(state, &m);
                let prepared = match &prepare_as {
                    Some(key) => prepare(state, key, repo, file, content_type_for(&path), &m, deletions).await,
                    None => Ok(None),
                };
                let sent = match prepared {
                    Ok(Some(resp)) => Ok(resp),
                    Ok(None) => {
                        send_file(
                            &state.store,
                            method,
                            headers,
                            file,
                            content_type_for(&path),
                            m.created_at,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                if let Err(intact_store::Error::BlobMissing { .. } | intact_store::Error::BlobDamaged { .. }) = &sent
                    && !evicted_once
                    && can_read_again(state, &m).await?
                {
                    evicted_once = true;
                    continue;
                }
                break sent.map_err(ApiError::from).map(|mut resp| {
                    if private {
                        resp.headers_mut().insert(header::CACHE_CONTROL, immutable(true));
                    }
                    resp
                });
            }
        }
    }
}

/// Whether reading `repo` needed a token (access control is on and the repo is not open to
/// anonymous reads): then its answers are `private` to caches.
pub(crate) fn needed_a_token(request: &axum::extract::Request, repo: &RepoConfig) -> bool {
    request
        .extensions()
        .get::<crate::http::Caller>()
        .is_some_and(|c| c.enforced)
        && !repo.anonymous_read
}

/// The whole answer to a plain read of a small file, kept for the next reads of `key`; `None`
/// when the file is too large to keep in memory (it streams instead).
async fn prepare(
    state: &AppState,
    key: &str,
    repo: &RepoConfig,
    file: &intact_core::FileEntry,
    content_type: &str,
    m: &Manifest,
    deletions: u64,
) -> intact_store::Result<Option<Response>> {
    let Some(body) = state.store.small_file(file).await? else {
        return Ok(None);
    };
    let mut headers = file_headers(file, &etag_of(file), content_type, m.created_at);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    state
        .prepared
        .keep(key, headers.clone(), body.clone(), deletions, repo.anonymous_read);
    let mut resp = Response::new(axum::body::Body::from(body));
    *resp.headers_mut() = headers;
    Ok(Some(resp))
}

/// `@latest`: the manifest of the version committed last; in a group, of the first member
/// that has any version of the name (the order reads resolve in). Never cached by clients
/// (it moves with every commit); `Content-Location` names the version's own, immutable, URL.
async fn latest(state: &AppState, repo: &RepoConfig, name: &Name) -> ApiResult<Response> {
    for member in state.members(repo) {
        let Some(version) = state.store.latest_version(&member.name, name).await? else {
            continue;
        };
        let m = match state.store.has_version(&member.name, name, &version).await? {
            Some(m) => m,
            // Evicted just now: the caller asks again.
            None => continue,
        };
        let mut resp = Json(&*m).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let location = format!(
            "/api/v1/repos/{}/{}/@v/{}",
            percent_encode_path(repo.name.as_str()),
            percent_encode_path(name.as_str()),
            percent_encode_path(version.as_str())
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            h.insert(header::CONTENT_LOCATION, v);
        }
        return Ok(resp);
    }
    Err(ApiError::NotFound(format!(
        "no version of {name} in repo {}",
        repo.name
    )))
}

async fn versions(state: &AppState, repo: &RepoConfig, name: &Name, page: Page) -> ApiResult<Response> {
    let limit = page.limit.unwrap_or(1000).clamp(1, 10_000);
    let after = page.after.as_deref().map(Version::parse).transpose()?;
    let members: Vec<RepoName> = state.members(repo).into_iter().map(|r| r.name.clone()).collect();
    if members.len() == 1 {
        // The hot path: one index walk, serialized straight from the rows.
        let list = state
            .store
            .list_versions(&members[0], name, after.as_ref(), limit)
            .await?;
        let next = (list.len() as u32 == limit)
            .then(|| list.last().map(|v| v.version.clone()))
            .flatten();
        return Ok(Json(VersionsPage { versions: &list, next }).into_response());
    }
    // A group merges its members' listings (first member wins on duplicates); pagination
    // continues after a version present in any member.
    let mut merged = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in &members {
        let mut cursor: Option<Version> = None;
        loop {
            let page = state.store.list_versions(m, name, cursor.as_ref(), 10_000).await?;
            let done = page.len() < 10_000;
            cursor = page.last().map(|v| v.version.clone());
            for v in page {
                if seen.insert(v.version.clone()) {
                    merged.push(v);
                }
            }
            if done {
                break;
            }
        }
    }
    merged.sort_by_key(|v| v.created_at);
    let start = match &after {
        Some(a) => merged
            .iter()
            .position(|v| &v.version == a)
            .map(|i| i + 1)
            .ok_or_else(|| ApiError::bad("after", format!("{a:?} is not a committed version of {name}")))?,
        None => 0,
    };
    let list: Vec<_> = merged.into_iter().skip(start).take(limit as usize).collect();
    let next = (list.len() as u32 == limit)
        .then(|| list.last().map(|v| v.version.clone()))
        .flatten();
    Ok(Json(VersionsPage { versions: &list, next }).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NamesQuery {
    prefix: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn names(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<NamesQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Path(repo) = path?;
    let Query(q) = query?;
    let repo = repo_or_404(&state, &repo)?;
    let prefix = q.prefix.unwrap_or_default();
    if prefix.len() > 1024
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/~@".contains(c))
    {
        return Err(ApiError::bad(
            "prefix",
            "must use only the characters of names ([A-Za-z0-9._-] and '/')",
        ));
    }
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let members: Vec<RepoName> = state.members(repo).into_iter().map(|r| r.name.clone()).collect();
    let mut all = std::collections::BTreeSet::new();
    for m in &members {
        for n in state.store.list_names(m, &prefix, q.after.as_deref(), limit).await? {
            // Internal namespaces stay hidden unless asked for by prefix.
            if !n.is_internal() || prefix.starts_with('@') {
                all.insert(n);
            }
        }
    }
    let list: Vec<Name> = all.into_iter().take(limit as usize).collect();
    let next = (list.len() as u32 == limit).then(|| list.last().cloned()).flatten();
    Ok(Json(NamesPage { names: list, next }).into_response())
}

pub(crate) async fn repo_info(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(repo) = path?;
    let repo = repo_or_404(&state, &repo)?;
    Ok(Json(repo.public_view()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        use NameGrammar::{Go, Published};
        for grammar in [Published, Go] {
            assert_eq!(
                parse_target("a/b/@versions", grammar).ok(),
                Some(ReadTarget::Versions(Name::parse("a/b").expect("n")))
            );
            assert!(matches!(
                parse_target("a/@v/1", grammar),
                Ok(ReadTarget::Manifest(_, _))
            ));
            assert!(matches!(parse_target("a/b/@latest", grammar), Ok(ReadTarget::Latest(n)) if n.as_str() == "a/b"));
            assert!(
                matches!(parse_target("a/@v/1/dir/f.bin", grammar), Ok(ReadTarget::File(_, _, p)) if p == "dir/f.bin")
            );
            for bad in [
                "a",
                "@v/1",
                "@v/@versions",
                "@versions/@versions",
                "a/@v",
                "a/@v/1/../x",
                "a/@x",
                "../a/@versions",
                "a/@versions/x",
                "a/@latest/x",
                "a/@v/1/",
                "@sumdb/@v/1/x/@v/2",
                "@other/x/@v/1",
                "a/@b/@v/1",
                "a/@gomod/x/@v/1",
            ] {
                assert!(parse_target(bad, grammar).is_err(), "{bad}");
            }
        }
        // A Go repo's internal namespaces and module paths with `~` are readable there (what
        // `intact export` copies), and nowhere else.
        for (target, name) in [
            (
                "@sumdb/sum.golang.org/tile/8/0/001.p/5/@v/1",
                "@sumdb/sum.golang.org/tile/8/0/001.p/5",
            ),
            ("@gomod/example.com/m/@versions", "@gomod/example.com/m"),
            ("example.com/~user/m/@v/v1.0.0", "example.com/~user/m"),
        ] {
            let parsed = parse_target(target, Go).expect(target);
            let (ReadTarget::Versions(n) | ReadTarget::Manifest(n, _)) = parsed else {
                panic!("{target}: {parsed:?}");
            };
            assert_eq!(n.as_str(), name);
            assert!(parse_target(target, Published).is_err(), "{target}");
        }
    }
}
