//! Transactions: open (with soft lock, `auto` versions and idempotency keys), stream files in,
//! commit (the one visibility point) or roll back.

use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::TryStreamExt;
use intact_core::{Digest, FilePath, Name, TxnId, Version};
use intact_store::store::BeginRequest;
use intact_store::{CommitOutcome, OpenOutcome, TxnRecord, VersionSpec};
use serde::Deserialize;
use serde_json::json;
use tokio_util::io::StreamReader;

use super::error::{ApiError, ApiResult};
use super::{MAX_WAIT, importable_repo, repo_or_404, writable_repo};
use crate::http::Caller;
use crate::limits::body::{LimitedReader, check_declared_length};
use crate::openapi::schemas::{StagedFile, TxnView};
use crate::state::AppState;

/// Opens a transaction for one version.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTxn {
    pub name: String,
    /// A version, or `auto` for the next integer version. Not `latest` (in any case): readers
    /// ask for that to get the newest version.
    pub version: String,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub lease_seconds: Option<u64>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub wait_seconds: Option<u64>,
    /// Import a version exported from another intact (`intact import`): needs a token with
    /// scope `*:admin`; allowed into hosted and proxy repos of any format (never groups),
    /// takes the names the store holds (internal `@...` namespaces, Go paths with `~`) and an
    /// exact version (not `auto`). The metadata is kept as given.
    #[serde(default)]
    pub import: bool,
    /// Start from this committed version of the same name: the transaction opens with its
    /// files (and, when `metadata` is left out, its metadata); PUT and DELETE of paths change
    /// them, and the commit makes the new version. Only the changes are sent.
    #[serde(default)]
    pub from_version: Option<String>,
}

/// The names an import may give a version: those the repo's own front-end stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImportNames {
    /// Generic repos: the names publishers may use.
    Published,
    /// Hosted Go repos: module paths (which may hold `~`).
    GoModules,
    /// Go proxy repos: module paths and the Go front-end's internal namespaces (`@gomod/...`
    /// copies, `@sumdb/...` tiles, tree heads and lookups).
    GoProxy,
}

impl ImportNames {
    pub(crate) fn of(repo: &crate::config::RepoConfig) -> Self {
        use crate::config::{RepoFormat, RepoKind};
        match (repo.format, repo.kind) {
            (RepoFormat::Generic, _) => Self::Published,
            (RepoFormat::Go, RepoKind::Proxy) => Self::GoProxy,
            (RepoFormat::Go, _) => Self::GoModules,
        }
    }

    fn parse(self, name: &str) -> ApiResult<Name> {
        let namespace = name.split('/').next().filter(|first| first.starts_with('@'));
        match (self, namespace) {
            (Self::Published, _) => Ok(Name::parse(name)?),
            (Self::GoModules, None) => Ok(Name::parse_internal(name)?),
            (Self::GoProxy, None | Some("@gomod" | "@sumdb")) => Ok(Name::parse_internal(name)?),
            (_, Some(other)) => Err(ApiError::bad(
                "name",
                format!(
                    "{other}/ is not a namespace this repo stores (a Go proxy repo holds @gomod/ and @sumdb/; other repos none)"
                ),
            )),
        }
    }
}

impl CreateTxn {
    /// Validates the request into a store request for `repo`.
    pub(crate) fn into_begin(self, repo: &intact_core::RepoName, headers: &HeaderMap) -> ApiResult<BeginRequest> {
        self.into_begin_as(repo, headers, ImportNames::Published)
    }

    /// [`CreateTxn::into_begin`], with the names an import into this repo may take.
    pub(crate) fn into_begin_as(
        self,
        repo: &intact_core::RepoName,
        headers: &HeaderMap,
        import_names: ImportNames,
    ) -> ApiResult<BeginRequest> {
        // An import recreates a version exactly as another intact stored it, so it may name
        // what intact's own front-ends store in a repo of this kind, and nothing else.
        let name = if self.import {
            import_names.parse(&self.name)?
        } else {
            Name::parse(&self.name)?
        };
        let version: VersionSpec = self.version.parse()?;
        if self.import && matches!(version, VersionSpec::Auto) {
            return Err(ApiError::bad(
                "version",
                "an import names the exact version it recreates, not `auto`",
            ));
        }
        let base = self
            .from_version
            .as_deref()
            .map(|v| {
                Version::parse(v).map_err(|e| intact_core::ValidationError {
                    field: "from_version",
                    ..e
                })
            })
            .transpose()?;
        if self.import && base.is_some() {
            return Err(ApiError::bad(
                "from_version",
                "an import recreates a version exactly as exported: it names every file itself",
            ));
        }
        let wait = self.wait_seconds.unwrap_or(0);
        if wait > MAX_WAIT {
            return Err(ApiError::bad("wait_seconds", format!("must be at most {MAX_WAIT}")));
        }
        let header_key = headers.get("idempotency-key").map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::bad("idempotency-key", "must be visible ASCII"))
        });
        let idempotency_key = match (self.idempotency_key, header_key.transpose()?) {
            (Some(body), Some(hdr)) if body != hdr => {
                return Err(ApiError::bad(
                    "idempotency_key",
                    "body and Idempotency-Key header disagree",
                ));
            }
            (Some(k), _) | (None, Some(k)) => Some(k),
            (None, None) => None,
        };
        Ok(BeginRequest {
            repo: repo.clone(),
            name,
            version,
            metadata: self.metadata.unwrap_or_else(|| json!({})),
            lease: self.lease_seconds.map(Duration::from_secs),
            idempotency_key,
            wait: Duration::from_secs(wait),
            base,
        })
    }
}

