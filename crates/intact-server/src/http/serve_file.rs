//! Sending one committed file: `Range` (single and suffix ranges, `416` when unsatisfiable),
//! `HEAD`, `ETag` = sha256 with `If-None-Match`/`If-Range`, immutable cache headers. Shared by
//! every front-end, so all of them serve bytes the same way.
//!
//! The body streams from the blob with a bounded buffer: a slow client slows the file reads
//! instead of growing memory.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use intact_core::{FileEntry, Timestamp};
use std::sync::Arc;

use intact_store::Store;

const STREAM_CHUNK: usize = 256 * 1024;

/// A parsed `Range` header against a known size.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send everything.
    Full,
    /// Send `start..end` (end exclusive).
    Partial(u64, u64),
    /// Nothing of the file matches: `416`.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n`. Multiple ranges, other units and garbage
/// are answered with the whole file, as RFC 9110 allows.
pub fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last n bytes.
        let Some(n) = position(last) else {
            return RangeRequest::Full;
        };
        if n == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Partial(size.saturating_sub(n), size);
    }
    let Some(start) = position(first) else {
        return RangeRequest::Full;
    };
    let end = if last.is_empty() {
        size
    } else {
        match position(last) {
            Some(l) if l >= start => l.saturating_add(1).min(size),
            _ => return RangeRequest::Full,
        }
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(start, end)
}

/// A byte position: ASCII digits only (`u64::from_str` would also take a `+` sign). One too
/// large for u64 is still a valid position, past the end of any file.
fn position(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

pub fn etag_of(file: &FileEntry) -> String {
    let hex = file.sha256.hex();
    let mut etag = String::with_capacity(66);
    etag.push('"');
    etag.push_str(hex.as_str());
    etag.push('"');
    etag
}

/// `Cache-Control` of a committed version's bytes: they never change, so caches may keep them
/// for a year; `private` when reading them needed a token, so that a shared cache (a CDN, a
/// reverse proxy) never hands them to a caller without one.
pub fn immutable(private: bool) -> HeaderValue {
    if private {
        HeaderValue::from_static("private, max-age=31536000, immutable")
    } else {
        HeaderValue::from_static("public, max-age=31536000, immutable")
    }
}

/// Whether an `If-None-Match` list (`"a", W/"b"` or `*`) names `etag`.
pub fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

/// The headers of every answer with `file`'s bytes (or of a `304` for them), but its length
/// and range: type, `ETag` (`etag`, from [`etag_of`]), caching, sandboxing, modification
/// time and checksum.
pub fn file_headers(file: &FileEntry, etag: &str, content_type: &str, last_modified: Timestamp) -> HeaderMap {
    let mut resp_headers = HeaderMap::new();
    let ct = HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    resp_headers.insert(header::CONTENT_TYPE, ct);
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp_headers.insert(header::ETAG, v);
    }
    // `public`; the artifact API makes it `private` where reading needed a token.
    resp_headers.insert(header::CACHE_CONTROL, immutable(false));
    resp_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Stored files come from whoever published them (or from an upstream), yet are served
    // from intact's own origin: an HTML or SVG file opened in a browser would otherwise be a
    // same-origin page whose script could write here past the cross-site check. Sandboxed,
    // it is an opaque origin (scripts may still run, a report stays usable) whose writes
    // the guard refuses like any other site's; and nothing is sniffed into a page.
    resp_headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox allow-scripts allow-popups allow-downloads"),
    );
    resp_headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(last_modified.to_system())) {
        resp_headers.insert(header::LAST_MODIFIED, v);
    }
    resp_headers.insert(
        "x-checksum-sha256",
        HeaderValue::from_str(file.sha256.hex().as_str()).unwrap_or(HeaderValue::from_static("")),
    );
    resp_headers
}

