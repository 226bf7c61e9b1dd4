//! The Redis tier: shared entries, tag generations, the invalidation channel, and the circuit
//! breaker that keeps a slow, dead or frozen Redis from slowing requests.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{keys, now_ms, Cache, CacheMetrics, Entry, Inner, Missed};
use crate::config::CacheSettings;

/// The pub/sub channel carrying invalidations: lines of `{generation} {tag}`.
fn channel(prefix: &str) -> String {
    format!("{prefix}:v{}:invalidations", keys::CACHE_FORMAT)
}

/// A key under the configured prefix (keys are built as `bff:…`).
fn prefixed(prefix: &str, key: &str) -> String {
    match key.strip_prefix("bff:") {
        Some(rest) => format!("{prefix}:{rest}"),
        None => format!("{prefix}:{key}"),
    }
}

/// Increments every tag (KEYS) and publishes the new generations; one round trip, atomic.
///
/// Generation keys carry no TTL. One that is missing anyway (a Redis restart without data, an
/// eviction under an `allkeys-*` policy, a flush) starts again from Redis's clock in
/// microseconds, not from 0: the new generation is higher than any the lost counter reached
/// (unless it counted over a million invalidations a second), so every replica, which only ever
/// raises its mirror, sees the change. Starting from 1 would look older than what replicas hold,
/// and they would ignore it until the TTL.
const BUMP_SCRIPT: &str = r#"
local out = {}
local lines = {}
local t = redis.call('TIME')
local base = t[1] * 1000000 + t[2]
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then
    redis.call('SET', key, string.format('%d', base))
  end
  local g = redis.call('INCR', key)
  out[i] = g
  lines[i] = string.format('%d', g) .. ' ' .. ARGV[i + 1]
end
redis.call('PUBLISH', ARGV[1], table.concat(lines, '\n'))
return out
"#;

/// Stores a persisted document (KEYS[1]) with a TTL and indexes it by time (KEYS[2]); drops what
/// expired from the index and the oldest registrations beyond the count bound. ARGV: text, TTL in
/// ms, count bound.
const REGISTER_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  for _, key in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    redis.call('DEL', key)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
"#;

const MAX_MISSED: usize = 10_000;

/// A token bucket on Redis's clock: refills continuously, takes one token, expires when full.
const TOKEN_BUCKET_SCRIPT: &str = r#"
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or capacity
local ts = tonumber(b[2]) or now
tokens = math.min(capacity, tokens + (now - ts) / 1000 * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, retry}
"#;

pub(crate) struct RedisTier {
    connection: ConnectionManager,
    read_timeout: Duration,
    write_timeout: Duration,
    breaker: Breaker,
    cache: Weak<Inner>,
    metrics: Arc<CacheMetrics>,
    missed: Mutex<Missed>,
    subscribed: Arc<AtomicBool>,
    prefix: String,
}

struct Breaker {
    threshold: u32,
    cooldown_ms: u64,
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    /// Set once opened, cleared by the first success: that success means "Redis is back".
    tripped: AtomicBool,
}

impl Breaker {
    fn allows(&self) -> bool {
        now_ms() >= self.open_until_ms.load(Ordering::Acquire)
    }

    /// Returns true when this success ends an outage.
    fn success(&self) -> bool {
        self.failures.store(0, Ordering::Release);
        self.tripped.swap(false, Ordering::AcqRel)
    }

