//! Webhooks: per-repo HTTP callbacks for events of the event log, kept in the catalog with
//! their delivery cursor, so delivery survives restarts and is shared by replicas (one
//! replica delivers a hook at a time, under a lease). The server's deliverer
//! (`intact_server::hooks`) does the HTTP; this is the record.
//!
//! A hook's secret signs its deliveries (HMAC-SHA256), so unlike a token's it is kept as
//! given: whoever can read the catalog can forge a delivery (they could also change the
//! data). The API shows it once, at creation.

use intact_core::Timestamp;
use serde::Serialize;

/// The event kinds a hook may ask for.
pub const EVENT_KINDS: &[&str] = &["committed", "aborted", "deleted", "tagged", "untagged"];

/// A hook to create.
#[derive(Debug, Clone)]
pub struct NewHook {
    pub name: String,
    /// A repo name, or `*` for every repo.
    pub repo: String,
    pub url: String,
    pub secret: String,
    /// Some of [`EVENT_KINDS`].
    pub events: Vec<String>,
}

/// A hook and how its delivery goes (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HookRecord {
    pub name: String,
    pub repo: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: Timestamp,
    /// The last event handled (delivered, or not the hook's): delivery goes on after it.
    pub cursor: i64,
    /// Events delivered so far.
    pub delivered: u64,
    /// Failed attempts since the last success (the event after `cursor` is retried).
    pub failures: u32,
    #[schema(required = true)]
    pub next_attempt_at: Option<Timestamp>,
    #[schema(required = true)]
    pub last_attempt_at: Option<Timestamp>,
    /// The receiver's status code of the last attempt, when it answered.
    #[schema(required = true)]
    pub last_status: Option<u16>,
    #[schema(required = true)]
    pub last_error: Option<String>,
}

impl HookRecord {
    /// Whether the hook wants `kind` events of `repo`.
    pub fn wants(&self, kind: &str, repo: &str) -> bool {
        (self.repo == "*" || self.repo == repo) && self.events.iter().any(|e| e == kind)
    }
}

/// What one delivery round of a hook achieved.
#[derive(Debug, Clone)]
pub struct HookProgress {
    /// The cursor after the round (never moves back).
    pub cursor: i64,
    /// Events delivered in the round.
    pub delivered: u64,
    /// Set when the round stopped at a failed delivery: the receiver's status (if it
    /// answered), what went wrong, and when to try again (milliseconds from now).
    pub failure: Option<HookFailure>,
}

#[derive(Debug, Clone)]
pub struct HookFailure {
    pub status: Option<u16>,
    pub error: String,
    pub retry_in_ms: i64,
}

/// Checks a hook's fields (`repo` is checked against the configuration by the server).
pub fn check(hook: &NewHook) -> std::result::Result<(), (&'static str, String)> {
    let name_ok = !hook.name.is_empty()
        && hook.name.len() <= 64
        && hook
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err(("name", "1-64 letters, digits, '-', '_' or '.'".into()));
    }
    if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) || hook.url.len() > 2048 {
        return Err(("url", "an http:// or https:// URL of at most 2048 characters".into()));
    }
    if hook.secret.len() < 16 || hook.secret.len() > 256 || hook.secret.chars().any(char::is_control) {
        return Err(("secret", "16-256 characters without control characters".into()));
    }
    if hook.events.is_empty() {
        return Err(("events", format!("at least one of {}", EVENT_KINDS.join(", "))));
    }
    if let Some(bad) = hook.events.iter().find(|e| !EVENT_KINDS.contains(&e.as_str())) {
        return Err((
            "events",
            format!("{bad:?} is not an event kind ({})", EVENT_KINDS.join(", ")),
        ));
    }
    Ok(())
}
