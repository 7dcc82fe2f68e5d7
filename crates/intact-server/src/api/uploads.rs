//! Resumable uploads (`/api/v1/transactions/{id}/uploads`): a file sent in as many requests
//! as it takes, each continuing at the offset the server holds durably, OCI-distribution
//! style (`PATCH` with `Content-Range`, `HEAD` for the offset, `416` with the offset when a
//! piece starts elsewhere). See docs/http-api.md#resumable-uploads and the store's
//! `resumable` module.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use intact_core::{Digest, FilePath, TxnId};
use intact_store::UploadSession;
use serde::Deserialize;
use tokio_util::io::StreamReader;

use super::error::{ApiError, ApiResult};
use super::transactions::expected_checksum;
use crate::limits::body::{LimitedReader, file_limit_of, file_too_large};
use crate::openapi::schemas::StagedFile;
use crate::state::AppState;

/// Starts a resumable upload of one file.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUpload {
    /// The file's path in the version.
    pub path: String,
    /// The file's size, when known: bytes past it are refused, and completion needs exactly
    /// this many.
    #[serde(default)]
    pub size: Option<u64>,
    /// The file's sha256 (hex), when known: completion refuses other bytes.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// `Upload-Offset: N` and `Range: 0-(N-1)` (what OCI registries send; no `Range` at 0).
pub(crate) fn offset_headers(headers: &mut HeaderMap, offset: u64) {
    headers.insert("upload-offset", HeaderValue::from(offset));
    if offset > 0
        && let Ok(v) = HeaderValue::from_str(&format!("0-{}", offset - 1))
    {
        headers.insert(header::RANGE, v);
    }
}

fn location(id: &TxnId, upload: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("/api/v1/transactions/{id}/uploads/{upload}")).ok()
}

/// The session as answered: its id, path, offset and declarations.
fn answer(status: StatusCode, session: &UploadSession) -> Response {
    let mut resp = (status, Json(session)).into_response();
    offset_headers(resp.headers_mut(), session.offset);
    if let Some(loc) = location(&session.txn, &session.upload) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

fn ids(path: Result<Path<(String, String)>, PathRejection>) -> ApiResult<(TxnId, String)> {
    let Path((id, upload)) = path?;
    let id = TxnId::parse(&id)?;
    // Ids the server makes: 32 lowercase hex characters. Anything else was never one.
    if upload.len() != 32 || !upload.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(ApiError::NotFound(format!("upload {upload}")));
    }
    Ok((id, upload))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<CreateUpload>, JsonRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    let id = TxnId::parse(&id)?;
    let Json(req) = body?;
    let file_path = FilePath::parse(&req.path).map_err(|e| intact_core::ValidationError { field: "path", ..e })?;
    let sha256 = req
        .sha256
        .as_deref()
        .map(|s| Digest::parse(s.trim()).map_err(|e| intact_core::ValidationError { field: "sha256", ..e }))
        .transpose()?;
    if let (Some(size), Some(max)) = (req.size, state.limits.settings.max_file_bytes)
        && size > max
    {
        return Err(file_too_large(max));
    }
    let session = state
        .store
        .start_upload_session(&id, file_path, req.size, sha256)
        .await?;
    Ok(answer(StatusCode::CREATED, &session))
}

