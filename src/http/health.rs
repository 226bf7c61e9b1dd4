//! Liveness and readiness, for load balancers and orchestrators.

use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

use crate::state::AppState;

/// The process is up.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The process can serve: the database answers. Redis trouble makes it `degraded`, not unready:
/// requests are then served from L1 and the database.
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let redis = match state.cache.redis_health() {
        None => json!("not configured"),
        Some(Ok(())) => json!("ok"),
        Some(Err(reason)) => json!(reason),
    };
    let degraded = matches!(state.cache.redis_health(), Some(Err(_)));
    match state.store.ping().await {
        Ok(()) => {
            let status = if degraded { "degraded" } else { "ready" };
            (
                StatusCode::OK,
                Json(json!({ "status": status, "checks": { "database": "ok", "redis": redis } })),
            )
        }
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({ "status": "unavailable", "checks": { "database": "unreachable", "redis": redis } }),
                ),
            )
        }
    }
}
