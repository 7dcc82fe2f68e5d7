//! `POST /api/v1/blobs/missing`: which of a list of digests the store lacks, so a client
//! re-publishing mostly unchanged files uploads only the rest and adds the others by digest
//! (`PUT .../files/{path}` with `x-blob-sha256` and no body).
//!
//! A digest grants nothing the caller could not read: stored bytes count as held for a caller
//! only when a committed version of a repo they may read holds them (or their own
//! transaction staged them). Bytes only in repos hidden from them, or staged in someone
//! else's open transaction, are "missing" to them: uploading them is the only way in.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, State};
use futures::StreamExt;
use intact_core::Digest;
use intact_store::tokens::Access;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use crate::http::Caller;
use crate::state::AppState;

/// How many committed files holding a digest are looked at for one the caller may read.
const USERS_LOOKED_AT: u32 = 64;
/// Digests checked at once by `missing`.
const CHECKED_AT_ONCE: usize = 16;

/// The size of the stored bytes `digest` as the caller may use them: recorded by a committed
/// file of a repo the caller may read, or by a file staged in `txn` (the caller's own
/// transaction). `None` when there is none: a digest never grants a read the caller lacks.
pub(crate) async fn usable_size(
    state: &AppState,
    caller: &Caller,
    digest: &Digest,
    txn: Option<&intact_core::TxnId>,
) -> ApiResult<Option<u64>> {
    if let Some(size) = committed_size(state, caller, digest).await? {
        return Ok(Some(size));
    }
    // Read only when needed: a transaction of thousands of files would be read whole for
    // every file added.
    let Some(txn) = txn else {
        return Ok(None);
    };
    let staged = state.store.txn(txn).await?;
    Ok(staged.files.iter().find(|f| f.sha256 == *digest).map(|f| f.size))
}

/// The size a committed file of a repo the caller may read records for `digest`.
async fn committed_size(state: &AppState, caller: &Caller, digest: &Digest) -> ApiResult<Option<u64>> {
    for user in state.store.blob_users(digest, USERS_LOOKED_AT).await? {
        if !caller.may(state, user.repo.as_str(), Access::Read) {
            continue;
        }
        match state.store.manifest(&user.repo, &user.name, &user.version).await {
            Ok(m) => {
                if let Some(f) = m.file(user.path.as_str()) {
                    return Ok(Some(f.size));
                }
            }
            // Deleted meanwhile: another holder may do.
            Err(intact_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// The most digests one request may ask about.
pub const MAX_DIGESTS: usize = 10_000;

/// The digests to look up (sha256, hex).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MissingRequest {
    /// At most 10,000 sha256 digests (64 hex characters each).
    digests: Vec<String>,
}

/// Those of the digests asked about that the store does not hold, in the order asked, each
/// once.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MissingAnswer {
    missing: Vec<Digest>,
}

pub(crate) async fn missing(
    State(state): State<AppState>,
    caller: Extension<Caller>,
    body: Result<Json<MissingRequest>, JsonRejection>,
) -> ApiResult<Json<MissingAnswer>> {
    let Json(req) = body?;
    if req.digests.len() > MAX_DIGESTS {
        return Err(ApiError::bad(
            "digests",
            format!("at most {MAX_DIGESTS} digests per request ({} sent)", req.digests.len()),
        ));
    }
    let mut asked = Vec::with_capacity(req.digests.len());
    for (i, text) in req.digests.iter().enumerate() {
        let digest = Digest::parse(text.trim())
            .map_err(|e| ApiError::bad("digests", format!("entry {i} ({text:?}) is not a sha256: {}", e.rule)))?;
        asked.push(digest);
    }
    let in_store = state.store.stored_blobs(&asked).await?;
    // Held for this caller: in the store, and in a version they may read.
    let checks = futures::stream::iter(in_store)
        .map(|d| {
            let (state, caller) = (&state, &caller);
            async move { usable_size(state, caller, &d, None).await.map(|size| size.map(|_| d)) }
        })
        .buffer_unordered(CHECKED_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    let mut stored = std::collections::HashSet::new();
    for held in checks {
        if let Some(d) = held? {
            stored.insert(d);
        }
    }
    let mut seen = std::collections::HashSet::new();
    let missing = asked
        .into_iter()
        .filter(|d| !stored.contains(d) && seen.insert(*d))
        .collect();
    Ok(Json(MissingAnswer { missing }))
}