pub(crate) async fn status(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Response> {
    let (id, upload) = ids(path)?;
    let session = state.store.upload_session(&id, &upload).await?;
    Ok(answer(StatusCode::OK, &session))
}

/// Where a request's bytes go: `Content-Range: bytes START-END/TOTAL` (or `START-END`, or
/// `/*` for an unknown total, OCI's form without `bytes`), or, without one, the offset the
/// upload is at. END and TOTAL are checked against the body's length and the declared size.
struct ContentRange {
    start: u64,
    /// Bytes the range says the body holds.
    len: Option<u64>,
    total: Option<u64>,
}

fn content_range(headers: &HeaderMap) -> ApiResult<Option<ContentRange>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad(
            "content-range",
            "must be `bytes START-END/TOTAL` (END inclusive, TOTAL a number or *), or `START-END`",
        )
    };
    let text = v.to_str().map_err(|_| bad())?.trim();
    let text = text.strip_prefix("bytes").map_or(text, str::trim_start);
    let (range, total) = match text.split_once('/') {
        Some((range, "*")) => (range, None),
        Some((range, total)) => (range, Some(total.trim().parse::<u64>().map_err(|_| bad())?)),
        None => (text, None),
    };
    let (start, end) = range.trim().split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(ApiError::bad("content-range", "END comes before START"));
    }
    if total.is_some_and(|t| end >= t) {
        return Err(ApiError::bad("content-range", "END is past TOTAL"));
    }
    // END is inclusive: a range up to u64::MAX holds one byte more than a u64 counts.
    let len = (end - start)
        .checked_add(1)
        .ok_or_else(|| ApiError::bad("content-range", "the range holds more bytes than a file can"))?;
    Ok(Some(ContentRange {
        start,
        len: Some(len),
        total,
    }))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Appends the body at the offset `Content-Range` names (or the upload's offset). `202`
/// with the new offset; what arrived before a broken body is kept and counted.
pub(crate) async fn append(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let (id, upload) = ids(path)?;
    let offset = receive(&state, &id, &upload, &headers, body).await?;
    let mut resp = StatusCode::ACCEPTED.into_response();
    offset_headers(resp.headers_mut(), offset);
    if let Some(loc) = location(&id, &upload) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

/// Streams a request body into upload `upload`; the offset afterwards.
async fn receive(state: &AppState, id: &TxnId, upload: &str, headers: &HeaderMap, body: Body) -> ApiResult<u64> {
    let range = content_range(headers)?;
    let length = declared_length(headers);
    let session = state.store.upload_session(id, upload).await?;
    let start = range.as_ref().map_or(session.offset, |r| r.start);
    if let Some(r) = &range {
        if let (Some(len), Some(length)) = (r.len, length)
            && len != length
        {
            return Err(ApiError::bad(
                "content-range",
                format!("names {len} bytes but Content-Length is {length}"),
            ));
        }
        if let (Some(total), Some(size)) = (r.total, session.size)
            && total != size
        {
            return Err(ApiError::bad(
                "content-range",
                format!("says the file has {total} bytes; the upload declared {size}"),
            ));
        }
    }
    let max = state.limits.settings.max_file_bytes;
    if let (Some(max), Some(length)) = (max, length)
        && start.saturating_add(length) > max
    {
        return Err(file_too_large(max));
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let mut reader = LimitedReader::new(StreamReader::new(stream), max.map(|m| m.saturating_sub(start)));
    // A body never stores more than its range names (a chunked body has no length to check
    // first): what lies past it is not counted.
    let want = range.as_ref().and_then(|r| r.len);
    let appended = {
        use tokio::io::AsyncReadExt;
        let mut named = (&mut reader).take(want.unwrap_or(u64::MAX));
        state.store.append_upload(id, upload, start, &mut named).await
    };
    if let (Ok(offset), Some(want)) = (&appended, want)
        && *offset == start + want
    {
        use tokio::io::AsyncReadExt;
        let mut past = [0u8; 1];
        if matches!(reader.read(&mut past).await, Ok(n) if n > 0) {
            return Err(ApiError::bad(
                "content-range",
                format!("named {want} bytes from {start}, the body held more: those {want} were kept, the rest not"),
            ));
        }
    }
    match appended {
        Ok(offset) => {
            if let Some(want) = range.as_ref().and_then(|r| r.len)
                && offset != start + want
            {
                return Err(ApiError::bad(
                    "content-range",
                    format!("named {want} bytes from {start}, the body held {}", offset - start),
                ));
            }
            Ok(offset)
        }
        // The limit is on the whole file, not on what was left of it for this request.
        Err(intact_store::Error::Body(e)) if file_limit_of(&e).is_some() => Err(file_too_large(max.unwrap_or(0))),
        Err(e) => Err(e.into()),
    }
}

/// Completes the upload (with an optional last piece as the body): `201` with the staged
/// file, as `PUT .../files/{path}` answers.
pub(crate) async fn complete(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let (id, upload) = ids(path)?;
    let expected = expected_checksum(&headers)?;
    let has_body = declared_length(&headers).is_some_and(|n| n > 0)
        || headers.contains_key(header::TRANSFER_ENCODING)
        || headers.contains_key(header::CONTENT_RANGE);
    if has_body {
        receive(&state, &id, &upload, &headers, body).await?;
    }
    let entry = state.store.complete_upload(&id, &upload, expected).await?;
    Ok((
        StatusCode::CREATED,
        Json(StagedFile {
            path: entry.path,
            size: entry.size,
            sha256: entry.sha256,
        }),
    )
        .into_response())
}

pub(crate) async fn discard(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Response> {
    let (id, upload) = ids(path)?;
    state.store.discard_upload(&id, &upload).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::content_range;

    /// START, the length the range names, TOTAL.
    type Parsed = (u64, Option<u64>, Option<u64>);

    fn parse(v: &str) -> Result<Option<Parsed>, String> {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(v).map_err(|e| e.to_string())?,
        );
        content_range(&h)
            .map(|r| r.map(|r| (r.start, r.len, r.total)))
            .map_err(|e| format!("{e:?}"))
    }

    /// Every spelling either parses to what it says or is a 400 naming the header, never a
    /// panic (a range ending at u64::MAX overflowed the length).
    #[test]
    fn content_ranges_parse_or_are_refused() {
        assert_eq!(parse("bytes 0-9/20"), Ok(Some((0, Some(10), Some(20)))));
        assert_eq!(parse("bytes 10-19/*"), Ok(Some((10, Some(10), None))));
        assert_eq!(parse("5-5"), Ok(Some((5, Some(1), None))));
        assert_eq!(
            parse("bytes 1-18446744073709551614"),
            Ok(Some((1, Some(u64::MAX - 1), None)))
        );
        for bad in [
            "bytes 0-18446744073709551615",
            "bytes 9-0",
            "bytes 0-20/20",
            "bytes 0-18446744073709551616",
            "bytes -1-5",
            "bytes x-5",
            "bytes 0-5/x",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
