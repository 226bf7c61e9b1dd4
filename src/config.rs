//! Typed, layered configuration: `config/default.toml`, then `config/<BFF_PROFILE>.toml`, then
//! environment variables. A bad key stops the process with a message that names it.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer};

/// The default file, compiled in so the binary also starts outside the repository.
const EMBEDDED_DEFAULT: &str = include_str!("../config/default.toml");

/// The JWT secret shipped in `config/default.toml`; refused by the production profile.
pub const DEVELOPMENT_JWT_SECRET: &str = "padel-bff-development-secret-do-not-use-in-production";

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

impl TelemetrySettings {
    /// The slow-request threshold for an operation, from the names it goes by (its root fields,
    /// or its monitoring key such as `dashboard+authContext`): the strictest matching one.
    pub fn slow_threshold<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Duration {
        let names: Vec<String> = names.into_iter().map(str::to_ascii_lowercase).collect();
        [
            ("dashboard", self.slow_dashboard),
            ("authcontext", self.slow_auth_context),
            ("courtavailability", self.slow_court_availability),
        ]
        .iter()
        .filter(|(field, _)| names.iter().any(|n| n.contains(field)))
        .map(|(_, t)| *t)
        .min()
        .unwrap_or(self.slow_default)
    }
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

/// OTLP transport (`telemetry.otlp_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318).
    #[serde(rename = "http/protobuf", alias = "http")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The protocol an `OTEL_EXPORTER_OTLP_PROTOCOL` value names, if it names one.
    pub fn parse(text: &str) -> Option<OtlpProtocol> {
        match text {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" | "http" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// Which fields get a span (`telemetry.field_spans`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldSpans {
    /// Root fields, where the operations run; their I/O (cache lookups, DataLoader batches,
    /// SQL) has spans of its own. Other non-leaf fields feed the histogram only.
    Io,
    /// Every field.
    All,
    /// None.
    None,
}

/// Which fields feed the field-duration histogram (`telemetry.field_timing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldTiming {
    /// Root fields and every field returning an object or a list (an engine hook on every field).
    Objects,
    /// Root fields only; no engine hook.
    Root,
}

/// Tracing and metrics settings; the standard `OTEL_*` variables win over these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `service.name` (`OTEL_SERVICE_NAME` wins).
    pub service_name: String,
    /// OTLP collector base URL (`OTEL_EXPORTER_OTLP_ENDPOINT` wins); empty and unset: no export.
    pub otlp_endpoint: String,
    /// `grpc` or `http/protobuf` (`OTEL_EXPORTER_OTLP_PROTOCOL` wins).
    pub otlp_protocol: OtlpProtocol,
    /// Fraction of new traces sampled (`OTEL_TRACES_SAMPLER`/`_ARG` win); callers' decisions are kept.
    pub sampler_ratio: f64,
    /// Spans waiting for export at most; more are dropped rather than slowing requests.
    pub export_queue_size: usize,
    /// How often queued spans are sent.
    #[serde(deserialize_with = "duration")]
    pub export_interval: Duration,
    /// How often metrics are pushed over OTLP.
    #[serde(deserialize_with = "duration")]
    pub metrics_interval: Duration,
    /// `io`: spans for fields that resolve entities or run operations (leaves are timed by the
    /// field histogram only); `all`: a span for every field; `none`: no field spans.
    pub field_spans: FieldSpans,
    /// `objects`: every root field and every field returning an object or a list is timed into
    /// the field histogram (an engine hook on every field: ~40 % of an in-cache answer's CPU);
    /// `root`: root fields only, and no engine hook at all (validation then has no span of its
    /// own and is not reused). `field_spans = "all"` needs the hook and implies `objects`. Query
    /// limits and the rate limit run in the pipeline either way.
    pub field_timing: FieldTiming,
    /// Executions of one statement shape in one request (outside DataLoader batches) that count
    /// as a suspected N+1.
    pub n_plus_one_threshold: u32,
    /// Distinct operation names metrics and monitoring report by name; others are `other`.
    pub max_operation_names: usize,
    /// Requests slower than this log a warning with their slowest fields.
    #[serde(deserialize_with = "duration")]
    pub slow_default: Duration,
    /// Threshold for `dashboard`.
    #[serde(deserialize_with = "duration")]
    pub slow_dashboard: Duration,
    /// Threshold for `authContext`.
    #[serde(deserialize_with = "duration")]
    pub slow_auth_context: Duration,
    /// Threshold for `courtAvailability`.
    #[serde(deserialize_with = "duration")]
    pub slow_court_availability: Duration,
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
}

