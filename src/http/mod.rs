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

use crate::{
    pipeline::{Caller, EdgeCharge},
    state::AppState,
};

/// What the edge learned of a request (its id, the client's address, the rate limiter's charge),
/// read from the extensions `observe` and `graphql::charge_client` set: what every operation
/// handler hands to [`Caller::authenticate`].
pub(crate) struct Edge {
    request_id: String,
    client_ip: Option<std::net::IpAddr>,
    charge: Option<EdgeCharge>,
}

impl Edge {
    /// The edge's findings in a request's extensions.
    fn of(extensions: &axum::http::Extensions) -> Edge {
        Edge {
            request_id: extensions
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            client_ip: extensions.get::<ClientIp>().map(|c| c.0),
            charge: extensions.get::<EdgeCharge>().cloned(),
        }
    }

    /// The request's caller, from its bearer header and what the edge learned.
    async fn caller(self, state: &AppState, headers: &axum::http::HeaderMap) -> Caller {
        Caller::authenticate(state, headers, self.client_ip, self.request_id, self.charge).await
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Edge {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Edge, Self::Rejection> {
        Ok(Edge::of(&parts.extensions))
    }
}

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
