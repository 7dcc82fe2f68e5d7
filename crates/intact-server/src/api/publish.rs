//! One-request publish for curl users: `multipart/form-data` with `name`, `version`,
//! optional `metadata` (a JSON object), `idempotency_key`, `lease_seconds`, then any number
//! of file parts. Runs the same transaction protocol: nothing is visible unless every part
//! arrived whole, and a failure rolls everything back.
//!
//! The transaction opens at the first file part, with the text fields read so far, and file
//! bytes stream straight into it; so a text field after a file part could only be ignored,
//! and is refused instead (as is a text field given twice).
//!
//! A file part's path in the version is its field name, unless the field is named `file`
//! (or `files`), in which case it is the part's file name: `-F file=@a.exr` stores `a.exr`,
//! `-F 'frames/0001.exr=@./local.exr'` stores `frames/0001.exr`.

use axum::Json;
use axum::extract::multipart::Field;
use axum::extract::rejection::PathRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use intact_core::{ContentDiff, DigestHasher, FileEntry, FilePath, Manifest};
use intact_store::{CommitOutcome, OpenOutcome, TxnRecord};
use tokio_util::io::StreamReader;

use super::error::{ApiError, ApiResult};
use super::transactions::CreateTxn;
use super::writable_repo;
use crate::limits::body::{LimitedReader, body_too_large, check_metadata, file_too_large};
use crate::state::AppState;

/// Reads a text field of at most `max` bytes (`limits.max_body_bytes`).
async fn text_field(mut field: Field<'_>, name: &'static str, max: u64) -> ApiResult<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| ApiError::bad("body", e.body_text()))? {
        buf.extend_from_slice(&chunk);
        if u64::try_from(buf.len()).unwrap_or(u64::MAX) > max {
            return Err(body_too_large(name, max));
        }
    }
    String::from_utf8(buf).map_err(|_| ApiError::bad(name, "must be UTF-8 text"))
}

/// The text fields a publish takes, in the order the docs give them.
const TEXT_FIELDS: [&str; 5] = ["name", "version", "metadata", "idempotency_key", "lease_seconds"];

#[derive(Default)]
struct Fields {
    name: Option<String>,
    version: Option<String>,
    metadata: Option<serde_json::Value>,
    idempotency_key: Option<String>,
    lease_seconds: Option<u64>,
}

impl Fields {
    fn has(&self, field: &str) -> bool {
        match field {
            "name" => self.name.is_some(),
            "version" => self.version.is_some(),
            "metadata" => self.metadata.is_some(),
            "idempotency_key" => self.idempotency_key.is_some(),
            _ => self.lease_seconds.is_some(),
        }
    }
}

/// What opening the publish's transaction gave: a transaction to fill, or (the idempotency
/// key already published a version) that version, which the parts sent must match.
enum Opened {
    Txn(TxnRecord, Owner),
    Done(Manifest),
}

/// Hashes a file part without storing it (a retry under a used idempotency key: its parts
/// are only compared with what the key published).
async fn hash_part(mut field: Field<'_>, path: FilePath, max_file_bytes: Option<u64>) -> ApiResult<FileEntry> {
    let mut hasher = DigestHasher::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| ApiError::bad("body", e.body_text()))? {
        hasher.update(&chunk);
        if let Some(max) = max_file_bytes
            && hasher.len() > max
        {
            return Err(file_too_large(max));
        }
    }
    Ok(FileEntry {
        path,
        size: hasher.len(),
        sha256: hasher.finish(),
    })
}

/// The answer to a publish whose idempotency key already published `m`: the same version
/// again when the parts sent are its content, else a reused key (the parts were never
/// published, and a `200` would say they were).
fn answer_retry(m: &Manifest, sent: &[FileEntry], fields: &Fields) -> ApiResult<Response> {
    let metadata = fields.metadata.clone().unwrap_or_else(|| serde_json::json!({}));
    let diff = ContentDiff::between(&m.files, &m.metadata, sent, &metadata);
    if diff.is_empty() {
        return Ok((StatusCode::OK, Json(m)).into_response());
    }
    Err(intact_store::Error::IdempotencyMismatch {
        key: fields.idempotency_key.clone().unwrap_or_default(),
        detail: format!(
            "it published {}/{}@{}, whose content differs from these parts: {diff}; nothing was published",
            m.repo, m.name, m.version
        ),
    }
    .into())
}

