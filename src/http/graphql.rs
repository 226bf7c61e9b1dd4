//! The GraphQL endpoint: builds the request context, executes, assigns error codes, records the
//! request (summary log line, slow-request warning, metrics, monitoring) and marks responses
//! private.

use std::time::Instant;

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};
use opentelemetry::KeyValue;

use crate::{
    config::Profile,
    error::ErrorCode,
    graphql::{assign_error_codes, context::RequestContext},
    state::AppState,
    telemetry::{monitoring::RequestRecord, RequestStats},
};

/// Header carrying the number of SQL statements a request ran (when `debug_headers` is on).
pub const SQL_STATEMENTS_HEADER: &str = "x-sql-statements";

/// POST /graphql.
pub(crate) async fn post_graphql(
    State(state): State<AppState>,
    request_id: Option<axum::Extension<super::RequestId>>,
    client_ip: Option<axum::Extension<super::ClientIp>>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let edge = Edge {
        request_id: request_id.map(|r| r.0 .0).unwrap_or_default(),
        client_ip: client_ip.map(|c| c.0 .0),
    };
    execute(&state, &headers, &edge, request.into_inner()).await
}

/// What the HTTP edge learned about the request.
struct Edge {
    request_id: String,
    client_ip: Option<std::net::IpAddr>,
}

/// GET /graphql: a query (or a persisted-query hash) in the URL runs; otherwise the GraphiQL IDE.
pub(crate) async fn get_graphql(State(state): State<AppState>, request: Request) -> Response {
    if request
        .uri()
        .query()
        .is_some_and(|q| q.contains("query=") || q.contains("extensions="))
    {
        let headers = request.headers().clone();
        let edge = Edge {
            request_id: request
                .extensions()
                .get::<super::RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            client_ip: request.extensions().get::<super::ClientIp>().map(|c| c.0),
        };
        return match <GraphQLRequest as axum::extract::FromRequest<AppState>>::from_request(
            request, &state,
        )
        .await
        {
            Ok(graphql) => execute(&state, &headers, &edge, graphql.into_inner()).await,
            Err(rejection) => rejection.into_response(),
        };
    }
    if !state.settings.server.graphiql {
        return StatusCode::NOT_FOUND.into_response();
    }
    let token = state.demo_owner_id.map(|id| {
        format!(
            "Bearer {}",
            state.tokens.sign(id, state.settings.auth.demo_token_ttl)
        )
    });
    let mut page = GraphiQLSource::build()
        .endpoint("/graphql")
        .title("padel-bff");
    if let Some(token) = &token {
        page = page.header("Authorization", token);
    }
    Html(page.finish()).into_response()
}

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    edge: &Edge,
    request: async_graphql::Request,
) -> Response {
    let started = Instant::now();
    let context = RequestContext::new(
        &state.store,
        &state.cache,
        state.tokens.credentials(headers),
        Some(state.instruments.clone()),
        state.settings.telemetry.n_plus_one_threshold,
    )
    .with_rate_limit(state.rate_limiter.clone(), edge.client_ip);
    let stats = context.stats.clone();
    let mut request = request;
    let mut response = match resolve_persisted_query(state, &mut request).await {
        Ok(()) => state.schema.execute(request.data(context)).await,
        Err(error) => async_graphql::Response::from_errors(vec![error]),
    };
    assign_error_codes(&mut response);
    let codes: Vec<&'static str> = response.errors.iter().map(error_code).collect();
    for (error, code) in response.errors.iter_mut().zip(&codes) {
        if *code == ErrorCode::InternalServerError.as_str() {
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("requestId", edge.request_id.as_str());
        }
    }
    if state.settings.profile == Profile::Development || stats.is_superuser() {
        let outcomes = stats
            .cache_outcomes()
            .into_iter()
            .map(|(kind, outcome)| async_graphql::value!({ "kind": kind, "outcome": outcome.name() }))
            .collect();
        response
            .extensions
            .insert("cache".to_string(), async_graphql::Value::List(outcomes));
    }
    record(state, &stats, started, &codes);
    let mut http = GraphQLResponse::from(response).into_response();
    if let Some(wait) = stats.retry_after() {
        *http.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        http.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    let headers = http.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if state.settings.server.debug_headers {
        headers.insert(
            SQL_STATEMENTS_HEADER,
            HeaderValue::from(stats.sql_statements()),
        );
    }
    http
}

/// Automatic persisted queries (the Apollo protocol): a hash alone is replaced by the document
/// registered under it (any replica may have registered it: the documents live in the two-tier
/// cache); a document with its hash is checked and registered. Execution then parses the text as
/// usual, so every limit and rate limit applies.
async fn resolve_persisted_query(
    state: &AppState,
    request: &mut async_graphql::Request,
) -> Result<(), async_graphql::ServerError> {
    if let Some(safelist) = &state.safelist {
        // Safelist mode: the manifest's documents only, named by id/hash or sent verbatim; no
        // new registrations.
        let id = request
            .extensions
            .remove("persistedQuery")
            .and_then(|v| v.into_json().ok())
            .and_then(|json| json["sha256Hash"].as_str().map(str::to_string));
        return match safelist.resolve(id.as_deref(), &request.query) {
            Some(document) if request.query.is_empty() || request.query == document => {
                request.query = document;
                Ok(())
            }
            _ => Err(ErrorCode::OperationNotInSafelist
                .server_error("this operation is not in the safelist")),
        };
    }
    let Some(extension) = request.extensions.remove("persistedQuery") else {
        return Ok(());
    };
    let extension = extension.into_json().unwrap_or_default();
    let hash = extension["sha256Hash"]
        .as_str()
        .unwrap_or("")
        .to_ascii_lowercase();
    if extension["version"] != 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(
            ErrorCode::BadUserInput.server_error("persistedQuery needs version 1 and a sha256Hash")
        );
    }
    if request.query.is_empty() {
        return match state.cache.persisted_query(&hash).await {
            Some(text) => {
                request.query = text;
                Ok(())
            }
            None => Err(ErrorCode::PersistedQueryNotFound.server_error("PersistedQueryNotFound")),
        };
    }
    if crate::safelist::sha256_hex(&request.query) != hash {
        return Err(ErrorCode::BadUserInput.server_error("provided sha does not match query"));
    }
    state.cache.register_persisted_query(&hash, &request.query);
    Ok(())
}

