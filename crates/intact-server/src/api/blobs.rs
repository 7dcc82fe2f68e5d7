//! `POST /api/v1/blobs/missing`: which of a list of digests the store lacks, so a client
//! re-publishing mostly unchanged files uploads only the rest and adds the others by digest
//! (`PUT .../files/{path}` with `x-blob-sha256` and no body).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use intact_core::Digest;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use crate::state::AppState;

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
    let stored = state.store.stored_blobs(&asked).await?;
    let mut seen = std::collections::HashSet::new();
    let missing = asked
        .into_iter()
        .filter(|d| !stored.contains(d) && seen.insert(*d))
        .collect();
    Ok(Json(MissingAnswer { missing }))
}
