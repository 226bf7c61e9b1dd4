//! In-process per-operation statistics for the monitoring API: counts, errors (by code), cache
//! hits, SQL statements and a log-linear latency histogram, all atomics, since start and per
//! minute for the last hour (the trends); and the slowest recent requests. Recording takes a read
//! lock on the operation map (a write lock only the first time an operation name is seen), so
//! requests never serialize on it.
//!
//! Memory is bounded: an operation costs ~40 KB (its 60 minutes of histograms), operation keys are
//! bounded labels (`telemetry::labels`, and at most 1 000 here), and 10 slow requests are kept per
//! minute.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
        Arc, Mutex, RwLock,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

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
    minutes: Box<[Minute; MINUTES]>,
}

/// Error codes told apart (the gateway has 14).
const MAX_CODES: usize = 16;
/// Minutes of trends kept.
pub const MINUTES: usize = 60;
/// A slot that holds no minute yet.
const NO_MINUTE: u64 = u64::MAX;

/// One operation's counters for one minute. A slot is reused an hour later: the first request of
/// the new minute claims and clears it (a request racing that claim may be lost from the minute).
struct Minute {
    minute: AtomicU64,
    count: AtomicU64,
    errors: AtomicU64,
    cache_lookups: AtomicU64,
    cache_hits: AtomicU64,
    sql_statements: AtomicU64,
    codes: [AtomicU32; MAX_CODES],
    buckets: [AtomicU32; BUCKETS],
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
    fn claim(&self, minute: u64) -> bool {
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

    fn add_to(&self, total: &mut Aggregate) {
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
struct Aggregate {
    count: u64,
    errors: u64,
    cache_lookups: u64,
    cache_hits: u64,
    sql_statements: u64,
    codes: [u64; MAX_CODES],
    buckets: [u64; BUCKETS],
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
    fn merge(&mut self, other: &Aggregate) {
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
    fn percentile(&self, q: f64, max_ms: f64) -> f64 {
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

    fn ratio(part: u64, whole: u64) -> f64 {
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
struct SlowMinute {
    minute: AtomicU64,
    /// When full: the duration (µs) a request must exceed to be kept.
    floor: AtomicU64,
    kept: Mutex<(u64, Vec<(u64, SlowRequest)>)>,
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
    pub errors_by_code: std::collections::BTreeMap<&'static str, u64>,
}

/// An operation's last hour.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    /// Operation key, or `all`.
    pub operation: String,
    /// One point per minute, oldest first, the current minute last.
    pub points: Vec<TrendPoint>,
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
    slow: Box<[SlowMinute; MINUTES]>,
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
        let slot = &stats.minutes[minute as usize % MINUTES];
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
        if slot.minute.load(Relaxed) == minute && micros <= slot.floor.load(Relaxed) {
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
            slot.minute.store(minute, Relaxed);
            slot.floor.store(0, Relaxed);
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

    /// Per-minute trends of the last hour: every operation with requests in it (busiest first,
    /// only `operation` when given), and `all` of them merged, first.
    pub fn trends(&self, operation: Option<&str>) -> Vec<Trend> {
        self.trends_at(operation, current_minute())
    }

    fn trends_at(&self, operation: Option<&str>, now: u64) -> Vec<Trend> {
        let first = now + 1 - MINUTES as u64;
        let operations = self.operations.read().expect("stats lock");
        let mut total = vec![Aggregate::default(); MINUTES];
        let mut trends: Vec<(u64, Trend)> = Vec::new();
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
            if operation.is_none_or(|o| o == name) {
                let max_ms = stats.max_micros.load(Relaxed) as f64 / 1000.0;
                trends.push((count, self.trend(name, &minutes, first, max_ms)));
            }
        }
        trends.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.operation.cmp(&b.1.operation)));
        let mut out = Vec::with_capacity(trends.len() + 1);
        if operation.is_none() {
            out.push(self.trend("all", &total, first, f64::INFINITY));
        }
        out.extend(trends.into_iter().map(|(_, t)| t));
        out
    }

    fn trend(&self, name: &str, minutes: &[Aggregate], first: u64, max_ms: f64) -> Trend {
        let points = minutes
            .iter()
            .enumerate()
            .map(|(i, m)| TrendPoint {
                minute: minute_start(first + i as u64),
                count: m.count,
                errors: m.errors,
                rate_per_second: m.count as f64 / 60.0,
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

    fn named_codes(
        &self,
        counts: &[u64; MAX_CODES],
    ) -> std::collections::BTreeMap<&'static str, u64> {
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
        let first = now + 1 - minutes.clamp(1, MINUTES as u64);
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

/// The start of an epoch minute, RFC 3339.
fn minute_start(minute: u64) -> String {
    chrono::DateTime::from_timestamp((minute * 60) as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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
        let trends = monitoring.trends_at(None, now);
        assert_eq!(
            trends
                .iter()
                .map(|t| t.operation.as_str())
                .collect::<Vec<_>>(),
            ["all", "q", "other"]
        );
        let q = &trends[1].points;
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
        let all = &trends[0].points;
        assert_eq!(all[MINUTES - 1].count, 2);
        assert_eq!(all[MINUTES - 1].errors_by_code.get("NOT_FOUND"), Some(&1));
        assert_eq!(
            trends[0].points[MINUTES - 1].minute,
            minute_start(now),
            "the current minute is last"
        );
        // A slot an hour on is cleared before it is reused.
        monitoring.record_at("q", request(1, &[]), now + 58);
        let later = monitoring.trends_at(Some("q"), now + 58);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].points.iter().map(|p| p.count).sum::<u64>(), 2);
        // Since start, everything counts.
        assert_eq!(monitoring.snapshot(Some("q"))[0].count, 5);
        assert_eq!(monitoring.errors_by_code().get("FORBIDDEN"), Some(&1));
    }

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
