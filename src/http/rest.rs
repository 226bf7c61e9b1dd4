//! The platform's BFF URLs (`rest`), a thin adapter over the request pipeline like `/graphql`:
//! a GET's query string becomes the persisted operation's variables, `pipeline::run` answers it
//! (token, rate limit, limits, both caches, telemetry), and the answer is written as the
//! platform's envelope: `{"success": true, "data": …}` with an `ETag` of the data (304 for a
//! matching `If-None-Match`), or `{"success": false, "error": {"code", "message", "requestId"}}`
//! with the status of the first error's code. Also `GET /api/openapi.json`.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

use super::Edge;
use crate::{
    error::ErrorCode,
    pipeline::{self, Answer, Operation, Tally},
    state::AppState,
};

/// GET on one of the BFF URLs.
pub(crate) async fn get_bff(
    State(state): State<AppState>,
    edge: Edge,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let Some(endpoint) = crate::rest::endpoint(uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let caller = edge.caller(&state, &headers).await;
    let operation = |variables| Operation {
        query: endpoint.route.document.to_string(),
        persisted: None,
        operation_name: Some(endpoint.operation_name.clone()),
        variables,
        trusted: true,
    };
    // Boxed for the reason `http::graphql` boxes: the pipeline's future is large. A malformed
    // parameter is refused by the pipeline too: charged and observed like any answer.
    let (answer, tally) = match crate::rest::coerce(endpoint, uri.query()) {
        Ok(variables) => Box::pin(pipeline::run(&state, &caller, operation(variables))).await,
        Err(message) => {
            let error = ErrorCode::BadUserInput.server_error(message);
            let refused = operation(Default::default());
            Box::pin(pipeline::refuse(&state, &caller, refused, error)).await
        }
    };
    let data = match answer {
        Answer::Cached(body) => match pipeline::stored_data(&body) {
            // The stored entry's own bytes: the hit's ETag is the one the miss had.
            Some(data) => data.get().as_bytes().to_vec(),
            None => return internal(&state, &caller.request_id, &tally),
        },
        Answer::Executed(response) => {
            if let Some(error) = response.errors.first() {
                let code = code_of(error);
                return failure(&state, code, &error.message, &caller.request_id, &tally);
            }
            match serde_json::to_vec(&response.data) {
                Ok(data) => data,
                Err(_) => return internal(&state, &caller.request_id, &tally),
            }
        }
    };
    let etag = etag(&data);
    if none_match(&headers, &etag) {
        let mut http = StatusCode::NOT_MODIFIED.into_response();
        common_headers(&state, &mut http, &etag, &tally);
        return http;
    }
    let mut body = Vec::with_capacity(data.len() + 27);
    body.extend_from_slice(br#"{"success":true,"data":"#);
    body.extend_from_slice(&data);
    body.push(b'}');
    let mut http = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    common_headers(&state, &mut http, &etag, &tally);
    http
}

/// GET /api/openapi.json: the generated document (`openapi.json` in the repository).
pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::rest::openapi::json(),
    )
        .into_response()
}

/// The answer to a BFF URL refused at the edge by the client address's rate limit.
pub(crate) fn limited(state: &AppState, request_id: &str, tally: &Tally) -> Response {
    failure(
        state,
        ErrorCode::RateLimited,
        "too many requests from this address",
        request_id,
        tally,
    )
}

/// The code of a GraphQL error (every error has one once the pipeline finished it).
fn code_of(error: &async_graphql::ServerError) -> ErrorCode {
    let code = error
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .and_then(|value| match value {
            async_graphql::Value::String(s) => Some(s.as_str()),
            async_graphql::Value::Enum(name) => Some(name.as_str()),
            _ => None,
        });
    ErrorCode::ALL
        .into_iter()
        .find(|c| Some(c.as_str()) == code)
        .unwrap_or(ErrorCode::InternalServerError)
}

/// The status of an error code on the BFF URLs: the platform's mapping, 500 for anything else.
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::BadUserInput => StatusCode::BAD_REQUEST,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answer in the platform's envelope.
fn failure(
    state: &AppState,
    code: ErrorCode,
    message: &str,
    request_id: &str,
    tally: &Tally,
) -> Response {
    let body = serde_json::json!({
        "success": false,
        "error": { "code": code.as_str(), "message": message, "requestId": request_id },
    });
    let mut http = (
        status_of(code),
        [(header::CACHE_CONTROL, "private, no-store")],
        axum::Json(body),
    )
        .into_response();
    if code == ErrorCode::RateLimited {
        let wait = tally
            .rate_limited()
            .map_or(1, crate::ratelimit::retry_after_seconds);
        http.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
    }
    super::graphql::debug_headers(state, &mut http, tally);
    http
}

fn internal(state: &AppState, request_id: &str, tally: &Tally) -> Response {
    failure(
        state,
        ErrorCode::InternalServerError,
        "internal error",
        request_id,
        tally,
    )
}

/// `"<32 hex>"`: the first 128 bits of the data's SHA-256, strong (the bytes are the answer).
fn etag(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in &digest[..16] {
        tag.push_str(&format!("{byte:02x}"));
    }
    tag.push('"');
    tag
}

/// Whether `If-None-Match` names this tag (weak comparison, as RFC 9110 asks for it), or is `*`.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// `ETag`, revalidation on every use (`no-cache`: browsers keep the answer and ask with its tag),
/// and the debug headers.
fn common_headers(state: &AppState, http: &mut Response, etag: &str, tally: &Tally) {
    let headers = http.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    super::graphql::debug_headers(state, http, tally);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists() {
        let tag = etag(b"{}");
        let mut headers = HeaderMap::new();
        assert!(!none_match(&headers, &tag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        assert!(!none_match(&headers, &tag));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{tag}")).unwrap(),
        );
        assert!(none_match(&headers, &tag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&headers, &tag));
        assert_eq!(tag.len(), 34);
    }

    #[test]
    fn a_stored_body_yields_its_data_bytes() {
        let body = br#"{"data":{"a":[1,{"b":null}]},"extensions":{"cache":[]}}"#;
        assert_eq!(
            pipeline::stored_data(body).unwrap().get(),
            r#"{"a":[1,{"b":null}]}"#
        );
    }
}
