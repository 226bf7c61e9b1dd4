//! The gateway's own clock: real time plus an offset that only tests move, so that cache
//! freshness, the Redis breaker and rate-limit refills can be tested by advancing time instead of
//! sleeping through it.
//!
//! One handle is built at start-up and shared (the cache, its Redis tier and the rate limiter
//! read the same one, and so do token expiry and the JWKS refresh intervals). Time the gateway
//! does not decide alone is not on it: Redis's own clock (shared buckets, key TTLs), timeouts and
//! sleeps of background tasks.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// A cheap, cloneable reading of time; clones share one offset.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Nanoseconds added to every reading (0 in production).
    offset_nanos: Arc<AtomicU64>,
}

impl Clock {
    /// Real time, never moved in production.
    pub fn system() -> Clock {
        Clock::default()
    }

    fn offset(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::Relaxed))
    }

    /// Wall-clock milliseconds since the Unix epoch: what entries shared between replicas
    /// (through Redis) record, so every replica reads them alike.
    pub fn now_ms(&self) -> u64 {
        self.now_micros() / 1000
    }

    /// Wall-clock microseconds since the Unix epoch.
    pub fn now_micros(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (now + self.offset()).as_micros() as u64
    }

    /// A monotonic reading, for what stays in this process (rate-limit refills).
    pub fn now(&self) -> Instant {
        let now = Instant::now();
        now.checked_add(self.offset()).unwrap_or(now)
    }

    /// How long ago `earlier` (a reading of [`Clock::now`]) was on this clock.
    pub fn since(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }

    /// Moves this clock (and every clone of it) forward by `by`. For tests: production never
    /// calls it, so there the clock is exactly real time.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .offset_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |offset| {
                Some(offset.saturating_add(nanos))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone_and_both_readings() {
        let clock = Clock::system();
        let other = clock.clone();
        let (wall, mono) = (clock.now_ms(), clock.now());
        other.advance(Duration::from_secs(60));
        assert!(clock.now_ms() >= wall + 60_000);
        assert!(clock.now() >= mono + Duration::from_secs(60));
        // A clock of its own is not moved.
        assert!(Clock::system().now_ms() < wall + 60_000);
    }
}
