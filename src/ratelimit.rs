//! Rate limiting: token buckets per user and per client IP, by operation kind (queries,
//! mutations). With Redis the buckets are shared by every replica (decided atomically on Redis's
//! clock, through the cache's Redis handle: one connection, one breaker); without it, or while
//! Redis is unusable, each process keeps its own, refilled on the cache's clock.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    cache::{Cache, RedisTier},
    clock::Clock,
    config::RateLimitSettings,
};

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

/// What an operation is, for its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// Reads.
    Query,
    /// Writes.
    Mutation,
}

impl OperationKind {
    fn name(self) -> &'static str {
        match self {
            OperationKind::Query => "query",
            OperationKind::Mutation => "mutation",
        }
    }
}

/// The caller must wait this long before the next request of the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Until a token is back.
    pub retry_after: Duration,
}

/// Whole seconds to wait, as `Retry-After` and `extensions.retryAfter` say it (at least 1).
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

impl Limited {
    /// [`retry_after_seconds`] of this refusal.
    pub fn seconds(&self) -> u64 {
        retry_after_seconds(self.retry_after)
    }

    /// The GraphQL error of a refused request: `RATE_LIMITED` with `retryAfter`.
    pub fn error(&self) -> async_graphql::ServerError {
        let seconds = self.seconds();
        let mut error = crate::error::ErrorCode::RateLimited
            .server_error(format!("too many requests: retry after {seconds} s"));
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("retryAfter", seconds);
        error
    }
}

/// Token buckets of every caller.
pub struct RateLimiter {
    settings: RateLimitSettings,
    /// The cache's Redis handle, when there is one.
    redis: Option<RedisTier>,
    /// The cache's clock, for the local buckets' refills.
    clock: Clock,
    local: moka::sync::Cache<String, Arc<Mutex<(f64, Instant)>>>,
}

impl RateLimiter {
    /// A limiter sharing buckets through the cache's Redis when there is one, and its clock.
    pub fn new(settings: &RateLimitSettings, cache: &Cache) -> RateLimiter {
        RateLimiter {
            settings: settings.clone(),
            redis: cache.redis_tier().cloned(),
            clock: cache.clock().clone(),
            // Idle buckets are full again after capacity/rate; an hour of idleness is plenty.
            local: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    /// Takes one token for the user (when signed in) and one for the client IP (when known).
    pub async fn check(
        &self,
        user: Option<i64>,
        ip: Option<IpAddr>,
        kind: OperationKind,
    ) -> Result<(), Limited> {
        if !self.settings.enabled {
            return Ok(());
        }
        let (per_second, burst) = match kind {
            OperationKind::Query => (self.settings.query_per_second, self.settings.query_burst),
            OperationKind::Mutation => (
                self.settings.mutation_per_second,
                self.settings.mutation_burst,
            ),
        };
        let factor = self.settings.ip_factor;
        let mut buckets = Vec::with_capacity(2);
        if let Some(user) = user {
            buckets.push((
                format!("bff:v1:rl:user:{user}:{}", kind.name()),
                burst,
                per_second,
            ));
        }
        if let Some(ip) = ip {
            buckets.push((
                format!("bff:v1:rl:ip:{ip}:{}", kind.name()),
                burst * factor,
                per_second * factor,
            ));
        }
        for (key, capacity, rate) in buckets {
            let (allowed, retry_ms) = match self.take_shared(&key, capacity, rate).await {
                Some(decision) => decision,
                None => self.take_local(&key, capacity, rate),
            };
            if !allowed {
                return Err(Limited {
                    retry_after: Duration::from_millis(retry_ms.max(1)),
                });
            }
        }
        Ok(())
    }

    /// One token from the shared bucket `key` (capacity, refill per second), decided atomically
    /// by Redis on its own clock: `(allowed, retry_after_ms)`; `None` when Redis is skipped.
    async fn take_shared(&self, key: &str, capacity: f64, per_second: f64) -> Option<(bool, u64)> {
        let redis = self.redis.as_ref()?;
        let mut command = redis::cmd("EVAL");
        command
            .arg(TOKEN_BUCKET_SCRIPT)
            .arg(1)
            .arg(redis.key(key))
            .arg(capacity)
            .arg(per_second);
        let (allowed, retry): (i64, i64) = redis.read(&command).await?;
        Some((allowed == 1, retry.max(0) as u64))
    }

    fn take_local(&self, key: &str, capacity: f64, rate: f64) -> (bool, u64) {
        let bucket = self.local.get_with(key.to_string(), || {
            Arc::new(Mutex::new((capacity, self.clock.now())))
        });
        let mut state = bucket.lock().expect("bucket lock");
        let now = self.clock.now();
        let tokens = (state.0 + now.duration_since(state.1).as_secs_f64() * rate).min(capacity);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            (true, 0)
        } else {
            *state = (tokens, now);
            (false, ((1.0 - tokens) / rate * 1000.0).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_passes_then_the_bucket_refills_at_its_rate() {
        let mut settings = crate::config::Settings::load_from(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
            &[],
        )
        .unwrap();
        settings.rate_limit.mutation_burst = 3.0;
        settings.rate_limit.mutation_per_second = 20.0;
        let cache = Cache::new(&settings.cache);
        let limiter = RateLimiter::new(&settings.rate_limit, &cache);
        for _ in 0..3 {
            assert_eq!(
                limiter.check(Some(1), None, OperationKind::Mutation).await,
                Ok(())
            );
        }
        let limited = limiter
            .check(Some(1), None, OperationKind::Mutation)
            .await
            .unwrap_err();
        assert!(
            limited.retry_after <= Duration::from_millis(50),
            "{limited:?}"
        );
        // Another user, and queries, have their own buckets.
        assert_eq!(
            limiter.check(Some(2), None, OperationKind::Mutation).await,
            Ok(())
        );
        assert_eq!(
            limiter.check(Some(1), None, OperationKind::Query).await,
            Ok(())
        );
        cache.clock().advance(Duration::from_millis(60));
        assert_eq!(
            limiter.check(Some(1), None, OperationKind::Mutation).await,
            Ok(())
        );
    }
}

/// Live sockets held per user and per client address, each under its bound: a slot is taken
/// when a socket opens (an address) or is acknowledged (a user), and given back when the
/// socket closes (the slot is dropped).
#[derive(Debug, Default)]
pub struct Connections {
    held: Mutex<std::collections::HashMap<Holder, usize>>,
}

/// Who holds live sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A signed-in user.
    User(i64),
    /// A client address.
    Address(IpAddr),
}

/// One socket's share of a holder's bound, given back on drop.
#[derive(Debug)]
pub struct ConnectionSlot {
    connections: Arc<Connections>,
    holder: Holder,
}

impl Connections {
    /// A slot for `holder` when it holds fewer than `max` sockets.
    pub fn take(self: &Arc<Self>, holder: Holder, max: usize) -> Option<ConnectionSlot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(holder).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            connections: self.clone(),
            holder,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut held = self
            .connections
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.holder) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.holder);
            }
        }
    }
}
