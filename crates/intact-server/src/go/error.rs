//! The Go front-end's one mapping from outcomes to HTTP status codes.
//!
//! The GOPROXY protocol has two kinds of failure: "not here" (404/410), after which the go
//! command, and intact's group repos, try the next source; and everything else (5xx), which
//! stops a `,`-separated GOPROXY list so that an outage is reported rather than hidden behind
//! an older or different copy elsewhere. Bodies are `text/plain`: the go command prints such
//! a body after the status line, so the user reads *why*.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::reply::{BodyFormat, ErrorReply};

use intact_core::Timestamp;

use crate::singleflight::{Failure, FlightError, remembered_note};

/// Why a Go request could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Not in this repository, nor upstream (or the path names nothing intact can serve).
    #[error("{0}")]
    NotFound(String),
    /// The upstream answered 410 Gone; passed on as such.
    #[error("{0}")]
    Gone(String),
    /// The repo's allow/deny rules refuse the module or version (403: the go command stops
    /// there rather than trying the next GOPROXY entry).
    #[error("{0}")]
    Forbidden(String),
    /// The upstream failed: an unexpected status, a refused or cut connection, a truncated body.
    #[error("{0}")]
    Upstream(String),
    /// The upstream answered with content that breaks Go's rules; it was not cached.
    #[error("{0}")]
    InvalidUpstream(String),
    /// A bounded wait ran out; `what` names what was awaited.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    /// An upstream fetch ran past its overall deadline (`fetch_deadline_seconds`) and was
    /// abandoned; `what` names the fetch.
    #[error(
        "{what} did not finish within its deadline of {seconds}s (fetch_deadline_seconds): the upstream is too slow; nothing was cached"
    )]
    Deadline { what: String, seconds: u64 },
    /// A stored file's bytes are missing or damaged (quarantined): `intact verify` names the
    /// versions; a proxy repo fetches its copy again.
    #[error("{0}")]
    LostBytes(String),
    /// The disk under the store is full: nothing was cached. Resumes once space is freed.
    #[error("{0}")]
    InsufficientStorage(String),
    /// The catalog or the blob store could not be reached (down, restarting, the network to
    /// it failed): a moment's outage of this server, not a fault in the request or the
    /// module. Resumes by itself once they answer again.
    #[error("{0}")]
    Unavailable(String),
    /// A fault on this side (storage, temp files).
    #[error("{0}")]
    Internal(String),
}

impl ProxyError {
    /// "Not here": the next member of a group, or the next entry of a GOPROXY list, may have it.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_) | Self::Gone(_))
    }

    /// The upstream failed (unreachable, 5xx, bad content, too slow): what `strict` proxies
    /// answer with rather than hide.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            Self::Upstream(_) | Self::InvalidUpstream(_) | Self::Timeout { .. } | Self::Deadline { .. }
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Gone(_) => StatusCode::GONE,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Upstream(_) | Self::InvalidUpstream(_) => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } | Self::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::LostBytes(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// This failure as served again from the failure memory: same status, and the text says
    /// it is remembered, since and until when.
    pub fn remembered(&self, at: Timestamp, until: Timestamp) -> Self {
        let note = remembered_note(at, until);
        self.clone().map_text(|m| format!("{m} ({note})"))
    }

    /// The same failure with its text (or what it names, for timeouts) passed through `f`.
    pub fn map_text(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::NotFound(m) => Self::NotFound(f(m)),
            Self::Gone(m) => Self::Gone(f(m)),
            Self::Forbidden(m) => Self::Forbidden(f(m)),
            Self::Upstream(m) => Self::Upstream(f(m)),
            Self::InvalidUpstream(m) => Self::InvalidUpstream(f(m)),
            Self::Internal(m) => Self::Internal(f(m)),
            Self::InsufficientStorage(m) => Self::InsufficientStorage(f(m)),
            Self::Unavailable(m) => Self::Unavailable(f(m)),
            Self::LostBytes(m) => Self::LostBytes(f(m)),
            Self::Timeout { what, seconds } => Self::Timeout { what: f(what), seconds },
            Self::Deadline { what, seconds } => Self::Deadline { what: f(what), seconds },
        }
    }

    /// How much an error says about availability: when several sources fail, the answer is
    /// the most serious failure, so that a dead upstream is never reported as "not found".
    fn severity(&self) -> u8 {
        match self {
            Self::NotFound(_) => 0,
            Self::Gone(_) => 1,
            Self::Forbidden(_) => 2,
            Self::InvalidUpstream(_) => 3,
            Self::Upstream(_) => 4,
            Self::Timeout { .. } | Self::Deadline { .. } => 5,
            Self::InsufficientStorage(_) | Self::Unavailable(_) | Self::LostBytes(_) | Self::Internal(_) => 6,
        }
    }

    /// Keeps the more serious of two failures (the first one on a tie).
    pub fn worst(current: Option<Self>, next: Self) -> Self {
        match current {
            Some(c) if c.severity() >= next.severity() => c,
            _ => next,
        }
    }
}