    fn failure(&self) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        // Half-open after a trip: one failed probe re-opens at once.
        if failures >= self.threshold || self.tripped.load(Ordering::Acquire) {
            self.open_until_ms
                .store(now_ms() + self.cooldown_ms, Ordering::Release);
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

impl RedisTier {
    /// Connects lazily and starts the invalidation listener; never fails, never blocks.
    pub(crate) fn start(
        settings: &CacheSettings,
        cache: Weak<Inner>,
        metrics: Arc<CacheMetrics>,
    ) -> RedisTier {
        let client = redis::Client::open(settings.redis_url.as_str())
            .expect("cache.redis_url validated at start");
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.redis_write_timeout))
            .set_response_timeout(Some(settings.redis_write_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .expect("lazy connection manager");
        let subscribed = Arc::new(AtomicBool::new(false));
        tokio::spawn(probe(cache.clone()));
        tokio::spawn(listen(
            client,
            cache.clone(),
            subscribed.clone(),
            settings.redis_write_timeout,
            channel(&settings.key_prefix),
        ));
        RedisTier {
            connection,
            read_timeout: settings.redis_read_timeout,
            write_timeout: settings.redis_write_timeout,
            breaker: Breaker {
                threshold: settings.breaker_failures.max(1),
                cooldown_ms: settings.breaker_cooldown.as_millis() as u64,
                failures: AtomicU32::new(0),
                open_until_ms: AtomicU64::new(0),
                tripped: AtomicBool::new(false),
            },
            cache,
            metrics,
            missed: Mutex::new(Missed::default()),
            subscribed,
            prefix: settings.key_prefix.clone(),
        }
    }

    /// One token from the shared bucket `key` (capacity, refill per second), decided atomically
    /// by Redis on its own clock: `(allowed, retry_after_ms)`; `None` when Redis is skipped.
    pub(crate) async fn take_token(
        &self,
        key: &str,
        capacity: f64,
        per_second: f64,
    ) -> Option<(bool, u64)> {
        let mut command = redis::cmd("EVAL");
        command
            .arg(TOKEN_BUCKET_SCRIPT)
            .arg(1)
            .arg(prefixed(&self.prefix, key))
            .arg(capacity)
            .arg(per_second);
        let mut connection = self.connection.clone();
        let (allowed, retry): (i64, i64) = self
            .call(self.read_timeout, command.query_async(&mut connection))
            .await?;
        Some((allowed == 1, retry.max(0) as u64))
    }

    pub(crate) fn health(&self) -> Result<(), String> {
        if !self.breaker.allows() || self.breaker.tripped.load(Ordering::Acquire) {
            return Err("redis unavailable: circuit breaker open after failed calls".into());
        }
        if !self.subscribed.load(Ordering::Acquire) {
            return Err("redis invalidation channel not subscribed".into());
        }
        Ok(())
    }

    /// Runs one Redis call under the breaker and a timeout.
    async fn call<T, F>(&self, timeout: Duration, f: F) -> Option<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !self.breaker.allows() {
            return None;
        }
        match tokio::time::timeout(timeout, f).await {
            Ok(Ok(value)) => {
                if self.breaker.success() {
                    self.recovered().await;
                }
                Some(value)
            }
            Ok(Err(error)) => {
                tracing::debug!(error = %error, "redis call failed");
                self.metrics.record_redis_error();
                self.breaker.failure();
                None
            }
            Err(_) => {
                self.metrics.record_redis_error();
                self.breaker.failure();
                None
            }
        }
    }

    /// The entry (if any) and the current generations of `tags`, in one round trip.
    pub(crate) async fn get(
        &self,
        key: &str,
        tags: &[String],
    ) -> Option<(Option<Entry>, Vec<u64>)> {
        let mut command = redis::cmd("MGET");
        command.arg(prefixed(&self.prefix, key));
        for tag in tags {
            command.arg(prefixed(&self.prefix, &keys::tag_key(tag)));
        }
        let mut connection = self.connection.clone();
        let values: Vec<Option<Vec<u8>>> = self
            .call(self.read_timeout, command.query_async(&mut connection))
            .await?;
        let mut values = values.into_iter();
        let entry = values
            .next()
            .flatten()
            .and_then(|bytes| postcard::from_bytes::<Entry>(&bytes).ok());
        let generations = values
            .map(|v| {
                v.and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0)
            })
            .collect();
        Some((entry, generations))
    }

    /// Stores an entry without making the request wait for it.
    pub(crate) fn put_in_background(&self, key: String, entry: Arc<Entry>) {
        let Some(inner) = self.cache.upgrade() else {
            return;
        };
        let ttl = entry.stale_until_ms.saturating_sub(now_ms());
        if ttl == 0 || !self.breaker.allows() {
            return;
        }
        tokio::spawn(async move {
            let Some(tier) = inner.redis.as_ref() else {
                return;
            };
            let bytes = postcard::to_allocvec(entry.as_ref()).expect("entries serialize");
            let mut connection = tier.connection.clone();
            let mut command = redis::cmd("SET");
            command
                .arg(prefixed(&tier.prefix, &key))
                .arg(bytes)
                .arg("PX")
                .arg(ttl);
            let _: Option<()> = tier
                .call(tier.write_timeout, command.query_async(&mut connection))
                .await;
        });
    }

    /// A persisted document by SHA-256.
    pub(crate) async fn persisted_query(&self, sha256: &str) -> Option<String> {
        let mut command = redis::cmd("GET");
        command.arg(self.persisted_key(sha256));
        let mut connection = self.connection.clone();
        self.call(self.read_timeout, command.query_async(&mut connection))
            .await
            .flatten()
    }

