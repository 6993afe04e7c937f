//! Time, behind a trait so tests can fake it.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC. Printed as RFC 3339 (`2026-11-22T05:00:00.123Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// This instant as a [`SystemTime`] (clamped at the epoch).
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_millis(self.to_system_time()))
    }
}

impl Serialize for UnixMillis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Where the current time comes from.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> UnixMillis;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        UnixMillis(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock set from an outside authority (the database every node shares) and run forward
/// on this machine's monotonic clock between settings: every node reads the same time, and a
/// step of this machine's wall clock (NTP, an operator) moves nothing.
#[derive(Debug)]
pub struct AnchoredClock {
    anchor: std::sync::Mutex<(UnixMillis, Instant)>,
    /// The latest time handed out: re-anchoring never makes time run backwards.
    latest: AtomicI64,
}

impl AnchoredClock {
    /// A clock reading `at` at the instant `when`.
    pub fn new(at: UnixMillis, when: Instant) -> Self {
        AnchoredClock { anchor: std::sync::Mutex::new((at, when)), latest: AtomicI64::new(at.0) }
    }

    /// Sets the clock to read `at` at `when`; returns how far that moves it, in ms (positive:
    /// it was behind).
    pub fn anchor(&self, at: UnixMillis, when: Instant) -> i64 {
        let mut anchor = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        let before = Self::read(*anchor, when);
        *anchor = (at, when);
        at.0 - before
    }

    fn read((at, when): (UnixMillis, Instant), now: Instant) -> i64 {
        let elapsed =
            i64::try_from(now.saturating_duration_since(when).as_millis()).unwrap_or(i64::MAX);
        at.0.saturating_add(elapsed)
    }
}

impl Clock for AnchoredClock {
    fn now(&self) -> UnixMillis {
        let anchor = *self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        let computed = Self::read(anchor, Instant::now());
        UnixMillis(self.latest.fetch_max(computed, Ordering::SeqCst).max(computed))
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: UnixMillis) -> Self {
        Self(AtomicI64::new(start.0))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(UnixMillis(1_000));
        assert_eq!(clock.now(), UnixMillis(1_000));
        clock.advance(Duration::from_millis(250));
        assert_eq!(clock.now(), UnixMillis(1_250));
    }

    #[test]
    fn prints_rfc3339_with_milliseconds() {
        assert_eq!(UnixMillis(1_700_000_000_123).to_string(), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn an_anchored_clock_runs_on_from_its_anchor_and_never_back() {
        let start = Instant::now();
        let clock = AnchoredClock::new(UnixMillis(5_000_000), start);
        let first = clock.now();
        assert!(first.0 >= 5_000_000 && first.0 < 5_000_000 + 1_000, "{first:?}");
        std::thread::sleep(Duration::from_millis(20));
        assert!(clock.now().0 >= first.0 + 20);
        // Set ahead: it jumps forward and says by how much.
        let moved = clock.anchor(UnixMillis(9_000_000), Instant::now());
        assert!(moved > 3_900_000, "{moved}");
        assert!(clock.now().0 >= 9_000_000);
        // Set back: it reports the step but never hands out an earlier time than before.
        let seen = clock.now();
        assert!(clock.anchor(UnixMillis(1_000), Instant::now()) < 0);
        assert!(clock.now() >= seen);
    }
}
