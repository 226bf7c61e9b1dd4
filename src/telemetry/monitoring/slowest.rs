//! The slowest recent requests: the 10 slowest of each minute of the last hour.

use std::{
    sync::{
        atomic::{
            AtomicU64,
            Ordering::{Acquire, Relaxed, Release},
        },
        Mutex,
    },
    time::Duration,
};

use serde::Serialize;

use super::{current_minute, minutes::NO_MINUTE, Monitoring, MINUTES};

/// One of the slowest recent requests.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlowRequest {
    /// When it was answered (RFC 3339).
    pub at: String,
    /// Its operation key, or its route when it ran no GraphQL operation.
    pub operation: String,
    /// Wall time, ms.
    pub duration_ms: f64,
    /// HTTP status.
    pub status: u16,
    /// The `x-request-id` it was answered with.
    pub request_id: String,
    /// Its trace id, when it had one.
    pub trace_id: Option<String>,
}

/// Slow requests kept per minute.
const SLOW_PER_MINUTE: usize = 10;

/// The slowest requests of one minute.
pub(super) struct SlowMinute {
    pub(super) minute: AtomicU64,
    /// When full: the duration (µs) a request must exceed to be kept.
    pub(super) floor: AtomicU64,
    pub(super) kept: Mutex<(u64, Vec<(u64, SlowRequest)>)>,
}

impl Default for SlowMinute {
    fn default() -> Self {
        SlowMinute {
            minute: AtomicU64::new(NO_MINUTE),
            floor: AtomicU64::new(0),
            kept: Mutex::new((NO_MINUTE, Vec::new())),
        }
    }
}

impl Monitoring {
    /// Offers a finished request to the slowest-requests list: kept when it is among the
    /// `SLOW_PER_MINUTE` slowest of its minute. `describe` runs only then (no allocation for the
    /// others: one atomic load decides).
    pub fn offer_slow(&self, duration: Duration, describe: impl FnOnce() -> SlowRequest) {
        self.offer_slow_at(duration, current_minute(), describe);
    }

    fn offer_slow_at(
        &self,
        duration: Duration,
        minute: u64,
        describe: impl FnOnce() -> SlowRequest,
    ) {
        let micros = duration.as_micros() as u64;
        let slot = &self.slow[minute as usize % MINUTES];
        if slot.minute.load(Acquire) == minute && micros <= slot.floor.load(Relaxed) {
            return;
        }
        let Ok(mut kept) = slot.kept.lock() else {
            return;
        };
        if kept.0 != minute {
            if kept.0 != NO_MINUTE && kept.0 > minute {
                return;
            }
            *kept = (minute, Vec::with_capacity(SLOW_PER_MINUTE + 1));
            // The floor first: a reader that sees the new minute (Acquire) sees the cleared
            // floor, never the hour-old one.
            slot.floor.store(0, Relaxed);
            slot.minute.store(minute, Release);
        }
        let list = &mut kept.1;
        if list.len() >= SLOW_PER_MINUTE && list.last().is_some_and(|(m, _)| *m >= micros) {
            return;
        }
        let at = list.partition_point(|(m, _)| *m >= micros);
        list.insert(at, (micros, describe()));
        list.truncate(SLOW_PER_MINUTE);
        if list.len() == SLOW_PER_MINUTE {
            slot.floor
                .store(list.last().map_or(0, |(m, _)| *m), Relaxed);
        }
    }

    /// The `limit` slowest requests of the last hour, slowest first.
    pub fn slowest(&self, limit: usize) -> Vec<SlowRequest> {
        let now = current_minute();
        let mut all: Vec<(u64, SlowRequest)> = self
            .slow
            .iter()
            .filter_map(|slot| slot.kept.lock().ok().map(|kept| (kept.0, kept.1.clone())))
            .filter(|(minute, _)| {
                *minute != NO_MINUTE && now.saturating_sub(*minute) < MINUTES as u64
            })
            .flat_map(|(_, list)| list)
            .collect();
        all.sort_by_key(|(micros, _)| std::cmp::Reverse(*micros));
        all.into_iter().take(limit).map(|(_, r)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_requests_are_the_slowest_of_each_minute_for_an_hour() {
        let monitoring = Monitoring::default();
        let now = current_minute();
        let slow = |ms: u64| SlowRequest {
            at: String::new(),
            operation: format!("op{ms}"),
            duration_ms: ms as f64,
            status: 200,
            request_id: ms.to_string(),
            trace_id: None,
        };
        let mut described = 0;
        // Slowest first: once ten are kept, faster requests are turned away by one load.
        for ms in (1..=100u64).rev() {
            monitoring.offer_slow_at(Duration::from_millis(ms), now, || {
                described += 1;
                slow(ms)
            });
        }
        assert_eq!(described, SLOW_PER_MINUTE);
        // A slower one still gets in.
        monitoring.offer_slow_at(Duration::from_millis(150), now, || slow(150));
        monitoring.offer_slow_at(Duration::from_millis(500), now - 1, || slow(500));
        monitoring.offer_slow_at(Duration::from_millis(900), now - 61, || slow(900));
        let slowest = monitoring.slowest(20);
        let ms: Vec<f64> = slowest.iter().map(|r| r.duration_ms).collect();
        assert_eq!(ms[0], 500.0, "an hour ago is gone: {ms:?}");
        assert_eq!(ms.len(), 11);
        assert_eq!(&ms[1..4], &[150.0, 100.0, 99.0]);
        assert_eq!(ms[10], 92.0);
        assert_eq!(monitoring.slowest(3).len(), 3);
        monitoring.reset();
        assert!(monitoring.slowest(20).is_empty());
    }
}
