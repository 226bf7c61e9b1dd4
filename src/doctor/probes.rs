//! The checks that connect: the database (migrations, indexes, the outbox wake-ups, clock
//! skew), Redis (eviction policy, the invalidation channel), the OTLP endpoint; and the plain
//! HTTP GET of `padel-bff healthcheck`.

use std::time::Duration;

use super::{check, Check, Status};
use crate::{
    config::{redact, Profile, Settings},
    store::Store,
};

/// How long any one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Clock skew against the database above which a warning is given.
const SKEW_WARN: Duration = Duration::from_secs(1);
/// Why the database cannot be reached, found without connecting through the pool: a SQLite
/// file that does not exist (connecting would create it), or a Postgres address that refuses
/// TCP (the pool would only say it timed out).
async fn unreachable(url: &str) -> Option<String> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = path.split('?').next().unwrap_or_default();
        return (!path.is_empty() && path != ":memory:" && !std::path::Path::new(path).exists())
            .then(|| format!("{path} does not exist (serve would create and seed it)"));
    }
    let address = host_port(url)?;
    // A socket directory (`host=/run/postgresql`) or several hosts: leave it to the pool.
    if address.contains(',') || address.starts_with(':') {
        return None;
    }
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => None,
        Ok(Err(error)) => Some(format!("{address}: {error}")),
        Err(_) => Some(format!(
            "{address}: no TCP connection within {PROBE_TIMEOUT:?}"
        )),
    }
}

/// A store call bounded by `PROBE_TIMEOUT` (a database that accepted us and then hangs).
async fn within<T>(
    call: impl std::future::Future<Output = Result<T, crate::error::StoreError>>,
) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// The database line failed, and the checks that need it skipped.
fn database_failed(checks: &mut Vec<Check>, detail: String) {
    checks.push(check("database", Status::Fail, detail));
    for name in ["migrations", "indexes", "outbox wake-ups", "clock skew"] {
        checks.push(check(name, Status::Skip, "the database is unreachable"));
    }
}

pub(super) async fn database(settings: &Settings, checks: &mut Vec<Check>) {
    let url = settings.database_url();
    let started = std::time::Instant::now();
    if let Some(reason) = unreachable(&url).await {
        return database_failed(checks, format!("{}: {reason}", redact(&url)));
    }
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
        Ok(Err(error)) => return database_failed(checks, format!("{}: {error}", redact(&url))),
        Err(_) => {
            return database_failed(
                checks,
                format!("{}: no answer within {:?}", redact(&url), PROBE_TIMEOUT * 2),
            )
        }
    };
    checks.push(match within(store.migration_status()).await {
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
    checks.push(match within(store.index_report()).await {
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
    checks.push(match within(store.database_now()).await {
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

pub(super) async fn redis(settings: &Settings, checks: &mut Vec<Check>) {
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

pub(super) async fn otlp(settings: &Settings) -> Check {
    let Some(endpoint) = crate::telemetry::otlp_endpoint(&settings.telemetry) else {
        return check(
            "otlp endpoint",
            Status::Skip,
            "none configured (OTEL_EXPORTER_OTLP_ENDPOINT, telemetry.otlp_endpoint): traces are not exported",
        );
    };
    let shown = redact(&endpoint);
    let Some(address) = host_port(&endpoint) else {
        return check(
            "otlp endpoint",
            Status::Fail,
            format!("{shown}: not a URL with a host"),
        );
    };
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => check(
            "otlp endpoint",
            Status::Ok,
            format!("{shown} accepts connections"),
        ),
        Ok(Err(error)) => check("otlp endpoint", Status::Fail, format!("{shown}: {error}")),
        Err(_) => check(
            "otlp endpoint",
            Status::Fail,
            format!("{shown}: no connection within {PROBE_TIMEOUT:?}"),
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
        let port = match scheme {
            "https" => 443,
            "postgres" | "postgresql" => 5432,
            "redis" => 6379,
            "rediss" => 6380,
            _ => 80,
        };
        format!("{authority}:{port}")
    })
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
    fn urls_give_their_address() {
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
            host_port("postgres://u@db/padel").as_deref(),
            Some("db:5432")
        );
    }
}
