//! Per-request observation at the HTTP edge: the request id (from `x-request-id` or generated,
//! echoed back), the W3C trace context of the caller (continued when spans are exported), the
//! HTTP server span every log line of the request sits in, the trace id header, and the request
//! duration histogram.

use std::{net::IpAddr, time::Instant};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method},
    middleware::Next,
    response::Response,
};
use opentelemetry::{propagation::Extractor, trace::TraceContextExt, KeyValue};
use rand::Rng;
use tracing::{field::Empty, Instrument};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{state::AppState, telemetry, telemetry::monitoring::SlowRequest};

/// Header with the request id, read and echoed.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Header with the trace id of the request's trace.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// Marks the response the panic handler built, so this middleware can add the request id.
const PANIC_MARKER: &str = "x-bff-panic";

/// The client's address (the TCP peer, or the first X-Forwarded-For hop when trusted).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

/// The request id, available to handlers as a request extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The body every failed request gets: one generic error with the request id, nothing of the
/// cause.
pub(crate) fn internal_error_body(request_id: &str) -> String {
    serde_json::json!({
        "data": null,
        "errors": [{ "message": "internal server error", "extensions": { "code": "INTERNAL_SERVER_ERROR", "requestId": request_id } }]
    })
    .to_string()
}

/// What a panic inside a handler answers (before the request id is known to it).
pub(crate) fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered INTERNAL_SERVER_ERROR");
    let mut response = Response::new(axum::body::Body::from(internal_error_body("")));
    *response.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(PANIC_MARKER, HeaderValue::from_static("1"));
    response
}

/// Routes reported as `http.route` (anything else is "other", keeping metric labels bounded).
const ROUTES: &[&str] = &[
    "/graphql",
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/management/cache/status",
    "/api/management/cache/flush",
    "/api/management/cache/warmup",
    "/api/management/performance",
    "/api/management/database/indexes",
    "/api/management/bff/performance/",
    "/api/management/bff/cache/status/",
    "/api/management/bff/cache/flush/",
    "/api/management/bff/cache/warmup/",
    "/api/management/bff/database/indexes/",
    "/api/bff/monitoring/stats",
    "/api/bff/monitoring/summary",
    "/api/bff/monitoring/reset",
    "/api/bff/monitoring/health",
    "/api/bff/monitoring/trends",
    "/api/bff/monitoring/slowest",
    "/api/bff/monitoring/alerts",
    "/api/openapi.json",
    "/graphql/ws",
    "/monitoring",
];

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A caller's request id when it is sane (visible ASCII, at most 128 bytes), else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(|| format!("{:032x}", rand::rng().random::<u128>()))
}

/// The trace id of an incoming `traceparent` (used for log correlation when not exporting).
fn incoming_trace_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    (trace_id.len() == 32
        && trace_id.bytes().all(|b| b.is_ascii_hexdigit())
        && trace_id != "0".repeat(32))
    .then(|| trace_id.to_ascii_lowercase())
}

/// The middleware.
pub(crate) async fn observe(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // The method is the client's to write (any token is valid HTTP): only the standard ones
    // label metrics, as OpenTelemetry's HTTP conventions say.
    let method = match *request.method() {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::CONNECT
        | Method::OPTIONS
        | Method::TRACE
        | Method::PATCH => request.method().as_str().to_string(),
        _ => "_OTHER".to_string(),
    };
    let path = request.uri().path().to_string();
    let route = ROUTES
        .iter()
        .chain(crate::rest::ROUTES.iter().map(|r| &r.path))
        .find(|r| **r == path)
        .copied()
        .unwrap_or("other");
    let request_id = request_id(request.headers());
    // Sampled or not, decided here once: the caller's `traceparent` first (parent-based).
    let exporting = telemetry::exporting();
    let parent = exporting.then(|| {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(request.headers()))
        })
    });
    let parent_context = parent
        .as_ref()
        .map(|cx| cx.span().span_context().clone())
        .filter(|sc| sc.is_valid());
    let trace = telemetry::sampling::RequestTrace::new(
        exporting && telemetry::sample(parent_context.as_ref().map(|sc| sc.is_sampled())),
    );
    // Unsampled: the request runs under the log-only subscriber.
    let dispatch = telemetry::unsampled_dispatch().filter(|_| !trace.sampled());
    let make_span = || {
        tracing::info_span!(
            "http.request",
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            http.request.method = %method,
            http.route = route,
            url.path = %path,
            http.response.status_code = Empty,
            otel.status_code = Empty,
            request_id = %request_id,
            trace_id = Empty,
            user.id = Empty,
            graphql.operation.name = Empty,
        )
    };
    let span = telemetry::sampling::sync_scoped(trace.clone(), || match dispatch {
        Some(dispatch) => tracing::dispatcher::with_default(dispatch, make_span),
        None => make_span(),
    });
    let trace_id = match (&parent, trace.sampled()) {
        (Some(parent), true) => {
            let _ = span.set_parent(parent.clone());
            let id = span.context().span().span_context().trace_id();
            (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
        }
        // Unsampled: the caller's trace id, or one of its own, which a kept span would carry.
        (Some(_), false) => Some(
            parent_context
                .as_ref()
                .map(|sc| sc.trace_id())
                .unwrap_or_else(|| {
                    opentelemetry::trace::TraceId::from_bytes(
                        rand::rng().random::<u128>().to_be_bytes(),
                    )
                })
                .to_string(),
        ),
        (None, _) => incoming_trace_id(request.headers()),
    };
    if let Some(trace_id) = &trace_id {
        span.record("trace_id", trace_id.as_str());
    }
    let wall_start = std::time::SystemTime::now();
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let limits = &state.settings.rate_limit;
    let client = match peer {
        Some(peer) if limits.trust_forwarded_for => Some(client_address(
            peer,
            request.headers().get_all("x-forwarded-for"),
            &limits.trusted_proxies,
        )),
        _ => peer,
    };
    if let Some(ip) = client {
        request.extensions_mut().insert(ClientIp(ip));
    }
    let run = next.run(request).instrument(span.clone());
    let mut response = match dispatch {
        Some(dispatch) => {
            use tracing::instrument::WithSubscriber;
            telemetry::sampling::scoped(trace.clone(), run.with_subscriber(dispatch.clone())).await
        }
        None => telemetry::sampling::scoped(trace.clone(), run).await,
    };
    if response.headers_mut().remove(PANIC_MARKER).is_some() {
        let log = || tracing::error!(parent: &span, request_id = %request_id, "request failed with a panic");
        // Under the request's own subscriber (the span is one of its spans).
        match dispatch {
            Some(dispatch) => tracing::dispatcher::with_default(dispatch, log),
            None => log(),
        }
        *response.body_mut() = axum::body::Body::from(internal_error_body(&request_id));
        response
            .headers_mut()
            .remove(axum::http::header::CONTENT_LENGTH);
    }
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(parent) = parent.filter(|_| !trace.sampled()) {
        if trace.kept() || status.is_server_error() {
            keep_unsampled(
                &trace,
                parent,
                trace_id.as_deref(),
                wall_start,
                (&method, route, &path),
                status.as_u16(),
                &request_id,
            );
        }
    }
    let elapsed = started.elapsed();
    // The slowest recent requests (the monitoring page): GraphQL, the BFF URLs and the
    // management actions; not probes, scrapes, the reads the page polls, or websocket upgrades.
    let polled = route.contains("/cache/status") || route.contains("/performance");
    if route == "/graphql"
        || (route.starts_with("/api/management") && !polled)
        || crate::rest::is_route(route)
    {
        state.monitoring.offer_slow(elapsed, || SlowRequest {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            operation: trace.operation().unwrap_or(route).to_string(),
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            status: status.as_u16(),
            request_id: request_id.clone(),
            trace_id: trace_id.clone(),
        });
    }
    state.instruments.http_duration.record(
        elapsed.as_secs_f64(),
        &[
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.route", route),
            KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
        ],
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    if let Some(value) = trace_id.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert(TRACE_ID_HEADER, value);
    }
    response
}

