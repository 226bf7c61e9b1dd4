//! The GraphQL endpoint: builds the request context, executes, assigns error codes, records the
//! request (summary log line, slow-request warning, metrics, monitoring) and marks responses
//! private.

use std::time::Instant;

use async_graphql::http::GraphiQLSource;
use async_graphql::BatchRequest;
use async_graphql_axum::{GraphQLBatchRequest, GraphQLRequest, GraphQLResponse};
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};
use opentelemetry::KeyValue;
use tracing::Instrument;

use crate::{
    config::Profile,
    error::ErrorCode,
    graphql::{assign_error_codes, context::RequestContext},
    state::AppState,
    telemetry::{monitoring::RequestRecord, RequestStats},
};

/// Header carrying the number of SQL statements a request ran (when `debug_headers` is on).
pub const SQL_STATEMENTS_HEADER: &str = "x-sql-statements";

/// POST /graphql: one operation, or a JSON array of them when `limits.batch_enabled` is on.
pub(crate) async fn post_graphql(
    State(state): State<AppState>,
    request_id: Option<axum::Extension<super::RequestId>>,
    client_ip: Option<axum::Extension<super::ClientIp>>,
    headers: HeaderMap,
    request: GraphQLBatchRequest,
) -> Response {
    let edge = Edge {
        request_id: request_id.map(|r| r.0 .0).unwrap_or_default(),
        client_ip: client_ip.map(|c| c.0 .0),
    };
    // Boxed once here: axum boxes this handler's future and its layers move it, a memcpy of
    // its whole size each time; the request's own future (cache reads, SQL, the engine) is large.
    match request.into_inner() {
        BatchRequest::Single(request) => Box::pin(execute(&state, &headers, &edge, request)).await,
        BatchRequest::Batch(requests) => {
            Box::pin(execute_batch(&state, &headers, &edge, requests)).await
        }
    }
}

/// A JSON array of operations: refused as a whole (one error coded QUERY_TOO_COMPLEX, nothing
/// runs) when batches are off or the array is longer than `limits.max_batch_size`; otherwise each
/// runs as its own request (own limits, rate-limit token, persisted-query lookup) and the answers
/// come back in order.
async fn execute_batch(
    state: &AppState,
    headers: &HeaderMap,
    edge: &Edge,
    requests: Vec<async_graphql::Request>,
) -> Response {
    let limits = &state.settings.limits;
    let refusal = if !limits.batch_enabled {
        Some("batched requests (a JSON array of operations) are not enabled".to_string())
    } else if requests.len() > limits.max_batch_size {
        Some(format!(
            "a batch may hold at most {} operations, this one holds {}",
            limits.max_batch_size,
            requests.len()
        ))
    } else if requests.is_empty() {
        Some("the batch is empty".to_string())
    } else {
        None
    };
    if let Some(message) = refusal {
        let response = async_graphql::Response::from_errors(vec![
            ErrorCode::QueryTooComplex.server_error(message)
        ]);
        return finish(state, response, &Outcome::default());
    }
    let credentials = state.tokens.credentials(headers).await;
    let runs = requests.into_iter().map(|mut request| {
        let credentials = credentials.clone();
        async move {
            let resolution = match charge_user(state, &credentials).await {
                Err(limited) => Err(Refusal::Limited(limited)),
                Ok(()) => resolve_persisted_query(state, &mut request)
                    .await
                    .map_err(Refusal::Error),
            };
            run(state, credentials, edge, request, resolution).await
        }
    });
    let results = futures_util::future::join_all(runs).await;
    let mut outcome = Outcome::default();
    let mut responses = Vec::with_capacity(results.len());
    for (response, stats) in results {
        outcome.add(&stats);
        responses.push(response);
    }
    finish(
        state,
        async_graphql::BatchResponse::Batch(responses),
        &outcome,
    )
}

/// What the HTTP answer needs from the operations of a request.
#[derive(Default)]
struct Outcome {
    operations: u32,
    limited: u32,
    retry_after: Option<std::time::Duration>,
    sql_statements: u32,
}

impl Outcome {
    fn add(&mut self, stats: &RequestStats) {
        self.operations += 1;
        self.sql_statements += stats.sql_statements();
        if let Some(wait) = stats.retry_after() {
            self.limited += 1;
            self.retry_after = Some(self.retry_after.map_or(wait, |w| w.max(wait)));
        }
    }