    /// Stores a persisted document for `ttl`, keeping at most `max_count` of them.
    pub(crate) async fn register_persisted_query(
        &self,
        sha256: &str,
        text: &str,
        ttl: Duration,
        max_count: u64,
    ) {
        let mut command = redis::cmd("EVAL");
        command
            .arg(REGISTER_SCRIPT)
            .arg(2)
            .arg(self.persisted_key(sha256))
            .arg(self.persisted_key("index"))
            .arg(text)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(max_count.max(1));
        let mut connection = self.connection.clone();
        let _: Option<i64> = self
            .call(self.write_timeout, command.query_async(&mut connection))
            .await;
    }

    /// `{prefix}:v{format}:pq:{sha256}` (and `…:pq:index`, the registration index).
    fn persisted_key(&self, name: &str) -> String {
        format!("{}:v{}:pq:{name}", self.prefix, keys::CACHE_FORMAT)
    }

    /// Increments tag generations in Redis and publishes them; `None` when Redis is skipped.
    pub(crate) async fn bump(&self, tags: &[String]) -> Option<Vec<u64>> {
        let mut connection = self.connection.clone();
        self.call(
            self.write_timeout,
            bump_command(&self.prefix, tags).query_async(&mut connection),
        )
        .await
    }

    /// Remembers invalidations Redis did not get, to replay them when it is back.
    pub(crate) fn remember_missed(&self, tags: &[String]) {
        let mut missed = self.missed.lock().expect("missed lock");
        for tag in tags {
            if missed.tags.len() >= MAX_MISSED {
                missed.overflow = true;
                break;
            }
            missed.tags.insert(tag.clone());
        }
    }

    /// Redis answers again: flush L1 (invalidations may have been missed) and replay ours.
    async fn recovered(&self) {
        tracing::info!("redis reachable again: flushing L1 and replaying missed invalidations");
        if let Some(inner) = self.cache.upgrade() {
            Cache { inner }.flush_l1();
        }
        let pending: Vec<String> = {
            let mut missed = self.missed.lock().expect("missed lock");
            let mut tags: Vec<String> = missed.tags.drain().collect();
            if std::mem::take(&mut missed.overflow) {
                tags = vec![keys::tags::ALL.to_string()];
            }
            tags
        };
        if !pending.is_empty() {
            // Directly, not through `call`: this runs inside `call`.
            let mut connection = self.connection.clone();
            let replayed = tokio::time::timeout(
                self.write_timeout,
                bump_command(&self.prefix, &pending).query_async::<Vec<u64>>(&mut connection),
            )
            .await;
            if !matches!(replayed, Ok(Ok(_))) {
                self.remember_missed(&pending);
            }
        }
    }
}

/// The EVAL of [`BUMP_SCRIPT`] for `tags`.
fn bump_command(prefix: &str, tags: &[String]) -> redis::Cmd {
    let mut command = redis::cmd("EVAL");
    command.arg(BUMP_SCRIPT).arg(tags.len());
    for tag in tags {
        command.arg(prefixed(prefix, &keys::tag_key(tag)));
    }
    command.arg(channel(prefix));
    for tag in tags {
        command.arg(tag);
    }
    command
}

/// While the breaker is tripped, pings Redis once a second (after the cool-down) so recovery does
/// not wait for a request that happens to need Redis.
async fn probe(cache: Weak<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(inner) = cache.upgrade() else { return };
        let Some(tier) = inner.redis.as_ref() else {
            return;
        };
        if tier.breaker.tripped.load(Ordering::Acquire) && tier.breaker.allows() {
            let mut connection = tier.connection.clone();
            let _: Option<String> = tier
                .call(
                    tier.read_timeout,
                    redis::cmd("PING").query_async(&mut connection),
                )
                .await;
        }
    }
}

/// Keeps a subscription to the invalidation channel; L1 serves only while subscribed.
async fn listen(
    client: redis::Client,
    cache: Weak<Inner>,
    subscribed: Arc<AtomicBool>,
    connect_timeout: Duration,
    channel: String,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = tokio::time::timeout(connect_timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let Some(inner) = cache.upgrade() else { return };
        match connected {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(100);
                let handle = Cache { inner };
                subscribed.store(true, Ordering::Release);
                handle.channel_up();
                let weak = Arc::downgrade(&handle.inner);
                drop(handle);
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Some(inner) = weak.upgrade() else { return };
                    if let Ok(payload) = message.get_payload::<String>() {
                        let (tags, generations) = Cache::parse_message(&payload);
                        Cache { inner }.apply_remote(&tags, &generations);
                    }
                }
                subscribed.store(false, Ordering::Release);
                if let Some(inner) = weak.upgrade() {
                    Cache { inner }.channel_down();
                }
            }
            _ => {
                subscribed.store(false, Ordering::Release);
                Cache { inner }.channel_down();
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
