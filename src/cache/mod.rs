//! The two-tier cache between resolvers and the store: moka in process (L1) in front of Redis
//! shared by every replica (L2).
//!
//! - Read path: L1 → L2 → load. Concurrent misses of one key in a process run one load (single
//!   flight); a load fills L1 and (in the background) L2.
//! - Invalidation by tag generations: every entry records, for each tag it was derived from, the
//!   tag's generation when its load *started*. Invalidating a tag increments its generation (Redis
//!   `INCR`, O(1)) and publishes it; an entry whose recorded generations differ from the current
//!   ones is never served. So a load that raced an invalidation writes an entry nobody will read.
//! - Each replica mirrors tag generations locally, updated by pub/sub; L1 checks against the
//!   mirror with no I/O. Without the channel a replica cannot know what it missed: L1 is flushed
//!   and kept off until it is subscribed again.
//! - Redis trouble never fails a request: every call has a timeout, a circuit breaker skips Redis
//!   after repeated failures, and when Redis comes back L1 is flushed and missed invalidations are
//!   replayed.
//! - Freshness is decided on the cache's [`Clock`] (tests advance it).
//!
//! Modules: `entry` (the stored entry, its format and encoding), `walk` (the read path, single
//! flight, stale serving), `generations` (the tag mirror and the channel state), `shared` (the
//! seam to the shared tier), `redis_tier` and `breaker` (Redis), `apq` (persisted queries),
//! [`response`] (whole responses), [`keys`], `metrics`.

mod apq;
mod breaker;
mod entry;
mod generations;
pub mod keys;
mod metrics;
mod redis_diagnosis;
mod redis_tier;
pub use redis_diagnosis::{diagnose as diagnose_redis, RedisDiagnosis};
pub mod response;
mod shared;
mod walk;

use std::sync::{Arc, Mutex};

pub use keys::{tags, CacheKey, Kind};
pub use metrics::{CacheMetrics, KindStats};
pub(crate) use redis_tier::RedisTier;

use crate::{
    clock::Clock,
    config::{CacheSettings, KindSettings},
};
use entry::Entry;
pub use generations::Change;
use generations::Generations;
use shared::{SharedTier, TierEvents};

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Fresh value from the in-process tier.
    L1Hit,
    /// Fresh value from Redis.
    L2Hit,
    /// Loaded from the store.
    Miss,
    /// Expired value served while a background refresh runs.
    StaleWhileRevalidate,
    /// Expired value served because the load failed.
    StaleIfError,
    /// The cache is disabled, or this kind keeps nothing (`ttl` and both stale windows 0).
    Bypass,
}

impl Outcome {
    /// The wire name (as in `extensions.cache`).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::L1Hit => "l1Hit",
            Outcome::L2Hit => "l2Hit",
            Outcome::Miss => "miss",
            Outcome::StaleWhileRevalidate => "staleWhileRevalidate",
            Outcome::StaleIfError => "staleIfError",
            Outcome::Bypass => "bypass",
        }
    }
}

/// The in-process tier: entries by key, bounded by weight.
type L1 = moka::sync::Cache<String, Arc<Entry>>;

/// Shared handle to the cache; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    settings: CacheSettings,
    /// Every freshness decision reads this clock (and so does the Redis tier's breaker).
    clock: Clock,
    l1: L1,
    /// Tag generations and the invalidation channel's state (whether L1 serves, the epoch).
    generations: Arc<Generations>,
    inflight: walk::Inflight,
    /// Persisted-query documents by SHA-256, bounded by bytes apart from L1 (`apq`).
    persisted: apq::LocalStore,
    redis: Option<RedisTier>,
    metrics: Arc<CacheMetrics>,
}

impl Cache {
    /// Builds the cache on real time; with a Redis URL, starts the connection and the
    /// invalidation listener in the background (the gateway starts with Redis down).
    pub fn new(settings: &CacheSettings) -> Cache {
        Cache::with_clock(settings, Clock::system())
    }

    /// Like [`Cache::new`], reading time from `clock` (tests advance it).
    pub fn with_clock(settings: &CacheSettings, clock: Clock) -> Cache {
        let metrics = Arc::new(CacheMetrics::default());
        let eviction_metrics = metrics.clone();
        let l1 = moka::sync::Cache::builder()
            .max_capacity(settings.l1_max_bytes)
            .weigher(|key: &String, entry: &Arc<Entry>| entry.weight(key))
            .eviction_listener(move |_, _, cause| {
                if cause.was_evicted() {
                    eviction_metrics.record_l1_eviction();
                }
            })
            .build();
        let redis_configured = settings.enabled && !settings.redis_url.is_empty();
        // With Redis, L1 waits for the invalidation channel before serving anything.
        let generations = Arc::new(Generations::new(
            usize::try_from(settings.generation_mirror_max_tags).unwrap_or(usize::MAX),
            l1.clone(),
            settings.l1_enabled,
            redis_configured,
            &clock,
        ));
        let events = Arc::downgrade(&generations) as std::sync::Weak<dyn TierEvents>;
        let redis =
            redis_configured.then(|| RedisTier::start(settings, events, metrics.clone(), &clock));
        Cache {
            inner: Arc::new(Inner {
                l1,
                generations,
                inflight: Mutex::default(),
                persisted: apq::local_store(settings),
                redis,
                metrics,
                clock,
                settings: settings.clone(),
            }),
        }
    }