    /// HTTP 429 only when nothing ran: a batch whose other operations ran (a booking among
    /// them) must not look failed, or clients would resend all of it.
    fn rate_limited(&self) -> Option<std::time::Duration> {
        self.retry_after
            .filter(|_| self.limited > 0 && self.limited == self.operations)
    }
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
    // The demo owner's token only for a client on this machine: anyone who can reach a
    // development gateway over the network would otherwise be handed an owner's token.
    let loopback = request
        .extensions()
        .get::<super::ClientIp>()
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

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    edge: &Edge,
    request: async_graphql::Request,
) -> Response {
    let credentials = state.tokens.credentials(headers).await;
    let mut outcome = Outcome::default();
    match run_cached(state, credentials, edge, request).await {
        (Answer::Executed(response), stats) => {
            outcome.add(&stats);
            finish(state, response, &outcome)
        }
        (Answer::Cached(body), stats) => {
            outcome.add(&stats);
            let mut http = (
                [(
                    header::CONTENT_TYPE,
                    // What executed answers carry (async-graphql-axum), hits included.
                    HeaderValue::from_static("application/graphql-response+json"),
                )],
                body,
            )
                .into_response();
            common_headers(state, &mut http, &outcome);
            http
        }
    }
}

/// An operation's answer: executed, or the bytes of a whole-response cache hit.
enum Answer {
    Executed(async_graphql::Response),
    Cached(bytes::Bytes),
}

/// One operation through the whole-response cache: a repeated identical query of the same user
/// whose stored access decisions still hold is answered with the stored bytes; otherwise it runs
/// (recording what it reads) and its answer is stored when every part of it came from the cache.
async fn run_cached(
    state: &AppState,
    credentials: crate::auth::Credentials,
    edge: &Edge,
    request: async_graphql::Request,
) -> (Answer, std::sync::Arc<RequestStats>) {
    use crate::cache::response::{self as whole, Recording, Requirement, StoredResponse};
    let started = Instant::now();
    let user_id = match credentials {
        crate::auth::Credentials::User(id) if state.cache.response_cache_on() => Some(id),
        _ => None,
    };
    let mut request = request;
    if let Err(limited) = charge_user(state, &credentials).await {
        let refusal = Err(Refusal::Limited(limited));
        let (response, stats) = run(state, credentials, edge, request, refusal).await;
        return (Answer::Executed(response), stats);
    }
    let resolution = resolve_persisted_query(state, &mut request)
        .await
        .map_err(Refusal::Error);
    let Some(user_id) = user_id.filter(|_| resolution.is_ok()) else {
        let (response, stats) = run(state, credentials, edge, request, resolution).await;
        return (Answer::Executed(response), stats);
    };
    let key = response_key(user_id, &request);
    if let Some(stored) = state.cache.response_get(&key) {
        let stats = std::sync::Arc::new(RequestStats::new(
            state.settings.telemetry.n_plus_one_threshold,
        ));
        let span = tracing::info_span!(
            "graphql.operation",
            otel.name = %if stored.name.is_empty() { "query".to_string() } else { format!("query {}", stored.name) },
            graphql.operation.type = "query",
            graphql.operation.name = %stored.name,
            cache.kind = "response",
            cache.outcome = tracing::field::Empty,
        );
        let allowed = hit_allowed(state, user_id, &stored, &stats)
            .instrument(span.clone())
            .await;
        if allowed {
            span.record("cache.outcome", "l1Hit");
            state.cache.record_response(crate::cache::Outcome::L1Hit);
            stats.set_operation("query", &stored.operation);
            stats.record_cache("response", crate::cache::Outcome::L1Hit);
            state.instruments.operation_duration.record(
                started.elapsed().as_secs_f64(),
                &[
                    KeyValue::new("graphql.operation.type", "query"),
                    KeyValue::new(
                        "graphql.operation.name",
                        state.instruments.operation_names.label(&stored.name),
                    ),
                ],
            );
            record(state, &stats, started, &[]);
            return (Answer::Cached(stored.body.clone()), stats);
        }
        span.record("cache.outcome", "rejected");
    }
    let epoch = state.cache.epoch();
    let recording = std::sync::Arc::new(Recording::default());
    let (response, stats) = whole::record(
        recording.clone(),
        run(state, credentials, edge, request, resolution),
    )
    .await;
    let operation = stats.operation();
    let is_query = operation.as_ref().is_some_and(|(kind, _)| kind == "query");
    if is_query {
        // Only queries can be answered from a stored response: a mutation is no miss.
        state.cache.record_response(crate::cache::Outcome::Miss);
    }
    if is_query && response.errors.is_empty() && !stats.ran_untracked_sql() {
        if let Ok(data) = serde_json::to_vec(&response.data) {
            let mut requirements = stats.requirements();
            requirements.push(Requirement::User(user_id));
            let mut kinds: Vec<String> = stats
                .cache_outcomes()
                .into_iter()
                .map(|(kind, _)| kind.to_string())
                .collect();
            kinds.sort_unstable();
            kinds.dedup();
            let show_cache = state.settings.profile == Profile::Development || stats.is_superuser();
            let stored = StoredResponse {
                body: cached_body(&data, &kinds, show_cache),
                requirements,
                operation: operation_key(state, &stats),
                name: operation.map(|(_, name)| name).unwrap_or_default(),
                kinds,
            };
            state.cache.response_put(&key, &recording, stored, epoch);
        }
    }
    (Answer::Executed(response), stats)
}

