//! Rate limiting: token buckets per user and per client IP, by operation kind (queries,
//! mutations). With Redis the buckets are shared by every replica (decided atomically on Redis's
//! clock, through the cache's Redis handle: one connection, one breaker); without it, or while
//! Redis is unusable, each process keeps its own, refilled on the cache's clock.
//!
//! A replica leases tokens: each script call takes a hundredth of a bucket ([`lease_size`]) and
//! the replica spends the rest of it locally for up to [`LEASE_TTL`]. Leased tokens are debited
//! in Redis when granted, so every token admitted was debited once; but while they wait Redis
//! refills up to the capacity, so a burst can pass the capacity by the leases then unspent: at
//! most `lease_size − 1` tokens per replica (9 of the default 1 000 queries: 0.9 %). Buckets
//! under 200 tokens lease one token at a time and are exact.
//! The default query budget then costs one Redis call per ten requests of a user instead of one
//! per request (+42 % of an in-cache request's server CPU before, nothing measurable after:
//! docs/performance.md, run 16).

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

/// Token buckets on Redis's clock, one per key (ARGV: capacity, refill per second and tokens
/// wanted of each), taken in order in one round trip: each refills continuously and gives what
/// is wanted or what it holds, at least one; the first that holds less than one refuses
/// (`{0, retry_ms, its position from 1, grants before it…}`) and leaves the later ones
/// untouched; otherwise `{1, 0, 0, grants…}`. Every bucket expires once it would be full again.
const TOKEN_BUCKETS_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local grants = {}
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local want = tonumber(ARGV[3 * i])
  local b = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(b[1]) or capacity
  local ts = tonumber(b[2]) or now
  tokens = math.min(capacity, tokens + (now - ts) / 1000 * rate)
  local granted = math.min(want, math.floor(tokens))
  if granted >= 1 then
    tokens = tokens - granted
  end
  redis.call('HSET', key, 'tokens', tokens, 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(capacity / rate * 1000) + 1000)
  if granted < 1 then
    local refused = {0, math.ceil((1 - tokens) / rate * 1000), i}
    for _, g in ipairs(grants) do table.insert(refused, g) end
    return refused
  end
  table.insert(grants, granted)
end
local answer = {1, 0, 0}
for _, g in ipairs(grants) do table.insert(answer, g) end
return answer
"#;

/// How long tokens taken from Redis ahead of use may be spent here: the window in which
/// leftovers can add to a bucket that refilled meanwhile.
const LEASE_TTL: Duration = Duration::from_secs(1);

/// Tokens a replica takes from a shared bucket per call: a hundredth of its capacity, at least
/// one (so a bucket under 200 tokens is charged one at a time, exactly) and at most 100.
fn lease_size(capacity: f64) -> u32 {
    ((capacity / 100.0).floor() as u32).clamp(1, 100)
}

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

/// A bucket: its key, capacity and refill per second.
type Bucket = (String, f64, f64);

/// Whose bucket.
#[derive(Debug, Clone, Copy)]
enum Who {
    User(i64),
    Address(IpAddr),
}