/// Builds the response for `file`. `content_type` is the front-end's choice; a failure is a
/// storage outcome, which the front-end maps to its own answer (the Go proxy's text/plain,
/// the artifact API's JSON).
pub async fn send_file(
    store: &Arc<Store>,
    method: &Method,
    headers: &HeaderMap,
    file: &FileEntry,
    content_type: &str,
    last_modified: Timestamp,
) -> intact_store::Result<Response> {
    let etag = etag_of(file);
    let size = file.size;
    let mut resp_headers = file_headers(file, &etag, content_type, last_modified);

    if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok())
        && etag_matches(inm, &etag)
    {
        return Ok((StatusCode::NOT_MODIFIED, resp_headers).into_response());
    }

    let mut range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) => parse_range(r, size),
        None => RangeRequest::Full,
    };
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && if_range.trim() != etag
    {
        range = RangeRequest::Full;
    }

    let (status, byte_range) = match range {
        RangeRequest::Full => (StatusCode::OK, None),
        RangeRequest::Partial(s, e) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{}/{size}", e.saturating_sub(1))) {
                resp_headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, Some(s..e))
        }
        RangeRequest::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp_headers.insert(header::CONTENT_RANGE, v);
            }
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, resp_headers).into_response());
        }
    };
    let len = byte_range.as_ref().map_or(size, |r| r.end - r.start);
    resp_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));

    if method == Method::HEAD {
        // No body to check, but the answer must not promise bytes that are gone (lost, or
        // quarantined as damaged): one stat, and a proxy repo then fetches its copy again.
        if store.blobs().size(&file.sha256).await? != Some(size) {
            return Err(intact_store::Error::BlobMissing { digest: file.sha256 });
        }
        return Ok((status, resp_headers).into_response());
    }
    // A whole file is checked against its sha256 as it streams: a damaged blob ends the
    // response before its last bytes (the client sees a cut body, never a complete wrong one)
    // and is quarantined. So is a range that covers the whole file (`bytes=0-`, how many
    // download managers start): it is a whole download. Any other range cannot be checked
    // without reading the rest of the blob; the background scrubber covers those bytes.
    // A small file comes whole from memory (verified when it was first read); a range of it
    // is a slice of those bytes.
    if let Some(bytes) = store.small_file(file).await? {
        let body = match byte_range {
            Some(range) => {
                bytes.slice(usize::try_from(range.start).unwrap_or(0)..usize::try_from(range.end).unwrap_or(0))
            }
            None => bytes,
        };
        return Ok((status, resp_headers, Body::from(body)).into_response());
    }
    let read = match byte_range {
        Some(range) if !(range.start == 0 && range.end == size) => store.read_file(file, Some(range)).await?,
        _ => store.read_file_verified(file).await?,
    };
    // Size the buffer to the body: a 4 KiB file should not allocate a 256 KiB chunk.
    let chunk = usize::try_from(len).unwrap_or(STREAM_CHUNK).clamp(1, STREAM_CHUNK);
    let body = Body::from_stream(read.body.into_chunks(chunk));
    Ok((status, resp_headers, body).into_response())
}

/// A content type from a file name's extension; `application/octet-stream` otherwise.
pub fn content_type_for(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "json" => "application/json",
        "txt" | "log" | "md" | "mod" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "xml" => "application/xml",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "exr" => "image/x-exr",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeRequest::Partial(0, 10));
        assert_eq!(parse_range("bytes=90-", 100), RangeRequest::Partial(90, 100));
        assert_eq!(parse_range("bytes=-10", 100), RangeRequest::Partial(90, 100));
        assert_eq!(parse_range("bytes=-1000", 100), RangeRequest::Partial(0, 100));
        assert_eq!(parse_range("bytes=95-200", 100), RangeRequest::Partial(95, 100));
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), RangeRequest::Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Full);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Full);
        assert_eq!(parse_range("bytes=x-1", 100), RangeRequest::Full);
    }

    /// Found by the `http_range` fuzz target: positions are digits only (`u64::from_str` also
    /// takes a `+` sign), and a position too large for u64 is past the end of any file
    /// rather than a reason to ignore the header (RFC 9110 §14.1.2).
    #[test]
    fn positions_are_plain_digits_of_any_length() {
        assert_eq!(parse_range("bytes=-+39999", 100_000), RangeRequest::Full);
        assert_eq!(parse_range("bytes=+1-2", 100), RangeRequest::Full);
        assert_eq!(parse_range("bytes=1-+2", 100), RangeRequest::Full);
        let huge = "99999999999999999999999";
        assert_eq!(
            parse_range(&format!("bytes=-{huge}"), 100),
            RangeRequest::Partial(0, 100)
        );
        assert_eq!(
            parse_range(&format!("bytes=5-{huge}"), 100),
            RangeRequest::Partial(5, 100)
        );
        assert_eq!(parse_range(&format!("bytes={huge}-"), 100), RangeRequest::Unsatisfiable);
        assert_eq!(
            parse_range(&format!("bytes={huge}-{huge}"), 100),
            RangeRequest::Unsatisfiable
        );
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"abc\", \"def\"", "\"def\""));
        assert!(etag_matches("*", "\"x\""));
        assert!(etag_matches("W/\"x\"", "\"x\""));
        assert!(!etag_matches("\"y\"", "\"x\""));
    }
}
