//! In-process per-operation statistics for the monitoring API: counts, errors (by code), cache
//! hits, SQL statements and a log-linear latency histogram, all atomics, since start and per
//! minute for the last hour (the trends); and the slowest recent requests. Recording takes a read
//! lock on the operation map (a write lock only the first time an operation name is seen), so
//! requests never serialize on it.
//!
//! Memory is bounded: an operation costs ~40 KB (its 60 minutes of histograms), operation keys are
//! bounded labels (`telemetry::labels`, and at most 1 000 here), and 10 slow requests are kept per
//! minute.

mod minutes;
mod slowest;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, RwLock,
    },
    time::Duration,
};

use serde::Serialize;

pub use minutes::{current_minute, Trend, TrendPoint, Trends, WindowStats, MINUTES};
use minutes::{Aggregate, Minute, MAX_CODES, MINUTES as MINUTE_SLOTS};
use slowest::SlowMinute;
pub use slowest::SlowRequest;

/// Histogram buckets: 4 sub-buckets per power of two of microseconds, from 1 µs to ~1 hour.
const SUB_BUCKETS: usize = 4;
const BUCKETS: usize = 32 * SUB_BUCKETS;

/// Bucket index of a duration in microseconds (log-linear, ≤ 19 % relative error).
fn bucket(micros: u64) -> usize {
    let v = micros.max(1);
    let power = 63 - v.leading_zeros() as usize;
    let fraction = if power >= 2 {
        ((v >> (power - 2)) & 0b11) as usize
    } else {
        ((v << (2 - power)) & 0b11) as usize
    };
    (power * SUB_BUCKETS + fraction).min(BUCKETS - 1)
}

/// Upper bound (µs) of a bucket, the value reported for percentiles in it.
fn bucket_upper(index: usize) -> f64 {
    let power = index / SUB_BUCKETS;
    let fraction = index % SUB_BUCKETS;
    let base = (1u64 << power) as f64;
    base + base * (fraction as f64 + 1.0) / SUB_BUCKETS as f64
}

/// One operation's counters.
struct OperationStats {
    count: AtomicU64,
    errors: AtomicU64,
    cache_lookups: AtomicU64,
    cache_hits: AtomicU64,
    sql_statements: AtomicU64,
    n_plus_one: AtomicU64,
    total_micros: AtomicU64,
    min_micros: AtomicU64,
    max_micros: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
    codes: [AtomicU64; MAX_CODES],
    /// The last hour, one slot per minute (`minute % 60`).
    minutes: Box<[Minute; MINUTE_SLOTS]>,
}

impl Default for OperationStats {
    fn default() -> Self {
        OperationStats {
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            cache_lookups: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            sql_statements: AtomicU64::new(0),
            n_plus_one: AtomicU64::new(0),
            total_micros: AtomicU64::new(0),
            min_micros: AtomicU64::new(u64::MAX),
            max_micros: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            codes: std::array::from_fn(|_| AtomicU64::new(0)),
            minutes: Box::new(std::array::from_fn(|_| Minute::default())),
        }
    }
}

/// What one finished request contributes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestRecord<'a> {
    /// Wall time.
    pub duration: Duration,
    /// The response had errors.
    pub failed: bool,
    /// Cache lookups made.
    pub cache_lookups: u64,
    /// Of which served from the cache.
    pub cache_hits: u64,
    /// SQL statements run.
    pub sql_statements: u64,
    /// Suspected N+1 patterns.
    pub n_plus_one: u64,
    /// The error codes of its response, each once.
    pub codes: &'a [&'static str],
}