/// Why each member of a repo could not answer. A group's answer is its most serious failure
/// (a dead upstream is never reported as "not found"), and its text gives every member's
/// reason: "a hosted member lacks it, a proxy member excludes it" rather than one of the two.
#[derive(Debug)]
pub struct MemberFailures {
    /// The group's name, or `None` for a repo that answers alone.
    group: Option<String>,
    reasons: Vec<(String, ProxyError)>,
}

impl MemberFailures {
    pub fn new(group: Option<&str>) -> Self {
        Self {
            group: group.map(str::to_owned),
            reasons: Vec::new(),
        }
    }

    pub fn add(&mut self, member: &str, e: ProxyError) {
        self.reasons.push((member.to_owned(), e));
    }

    /// The answer once no member could serve `what` (`fallback` when none gave a reason).
    pub fn into_error(self, what: &str, fallback: impl FnOnce() -> ProxyError) -> ProxyError {
        let worst_at = self
            .reasons
            .iter()
            .enumerate()
            .fold(None::<usize>, |best, (i, (_, e))| match best {
                Some(b) if self.reasons[b].1.severity() >= e.severity() => Some(b),
                _ => Some(i),
            });
        let Some(worst_at) = worst_at else {
            return fallback();
        };
        let Some(group) = self.group else {
            return self.reasons[worst_at].1.clone();
        };
        let reason = |(member, e): &(String, ProxyError)| {
            let text = e.to_string();
            let text = text.strip_prefix("not found: ").unwrap_or(&text).to_owned();
            format!("{member}: {text}")
        };
        let worst = self.reasons[worst_at].1.clone();
        if worst.is_not_found() {
            let all: Vec<String> = self.reasons.iter().map(reason).collect();
            let text = format!("{what} in group {group}: {}", all.join("; "));
            return match worst {
                ProxyError::Gone(_) => ProxyError::Gone(format!("gone: {text}")),
                _ => ProxyError::NotFound(format!("not found: {text}")),
            };
        }
        let worst_member = self.reasons[worst_at].0.clone();
        let others: Vec<String> = self
            .reasons
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != worst_at)
            .map(|(_, r)| reason(r))
            .collect();
        worst.map_text(|m| {
            if others.is_empty() {
                format!("{worst_member}: {m}")
            } else {
                format!("{worst_member}: {m}; other members of {group}: {}", others.join("; "))
            }
        })
    }
}

/// "Not here" and content that broke Go's rules are answers about the module version, worth
/// remembering for `failure_cache_seconds`; an outage, a cut body, a timeout or a local fault
/// says nothing about the next attempt.
impl Failure for ProxyError {
    fn is_definitive(&self) -> bool {
        // A refusal is never remembered: it comes from this repo's rules, which may change.
        matches!(self, Self::NotFound(_) | Self::Gone(_) | Self::InvalidUpstream(_))
    }
}

