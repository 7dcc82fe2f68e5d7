//! The deliverer: follows the event log for every hook, POSTing each event the hook wants
//! to its URL, in order, signed with the hook's secret. A hook's cursor (the last event
//! handled) lives in the catalog and moves only past events delivered or not wanted, so
//! delivery is at least once and survives restarts; a failure is retried, with exponential
//! backoff up to ten minutes, before any later event of that hook. Each round holds the hook
//! under a catalog lease: replicas sharing a catalog deliver each hook from one of them.
//!
//! A delivery: `POST` with the event as JSON (the `/api/v1/events` shape plus `hook`), and
//! `X-Intact-Hook`, `X-Intact-Event` (its kind), `X-Intact-Delivery` (`hook:seq`, the same on
//! every retry, for receivers to drop duplicates) and `X-Intact-Signature`
//! (`sha256=` + hex HMAC-SHA256 of the body with the hook's secret). Any 2xx is a success;
//! redirects are not followed.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use intact_store::Event;
use intact_store::hooks::{HookFailure, HookProgress, HookRecord};
use metrics::counter;
use sha2::Sha256;
use tokio::sync::watch;

use crate::state::AppState;

/// How long a round holds a hook (a round stops taking new events after [`ROUND_BUDGET`], and
/// one delivery takes at most [`DELIVERY_TIMEOUT`]).
const LEASE: Duration = Duration::from_secs(30);
/// How long a round goes on delivering before it records its progress and lets go.
const ROUND_BUDGET: Duration = Duration::from_secs(15);
/// One delivery's deadline, connection included.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Events read per round.
const BATCH: u32 = 100;
/// How often hooks are looked at without an event to wake the deliverer (a retry coming due).
const POLL: Duration = Duration::from_secs(1);
/// The shortest time between two passes over the hooks.
const MIN_PASS: Duration = Duration::from_millis(100);
/// The longest wait between attempts of one failing delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Deliveries by outcome (`ok`, `failed`).
pub const DELIVERIES: &str = "intact_hook_deliveries_total";

/// Runs until `shutdown`.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .connect_timeout(DELIVERY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("intact-hooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks are off: building their HTTP client failed");
            return;
        }
    };
    // The embedded catalog has one writer, this process: a hold left by a killed run of it
    // is its own, taken back at once. Replicas of a shared catalog each hold as themselves,
    // and a dead one's hold lapses with its lease.
    let holder = if state.store.is_sole_writer() {
        "sole-writer".to_owned()
    } else {
        format!("{:016x}", rand::random::<u64>())
    };
    let catalog = state.store.catalog().clone();
    let mut wakeups = catalog.event_wakeups();
    loop {
        let pass = tokio::time::Instant::now();
        let any = match deliver_due(&state, &client, &holder).await {
            Ok(any) => any,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: reading the hooks or the event log failed; trying again");
                true
            }
        };
        if any {
            // At most ten passes a second however fast events come: a burst of commits is
            // delivered in rounds, not with a catalog query per commit.
            tokio::select! {
                _ = tokio::time::sleep_until(pass + MIN_PASS) => {}
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = wakeups.changed() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return,
            }
        } else {
            // No hook: look again now and then (one may be created by another process).
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// One round for every hook with something to deliver; whether any hook exists.
async fn deliver_due(state: &AppState, client: &reqwest::Client, holder: &str) -> intact_store::Result<bool> {
    let catalog = state.store.catalog();
    let hooks = catalog.hooks().await?;
    if hooks.is_empty() {
        return Ok(false);
    }
    let last = catalog.last_event_seq().await?;
    let now = state.store.now();
    for hook in hooks {
        let due = hook.next_attempt_at.is_none_or(|at| at <= now);
        if hook.cursor < last && due {
            round(state, client, holder, &hook.name).await?;
        }
    }
    Ok(true)
}

/// Claims hook `name` and delivers what follows its cursor, for at most [`ROUND_BUDGET`].
async fn round(state: &AppState, client: &reqwest::Client, holder: &str, name: &str) -> intact_store::Result<()> {
    let catalog = state.store.catalog();
    let Some((hook, secret)) = catalog.claim_hook(name, holder, LEASE).await? else {
        return Ok(());
    };
    let started = Instant::now();
    let mut progress = HookProgress {
        cursor: hook.cursor,
        delivered: 0,
        failure: None,
    };
    'rounds: while started.elapsed() < ROUND_BUDGET {
        let events = catalog.events(progress.cursor, BATCH).await?;
        if events.is_empty() {
            break;
        }
        for event in &events {
            if started.elapsed() >= ROUND_BUDGET {
                break 'rounds;
            }
            if hook.wants(&event.kind, event.repo.as_str()) {
                match post(client, &hook, &secret, event).await {
                    Ok(()) => {
                        counter!(DELIVERIES, "outcome" => "ok").increment(1);
                        progress.delivered += 1;
                    }
                    Err((status, error)) => {
                        counter!(DELIVERIES, "outcome" => "failed").increment(1);
                        let retry = backoff(hook.failures.saturating_add(1));
                        tracing::warn!(
                            hook = %hook.name,
                            seq = event.seq,
                            url = %intact_store::redact(&hook.url),
                            %error,
                            retry_in_seconds = retry.as_secs(),
                            "webhook delivery failed"
                        );
                        progress.failure = Some(HookFailure {
                            status,
                            error,
                            retry_in_ms: i64::try_from(retry.as_millis()).unwrap_or(i64::MAX),
                        });
                        break 'rounds;
                    }
                }
            }
            progress.cursor = event.seq;
        }
    }
    if progress.cursor != hook.cursor || progress.failure.is_some() {
        catalog.record_hook(&hook.name, holder, &progress).await?;
    }
    Ok(())
}

/// 1 s after the first failure, doubling, at most [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF)
}

/// `sha256=` and the hex HMAC-SHA256 of `body` with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One delivery: `Err` with the receiver's status (when it answered) and what went wrong.
async fn post(
    client: &reqwest::Client,
    hook: &HookRecord,
    secret: &str,
    event: &Event,
) -> Result<(), (Option<u16>, String)> {
    let mut body = serde_json::to_value(event).map_err(|e| (None, format!("encoding the event: {e}")))?;
    body["hook"] = serde_json::Value::String(hook.name.clone());
    let body = serde_json::to_vec(&body).map_err(|e| (None, format!("encoding the event: {e}")))?;
    let resp = client
        .post(&hook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-intact-hook", &hook.name)
        .header("x-intact-event", &event.kind)
        .header("x-intact-delivery", format!("{}:{}", hook.name, event.seq))
        .header("x-intact-signature", signature(secret, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| (None, format!("{}", e.without_url())))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err((Some(status.as_u16()), format!("the receiver answered {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_minutes() {
        let waits: Vec<u64> = (1..=12).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(backoff(u32::MAX).as_secs(), 600);
    }

    /// The signature a receiver computes with any HMAC implementation (RFC 4231 case 2).
    #[test]
    fn signature_is_hex_hmac_sha256() {
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