/// A snapshot of one operation, as the monitoring API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationSnapshot {
    /// Operation name (`anonymous` when unnamed).
    pub operation: String,
    /// Requests.
    pub count: u64,
    /// Requests whose response had errors.
    pub errors: u64,
    /// errors / count.
    pub error_rate: f64,
    /// Fastest, ms.
    pub min_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub avg_ms: f64,
    /// Median, ms (histogram precision).
    pub median_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Cache hits / cache lookups (null without lookups).
    pub cache_hit_rate: Option<f64>,
    /// Mean SQL statements per request.
    pub sql_statements_per_request: f64,
    /// Requests that showed a suspected N+1 pattern.
    pub n_plus_one_suspected: u64,
    /// Requests with each error code (codes seen only).
    pub errors_by_code: std::collections::BTreeMap<&'static str, u64>,
}

/// Every operation's statistics since start (or the last reset), and the last hour's.
pub struct Monitoring {
    operations: RwLock<HashMap<String, Arc<OperationStats>>>,
    /// The error codes told apart, in a fixed order (at most 16).
    codes: Vec<&'static str>,
    slow: Box<[SlowMinute; MINUTE_SLOTS]>,
}

impl Default for Monitoring {
    fn default() -> Self {
        Monitoring::new(&[])
    }
}

impl Monitoring {
    /// Statistics that count errors by these codes.
    pub fn new(codes: &[&'static str]) -> Monitoring {
        Monitoring {
            operations: RwLock::default(),
            codes: codes.iter().copied().take(MAX_CODES).collect(),
            slow: Box::new(std::array::from_fn(|_| SlowMinute::default())),
        }
    }

    /// Records a finished request.
    pub fn record(&self, operation: &str, record: RequestRecord) {
        self.record_at(operation, record, current_minute());
    }

    fn record_at(&self, operation: &str, record: RequestRecord, minute: u64) {
        let stats = self.operation(operation);
        let micros = record.duration.as_micros() as u64;
        let slot = &stats.minutes[minute as usize % MINUTE_SLOTS];
        let in_minute = slot.claim(minute);
        stats.count.fetch_add(1, Relaxed);
        if record.failed {
            stats.errors.fetch_add(1, Relaxed);
        }
        if in_minute {
            slot.count.fetch_add(1, Relaxed);
            slot.errors.fetch_add(u64::from(record.failed), Relaxed);
            slot.cache_lookups.fetch_add(record.cache_lookups, Relaxed);
            slot.cache_hits.fetch_add(record.cache_hits, Relaxed);
            slot.sql_statements
                .fetch_add(record.sql_statements, Relaxed);
            slot.buckets[bucket(micros)].fetch_add(1, Relaxed);
        }
        for code in record.codes {
            if let Some(i) = self.codes.iter().position(|c| c == code) {
                stats.codes[i].fetch_add(1, Relaxed);
                if in_minute {
                    slot.codes[i].fetch_add(1, Relaxed);
                }
            }
        }
        stats.cache_lookups.fetch_add(record.cache_lookups, Relaxed);
        stats.cache_hits.fetch_add(record.cache_hits, Relaxed);
        stats
            .sql_statements
            .fetch_add(record.sql_statements, Relaxed);
        stats
            .n_plus_one
            .fetch_add(record.n_plus_one.min(1), Relaxed);
        stats.total_micros.fetch_add(micros, Relaxed);
        stats.min_micros.fetch_min(micros, Relaxed);
        stats.max_micros.fetch_max(micros, Relaxed);
        stats.buckets[bucket(micros)].fetch_add(1, Relaxed);
    }

    fn operation(&self, name: &str) -> Arc<OperationStats> {
        if let Some(stats) = self.operations.read().expect("stats lock").get(name) {
            return stats.clone();
        }
        let mut operations = self.operations.write().expect("stats lock");
        // Bounded: hostile clients could invent names; past 1000, everything else is "other".
        let name = if operations.len() >= 1000 && !operations.contains_key(name) {
            "other"
        } else {
            name
        };
        operations.entry(name.to_string()).or_default().clone()
    }

    /// Forgets everything (the slowest requests too).
    pub fn reset(&self) {
        self.operations.write().expect("stats lock").clear();
        for slot in self.slow.iter() {
            if let Ok(mut kept) = slot.kept.lock() {
                kept.1.clear();
                slot.floor.store(0, Relaxed);
            }
        }
    }

    /// Snapshots, busiest first; only `operation` when given.
    pub fn snapshot(&self, operation: Option<&str>) -> Vec<OperationSnapshot> {
        let operations = self.operations.read().expect("stats lock");
        let mut out: Vec<OperationSnapshot> = operations
            .iter()
            .filter(|(name, _)| operation.is_none_or(|o| o == name.as_str()))
            .map(|(name, s)| snapshot(name, s, &self.codes))
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.operation.cmp(&b.operation)));
        out
    }

    /// Requests with each error code since start (codes seen only).
    pub fn errors_by_code(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let operations = self.operations.read().expect("stats lock");
        let mut counts = [0u64; MAX_CODES];
        for stats in operations.values() {
            for (sum, c) in counts.iter_mut().zip(&stats.codes) {
                *sum += c.load(Relaxed);
            }
        }
        self.named_codes(&counts)
    }
}

