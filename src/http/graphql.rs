//! `/graphql`, a thin adapter over the request pipeline (`pipeline`; a subscription asked for as
//! multipart goes to `http::multipart`): it reads the transport
//! (the JSON body or the URL, the bearer header, what the edge learned), hands the operations to
//! the pipeline, and writes its answer as HTTP: the status (429 with `Retry-After` when every
//! operation was refused by the rate limit), `Cache-Control: private, no-store`, and the SQL
//! counter header when `debug_headers` is on. GraphiQL is served on a GET without a query.

use async_graphql::http::GraphiQLSource;
use async_graphql::BatchRequest;
use async_graphql_axum::{GraphQLBatchRequest, GraphQLRequest, GraphQLResponse};
use axum::{
    extract::{FromRequest, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};

use super::{ClientIp, Edge, RequestId};
use crate::{
    pipeline::{self, Answer, Tally},
    state::AppState,
};

/// Header carrying the number of SQL statements a request ran (when `debug_headers` is on).
pub const SQL_STATEMENTS_HEADER: &str = "x-sql-statements";

/// POST /graphql: one operation, or a JSON array of them (`limits.batch_enabled`).
pub(crate) async fn post_graphql(
    State(state): State<AppState>,
    edge: Edge,
    headers: HeaderMap,
    request: GraphQLBatchRequest,
) -> Response {
    let caller = edge.caller(&state, &headers);
    // Boxed once here: axum boxes this handler's future and its layers move it, a memcpy of
    // its whole size each time; the request's own future (cache reads, SQL, the engine) is large.
    Box::pin(async {
        match request.into_inner() {
            BatchRequest::Single(one) if super::multipart::accepted(&headers) => {
                super::multipart::answer(&state, &caller.await, one.into()).await
            }
            BatchRequest::Single(one) => {
                let (answer, tally) = pipeline::run(&state, &caller.await, one.into()).await;
                respond(&state, answer, &tally)
            }
            BatchRequest::Batch(many) => {
                let operations = many.into_iter().map(Into::into).collect();
                let (batch, tally) = pipeline::run_batch(&state, caller, operations).await;
                finish(&state, batch, &tally)
            }
        }
    })
    .await
}

/// GET /graphql: a query (or a persisted-query hash) in the URL runs; otherwise GraphiQL.
pub(crate) async fn get_graphql(State(state): State<AppState>, request: Request) -> Response {
    let has_operation = request
        .uri()
        .query()
        .is_some_and(|q| q.contains("query=") || q.contains("extensions="));
    if !has_operation {
        return graphiql(&state, &request);
    }
    let headers = request.headers().clone();
    let edge = Edge::of(request.extensions());
    let graphql =
        match <GraphQLRequest as FromRequest<AppState>>::from_request(request, &state).await {
            Ok(graphql) => graphql.into_inner(),
            Err(rejection) => return rejection.into_response(),
        };
    let caller = edge.caller(&state, &headers).await;
    let (answer, tally) = pipeline::run(&state, &caller, graphql.into()).await;
    respond(&state, answer, &tally)
}

/// The GraphiQL IDE, with the demo owner's token only for a client on this machine: anyone who
/// can reach a development gateway over the network would otherwise be handed an owner's token.
fn graphiql(state: &AppState, request: &Request) -> Response {
    if !state.settings.server.graphiql {
        return StatusCode::NOT_FOUND.into_response();
    }
    let loopback = request
        .extensions()
        .get::<ClientIp>()
        .is_some_and(|ip| ip.0.is_loopback());
    let token = state
        .demo_owner_id
        .filter(|_| loopback)
        .and_then(|id| state.tokens.sign(id, state.settings.auth.demo_token_ttl))
        .map(|token| format!("Bearer {token}"));
    let mut page = GraphiQLSource::build()
        .endpoint("/graphql")
        .title("padel-bff");
    if let Some(token) = &token {
        page = page.header("Authorization", token);
    }
    Html(page.finish()).into_response()
}

/// Edge middleware of `/graphql` and the BFF URLs: the pipeline's client-address charge, before
/// the body is read. Refused: HTTP 429 with `Retry-After` and one `RATE_LIMITED` error (in the
/// BFF URLs' envelope on those).
pub(crate) async fn charge_client(
    State(state): State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let bff = crate::rest::is_route(path);
    if path != "/graphql" && !bff {
        return next.run(request).await;
    }
    let ip = request.extensions().get::<ClientIp>().map(|c| c.0);
    match pipeline::admit(&state, request.headers(), ip).await {
        Ok(edge) => {
            let mut request = request;
            request.extensions_mut().insert(edge);
            next.run(request).await
        }
        Err((_, tally)) if bff => {
            let request_id = request
                .extensions()
                .get::<RequestId>()
                .map(|r| r.0.as_str());
            super::rest::limited(&state, request_id.unwrap_or_default(), &tally)
        }
        Err((response, tally)) => finish(&state, response, &tally),
    }
}

/// The HTTP answer of one operation.
pub(super) fn respond(state: &AppState, answer: Answer, tally: &Tally) -> Response {
    match answer {
        Answer::Executed(response) => finish(state, response, tally),
        Answer::Cached(body) => {
            let mut http = (
                [(
                    header::CONTENT_TYPE,
                    // What executed answers carry (async-graphql-axum), hits included.
                    HeaderValue::from_static("application/graphql-response+json"),
                )],
                body,
            )
                .into_response();
            common_headers(state, &mut http, tally);
            http
        }
    }
}

/// The HTTP answer of executed operations.
fn finish(
    state: &AppState,
    response: impl Into<async_graphql::BatchResponse>,
    tally: &Tally,
) -> Response {
    let mut http = GraphQLResponse::from(response.into()).into_response();
    common_headers(state, &mut http, tally);
    http
}

/// 429 with Retry-After when rate-limited, private caching, debug headers.
fn common_headers(state: &AppState, http: &mut Response, tally: &Tally) {
    if let Some(wait) = tally.rate_limited() {
        *http.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        let seconds = crate::ratelimit::retry_after_seconds(wait);
        http.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    let headers = http.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    debug_headers(state, http, tally);
}

/// The SQL counter header, when `server.debug_headers` is on (every HTTP answer of an operation).
pub(super) fn debug_headers(state: &AppState, http: &mut Response, tally: &Tally) {
    if state.settings.server.debug_headers {
        http.headers_mut().insert(
            SQL_STATEMENTS_HEADER,
            HeaderValue::from(tally.sql_statements),
        );
    }
}
