//! The Redis tier: the one connection to Redis the gateway shares (the cache's entries, tag
//! generations, invalidation channel and persisted queries; the rate limiter's shared buckets),
//! behind the circuit breaker that keeps a slow, dead or frozen Redis from slowing requests.
//! The cache sees it as a [`SharedTier`]; it tells the cache what happens as [`TierEvents`].

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{
    breaker::Breaker,
    entry::Entry,
    keys,
    shared::{SharedTier, TierEvents},
    CacheMetrics,
};
use crate::{clock::Clock, config::CacheSettings};

/// The pub/sub channel carrying invalidations: lines of `{generation} {tag}`.
pub(super) fn channel(prefix: &str) -> String {
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

/// Raises the outbox position (KEYS[1]) to ARGV[1], never lowers it: replicas apply the same rows.
const ADVANCE_SCRIPT: &str = r#"
local seq = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if seq > current then redis.call('SET', KEYS[1], seq) end
return 0
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

/// Tags that could not reach Redis, replayed when it returns (bounded; overflow replays `all`).
#[derive(Default)]
struct Missed {
    tags: HashSet<String>,
    overflow: bool,
}

/// The handle to Redis; cheap to clone (the cache and the rate limiter share one).
#[derive(Clone)]
pub(crate) struct RedisTier {
    inner: Arc<Tier>,
}

struct Tier {
    connection: ConnectionManager,
    read_timeout: Duration,
    write_timeout: Duration,
    breaker: Breaker,
    clock: Clock,
    /// The cache's channel state; weak, so the tier never keeps the cache alive.
    events: Weak<dyn TierEvents>,
    metrics: Arc<CacheMetrics>,
    missed: Mutex<Missed>,
    subscribed: Arc<AtomicBool>,
    prefix: String,
}

impl RedisTier {
    /// Connects lazily and starts the invalidation listener; never fails, never blocks.
    pub(super) fn start(
        settings: &CacheSettings,
        events: Weak<dyn TierEvents>,
        metrics: Arc<CacheMetrics>,
        clock: &Clock,
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
        let inner = Arc::new(Tier {
            connection,
            read_timeout: settings.redis_read_timeout,
            write_timeout: settings.redis_write_timeout,
            breaker: Breaker::new(
                settings.breaker_failures,
                settings.breaker_cooldown.as_millis() as u64,
                clock.clone(),
            ),
            clock: clock.clone(),
            events: events.clone(),
            metrics,
            missed: Mutex::new(Missed::default()),
            subscribed: subscribed.clone(),
            prefix: settings.key_prefix.clone(),
        });
        tokio::spawn(probe(Arc::downgrade(&inner)));
        tokio::spawn(listen(
            client,
            events,
            subscribed,
            settings.redis_write_timeout,
            channel(&settings.key_prefix),
        ));
        RedisTier { inner }
    }

    /// `key` (built as `bff:…`) under the configured prefix.
    pub(crate) fn key(&self, key: &str) -> String {
        prefixed(&self.inner.prefix, key)
    }

    /// Runs a reading command under the breaker and the read timeout; `None` when skipped or
    /// failed.
    pub(crate) async fn read<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Option<T> {
        self.run(self.inner.read_timeout, command).await
    }

    /// Runs a writing command under the breaker and the write timeout.
    async fn write<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Option<T> {
        self.run(self.inner.write_timeout, command).await
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        timeout: Duration,
        command: &redis::Cmd,
    ) -> Option<T> {
        let mut connection = self.inner.connection.clone();
        self.call(timeout, command.query_async(&mut connection))
            .await
    }

    /// Runs one Redis call under the breaker and a timeout.
    async fn call<T, F>(&self, timeout: Duration, f: F) -> Option<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let tier = &self.inner;
        if !tier.breaker.allows() {
            return None;
        }
        match tokio::time::timeout(timeout, f).await {
            Ok(Ok(value)) => {
                if tier.breaker.success() {
                    self.recovered().await;
                }
                Some(value)
            }
            Ok(Err(error)) => {
                tracing::debug!(error = %error, "redis call failed");
                tier.metrics.record_redis_error();
                tier.breaker.failure();
                None
            }
            Err(_) => {
                tier.metrics.record_redis_error();
                tier.breaker.failure();
                None
            }
        }
    }

    /// `{prefix}:v{format}:pq:{sha256}` (and `…:pq:index`, the registration index).
    fn outbox_key(&self) -> String {
        format!(
            "{}:v{}:outbox:applied",
            self.inner.prefix,
            keys::CACHE_FORMAT
        )
    }

    fn persisted_key(&self, name: &str) -> String {
        format!("{}:v{}:pq:{name}", self.inner.prefix, keys::CACHE_FORMAT)
    }

    /// Remembers invalidations Redis did not get, to replay them when it is back.
    fn remember_missed(&self, tags: &[String]) {
        let mut missed = self.inner.missed.lock().expect("missed lock");
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
        if let Some(events) = self.inner.events.upgrade() {
            events.recovered();
        }
        let pending: Vec<String> = {
            let mut missed = self.inner.missed.lock().expect("missed lock");
            let mut tags: Vec<String> = missed.tags.drain().collect();
            if std::mem::take(&mut missed.overflow) {
                tags = vec![keys::tags::ALL.to_string()];
            }
            tags
        };
        if !pending.is_empty() {
            // Directly, not through `call`: this runs inside `call`.
            let mut connection = self.inner.connection.clone();
            let replayed = tokio::time::timeout(
                self.inner.write_timeout,
                bump_command(&self.inner.prefix, &pending).query_async::<Vec<u64>>(&mut connection),
            )
            .await;
            if !matches!(replayed, Ok(Ok(_))) {
                self.remember_missed(&pending);
            }
        }
    }
}

