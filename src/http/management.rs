//! The management API (superusers, same bearer tokens): cache status, flush and warm-up, and the
//! database's indexes. The platform's own management URLs (`/api/management/bff/…/`) are
//! aliases of the same handlers (`http::router`).

use axum::{
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::json;

use super::superuser::{error_body, error_response, require_superuser};
use crate::{cache::Kind, error::ErrorCode, reads, state::AppState};

/// GET /api/management/cache/status
pub(crate) async fn cache_status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(denied) = require_superuser(&state, &headers).await {
        return denied;
    }
    let cache = &state.cache;
    let settings = &state.settings.cache;
    let (entries, bytes) = cache.l1_usage();
    let persisted = cache.persisted_usage();
    let mirror = cache.mirror_usage();
    let kinds: Vec<_> = cache
        .metrics()
        .kinds()
        .into_iter()
        .map(|k| {
            let kind = Kind::parse(k.lookups.kind).expect("metrics name known kinds");
            let ks = settings.for_kind(kind);
            json!({
                "kind": k.lookups.kind,
                "ttlSeconds": ks.ttl.as_secs_f64(),
                "staleWhileRevalidateSeconds": ks.stale_while_revalidate.as_secs_f64(),
                "staleIfErrorSeconds": ks.stale_if_error.as_secs_f64(),
                "stats": k,
            })
        })
        .collect();
    let redis = match cache.redis_health() {
        None => json!({ "configured": false }),
        Some(Ok(())) => json!({ "configured": true, "healthy": true }),
        Some(Err(reason)) => json!({ "configured": true, "healthy": false, "reason": reason }),
    };
    Json(json!({
        "enabled": settings.enabled,
        "l1": { "active": cache.l1_active(), "entries": entries, "bytes": bytes, "maxBytes": settings.l1_max_bytes, "evictions": cache.metrics().l1_evictions() },
        "redis": redis,
        "redisErrors": cache.metrics().redis_errors(),
        "invalidations": cache.metrics().invalidations(),
        "inflightLoads": cache.inflight(),
        "persistedQueries": {
            "entries": persisted.0,
            "bytes": persisted.1,
            "maxBytes": settings.persisted_query_l1_max_bytes,
            "maxCount": settings.persisted_query_max_count,
        },
        "generationMirror": { "tags": mirror.0, "maxTags": settings.generation_mirror_max_tags, "resets": mirror.1 },
        "kinds": kinds,
    }))
    .into_response()
}

/// Body of a flush: exactly one of a kind, a tag, or everything. The platform's BFF sends
/// `{"type": "all"}`; `{"type": "kind", "kind": …}` and `{"type": "tag", "tag": …}` read alike.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlushRequest {
    kind: Option<String>,
    tag: Option<String>,
    #[serde(default)]
    all: bool,
    #[serde(rename = "type")]
    of_type: Option<String>,
}

/// POST /api/management/cache/flush
pub(crate) async fn cache_flush(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<FlushRequest>,
) -> Response {
    if let Err(denied) = require_superuser(&state, &headers).await {
        return denied;
    }
    let bad = |message: &str| error_response(ErrorCode::BadUserInput, message);
    let all = match body.of_type.as_deref() {
        None => body.all,
        Some("all") if !body.all => true,
        Some("kind") if body.kind.is_some() && !body.all => false,
        Some("tag") if body.tag.is_some() && !body.all => false,
        Some(_) => {
            return bad("\"type\" is \"all\", or \"kind\" with a kind, or \"tag\" with a tag")
        }
    };
    match (body.kind, body.tag, all) {
        (None, None, true) => {
            state.cache.flush_all().await;
            Json(json!({ "flushed": "all" })).into_response()
        }
        (Some(kind), None, false) => match Kind::parse(&kind) {
            Some(k) => {
                state.cache.flush_kind(k).await;
                Json(json!({ "flushed": { "kind": kind } })).into_response()
            }
            None => {
                bad("unknown kind (courtAvailability, dashboard, authContext, permissions, club)")
            }
        },
        (None, Some(tag), false) if !tag.is_empty() => {
            state.cache.invalidate(std::slice::from_ref(&tag)).await;
            Json(json!({ "flushed": { "tag": tag } })).into_response()
        }
        _ => bad("send exactly one of {\"kind\": …}, {\"tag\": …} or {\"all\": true}"),
    }
}

/// Body of a warm-up: optional club ids and days.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct WarmupRequest {
    club_ids: Option<Vec<i64>>,
    days: Option<u32>,
}

/// POST /api/management/cache/warmup
pub(crate) async fn cache_warmup(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Option<Json<WarmupRequest>>,
) -> Response {
    if let Err(denied) = require_superuser(&state, &headers).await {
        return denied;
    }
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let days = body
        .days
        .unwrap_or(state.settings.cache.warmup_days)
        .min(366);
    match reads::warm_up(
        &state.cache,
        &state.store,
        body.club_ids,
        days,
        state.settings.cache.warmup_concurrency,
    )
    .await
    {
        Ok(filled) => Json(json!({ "warmed": filled })).into_response(),
        // 400 whatever the cause (the code says which), as the warm-up always answered.
        Err(error) => error_body(
            axum::http::StatusCode::BAD_REQUEST,
            error.code(),
            &error.to_string(),
        ),
    }
}

/// GET /api/management/bff/database/indexes/ (also /api/management/database/indexes): every index
/// of our tables with its use (Postgres) or the hot statements' plans (SQLite), and the seven
/// indexes of the core issue, present or missing.
pub(crate) async fn database_indexes(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = require_superuser(&state, &headers).await {
        return denied;
    }
    match state.store.index_report().await {
        Ok(report) => Json(report).into_response(),
        Err(error) => {
            tracing::warn!(error = %error, "database index report failed");
            error_response(ErrorCode::ServiceUnavailable, "the database did not answer")
        }
    }
}
