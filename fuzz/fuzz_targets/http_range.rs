//! `Range` and `If-None-Match` headers of file reads: whatever the header says, a partial
//! answer lies inside the file, and a well-formed single range gets exactly what RFC 9110
//! prescribes (checked against a small model written from the RFC's grammar).
#![no_main]

use intact_server::http::serve_file::{RangeRequest, etag_matches, parse_range};
use libfuzzer_sys::fuzz_target;

/// The answer RFC 9110 §14 gives `value` for a file of `size` bytes, for the one spelling
/// intact serves ranges for (`bytes=` + one range, optional blanks); anything else (other units,
/// several ranges, bad syntax) may be ignored, which means sending the whole file.
fn model(value: &str, size: u64) -> RangeRequest {
    let blank = [' ', '\t'];
    let Some(spec) = value.trim_matches(blank).strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    let Some((first, last)) = spec.trim_matches(blank).split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim_matches(blank), last.trim_matches(blank));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // A position too large for u64 is past any file.
    let number = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
    if first.is_empty() {
        if !digits(last) {
            return RangeRequest::Full;
        }
        let n = number(last);
        if n == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Partial(size - n.min(size), size);
    }
    if !digits(first) || !(last.is_empty() || digits(last)) {
        return RangeRequest::Full;
    }
    let start = number(first);
    let end = if last.is_empty() {
        size
    } else {
        let l = number(last);
        if l < start {
            // Invalid range-spec: the field is ignored.
            return RangeRequest::Full;
        }
        l.saturating_add(1).min(size)
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(start, end)
}

fuzz_target!(|data: &[u8]| {
    let Some((&shift, rest)) = data.split_first() else {
        return;
    };
    if rest.len() < 8 {
        return;
    }
    let (size_bytes, text) = rest.split_at(8);
    let mut size_le = [0u8; 8];
    size_le.copy_from_slice(size_bytes);
    // Shift so small sizes (0, 1, a few bytes) come up as often as huge ones.
    let size = u64::from_le_bytes(size_le) >> (shift % 64);
    // The caller only ever sees header values that `HeaderValue::to_str` accepts.
    let Ok(value) = http::HeaderValue::from_bytes(text) else {
        return;
    };
    let Ok(text) = value.to_str() else { return };

    let got = parse_range(text, size);
    if let RangeRequest::Partial(start, end) = got {
        assert!(
            start < end && end <= size,
            "{text:?} on {size} bytes gave {start}..{end}"
        );
    }
    assert_eq!(got, model(text, size), "{text:?} on {size} bytes");

    // If-None-Match: the list is the header, the ETag is a quoted digest-like token.
    if let Some((list, etag)) = text.rsplit_once(';') {
        // intact's ETags are quoted hex digests: no quote, comma or blank inside.
        let etag: String = etag.chars().filter(char::is_ascii_alphanumeric).collect();
        let etag = format!("\"{etag}\"");
        let matched = etag_matches(list, &etag);
        let named = list
            .split(',')
            .map(|t| t.trim_matches([' ', '\t']))
            .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag.as_str()));
        assert_eq!(matched, named, "If-None-Match {list:?} vs {etag}");
        assert!(etag_matches(&etag, &etag));
        assert!(etag_matches(&format!("{list}, {etag}"), &etag));
    }
    assert!(etag_matches("*", "\"x\""));
});