fn snapshot(name: &str, s: &OperationStats, codes: &[&'static str]) -> OperationSnapshot {
    let count = s.count.load(Relaxed);
    let errors = s.errors.load(Relaxed);
    let lookups = s.cache_lookups.load(Relaxed);
    let max_ms = s.max_micros.load(Relaxed) as f64 / 1000.0;
    let mut histogram = Aggregate::default();
    for (sum, b) in histogram.buckets.iter_mut().zip(&s.buckets) {
        *sum = b.load(Relaxed);
    }
    let percentile = |q: f64| histogram.percentile(q, max_ms);
    OperationSnapshot {
        operation: name.to_string(),
        count,
        errors,
        error_rate: if count == 0 {
            0.0
        } else {
            errors as f64 / count as f64
        },
        min_ms: if count == 0 {
            0.0
        } else {
            s.min_micros.load(Relaxed) as f64 / 1000.0
        },
        max_ms,
        avg_ms: if count == 0 {
            0.0
        } else {
            s.total_micros.load(Relaxed) as f64 / count as f64 / 1000.0
        },
        median_ms: percentile(0.5),
        p95_ms: percentile(0.95),
        p99_ms: percentile(0.99),
        cache_hit_rate: (lookups > 0).then(|| s.cache_hits.load(Relaxed) as f64 / lookups as f64),
        sql_statements_per_request: if count == 0 {
            0.0
        } else {
            s.sql_statements.load(Relaxed) as f64 / count as f64
        },
        n_plus_one_suspected: s.n_plus_one.load(Relaxed),
        errors_by_code: codes
            .iter()
            .zip(&s.codes)
            .map(|(c, n)| (*c, n.load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for micros in 1..200_000u64 {
            let b = bucket(micros);
            assert!(b >= last);
            last = b;
            let upper = bucket_upper(b);
            assert!(
                upper >= micros as f64,
                "{micros} above its bucket's bound {upper}"
            );
            assert!(
                upper <= micros as f64 * 1.26 + 1.0,
                "{micros}: bound {upper} too loose"
            );
        }
    }

    #[test]
    fn percentiles_follow_the_recorded_latencies() {
        let monitoring = Monitoring::default();
        for ms in 1..=100u64 {
            monitoring.record(
                "q",
                RequestRecord {
                    duration: Duration::from_millis(ms),
                    failed: ms % 10 == 0,
                    ..Default::default()
                },
            );
        }
        let s = &monitoring.snapshot(Some("q"))[0];
        assert_eq!(s.count, 100);
        assert_eq!(s.errors, 10);
        assert!(
            (s.median_ms - 50.0).abs() <= 50.0 * 0.26,
            "median {}",
            s.median_ms
        );
        assert!((s.p99_ms - 99.0).abs() <= 99.0 * 0.26, "p99 {}", s.p99_ms);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.max_ms, 100.0);
        monitoring.reset();
        assert!(monitoring.snapshot(None).is_empty());
    }
}
