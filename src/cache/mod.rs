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

mod apq;
mod generations;
pub mod keys;
mod metrics;
mod redis_tier;
pub mod response;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use rand::Rng;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::sync::OnceCell;
use tracing::Instrument;

pub use keys::{tags, CacheKey, Kind};
pub use metrics::{CacheMetrics, KindStats};

use crate::config::{CacheSettings, KindSettings};
use redis_tier::RedisTier;

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

/// A stored value with its freshness and the generations of the tags it was derived from.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    fresh_until_ms: u64,
    stale_until_ms: u64,
    tags: Vec<String>,
    generations: Vec<u64>,
    value: Vec<u8>,
    /// A whole response, kept decoded (in-process only, never encoded): a hit shares it instead
    /// of decoding kilobytes of JSON bytes again.
    #[serde(skip)]
    response: Option<Arc<response::StoredResponse>>,
}

impl Entry {
    fn weight(&self, key: &str) -> u32 {
        let tags: usize = self.tags.iter().map(String::len).sum();
        let response = self.response.as_ref().map_or(0, |r| {
            r.body.len() + r.operation.len() + 64 * r.requirements.len()
        });
        u32::try_from(
            key.len() + self.value.len() + response + tags + 8 * self.generations.len() + 64,
        )
        .unwrap_or(u32::MAX)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Shared handle to the cache; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    settings: CacheSettings,
    l1: moka::sync::Cache<String, Arc<Entry>>,
    /// Off while the invalidation channel is down (or when configured off).
    l1_on: AtomicBool,
    /// Bumped whenever the invalidation channel drops or comes back: a load that started
    /// before may have missed invalidations nobody can replay to it, so it is not kept in L1.
    epoch: std::sync::atomic::AtomicU64,
    /// Local mirror of tag generations (bounded).
    generations: Mutex<generations::Mirror>,
    inflight: Mutex<HashMap<String, Arc<OnceCell<Arc<Entry>>>>>,
    /// Persisted-query documents by SHA-256, bounded by bytes apart from L1 (`apq`).
    persisted: moka::sync::Cache<String, Arc<str>>,
    redis: Option<RedisTier>,
    metrics: Arc<CacheMetrics>,
}

/// Encodes a value compactly (postcard: serde, varint integers, no field names).
fn encode<V: Serialize>(value: &V) -> Vec<u8> {
    postcard::to_allocvec(value).expect("cache values serialize")
}

fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Option<V> {
    postcard::from_bytes(bytes).ok()
}

impl Cache {
    /// Builds the cache; with a Redis URL, starts the connection and the invalidation listener
    /// in the background (the gateway starts with Redis down).
    pub fn new(settings: &CacheSettings) -> Cache {
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
        let inner = Arc::new_cyclic(|weak| Inner {
            l1,
            // With Redis, L1 waits for the invalidation channel before serving anything.
            l1_on: AtomicBool::new(settings.l1_enabled && !redis_configured),
            epoch: std::sync::atomic::AtomicU64::new(0),
            generations: Mutex::new(generations::Mirror::new(
                usize::try_from(settings.generation_mirror_max_tags).unwrap_or(usize::MAX),
                redis_configured,
            )),
            inflight: Mutex::new(HashMap::new()),
            persisted: apq::local_store(settings),
            redis: redis_configured
                .then(|| RedisTier::start(settings, weak.clone(), metrics.clone())),
            metrics,
            settings: settings.clone(),
        });
        Cache { inner }
    }

    /// Settings of a kind.
    fn kind_settings(&self, kind: Kind) -> KindSettings {
        let s = &self.inner.settings;
        match kind {
            Kind::CourtAvailability => s.court_availability,
            Kind::Dashboard => s.dashboard,
            Kind::AuthContext => s.auth_context,
            Kind::Permissions => s.permissions,
            Kind::Club => s.club,
            Kind::Response => s.response,
        }
    }

    /// Counters for status pages and metrics.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.inner.metrics
    }

