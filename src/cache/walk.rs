//! The read path: L1 → shared tier → load. Concurrent misses of one key in a process run one load
//! (single flight); a load fills L1 and (in the background) the shared tier. An expired value is
//! served within its kind's stale windows: while one background refresh runs
//! (stale-while-revalidate), or when the load fails (stale-if-error).

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
};

use rand::Rng;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::OnceCell;
use tracing::Instrument;

use super::{
    entry::{decode, encode, Entry},
    keys, response, Cache, CacheKey, Kind, Outcome,
};

/// Loads in progress by key; callers of one key share its cell.
pub(super) type Inflight = Mutex<HashMap<String, Arc<OnceCell<Arc<Entry>>>>>;

impl Cache {
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
        if !self.keeps(kind) {
            response::spoil();
            return load().await.map(|v| (v, Outcome::Bypass));
        }
        let mut tags = tags;
        tags.push(keys::tags::kind(kind));
        tags.push(keys::tags::ALL.to_string());
        let now = self.inner.clock.now_ms();
        let mut stale: Option<Arc<Entry>> = None;

        if let Some(entry) = self.l1_get(key.as_str()) {
            if self.is_current(&entry) {
                if entry.is_fresh(now) {
                    if let Some(value) = decode(&entry.value) {
                        self.inner.metrics.record(kind, Outcome::L1Hit);
                        response::note(&entry.tags, &entry.generations, entry.fresh_until_ms);
                        return Ok((value, Outcome::L1Hit));
                    }
                }
                stale = Some(entry);
            }
        }
        if let Some(shared) = self.shared() {
            if let Some((entry, generations)) = shared.get(key.as_str(), &tags).await {
                self.inner.generations.observe(&tags, &generations);
                if let Some(entry) = entry.filter(|e| self.is_current(e)) {
                    let entry = Arc::new(entry);
                    if entry.is_fresh(now) {
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
            if entry.within(swr, now) {
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
                    .filter(|e| e.within(sie, now))
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
                    if self.is_current(&entry) && entry.is_fresh(self.inner.clock.now_ms()) {
                        return Ok(entry);
                    }
                }
                // Generations as the load starts: an invalidation during the load makes the entry
                // unreadable rather than stale.
                let generations = self.inner.generations.for_load(&tags);
                let epoch = self.epoch();
                let started = std::time::Instant::now();
                let value = response::in_load(load()).await;
                self.inner
                    .metrics
                    .record_load(key.kind, started.elapsed(), value.is_ok());
                let value = value?;
                let entry =
                    Arc::new(self.new_entry(key.kind, tags.clone(), generations, encode(&value)));
                self.inner.metrics.record(key.kind, Outcome::Miss);
                if self.is_current(&entry) && self.epoch() == epoch {
                    self.l1_put(key.as_str(), entry.clone());
                    if let Some(shared) = self.shared() {
                        shared.put(key.as_str().to_string(), entry.clone());
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

    /// A freshly loaded entry of `kind`: fresh for its TTL (jittered), then stale for the longer
    /// of its stale windows.
    fn new_entry(
        &self,
        kind: Kind,
        tags: Vec<String>,
        generations: Vec<u64>,
        value: Vec<u8>,
    ) -> Entry {
        let settings = self.kind_settings(kind);
        let ttl = settings.ttl.as_millis() as f64;
        let jitter = self.inner.settings.ttl_jitter;
        let factor = if jitter > 0.0 {
            rand::rng().random_range(1.0 - jitter..=1.0 + jitter)
        } else {
            1.0
        };
        let now = self.inner.clock.now_ms();
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

    /// The L1 entry of `key` unless L1 is off or the entry is gone (then it is dropped).
    pub(super) fn l1_get(&self, key: &str) -> Option<Arc<Entry>> {
        if !self.l1_active() {
            return None;
        }
        let entry = self.inner.l1.get(key)?;
        if entry.is_gone(self.inner.clock.now_ms()) {
            self.inner.l1.invalidate(key);
            return None;
        }
        Some(entry)
    }

    pub(super) fn l1_put(&self, key: &str, entry: Arc<Entry>) {
        if self.l1_active() {
            self.inner.l1.insert(key.to_string(), entry);
        }
    }

    /// Whether every tag of the entry is still at the generation the entry recorded.
    pub(super) fn is_current(&self, entry: &Entry) -> bool {
        self.inner.generations.is_current(entry)
    }
}

#[cfg(test)]
mod tests;