/// Who opened the transaction a publish fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// This request: on failure it rolls the transaction back.
    This,
    /// An earlier request with the same idempotency key, maybe still uploading: a failure of
    /// this retry leaves the transaction to it (and to its lease).
    Earlier,
}

async fn open_txn(
    state: &AppState,
    repo: &intact_core::RepoName,
    headers: &HeaderMap,
    fields: &Fields,
    context: &str,
) -> ApiResult<Opened> {
    let (Some(name), Some(version)) = (fields.name.clone(), fields.version.clone()) else {
        return Err(ApiError::bad("body", context.to_owned()));
    };
    let req = CreateTxn {
        name,
        version,
        metadata: fields.metadata.clone(),
        lease_seconds: fields.lease_seconds,
        idempotency_key: fields.idempotency_key.clone(),
        wait_seconds: None,
        import: false,
        from_version: None,
    };
    Ok(match state.store.begin(req.into_begin(repo, headers)?).await? {
        OpenOutcome::Created(t) => Opened::Txn(t, Owner::This),
        OpenOutcome::Resumed(t) => Opened::Txn(t, Owner::Earlier),
        OpenOutcome::Committed(_, m) => Opened::Done(m),
    })
}

/// Rolls a transaction back when dropped while armed (the handler was cancelled).
struct RollbackOnDrop {
    store: std::sync::Arc<intact_store::Store>,
    id: Option<intact_core::TxnId>,
    /// Where the rollback runs: a handler cancelled at the end of a shutdown's grace is
    /// dropped by its serving thread just before that thread's runtime ends, and a rollback
    /// spawned there would never run.
    background: Option<tokio::runtime::Handle>,
}

impl Drop for RollbackOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let store = self.store.clone();
        // Tracked, so a shutting-down server waits for it.
        intact_store::cleanup::spawn_on(
            self.background.as_ref(),
            "rolling back a cancelled publish",
            async move {
                if let Err(e) = store.abort(&id).await {
                    tracing::warn!(txn = %id, error = %e, "rollback of a cancelled publish");
                }
            },
        );
    }
}

