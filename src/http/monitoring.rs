//! The monitoring API: per-operation statistics, a summary, reset, health, a performance score
//! with recommendations, per-minute trends, the slowest recent requests and the alert history
//! (with its rules). Superusers only, except health.

use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::superuser::require_superuser;
use crate::{
    config::TelemetrySettings,
    state::AppState,
    telemetry::{alerts::ALERT_WINDOW_MINUTES, monitoring::OperationSnapshot},
};

/// `?operation=NAME`.
#[derive(Debug, Deserialize)]
pub(crate) struct StatsQuery {
    operation: Option<String>,
}

/// GET /api/bff/monitoring/stats
pub(crate) async fn stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<StatsQuery>,
) -> Response {
    if let Err(denied) = require_superuser(&state, &headers).await {
        return denied;
    }
    Json(json!({ "operations": state.monitoring.snapshot(query.operation.as_deref()) }))
        .into_response()
}

struct Totals {
    count: u64,
    errors: u64,
    error_rate: f64,
    cache_hit_rate: Option<f64>,
    avg_ms: f64,
    sql_per_request: f64,
}

fn totals(operations: &[OperationSnapshot]) -> Totals {
    let count: u64 = operations.iter().map(|o| o.count).sum();
    let errors: u64 = operations.iter().map(|o| o.errors).sum();
    let (hits, lookups) = operations
        .iter()
        .fold((0.0, 0.0), |(h, l), o| match o.cache_hit_rate {
            // Weighted by requests: each operation's rate times its count.
            Some(rate) => (h + rate * o.count as f64, l + o.count as f64),
            None => (h, l),
        });
    let total_ms: f64 = operations.iter().map(|o| o.avg_ms * o.count as f64).sum();
    let total_sql: f64 = operations
        .iter()
        .map(|o| o.sql_statements_per_request * o.count as f64)
        .sum();
    Totals {
        count,
        errors,
        error_rate: if count == 0 {
            0.0
        } else {
            errors as f64 / count as f64
        },
        cache_hit_rate: (lookups > 0.0).then(|| hits / lookups),
        avg_ms: if count == 0 {
            0.0
        } else {
            total_ms / count as f64
        },
        sql_per_request: if count == 0 {
            0.0
        } else {
            total_sql / count as f64
        },
    }
}

/// GET /api/bff/monitoring/summary
pub(crate) async fn summary(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(denied) = require_superuser(&state, &headers).await {
        return denied;
    }
    let operations = state.monitoring.snapshot(None);
    let t = totals(&operations);
    let top: Vec<Value> = operations
        .iter()
        .take(5)
        .map(|o| json!({ "operation": o.operation, "count": o.count, "p95Ms": o.p95_ms }))
        .collect();
    Json(json!({
        "requests": t.count,
        "errors": t.errors,
        "errorRate": t.error_rate,
        "avgMs": t.avg_ms,
        "cacheHitRate": t.cache_hit_rate,
        "sqlStatementsPerRequest": t.sql_per_request,
        "errorsByCode": state.monitoring.errors_by_code(),
        "operations": operations.len(),
        "topOperations": top,
    }))
    .into_response()
}

/// POST /api/bff/monitoring/reset
pub(crate) async fn reset(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(denied) = require_superuser(&state, &headers).await {
        return denied;
    }
    state.monitoring.reset();
    Json(json!({ "reset": true })).into_response()
}

/// GET /api/bff/monitoring/health (public): healthy, degraded or unhealthy, with reasons.
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    let mut reasons = Vec::new();
    let mut status = "healthy";
    if state.store.ping().await.is_err() {
        status = "unhealthy";
        reasons.push("database unreachable".to_string());
    }
    if let Some(Err(reason)) = state.cache.redis_health() {
        if status == "healthy" {
            status = "degraded";
        }
        reasons.push(reason);
    }
    let t = totals(&state.monitoring.snapshot(None));
    if t.count >= 20 && t.error_rate > 0.05 {
        if status == "healthy" {
            status = "degraded";
        }
        reasons.push(format!(
            "error rate {:.1} % over the last {} requests is above 5 %",
            t.error_rate * 100.0,
            t.count
        ));
    }
    let code = if status == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(json!({ "status": status, "reasons": reasons }))).into_response()
}

