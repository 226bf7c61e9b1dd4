//! What a socket's subscriptions hand to its writer: each subscription one event at a time, the
//! newest once the last one is written, so a slow reader holds one event per subscription and
//! the writer sends whatever is ready with one flush.

use futures_util::{FutureExt, StreamExt};
use opentelemetry::KeyValue;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::Protocol;
use crate::pipeline;

/// A message for the socket's writer.
pub(super) struct Outgoing {
    pub(super) text: String,
    /// Held until the event is written: its subscription sends nothing more meanwhile (and
    /// then sends the newest value), so a slow reader queues one event per subscription.
    pub(super) written: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The subscription this completes.
    pub(super) completes: Option<String>,
    /// When the change this event answers was heard.
    pub(super) woke: Option<std::time::Instant>,
}

/// A subscription's events to the socket's writer, then its completion. A topic's event is
/// spliced in as rendered (one rendering for every subscriber). One event at a time is queued:
/// the next waits until the last is written, and is then the newest one ready.
pub(super) async fn forward(
    mut stream: futures_util::stream::BoxStream<'static, pipeline::LiveEvent>,
    id: String,
    protocol: Protocol,
    events: mpsc::UnboundedSender<Outgoing>,
    counter: opentelemetry::metrics::Counter<u64>,
) {
    let id_json = Value::String(id.clone()).to_string();
    let written = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let mut pending = stream.next().await;
    while let Some(mut event) = pending.take() {
        let Ok(permit) = written.clone().acquire_owned().await else {
            return;
        };
        // While the last one was being written, newer values may have come: only the newest
        // goes (a topic's event is the whole value; anything else goes as it is).
        let mut ended = false;
        while matches!(event, pipeline::LiveEvent::Rendered { .. }) {
            match stream.next().now_or_never() {
                Some(Some(newer)) => {
                    counter.add(1, &[KeyValue::new("outcome", "coalesced")]);
                    event = newer;
                }
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        let woke = match &event {
            pipeline::LiveEvent::Rendered { woke, .. } => *woke,
            pipeline::LiveEvent::Response(_) => None,
        };
        let text = format!(
            r#"{{"type":"{}","id":{id_json},"payload":{}}}"#,
            protocol.next(),
            event.payload()
        );
        let outgoing = Outgoing {
            text,
            written: Some(permit),
            completes: None,
            woke,
        };
        if events.send(outgoing).is_err() {
            return;
        }
        if !ended {
            pending = stream.next().await;
        }
    }
    let text = json!({"type": "complete", "id": id}).to_string();
    let _ = events.send(Outgoing {
        text,
        written: None,
        completes: Some(id),
        woke: None,
    });
}
