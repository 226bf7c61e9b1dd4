//! The last hour of an operation, a slot per minute, and the trends and windows read from it.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use super::{bucket_upper, Monitoring, BUCKETS};

/// Error codes told apart (the gateway has 14).
pub(super) const MAX_CODES: usize = 16;
/// Minutes of trends kept.
pub const MINUTES: usize = 60;
/// A slot that holds no minute yet.
pub(super) const NO_MINUTE: u64 = u64::MAX;

/// One operation's counters for one minute. A slot is reused an hour later: the first request of
/// the new minute claims and clears it (a request racing that claim may be lost from the minute).
pub(super) struct Minute {
    pub(super) minute: AtomicU64,
    pub(super) count: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) cache_lookups: AtomicU64,
    pub(super) cache_hits: AtomicU64,
    pub(super) sql_statements: AtomicU64,
    pub(super) codes: [AtomicU32; MAX_CODES],
    pub(super) buckets: [AtomicU32; BUCKETS],
}

impl Default for Minute {
    fn default() -> Self {
        Minute {
            minute: AtomicU64::new(NO_MINUTE),
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            cache_lookups: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            sql_statements: AtomicU64::new(0),
            codes: std::array::from_fn(|_| AtomicU32::new(0)),
            buckets: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl Minute {
    /// Makes the slot hold `minute` (clearing an older one); false when it already holds a
    /// later minute (a request that took longer than an hour to record).
    pub(super) fn claim(&self, minute: u64) -> bool {
        let held = self.minute.load(Relaxed);
        if held == minute {
            return true;
        }
        if held != NO_MINUTE && held > minute {
            return false;
        }
        if self
            .minute
            .compare_exchange(held, minute, Relaxed, Relaxed)
            .is_ok()
        {
            for counter in [
                &self.count,
                &self.errors,
                &self.cache_lookups,
                &self.cache_hits,
                &self.sql_statements,
            ] {
                counter.store(0, Relaxed);
            }
            for counter in self.codes.iter().chain(self.buckets.iter()) {
                counter.store(0, Relaxed);
            }
        }
        self.minute.load(Relaxed) == minute
    }

    pub(super) fn add_to(&self, total: &mut Aggregate) {
        total.count += self.count.load(Relaxed);
        total.errors += self.errors.load(Relaxed);
        total.cache_lookups += self.cache_lookups.load(Relaxed);
        total.cache_hits += self.cache_hits.load(Relaxed);
        total.sql_statements += self.sql_statements.load(Relaxed);
        for (sum, c) in total.codes.iter_mut().zip(&self.codes) {
            *sum += u64::from(c.load(Relaxed));
        }
        for (sum, b) in total.buckets.iter_mut().zip(&self.buckets) {
            *sum += u64::from(b.load(Relaxed));
        }
    }
}

/// Counters summed over minutes (or operations).
#[derive(Clone)]
pub(super) struct Aggregate {
    pub(super) count: u64,
    pub(super) errors: u64,
    pub(super) cache_lookups: u64,
    pub(super) cache_hits: u64,
    pub(super) sql_statements: u64,
    pub(super) codes: [u64; MAX_CODES],
    pub(super) buckets: [u64; BUCKETS],
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            count: 0,
            errors: 0,
            cache_lookups: 0,
            cache_hits: 0,
            sql_statements: 0,
            codes: [0; MAX_CODES],
            buckets: [0; BUCKETS],
        }
    }
}

impl Aggregate {
    pub(super) fn merge(&mut self, other: &Aggregate) {
        self.count += other.count;
        self.errors += other.errors;
        self.cache_lookups += other.cache_lookups;
        self.cache_hits += other.cache_hits;
        self.sql_statements += other.sql_statements;
        for (a, b) in self.codes.iter_mut().zip(&other.codes) {
            *a += b;
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    /// The `q` quantile in ms (the upper bound of its bucket, at most `max_ms`).
    pub(super) fn percentile(&self, q: f64, max_ms: f64) -> f64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return (bucket_upper(i) / 1000.0).min(max_ms);
            }
        }
        max_ms
    }

    pub(super) fn ratio(part: u64, whole: u64) -> f64 {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    }
}

/// The current minute since the epoch.
pub fn current_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

