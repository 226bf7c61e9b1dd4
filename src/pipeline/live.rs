//! Subscriptions, for the live adapters (`http::live`: websocket and multipart): the same order
//! as a query up to execution (the caller's rate-limit token when it starts, the persisted-query
//! protocols, the variables' check, the cached parse with the query limits), then a shared
//! topic (`graphql::live`): subscribers of the same document, operation and variables share one
//! engine stream, so a change costs one read and one rendering on this replica. Each delivery
//! is checked against the subscriber's current access (the club the topic read, the level it
//! needs), and so is every change to the subscriber itself (`user:U`): a revoked membership
//! gets its error and the end. A selection that depends on the caller (the topic's reads ask for
//! one) makes the topic personal, and every subscriber runs its own stream. A query or mutation
//! sent to a live transport is answered by [`super::run`].

use std::{sync::Arc, time::Instant};

use futures_util::{stream::BoxStream, StreamExt};
use opentelemetry::KeyValue;
use tokio::sync::broadcast::error::RecvError;

use super::{charge_user, prepare, Answer, Caller, Operation};
use crate::{
    cache::Change,
    domain::access::{club_access, decide, ClubAccess, ClubScope, Decision},
    error::ApiError,
    graphql::{
        assign_error_codes,
        context::RequestContext,
        live::{AbortOnDrop, TopicEvent, TopicNotes},
    },
    state::AppState,
};

/// What a live transport runs.
pub enum Live {
    /// A subscription's events.
    Events(BoxStream<'static, LiveEvent>),
    /// A query or mutation, answered by the whole pipeline.
    Answered(Box<Answer>, super::Tally),
}

/// One event for one subscriber.
pub enum LiveEvent {
    /// A response of this subscriber's own (a refusal, or a personal stream's event).
    Response(Box<async_graphql::Response>),
    /// A topic's event, rendered once for all its subscribers: the JSON of the response.
    Rendered {
        /// `{"data": …}` (or with `errors`).
        payload: Arc<str>,
        /// When the change it answers was heard.
        woke: Option<Instant>,
    },
}

impl LiveEvent {
    /// The event's JSON.
    pub fn payload(&self) -> std::borrow::Cow<'_, str> {
        match self {
            LiveEvent::Response(response) => {
                std::borrow::Cow::Owned(serde_json::to_string(response).unwrap_or_default())
            }
            LiveEvent::Rendered { payload, .. } => std::borrow::Cow::Borrowed(payload),
        }
    }
}