/// The `extensions.code` of an error (every error has one after `assign_error_codes`).
fn error_code(error: &async_graphql::ServerError) -> &'static str {
    let code = error.extensions.as_ref().and_then(|e| e.get("code"));
    let text = match code {
        Some(async_graphql::Value::String(code)) => code.as_str(),
        _ => "",
    };
    ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .find(|c| *c == text)
        .unwrap_or("")
}

/// The monitoring key of an operation: its name, or its root fields when anonymous.
fn operation_key(stats: &RequestStats) -> String {
    match stats.operation() {
        Some((_, name)) if !name.is_empty() => name,
        _ => {
            let mut roots = stats.root_fields();
            roots.sort();
            roots.dedup();
            if roots.is_empty() {
                "anonymous".into()
            } else {
                roots.join("+")
            }
        }
    }
}

/// Summary line, slow-request warning, metrics and monitoring for one GraphQL request.
fn record(state: &AppState, stats: &RequestStats, started: Instant, codes: &[&'static str]) {
    let duration = started.elapsed();
    let operation = operation_key(stats);
    let outcomes = stats.cache_outcomes();
    let hits = outcomes
        .iter()
        .filter(|(_, o)| {
            !matches!(
                o,
                crate::cache::Outcome::Miss | crate::cache::Outcome::Bypass
            )
        })
        .count();
    let cache: Vec<String> = outcomes
        .iter()
        .map(|(kind, outcome)| format!("{kind}:{}", outcome.name()))
        .collect();
    let n_plus_one = stats.n_plus_one();
    let status = if codes.is_empty() { "ok" } else { "error" };
    tracing::Span::current().record("graphql.operation.name", operation.as_str());
    tracing::info!(
        graphql.operation = %operation,
        status,
        error.codes = %codes.join(","),
        duration_ms = duration.as_secs_f64() * 1000.0,
        sql_statements = stats.sql_statements(),
        cache = %cache.join(","),
        user.id = stats.user_id(),
        "graphql request finished"
    );
    let telemetry = &state.settings.telemetry;
    let roots = stats.root_fields();
    let threshold = telemetry.slow_threshold(roots.iter().map(String::as_str));
    if duration > threshold {
        let slowest: Vec<String> = stats
            .slowest_fields()
            .iter()
            .map(|(path, d)| format!("{path}={:.1}ms", d.as_secs_f64() * 1000.0))
            .collect();
        tracing::warn!(
            graphql.operation = %operation,
            duration_ms = duration.as_secs_f64() * 1000.0,
            threshold_ms = threshold.as_secs_f64() * 1000.0,
            slowest_fields = %slowest.join(", "),
            "slow graphql request"
        );
    }
    let instruments = &state.instruments;
    instruments.sql_per_operation.record(
        u64::from(stats.sql_statements()),
        &[KeyValue::new("graphql.operation.name", operation.clone())],
    );
    for code in codes {
        instruments
            .errors
            .add(1, &[KeyValue::new("error.code", *code)]);
    }
    state.monitoring.record(
        &operation,
        RequestRecord {
            duration,
            failed: !codes.is_empty(),
            cache_lookups: outcomes.len() as u64,
            cache_hits: hits as u64,
            sql_statements: u64::from(stats.sql_statements()),
            n_plus_one: n_plus_one.len() as u64,
        },
    );
}