impl CacheSettings {
    /// The lifetime and freshness settings of one cached kind.
    pub fn for_kind(&self, kind: crate::cache::Kind) -> KindSettings {
        use crate::cache::Kind;
        match kind {
            Kind::CourtAvailability => self.court_availability,
            Kind::Dashboard => self.dashboard,
            Kind::AuthContext => self.auth_context,
            Kind::Permissions => self.permissions,
            Kind::Club => self.club,
            Kind::Response => self.response,
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

/// A configuration problem, always naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A key has a wrong type, an unknown name or an invalid value.
    #[error("key `{key}`: {message}")]
    Key {
        /// Dotted key, e.g. `server.listen`.
        key: String,
        /// What went wrong.
        message: String,
    },
}

impl Settings {
    /// Loads settings from the config directory ([`config_dir`]) and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(&config_dir(), &vars)
    }

    /// Loads settings from a config directory and an explicit environment (tests use this).
    pub fn load_from(
        dir: &std::path::Path,
        vars: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let env = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let default_path = dir.join("default.toml");
        let mut table = match std::fs::read_to_string(&default_path) {
            Ok(text) => parse_file(&default_path.display().to_string(), &text)?,
            Err(_) => parse_file("embedded default.toml", EMBEDDED_DEFAULT)?,
        };
        if let Some(profile) = env("BFF_PROFILE").filter(|p| !p.is_empty()) {
            // Fails closed: a profile named without its file would leave development defaults
            // (GraphiQL, introspection, CORS *, the published secret) on an exposed server.
            let path = dir.join(format!("{profile}.toml"));
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                message: format!(
                    "BFF_PROFILE={profile} needs this file ({e}); set BFF_CONFIG_DIR to the \
                     directory holding the profiles"
                ),
            })?;
            merge(&mut table, parse_file(&path.display().to_string(), &text)?);
            set(&mut table, "profile", toml::Value::String(profile));
        }
        apply_env(&mut table, vars)?;
        let settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Key {
                key: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Rules that span keys or that types cannot express.
    fn validate(&self) -> Result<(), ConfigError> {
        let key_error = |key: &str, message: &str| {
            Err(ConfigError::Key {
                key: key.into(),
                message: message.into(),
            })
        };
        let jwks = !self.auth.jwks_url.is_empty();
        if self.auth.jwt_secret.is_empty() && !jwks {
            return key_error(
                "auth.jwt_secret",
                "is empty and auth.jwks_url is not set: no token could ever be verified",
            );
        }
        if self.profile == Profile::Production
            && !self.auth.jwt_secret.is_empty()
            && self.auth.jwt_secret.len() < 32
        {
            // RFC 7518 section 3.2: an HS256 key must be at least as long as the hash (256 bits).
            return key_error(
                "auth.jwt_secret",
                "must be at least 32 bytes in the production profile (RFC 7518 section 3.2)",
            );
        }
        if jwks && self.auth.audience.is_empty() && !self.auth.allow_any_audience {
            // The identity provider signs tokens for other applications too.
            return key_error(
                "auth.audience",
                "is required with auth.jwks_url (or set auth.allow_any_audience = true on purpose)",
            );
        }
        if self.rate_limit.trust_forwarded_for && self.rate_limit.trusted_proxies.is_empty() {
            return key_error(
                "rate_limit.trusted_proxies",
                "must list the proxies in front of the gateway when trust_forwarded_for is on",
            );
        }
        if self.telemetry.max_operation_names == 0 {
            return key_error("telemetry.max_operation_names", "must be at least 1");
        }
        if !self.auth.jwt_secret.is_empty() && self.auth.jwt_secret.len() < 16 {
            return key_error(
                "auth.jwt_secret",
                "must be at least 16 bytes (set BFF_JWT_SECRET)",
            );
        }
        if jwks
            && !(self.auth.jwks_url.starts_with("https://")
                || self.auth.jwks_url.starts_with("http://"))
        {
            return key_error("auth.jwks_url", "must be an http:// or https:// URL");
        }
        if jwks
            && self.profile == Profile::Production
            && !self.auth.jwks_url.starts_with("https://")
        {
            // Whoever can answer for that URL could sign tokens for any user.
            return key_error(
                "auth.jwks_url",
                "must be https:// in the production profile",
            );
        }
        if self.profile == Profile::Production && self.auth.jwt_secret == DEVELOPMENT_JWT_SECRET {
            return key_error(
                "auth.jwt_secret",
                "the development secret is refused in the production profile (set BFF_JWT_SECRET, or \
             set it empty to accept only JWKS-signed tokens)",
            );
        }
        if self.database.max_connections == 0 {
            return key_error("database.max_connections", "must be at least 1");
        }
        if self.database.statement_timeout >= self.server.request_timeout {
            return key_error(
                "database.statement_timeout",
                "must be shorter than server.request_timeout",
            );
        }
        if !(0.0..=0.5).contains(&self.cache.ttl_jitter) {
            return key_error("cache.ttl_jitter", "must be between 0 and 0.5");
        }
        if self.cache.key_prefix.is_empty() || self.cache.key_prefix.contains(char::is_whitespace) {
            return key_error("cache.key_prefix", "must be non-empty without spaces");
        }
        let rl = &self.rate_limit;
        for (key, value, min) in [
            (
                "rate_limit.query_per_second",
                rl.query_per_second,
                f64::MIN_POSITIVE,
            ),
            (
                "rate_limit.mutation_per_second",
                rl.mutation_per_second,
                f64::MIN_POSITIVE,
            ),
            ("rate_limit.query_burst", rl.query_burst, 1.0),
            ("rate_limit.mutation_burst", rl.mutation_burst, 1.0),
            ("rate_limit.ip_factor", rl.ip_factor, 1.0),
        ] {
            if !(value.is_finite() && value >= min) {
                return key_error(key, &format!("must be a number of at least {min}"));
            }
        }
        if !(0.0..=1.0).contains(&self.telemetry.sampler_ratio) {
            return key_error("telemetry.sampler_ratio", "must be between 0 and 1");
        }
        let redis = &self.cache.redis_url;
        if !(redis.is_empty() || redis.starts_with("redis://") || redis.starts_with("rediss://")) {
            return key_error("cache.redis_url", "must start with redis:// or rediss://");
        }
        let url = &self.database.url;
        if !(url.is_empty()
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            return key_error(
                "database.url",
                "must start with postgres://, postgresql:// or sqlite:",
            );
        }
        Ok(())
    }

    /// The database URL in use: the configured one, or the embedded SQLite file.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.database.sqlite_path.display())
        } else {
            self.database.url.clone()
        }
    }

    /// Whether the embedded default database is in use (no URL configured).
    pub fn is_embedded_database(&self) -> bool {
        self.database.url.is_empty()
    }
}