/// Exports the one span of an unsampled request that failed or was slow.
fn keep_unsampled(
    trace: &telemetry::sampling::RequestTrace,
    parent: opentelemetry::Context,
    trace_id: Option<&str>,
    start: std::time::SystemTime,
    (method, route, path): (&str, &str, &str),
    status: u16,
    request_id: &str,
) {
    let (operation, reason) = trace.reason().unwrap_or_default();
    let trace_id = trace_id
        .and_then(|t| opentelemetry::trace::TraceId::from_hex(t).ok())
        .unwrap_or(opentelemetry::trace::TraceId::INVALID);
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.to_string()),
        KeyValue::new("http.route", route.to_string()),
        KeyValue::new("url.path", path.to_string()),
        KeyValue::new("http.response.status_code", i64::from(status)),
        KeyValue::new("request_id", request_id.to_string()),
        KeyValue::new("sampling.kept", reason.clone()),
    ];
    if !operation.is_empty() {
        attributes.push(KeyValue::new("graphql.operation.name", operation));
    }
    let failed = status >= 500 || reason != "slow";
    telemetry::export_kept(telemetry::KeptRequest {
        name: format!("{method} {route}"),
        parent,
        trace_id,
        start,
        end: std::time::SystemTime::now(),
        attributes,
        error: failed.then(|| {
            if reason.is_empty() {
                format!("HTTP {status}")
            } else {
                reason
            }
        }),
    });
}

/// The client behind trusted proxies: the right-most `X-Forwarded-For` address that is not a
/// trusted proxy. Entries left of it are whatever the client wrote, so they are never believed; a
/// peer that is not a trusted proxy is the client itself, whatever its header says.
fn client_address(
    peer: IpAddr,
    forwarded: axum::http::header::GetAll<'_, HeaderValue>,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return ip,
            // Garbage in the chain: the last address known good stands.
            Err(_) => return client,
        }
    }
    client
}

/// GET /metrics: Prometheus text exposition of every instrument.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    use prometheus::Encoder;
    let mut body = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(error) = encoder.encode(&state.registry.gather(), &mut body) {
        tracing::error!(error = %error, "encoding metrics failed");
    }
    let mut response = Response::new(axum::body::Body::from(body));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, header: &[&str], trusted: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for value in header {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        client_address(
            peer.parse().unwrap(),
            headers.get_all("x-forwarded-for"),
            &trusted,
        )
        .to_string()
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_forwarded_address() {
        let proxies = ["10.0.0.0/8"];
        // The left-most entry is the client's own writing: never believed.
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6, 203.0.113.7"], &proxies),
            "203.0.113.7"
        );
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6", "203.0.113.7, 10.0.0.9"], &proxies),
            "203.0.113.7"
        );
        // A peer that is no trusted proxy is the client, whatever it claims.
        assert_eq!(
            client("198.51.100.1", &["1.2.3.4"], &proxies),
            "198.51.100.1"
        );
        // Only proxies in the chain: the left-most of them.
        assert_eq!(client("10.0.0.2", &["10.0.0.5"], &proxies), "10.0.0.5");
        // Garbage stops the walk at the last good address.
        assert_eq!(client("10.0.0.2", &["1.2.3.4, junk"], &proxies), "10.0.0.2");
        assert_eq!(client("10.0.0.2", &[], &proxies), "10.0.0.2");
    }
}