/// One point of a trend: an operation's (or every operation's) minute.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrendPoint {
    /// Start of the minute (RFC 3339).
    pub minute: String,
    /// Requests.
    pub count: u64,
    /// Requests whose response had errors.
    pub errors: u64,
    /// Requests per second over the minute.
    pub rate_per_second: f64,
    /// Median, 95th and 99th percentile, ms (histogram precision).
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Cache hits / lookups (null without lookups).
    pub cache_hit_rate: Option<f64>,
    /// Mean SQL statements per request.
    pub sql_statements_per_request: f64,
    /// Requests with each error code (codes seen only).
    pub errors_by_code: BTreeMap<&'static str, u64>,
}

/// An operation's last hour.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    /// Operation key, or `all`.
    pub operation: String,
    /// One point per minute, oldest first, the current minute last.
    pub points: Vec<TrendPoint>,
}

/// The last hour: every operation merged, and each operation (or the one asked for).
#[derive(Debug, Clone, Serialize)]
pub struct Trends {
    /// Every operation merged (a client's operation named `all` is among `operations`).
    pub all: Trend,
    /// Each operation with requests in the last hour, busiest first.
    pub operations: Vec<Trend>,
}

/// What an operation did over a window of minutes (for alert rules).
#[derive(Debug, Clone)]
pub struct WindowStats {
    /// Operation key.
    pub operation: String,
    /// Requests.
    pub count: u64,
    /// Requests with errors.
    pub errors: u64,
    /// Cache lookups and hits.
    pub cache_lookups: u64,
    /// Of which hits.
    pub cache_hits: u64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
}

impl Monitoring {
    /// Per-minute trends of the last hour: every operation with requests in it (busiest first,
    /// only `operation` when given), and `all` of them merged, first.
    pub fn trends(&self, operation: Option<&str>) -> Trends {
        // One reading for the minute and the seconds into it: the current minute's rate is over
        // the seconds it has run, not over 60.
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let minute = (seconds / 60.0) as u64;
        self.trends_at(operation, minute, (seconds % 60.0).max(1.0))
    }

    fn trends_at(&self, operation: Option<&str>, now: u64, current_seconds: f64) -> Trends {
        let first = (now + 1).saturating_sub(MINUTES as u64);
        let operations = self.operations.read().expect("stats lock");
        let mut total = vec![Aggregate::default(); MINUTES];
        let mut trends: Vec<(u64, Trend)> = Vec::new();
        let mut max_ms: f64 = 0.0;
        for (name, stats) in operations.iter() {
            let mut minutes = vec![Aggregate::default(); MINUTES];
            for slot in stats.minutes.iter() {
                let minute = slot.minute.load(Relaxed);
                if minute != NO_MINUTE && minute >= first && minute <= now {
                    slot.add_to(&mut minutes[(minute - first) as usize]);
                }
            }
            let count: u64 = minutes.iter().map(|m| m.count).sum();
            if count == 0 {
                continue;
            }
            for (t, m) in total.iter_mut().zip(&minutes) {
                t.merge(m);
            }
            let own_max = stats.max_micros.load(Relaxed) as f64 / 1000.0;
            max_ms = max_ms.max(own_max);
            if operation.is_none_or(|o| o == name) {
                trends.push((
                    count,
                    self.trend(name, &minutes, first, own_max, current_seconds),
                ));
            }
        }
        trends.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.operation.cmp(&b.1.operation)));
        Trends {
            all: self.trend("all", &total, first, max_ms, current_seconds),
            operations: trends.into_iter().map(|(_, t)| t).collect(),
        }
    }

    fn trend(
        &self,
        name: &str,
        minutes: &[Aggregate],
        first: u64,
        max_ms: f64,
        current_seconds: f64,
    ) -> Trend {
        let points = minutes
            .iter()
            .enumerate()
            .map(|(i, m)| TrendPoint {
                minute: minute_start(first + i as u64),
                count: m.count,
                errors: m.errors,
                rate_per_second: m.count as f64
                    / if i + 1 == minutes.len() {
                        current_seconds
                    } else {
                        60.0
                    },
                p50_ms: m.percentile(0.5, max_ms),
                p95_ms: m.percentile(0.95, max_ms),
                p99_ms: m.percentile(0.99, max_ms),
                cache_hit_rate: (m.cache_lookups > 0)
                    .then(|| Aggregate::ratio(m.cache_hits, m.cache_lookups)),
                sql_statements_per_request: Aggregate::ratio(m.sql_statements, m.count),
                errors_by_code: self.named_codes(&m.codes),
            })
            .collect();
        Trend {
            operation: name.to_string(),
            points,
        }
    }

    pub(super) fn named_codes(&self, counts: &[u64; MAX_CODES]) -> BTreeMap<&'static str, u64> {
        self.codes
            .iter()
            .zip(counts)
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| (*c, *n))
            .collect()
    }

    /// Each operation over the last `minutes` minutes (the current one included).
    pub fn window(&self, minutes: u64) -> Vec<WindowStats> {
        let now = current_minute();
        let first = (now + 1).saturating_sub(minutes.clamp(1, MINUTES as u64));
        let operations = self.operations.read().expect("stats lock");
        operations
            .iter()
            .filter_map(|(name, stats)| {
                let mut sum = Aggregate::default();
                for slot in stats.minutes.iter() {
                    let minute = slot.minute.load(Relaxed);
                    if minute != NO_MINUTE && minute >= first && minute <= now {
                        slot.add_to(&mut sum);
                    }
                }
                (sum.count > 0).then(|| WindowStats {
                    operation: name.clone(),
                    count: sum.count,
                    errors: sum.errors,
                    cache_lookups: sum.cache_lookups,
                    cache_hits: sum.cache_hits,
                    p95_ms: sum.percentile(0.95, stats.max_micros.load(Relaxed) as f64 / 1000.0),
                })
            })
            .collect()
    }
}

