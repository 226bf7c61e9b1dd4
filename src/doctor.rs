//! `padel-bff doctor`: the platform's deployment checklist, run by the program itself with the
//! configuration the gateway would start with. Each check is `ok`, `warn` (works, but not as a
//! production deployment should), `fail` (the gateway would not work as configured) or `skip`
//! (not configured). Exit code: 0 without failures, 1 with any (`--strict`: warnings too).
//!
//! It only reads: it runs no migration, writes no key and publishes nothing.

use std::time::Duration;

use serde::Serialize;

use crate::{
    config::{Profile, Settings, DEVELOPMENT_JWT_SECRET},
    store::Store,
};

/// How long any one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Clock skew against the database above which a warning is given.
const SKEW_WARN: Duration = Duration::from_secs(1);

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but not as a production deployment should.
    Warn,
    /// Broken.
    Fail,
    /// Not configured, nothing to check.
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
    }
}

/// Runs every check.
pub async fn run(settings: &Settings) -> Vec<Check> {
    let mut checks = Vec::new();
    database(settings, &mut checks).await;
    redis(settings, &mut checks).await;
    checks.push(otlp(settings).await);
    checks.push(jwt(settings));
    checks.push(rate_limit(settings));
    checks.push(cors(settings));
    checks
}

/// The exit code of a report.
pub fn exit_code(checks: &[Check], strict: bool) -> i32 {
    let failed = checks
        .iter()
        .any(|c| c.status == Status::Fail || (strict && c.status == Status::Warn));
    i32::from(failed)
}

/// The report as a table.
pub fn table(checks: &[Check]) -> String {
    let width = checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:width$}  {:6}  DETAIL\n", "CHECK", "STATUS");
    for c in checks {
        out.push_str(&format!(
            "{:width$}  {:6}  {}\n",
            c.name,
            c.status.as_str(),
            c.detail
        ));
    }
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "\n{} ok, {} warn, {} fail, {} skip\n",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Skip)
    ));
    out
}