/// One subscription's events (or a query's answer), or the answer that refused it.
pub async fn subscribe(
    state: &AppState,
    caller: &Caller,
    mut operation: Operation,
) -> Result<Live, async_graphql::Response> {
    let refused = |error| async_graphql::Response::from_errors(vec![error]);
    if let Err(limited) = charge_user(state, caller).await {
        return Err(refused(limited.error()));
    }
    prepare::resolve_persisted_query(state, &mut operation)
        .await
        .map_err(refused)?;
    crate::graphql::limits::check_variables(&operation.variables).map_err(refused)?;
    let prepared = prepare::prepare_document(state, &operation.query).map_err(refused)?;
    let chosen =
        crate::graphql::chosen_operation(&prepared.document, operation.operation_name.as_deref());
    let root = chosen
        .filter(|op| op.node.ty == async_graphql::parser::types::OperationType::Subscription)
        .and_then(|op| op.node.selection_set.node.items.first())
        .and_then(|item| match &item.node {
            async_graphql::parser::types::Selection::Field(field) => {
                Some((field.node.response_key().node.to_string(), field.pos))
            }
            _ => None,
        });
    let Some(root) = root else {
        // A query or a mutation: the whole pipeline (the subscription's rate-limit token
        // stands for the query's).
        let (answer, tally) = super::run(state, &caller.paid(), operation).await;
        return Ok(Live::Answered(Box::new(answer), tally));
    };
    let key = format!(
        "{}\u{0}{:?}\u{0}{}",
        operation.query,
        operation.operation_name,
        serde_json::to_string(&operation.variables).unwrap_or_default()
    );
    let name = state
        .instruments
        .operation_names
        .label(operation.operation_name.as_deref().unwrap_or(""));
    let topic = state.topics.join(&key, |sender| {
        let notes = Arc::new(TopicNotes::default());
        let context = context(state, caller).for_topic(notes.clone());
        let events = engine_stream(state, caller, &operation, &prepared, context);
        let instruments = state.instruments.clone();
        tokio::spawn(produce(events, notes, sender, instruments)).abort_handle()
    });
    let user = match caller.credentials {
        crate::auth::Credentials::User(id) => id,
        // Anonymous callers are refused at the first delivery; a feed of their own never ticks.
        _ => 0,
    };
    let (user_feed, user_changes, first) = state.topics.user_feed(user);
    if first {
        let topics = state.topics.clone();
        let mut changes = state.cache.changes();
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(change) => topics.notify(&change),
                    Err(RecvError::Lagged(_)) => topics.notify(&Change::Everything),
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
    let follower = Follower {
        state: state.clone(),
        caller: caller.clone(),
        events: topic.events.clone(),
        user_changes,
        _user_feed: user_feed,
        own: None,
        last_seq: 0,
        club: None,
        viewer: None,
        root,
        done: false,
        operation: Some((operation, prepared)),
        _topic: topic,
        _active: Active::start(state, name),
    };
    Ok(Live::Events(
        futures_util::stream::unfold(follower, |mut f| async move {
            let event = f.next().await?;
            Some((event, f))
        })
        .boxed(),
    ))
}

/// A subscriber's request context, as any operation's.
fn context(state: &AppState, caller: &Caller) -> RequestContext {
    prepare::request_context(state, caller, super::new_facts(state))
}

/// The engine's stream of a prepared subscription on `context`, each event finished like an
/// answer (codes, nulls, field order, the request id on internal errors).
fn engine_stream(
    state: &AppState,
    caller: &Caller,
    operation: &Operation,
    prepared: &crate::graphql::documents::Prepared,
    context: RequestContext,
) -> BoxStream<'static, async_graphql::Response> {
    let variables = crate::graphql::with_defaults(
        &prepared.document,
        operation.operation_name.as_deref(),
        &operation.variables,
    );
    let mut request = async_graphql::Request::new(operation.query.clone())
        .variables(variables.into_owned())
        .data(context);
    if let Some(name) = operation.operation_name.clone() {
        request = request.operation_name(name);
    }
    request.set_parsed_query(prepared.document.clone());
    let document = prepared.document.clone();
    let name = operation.operation_name.clone();
    let request_id = caller.request_id.clone();
    state
        .schema
        .execute_stream(request)
        .map(move |mut response| {
            prepare::complete_answer(&mut response, &document, name.as_deref());
            super::respond::code_errors(&mut response, &request_id);
            response
        })
        .boxed()
}

/// A topic's producer: renders each event once and publishes it (the newest replaces the last).
async fn produce(
    mut events: BoxStream<'static, async_graphql::Response>,
    notes: Arc<TopicNotes>,
    sender: tokio::sync::watch::Sender<Option<Arc<TopicEvent>>>,
    instruments: Arc<crate::telemetry::metrics::Instruments>,
) {
    let mut seq = 0;
    let mut last = None;
    while let Some(response) = events.next().await {
        if notes.is_personal() {
            sender.send_replace(Some(Arc::new(TopicEvent::Personal)));
            return;
        }
        seq += 1;
        let span = tracing::info_span!(
            "graphql.subscription.event",
            otel.name = "graphql.subscription.event",
            graphql.subscription.seq = seq,
            graphql.subscription.subscribers = sender.receiver_count() - 1,
        );
        let _entered = span.enter();
        let payload: Arc<str> = serde_json::to_string(&response).unwrap_or_default().into();
        instruments.subscription_renders.add(1, &[]);
        let event = Arc::new(TopicEvent::Rendered {
            seq,
            payload,
            club: notes.club(),
            woke: notes.take_woke(),
        });
        last = Some(event.clone());
        sender.send_replace(Some(event));
    }
    // The last event goes with the end: the newest value replaces the one before, and an error
    // that ended the stream must not be replaced unseen.
    sender.send_replace(Some(Arc::new(TopicEvent::Ended(last))));
}