/// The start of an epoch minute, RFC 3339.
fn minute_start(minute: u64) -> String {
    chrono::DateTime::from_timestamp((minute * 60) as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::monitoring::RequestRecord;
    use std::time::Duration;

    fn request(ms: u64, codes: &'static [&'static str]) -> RequestRecord<'static> {
        RequestRecord {
            duration: Duration::from_millis(ms),
            failed: !codes.is_empty(),
            cache_lookups: 2,
            cache_hits: 1,
            sql_statements: 3,
            codes,
            ..Default::default()
        }
    }

    #[test]
    fn trends_keep_one_point_per_minute_for_an_hour() {
        let monitoring = Monitoring::new(&["FORBIDDEN", "NOT_FOUND"]);
        let now = 1_000_000;
        monitoring.record_at("q", request(10, &[]), now - 2);
        monitoring.record_at("q", request(20, &["FORBIDDEN"]), now - 2);
        monitoring.record_at("q", request(30, &[]), now);
        monitoring.record_at("other", request(5, &["NOT_FOUND"]), now);
        // An hour ago: its slot is reused by `now - 60 + 60`, and it is outside the window.
        monitoring.record_at("q", request(99, &[]), now - 60);
        let trends = monitoring.trends_at(None, now, 30.0);
        assert_eq!(
            trends
                .operations
                .iter()
                .map(|t| t.operation.as_str())
                .collect::<Vec<_>>(),
            ["q", "other"]
        );
        let q = &trends.operations[0].points;
        assert_eq!(q.len(), MINUTES);
        assert_eq!(q[MINUTES - 1].count, 1);
        assert_eq!(q[MINUTES - 3].count, 2);
        assert_eq!(q[MINUTES - 3].errors, 1);
        assert_eq!(q[MINUTES - 3].errors_by_code.get("FORBIDDEN"), Some(&1));
        assert_eq!(q[MINUTES - 3].sql_statements_per_request, 3.0);
        assert_eq!(q[MINUTES - 3].cache_hit_rate, Some(0.5));
        assert!(q[MINUTES - 3].p99_ms >= 20.0 && q[MINUTES - 3].p50_ms < 20.0);
        let counted: u64 = q.iter().map(|p| p.count).sum();
        assert_eq!(
            counted, 3,
            "the request of an hour ago is not in the last hour"
        );
        let all = &trends.all.points;
        assert_eq!(all[MINUTES - 1].rate_per_second, 2.0 / 30.0);
        assert_eq!(all[MINUTES - 3].rate_per_second, 2.0 / 60.0);
        assert_eq!(all[MINUTES - 1].count, 2);
        assert_eq!(all[MINUTES - 1].errors_by_code.get("NOT_FOUND"), Some(&1));
        assert_eq!(
            trends.all.points[MINUTES - 1].minute,
            minute_start(now),
            "the current minute is last"
        );
        // A slot an hour on is cleared before it is reused.
        monitoring.record_at("q", request(1, &[]), now + 58);
        let later = monitoring.trends_at(Some("q"), now + 58, 30.0);
        assert_eq!(later.operations.len(), 1);
        assert_eq!(
            later.operations[0]
                .points
                .iter()
                .map(|p| p.count)
                .sum::<u64>(),
            2
        );
        // Since start, everything counts.
        assert_eq!(monitoring.snapshot(Some("q"))[0].count, 5);
        assert_eq!(monitoring.errors_by_code().get("FORBIDDEN"), Some(&1));
    }
}