/// Token buckets of every caller.
pub struct RateLimiter {
    settings: RateLimitSettings,
    /// The cache's Redis handle, when there is one.
    redis: Option<RedisTier>,
    /// The cache's clock, for the local buckets' refills.
    clock: Clock,
    local: moka::sync::Cache<String, Arc<Mutex<(f64, Instant)>>>,
    /// Tokens taken from shared buckets ahead of use, per key, and until when they may be spent.
    leases: moka::sync::Cache<String, Arc<Mutex<(u32, Instant)>>>,
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
            leases: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(LEASE_TTL * 2)
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
        let buckets: Vec<Bucket> = [user.map(Who::User), ip.map(Who::Address)]
            .into_iter()
            .flatten()
            .map(|who| self.bucket(who, kind))
            .collect();
        self.take(&buckets).await.map_err(|(_, limited)| limited)
    }

    /// The edge's charge of a request: the client address's query token and, for a caller whose
    /// token was verified before, the user's query token for the request's first operation, in
    /// one decision (one round trip with Redis; it was two, one after the other). `Err`: the
    /// address is refused (the user's bucket untouched). `Ok`: the user's decision, to be spent
    /// by the first operation's charge (`None` without a user).
    pub async fn check_edge(
        &self,
        ip: Option<IpAddr>,
        user: Option<i64>,
    ) -> Result<Option<Result<(), Limited>>, Limited> {
        let buckets: Vec<Bucket> = [ip.map(Who::Address), user.map(Who::User)]
            .into_iter()
            .flatten()
            .map(|who| self.bucket(who, OperationKind::Query))
            .collect();
        match self.take(&buckets).await {
            Ok(()) => Ok(user.map(|_| Ok(()))),
            // The address comes first when known: a refusal at 0 is the address's.
            Err((0, limited)) if ip.is_some() => Err(limited),
            Err((_, limited)) => Ok(Some(Err(limited))),
        }
    }

    /// `who`'s bucket for `kind`: its key, capacity and refill per second (an address gets
    /// `ip_factor` times a user's budget).
    fn bucket(&self, who: Who, kind: OperationKind) -> Bucket {
        let (per_second, burst) = match kind {
            OperationKind::Query => (self.settings.query_per_second, self.settings.query_burst),
            OperationKind::Mutation => (
                self.settings.mutation_per_second,
                self.settings.mutation_burst,
            ),
        };
        let factor = self.settings.ip_factor;
        match who {
            Who::User(user) => (
                format!("bff:v1:rl:user:{user}:{}", kind.name()),
                burst,
                per_second,
            ),
            Who::Address(ip) => (
                format!("bff:v1:rl:ip:{ip}:{}", kind.name()),
                burst * factor,
                per_second * factor,
            ),
        }
    }

    /// One token from each bucket in order, stopping at the first empty one: its position and
    /// the wait. Shared through Redis when it answers (tokens this replica leased before are
    /// spent first, and only the other buckets are asked), this process's own buckets otherwise.
    async fn take(&self, buckets: &[Bucket]) -> Result<(), (usize, Limited)> {
        if !self.settings.enabled || buckets.is_empty() {
            return Ok(());
        }
        let refused = if self.redis.is_some() {
            self.take_leased(buckets).await
        } else {
            None
        };
        let refused = match refused {
            Some(decision) => decision,
            None => buckets
                .iter()
                .enumerate()
                .find_map(|(i, (key, capacity, rate))| {
                    let (allowed, retry) = self.take_local(key, *capacity, *rate);
                    (!allowed).then_some((i, retry))
                }),
        };
        match refused {
            None => Ok(()),
            Some((i, retry_ms)) => Err((
                i,
                Limited {
                    retry_after: Duration::from_millis(retry_ms.max(1)),
                },
            )),
        }
    }

    /// [`take`](Self::take) through Redis: a leased token where this replica holds one, one
    /// script call for the rest, each asking for a lease. `None` when Redis is skipped (nothing
    /// spent); otherwise the first refusal's position and wait, if any.
    async fn take_leased(&self, buckets: &[Bucket]) -> Option<Option<(usize, u64)>> {
        let leased: Vec<Option<Instant>> = buckets
            .iter()
            .map(|(key, _, _)| self.spend_lease(key))
            .collect();
        let asked: Vec<usize> = (0..buckets.len())
            .filter(|i| leased[*i].is_none())
            .collect();
        if asked.is_empty() {
            return Some(None);
        }
        let wanted: Vec<(&Bucket, u32)> = asked
            .iter()
            .map(|i| (&buckets[*i], lease_size(buckets[*i].1)))
            .collect();
        let Some((refusal, grants)) = self.take_shared(&wanted).await else {
            // Redis skipped: give the leased tokens back, the local buckets decide instead.
            for (i, (key, _, _)) in buckets.iter().enumerate() {
                if let Some(until) = leased[i] {
                    self.return_lease(key, until);
                }
            }
            return None;
        };
        for (i, granted) in asked.iter().zip(&grants) {
            // One token of each grant is this request's; the rest stays leased here.
            self.add_lease(&buckets[*i].0, granted.saturating_sub(1));
        }
        let refused = refusal
            .map(|(position, retry)| (asked.get(position).copied().unwrap_or_default(), retry));
        if let Some((at, _)) = refused {
            // The buckets after the refusing one stay untouched: their leased tokens go back.
            for (i, (key, _, _)) in buckets.iter().enumerate().skip(at + 1) {
                if let Some(until) = leased[i] {
                    self.return_lease(key, until);
                }
            }
        }
        Some(refused)
    }

    /// Spends one leased token of `key`, when this replica holds one still in time: the
    /// lease's end, to give the token back to that same lease.
    fn spend_lease(&self, key: &str) -> Option<Instant> {
        let lease = self.leases.get(key)?;
        let mut lease = lease.lock().unwrap_or_else(|e| e.into_inner());
        if lease.0 > 0 && self.clock.now() < lease.1 {
            lease.0 -= 1;
            Some(lease.1)
        } else {
            None
        }
    }

    /// Gives a token back to the lease it was spent from, unless that lease has ended or was
    /// replaced (the token is then lost: a lease only ever makes a bucket stricter).
    fn return_lease(&self, key: &str, until: Instant) {
        if let Some(lease) = self.leases.get(key) {
            let mut lease = lease.lock().unwrap_or_else(|e| e.into_inner());
            if lease.1 == until && self.clock.now() < until {
                lease.0 += 1;
            }
        }
    }

    /// Keeps `tokens` granted by Redis for [`LEASE_TTL`] from now (after the call); what an
    /// ended lease still held is dropped, never renewed.
    fn add_lease(&self, key: &str, tokens: u32) {
        if tokens == 0 {
            return;
        }
        let now = self.clock.now();
        let lease = self
            .leases
            .get_with(key.to_string(), || Arc::new(Mutex::new((0, now))));
        let mut lease = lease.lock().unwrap_or_else(|e| e.into_inner());
        let kept = if now < lease.1 { lease.0 } else { 0 };
        *lease = (kept + tokens, now + LEASE_TTL);
    }

    /// Takes the wanted tokens of each shared bucket (key, capacity, refill per second) in
    /// order, decided atomically by Redis on its own clock in one round trip: the first refusal
    /// (position, retry_after_ms), if any, and the grants of the buckets before it; `None` when
    /// Redis is skipped.
    async fn take_shared(
        &self,
        buckets: &[(&Bucket, u32)],
    ) -> Option<(Option<(usize, u64)>, Vec<u32>)> {
        let redis = self.redis.as_ref()?;
        let mut command = redis::cmd("EVAL");
        command.arg(TOKEN_BUCKETS_SCRIPT).arg(buckets.len());
        for ((key, _, _), _) in buckets {
            command.arg(redis.key(key));
        }
        for ((_, capacity, per_second), want) in buckets {
            command.arg(*capacity).arg(*per_second).arg(*want);
        }
        let answer: Vec<i64> = redis.read(&command).await?;
        let (allowed, retry, position) = (*answer.first()?, *answer.get(1)?, *answer.get(2)?);
        let grants = answer[3..]
            .iter()
            .map(|g| u32::try_from(*g).unwrap_or(0))
            .collect();
        let refusal = (allowed != 1).then(|| {
            (
                usize::try_from(position - 1).unwrap_or(0),
                retry.max(0) as u64,
            )
        });
        Some((refusal, grants))
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