/// The active-subscriptions gauge, held for a subscription's life.
struct Active {
    instruments: Arc<crate::telemetry::metrics::Instruments>,
    name: String,
}

impl Active {
    fn start(state: &AppState, name: String) -> Active {
        let instruments = state.instruments.clone();
        instruments
            .subscriptions_active
            .add(1, &[KeyValue::new("graphql.operation.name", name.clone())]);
        Active { instruments, name }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.instruments.subscriptions_active.add(
            -1,
            &[KeyValue::new("graphql.operation.name", self.name.clone())],
        );
    }
}

/// One subscriber of a topic.
struct Follower {
    state: AppState,
    caller: Caller,
    events: tokio::sync::watch::Receiver<Option<Arc<TopicEvent>>>,
    /// Ticks when a change concerns the subscriber (its memberships, everything).
    user_changes: tokio::sync::watch::Receiver<()>,
    _user_feed: Arc<tokio::sync::watch::Sender<()>>,
    /// The subscriber's own stream, once the topic turned personal.
    own: Option<BoxStream<'static, async_graphql::Response>>,
    last_seq: u64,
    /// The club the last delivered event read, and the level it needs.
    club: Option<(ClubScope, ClubAccess)>,
    /// The subscriber's access view, read again whenever a change concerns the subscriber.
    viewer: Option<crate::domain::access::Viewer>,
    /// The root field's response key and position (for errors made here).
    root: (String, async_graphql::Pos),
    done: bool,
    /// What a personal stream needs.
    operation: Option<(
        Operation,
        std::sync::Arc<crate::graphql::documents::Prepared>,
    )>,
    _topic: Arc<crate::graphql::live::Topic>,
    _active: Active,
}

impl Follower {
    async fn next(&mut self) -> Option<LiveEvent> {
        if self.done {
            return None;
        }
        if let Some(own) = &mut self.own {
            return own.next().await.map(|r| LiveEvent::Response(Box::new(r)));
        }
        loop {
            tokio::select! {
                changed = self.events.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let event = self.events.borrow_and_update().clone();
                    match event.as_deref() {
                        None => continue,
                        Some(TopicEvent::Ended(last)) => {
                            let unseen = match last.as_deref() {
                                Some(TopicEvent::Rendered { seq, .. }) => *seq > self.last_seq,
                                _ => false,
                            };
                            self.done = true;
                            if !unseen {
                                return None;
                            }
                            let last = last.clone()?;
                            return self.deliver(&last).await;
                        }
                        Some(TopicEvent::Personal) => {
                            let (operation, prepared) = self.operation.take()?;
                            let context = context(&self.state, &self.caller);
                            let mut own = detached(engine_stream(
                                &self.state, &self.caller, &operation, &prepared, context,
                            ));
                            let first = own.next().await;
                            self.own = Some(own);
                            return first.map(|r| LiveEvent::Response(Box::new(r)));
                        }
                        Some(rendered @ TopicEvent::Rendered { .. }) => {
                            return self.deliver(rendered).await;
                        }
                    }
                }
                changed = self.user_changes.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    self.viewer = None;
                    if self.club.is_some() {
                        if let Err(refusal) = allowed(&self.state, &self.caller, self.club, &self.root, &mut self.viewer).await {
                            self.done = true;
                            return Some(LiveEvent::Response(Box::new(refusal)));
                        }
                    }
                }
            }
        }
    }
}

