//! Subscriptions, for the websocket adapter (`http::live`): the same order as a query up to
//! execution (the caller's rate-limit token when it starts, the persisted-query protocols, the
//! variables' check, the cached parse with the query limits), then the engine's stream, each
//! event finished like an answer (codes, nulls, field order). A query or mutation sent over the
//! socket runs through [`super::run`] and is one event.

use futures_util::{stream::BoxStream, StreamExt};

use super::{charge_user, prepare, Answer, Caller, Operation};
use crate::{
    graphql::{assign_error_codes, context::RequestContext},
    state::AppState,
};

/// What a live transport runs.
pub enum Live {
    /// A subscription's events.
    Events(BoxStream<'static, async_graphql::Response>),
    /// A query or mutation, answered by the whole pipeline.
    Answered(Answer, super::Tally),
}

/// One subscription's events (or a query's answer), or the answer that refused it.
pub async fn subscribe(
    state: &AppState,
    caller: &Caller,
    mut operation: Operation,
) -> Result<Live, async_graphql::Response> {
    let refused = |error| async_graphql::Response::from_errors(vec![error]);
    if let Err(limited) = charge_user(state, &caller.credentials).await {
        return Err(refused(limited.error()));
    }
    prepare::resolve_persisted_query(state, &mut operation)
        .await
        .map_err(refused)?;
    crate::graphql::limits::check_variables(&operation.variables).map_err(refused)?;
    let prepared = prepare::prepare_document(state, &operation.query).map_err(refused)?;
    let chosen =
        crate::graphql::chosen_operation(&prepared.document, operation.operation_name.as_deref());
    let is_subscription = chosen
        .is_some_and(|op| op.node.ty == async_graphql::parser::types::OperationType::Subscription);
    if !is_subscription {
        // A query or a mutation: the whole pipeline (the subscription's rate-limit token
        // stands for the query's).
        let (answer, tally) = super::run(state, caller, operation).await;
        return Ok(Live::Answered(answer, tally));
    }
    let facts = super::new_facts(state);
    facts.set_operation(
        "subscription",
        operation.operation_name.as_deref().unwrap_or(""),
    );
    let context = RequestContext::with_facts(
        &state.store,
        &state.cache,
        caller.credentials.clone(),
        Some(state.instruments.clone()),
        facts,
    )
    .with_date_window(crate::domain::period::DateWindow {
        days_back: state.settings.limits.date_days_back,
        days_ahead: state.settings.limits.date_days_ahead,
    });
    let mut request = async_graphql::Request::new(operation.query)
        .variables(operation.variables)
        .data(context);
    if let Some(name) = operation.operation_name.clone() {
        request = request.operation_name(name);
    }
    request.set_parsed_query(prepared.document.clone());
    let document = prepared.document.clone();
    let name = operation.operation_name;
    let request_id = caller.request_id.clone();
    Ok(Live::Events(
        state
            .schema
            .execute_stream(request)
            .map(move |mut response| {
                assign_error_codes(&mut response);
                prepare::complete_answer(&mut response, &document, name.as_deref());
                for error in &mut response.errors {
                    let internal = error
                        .extensions
                        .as_ref()
                        .and_then(|e| e.get("code"))
                        .is_some_and(|c| *c == async_graphql::Value::from("INTERNAL_SERVER_ERROR"));
                    if internal {
                        error
                            .extensions
                            .get_or_insert_with(Default::default)
                            .set("requestId", request_id.as_str());
                    }
                }
                response
            })
            .boxed(),
    ))
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
    #[derive(serde::Deserialize)]
    struct Stored {
        data: async_graphql::Value,
    }
    match serde_json::from_slice::<Stored>(body) {
        Ok(stored) => async_graphql::Response::new(stored.data),
        Err(_) => async_graphql::Response::from_errors(vec![
            crate::error::ErrorCode::InternalServerError.server_error("internal error"),
        ]),
    }
}
