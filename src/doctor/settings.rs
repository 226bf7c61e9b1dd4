//! The checks of the settings alone: JWT, rate limit, CORS, for the profile.

use std::time::Duration;

use super::{check, Check, Status};
use crate::config::{Profile, Settings, DEVELOPMENT_JWT_SECRET};

pub(super) fn jwt(settings: &Settings) -> Check {
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
        notes.push(format!("JWKS {}", crate::config::redact(&auth.jwks_url)));
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

pub(super) fn rate_limit(settings: &Settings) -> Check {
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

pub(super) fn cors(settings: &Settings) -> Check {
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