/// The whole-response key: the user, and a hash of document, operation name and variables.
fn response_key(user_id: i64, request: &async_graphql::Request) -> crate::cache::CacheKey {
    let variables = serde_json::to_string(&request.variables).unwrap_or_default();
    // `{:?}` keeps "no operation name" and an empty one apart.
    crate::cache::CacheKey::new(
        crate::cache::Kind::Response,
        &[("user", &user_id)],
        &format!(
            "{}\u{0}{:?}\u{0}{variables}",
            request.query, request.operation_name
        ),
    )
}

/// A stored response may be served to this caller: the user is still active (exact, from the
/// cache) and every access decision stored with it still holds. (The request paid its
/// rate-limit tokens before the lookup.)
async fn hit_allowed(
    state: &AppState,
    user_id: i64,
    stored: &crate::cache::response::StoredResponse,
    stats: &RequestStats,
) -> bool {
    let Ok((record, _)) = crate::reads::principal(&state.cache, &state.store, user_id).await else {
        return false;
    };
    if !record.user.is_active {
        return false;
    }
    let principal = crate::auth::Principal::from(record);
    if !crate::cache::response::requirements_hold(
        &stored.requirements,
        &principal.viewer,
        crate::reads::today_at,
    ) {
        return false;
    }
    stats.set_user(principal.user.id, principal.user.is_superuser);
    true
}

/// Charges a signed-in caller's query bucket, once per operation, before any work on it (its
/// client address paid at the edge, before the body was read). Anonymous callers have no bucket
/// of their own; a bad token is refused later, as UNAUTHENTICATED.
async fn charge_user(
    state: &AppState,
    credentials: &crate::auth::Credentials,
) -> Result<(), crate::ratelimit::Limited> {
    let crate::auth::Credentials::User(user_id) = credentials else {
        return Ok(());
    };
    state
        .rate_limiter
        .check(Some(*user_id), None, crate::ratelimit::OperationKind::Query)
        .await
}

/// Edge middleware of `/graphql`: one token from the client address's bucket per request, taken
/// before the body is read or parsed, so that refused, unparsable and anonymous requests pay
/// like any other. Over the limit: HTTP 429 with `Retry-After` and one `RATE_LIMITED` error.
pub(crate) async fn charge_client(
    State(state): State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path() != "/graphql" {
        return next.run(request).await;
    }
    let ip = request.extensions().get::<super::ClientIp>().map(|c| c.0);
    let charged = state
        .rate_limiter
        .check(None, ip, crate::ratelimit::OperationKind::Query)
        .await;
    match charged {
        Ok(()) => next.run(request).await,
        Err(limited) => {
            let response = async_graphql::Response::from_errors(vec![limited.error()]);
            let outcome = Outcome {
                operations: 1,
                limited: 1,
                retry_after: Some(limited.retry_after),
                sql_statements: 0,
            };
            finish(&state, response, &outcome)
        }
    }
}

