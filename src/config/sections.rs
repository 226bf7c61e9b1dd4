//! The settings sections, one struct per concern, every field documented where it is defined.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer};

use super::telemetry::TelemetrySettings;

/// Everything the gateway can be told, one section per concern.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `development` or `production`; production hardens defaults and refuses the dev secret.
    pub profile: Profile,
    /// HTTP server.
    pub server: ServerSettings,
    /// Database connection and start-up behaviour.
    pub database: DatabaseSettings,
    /// Bearer-token verification.
    pub auth: AuthSettings,
    /// Logging.
    pub log: LogSettings,
    /// The two-tier cache.
    pub cache: CacheSettings,
    /// Traces, metrics and request logging.
    pub telemetry: TelemetrySettings,
    /// Query limits.
    pub limits: LimitSettings,
    /// Rate limiting.
    pub rate_limit: RateLimitSettings,
    /// Live subscriptions (`/graphql/ws`).
    pub subscriptions: SubscriptionSettings,
}

/// Bounds of live subscriptions: each refuses with a documented close code or error
/// (docs/operations.md, "Live subscriptions").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSettings {
    /// A socket that sends no `connection_init` within this long is closed with 4408.
    #[serde(deserialize_with = "duration")]
    pub init_timeout: Duration,
    /// Subscriptions open at once on one socket (more: an `error` coded RATE_LIMITED).
    pub max_per_connection: usize,
    /// Sockets one user may hold (more: close 4429).
    pub max_connections_per_user: usize,
    /// Sockets one client address may hold (more: HTTP 429 before the upgrade).
    pub max_connections_per_ip: usize,
    /// Messages a client may send per second on one socket, in bursts of as many (more: close
    /// 4429).
    pub max_messages_per_second: u32,
}

/// Token buckets per user and per client IP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Master switch.
    pub enabled: bool,
    /// Queries a user may send per second, sustained.
    pub query_per_second: f64,
    /// Queries a user may send at once.
    pub query_burst: f64,
    /// Mutations a user may send per second, sustained.
    pub mutation_per_second: f64,
    /// Mutations a user may send at once.
    pub mutation_burst: f64,
    /// An IP's buckets are this many times a user's (several users may share one address).
    pub ip_factor: f64,
    /// Take the client IP from `X-Forwarded-For` when the peer is a trusted proxy; otherwise the
    /// TCP peer address.
    pub trust_forwarded_for: bool,
    /// Proxies whose `X-Forwarded-For` is believed: the client is the right-most address in it
    /// that is not one of them.
    #[serde(deserialize_with = "networks")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Limits every GraphQL document must stay within (`QUERY_TOO_COMPLEX` otherwise).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Deepest field nesting.
    pub max_depth: usize,
    /// Deepest fragment/selection recursion the engine follows.
    pub max_recursive_depth: usize,
    /// Complexity budget (fields cost 1, list fields are weighted by their expected size).
    pub max_complexity: usize,
    /// Aliased fields in a document.
    pub max_aliases: usize,
    /// Root fields of an operation.
    pub max_root_fields: usize,
    /// Directives on one field.
    pub max_directives_per_field: usize,
    /// Directives in a document.
    pub max_directives: usize,
    /// Characters of the document.
    pub max_document_chars: usize,
    /// Tokens of the document.
    pub max_document_tokens: usize,
    /// Field selections after expanding every fragment spread, over the whole document.
    pub max_fields: usize,
    /// Bracket nesting of the document text, checked before parsing.
    pub max_nesting: usize,
    /// Days before the club's today a date may name.
    pub date_days_back: u32,
    /// Days after the club's today a date may name.
    pub date_days_ahead: u32,
    /// Accept a JSON array of operations in one POST.
    pub batch_enabled: bool,
    /// Operations in one batch, when batches are enabled.
    pub max_batch_size: usize,
}

