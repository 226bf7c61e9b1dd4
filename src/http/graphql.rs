//! The GraphQL endpoint: builds the request context, executes, assigns error codes, and marks
//! responses private.

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};

use crate::{
    config::Profile,
    graphql::{assign_error_codes, context::RequestContext},
    state::AppState,
};

/// Header carrying the number of SQL statements a request ran (when `debug_headers` is on).
pub const SQL_STATEMENTS_HEADER: &str = "x-sql-statements";

/// POST /graphql.
pub(crate) async fn post_graphql(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    execute(&state, &headers, request.into_inner()).await
}

/// GET /graphql: a query in the URL runs; otherwise the GraphiQL IDE.
pub(crate) async fn get_graphql(State(state): State<AppState>, request: Request) -> Response {
    if request.uri().query().is_some_and(|q| q.contains("query=")) {
        let headers = request.headers().clone();
        return match <GraphQLRequest as axum::extract::FromRequest<AppState>>::from_request(
            request, &state,
        )
        .await
        {
            Ok(graphql) => execute(&state, &headers, graphql.into_inner()).await,
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
    request: async_graphql::Request,
) -> Response {
    let context = RequestContext::new(
        &state.store,
        &state.cache,
        state.tokens.credentials(headers),
    );
    let stats = context.stats.clone();
    let mut response = state.schema.execute(request.data(context)).await;
    assign_error_codes(&mut response);
    if state.settings.profile == Profile::Development || stats.is_superuser() {
        let outcomes: Vec<async_graphql::Value> = stats
            .cache_outcomes()
            .into_iter()
            .map(|(kind, outcome)| {
                let outcome = async_graphql::to_value(outcome).unwrap_or(async_graphql::Value::Null);
                async_graphql::Value::from_json(serde_json::json!({ "kind": kind, "outcome": outcome.into_json().unwrap_or_default() }))
                    .unwrap_or(async_graphql::Value::Null)
            })
            .collect();
        response
            .extensions
            .insert("cache".to_string(), async_graphql::Value::List(outcomes));
    }
    let mut http = GraphQLResponse::from(response).into_response();
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
