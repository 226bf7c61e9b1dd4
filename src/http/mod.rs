//! The HTTP surface: `/graphql` (POST, GET queries, GraphiQL), `/healthz`, `/readyz`, and the
//! superuser management API under `/api/management/`.

mod graphql;
pub use graphql::SQL_STATEMENTS_HEADER;
mod health;
mod management;

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
        .route(
            "/api/management/cache/status",
            get(management::cache_status),
        )
        .route("/api/management/cache/flush", post(management::cache_flush))
        .route(
            "/api/management/cache/warmup",
            post(management::cache_warmup),
        )
        .layer(RequestBodyLimitLayer::new(server.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            server.request_timeout,
        ))
        .with_state(state)
}