/// Two-tier cache settings: moka in process (L1), Redis between replicas (L2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Master switch; off means every read goes to the database.
    pub enabled: bool,
    /// Use the in-process tier (off: every hit is an L2 hit).
    pub l1_enabled: bool,
    /// Upper bound of the in-process tier, in bytes of keys and encoded values.
    pub l1_max_bytes: u64,
    /// `redis://host:port/db` (`REDIS_URL`); empty: L1 only, invalidation local.
    pub redis_url: String,
    /// First segment of every Redis key and of the invalidation channel; gateways sharing data
    /// share it, anything else (another environment, a test) uses its own.
    pub key_prefix: String,
    /// Give up on a Redis read after this long.
    #[serde(deserialize_with = "duration")]
    pub redis_read_timeout: Duration,
    /// Give up on a Redis write after this long.
    #[serde(deserialize_with = "duration")]
    pub redis_write_timeout: Duration,
    /// Consecutive Redis failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker skips Redis before probing again.
    #[serde(deserialize_with = "duration")]
    pub breaker_cooldown: Duration,
    /// Fraction of the TTL added or removed at random, so entries filled together expire apart.
    pub ttl_jitter: f64,
    /// How long a registered persisted query (APQ) is kept.
    #[serde(deserialize_with = "duration")]
    pub persisted_query_ttl: Duration,
    /// Bytes of persisted-query text each process keeps (its own LRU).
    pub persisted_query_l1_max_bytes: u64,
    /// Persisted queries Redis keeps at most (the oldest registrations are dropped).
    pub persisted_query_max_count: u64,
    /// Tag generations each process mirrors at most (a full mirror starts over).
    pub generation_mirror_max_tags: u64,
    /// Fill availability and dashboards of active clubs when `serve` starts.
    pub warmup_on_start: bool,
    /// Days of availability the warm-up fills, from today.
    pub warmup_days: u32,
    /// Loads the warm-up runs at once (kept low so it never starves live traffic).
    pub warmup_concurrency: usize,
    /// courtAvailability entries.
    pub court_availability: KindSettings,
    /// dashboard entries.
    pub dashboard: KindSettings,
    /// authContext entries (a user and their memberships).
    pub auth_context: KindSettings,
    /// permission lists per role set.
    pub permissions: KindSettings,
    /// club layouts (club, courts, schedule).
    pub club: KindSettings,
    /// Serve repeated identical queries from the whole-response cache (L1 only).
    pub response_cache: bool,
    /// Whole responses: `ttl` caps their life (they also never outlive their least fresh
    /// source); stale serving does not apply.
    pub response: KindSettings,
    /// Serve the shareable root fields (`courtAvailability`, `dashboard`, `club`) of any
    /// caller's query from the answer another caller got, after re-checking the access
    /// decisions it needed (L1 only; needs `response_cache`; see `pipeline::share`).
    pub shared_answers: bool,
    /// Shared answers: `ttl` caps their life, like `response`.
    pub shared: KindSettings,
}

/// What is cached. Each kind has its own TTL and freshness settings ([`CacheSettings::for_kind`]);
/// the cache re-exports it as `cache::Kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheKind {
    /// Slots of a club's courts on a date.
    CourtAvailability,
    /// A club's analytics for a period.
    Dashboard,
    /// A user with their memberships (the sign-in lookup behind every request and `authContext`).
    AuthContext,
    /// The permission list of a role set.
    Permissions,
    /// A club with its organization, courts and schedule (what access checks and slots need).
    Club,
    /// A whole query response (in-process only; see `cache::response`).
    Response,
    /// The rendered answer of one shareable root field, for every caller who may see it
    /// (in-process only; see `pipeline::share`).
    Shared,
}

impl CacheKind {
    /// Every kind, for metrics and status.
    pub const ALL: [CacheKind; 7] = [
        CacheKind::CourtAvailability,
        CacheKind::Dashboard,
        CacheKind::AuthContext,
        CacheKind::Permissions,
        CacheKind::Club,
        CacheKind::Response,
        CacheKind::Shared,
    ];

    /// The name used in keys, metrics and the management API.
    pub fn name(self) -> &'static str {
        match self {
            CacheKind::CourtAvailability => "courtAvailability",
            CacheKind::Dashboard => "dashboard",
            CacheKind::AuthContext => "authContext",
            CacheKind::Permissions => "permissions",
            CacheKind::Club => "club",
            CacheKind::Response => "response",
            CacheKind::Shared => "shared",
        }
    }

    /// Parses [`CacheKind::name`].
    pub fn parse(name: &str) -> Option<CacheKind> {
        CacheKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Index into per-kind arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl CacheSettings {
    /// The lifetime and freshness settings of one cached kind.
    pub fn for_kind(&self, kind: CacheKind) -> KindSettings {
        match kind {
            CacheKind::CourtAvailability => self.court_availability,
            CacheKind::Dashboard => self.dashboard,
            CacheKind::AuthContext => self.auth_context,
            CacheKind::Permissions => self.permissions,
            CacheKind::Club => self.club,
            CacheKind::Response => self.response,
            CacheKind::Shared => self.shared,
        }
    }
}

/// Lifetime and freshness controls of one cached kind.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSettings {
    /// Time to live of a fresh entry.
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
    /// After the TTL, serve the old value this long while one background refresh runs (0: off).
    #[serde(deserialize_with = "duration")]
    pub stale_while_revalidate: Duration,
    /// After the TTL, serve the old value up to this age when the database fails (0: off).
    #[serde(deserialize_with = "duration")]
    pub stale_if_error: Duration,
}