/// The slow-request threshold of an operation key (a name or its root fields).
/// The documented scoring rules (docs/observability.md): start at 100 and subtract.
pub(crate) fn performance_report(
    operations: &[OperationSnapshot],
    settings: &TelemetrySettings,
    redis_degraded: bool,
) -> Value {
    let mut score: i64 = 100;
    let mut findings = Vec::new();
    let mut latency_penalty = 0;
    for op in operations.iter().filter(|o| o.count > 0) {
        let limit = settings
            .slow_threshold([op.operation.as_str()])
            .as_secs_f64()
            * 1000.0;
        if op.p95_ms > limit {
            latency_penalty += 10;
            findings.push(json!({
                "rule": "latency",
                "operation": op.operation,
                "detail": format!("p95 {:.1} ms is above the {:.0} ms threshold", op.p95_ms, limit),
                "recommendation": format!(
                    "Look at the slowest fields in the 'slow graphql request' warnings for {}; warm its cache (POST /api/management/cache/warmup) or raise its TTL if it is a cached kind; EXPLAIN its SQL.",
                    op.operation
                ),
            }));
        }
    }
    score -= latency_penalty.min(40);
    let t = totals(operations);
    if t.error_rate > 0.05 {
        score -= 20;
        findings.push(json!({
            "rule": "error_rate",
            "detail": format!("error rate {:.1} % is above 5 %", t.error_rate * 100.0),
            "recommendation": "Check graphql.server.errors by error.code: UNAUTHENTICATED/FORBIDDEN point at clients, INTERNAL_SERVER_ERROR at the gateway or the database.",
        }));
    }
    if let Some(rate) = t.cache_hit_rate.filter(|r| *r < 0.8) {
        score -= 15;
        findings.push(json!({
            "rule": "cache_hit_rate",
            "detail": format!("cache hit rate {:.1} % is below 80 %", rate * 100.0),
            "recommendation": "Check /api/management/cache/status: raise TTLs of kinds with many misses, enable warm-up on start, and make sure Redis is configured so replicas share L2.",
        }));
    }
    let n_plus_one: u64 = operations.iter().map(|o| o.n_plus_one_suspected).sum();
    if n_plus_one > 0 {
        score -= 15;
        let names: Vec<&str> = operations
            .iter()
            .filter(|o| o.n_plus_one_suspected > 0)
            .map(|o| o.operation.as_str())
            .collect();
        findings.push(json!({
            "rule": "n_plus_one",
            "detail": format!("{n_plus_one} requests repeated one statement outside a DataLoader batch ({})", names.join(", ")),
            "recommendation": "The 'suspected N+1' warnings name the field path: resolve that field through a DataLoader.",
        }));
    }
    if redis_degraded {
        score -= 10;
        findings.push(json!({
            "rule": "redis",
            "detail": "Redis is unavailable: replicas do not share cached values",
            "recommendation": "Check Redis reachability (see /readyz); requests are being served from L1 and the database meanwhile.",
        }));
    }
    json!({ "score": score.clamp(0, 100), "requests": t.count, "findings": findings })
}

/// GET /api/management/performance
pub(crate) async fn performance(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(denied) = require_superuser(&state, &headers).await {
        return denied;
    }
    let operations = state.monitoring.snapshot(None);
    let redis_degraded = matches!(state.cache.redis_health(), Some(Err(_)));
    Json(performance_report(
        &operations,
        &state.settings.telemetry,
        redis_degraded,
    ))
    .into_response()
}

/// `?operation=NAME`: one operation's trend only.
#[derive(Debug, Deserialize)]
pub(crate) struct TrendsQuery {
    operation: Option<String>,
}

/// GET /api/bff/monitoring/trends: per-minute aggregates of the last 60 minutes (oldest minute
/// first): `all` operations merged, and each operation that had requests (only `operation`'s when
/// given: the page asks for the one it draws).
pub(crate) async fn trends(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TrendsQuery>,
) -> Response {
    if let Err(denied) = require_superuser(&state, &headers).await {
        return denied;
    }
    let trends = state.monitoring.trends(query.operation.as_deref());
    Json(json!({
        "intervalSeconds": 60,
        "minutes": crate::telemetry::monitoring::MINUTES,
        "all": trends.all,
        "operations": trends.operations,
    }))
    .into_response()
}

/// `?limit=N` (1–100, default 20).
#[derive(Debug, Deserialize)]
pub(crate) struct SlowestQuery {
    limit: Option<usize>,
}

/// GET /api/bff/monitoring/slowest: the slowest requests of the last hour (the 10 slowest of
/// each minute are kept), slowest first, with their request and trace ids.
pub(crate) async fn slowest(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SlowestQuery>,
) -> Response {
    if let Err(denied) = require_superuser(&state, &headers).await {
        return denied;
    }
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    Json(json!({ "requests": state.monitoring.slowest(limit) })).into_response()
}

/// GET /api/bff/monitoring/alerts: the alert history, newest first (the rules are evaluated
/// first, so it is current).
pub(crate) async fn alerts(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(denied) = require_superuser(&state, &headers).await {
        return denied;
    }
    evaluate_alerts(&state);
    let history = state.alerts.history();
    let active = history.iter().filter(|a| a.active).count();
    Json(json!({
        "active": active,
        "capacity": state.settings.telemetry.alert_history,
        "dropped": state.alerts.dropped(),
        "alerts": history,
    }))
    .into_response()
}

/// Evaluates the alert rules once and records the result in the history.
pub(crate) fn evaluate_alerts(state: &AppState) {
    let window = state.monitoring.window(ALERT_WINDOW_MINUTES);
    let found = crate::telemetry::alerts::breaches(
        &window,
        &state.settings.telemetry,
        state.cache.redis_health(),
    );
    state.alerts.observe(&found, chrono::Utc::now());
}

/// The alert rules every `telemetry.alert_interval`, until shutdown.
pub(crate) async fn evaluate_alerts_every(state: AppState) {
    let every = state
        .settings
        .telemetry
        .alert_interval
        .max(std::time::Duration::from_millis(100));
    let mut shutdown = state.shutdown.subscribe();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => evaluate_alerts(&state),
            _ = shutdown.changed() => return,
        }
    }
}
