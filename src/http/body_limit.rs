//! The request-body limit, answered so that a plain client reads the 413. Refusing a large body
//! without reading it and then closing the connection makes the kernel reset it while the client
//! still sends, and the client sees "connection reset" instead of the answer. So the refused
//! body is drained, a bounded amount and for a bounded time (a lingering close, as nginx does),
//! before the 413 goes out with `Connection: close`.

use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body_util::BodyExt;

use crate::{error::ErrorCode, state::AppState};

/// A refused body is read (and discarded) up to this many bytes...
const DRAIN_BYTES: usize = 8 * 1024 * 1024;
/// ...and for at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Buffers the body up to `server.body_limit_bytes`; over it, drains and answers 413.
pub(crate) async fn limit_body(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.settings.server.body_limit_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    if declared == Some(0) || (declared.is_none() && !chunked) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    if declared.is_some_and(|n| n > limit as u64) {
        drain(body, 0).await;
        return too_large(limit);
    }
    let mut body = body;
    let mut buffered = Vec::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        if let Ok(data) = frame.into_data() {
            if buffered.len() + data.len() > limit {
                drain(body, buffered.len() + data.len()).await;
                return too_large(limit);
            }
            buffered.extend_from_slice(&data);
        }
    }
    next.run(Request::from_parts(
        parts,
        Body::from(Bytes::from(buffered)),
    ))
    .await
}

/// Reads and drops what is left of a refused body, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
async fn drain(mut body: Body, already: usize) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = already;
        while read < DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    })
    .await;
}

/// HTTP 413 with a GraphQL-shaped error, closing the connection (the rest of the body, if any,
/// is not read).
fn too_large(limit: usize) -> Response {
    let body = serde_json::json!({
        "errors": [{
            "message": format!("the request body is larger than {limit} bytes"),
            "extensions": {"code": ErrorCode::BadUserInput.as_str()},
        }]
    });
    let mut response = (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