/// `{"data": …}` around the stored bytes, with `extensions.cache` where responses show it.
fn cached_body(data: &[u8], kinds: &[String], show_cache: bool) -> bytes::Bytes {
    let mut body = Vec::with_capacity(data.len() + 64 + 40 * kinds.len());
    body.extend_from_slice(b"{\"data\":");
    body.extend_from_slice(data);
    if show_cache {
        body.extend_from_slice(br#","extensions":{"cache":[{"kind":"response","outcome":"l1Hit"}"#);
        for kind in kinds {
            body.extend_from_slice(br#",{"kind":""#);
            body.extend_from_slice(kind.as_bytes());
            body.extend_from_slice(br#"","outcome":"l1Hit"}"#);
        }
        body.extend_from_slice(b"]}");
    }
    body.push(b'}');
    body.into()
}

/// Why an operation is answered without running.
enum Refusal {
    /// The caller's rate-limit token was refused.
    Limited(crate::ratelimit::Limited),
    /// The persisted query could not be resolved, or the variables were refused.
    Error(async_graphql::ServerError),
}

/// One operation: context, execution of the resolved document (or the answer of a refusal made
/// before it: rate limit, persisted query), error codes, recording, and the registration of a
/// persisted query whose document proved valid.
async fn run(
    state: &AppState,
    credentials: crate::auth::Credentials,
    edge: &Edge,
    request: async_graphql::Request,
    resolution: Result<Option<String>, Refusal>,
) -> (async_graphql::Response, std::sync::Arc<RequestStats>) {
    let signed_in = matches!(credentials, crate::auth::Credentials::User(_));
    let started = Instant::now();
    let context = RequestContext::new(
        &state.store,
        &state.cache,
        credentials,
        Some(state.instruments.clone()),
        state.settings.telemetry.n_plus_one_threshold,
    )
    .with_rate_limit(state.rate_limiter.clone(), edge.client_ip)
    .with_operation_name(request.operation_name.clone())
    .with_date_window(crate::domain::period::DateWindow {
        days_back: state.settings.limits.date_days_back,
        days_ahead: state.settings.limits.date_days_ahead,
    });
    let stats = context.stats.clone();
    let mut registration = None;
    let resolution = resolution.and_then(|register| {
        crate::graphql::limits::check_variables(&request.variables)
            .map(|()| register)
            .map_err(Refusal::Error)
    });
    let mut response = match resolution {
        Ok(register) => {
            let (query, operation) = (request.query.clone(), request.operation_name.clone());
            registration = register.map(|hash| (hash, query.clone()));
            let mut response = match &state.documents {
                // No extension on the schema (`telemetry.field_timing = "root"`): prepare the
                // document and observe the operation here.
                // Boxed: the engine's future is large, and unboxed it is part of the handler's
                // future, which axum boxes and every layer moves (a memcpy of its whole size each).
                Some(documents) => {
                    Box::pin(execute_prepared(state, documents, request, context)).await
                }
                None => Box::pin(state.schema.execute(request.data(context))).await,
            };
            complete_answer(state, &mut response, &query, operation.as_deref());
            response
        }
        Err(Refusal::Limited(limited)) => {
            stats.set_retry_after(limited.retry_after);
            async_graphql::Response::from_errors(vec![limited.error()])
        }
        Err(Refusal::Error(error)) => async_graphql::Response::from_errors(vec![error]),
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
    if let Some((hash, query)) = registration {
        // Only a signed-in caller's document that parsed, passed the limits and validated is
        // kept: an anonymous or invalid registration would be storage for free.
        let valid =
            stats.operation().is_some() && !codes.iter().any(|code| REFUSALS.contains(code));
        if signed_in && valid {
            state.cache.register_persisted_query(&hash, &query).await;
        }
    }
    record(state, &stats, started, &codes);
    (response, stats)
}

/// What the engine leaves to do on an answer: the nulls the spec requires for failed fields
/// (`graphql::nulls`) and selection order (`graphql::order`; the engine inserts fields as they
/// complete). Both read the executed document: the prepared one, parsed again only when it was
/// not kept. A refused document (no data, no field errors) is never parsed again.
fn complete_answer(
    state: &AppState,
    response: &mut async_graphql::Response,
    query: &str,
    operation: Option<&str>,
) {
    use crate::graphql::{nulls, order};
    if response.data == async_graphql::Value::Null && !nulls::needs_completion(response) {
        return;
    }
    let prepared = state.prepared.lookup(query).ok();
    let parsed = match prepared {
        Some(_) => None,
        None => async_graphql::parser::parse_query(query).ok(),
    };
    let Some(document) = prepared.as_ref().map(|p| &p.document).or(parsed.as_ref()) else {
        return;
    };
    nulls::complete_with(response, document, operation);
    order::restore_operation(&mut response.data, document, operation);
}

/// Codes of a document refused before execution: such a document is never registered.
const REFUSALS: [&str; 5] = [
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "QUERY_TOO_COMPLEX",
    "INTROSPECTION_DISABLED",
    "RATE_LIMITED",
];

/// Executes on a schema without the extension: the document is prepared (parsed or taken from
/// the prepared documents, limits applied, rate limit charged) before the engine sees it, and the
/// operation span and duration are recorded here; validation runs in the engine, unobserved.
async fn execute_prepared(
    state: &AppState,
    documents: &crate::graphql::documents::DocumentCache,
    mut request: async_graphql::Request,
    context: RequestContext,
) -> async_graphql::Response {
    use crate::telemetry::graphql::{finish_operation, operation_span, prepare_document};
    let prepared = prepare_document(
        documents,
        &state.settings.limits,
        state.settings.server.introspection,
        Some(&context),
        &request.query,
        async { async_graphql::parser::parse_query(&request.query).map_err(Into::into) },
    )
    .await;
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return async_graphql::Response::from_errors(vec![error]),
    };
    request.set_parsed_query(prepared.document.clone());
    let (span, kind, name) = operation_span(Some(&context), request.operation_name.as_deref());
    let started = Instant::now();
    let instruments = context.instruments.clone();
    let response = state
        .schema
        .execute(request.data(context))
        .instrument(span.clone())
        .await;
    finish_operation(
        &span,
        &response,
        instruments.as_deref(),
        kind,
        name,
        started,
    );
    response
}

/// The HTTP answer of executed operations.
fn finish(
    state: &AppState,
    response: impl Into<async_graphql::BatchResponse>,
    outcome: &Outcome,
) -> Response {
    let mut http = GraphQLResponse::from(response.into()).into_response();
    common_headers(state, &mut http, outcome);
    http
}

/// 429 with Retry-After when rate-limited, private caching, debug headers.
fn common_headers(state: &AppState, http: &mut Response, outcome: &Outcome) {
    if let Some(wait) = outcome.rate_limited() {
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
    if state.settings.server.debug_headers {
        headers.insert(
            SQL_STATEMENTS_HEADER,
            HeaderValue::from(outcome.sql_statements),
        );
    }
}

/// Automatic persisted queries (the Apollo protocol): a hash alone is replaced by the document
/// registered under it (any replica may have registered it: the documents live in Redis); a
/// document with its hash is checked against it and returned for registration once it has proved
/// valid (`run`). Execution then parses the text as usual, so every limit applies.
async fn resolve_persisted_query(
    state: &AppState,
    request: &mut async_graphql::Request,
) -> Result<Option<String>, async_graphql::ServerError> {
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
                Ok(None)
            }
            _ => Err(ErrorCode::OperationNotInSafelist
                .server_error("this operation is not in the safelist")),
        };
    }
    let Some(extension) = request.extensions.remove("persistedQuery") else {
        return Ok(None);
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
                Ok(None)
            }
            None => Err(ErrorCode::PersistedQueryNotFound.server_error("PersistedQueryNotFound")),
        };
    }
    if crate::safelist::sha256_hex(&request.query) != hash {
        return Err(ErrorCode::BadUserInput.server_error("provided sha does not match query"));
    }
    Ok(Some(hash))
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

/// The monitoring key of an operation: its name, or its root fields when anonymous; from the
/// bounded set of labels (`telemetry::labels`).
fn operation_key(state: &AppState, stats: &RequestStats) -> String {
    let key = match stats.operation() {
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
    };
    state.instruments.operation_names.label(&key)
}

/// Summary line, slow-request warning, metrics and monitoring for one GraphQL request.
fn record(state: &AppState, stats: &RequestStats, started: Instant, codes: &[&'static str]) {
    let duration = started.elapsed();
    let operation = operation_key(state, stats);
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
