//! The HTTP surface: `/graphql` (POST, GET queries, GraphiQL), `/healthz`, `/readyz`,
//! `/metrics`, the monitoring API under `/api/bff/monitoring/` and the superuser management API
//! under `/api/management/`.

mod graphql;
mod health;
mod management;
mod monitoring;
mod observe;

pub use graphql::SQL_STATEMENTS_HEADER;
pub use observe::{REQUEST_ID_HEADER, TRACE_ID_HEADER};

use axum::{
    http::StatusCode,
    routing::{get, post},
    Router,
};
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

use crate::state::AppState;

/// The application's router, separate from serving so tests can drive it directly.
pub fn router(state: AppState) -> Router {
    let server = &state.settings.server;
    Router::new()
        .route(
            "/graphql",
            get(graphql::get_graphql).post(graphql::post_graphql),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(observe::metrics))
        .route(
            "/api/management/cache/status",
            get(management::cache_status),
        )
        .route("/api/management/cache/flush", post(management::cache_flush))
        .route(
            "/api/management/cache/warmup",
            post(management::cache_warmup),
        )
        .route("/api/management/performance", get(monitoring::performance))
        .route("/api/bff/monitoring/stats", get(monitoring::stats))
        .route("/api/bff/monitoring/summary", get(monitoring::summary))
        .route("/api/bff/monitoring/reset", post(monitoring::reset))
        .route("/api/bff/monitoring/health", get(monitoring::health))
        .layer(RequestBodyLimitLayer::new(server.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            server.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}