/// Recorded by kind and text (timeouts keep their seconds), so a follower on another replica
/// answers with the same status the leader's clients got.
impl crate::shared_flight::SharedFailure for ProxyError {
    fn record(&self) -> (String, String) {
        match self {
            Self::NotFound(m) => ("not_found".into(), m.clone()),
            Self::Gone(m) => ("gone".into(), m.clone()),
            Self::Forbidden(m) => ("forbidden".into(), m.clone()),
            Self::Upstream(m) => ("upstream".into(), m.clone()),
            Self::InvalidUpstream(m) => ("invalid_upstream".into(), m.clone()),
            Self::Timeout { what, seconds } => (format!("timeout:{seconds}"), what.clone()),
            Self::Deadline { what, seconds } => (format!("deadline:{seconds}"), what.clone()),
            Self::LostBytes(m) => ("lost_bytes".into(), m.clone()),
            Self::InsufficientStorage(m) => ("insufficient_storage".into(), m.clone()),
            Self::Unavailable(m) => ("unavailable".into(), m.clone()),
            Self::Internal(m) => ("internal".into(), m.clone()),
        }
    }

    fn rebuild(kind: &str, message: &str) -> Self {
        let m = message.to_owned();
        let seconds = |k: &str| kind.strip_prefix(k).and_then(|s| s.parse().ok());
        match kind {
            "not_found" => Self::NotFound(m),
            "gone" => Self::Gone(m),
            "forbidden" => Self::Forbidden(m),
            "upstream" => Self::Upstream(m),
            "invalid_upstream" => Self::InvalidUpstream(m),
            "lost_bytes" => Self::LostBytes(m),
            "insufficient_storage" => Self::InsufficientStorage(m),
            "unavailable" => Self::Unavailable(m),
            _ if kind.starts_with("timeout:") => Self::Timeout {
                what: m,
                seconds: seconds("timeout:").unwrap_or(0),
            },
            _ if kind.starts_with("deadline:") => Self::Deadline {
                what: m,
                seconds: seconds("deadline:").unwrap_or(0),
            },
            _ => Self::Internal(m),
        }
    }

    fn timed_out(what: &str, seconds: u64) -> Self {
        Self::Timeout {
            what: format!("{what} (led by another replica)"),
            seconds,
        }
    }
}

impl From<intact_store::Error> for ProxyError {
    fn from(e: intact_store::Error) -> Self {
        match e {
            intact_store::Error::NotFound { what } => Self::NotFound(format!("{what} not found")),
            intact_store::Error::WaitTimeout { what, seconds } => Self::Timeout { what, seconds },
            // Another fetch of the same version still holds it past this one's wait: a
            // moment's unavailability (504, the go command retries), not a fault here.
            locked @ intact_store::Error::Locked { .. } => Self::Timeout {
                what: format!("another fetch to commit ({locked})"),
                seconds: super::layout::COMMIT_WAIT_SECONDS,
            },
            full @ intact_store::Error::StorageFull { .. } => Self::InsufficientStorage(full.to_string()),
            down @ (intact_store::Error::Unavailable { .. } | intact_store::Error::CatalogUnavailable { .. }) => {
                Self::Unavailable(unavailable_message(&down))
            }
            lost @ (intact_store::Error::BlobMissing { .. } | intact_store::Error::BlobDamaged { .. }) => {
                Self::LostBytes(lost.to_string())
            }
            other => Self::Internal(format!("storage: {other}")),
        }
    }
}

/// What a client is told when the catalog or blob store is unreachable: what failed, and
/// that asking again shortly is the remedy (nothing is wrong with the request or module).
pub fn unavailable_message(e: &intact_store::Error) -> String {
    format!("{e}; the server is temporarily unable to answer, try again shortly")
}

impl From<FlightError<ProxyError>> for ProxyError {
    fn from(e: FlightError<ProxyError>) -> Self {
        match e {
            FlightError::Failed(e) => (*e).clone(),
            FlightError::Timeout { what, seconds } => Self::Timeout { what, seconds },
            FlightError::Interrupted { what } => Self::Internal(format!("{what} was interrupted")),
            FlightError::Remembered { error, at, until } => error.remembered(at, until),
        }
    }
}