/// Without credentials: `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn database(settings: &Settings, checks: &mut Vec<Check>) {
    let url = settings.database_url();
    let started = std::time::Instant::now();
    let connected = tokio::time::timeout(PROBE_TIMEOUT * 2, async {
        let store = Store::connect(settings).await?;
        store.ping().await?;
        Ok::<_, crate::error::StoreError>(store)
    })
    .await;
    let store = match connected {
        Ok(Ok(store)) => {
            checks.push(check(
                "database",
                Status::Ok,
                format!(
                    "{} reachable ({} ms)",
                    redact(&url),
                    started.elapsed().as_millis()
                ),
            ));
            store
        }
        Ok(Err(error)) => {
            checks.push(check(
                "database",
                Status::Fail,
                format!("{}: {error}", redact(&url)),
            ));
            for name in ["migrations", "indexes", "outbox wake-ups", "clock skew"] {
                checks.push(check(name, Status::Skip, "the database is unreachable"));
            }
            return;
        }
        Err(_) => {
            checks.push(check(
                "database",
                Status::Fail,
                format!("{}: no answer within {:?}", redact(&url), PROBE_TIMEOUT * 2),
            ));
            for name in ["migrations", "indexes", "outbox wake-ups", "clock skew"] {
                checks.push(check(name, Status::Skip, "the database is unreachable"));
            }
            return;
        }
    };
    checks.push(match store.migration_status().await {
        Ok(s) if s.pending.is_empty() && s.changed.is_empty() && s.unknown.is_empty() => check(
            "migrations",
            Status::Ok,
            format!("{} of {} applied", s.applied, s.embedded),
        ),
        Ok(s) if !s.changed.is_empty() => check(
            "migrations",
            Status::Fail,
            format!(
                "applied with another checksum than this binary's: {:?}",
                s.changed
            ),
        ),
        Ok(s) if !s.pending.is_empty() => check(
            "migrations",
            Status::Fail,
            format!(
                "{} of {} applied; pending {:?}: run `padel-bff migrate`",
                s.applied, s.embedded, s.pending
            ),
        ),
        Ok(s) => check(
            "migrations",
            Status::Warn,
            format!(
                "{} of {} applied, and {:?} that this binary does not know (a newer one migrated)",
                s.applied, s.embedded, s.unknown
            ),
        ),
        Err(error) => check("migrations", Status::Fail, error.to_string()),
    });
    checks.push(match store.index_report().await {
        Ok(report) => {
            let missing: Vec<String> = report
                .required
                .iter()
                .filter(|i| !i.present)
                .map(|i| format!("{} on {}({})", i.name, i.table, i.columns.join(", ")))
                .collect();
            if missing.is_empty() {
                check(
                    "indexes",
                    Status::Ok,
                    format!("all {} BFF indexes present", report.required.len()),
                )
            } else {
                check(
                    "indexes",
                    Status::Fail,
                    format!("missing {}: {}", missing.len(), missing.join("; ")),
                )
            }
        }
        Err(error) => check("indexes", Status::Fail, error.to_string()),
    });
    checks.push(
        match tokio::time::timeout(PROBE_TIMEOUT, store.invalidation_listener()).await {
            Ok(Ok(Some(_listener))) => check(
                "outbox wake-ups",
                Status::Ok,
                "LISTEN bff_invalidate accepted (writes from outside the gateway reach it)",
            ),
            Ok(Ok(None)) => check(
                "outbox wake-ups",
                Status::Skip,
                "SQLite: every write goes through this process",
            ),
            Ok(Err(error)) => check("outbox wake-ups", Status::Fail, error.to_string()),
            Err(_) => check(
                "outbox wake-ups",
                Status::Fail,
                format!("LISTEN took longer than {PROBE_TIMEOUT:?}"),
            ),
        },
    );
    let before = chrono::Utc::now();
    checks.push(match store.database_now().await {
        Ok(Some(theirs)) => {
            let after = chrono::Utc::now();
            // Our clock at the moment the database read its own: the middle of the round trip.
            let ours = before + (after - before) / 2;
            let skew = (theirs - ours).abs().to_std().unwrap_or_default();
            let leeway = settings.auth.leeway;
            let detail = format!(
                "{:.0} ms against the database (tokens' exp/nbf leeway {leeway:?})",
                skew.as_secs_f64() * 1000.0
            );
            if skew > leeway {
                check("clock skew", Status::Fail, detail)
            } else if skew > SKEW_WARN {
                check("clock skew", Status::Warn, detail)
            } else {
                check("clock skew", Status::Ok, detail)
            }
        }
        Ok(None) => check(
            "clock skew",
            Status::Skip,
            "SQLite runs on this machine's clock",
        ),
        Err(error) => check("clock skew", Status::Fail, error.to_string()),
    });
}

async fn redis(settings: &Settings, checks: &mut Vec<Check>) {
    let cache = &settings.cache;
    if cache.redis_url.is_empty() {
        let status = if settings.profile == Profile::Production {
            Status::Warn
        } else {
            Status::Skip
        };
        checks.push(check(
            "redis",
            status,
            "not configured (REDIS_URL): L1 only, replicas share no cache, invalidations stay in this process",
        ));
        checks.push(check("invalidation channel", status, "no Redis configured"));
        return;
    }
    match crate::cache::diagnose_redis(cache, PROBE_TIMEOUT).await {
        Err(error) => {
            checks.push(check(
                "redis",
                Status::Fail,
                format!("{}: {error}", redact(&cache.redis_url)),
            ));
            checks.push(check(
                "invalidation channel",
                Status::Skip,
                "Redis is unreachable",
            ));
        }
        Ok(found) => {
            let version = found.version.as_deref().unwrap_or("?");
            checks.push(match found.eviction_policy.as_deref() {
                Some(policy) if policy.starts_with("allkeys-") => check(
                    "redis",
                    Status::Warn,
                    format!(
                        "{} reachable (Redis {version}); maxmemory-policy {policy} can evict tag \
                         generation keys (then entries are reloaded, but invalidations may be \
                         missed by replicas): use noeviction or volatile-*",
                        redact(&cache.redis_url)
                    ),
                ),
                Some(policy) => check(
                    "redis",
                    Status::Ok,
                    format!(
                        "{} reachable (Redis {version}), maxmemory-policy {policy}",
                        redact(&cache.redis_url)
                    ),
                ),
                None => check(
                    "redis",
                    Status::Warn,
                    format!(
                        "{} reachable (Redis {version}); CONFIG GET is refused, so the eviction \
                         policy is unknown (allkeys-* can evict generation keys)",
                        redact(&cache.redis_url)
                    ),
                ),
            });
            checks.push(match found.subscribed {
                Ok(()) => check(
                    "invalidation channel",
                    Status::Ok,
                    format!(
                        "subscribed to {}; {} other subscriber(s) (running gateways)",
                        found.channel,
                        found
                            .other_subscribers
                            .map_or_else(|| "?".to_string(), |n| n.to_string())
                    ),
                ),
                Err(error) => check(
                    "invalidation channel",
                    Status::Fail,
                    format!("subscribing to {}: {error}", found.channel),
                ),
            });
        }
    }
}