impl KindSettings {
    /// No fresh and no stale window: nothing of this kind could ever be served from the cache,
    /// so the cache is bypassed for it (`ttl = "0s"` with both stale windows off).
    pub fn keeps_nothing(&self) -> bool {
        self.ttl.is_zero() && self.stale_while_revalidate.is_zero() && self.stale_if_error.is_zero()
    }
}

/// Deployment profile: changes defaults that trade convenience for safety.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Local work: GraphiQL, introspection, readable logs, demo tokens.
    Development,
    /// Internet-facing: no introspection, JSON logs, a real secret required.
    Production,
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind (`BFF_LISTEN`, or `PORT` for the port alone).
    pub listen: SocketAddr,
    /// Upper bound for one request; its work is cancelled after it.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Largest request body accepted, in bytes (413 above it).
    pub body_limit_bytes: usize,
    /// A request's headers must arrive within this long (slowloris).
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// Open connections at most; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Serve GraphiQL on `GET /graphql`.
    pub graphiql: bool,
    /// Answer introspection queries.
    pub introspection: bool,
    /// Add `x-sql-statements` to GraphQL responses (per-request SQL count).
    pub debug_headers: bool,
    /// "Did you mean …?" hints in validation errors (they reveal the schema).
    pub suggestions: bool,
    /// A persisted-operation manifest; when set, only its operations run (safelist mode).
    pub safelist_manifest: String,
    /// Origins browsers may call from (`*`: any; empty: none).
    pub cors_origins: Vec<String>,
}

/// Database settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://…` (`DATABASE_URL`); empty means the embedded SQLite file.
    pub url: String,
    /// Where the embedded SQLite database lives when `url` is empty.
    pub sqlite_path: PathBuf,
    /// Connection pool size.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection.
    #[serde(deserialize_with = "duration")]
    pub acquire_timeout: Duration,
    /// Postgres `statement_timeout`, kept below the request timeout.
    #[serde(deserialize_with = "duration")]
    pub statement_timeout: Duration,
    /// Run pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// Seed demo data into an empty SQLite database on start (never Postgres).
    pub seed_demo_on_empty: bool,
    /// How often the invalidation outbox is read when no notification woke the tail (Postgres).
    #[serde(deserialize_with = "duration")]
    pub outbox_poll_interval: Duration,
    /// Outbox rows older than this are pruned; a gateway further behind flushes its caches.
    #[serde(deserialize_with = "duration")]
    pub outbox_retention: Duration,
}

/// Bearer-token settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 shared secret (`BFF_JWT_SECRET`); empty turns HS256 off (allowed only with a JWKS
    /// URL). Never printed.
    pub jwt_secret: String,
    /// The identity provider's JWKS URL (`BFF_JWKS_URL`) for RS256/ES256 tokens; empty: none.
    pub jwks_url: String,
    /// How long a fetched key set is used before it is fetched again.
    #[serde(deserialize_with = "duration")]
    pub jwks_refresh_interval: Duration,
    /// A token with an unknown `kid` triggers a refresh at most this often.
    #[serde(deserialize_with = "duration")]
    pub jwks_min_refresh_interval: Duration,
    /// Timeout of one JWKS request.
    #[serde(deserialize_with = "duration")]
    pub jwks_timeout: Duration,
    /// Required `iss` claim; empty disables the check.
    pub issuer: String,
    /// Required `aud` claim; empty disables the check (refused with a JWKS URL unless
    /// `allow_any_audience`).
    pub audience: String,
    /// Accept JWKS-signed tokens of any audience, on purpose.
    pub allow_any_audience: bool,
    /// Clock skew tolerated on `exp`/`nbf`.
    #[serde(deserialize_with = "duration")]
    pub leeway: Duration,
    /// Lifetime of the demo tokens printed at start and used by GraphiQL.
    #[serde(deserialize_with = "duration")]
    pub demo_token_ttl: Duration,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &"[redacted]")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("jwks_url", &self.jwks_url)
            .field("jwks_refresh_interval", &self.jwks_refresh_interval)
            .field("jwks_min_refresh_interval", &self.jwks_min_refresh_interval)
            .finish()
    }
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `tracing` filter directive; `RUST_LOG` wins when set.
    pub level: String,
    /// `text` (readable) or `json` (one object per line).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON objects, for log shippers.
    Json,
}

/// CIDRs (`10.0.0.0/8`) or single addresses (`10.1.2.3`).
pub(super) fn networks<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| {
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{text}` is not a CIDR such as 10.0.0.0/8 or an IP address"
                    ))
                })
        })
        .collect()
}

pub(super) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); use e.g. \"10s\""
        ))
    })
}
