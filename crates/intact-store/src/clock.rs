//! Where "now" comes from. Leases are compared against the catalog's clock; on the embedded
//! SQLite default that clock is this process's. Tests drive a [`TokioClock`] under
//! `tokio::time::pause()` so lease expiry is tested without sleeping.

use std::time::SystemTime;

use intact_core::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }
}

/// Wall-clock time at creation, advanced by tokio's clock: under `tokio::time::pause()` it
/// moves only when the test advances time, so expiry is deterministic.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start_wall: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self {
            start_wall: SystemClock.now(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.start_wall
            .plus(tokio::time::Instant::now().duration_since(self.start))
    }
}

/// A clock that moves only when told to: virtual time for lease tests, deterministic and
/// independent of tokio's timer (the SQLite driver's worker threads do not mix well with a
/// paused tokio clock).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(start.millis())),
        }
    }

    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(std::sync::atomic::Ordering::SeqCst))
    }
}