/// Every Go answer is `text/plain`, whichever layer gives it.
impl ErrorReply for ProxyError {
    fn status(&self) -> StatusCode {
        ProxyError::status(self)
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Gone(_) => "gone",
            Self::Forbidden(_) => "forbidden",
            Self::Upstream(_) => "upstream",
            Self::InvalidUpstream(_) => "invalid_upstream",
            Self::Timeout { .. } | Self::Deadline { .. } => "timeout",
            Self::LostBytes(_) => "lost_bytes",
            Self::InsufficientStorage(_) => "insufficient_storage",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn message(&self) -> String {
        self.to_string()
    }

    fn format(&self) -> BodyFormat {
        BodyFormat::Text
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let status = ProxyError::status(&self);
        if status.is_server_error() {
            tracing::warn!(%status, error = %self, "go request failed");
        }
        self.reply()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        let cases = [
            (ProxyError::NotFound("x".into()), 404),
            (ProxyError::Gone("x".into()), 410),
            (ProxyError::Upstream("x".into()), 502),
            (ProxyError::InvalidUpstream("x".into()), 502),
            (
                ProxyError::Timeout {
                    what: "x".into(),
                    seconds: 3,
                },
                504,
            ),
            (ProxyError::Internal("x".into()), 500),
        ];
        for (e, code) in cases {
            assert_eq!(e.status().as_u16(), code, "{e:?}");
            assert_eq!(e.is_not_found(), code == 404 || code == 410);
            let resp = e.into_response();
            assert_eq!(resp.status().as_u16(), code);
            assert_eq!(
                resp.headers()[axum::http::header::CONTENT_TYPE],
                "text/plain; charset=utf-8"
            );
        }
    }

    #[test]
    fn store_and_flight_errors_map() {
        let e: ProxyError = intact_store::Error::not_found("version r/m@v1.0.0").into();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        let e: ProxyError = intact_store::Error::WaitTimeout {
            what: "lock".into(),
            seconds: 2,
        }
        .into();
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        // Another fetch still committing the version: a moment's unavailability, not a 500.
        let e: ProxyError = intact_store::Error::Locked {
            what: "version go-public/m@v1.0.0".into(),
            holder: intact_core::TxnId::from_random([7; 17]),
            expires_at: intact_core::Timestamp(0),
        }
        .into();
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(e.to_string().contains("another fetch"), "{e}");
        let e: ProxyError = FlightError::Timeout {
            what: "upstream fetch of m@v1".into(),
            seconds: 5,
        }
        .into();
        assert_eq!(e.to_string(), "timed out after 5s waiting for upstream fetch of m@v1");
        let e: ProxyError = FlightError::Failed(std::sync::Arc::new(ProxyError::Gone("gone".into()))).into();
        assert_eq!(e, ProxyError::Gone("gone".into()));
    }

    /// An unreachable catalog or blob store is a moment's outage of this server, said as
    /// such (503, like the artifact API), not a 500 "internal" fault; and not remembered as
    /// an answer about the module.
    #[test]
    fn an_unreachable_backend_is_a_retryable_503() {
        for e in [
            intact_store::Error::CatalogUnavailable {
                source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            },
            intact_store::Error::Unavailable {
                context: "reading s3://b/k".into(),
                source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            },
        ] {
            let what = e.to_string();
            let e = ProxyError::from(e);
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}: {e:?}");
            assert!(!e.is_definitive(), "{e:?}");
            assert!(e.to_string().contains("try again"), "{e}");
            let (kind, text) = crate::shared_flight::SharedFailure::record(&e);
            let rebuilt: ProxyError = crate::shared_flight::SharedFailure::rebuild(&kind, &text);
            assert_eq!(rebuilt, e, "another replica answers the same");
            assert_eq!(e.into_response().status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }

    #[test]
    fn the_worst_failure_wins() {
        let nf = ProxyError::NotFound("a".into());
        let up = ProxyError::Upstream("b".into());
        assert_eq!(ProxyError::worst(None, nf.clone()), nf);
        assert_eq!(ProxyError::worst(Some(nf.clone()), up.clone()), up);
        assert_eq!(ProxyError::worst(Some(up.clone()), nf), up);
    }
}
