//! Subscriptions over `POST /graphql` as Apollo's multipart protocol
//! (`Accept: multipart/mixed;subscriptionSpec=1.0`), beside the websocket (`http::live`), over
//! the same `pipeline::subscribe`.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::{
    pipeline::{self, Caller, Operation},
    state::AppState,
};

/// How often a multipart subscription sends an empty part, so proxies keep the response open
/// (the interval of Apollo's router).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Whether a `POST /graphql` asks for multipart subscriptions: `Accept` names `multipart/mixed`
/// with `subscriptionSpec=1.0` (quoted or not, any boundary: the server picks `graphql`).
pub(crate) fn accepted(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            parts
                .next()
                .is_some_and(|m| m.eq_ignore_ascii_case("multipart/mixed"))
                && parts.any(|p| {
                    let p = p.replace('"', "");
                    p.eq_ignore_ascii_case("subscriptionSpec=1.0")
                })
        })
}

/// A subscription over `POST /graphql` as Apollo's multipart protocol: each event one part
/// `{"payload": …}`, an empty part every [`HEARTBEAT`], the closing boundary when it ends. A
/// refused subscription is one part `{"payload": null, "errors": […]}` and the end; a query or
/// mutation is answered as usual (JSON).
pub(crate) async fn answer(state: &AppState, caller: &Caller, operation: Operation) -> Response {
    let parts = match pipeline::subscribe(state, caller, operation).await {
        Ok(pipeline::Live::Events(events)) => parts(events, state.shutdown.subscribe()),
        Ok(pipeline::Live::Answered(answer, tally)) => {
            return super::graphql::respond(state, *answer, &tally)
        }
        Err(refused) => {
            let errors = serde_json::to_value(&refused.errors).unwrap_or_default();
            let refusal = part(&json!({"payload": null, "errors": errors}));
            futures_util::stream::iter([refusal, bytes::Bytes::from_static(END)]).boxed()
        }
    };
    let body = axum::body::Body::from_stream(parts.map(Ok::<_, std::convert::Infallible>));
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"",
            ),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The closing delimiter.
const END: &[u8] = b"\r\n--graphql--\r\n";

/// The parts of a subscription's events, with heartbeats between them.
fn parts(
    events: futures_util::stream::BoxStream<'static, pipeline::LiveEvent>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> futures_util::stream::BoxStream<'static, bytes::Bytes> {
    let heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    let start = Some((events, heartbeat, shutdown));
    futures_util::stream::unfold(start, |state| async move {
        let (mut events, mut heartbeat, mut shutdown) = state?;
        enum Next {
            Event(Option<pipeline::LiveEvent>),
            Beat,
            Closing,
        }
        let next = tokio::select! {
            () = closing(&mut shutdown) => Next::Closing,
            event = events.next() => Next::Event(event),
            _ = heartbeat.tick() => Next::Beat,
        };
        match next {
            // Shutting down, or the end: the subscription completes (the closing boundary).
            Next::Closing | Next::Event(None) => Some((bytes::Bytes::from_static(END), None)),
            Next::Event(Some(event)) => {
                let text = format!(r#"{{"payload":{}}}"#, event.payload());
                Some((part_text(&text), Some((events, heartbeat, shutdown))))
            }
            Next::Beat => Some((part(&json!({})), Some((events, heartbeat, shutdown)))),
        }
    })
    .boxed()
}

/// Resolves once the gateway shuts down.
pub(super) async fn closing(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closing| *closing).await;
}

/// One JSON part.
fn part(value: &Value) -> bytes::Bytes {
    part_text(&value.to_string())
}

fn part_text(json: &str) -> bytes::Bytes {
    format!("\r\n--graphql\r\nContent-Type: application/json\r\n\r\n{json}").into()
}