#[async_trait::async_trait]
impl SharedTier for RedisTier {
    async fn get(&self, key: &str, tags: &[String]) -> Option<(Option<Entry>, Vec<u64>)> {
        let mut command = redis::cmd("MGET");
        command.arg(self.key(key));
        for tag in tags {
            command.arg(self.key(&keys::tag_key(tag)));
        }
        let values: Vec<Option<Vec<u8>>> = self.read(&command).await?;
        let mut values = values.into_iter();
        let entry = values.next().flatten().and_then(|b| Entry::decode(&b));
        let generations = values
            .map(|v| {
                v.and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0)
            })
            .collect();
        Some((entry, generations))
    }

    fn put(&self, key: String, entry: Arc<Entry>) {
        let ttl = entry
            .stale_until_ms
            .saturating_sub(self.inner.clock.now_ms());
        if ttl == 0 || !self.inner.breaker.allows() {
            return;
        }
        let tier = self.clone();
        tokio::spawn(async move {
            let mut command = redis::cmd("SET");
            command
                .arg(tier.key(&key))
                .arg(entry.encode())
                .arg("PX")
                .arg(ttl);
            let _: Option<()> = tier.write(&command).await;
        });
    }

    async fn bump(&self, tags: &[String]) -> Option<Vec<u64>> {
        let bumped = self.write(&bump_command(&self.inner.prefix, tags)).await;
        if bumped.is_none() {
            self.remember_missed(tags);
        }
        bumped
    }

    async fn persisted_query(&self, sha256: &str) -> Option<String> {
        let mut command = redis::cmd("GET");
        command.arg(self.persisted_key(sha256));
        self.read::<Option<String>>(&command).await.flatten()
    }

    async fn register_persisted_query(
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
        let _: Option<i64> = self.write(&command).await;
    }

    async fn outbox_position(&self) -> Option<Option<i64>> {
        let mut command = redis::cmd("GET");
        command.arg(self.outbox_key());
        self.read::<Option<i64>>(&command).await
    }

    async fn advance_outbox_position(&self, seq: i64) {
        let mut command = redis::cmd("EVAL");
        command
            .arg(ADVANCE_SCRIPT)
            .arg(1)
            .arg(self.outbox_key())
            .arg(seq);
        let _: Option<i64> = self.write(&command).await;
    }

    fn health(&self) -> Result<(), String> {
        let breaker = &self.inner.breaker;
        if !breaker.allows() || breaker.tripped() {
            return Err("redis unavailable: circuit breaker open after failed calls".into());
        }
        if !self.inner.subscribed.load(Ordering::Acquire) {
            return Err("redis invalidation channel not subscribed".into());
        }
        Ok(())
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
async fn probe(tier: Weak<Tier>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(inner) = tier.upgrade() else { return };
        let tier = RedisTier { inner };
        if tier.inner.breaker.tripped() && tier.inner.breaker.allows() {
            let _: Option<String> = tier.read(&redis::cmd("PING")).await;
        }
    }
}

/// Keeps a subscription to the invalidation channel; L1 serves only while subscribed.
async fn listen(
    client: redis::Client,
    events: Weak<dyn TierEvents>,
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
        let Some(cache) = events.upgrade() else {
            return;
        };
        match connected {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(100);
                subscribed.store(true, Ordering::Release);
                cache.channel_up();
                drop(cache);
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Some(cache) = events.upgrade() else {
                        return;
                    };
                    if let Ok(payload) = message.get_payload::<String>() {
                        let (tags, generations) = parse_message(&payload);
                        cache.published(&tags, &generations);
                    }
                }
                subscribed.store(false, Ordering::Release);
                if let Some(cache) = events.upgrade() {
                    cache.channel_down();
                }
            }
            _ => {
                subscribed.store(false, Ordering::Release);
                cache.channel_down();
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The tags and generations of a message [`BUMP_SCRIPT`] published.
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
