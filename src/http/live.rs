//! `/graphql/ws`: live subscriptions over a websocket, a thin adapter over `pipeline::subscribe`.
//! It speaks `graphql-transport-ws` (the npm package `graphql-ws`) and the legacy `graphql-ws`
//! (subscriptions-transport-ws); the one chosen is the one the `Sec-WebSocket-Protocol` answer
//! names (the server's preference, the current protocol first), so header and wire agree.
//!
//! The socket is authenticated once, by `connection_init` (`{"Authorization": "Bearer …"}` or
//! `{"authorization": …}`). Close codes, as graphql-transport-ws defines them: 4400 a message
//! that is not the protocol's, 4401 a subscribe before the ack, 4403 no valid token at init (and
//! later, when the token expires: 4403 is one a client retries with a fresh token), 4408 no init
//! within `subscriptions.init_timeout`, 4409 an operation id already in use, 4429 a second
//! init, more sockets than `subscriptions.max_connections_per_user`, or more messages than
//! `subscriptions.max_messages_per_second`, 1009 a message over `server.body_limit_bytes`. A
//! subscription over `max_per_connection` is refused with an `error` coded RATE_LIMITED; the
//! socket stays. The socket's own task polls its subscriptions (`subscriptions`).

use std::time::Duration;

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        State,
    },
    http::StatusCode,
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::{ClientIp, RequestId};
use crate::{
    auth::Credentials,
    error::ErrorCode,
    pipeline::{self, Caller, Operation},
    ratelimit::Holder,
    state::AppState,
};
use bounds::{too_big, Window};
use subscriptions::{Batch, Subscriptions};

mod bounds;
mod subscriptions;

/// The protocols, in the server's order of preference.
const PROTOCOLS: [&str; 2] = ["graphql-transport-ws", "graphql-ws"];

/// The socket's read buffer. tungstenite zeroes the free part of it before every read attempt
/// (each turn of the socket's loop), so the default 128 KiB cost a 128 KiB memset per batch of
/// events written; clients send only small messages.
const READ_BUFFER: usize = 8 * 1024;

/// At most this many bytes of events are written with one flush.
const BATCH_BYTES: usize = 256 * 1024;

/// What a socket may hold unwritten (a client that reads nothing while its pings are answered,
/// or the largest answer) before it is closed; tungstenite's default is unbounded.
const MAX_WRITE_BUFFER: usize = 16 * 1024 * 1024;

/// Longest operation id (ids are echoed in every message of their subscription).
const MAX_ID_BYTES: usize = 128;

/// How long the last words to a closing socket may take (the `complete`s; the close frame and
/// the client's reply): a client that stopped reading does not hold up shutdown.
const LAST_WORDS: Duration = Duration::from_secs(2);

/// tungstenite hands its buffer to the kernel whenever it holds this much (default 128 KiB): the
/// buffer a socket keeps after its largest batch, so it is what 10 000 sockets cost.
const WRITE_BUFFER: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// graphql-transport-ws.
    Current,
    /// graphql-ws (subscriptions-transport-ws).
    Legacy,
}

impl Protocol {
    fn next(self) -> &'static str {
        match self {
            Protocol::Current => "next",
            Protocol::Legacy => "data",
        }
    }
}

/// GET /graphql/ws: the upgrade.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    request_id: Option<axum::Extension<RequestId>>,
    client_ip: Option<axum::Extension<ClientIp>>,
    ws: WebSocketUpgrade,
) -> Response {
    // A client message is held whole before it is read: at most an HTTP body's size (else
    // close 1009), not tungstenite's 64 MiB.
    let largest = state.settings.server.body_limit_bytes;
    let ws = ws
        .protocols(PROTOCOLS)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(largest)
        .max_frame_size(largest);
    let protocol = match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some("graphql-transport-ws") => Protocol::Current,
        Some("graphql-ws") => Protocol::Legacy,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "offer the graphql-transport-ws or graphql-ws subprotocol",
            )
                .into_response()
        }
    };
    let client_ip = client_ip.map(|c| c.0 .0);
    let limits = &state.settings.subscriptions;
    let address_slot = match client_ip {
        Some(ip) => match state
            .connections
            .take(Holder::Address(ip), limits.max_connections_per_ip)
        {
            Some(slot) => Some(slot),
            None => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many sockets from this address",
                )
                    .into_response()
            }
        },
        None => None,
    };
    let request_id = request_id.map(|r| r.0 .0).unwrap_or_default();
    ws.on_upgrade(move |socket| async move {
        let _address_slot = address_slot;
        Connection {
            state,
            socket,
            protocol,
            client_ip,
            request_id,
            subscriptions: Subscriptions::default(),
        }
        .serve()
        .await;
    })
}