/// The directory holding `default.toml` and the profile files: `BFF_CONFIG_DIR` when set, else
/// the first of `./config`, `config/` beside the binary or up to two levels above it (a cargo
/// build in `target/release/`), and `/etc/padel-bff` that holds a `default.toml`; else `./config`
/// (the embedded default then applies, and any `BFF_PROFILE` is refused for want of its file).
pub fn config_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BFF_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let mut candidates = vec![PathBuf::from("config")];
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf))
    {
        candidates.extend(exe_dir.ancestors().take(3).map(|dir| dir.join("config")));
    }
    candidates.push(PathBuf::from("/etc/padel-bff"));
    candidates
        .into_iter()
        .find(|dir| dir.join("default.toml").is_file())
        .unwrap_or_else(|| PathBuf::from("config"))
}

fn parse_file(path: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::File {
        path: path.into(),
        message: e.to_string(),
    })
}

/// Deep-merges `overlay` into `base`: tables merge key by key, everything else is replaced.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => {
                merge(base_table, overlay_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets a dotted key, creating tables on the way.
fn set(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().expect("split yields at least one part");
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("just made a table");
    }
    current.insert(last.to_string(), value);
}

/// Environment variables understood besides the generic `BFF__SECTION__KEY` form.
const WELL_KNOWN_ENV: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("BFF_LISTEN", "server.listen"),
    ("BFF_JWT_SECRET", "auth.jwt_secret"),
    ("BFF_JWKS_URL", "auth.jwks_url"),
    ("REDIS_URL", "cache.redis_url"),
];

fn apply_env(table: &mut toml::Table, vars: &[(String, String)]) -> Result<(), ConfigError> {
    for (name, value) in vars {
        if let Some((_, key)) = WELL_KNOWN_ENV.iter().find(|(env, _)| env == name) {
            set(table, key, toml::Value::String(value.clone()));
        } else if let Some(path) = name.strip_prefix("BFF__") {
            let key = path.to_lowercase().replace("__", ".");
            set(table, &key, env_value(value));
        }
    }
    // PORT (the platform convention) replaces only the port of the listen address.
    if let Some((_, port)) = vars.iter().find(|(k, _)| k == "PORT") {
        let port: u16 = port.parse().map_err(|_| ConfigError::Key {
            key: "PORT".into(),
            message: format!("`{port}` is not a port number"),
        })?;
        let listen = table
            .get("server")
            .and_then(|s| s.get("listen"))
            .and_then(|l| l.as_str())
            .and_then(|l| l.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8000)));
        let addr = SocketAddr::new(listen.ip(), port);
        set(
            table,
            "server.listen",
            toml::Value::String(addr.to_string()),
        );
    }
    Ok(())
}