    /// The clock every freshness decision of this cache reads.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The Redis handle, shared with the rate limiter; `None` without Redis.
    pub(crate) fn redis_tier(&self) -> Option<&RedisTier> {
        self.inner.redis.as_ref()
    }

    /// The tier shared by every replica, as the cache uses it.
    fn shared(&self) -> Option<&dyn SharedTier> {
        self.inner.redis.as_ref().map(|r| r as &dyn SharedTier)
    }

    fn kind_settings(&self, kind: Kind) -> KindSettings {
        self.inner.settings.for_kind(kind)
    }

    /// Whether values of `kind` are kept at all (the cache on, and the kind's fresh or stale
    /// windows not all `0s`).
    pub fn keeps(&self, kind: Kind) -> bool {
        self.inner.settings.enabled && !self.kind_settings(kind).keeps_nothing()
    }

    /// Counters for status pages and metrics.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.inner.metrics
    }

    /// Whether the in-process tier is serving.
    pub fn l1_active(&self) -> bool {
        self.inner.generations.l1_active()
    }

    /// Entries and weighted bytes in L1.
    pub fn l1_usage(&self) -> (u64, u64) {
        self.inner.l1.run_pending_tasks();
        (self.inner.l1.entry_count(), self.inner.l1.weighted_size())
    }

    /// `None` without Redis; otherwise whether it is usable, and why not.
    pub fn redis_health(&self) -> Option<Result<(), String>> {
        self.shared().map(SharedTier::health)
    }

    /// Tags mirrored, and how often the full mirror started over.
    pub fn mirror_usage(&self) -> (usize, u64) {
        self.inner.generations.usage()
    }

    /// Invalidates every entry derived from any of `tags`, on every replica. Returns once Redis
    /// has the new generations and the message is published (or Redis is skipped).
    pub async fn invalidate(&self, tags: &[String]) {
        if tags.is_empty() {
            return;
        }
        if !self.inner.settings.enabled {
            // Nothing cached, but live subscriptions still follow the change.
            self.inner.generations.announce(tags);
            return;
        }
        self.inner.generations.bump(tags);
        if let Some(shared) = self.shared() {
            if let Some(remote) = shared.bump(tags).await {
                self.inner.generations.observe(tags, &remote);
            }
        }
        self.inner.metrics.record_invalidations(tags.len());
    }

    /// The invalidation-channel epoch (bumped when the channel drops or comes back); take it
    /// before a load starts.
    pub fn epoch(&self) -> u64 {
        self.inner.generations.epoch()
    }

    /// Every change from now on (`Change`), as this replica hears it: the feed of live
    /// subscriptions.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.inner.generations.listen()
    }

    /// Invalidates everything: every entry carries the `all` tag.
    pub async fn flush_all(&self) {
        self.inner.generations.flush_l1();
        self.invalidate(&[keys::tags::ALL.to_string()]).await;
    }

    /// The outbox position the shared tier records (see [`SharedTier::outbox_position`]).
    pub async fn outbox_position(&self) -> Recorded {
        let Some(shared) = self.shared() else {
            return Recorded::Never;
        };
        match shared.outbox_position().await {
            Some(Some(seq)) => Recorded::At(seq),
            Some(None) => Recorded::Never,
            None => Recorded::Unknown,
        }
    }

    /// Records in the shared tier that every outbox row up to `seq` is applied.
    pub async fn advance_outbox_position(&self, seq: i64) {
        if let Some(shared) = self.shared() {
            shared.advance_outbox_position(seq).await;
        }
    }

    /// Invalidates every entry of one kind.
    pub async fn flush_kind(&self, kind: Kind) {
        self.invalidate(&[keys::tags::kind(kind)]).await;
    }

    /// Keys loaded right now (single flight in progress).
    pub fn inflight(&self) -> usize {
        self.inner.inflight.lock().expect("inflight lock").len()
    }
}

/// What the shared tier knows of the invalidation outbox position (`crate::invalidation`).
pub enum Recorded {
    /// Every row up to here was applied.
    At(i64),
    /// Nothing recorded (a new Redis, or none configured: then nothing outlives this process).
    Never,
    /// Redis did not answer.
    Unknown,
}