/// Why a socket closes.
struct Close(u16, &'static str);

struct Connection {
    state: AppState,
    socket: WebSocket,
    protocol: Protocol,
    client_ip: Option<std::net::IpAddr>,
    request_id: String,
    /// Subscriptions running, polled by this socket's task.
    subscriptions: Subscriptions,
}

impl Connection {
    async fn serve(mut self) {
        self.state.live_sockets.send_modify(|open| *open += 1);
        let close = self.run().await.err();
        self.subscriptions.stop_all();
        if let Some(Close(code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let deadline = tokio::time::Instant::now() + LAST_WORDS;
            let sent =
                tokio::time::timeout_at(deadline, self.socket.send(Message::Close(Some(frame))))
                    .await;
            // The closing handshake: what the client still sends is read and dropped until its
            // close (or the deadline). Dropping the socket with unread bytes makes the kernel
            // answer with a reset, which can destroy the close frame before the client reads it.
            if matches!(sent, Ok(Ok(()))) {
                while let Ok(Some(Ok(message))) =
                    tokio::time::timeout_at(deadline, self.socket.recv()).await
                {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            }
        }
        self.state.live_sockets.send_modify(|open| *open -= 1);
    }

    /// The init, then messages and events until either side ends.
    async fn run(&mut self) -> Result<(), Close> {
        let limits = self.state.settings.subscriptions.clone();
        let init = tokio::time::timeout(limits.init_timeout, self.wait_for_init()).await;
        let payload = match init {
            Err(_) => return Err(Close(4408, "Connection initialisation timeout")),
            Ok(None) => return Ok(()),
            Ok(Some(payload)) => payload?,
        };
        let (user_id, expires_in) = self.authenticate(&payload).await?;
        let Some(_user_slot) = self
            .state
            .connections
            .take(Holder::User(user_id), limits.max_connections_per_user)
        else {
            return Err(Close(4429, "Too many connections for this user"));
        };
        self.send(json!({"type": "connection_ack"})).await?;
        let caller = Caller {
            credentials: Credentials::User(user_id),
            client_ip: self.client_ip,
            request_id: self.request_id.clone(),
            prepaid: None,
        };
        let expiry = tokio::time::sleep(expires_in);
        tokio::pin!(expiry);
        let mut shutdown = self.state.shutdown.subscribe();
        let mut window = Window::default();
        loop {
            // A step may wait on a client that stopped reading (a batch, an answer): expiry and
            // shutdown end the socket meanwhile.
            tokio::select! {
                stepped = self.step(&caller, &mut window) => if !stepped? { return Ok(()) },
                () = &mut expiry => return Err(Close(4403, "Forbidden: the token expired")),
                () = super::multipart::closing(&mut shutdown) => return Err(self.going_away().await),
            }
        }
    }

    /// The next batch of events written, or the next client message handled; `false` when the
    /// client has gone.
    async fn step(&mut self, caller: &Caller, window: &mut Window) -> Result<bool, Close> {
        tokio::select! {
            item = self.subscriptions.next() => {
                // Whatever else is ready goes out in the same write.
                let mut batch = Batch::default();
                self.subscriptions.add(self.protocol, item, &mut batch);
                while batch.bytes < BATCH_BYTES {
                    match self.subscriptions.ready() {
                        Some(item) => self.subscriptions.add(self.protocol, item, &mut batch),
                        None => break,
                    }
                }
                self.write_batch(batch).await?;
            }
            message = self.socket.recv() => {
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(error)) if too_big(&error) => return Err(Close(1009, "Message too big")),
                    _ => return Ok(false),
                };
                if window.over(self.state.settings.subscriptions.max_messages_per_second) {
                    return Err(Close(4429, "Too many messages"));
                }
                let text = match message {
                    Message::Text(text) => text,
                    Message::Close(_) => return Ok(false),
                    Message::Ping(_) | Message::Pong(_) => return Ok(true),
                    Message::Binary(_) => return Err(Close(4400, "Binary messages are not supported")),
                };
                let message: Value = serde_json::from_str(text.as_str())
                    .map_err(|_| Close(4400, "Invalid message"))?;
                self.handle(message, caller).await?;
            }
        }
        Ok(true)
    }

    /// Shutting down: every subscription completes (as far as the client takes it within
    /// [`LAST_WORDS`]), then the socket closes, going away.
    async fn going_away(&mut self) -> Close {
        let ids = self.subscriptions.stop_all();
        let completes = async {
            for id in ids {
                self.send(json!({"type": "complete", "id": id})).await?;
            }
            Ok::<_, Close>(())
        };
        let _ = tokio::time::timeout(LAST_WORDS, completes).await;
        Close(1001, "Going Away")
    }

    /// Waits for `connection_init` (pings are answered meanwhile); `None` when the socket ends.
    async fn wait_for_init(&mut self) -> Option<Result<Value, Close>> {
        // Every message counts against the bound, control frames too: each ping is answered.
        let mut window = Window::default();
        let most = self.state.settings.subscriptions.max_messages_per_second;
        loop {
            let received = self.socket.recv().await?;
            if window.over(most) {
                return Some(Err(Close(4429, "Too many messages")));
            }
            let message = match received {
                Ok(Message::Text(text)) => text,
                Err(error) if too_big(&error) => return Some(Err(Close(1009, "Message too big"))),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(Message::Binary(_)) => {
                    return Some(Err(Close(4400, "Binary messages are not supported")))
                }
                Ok(_) => continue,
            };
            let Ok(message) = serde_json::from_str::<Value>(message.as_str()) else {
                return Some(Err(Close(4400, "Invalid message")));
            };
            match message["type"].as_str() {
                Some("connection_init") => {
                    return Some(Ok(message.get("payload").cloned().unwrap_or(Value::Null)))
                }
                Some("ping") if self.protocol == Protocol::Current => {
                    if self.send(json!({"type": "pong"})).await.is_err() {
                        return None;
                    }
                }
                Some("subscribe" | "start") => return Some(Err(Close(4401, "Unauthorized"))),
                _ => return Some(Err(Close(4400, "Invalid message"))),
            }
        }
    }

    /// The token of the init payload, verified, and its user active.
    async fn authenticate(&mut self, payload: &Value) -> Result<(i64, Duration), Close> {
        let forbidden = Close(4403, "Forbidden");
        let header = payload
            .get("Authorization")
            .or_else(|| payload.get("authorization"))
            .and_then(Value::as_str)
            .ok_or(Close(4403, "Forbidden"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or(header)
            .trim();
        let (user_id, expires_in) = match self.state.tokens.verify_for(token).await {
            Ok(verified) => verified,
            Err(_) => {
                self.legacy_refusal().await;
                return Err(forbidden);
            }
        };
        let credentials = Credentials::User(user_id);
        let (principal, _) =
            crate::auth::principal(&self.state.cache, &self.state.store, &credentials).await;
        if principal.is_err() {
            self.legacy_refusal().await;
            return Err(forbidden);
        }
        Ok((user_id, expires_in))
    }

    /// The legacy protocol says why before the close.
    async fn legacy_refusal(&mut self) {
        if self.protocol == Protocol::Legacy {
            let _ = self
                .send(json!({"type": "connection_error", "payload": {"message": "Forbidden"}}))
                .await;
        }
    }

    /// One client message after the ack.
    async fn handle(&mut self, message: Value, caller: &Caller) -> Result<(), Close> {
        let kind = message["type"].as_str().unwrap_or_default();
        match (self.protocol, kind) {
            (_, "connection_init") => Err(Close(4429, "Too many initialisation requests")),
            (Protocol::Current, "ping") => self.send(json!({"type": "pong"})).await,
            (Protocol::Current, "pong") => Ok(()),
            (Protocol::Current, "subscribe") | (Protocol::Legacy, "start") => {
                let id = message["id"]
                    .as_str()
                    .filter(|id| !id.is_empty() && id.len() <= MAX_ID_BYTES)
                    .ok_or(Close(4400, "Invalid message"))?
                    .to_string();
                if self.subscriptions.is_running(&id) {
                    return Err(Close(4409, "Subscriber for this id already exists"));
                }
                let limit = self.state.settings.subscriptions.max_per_connection;
                if self.subscriptions.len() >= limit {
                    let error = ErrorCode::RateLimited.server_error(format!(
                        "at most {limit} subscriptions may run on one socket"
                    ));
                    return self.send(self.error_message(&id, vec![error])).await;
                }
                let operation =
                    operation_of(&message["payload"]).ok_or(Close(4400, "Invalid message"))?;
                match pipeline::subscribe(&self.state, caller, operation).await {
                    Err(refused) => self.send(self.error_message(&id, refused.errors)).await,
                    Ok(live) => {
                        let stream = match live {
                            pipeline::Live::Events(stream) => stream,
                            pipeline::Live::Answered(answer, _) => {
                                let response = pipeline::answer_response(*answer);
                                let event = pipeline::LiveEvent::Response(Box::new(response));
                                futures_util::stream::once(async move { event }).boxed()
                            }
                        };
                        self.subscriptions.start(id, stream);
                        Ok(())
                    }
                }
            }
            (Protocol::Current, "complete") | (Protocol::Legacy, "stop") => {
                if let Some(id) = message["id"].as_str() {
                    self.subscriptions.stop(id);
                }
                Ok(())
            }
            (Protocol::Legacy, "connection_terminate") => Err(Close(1000, "Normal Closure")),
            _ => Err(Close(4400, "Invalid message")),
        }
    }

    fn error_message(&self, id: &str, errors: Vec<async_graphql::ServerError>) -> Value {
        let errors = serde_json::to_value(errors).unwrap_or_default();
        match self.protocol {
            Protocol::Current => json!({"type": "error", "id": id, "payload": errors}),
            // The legacy protocol's error payload is one error.
            Protocol::Legacy => {
                json!({"type": "error", "id": id, "payload": errors.get(0).cloned().unwrap_or_default()})
            }
        }
    }

    async fn send(&mut self, message: Value) -> Result<(), Close> {
        self.send_text(message.to_string()).await
    }

    /// Writes a batch with one flush, then records its events.
    async fn write_batch(&mut self, batch: Batch) -> Result<(), Close> {
        use futures_util::SinkExt;
        let mut woke = Vec::new();
        for (text, heard) in batch.messages {
            woke.extend(heard);
            self.socket
                .feed(Message::Text(text.into()))
                .await
                .map_err(|_| Close(1011, "send failed"))?;
        }
        SinkExt::<Message>::flush(&mut self.socket)
            .await
            .map_err(|_| Close(1011, "send failed"))?;
        let instruments = &self.state.instruments;
        for at in woke {
            instruments
                .subscription_delivery
                .record(at.elapsed().as_secs_f64(), &[]);
        }
        if batch.events > 0 {
            instruments.subscription_events.add(
                batch.events,
                &[opentelemetry::KeyValue::new("outcome", "sent")],
            );
        }
        Ok(())
    }

    async fn send_text(&mut self, text: String) -> Result<(), Close> {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|_| Close(1011, "send failed"))
    }
}

/// The operation of a `subscribe` (or legacy `start`) payload.
fn operation_of(payload: &Value) -> Option<Operation> {
    let query = payload.get("query")?.as_str()?.to_string();
    let variables = match payload.get("variables") {
        None | Some(Value::Null) => async_graphql::Variables::default(),
        Some(variables @ Value::Object(_)) => {
            async_graphql::Variables::from_json(variables.clone())
        }
        Some(_) => return None,
    };
    let operation_name = match payload.get("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => return None,
    };
    let persisted = payload
        .get("extensions")
        .and_then(|e| e.get("persistedQuery"))
        .cloned();
    Some(Operation {
        query,
        persisted,
        operation_name,
        variables,
        trusted: false,
    })
}
