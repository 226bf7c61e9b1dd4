//! The HTTP surface, thin adapters over the layers below: `/graphql` (POST, GET queries, GraphiQL;
//! over `pipeline`), the platform's BFF URLs (`rest`, over `pipeline` too) and
//! `/api/openapi.json`, `/healthz`, `/readyz`, `/metrics`, the monitoring API under
//! `/api/bff/monitoring/` and the superuser management API under `/api/management/` (one guard,
//! `superuser`).

mod body_limit;
mod graphql;
mod health;
mod live;
mod management;
mod monitoring;
mod monitoring_page;
mod multipart;
mod observe;
mod rest;
pub mod serve;
mod superuser;

pub(crate) use monitoring::evaluate_alerts_every;

pub use graphql::SQL_STATEMENTS_HEADER;
pub use observe::{ClientIp, RequestId, REQUEST_ID_HEADER, TRACE_ID_HEADER};

use axum::{
    http::StatusCode,
    routing::{get, post},
    Router,
};
use tower_http::{catch_panic::CatchPanicLayer, cors::CorsLayer, timeout::TimeoutLayer};

use crate::state::AppState;

/// CORS from the allowlist: `*` allows any origin (development), an empty list none.
fn cors(origins: &[String]) -> CorsLayer {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            // The BFF URLs' revalidation (`http::rest`).
            header::IF_NONE_MATCH,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("traceparent"),
        ])
        .expose_headers([
            header::ETAG,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-trace-id"),
        ]);
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(tower_http::cors::Any)
    } else {
        layer.allow_origin(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    }
}

/// The application's router; `http::serve` serves it (its own connection loop, so header-read
/// timeouts and the connection cap apply before axum sees a request).
pub fn router(state: AppState) -> Router {
    let server = &state.settings.server;
    let bff = crate::rest::ROUTES
        .iter()
        .fold(Router::new(), |router, route| {
            router.route(route.path, get(rest::get_bff))
        });
    bff.route("/api/openapi.json", get(rest::openapi))
        .route("/graphql/ws", get(live::upgrade))
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
        .route(
            "/api/management/database/indexes",
            get(management::database_indexes),
        )
        // The platform's management URLs, with their trailing slash: aliases of the above.
        .route(
            "/api/management/bff/performance/",
            get(monitoring::performance),
        )
        .route(
            "/api/management/bff/cache/status/",
            get(management::cache_status),
        )
        .route(
            "/api/management/bff/cache/flush/",
            post(management::cache_flush),
        )
        .route(
            "/api/management/bff/cache/warmup/",
            post(management::cache_warmup),
        )
        .route(
            "/api/management/bff/database/indexes/",
            get(management::database_indexes),
        )
        .route("/api/bff/monitoring/stats", get(monitoring::stats))
        .route("/api/bff/monitoring/summary", get(monitoring::summary))
        .route("/api/bff/monitoring/reset", post(monitoring::reset))
        .route("/api/bff/monitoring/health", get(monitoring::health))
        .route("/api/bff/monitoring/trends", get(monitoring::trends))
        .route("/api/bff/monitoring/slowest", get(monitoring::slowest))
        .route("/api/bff/monitoring/alerts", get(monitoring::alerts))
        .route("/monitoring", get(monitoring_page::page))
        .layer(CatchPanicLayer::custom(observe::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body_limit::limit_body,
        ))
        // Charged before the body is read: refused work is not free.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            graphql::charge_client,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            server.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .layer(cors(&server.cors_origins))
        .with_state(state)
}
