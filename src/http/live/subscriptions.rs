//! A socket's running subscriptions, polled by the socket's own task. A change wakes the socket
//! once; its subscriptions' events are then taken in turn and written with one flush. There is
//! no task and no queue per subscription: while a slow reader's write waits, nothing is polled,
//! and each subscription then takes the newest value (the topic keeps only that).

use std::{collections::HashMap, sync::Arc, time::Instant};

use futures_util::{
    stream::{AbortHandle, Abortable, BoxStream, SelectAll},
    FutureExt, StreamExt,
};
use serde_json::Value;

use super::Protocol;
use crate::pipeline::LiveEvent;

/// A subscription's operation id, and the same as JSON (as every message carries it).
pub(super) struct Id {
    raw: String,
    json: String,
}

/// One subscription's next event, or its end.
pub(super) type Item = (Arc<Id>, Option<LiveEvent>);

#[derive(Default)]
pub(super) struct Subscriptions {
    streams: SelectAll<BoxStream<'static, Item>>,
    running: HashMap<String, AbortHandle>,
}

/// Messages to write with one flush.
#[derive(Default)]
pub(super) struct Batch {
    /// Each message, and when the change it answers was heard (for events of a topic).
    pub(super) messages: Vec<(String, Option<Instant>)>,
    /// Events among them (the rest complete subscriptions).
    pub(super) events: u64,
    pub(super) bytes: usize,
}

impl Subscriptions {
    pub(super) fn is_running(&self, id: &str) -> bool {
        self.running.contains_key(id)
    }

    pub(super) fn len(&self) -> usize {
        self.running.len()
    }

    /// Runs `events` as subscription `id`; its end completes it.
    pub(super) fn start(&mut self, id: String, events: BoxStream<'static, LiveEvent>) {
        let key = Arc::new(Id {
            json: Value::String(id.clone()).to_string(),
            raw: id.clone(),
        });
        let last = key.clone();
        let (handle, registration) = AbortHandle::new_pair();
        let items = events
            .map(move |event| (key.clone(), Some(event)))
            .chain(futures_util::stream::once(async move { (last, None) }));
        self.streams
            .push(Abortable::new(items, registration).boxed());
        self.running.insert(id, handle);
    }

    /// Ends subscription `id` without a word (the client completed it).
    pub(super) fn stop(&mut self, id: &str) {
        if let Some(handle) = self.running.remove(id) {
            handle.abort();
        }
    }

    /// Ends every subscription at once (their topics and gauges let go); their ids.
    pub(super) fn stop_all(&mut self) -> Vec<String> {
        self.streams = SelectAll::new();
        self.running
            .drain()
            .map(|(id, handle)| {
                handle.abort();
                id
            })
            .collect()
    }

    /// The next item of any subscription; pending while none runs.
    pub(super) async fn next(&mut self) -> Item {
        match self.streams.next().await {
            Some(item) => item,
            None => std::future::pending().await,
        }
    }

    /// An item that is ready now, if any.
    pub(super) fn ready(&mut self) -> Option<Item> {
        self.streams.next().now_or_never().flatten()
    }

    /// Adds `item` to `batch`: an event as the protocol's message, an end as `complete`.
    pub(super) fn add(&mut self, protocol: Protocol, item: Item, batch: &mut Batch) {
        let (id, event) = item;
        let message = match event {
            Some(event) => {
                let woke = match &event {
                    LiveEvent::Rendered { woke, .. } => *woke,
                    LiveEvent::Response(_) => None,
                };
                batch.events += 1;
                let text = format!(
                    r#"{{"type":"{}","id":{},"payload":{}}}"#,
                    protocol.next(),
                    id.json,
                    event.payload()
                );
                (text, woke)
            }
            None => {
                self.running.remove(&id.raw);
                (format!(r#"{{"type":"complete","id":{}}}"#, id.json), None)
            }
        };
        batch.bytes += message.0.len();
        batch.messages.push(message);
    }
}