/// Environment values are strings; integers, decimals and booleans are recognised so typed keys
/// work.
fn env_value(value: &str) -> toml::Value {
    // A TOML array (`["10.0.0.0/8", "192.0.2.1"]`) for list keys.
    if value.trim_start().starts_with('[') {
        if let Some(list) = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
        {
            return list;
        }
    }
    if let Ok(i) = value.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Some(f) = value
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && value.contains('.'))
    {
        toml::Value::Float(f)
    } else if let Ok(b) = value.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(value.to_string())
    }
}

/// CIDRs (`10.0.0.0/8`) or single addresses (`10.1.2.3`).
fn networks<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
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

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); use e.g. \"10s\""
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
            &vars,
        )
    }

    #[test]
    fn defaults_load_as_development_on_the_embedded_database() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.profile, Profile::Development);
        assert!(settings.is_embedded_database());
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8000");
    }

    #[test]
    fn usual_environment_names_override_the_files() {
        let settings = load(&[
            ("PORT", "9100"),
            ("DATABASE_URL", "postgres://x@h/db"),
            ("BFF__SERVER__DEBUG_HEADERS", "false"),
        ])
        .unwrap();
        assert_eq!(settings.server.listen.port(), 9100);
        assert_eq!(settings.database.url, "postgres://x@h/db");
        assert!(!settings.server.debug_headers);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let error = load(&[("BFF_LISTEN", "not-an-address")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("server.listen"), "{error}");
        let error = load(&[("BFF__SERVER__NO_SUCH_KEY", "1")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("no_such_key"), "{error}");
    }

    #[test]
    fn production_refuses_the_development_secret() {
        let error = load(&[("BFF_PROFILE", "production")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("auth.jwt_secret"), "{error}");
        // RFC 7518: 32 bytes at least for HS256 in production.
        let error = load(&[
            ("BFF_PROFILE", "production"),
            ("BFF_JWT_SECRET", "a-31-byte-secret-is-too-short!!"),
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("32 bytes"), "{error}");
        let settings = load(&[
            ("BFF_PROFILE", "production"),
            ("BFF_JWT_SECRET", "a-real-secret-of-enough-length-32b"),
        ])
        .unwrap();
        assert_eq!(settings.profile, Profile::Production);
        assert!(!settings.server.introspection);
    }

    #[test]
    fn a_profile_without_its_file_refuses_to_start() {
        let error = load(&[("BFF_PROFILE", "staging")]).unwrap_err().to_string();
        assert!(error.contains("staging.toml"), "{error}");
        // The embedded default alone (no config directory): production is refused too.
        let empty = std::env::temp_dir().join(format!("bff-no-config-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let vars = vec![
            ("BFF_PROFILE".to_string(), "production".to_string()),
            ("BFF_JWT_SECRET".to_string(), "x".repeat(40)),
        ];
        let error = Settings::load_from(&empty, &vars).unwrap_err().to_string();
        assert!(error.contains("production.toml"), "{error}");
    }

    #[test]
    fn jwks_needs_an_audience_unless_any_is_allowed_on_purpose() {
        let jwks = ("BFF_JWKS_URL", "https://idp.example/.well-known/jwks.json");
        let error = load(&[jwks]).unwrap_err().to_string();
        assert!(error.contains("auth.audience"), "{error}");
        assert!(load(&[jwks, ("BFF__AUTH__AUDIENCE", "padel-bff")]).is_ok());
        assert!(load(&[jwks, ("BFF__AUTH__ALLOW_ANY_AUDIENCE", "true")]).is_ok());
    }

    #[test]
    fn forwarded_for_needs_the_trusted_proxies() {
        let trust = ("BFF__RATE_LIMIT__TRUST_FORWARDED_FOR", "true");
        let error = load(&[trust]).unwrap_err().to_string();
        assert!(error.contains("trusted_proxies"), "{error}");
        let path = std::env::temp_dir().join(format!("bff-proxies-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(
            path.join("default.toml"),
            EMBEDDED_DEFAULT.replace(
                "trusted_proxies = []",
                "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]",
            ),
        )
        .unwrap();
        let vars = vec![(trust.0.to_string(), trust.1.to_string())];
        let settings = Settings::load_from(&path, &vars).unwrap();
        assert_eq!(settings.rate_limit.trusted_proxies.len(), 2);
    }
}
