//! Typed, layered configuration: `config/default.toml`, then `config/<BFF_PROFILE>.toml`, then
//! environment variables. A bad key stops the process with a message that names it.
//!
//! `sections` and `telemetry` hold the typed settings (every field documented), `sources` the
//! layering (files, profile, environment); this file loads and validates.

mod sections;
mod sources;
mod telemetry;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use sections::*;
pub use telemetry::*;

use sources::{apply_env, merge, parse_file, set};

/// The default file, compiled in so the binary also starts outside the repository.
const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

/// The JWT secret shipped in `config/default.toml`; refused by the production profile.
pub const DEVELOPMENT_JWT_SECRET: &str = "padel-bff-development-secret-do-not-use-in-production";

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

/// Query parameters that carry secrets in connection URLs.
const SECRET_PARAMETERS: &[&str] = &[
    "password",
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "sslpassword",
];

/// A URL without its secrets, for a log, an error or `padel-bff doctor`:
/// `postgres://user:***@host/db?password=***`.
pub fn redact(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (before_query.find("://"), before_query.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &before_query[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => {
                    format!(
                        "{}{user}:***{}",
                        &before_query[..scheme + 3],
                        &before_query[at..]
                    )
                }
                None => before_query.to_string(),
            }
        }
        _ => before_query.to_string(),
    };
    if let Some(query) = query {
        let parameters: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _))
                    if SECRET_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()) =>
                {
                    format!("{name}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&parameters.join("&"));
    }
    out
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