async fn otlp(settings: &Settings) -> Check {
    let Some(endpoint) = crate::telemetry::otlp_endpoint(&settings.telemetry) else {
        return check(
            "otlp endpoint",
            Status::Skip,
            "none configured (OTEL_EXPORTER_OTLP_ENDPOINT, telemetry.otlp_endpoint): traces are not exported",
        );
    };
    let Some(address) = host_port(&endpoint) else {
        return check(
            "otlp endpoint",
            Status::Fail,
            format!("{endpoint}: not a URL with a host"),
        );
    };
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => check(
            "otlp endpoint",
            Status::Ok,
            format!("{endpoint} accepts connections"),
        ),
        Ok(Err(error)) => check(
            "otlp endpoint",
            Status::Fail,
            format!("{endpoint}: {error}"),
        ),
        Err(_) => check(
            "otlp endpoint",
            Status::Fail,
            format!("{endpoint}: no connection within {PROBE_TIMEOUT:?}"),
        ),
    }
}

/// `host:port` of a URL (`http://collector:4317/…`), the scheme's port when none is written.
fn host_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    let has_port = match authority.rfind(']') {
        Some(bracket) => authority[bracket..].contains(':'),
        None => authority.contains(':'),
    };
    Some(if has_port {
        authority.to_string()
    } else {
        let port = if scheme == "https" { 443 } else { 80 };
        format!("{authority}:{port}")
    })
}

fn jwt(settings: &Settings) -> Check {
    let auth = &settings.auth;
    let production = settings.profile == Profile::Production;
    let mut notes = Vec::new();
    let mut status = Status::Ok;
    let mut worse = |s: Status| {
        if s == Status::Fail || (s == Status::Warn && status == Status::Ok) {
            status = s;
        }
    };
    if auth.jwt_secret.is_empty() {
        notes.push("HS256 off".to_string());
    } else if auth.jwt_secret == DEVELOPMENT_JWT_SECRET {
        notes.push("HS256 with the shipped development secret".to_string());
        worse(if production {
            Status::Fail
        } else {
            Status::Warn
        });
    } else if auth.jwt_secret.len() < 32 {
        notes.push(format!(
            "HS256 secret of {} bytes (32 or more recommended)",
            auth.jwt_secret.len()
        ));
        worse(Status::Warn);
    } else {
        notes.push(format!("HS256 secret of {} bytes", auth.jwt_secret.len()));
    }
    if auth.jwks_url.is_empty() {
        if auth.jwt_secret.is_empty() {
            notes.push("and no JWKS: no token can be verified".to_string());
            worse(Status::Fail);
        }
    } else {
        notes.push(format!("JWKS {}", auth.jwks_url));
        if !auth.jwks_url.starts_with("https://") && production {
            notes.push("(not https)".to_string());
            worse(Status::Warn);
        }
        if auth.audience.is_empty() && !auth.allow_any_audience {
            notes.push("no audience".to_string());
            worse(Status::Fail);
        }
    }
    if auth.issuer.is_empty() && production {
        notes.push("iss not checked".to_string());
    }
    if auth.leeway > Duration::from_secs(60) {
        notes.push(format!("leeway {:?} is above 60 s", auth.leeway));
        worse(Status::Warn);
    } else {
        notes.push(format!("leeway {:?}", auth.leeway));
    }
    notes.push(format!("profile {}", profile_name(settings.profile)));
    check("jwt", status, notes.join(", "))
}

