//! Step 4, the whole-response cache lookup with access re-checked, and step 6, storing an answer
//! built only from cached values; also the finishing of every answer (error codes, the request
//! id on internal errors, `extensions.cache` where the caller may see it).

use std::{sync::Arc, time::Instant};

use opentelemetry::KeyValue;
use tracing::Instrument;

use super::{charge_user, execute, observe, prepare, share, Answer, Caller, Operation, Refusal};
use crate::{
    auth::Credentials,
    cache::{
        response::{requirements_hold, Requirement, StoredResponse},
        CacheKey, Kind, Outcome,
    },
    config::Profile,
    error::ErrorCode,
    graphql::{assign_error_codes, facts::RequestFacts},
    state::AppState,
};

/// One operation through the whole-response cache: a repeated identical query of the same user
/// whose stored access decisions still hold is answered with the stored bytes; otherwise it runs
/// (recording what it reads) and its answer is stored when every part of it came from the cache.
pub(super) async fn run_cached(
    state: &AppState,
    caller: &Caller,
    mut operation: Operation,
) -> (Answer, Arc<RequestFacts>) {
    let started = Instant::now();
    let user_id = match caller.credentials {
        Credentials::User(id) if state.cache.response_cache_on() => Some(id),
        _ => None,
    };
    if let Err(limited) = charge_user(state, caller).await {
        let facts = super::new_facts(state);
        let refusal = Err(Refusal::Limited(limited));
        let response = execute(state, caller, &facts, operation, refusal).await;
        return (Answer::Executed(response), facts);
    }
    let resolution = prepare::resolve_persisted_query(state, &mut operation)
        .await
        .map_err(Refusal::Error);
    let Some(user_id) = user_id.filter(|_| resolution.is_ok()) else {
        let facts = super::new_facts(state);
        let response = execute(state, caller, &facts, operation, resolution).await;
        return (Answer::Executed(response), facts);
    };
    let key = response_key(user_id, &operation);
    if let Some(stored) = state.cache.response_get(&key) {
        if let Some(facts) = serve_hit(state, user_id, &stored, started).await {
            return (Answer::Cached(stored.body.clone()), facts);
        }
    }
    let mut shared = Vec::new();
    // A document to register (APQ) runs: the registration happens once it proved valid.
    let registers = matches!(resolution, Ok(Some(_)));
    if state.cache.shared_answers_on() && !registers {
        match share::lookup(state, user_id, &operation, started).await {
            share::Lookup::Served(body, facts) => return (Answer::Cached(body), facts),
            share::Lookup::Planned(fields) => shared = fields,
            share::Lookup::Unshareable => {}
        }
    }
    let epoch = state.cache.epoch();
    let facts = super::new_facts(state);
    facts.plan_shared(shared);
    let response = crate::cache::response::record(
        facts.recording.clone(),
        execute(state, caller, &facts, operation, resolution),
    )
    .await;
    store(state, user_id, &key, &response, &facts, epoch);
    share::store(state, &response, &facts, epoch);
    (Answer::Executed(response), facts)
}

/// A hit served when the caller may see it; its facts and observation are those of a hit.
async fn serve_hit(
    state: &AppState,
    user_id: i64,
    stored: &StoredResponse,
    started: Instant,
) -> Option<Arc<RequestFacts>> {
    let facts = super::new_facts(state);
    let span = hit_span(&stored.name, Kind::Response);
    let allowed = hit_allowed(state, user_id, stored, &facts)
        .instrument(span.clone())
        .await;
    if !allowed {
        span.record("cache.outcome", "rejected");
        return None;
    }
    let names = (stored.operation.as_str(), stored.name.as_str());
    record_hit(state, &facts, &span, Kind::Response, names, started);
    Some(facts)
}

/// The operation span of an answer served from a stored response or shared answers.
pub(super) fn hit_span(name: &str, kind: Kind) -> tracing::Span {
    tracing::info_span!(
        "graphql.operation",
        otel.name = %if name.is_empty() { "query".to_string() } else { format!("query {name}") },
        graphql.operation.type = "query",
        graphql.operation.name = %name,
        cache.kind = kind.name(),
        cache.outcome = tracing::field::Empty,
    )
}

/// The observation of a served hit: its outcome on the span, the cache metrics, the operation
/// duration and the monitoring record. `names`: the monitoring key and the document's name.
pub(super) fn record_hit(
    state: &AppState,
    facts: &RequestFacts,
    span: &tracing::Span,
    kind: Kind,
    (operation, name): (&str, &str),
    started: Instant,
) {
    span.record("cache.outcome", "l1Hit");
    state.cache.record_answer(kind, Outcome::L1Hit);
    facts.set_operation("query", operation);
    facts.record_cache(kind.name(), Outcome::L1Hit);
    state.instruments.operation_duration.record(
        started.elapsed().as_secs_f64(),
        &[
            KeyValue::new("graphql.operation.type", "query"),
            KeyValue::new(
                "graphql.operation.name",
                state.instruments.operation_names.label(name),
            ),
        ],
    );
    observe::record(state, facts, started, &[]);
}