/// A transaction as the API answers it.
fn txn_view(t: &TxnRecord) -> Json<TxnView<'_>> {
    Json(TxnView { txn: t, manifest: None })
}

fn created(t: &TxnRecord) -> Response {
    let mut resp = (StatusCode::CREATED, txn_view(t)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/v1/transactions/{}", t.id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<CreateTxn>, JsonRejection>,
) -> ApiResult<Response> {
    let Path(repo) = path?;
    // An unknown repo is a 404 whatever the body says; which repos take the transaction
    // depends on the body (`import`).
    repo_or_404(&state, &repo)?;
    let Json(req) = body?;
    let repo = if req.import {
        let is_admin = caller.as_ref().is_none_or(|c| c.is_server_admin());
        if !is_admin {
            return Err(ApiError::Coded {
                status: StatusCode::FORBIDDEN,
                code: "forbidden",
                message: "an import (`\"import\": true`) needs a token with scope *:admin".to_owned(),
            });
        }
        importable_repo(&state, &repo)?.name.clone()
    } else {
        writable_repo(&state, &repo)?.name.clone()
    };
    crate::limits::body::check_metadata(req.metadata.as_ref(), state.limits.settings.max_metadata_bytes)?;
    let import_names = state
        .repo(repo.as_str())
        .map_or(ImportNames::Published, ImportNames::of);
    let inherits_metadata = req.metadata.is_none();
    let mut begin = req.into_begin_as(&repo, &headers, import_names)?;
    if let Some(base) = &begin.base
        && inherits_metadata
    {
        // An edit keeps the version's metadata unless it says otherwise. Read before the
        // open: a version is immutable, and one deleted meanwhile fails the open itself.
        begin.metadata = state.store.manifest(&repo, &begin.name, base).await?.metadata.clone();
    }
    let owner = caller.as_ref().and_then(|c| c.token_name());
    if let (Some(owner), Some(max)) = (owner, state.limits.settings.max_open_transactions_per_token) {
        // Counted before opening: two opens racing at the limit may both pass (one over);
        // the limit is against leaks and runaway clients, not an exact quota.
        let open = state.store.catalog().open_txns_owned_by(owner).await?;
        if open >= max {
            return Err(ApiError::OverLimit {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "too_many_transactions",
                field: "transactions",
                limit: "limits.max_open_transactions_per_token",
                message: format!(
                    "token {owner} holds {open} open transactions, at most {max} \
                     (limits.max_open_transactions_per_token): commit or abort some first"
                ),
            });
        }
    }
    Ok(match state.store.begin_owned(begin, owner).await? {
        OpenOutcome::Created(t) => created(&t),
        OpenOutcome::Resumed(t) => (StatusCode::OK, txn_view(&t)).into_response(),
        OpenOutcome::Committed(t, m) => {
            let view = TxnView {
                txn: &t,
                manifest: Some(&m),
            };
            (StatusCode::OK, Json(view)).into_response()
        }
    })
}

fn parse_id(id: &str) -> ApiResult<TxnId> {
    Ok(TxnId::parse(id)?)
}

pub(crate) async fn get(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    let t = state.store.txn(&parse_id(&id)?).await?;
    Ok(txn_view(&t).into_response())
}

pub(crate) async fn renew(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    let t = state.store.renew(&parse_id(&id)?).await?;
    Ok(txn_view(&t).into_response())
}

pub(crate) async fn commit(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    Ok(match state.store.commit(&parse_id(&id)?).await? {
        CommitOutcome::Committed(m) => (StatusCode::CREATED, Json(m)).into_response(),
        CommitOutcome::AlreadyCommitted(m) => (StatusCode::OK, Json(m)).into_response(),
    })
}

pub(crate) async fn abort(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    state.store.abort(&parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Parses an optional `x-checksum-sha256` header (hex).
pub(crate) fn expected_checksum(headers: &HeaderMap) -> ApiResult<Option<Digest>> {
    match headers.get("x-checksum-sha256") {
        None => Ok(None),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::bad("x-checksum-sha256", "must be 64 hex characters"))?;
            // Name the header, not the digest grammar, as the field that was wrong.
            let digest = Digest::parse(s.trim()).map_err(|e| intact_core::ValidationError {
                field: "x-checksum-sha256",
                ..e
            })?;
            Ok(Some(digest))
        }
    }
}

pub(crate) async fn put_file(
    State(state): State<AppState>,
    caller: Extension<Caller>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let Path((id, file_path)) = path?;
    let id = parse_id(&id)?;
    let file_path = FilePath::parse(&file_path)?;
    let expected = expected_checksum(&headers)?;
    if let Some(stored) = stored_blob(&headers)? {
        // A file added by digest: the store's bytes, never the body's.
        if expected.is_some_and(|e| e != stored) {
            return Err(ApiError::bad(
                "x-checksum-sha256",
                "differs from x-blob-sha256: send one of them",
            ));
        }
        let no_body = || {
            ApiError::bad(
                "x-blob-sha256",
                "adds a file by the digest of bytes the store already holds: send no body (to upload bytes, leave the header out)",
            )
        };
        // The declared length first: a body announced and never sent must not hold the slot.
        let declared = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > 0) {
            return Err(no_body());
        }
        if axum::body::to_bytes(body, 0).await.is_err() {
            return Err(no_body());
        }
        // Only bytes the caller could read (or staged here already) may be added: a digest
        // is no key to another repo's files.
        let Some(size) = super::blobs::usable_size(&state, &caller, &stored, Some(&id)).await? else {
            return Err(intact_store::Error::BlobNotStored { digest: stored }.into());
        };
        if let Some(max) = state.limits.settings.max_file_bytes
            && size > max
        {
            return Err(ApiError::bad(
                "x-blob-sha256",
                format!("the stored file is {size} bytes, over limits.max_file_bytes ({max})"),
            ));
        }
        let entry = state.store.stage_stored(&id, file_path, stored, size).await?;
        return Ok(staged(entry));
    }
    let max_file_bytes = state.limits.settings.max_file_bytes;
    check_declared_length(&headers, max_file_bytes)?;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let mut reader = LimitedReader::new(StreamReader::new(stream), max_file_bytes);
    let entry = state
        .store
        .put_file(&id, file_path, &mut reader, expected, None)
        .await?;
    Ok(staged(entry))
}