    /// Whether the in-process tier is serving.
    pub fn l1_active(&self) -> bool {
        self.inner.l1_on.load(Ordering::Acquire)
    }

    /// Entries and weighted bytes in L1.
    pub fn l1_usage(&self) -> (u64, u64) {
        self.inner.l1.run_pending_tasks();
        (self.inner.l1.entry_count(), self.inner.l1.weighted_size())
    }

    /// Takes a token from a bucket shared by every replica; `None` without a usable Redis.
    pub async fn take_shared_token(
        &self,
        key: &str,
        capacity: f64,
        per_second: f64,
    ) -> Option<(bool, u64)> {
        self.inner
            .redis
            .as_ref()?
            .take_token(key, capacity, per_second)
            .await
    }

    /// `None` without Redis; otherwise whether it is usable, and why not.
    pub fn redis_health(&self) -> Option<Result<(), String>> {
        self.inner.redis.as_ref().map(RedisTier::health)
    }

    /// Returns the cached value of `key` or loads it. `tags` name what the value is derived from.
    /// Load errors are returned (and never cached), except that an expired value within its
    /// kind's `stale_if_error` age is served instead.
    pub async fn get_or_load<V, E, F, Fut>(
        &self,
        key: CacheKey,
        tags: Vec<String>,
        load: F,
    ) -> Result<(V, Outcome), E>
    where
        V: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let span = tracing::debug_span!(
            "cache.lookup",
            otel.name = %format!("cache {}", key.kind.name()),
            cache.kind = key.kind.name(),
            cache.tier = tracing::field::Empty,
            cache.outcome = tracing::field::Empty,
        );
        let result = self.lookup(key, tags, load).instrument(span.clone()).await;
        match &result {
            Ok((_, outcome)) => {
                let tier = match outcome {
                    Outcome::L1Hit => "l1",
                    Outcome::L2Hit => "l2",
                    Outcome::StaleWhileRevalidate | Outcome::StaleIfError => "stale",
                    Outcome::Miss | Outcome::Bypass => "store",
                };
                span.record("cache.tier", tier);
                span.record("cache.outcome", outcome.name());
            }
            Err(_) => {
                span.record("cache.outcome", "error");
            }
        }
        result
    }

    async fn lookup<V, E, F, Fut>(
        &self,
        key: CacheKey,
        tags: Vec<String>,
        load: F,
    ) -> Result<(V, Outcome), E>
    where
        V: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let kind = key.kind;
        let settings = self.kind_settings(kind);
        // A kind with no fresh and no stale window is not cached: no lookup in either tier (a
        // Redis round trip per read for nothing), no encoding, no entry.
        if !self.inner.settings.enabled || settings.keeps_nothing() {
            response::spoil();
            return load().await.map(|v| (v, Outcome::Bypass));
        }
        let mut tags = tags;
        tags.push(keys::tags::kind(kind));
        tags.push(keys::tags::ALL.to_string());
        let now = now_ms();
        let mut stale: Option<Arc<Entry>> = None;

        if let Some(entry) = self.l1_get(key.as_str()) {
            if self.is_current(&entry) {
                if now < entry.fresh_until_ms {
                    if let Some(value) = decode(&entry.value) {
                        self.inner.metrics.record(kind, Outcome::L1Hit);
                        response::note(&entry.tags, &entry.generations, entry.fresh_until_ms);
                        return Ok((value, Outcome::L1Hit));
                    }
                }
                stale = Some(entry);
            }
        }
        if let Some(redis) = &self.inner.redis {
            if let Some((entry, generations)) = redis.get(key.as_str(), &tags).await {
                self.observe_generations(&tags, &generations);
                if let Some(entry) = entry.filter(|e| self.is_current(e)) {
                    let entry = Arc::new(entry);
                    if now < entry.fresh_until_ms {
                        if let Some(value) = decode(&entry.value) {
                            self.l1_put(key.as_str(), entry.clone());
                            self.inner.metrics.record(kind, Outcome::L2Hit);
                            response::note(&entry.tags, &entry.generations, entry.fresh_until_ms);
                            return Ok((value, Outcome::L2Hit));
                        }
                    }
                    if stale
                        .as_ref()
                        .is_none_or(|s| s.fresh_until_ms < entry.fresh_until_ms)
                    {
                        stale = Some(entry);
                    }
                }
            }
        }
        if let Some(entry) = &stale {
            let swr = settings.stale_while_revalidate.as_millis() as u64;
            if swr > 0 && now < entry.fresh_until_ms + swr {
                if let Some(value) = decode(&entry.value) {
                    let cache = self.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        let _ = cache.load_once::<V, E, F, Fut>(key, tags, load).await;
                    });
                    self.inner
                        .metrics
                        .record(kind, Outcome::StaleWhileRevalidate);
                    response::spoil();
                    return Ok((value, Outcome::StaleWhileRevalidate));
                }
            }
        }
        match self.load_once::<V, E, F, Fut>(key, tags, load).await {
            Ok(entry) => match decode(&entry.value) {
                Some(value) => {
                    response::note(&entry.tags, &entry.generations, entry.fresh_until_ms);
                    Ok((value, Outcome::Miss))
                }
                None => unreachable!("a value encoded by this process decodes"),
            },
            Err(error) => {
                let sie = settings.stale_if_error.as_millis() as u64;
                if let Some(value) = stale
                    .filter(|e| sie > 0 && now < e.fresh_until_ms + sie)
                    .and_then(|e| decode(&e.value))
                {
                    self.inner.metrics.record(kind, Outcome::StaleIfError);
                    response::spoil();
                    return Ok((value, Outcome::StaleIfError));
                }
                Err(error)
            }
        }
    }

    /// Single flight: concurrent callers for one key share one load.
    async fn load_once<V, E, F, Fut>(
        &self,
        key: CacheKey,
        tags: Vec<String>,
        load: F,
    ) -> Result<Arc<Entry>, E>
    where
        V: Serialize + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let cell = {
            let mut inflight = self.inner.inflight.lock().expect("inflight lock");
            inflight
                .entry(key.as_str().to_string())
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let result = cell
            .get_or_try_init(|| async {
                // A caller that missed L1 just before another caller's load landed finds it
                // here instead of loading again.
                if let Some(entry) = self.l1_get(key.as_str()) {
                    if self.is_current(&entry) && now_ms() < entry.fresh_until_ms {
                        return Ok(entry);
                    }
                }
                // Generations as the load starts: an invalidation during the load makes the entry
                // unreadable rather than stale.
                let generations = self.current_generations(&tags);
                let epoch = self.epoch();
                let started = std::time::Instant::now();
                let value = response::in_load(load()).await;
                self.inner
                    .metrics
                    .record_load(key.kind, started.elapsed(), value.is_ok());
                let value = value?;
                let entry =
                    Arc::new(self.entry(key.kind, tags.clone(), generations, encode(&value)));
                self.inner.metrics.record(key.kind, Outcome::Miss);
                if self.is_current(&entry) && self.epoch() == epoch {
                    self.l1_put(key.as_str(), entry.clone());
                    if let Some(redis) = &self.inner.redis {
                        redis.put_in_background(key.as_str().to_string(), entry.clone());
                    }
                }
                Ok(entry)
            })
            .await
            .cloned();
        let mut inflight = self.inner.inflight.lock().expect("inflight lock");
        if inflight
            .get(key.as_str())
            .is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            inflight.remove(key.as_str());
        }
        result
    }

    fn entry(&self, kind: Kind, tags: Vec<String>, generations: Vec<u64>, value: Vec<u8>) -> Entry {
        let settings = self.kind_settings(kind);
        let ttl = settings.ttl.as_millis() as f64;
        let jitter = self.inner.settings.ttl_jitter;
        let factor = if jitter > 0.0 {
            rand::rng().random_range(1.0 - jitter..=1.0 + jitter)
        } else {
            1.0
        };
        let now = now_ms();
        let fresh_until_ms = now + (ttl * factor) as u64;
        let extra = settings
            .stale_while_revalidate
            .max(settings.stale_if_error)
            .as_millis() as u64;
        Entry {
            fresh_until_ms,
            stale_until_ms: fresh_until_ms + extra,
            tags,
            generations,
            value,
            response: None,
        }
    }

    fn l1_get(&self, key: &str) -> Option<Arc<Entry>> {
        if !self.l1_active() {
            return None;
        }
        let entry = self.inner.l1.get(key)?;
        if now_ms() >= entry.stale_until_ms {
            self.inner.l1.invalidate(key);
            return None;
        }
        Some(entry)
    }

    fn l1_put(&self, key: &str, entry: Arc<Entry>) {
        if self.l1_active() {
            self.inner.l1.insert(key.to_string(), entry);
        }
    }

    /// Whether every tag of the entry is still at the generation the entry recorded.
    fn is_current(&self, entry: &Entry) -> bool {
        self.inner
            .generations
            .lock()
            .expect("generations lock")
            .is_current(&entry.tags, &entry.generations)
    }

    /// The generations a load starting now records.
    fn current_generations(&self, tags: &[String]) -> Vec<u64> {
        self.inner
            .generations
            .lock()
            .expect("generations lock")
            .for_load(tags)
    }

    /// Raises the local mirror to generations read from Redis (never lowers it).
    fn observe_generations(&self, tags: &[String], seen: &[u64]) {
        self.inner
            .generations
            .lock()
            .expect("generations lock")
            .observe(tags, seen);
    }

    /// Tags mirrored, and how often the full mirror started over.
    pub fn mirror_usage(&self) -> (usize, u64) {
        let mirror = self.inner.generations.lock().expect("generations lock");
        (mirror.len(), mirror.resets)
    }

    /// Invalidates every entry derived from any of `tags`, on every replica. Returns once Redis
    /// has the new generations and the message is published (or Redis is skipped).
    pub async fn invalidate(&self, tags: &[String]) {
        if !self.inner.settings.enabled || tags.is_empty() {
            return;
        }
        self.inner
            .generations
            .lock()
            .expect("generations lock")
            .bump(tags);
        if let Some(redis) = &self.inner.redis {
            match redis.bump(tags).await {
                Some(remote) => self.observe_generations(tags, &remote),
                None => redis.remember_missed(tags),
            }
        }
        self.inner.metrics.record_invalidations(tags.len());
    }

    /// Drops every L1 entry (after a possible loss of invalidations).
    fn flush_l1(&self) {
        self.inner.l1.invalidate_all();
    }

    /// The invalidation-channel epoch (see `Inner::epoch`); take it before a load starts.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// Whether whole responses are cached (and served) right now.
    pub fn response_cache_on(&self) -> bool {
        let settings = &self.inner.settings;
        settings.enabled && settings.response_cache && self.l1_active()
    }

    /// A stored whole response for `key` whose every source is still current and fresh.
    pub fn response_get(&self, key: &CacheKey) -> Option<Arc<response::StoredResponse>> {
        let settings = &self.inner.settings;
        if !settings.enabled || !settings.response_cache {
            return None;
        }
        let entry = self.l1_get(key.as_str())?;
        if !self.is_current(&entry) || now_ms() >= entry.fresh_until_ms {
            return None;
        }
        entry.response.clone()
    }

    /// Stores a whole response built from what `recording` saw; false when it cannot be stored
    /// (something untracked was read, no cached source at all, or a source already changed).
    pub fn response_put(
        &self,
        key: &CacheKey,
        recording: &response::Recording,
        stored: response::StoredResponse,
        epoch: u64,
    ) -> bool {
        let settings = &self.inner.settings;
        if !settings.enabled
            || !settings.response_cache
            || recording.is_spoiled()
            || self.epoch() != epoch
        {
            return false;
        }
        let Some((mut tags, mut generations, fresh_until_ms)) = recording.sources() else {
            return false;
        };
        let now = now_ms();
        let fresh_until_ms = fresh_until_ms.min(now + settings.response.ttl.as_millis() as u64);
        if tags.is_empty() || fresh_until_ms <= now {
            return false;
        }
        let kind_tag = keys::tags::kind(Kind::Response);
        generations.push(self.current_generations(std::slice::from_ref(&kind_tag))[0]);
        tags.push(kind_tag);
        let entry = Entry {
            fresh_until_ms,
            stale_until_ms: fresh_until_ms,
            tags,
            generations,
            value: Vec::new(),
            response: Some(Arc::new(stored)),
        };
        if !self.is_current(&entry) {
            return false;
        }
        self.l1_put(key.as_str(), Arc::new(entry));
        true
    }

    /// Counts a whole-response lookup (hits and misses) for metrics and status.
    pub fn record_response(&self, outcome: Outcome) {
        self.inner.metrics.record(Kind::Response, outcome);
    }

    /// Invalidates everything: every entry carries the `all` tag.
    pub async fn flush_all(&self) {
        self.flush_l1();
        self.invalidate(&[keys::tags::ALL.to_string()]).await;
    }

    /// Invalidates every entry of one kind.
    pub async fn flush_kind(&self, kind: Kind) {
        self.invalidate(&[keys::tags::kind(kind)]).await;
    }

    /// Applies generations published by another replica.
    fn apply_remote(&self, tags: &[String], generations: &[u64]) {
        self.inner
            .generations
            .lock()
            .expect("generations lock")
            .apply_published(tags, generations);
    }

    /// The invalidation channel is (re)established: what was missed is unknown, so start over.
    fn channel_up(&self) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.flush_l1();
        self.inner
            .l1_on
            .store(self.inner.settings.l1_enabled, Ordering::Release);
        tracing::info!("cache invalidation channel subscribed; L1 on");
    }

    /// The invalidation channel is lost: flush and stop serving from L1 until it is back.
    fn channel_down(&self) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        if self.inner.l1_on.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                "cache invalidation channel lost; L1 flushed and off until resubscribed"
            );
        }
        self.flush_l1();
    }

    /// Keys loaded right now (single flight in progress).
    pub fn inflight(&self) -> usize {
        self.inner.inflight.lock().expect("inflight lock").len()
    }

    /// The local tag set of an encoded message; used by the Redis tier.
    fn parse_message(payload: &str) -> (Vec<String>, Vec<u64>) {
        let mut tags = Vec::new();
        let mut generations = Vec::new();
        for part in payload.split('\n') {
            if let Some((generation, tag)) = part.split_once(' ') {
                if let Ok(generation) = generation.parse() {
                    tags.push(tag.to_string());
                    generations.push(generation);
                }
            }
        }
        (tags, generations)
    }
}

