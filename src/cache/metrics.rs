//! Cache counters per kind and tier: lock-free atomics, read by the status endpoint.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use serde::Serialize;

use super::{Kind, Outcome};
use crate::telemetry::metrics::CacheLookups;

#[derive(Default)]
struct KindCounters {
    l1_hits: AtomicU64,
    l2_hits: AtomicU64,
    misses: AtomicU64,
    stale_while_revalidate: AtomicU64,
    stale_if_error: AtomicU64,
    loads: AtomicU64,
    load_errors: AtomicU64,
    load_micros: AtomicU64,
}

/// Counters of the whole cache.
#[derive(Default)]
pub struct CacheMetrics {
    kinds: [KindCounters; Kind::ALL.len()],
    l1_evictions: AtomicU64,
    redis_errors: AtomicU64,
    invalidations: AtomicU64,
}

/// A snapshot of one kind's counters.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindStats {
    /// The kind's name and lookups by outcome (what telemetry's counter reports too).
    #[serde(flatten)]
    pub lookups: CacheLookups,
    /// Loads that failed.
    pub load_errors: u64,
    /// Mean load time in milliseconds.
    pub mean_load_ms: f64,
}

impl CacheMetrics {
    pub(crate) fn record(&self, kind: Kind, outcome: Outcome) {
        let k = &self.kinds[kind.index()];
        match outcome {
            Outcome::L1Hit => &k.l1_hits,
            Outcome::L2Hit => &k.l2_hits,
            Outcome::Miss => &k.misses,
            Outcome::StaleWhileRevalidate => &k.stale_while_revalidate,
            Outcome::StaleIfError => &k.stale_if_error,
            Outcome::Bypass => return,
        }
        .fetch_add(1, Relaxed);
    }

    pub(crate) fn record_load(&self, kind: Kind, took: Duration, ok: bool) {
        let k = &self.kinds[kind.index()];
        k.loads.fetch_add(1, Relaxed);
        k.load_micros.fetch_add(took.as_micros() as u64, Relaxed);
        if !ok {
            k.load_errors.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn record_l1_eviction(&self) {
        self.l1_evictions.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_redis_error(&self) {
        self.redis_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_invalidations(&self, n: usize) {
        self.invalidations.fetch_add(n as u64, Relaxed);
    }

    /// Per-kind snapshot.
    pub fn kinds(&self) -> Vec<KindStats> {
        Kind::ALL
            .iter()
            .map(|kind| {
                let k = &self.kinds[kind.index()];
                let loads = k.loads.load(Relaxed);
                KindStats {
                    lookups: CacheLookups {
                        kind: kind.name(),
                        l1_hits: k.l1_hits.load(Relaxed),
                        l2_hits: k.l2_hits.load(Relaxed),
                        misses: k.misses.load(Relaxed),
                        stale_while_revalidate: k.stale_while_revalidate.load(Relaxed),
                        stale_if_error: k.stale_if_error.load(Relaxed),
                    },
                    load_errors: k.load_errors.load(Relaxed),
                    mean_load_ms: if loads == 0 {
                        0.0
                    } else {
                        k.load_micros.load(Relaxed) as f64 / loads as f64 / 1000.0
                    },
                }
            })
            .collect()
    }

    /// L1 entries evicted for size.
    pub fn l1_evictions(&self) -> u64 {
        self.l1_evictions.load(Relaxed)
    }

    /// Redis calls that failed or timed out.
    pub fn redis_errors(&self) -> u64 {
        self.redis_errors.load(Relaxed)
    }

    /// Tags invalidated.
    pub fn invalidations(&self) -> u64 {
        self.invalidations.load(Relaxed)
    }
}

/// Telemetry's cache gauges read the cache through this (each gauge calls only its reading).
impl crate::telemetry::metrics::CacheGauges for super::Cache {
    fn lookups(&self) -> Vec<CacheLookups> {
        self.metrics()
            .kinds()
            .into_iter()
            .map(|k| k.lookups)
            .collect()
    }

    fn redis_errors(&self) -> u64 {
        self.metrics().redis_errors()
    }

    fn l1_evictions(&self) -> u64 {
        self.metrics().l1_evictions()
    }

    fn l1_bytes(&self) -> u64 {
        self.l1_usage().1
    }

    fn redis_skipped(&self) -> bool {
        matches!(self.redis_health(), Some(Err(_)))
    }
}
