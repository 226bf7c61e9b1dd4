//! Rate limiting: token buckets per user and per client IP, by operation kind (queries,
//! mutations). With Redis the buckets are shared by every replica (decided atomically on Redis's
//! clock); without it, or while Redis is unusable, each process keeps its own.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{cache::Cache, config::RateLimitSettings};

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
    cache: Cache,
    local: moka::sync::Cache<String, Arc<Mutex<(f64, Instant)>>>,
}

impl RateLimiter {
    /// A limiter sharing buckets through the cache's Redis when there is one.
    pub fn new(settings: &RateLimitSettings, cache: &Cache) -> RateLimiter {
        RateLimiter {
            settings: settings.clone(),
            cache: cache.clone(),
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
            let (allowed, retry_ms) = match self.cache.take_shared_token(&key, capacity, rate).await
            {
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

    fn take_local(&self, key: &str, capacity: f64, rate: f64) -> (bool, u64) {
        let bucket = self.local.get_with(key.to_string(), || {
            Arc::new(Mutex::new((capacity, Instant::now())))
        });
        let mut state = bucket.lock().expect("bucket lock");
        let now = Instant::now();
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
        let limiter = RateLimiter::new(&settings.rate_limit, &Cache::new(&settings.cache));
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
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            limiter.check(Some(1), None, OperationKind::Mutation).await,
            Ok(())
        );
    }
}