pub(crate) async fn publish(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    let Path(repo) = path?;
    let repo = writable_repo(&state, &repo)?.name.clone();
    let mut multipart = multipart.map_err(|e| ApiError::bad("body", e.body_text()))?;
    let limits = &state.limits.settings;
    let max_text = limits.max_body_bytes;
    let mut fields = Fields::default();
    let mut txn: Option<TxnRecord> = None;
    let mut owns_txn = false;
    // Set when the idempotency key already published a version: the parts are then hashed
    // (into `sent`) and compared with it, never stored.
    let mut published: Option<Manifest> = None;
    let mut sent: Vec<FileEntry> = Vec::new();
    // The path of the first file part, once one arrived: text fields are over by then.
    let mut first_file: Option<String> = None;
    // If the connection drops and hyper cancels this handler mid-publish, the code after the
    // body never runs: the guard rolls the transaction back instead of leaving the version
    // locked until its lease runs out.
    let mut guard = RollbackOnDrop {
        store: state.store.clone(),
        id: None,
        background: state.background.clone(),
    };

    let result: ApiResult<Response> = async {
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::bad("body", e.body_text()))?
        {
            let field_name = field.name().unwrap_or_default().to_owned();
            if field.file_name().is_none() {
                let Some(&text_name) = TEXT_FIELDS.iter().find(|f| **f == field_name) else {
                    return Err(ApiError::bad(
                        "body",
                        format!("unknown field {field_name:?} (file parts need a file name: -F 'path=@file')"),
                    ));
                };
                if let Some(first_file) = &first_file {
                    return Err(ApiError::bad(
                        text_name,
                        format!(
                            "text fields ({}) must come before the first file part; this one followed file part {first_file:?}",
                            TEXT_FIELDS.join(", ")
                        ),
                    ));
                }
                if fields.has(text_name) {
                    return Err(ApiError::bad(text_name, "given more than once"));
                }
                match text_name {
                    "name" => fields.name = Some(text_field(field, "name", max_text).await?),
                    "version" => fields.version = Some(text_field(field, "version", max_text).await?),
                    "metadata" => {
                        let text = text_field(field, "metadata", max_text).await?;
                        let v: serde_json::Value = serde_json::from_str(&text)
                            .map_err(|e| ApiError::bad("metadata", format!("not JSON: {e}")))?;
                        check_metadata(Some(&v), limits.max_metadata_bytes)?;
                        fields.metadata = Some(v);
                    }
                    "idempotency_key" => fields.idempotency_key = Some(text_field(field, "idempotency_key", max_text).await?),
                    _ => {
                        let t = text_field(field, "lease_seconds", max_text).await?;
                        fields.lease_seconds = Some(
                            t.trim()
                                .parse()
                                .map_err(|_| ApiError::bad("lease_seconds", "must be an integer"))?,
                        );
                    }
                }
                continue;
            }
            if let Some(&text_name) = TEXT_FIELDS.iter().find(|f| **f == field_name) {
                // `-F name=@file` uploads a file where the text field was meant; storing it as a
                // file called `name` would publish something else than asked.
                return Err(ApiError::bad(
                    text_name,
                    format!(
                        "{text_name} is a text field but this part carries a file name; send it as text (-F {text_name}=value), or name the file part after its path"
                    ),
                ));
            }
            let path = match field_name.as_str() {
                "file" | "files" | "" => field.file_name().unwrap_or_default().to_owned(),
                _ => field_name.clone(),
            };
            let path = FilePath::parse(&path)?;
            first_file.get_or_insert_with(|| path.to_string());
            if txn.is_none() && published.is_none() {
                match open_txn(
                    &state,
                    &repo,
                    &headers,
                    &fields,
                    "the name and version fields must come before the first file part",
                )
                .await?
                {
                    Opened::Txn(t, owner) => {
                        if owner == Owner::This {
                            guard.id = Some(t.id.clone());
                        }
                        owns_txn = owner == Owner::This;
                        txn = Some(t);
                    }
                    Opened::Done(m) => published = Some(m),
                }
            }
            if published.is_some() {
                sent.push(hash_part(field, path, limits.max_file_bytes).await?);
                continue;
            }
            let Some(t) = txn.as_ref() else { continue };
            let stream = field.map_err(std::io::Error::other);
            let mut reader = LimitedReader::new(StreamReader::new(stream), limits.max_file_bytes);
            state.store.put_file(&t.id, path, &mut reader, None, None).await?;
        }
        if let Some(m) = &published {
            return answer_retry(m, &sent, &fields);
        }
        let t = match txn.as_ref() {
            Some(t) => t.clone(),
            None => {
                // A publish without files: a metadata-only version.
                match open_txn(&state, &repo, &headers, &fields, "fields name and version are required").await? {
                    Opened::Txn(t, owner) => {
                        if owner == Owner::This {
                            guard.id = Some(t.id.clone());
                        }
                        owns_txn = owner == Owner::This;
                        txn = Some(t.clone());
                        t
                    }
                    Opened::Done(m) => return answer_retry(&m, &sent, &fields),
                }
            }
        };
        Ok(match state.store.commit(&t.id).await? {
            CommitOutcome::Committed(m) => (StatusCode::CREATED, Json(m)).into_response(),
            CommitOutcome::AlreadyCommitted(m) => (StatusCode::OK, Json(m)).into_response(),
        })
    }
    .await;

    guard.id = None;
    // A keyed retry that resumed an earlier request's open transaction leaves it to that
    // request (which may still be uploading) and to its lease.
    if result.is_err()
        && owns_txn
        && let Some(t) = &txn
    {
        // Roll back whatever this request staged; nothing of it becomes visible.
        if let Err(e) = state.store.abort(&t.id).await {
            tracing::warn!(txn = %t.id, error = %e, "rollback after failed publish");
        }
    }
    result
}
