//! Flights: one unit of upstream work (a Go module fetch, a staging run) shared by every
//! process on a catalog, so N replicas asked for the same missing artifact fetch it once.
//!
//! A flight is a row (key, holder, lease, outcome). The first claimant leads: it does the
//! work, renews its lease while it works, and finishes the flight with its outcome. Others
//! are told who leads until when, wait for a wake-up (`Catalog::event_wakeups` changes when a
//! flight finishes) and look again. A success removes the row (the result is in the store);
//! a failure stays on the row: a *definitive* one with an `until`, answering every claim
//! until then; a *transient* one only for whoever followed that very holder, the next claim
//! taking the flight over. A holder whose lease lapsed (a dead replica) is taken over by the
//! next claim. Which claim wins is decided here, for every backend alike.

use std::time::Duration;

use intact_core::Timestamp;

/// Why a flight failed, as recorded for every process to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlightFailure {
    /// The front-end's name for the kind of failure (rebuilds its error on other replicas).
    pub kind: String,
    pub message: String,
    /// When it failed, by the catalog's clock.
    pub at: Timestamp,
    /// A definitive failure is remembered until then; `None` for a transient one.
    pub until: Option<Timestamp>,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlightClaim {
    /// The caller leads: do the work, renew, finish.
    Leading,
    /// Another holder leads, its lease running until `expires_at`.
    Led { holder: String, expires_at: Timestamp },
    /// A definitive failure, remembered until its `until`.
    Failed(FlightFailure),
}

/// A flight as a follower finds it (no row: finished with success, or never claimed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlightState {
    Running { holder: String, expires_at: Timestamp },
    Failed { holder: String, failure: FlightFailure },
}

/// How a leader ends its flight.
#[derive(Debug, Clone)]
pub enum FlightEnd {
    /// The result is in the store.
    Succeeded,
    /// Failed; `remember_for` is set for a definitive failure.
    Failed {
        kind: String,
        message: String,
        remember_for: Option<Duration>,
    },
}

/// A flight row, as both backends store it.
#[derive(Debug, Clone)]
pub(super) struct FlightRow {
    pub holder: String,
    pub running: bool,
    pub expires_at: Timestamp,
    pub failure: Option<FlightFailure>,
}

impl FlightRow {
    pub fn state(self) -> FlightState {
        match (self.running, self.failure) {
            (false, Some(failure)) => FlightState::Failed {
                holder: self.holder,
                failure,
            },
            _ => FlightState::Running {
                holder: self.holder,
                expires_at: self.expires_at,
            },
        }
    }
}

/// What a claim by `holder` at `now` finds in `row`: an answer (`Some`), or `None` when the
/// caller takes the flight (writing a running row with its own lease).
pub(super) fn judge_claim(row: Option<&FlightRow>, holder: &str, now: Timestamp) -> Option<FlightClaim> {
    let row = row?;
    if row.running {
        if row.holder != holder && row.expires_at > now {
            return Some(FlightClaim::Led {
                holder: row.holder.clone(),
                expires_at: row.expires_at,
            });
        }
        return None;
    }
    match &row.failure {
        Some(f) if f.until.is_some_and(|until| until > now) => Some(FlightClaim::Failed(f.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(holder: &str, expires_at: i64) -> FlightRow {
        FlightRow {
            holder: holder.into(),
            running: true,
            expires_at: Timestamp(expires_at),
            failure: None,
        }
    }

    fn failed(until: Option<i64>) -> FlightRow {
        FlightRow {
            holder: "a".into(),
            running: false,
            expires_at: Timestamp(0),
            failure: Some(FlightFailure {
                kind: "not_found".into(),
                message: "gone".into(),
                at: Timestamp(0),
                until: until.map(Timestamp),
            }),
        }
    }

    #[test]
    fn claims() {
        let now = Timestamp(1000);
        assert_eq!(judge_claim(None, "b", now), None, "nobody leads: take it");
        assert!(matches!(
            judge_claim(Some(&running("a", 2000)), "b", now),
            Some(FlightClaim::Led { .. })
        ));
        assert_eq!(
            judge_claim(Some(&running("a", 1000)), "b", now),
            None,
            "lapsed: take over"
        );
        assert_eq!(judge_claim(Some(&running("b", 2000)), "b", now), None, "own flight");
        assert!(matches!(
            judge_claim(Some(&failed(Some(2000))), "b", now),
            Some(FlightClaim::Failed(_))
        ));
        assert_eq!(judge_claim(Some(&failed(Some(900))), "b", now), None, "forgotten");
        assert_eq!(judge_claim(Some(&failed(None)), "b", now), None, "transient: try again");
    }
}
