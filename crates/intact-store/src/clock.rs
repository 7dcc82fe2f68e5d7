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

/// The wall clock plus an offset that only moves when told to: the clock of tests against a
/// catalog whose time is a database's (PostgreSQL's), which a test can move forward but never
/// stop. The same offset is added to the database's reading (see
/// `PostgresCatalog::with_time_offset`), so the store and the catalog agree.
#[derive(Debug, Clone, Default)]
pub struct OffsetClock {
    offset_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl OffsetClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// How far ahead of the wall clock this clock runs, in milliseconds.
    pub fn offset_millis(&self) -> i64 {
        self.offset_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        Timestamp(SystemClock.now().millis().saturating_add(self.offset_millis()))
    }
}
