//! Publishing into hosted Go repos: `POST /go/{repo}/publish?module=M&version=V` with the
//! module zip as the body (what `intact go publish` sends).
//!
//! The body streams to a temp file (at most 500 MiB), is checked with x/mod's zip rules for
//! exactly `M@V`, and is committed with its `.mod` (the zip's root go.mod, or the go.mod the
//! go command synthesizes for a module without one) and a `.info` stamped now, as one
//! version. Versions are immutable: publishing the same zip and go.mod again is a harmless
//! `200`; anything else is `409 conflict`. The comparison is on the zip and go.mod digests,
//! not the whole version, because the `.info` time differs between two publishes.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use intact_core::{Manifest, Timestamp};
use intact_go::{dirhash, info::Info, module_path, zip as gozip};
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::check;
use super::layout::{self, Committed, INFO_FILE, MOD_FILE, ZIP_FILE};
use crate::api::error::{ApiError, ApiResult};
use crate::config::{RepoFormat, RepoKind};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishQuery {
    module: String,
    version: String,
}

pub(crate) async fn publish(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PublishQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let Path(repo) = path?;
    let repo = crate::api::repo_or_404(&state, &repo)?;
    if repo.format != RepoFormat::Go || repo.kind != RepoKind::Hosted {
        return Err(ApiError::WrongRepo(format!(
            "repo {} is not a hosted Go repo: Go modules are published into a repo with kind = \"hosted\", format = \"go\"",
            repo.name
        )));
    }
    let Query(q) = query?;
    module_path::check_path(&q.module).map_err(|e| ApiError::bad("module", e.to_string()))?;
    module_path::check_canonical(&q.module, &q.version).map_err(|e| ApiError::bad("version", e.to_string()))?;
    let (module, version_str) = (q.module, q.version);
    let name = layout::module_name(&module).map_err(|e| ApiError::bad("module", e.to_string()))?;
    let version = layout::version(&version_str).map_err(|e| ApiError::bad("version", e.to_string()))?;

    let limits = &state.limits.settings;
    crate::limits::body::check_declared_length(&headers, limits.max_file_bytes)?;
    let tmp_dir = state.go.tmp_dir().to_owned();
    let zip_path = receive(body, tmp_dir, limits.max_file_bytes).await?;
    let checked = match check::zip_file(zip_path.to_path_buf(), module.clone(), version_str.clone()).await {
        Ok(Ok(c)) => c,
        Ok(Err(intact_go::GoError::Io(e))) => return Err(ApiError::Internal(format!("reading uploaded zip: {e}"))),
        Ok(Err(e)) => {
            return Err(ApiError::bad(
                "body",
                format!("not a valid module zip for {module}@{version_str}: {e}"),
            ));
        }
        Err(e) => return Err(ApiError::Internal(e)),
    };
    // The version itself holds three files; what a client's transaction would hold file by
    // file is in the zip, so that is what the limit counts.
    if let Some(max) = limits.max_files_per_transaction
        && u64::try_from(checked.files).unwrap_or(u64::MAX) > max
    {
        return Err(ApiError::OverLimit {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_many_files",
            field: "files",
            limit: "limits.max_files_per_transaction",
            message: format!(
                "the module zip holds {} files, more than the {max} one version may hold here (limits.max_files_per_transaction); nothing was published",
                checked.files
            ),
        });
    }
    let go_mod = checked
        .go_mod
        .clone()
        .unwrap_or_else(|| gozip::synthesized_go_mod(&module));
    let go_mod_h1 = dirhash::hash_go_mod(&go_mod);
    let store = &state.store;

    let zip_blob = {
        let mut file = tokio::fs::File::open(&zip_path)
            .await
            .map_err(|e| ApiError::Internal(format!("reopening uploaded zip: {e}")))?;
        store.blobs().write(&mut file, None).await?
    };
    drop(zip_path);
    let mod_blob = layout::pending_from_bytes(store, &go_mod).await.map_err(internal)?;
    let (zip_digest, mod_digest) = (zip_blob.digest, mod_blob.digest);
    let answer = |status: StatusCode, m: &Manifest| {
        let zip_size = m.file(ZIP_FILE).map_or(0, |f| f.size);
        let body = json!({
            "repo": repo.name,
            "module": module,
            "version": version_str,
            "h1": checked.h1,
            "go_mod_h1": go_mod_h1,
            "zip_sha256": m.file(ZIP_FILE).map(|f| f.sha256),
            "size": zip_size,
            "created_at": m.created_at,
        });
        (status, Json(body)).into_response()
    };
    let same_content = |m: &Manifest| {
        m.file(ZIP_FILE).map(|f| f.sha256) == Some(zip_digest) && m.file(MOD_FILE).map(|f| f.sha256) == Some(mod_digest)
    };
    let conflict = || {
        ApiError::Store(intact_store::Error::Conflict {
            what: format!(
                "{module}@{version_str} in repo {} (a published version never changes; publish a new version)",
                repo.name
            ),
            diff: None,
        })
    };
    if let Some(existing) = store.has_version(&repo.name, &name, &version).await? {
        return if same_content(&existing) {
            Ok(answer(StatusCode::OK, &existing))
        } else {
            Err(conflict())
        };
    }

    let now = Timestamp::from_system(std::time::SystemTime::now());
    let info =
        Info::new(version_str.clone(), now.to_rfc3339_seconds()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let info_blob = layout::pending_from_bytes(store, &info.to_json())
        .await
        .map_err(internal)?;
    let metadata = json!({
        "module": module,
        "h1": checked.h1,
        "zip_files": checked.files,
        "go_mod_h1": go_mod_h1,
        "source": "publish",
    });
    let files = vec![(INFO_FILE, info_blob), (MOD_FILE, mod_blob), (ZIP_FILE, zip_blob)];
    match layout::commit(store, &repo.name, &name, &version, files, metadata)
        .await
        .map_err(internal)?
    {
        Committed::New(m) => {
            tracing::info!(repo = %repo.name, %module, version = %version_str, h1 = %checked.h1, "published go module");
            Ok(answer(StatusCode::CREATED, &m))
        }
        // A concurrent publish of the same version won the race.
        Committed::Existing(m) => {
            if same_content(&m) {
                Ok(answer(StatusCode::OK, &m))
            } else {
                Err(conflict())
            }
        }
    }
}

fn internal(e: super::error::ProxyError) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// Streams the request body into a temp file, refusing more than the module zip limit or
/// `limits.max_file_bytes`, whichever is smaller.
async fn receive(
    body: Body,
    tmp_dir: std::path::PathBuf,
    max_file_bytes: Option<u64>,
) -> ApiResult<tempfile::TempPath> {
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(|e| ApiError::Internal(format!("creating {}: {e}", tmp_dir.display())))?;
    let temp = tokio::task::spawn_blocking(move || tempfile::Builder::new().prefix("go-publish-").tempfile_in(tmp_dir))
        .await
        .map_err(|e| ApiError::Internal(format!("temp file task: {e}")))?
        .map_err(|e| ApiError::Internal(format!("creating temp file: {e}")))?;
    let (std_file, path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(std_file);
    let mut stream = body.into_data_stream();
    let mut n: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad("body", format!("request body failed: {e}")))?;
        n += chunk.len() as u64;
        if let Some(max) = max_file_bytes
            && n > max
            && max < gozip::MAX_ZIP_FILE
        {
            return Err(crate::limits::body::file_too_large(max));
        }
        if n > gozip::MAX_ZIP_FILE {
            return Err(ApiError::bad(
                "body",
                format!("a module zip is at most {} bytes", gozip::MAX_ZIP_FILE),
            ));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(format!("writing temp file: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::Internal(format!("writing temp file: {e}")))?;
    if n == 0 {
        return Err(ApiError::bad(
            "body",
            "empty body: send the module zip (intact go publish builds it)",
        ));
    }
    Ok(path)
}
