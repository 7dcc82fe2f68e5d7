//! The `.info` document of the module proxy protocol: `{"Version": "...", "Time": "..."}`.

use serde::{Deserialize, Serialize};

use crate::{GoError, semver};

/// A version's metadata as served at `$module/@v/$version.info` and `$module/@latest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The canonical version, e.g. `v1.2.3`; always valid semver once parsed.
    #[serde(rename = "Version")]
    pub version: String,
    /// The commit time in RFC 3339, e.g. `2019-11-09T02:19:31Z`. Go's own proxy always sends
    /// it, but the go command tolerates its absence, so parsing does too (empty string);
    /// when not empty it is a valid RFC 3339 timestamp.
    #[serde(rename = "Time", default, skip_serializing_if = "String::is_empty")]
    pub time: String,
    /// Where the version came from (VCS, URL, ref, hash), as newer go commands report it;
    /// kept opaque so a cached document is served back unchanged.
    #[serde(rename = "Origin", default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<serde_json::Value>,
}

impl Info {
    /// An `Info` for `version` at `time` (RFC 3339), both checked.
    pub fn new(version: impl Into<String>, time: impl Into<String>) -> Result<Info, GoError> {
        let info = Info {
            version: version.into(),
            time: time.into(),
            origin: None,
        };
        info.validate()?;
        Ok(info)
    }

    /// The document as the proxy protocol serves it.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing strings and a JSON value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn validate(&self) -> Result<(), GoError> {
        if !semver::is_valid(&self.version) {
            return Err(GoError::InvalidInfo {
                reason: format!("Version {:?} is not a valid semantic version", self.version),
            });
        }
        if !self.time.is_empty() && !is_rfc3339(&self.time) {
            return Err(GoError::InvalidInfo {
                reason: format!("Time {:?} is not an RFC 3339 timestamp", self.time),
            });
        }
        Ok(())
    }
}

/// Parses and checks a `.info` document.
pub fn parse_info(bytes: &[u8]) -> Result<Info, GoError> {
    let info: Info = serde_json::from_slice(bytes).map_err(|e| GoError::InvalidInfo { reason: e.to_string() })?;
    info.validate()?;
    Ok(info)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, what Go's `time.Time` reads from JSON.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            .then(|| s[r].parse::<u32>().unwrap_or(u32::MAX))
    };
    let (Some(_year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't'))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return false;
    }
    if !((1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60 && second < 60) {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
                && (h1 - b'0') * 10 + (h2 - b'0') < 24
                && (m1 - b'0') * 10 + (m2 - b'0') < 60
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_documents() {
        let info = parse_info(br#"{"Version":"v1.5.2","Time":"2018-02-14T15:44:20Z"}"#).unwrap();
        assert_eq!(info.version, "v1.5.2");
        assert_eq!(info.time, "2018-02-14T15:44:20Z");
        assert_eq!(info.origin, None);

        let info = parse_info(
            br#"{"Version":"v0.0.0-20191109021931-daa7c04131f5","Time":"2019-11-09T02:19:31.123+01:00","Origin":{"VCS":"git","Hash":"daa7c04131f5"},"Extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            info.origin.as_ref().and_then(|o| o.get("VCS")).and_then(|v| v.as_str()),
            Some("git")
        );
        // Origin survives a round trip; unknown fields are dropped, as Go drops them.
        let again = parse_info(&info.to_json()).unwrap();
        assert_eq!(again, info);

        assert_eq!(parse_info(br#"{"Version":"v1.0.0"}"#).unwrap().time, "");
    }

    #[test]
    fn rejects_bad_documents() {
        for doc in [
            &br#"{"Version":"1.0.0","Time":"2018-02-14T15:44:20Z"}"#[..],
            br#"{"Version":"latest","Time":"2018-02-14T15:44:20Z"}"#,
            br#"{"Time":"2018-02-14T15:44:20Z"}"#,
            br#"{"Version":"v1.0.0","Time":"yesterday"}"#,
            br#"{"Version":"v1.0.0","Time":"2018-13-14T15:44:20Z"}"#,
            br#"{"Version":"v1.0.0","Time":"2018-02-14 15:44:20Z"}"#,
            br#"{"Version":"v1.0.0","Time":"2018-02-14T15:44:20"}"#,
            br#"{"Version":"v1.0.0","Time":"2018-02-14T15:44:20.Z"}"#,
            br#"{"Version":"v1.0.0","Time":"2018-02-14T15:44:20+1:00"}"#,
            br#"{"Version":5}"#,
            b"not json",
            b"",
        ] {
            assert!(
                matches!(parse_info(doc), Err(GoError::InvalidInfo { .. })),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
    }

    #[test]
    fn serializes_like_go() {
        let info = Info::new("v1.0.0", "2020-01-02T03:04:05Z").unwrap();
        assert_eq!(info.to_json(), br#"{"Version":"v1.0.0","Time":"2020-01-02T03:04:05Z"}"#);
        assert!(Info::new("v1", "2020-01-02T03:04:05Z").is_ok());
        assert!(Info::new("1.0", "2020-01-02T03:04:05Z").is_err());
    }
}