/// Tags that could not reach Redis, replayed when it returns (bounded; overflow replays `all`).
#[derive(Default)]
struct Missed {
    tags: HashSet<String>,
    overflow: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> CacheSettings {
        crate::config::Settings::load_from(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
            &[],
        )
        .unwrap()
        .cache
    }

    #[tokio::test]
    async fn concurrent_misses_run_one_load_and_later_reads_hit_l1() {
        let cache = Cache::new(&settings());
        let loads = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let cache = cache.clone();
            let loads = loads.clone();
            tasks.push(tokio::spawn(async move {
                let key = CacheKey::new(Kind::Club, &[("club", &1)], "");
                cache
                    .get_or_load(key, vec![tags::club(1)], move || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(42u32)
                    })
                    .await
                    .unwrap()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().0, 42);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let key = CacheKey::new(Kind::Club, &[("club", &1)], "");
        let (_, outcome) = cache
            .get_or_load(key, vec![tags::club(1)], || async { Ok::<u32, ()>(0) })
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::L1Hit);
    }

    #[tokio::test]
    async fn invalidating_a_tag_drops_its_entries_and_nothing_else() {
        let cache = Cache::new(&settings());
        let key = |club: i64| CacheKey::new(Kind::Club, &[("club", &club)], "");
        for club in [1, 2] {
            cache
                .get_or_load(key(club), vec![tags::club(club)], move || async move {
                    Ok::<i64, ()>(club)
                })
                .await
                .unwrap();
        }
        cache.invalidate(&[tags::club(1)]).await;
        let (v1, o1) = cache
            .get_or_load(key(1), vec![tags::club(1)], || async { Ok::<i64, ()>(10) })
            .await
            .unwrap();
        let (v2, o2) = cache
            .get_or_load(key(2), vec![tags::club(2)], || async { Ok::<i64, ()>(20) })
            .await
            .unwrap();
        assert_eq!((v1, o1), (10, Outcome::Miss));
        assert_eq!((v2, o2), (2, Outcome::L1Hit));
    }