fn profile_name(profile: Profile) -> &'static str {
    if profile == Profile::Production {
        "production"
    } else {
        "development"
    }
}

fn rate_limit(settings: &Settings) -> Check {
    let r = &settings.rate_limit;
    let production = settings.profile == Profile::Production;
    if !r.enabled {
        return check(
            "rate limit",
            if production { Status::Warn } else { Status::Ok },
            "off: nothing stops a flood of requests",
        );
    }
    let shared = if settings.cache.redis_url.is_empty() {
        "per process (no Redis)"
    } else {
        "shared through Redis"
    };
    let proxies = if r.trust_forwarded_for {
        format!(
            "client IP from X-Forwarded-For behind {} trusted prox(ies)",
            r.trusted_proxies.len()
        )
    } else {
        "client IP from the connection".to_string()
    };
    let status =
        if r.trust_forwarded_for && r.trusted_proxies.iter().any(|net| net.prefix_len() == 0) {
            Status::Warn
        } else {
            Status::Ok
        };
    check(
        "rate limit",
        status,
        format!(
            "{}/s (burst {}) queries and {}/s (burst {}) mutations per user, x{} per IP, {shared}; {proxies}{}",
            r.query_per_second,
            r.query_burst,
            r.mutation_per_second,
            r.mutation_burst,
            r.ip_factor,
            if status == Status::Warn {
                " (a trusted proxy range covers every address: any client can choose its IP)"
            } else {
                ""
            }
        ),
    )
}

fn cors(settings: &Settings) -> Check {
    let origins = &settings.server.cors_origins;
    let production = settings.profile == Profile::Production;
    if origins.iter().any(|o| o == "*") {
        return check(
            "cors",
            if production { Status::Warn } else { Status::Ok },
            "any origin (\"*\")",
        );
    }
    if origins.is_empty() {
        return check("cors", Status::Ok, "no browser origin allowed");
    }
    let insecure: Vec<&String> = origins
        .iter()
        .filter(|o| {
            o.starts_with("http://") && !o.contains("localhost") && !o.contains("127.0.0.1")
        })
        .collect();
    if production && !insecure.is_empty() {
        return check(
            "cors",
            Status::Warn,
            format!("{} (plain http: {insecure:?})", origins.join(", ")),
        );
    }
    check("cors", Status::Ok, origins.join(", "))
}

/// The status of a plain-HTTP GET of `url` (`padel-bff healthcheck`): one HTTP/1.1 request on
/// a fresh connection, so the image needs no curl.
pub async fn http_get_status(url: &str, timeout: Duration) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let address = host_port(url).ok_or("no host in the URL")?;
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    let host = rest.split('/').next().unwrap_or_default();
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: padel-bff-healthcheck\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut head = [0u8; 64];
        let mut read = 0;
        while read < 12 {
            let n = stream.read(&mut head[read..]).await?;
            if n == 0 {
                break;
            }
            read += n;
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..read]).into_owned())
    };
    let head = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    head.strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))
        .and_then(|s| s.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_their_address_and_lose_their_password() {
        assert_eq!(
            host_port("http://collector:4317").as_deref(),
            Some("collector:4317")
        );
        assert_eq!(
            host_port("https://otel.example/v1/traces").as_deref(),
            Some("otel.example:443")
        );
        assert_eq!(
            host_port("http://[::1]:4318/").as_deref(),
            Some("[::1]:4318")
        );
        assert_eq!(host_port("http://"), None);
        assert_eq!(
            redact("postgres://padel:secret@db:5432/padel"),
            "postgres://padel:***@db:5432/padel"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn failures_decide_the_exit_code_and_warnings_only_when_strict() {
        let warn = [check("a", Status::Ok, ""), check("b", Status::Warn, "")];
        assert_eq!(exit_code(&warn, false), 0);
        assert_eq!(exit_code(&warn, true), 1);
        let fail = [check("a", Status::Fail, ""), check("b", Status::Skip, "")];
        assert_eq!(exit_code(&fail, false), 1);
        let text = table(&fail);
        assert!(text.starts_with("CHECK"));
        assert!(text.contains("a      fail  "), "{text}");
    }
}