/// The whole-response key: the user, and a hash of document, operation name and variables.
fn response_key(user_id: i64, operation: &Operation) -> CacheKey {
    let variables = serde_json::to_string(&operation.variables).unwrap_or_default();
    // `{:?}` keeps "no operation name" and an empty one apart.
    CacheKey::new(
        Kind::Response,
        &[("user", &user_id)],
        &format!(
            "{}\u{0}{:?}\u{0}{variables}",
            operation.query, operation.operation_name
        ),
    )
}

/// A stored response may be served to this caller: the user is still active (exact, from the
/// cache) and every access decision stored with it still holds. (The request paid its
/// rate-limit tokens before the lookup.)
async fn hit_allowed(
    state: &AppState,
    user_id: i64,
    stored: &StoredResponse,
    facts: &RequestFacts,
) -> bool {
    let credentials = Credentials::User(user_id);
    let (principal, _) = crate::auth::principal(&state.cache, &state.store, &credentials).await;
    let Ok(principal) = principal else {
        return false;
    };
    if !requirements_hold(
        &stored.requirements,
        &principal.viewer,
        crate::reads::today_at,
    ) {
        return false;
    }
    facts.set_user(principal.user.id, principal.user.is_superuser);
    true
}

/// Stores a query's answer when it has no errors and every part of it came from the cache.
fn store(
    state: &AppState,
    user_id: i64,
    key: &CacheKey,
    response: &async_graphql::Response,
    facts: &RequestFacts,
    epoch: u64,
) {
    let operation = facts.operation();
    let is_query = operation.as_ref().is_some_and(|(kind, _)| kind == "query");
    if !is_query {
        return;
    }
    // Only queries can be answered from a stored response: a mutation is no miss.
    state.cache.record_answer(Kind::Response, Outcome::Miss);
    if !response.errors.is_empty() || facts.recording.is_spoiled() {
        return;
    }
    let Ok(data) = serde_json::to_vec(&response.data) else {
        return;
    };
    let mut requirements = facts.recording.requirements();
    requirements.push(Requirement::User(user_id));
    let mut kinds: Vec<String> = facts
        .cache_outcomes()
        .into_iter()
        .map(|(kind, _)| kind.to_string())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    let show_cache = state.settings.profile == Profile::Development || facts.is_superuser();
    let stored = StoredResponse {
        body: cached_body(&data, &kinds, show_cache),
        requirements,
        operation: observe::operation_key(state, facts),
        name: operation.map(|(_, name)| name).unwrap_or_default(),
        kinds,
        text: Box::default(),
    };
    state
        .cache
        .response_put(key, &facts.recording, stored, epoch);
}

/// The `data` of a stored response's body ([`cached_body`]'s format), as the stored bytes hold
/// it: what the BFF URLs hash for their `ETag` and the live transports answer a query with.
pub fn stored_data(body: &[u8]) -> Option<&serde_json::value::RawValue> {
    #[derive(serde::Deserialize)]
    struct Stored<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    serde_json::from_slice::<Stored<'_>>(body)
        .ok()
        .map(|stored| stored.data)
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

/// Every error of an answer gets its code, and internal errors the request id (the only lead a
/// client has to the logs). Returns the errors' codes.
pub(super) fn code_errors(
    response: &mut async_graphql::Response,
    request_id: &str,
) -> Vec<&'static str> {
    assign_error_codes(response);
    let codes: Vec<&'static str> = response.errors.iter().map(observe::error_code).collect();
    for (error, code) in response.errors.iter_mut().zip(&codes) {
        if *code == ErrorCode::InternalServerError.as_str() {
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("requestId", request_id);
        }
    }
    codes
}

/// Finishes an executed answer: every error gets its code, internal errors the request id, and
/// development and superusers see `extensions.cache`. Returns the errors' codes.
pub(super) fn finish_response(
    state: &AppState,
    facts: &RequestFacts,
    caller: &Caller,
    response: &mut async_graphql::Response,
) -> Vec<&'static str> {
    let codes = code_errors(response, &caller.request_id);
    if state.settings.profile == Profile::Development || facts.is_superuser() {
        let outcomes = facts
            .cache_outcomes()
            .into_iter()
            .map(|(kind, outcome)| async_graphql::value!({ "kind": kind, "outcome": outcome.name() }))
            .collect();
        response
            .extensions
            .insert("cache".to_string(), async_graphql::Value::List(outcomes));
    }
    codes
}
