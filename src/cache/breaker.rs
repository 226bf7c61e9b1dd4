//! The circuit breaker in front of Redis: after repeated failures Redis is skipped for a
//! cool-down, then one call probes it (half-open); a success closes it again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::clock::Clock;

pub(super) struct Breaker {
    threshold: u32,
    cooldown_ms: u64,
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    /// Set once opened, cleared by the first success: that success means "Redis is back".
    tripped: AtomicBool,
    clock: Clock,
}

impl Breaker {
    pub(super) fn new(threshold: u32, cooldown_ms: u64, clock: Clock) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown_ms,
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            tripped: AtomicBool::new(false),
            clock,
        }
    }

    /// Whether a call may go to Redis now (closed, or the cool-down is over).
    pub(super) fn allows(&self) -> bool {
        self.clock.now_ms() >= self.open_until_ms.load(Ordering::Acquire)
    }

    /// Opened and not yet closed again by a success.
    pub(super) fn tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    /// Returns true when this success ends an outage.
    pub(super) fn success(&self) -> bool {
        self.failures.store(0, Ordering::Release);
        self.tripped.swap(false, Ordering::AcqRel)
    }

    pub(super) fn failure(&self) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        // Half-open after a trip: one failed probe re-opens at once.
        if failures >= self.threshold || self.tripped.load(Ordering::Acquire) {
            self.open_until_ms
                .store(self.clock.now_ms() + self.cooldown_ms, Ordering::Release);
            self.failures.store(0, Ordering::Release);
            if !self.tripped.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    cooldown_ms = self.cooldown_ms,
                    "redis circuit breaker open: serving from L1 and the database"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn it_opens_after_the_threshold_and_probes_again_after_the_cooldown() {
        let clock = Clock::system();
        let breaker = Breaker::new(2, 5_000, clock.clone());
        breaker.failure();
        assert!(breaker.allows() && !breaker.tripped());
        breaker.failure();
        assert!(!breaker.allows() && breaker.tripped());
        clock.advance(Duration::from_millis(5_001));
        assert!(breaker.allows(), "half-open after the cool-down");
        // One failed probe re-opens at once; a success closes and reports the recovery.
        breaker.failure();
        assert!(!breaker.allows());
        clock.advance(Duration::from_millis(5_001));
        assert!(breaker.success());
        assert!(!breaker.tripped() && breaker.allows());
        assert!(!breaker.success(), "only the first success ends the outage");
    }
}