impl Follower {
    /// A topic's rendered event for this subscriber: its bytes when the subscriber may see the
    /// club it read, else the query's error (and the end).
    async fn deliver(&mut self, event: &TopicEvent) -> Option<LiveEvent> {
        let TopicEvent::Rendered {
            seq,
            payload,
            club,
            woke,
        } = event
        else {
            return None;
        };
        let skipped = seq.saturating_sub(self.last_seq + 1);
        if skipped > 0 {
            self.state
                .instruments
                .subscription_events
                .add(skipped, &[KeyValue::new("outcome", "coalesced")]);
        }
        self.last_seq = *seq;
        self.club = *club;
        let checked = allowed(
            &self.state,
            &self.caller,
            self.club,
            &self.root,
            &mut self.viewer,
        )
        .await;
        if let Err(refusal) = checked {
            self.done = true;
            return Some(LiveEvent::Response(Box::new(refusal)));
        }
        Some(LiveEvent::Rendered {
            payload: payload.clone(),
            woke: *woke,
        })
    }
}

/// `stream` run by a task of its own, one event ahead of its reader. A socket polls its
/// subscriptions itself and stops while a slow reader's write waits; a personal stream's reads
/// (loads other requests may be waiting on) must go on meanwhile.
fn detached<T: Send + 'static>(mut stream: BoxStream<'static, T>) -> BoxStream<'static, T> {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            if sender.send(item).await.is_err() {
                return;
            }
        }
    });
    let running = AbortOnDrop(task.abort_handle());
    futures_util::stream::unfold((receiver, running), |(mut receiver, running)| async move {
        let item = receiver.recv().await?;
        Some((item, (receiver, running)))
    })
    .boxed()
}

/// The subscriber may see the club the topic read, at the level it needs; else the error the
/// query would give, at the root field. The subscriber's view is read (through the cache) when
/// `viewer` holds none: at the first delivery and after a change that concerns the subscriber.
async fn allowed(
    state: &AppState,
    caller: &Caller,
    club: Option<(ClubScope, ClubAccess)>,
    root: &(String, async_graphql::Pos),
    viewer: &mut Option<crate::domain::access::Viewer>,
) -> Result<(), async_graphql::Response> {
    let error = if viewer.is_none() {
        // In a task of its own: the socket that polls this subscription may stop polling it
        // (a slow reader), and the load may be the one other requests for the caller wait on.
        let (cache, store, credentials) = (
            state.cache.clone(),
            state.store.clone(),
            caller.credentials.clone(),
        );
        let principal =
            tokio::spawn(
                async move { crate::auth::principal(&cache, &store, &credentials).await.0 },
            )
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::internal(anyhow::anyhow!(
                    "the caller's load failed"
                )))
            });
        match principal {
            Ok(principal) => {
                *viewer = Some(principal.viewer);
                None
            }
            Err(error) => Some(error),
        }
    } else {
        None
    };
    let error = match (error, viewer.as_ref(), club) {
        (Some(error), _, _) => error,
        (None, _, None) => return Ok(()),
        (None, None, Some(_)) => ApiError::not_found("club"),
        (None, Some(viewer), Some((scope, needed))) => {
            match decide(club_access(viewer, scope), needed) {
                Decision::Granted => return Ok(()),
                Decision::Below => {
                    ApiError::Forbidden("your role in this club does not allow this".into())
                }
                Decision::Invisible => ApiError::not_found("club"),
            }
        }
    };
    let (key, pos) = root;
    let mut error = async_graphql::Error::from(error).into_server_error(*pos);
    error.path = vec![async_graphql::PathSegment::Field(key.clone())];
    let mut response = async_graphql::Response::from_errors(vec![error]);
    assign_error_codes(&mut response);
    Err(response)
}

/// One event of an answer: executed, or a stored response's bytes.
pub fn answer_response(answer: Answer) -> async_graphql::Response {
    match answer {
        Answer::Executed(response) => response,
        Answer::Cached(body) => cached_response(&body),
    }
}

/// A stored response's bytes as a response (a query answered from the response cache).
fn cached_response(body: &[u8]) -> async_graphql::Response {
    let data = super::respond::stored_data(body)
        .and_then(|raw| serde_json::from_str::<async_graphql::Value>(raw.get()).ok());
    match data {
        Some(data) => async_graphql::Response::new(data),
        None => async_graphql::Response::from_errors(vec![
            crate::error::ErrorCode::InternalServerError.server_error("internal error"),
        ]),
    }
}