    #[tokio::test]
    async fn a_load_that_races_an_invalidation_is_never_served() {
        let cache = Cache::new(&settings());
        let key = CacheKey::new(Kind::Club, &[("club", &5)], "");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let slow = {
            let cache = cache.clone();
            let key = key.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load(key, vec![tags::club(5)], move || async move {
                        rx.await.ok();
                        Ok::<String, ()>("stale".into())
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache.invalidate(&[tags::club(5)]).await;
        tx.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap().0, "stale"); // the racing caller gets its own load
        let (value, outcome) = cache
            .get_or_load(key, vec![tags::club(5)], || async {
                Ok::<String, ()>("fresh".into())
            })
            .await
            .unwrap();
        assert_eq!((value.as_str(), outcome), ("fresh", Outcome::Miss));
    }

    #[tokio::test]
    async fn errors_are_not_cached_and_stale_values_cover_them_within_the_age() {
        let mut s = settings();
        s.club.ttl = Duration::from_millis(30);
        s.club.stale_if_error = Duration::from_secs(60);
        s.ttl_jitter = 0.0;
        let cache = Cache::new(&s);
        let key = CacheKey::new(Kind::Club, &[("club", &9)], "");
        let error = cache
            .get_or_load(key.clone(), vec![], || async { Err::<u8, &str>("db down") })
            .await;
        assert_eq!(error.unwrap_err(), "db down");
        cache
            .get_or_load(key.clone(), vec![], || async { Ok::<u8, &str>(7) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        let (value, outcome) = cache
            .get_or_load(key, vec![], || async { Err::<u8, &str>("db down") })
            .await
            .unwrap();
        assert_eq!((value, outcome), (7, Outcome::StaleIfError));
    }

    #[tokio::test]
    async fn a_kind_that_keeps_nothing_is_loaded_every_time_and_never_stored() {
        let mut s = settings();
        s.court_availability.ttl = Duration::ZERO;
        s.court_availability.stale_while_revalidate = Duration::ZERO;
        s.court_availability.stale_if_error = Duration::ZERO;
        let cache = Cache::new(&s);
        let key = CacheKey::new(Kind::CourtAvailability, &[("club", &1)], "");
        for n in 0..3u8 {
            let (value, outcome) = cache
                .get_or_load(key.clone(), vec![], move || async move { Ok::<u8, ()>(n) })
                .await
                .unwrap();
            assert_eq!((value, outcome), (n, Outcome::Bypass));
        }
        assert!(cache.l1_get(key.as_str()).is_none());
        // Any window at all keeps the value.
        s.court_availability.stale_if_error = Duration::from_secs(1);
        let cache = Cache::new(&s);
        cache
            .get_or_load(key.clone(), vec![], || async { Ok::<u8, ()>(1) })
            .await
            .unwrap();
        assert!(cache.l1_get(key.as_str()).is_some());
    }
}