/// `DELETE /transactions/{id}/files/{path}`: the path is no longer part of the version
/// (an edit drops a file of the version it started from, or an upload is taken back).
pub(crate) async fn delete_file(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Response> {
    let Path((id, file_path)) = path?;
    let id = parse_id(&id)?;
    let file_path = FilePath::parse(&file_path)?;
    state.store.unstage_file(&id, &file_path).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn staged(entry: intact_core::FileEntry) -> Response {
    (
        StatusCode::CREATED,
        Json(StagedFile {
            path: entry.path,
            size: entry.size,
            sha256: entry.sha256,
        }),
    )
        .into_response()
}

/// Parses an optional `x-blob-sha256` header (hex): the file is added by that digest.
fn stored_blob(headers: &HeaderMap) -> ApiResult<Option<Digest>> {
    let Some(v) = headers.get("x-blob-sha256") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| ApiError::bad("x-blob-sha256", "must be 64 hex characters"))?;
    let digest = Digest::parse(s.trim()).map_err(|e| intact_core::ValidationError {
        field: "x-blob-sha256",
        ..e
    })?;
    Ok(Some(digest))
}

#[cfg(test)]
mod tests {
    use super::ImportNames;

    /// An import may only give the names the target repo's own front-end stores: forging a
    /// Go proxy's namespaces into a generic or hosted repo, or any other `@` namespace, is
    /// refused.
    #[test]
    fn import_names_follow_the_target_repo() {
        for (names, ok, refused) in [
            (
                ImportNames::Published,
                &["builds/app", "a-b_c.d"][..],
                &["@sumdb/x/latest", "@gomod/m", "m~1", "@x/y"][..],
            ),
            (
                ImportNames::GoModules,
                &["example.com/m", "example.com/m~v2"][..],
                &["@sumdb/x/latest", "@gomod/example.com/m", "@x/y"][..],
            ),
            (
                ImportNames::GoProxy,
                &[
                    "example.com/m",
                    "@gomod/example.com/m",
                    "@sumdb/sum.golang.org/latest",
                    "@sumdb/sum.golang.org/lookup/example.com/m",
                ][..],
                &["@x/y", "@sumdbx/a", "a/@gomod/b"][..],
            ),
        ] {
            for name in ok {
                assert!(names.parse(name).is_ok(), "{names:?} {name}");
            }
            for name in refused {
                assert!(names.parse(name).is_err(), "{names:?} {name}");
            }
        }
    }
}
