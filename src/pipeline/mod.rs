//! The order of a request, written once for every entry point. `/graphql` POST, GET and JSON
//! batches are thin adapters over it (`http::graphql`), and so are the platform's BFF URLs
//! (`http::rest`). For each operation it runs, in this order:
//!
//! 1. **authenticate**: the bearer token becomes [`Credentials`] ([`Caller::authenticate`]);
//! 2. **charge the rate limit**: the client address's bucket at the edge ([`admit`], before the
//!    body is read, with the first operation's user token in the same decision when the token
//!    was verified before), the caller's query bucket per operation, the mutation bucket once
//!    the document shows a mutation (`ratelimit` decides, on Redis's clock when shared);
//! 3. **resolve the document** (`prepare`): APQ or the safelist;
//! 4. **response-cache lookup** (`respond`): a repeated identical query of the same user, served
//!    only after its stored access decisions are re-checked against the caller's current ones;
//!    then **shared answers** (`share`): a query of only shareable root fields, answered from
//!    what other callers got for the same fields, after the same re-check;
//! 5. on a miss, **prepare and execute** (`prepare`): the variables' check, the cached parse with
//!    the query limits (`graphql::limits`, `graphql::documents`), the mutation bucket, the cached
//!    validation verdict the engine's hook applies (`graphql::extension::Validation`), execution
//!    on the schema, then the answer's completion (nulls, field order, error codes);
//! 6. **store** the answer in the response cache when every part of it came from the cache, and
//!    each shareable root field's answer in the shared answers;
//! 7. **observe** (`observe`): the operation span and duration, the summary log line, the
//!    slow-request warning, metrics and the monitoring statistics.
//!
//! It takes a transport-neutral [`Operation`] and [`Caller`] and returns an [`Answer`] and a
//! [`Tally`]; adapters only translate those to and from their transport.

mod live;
mod observe;
mod prepare;
mod respond;
mod share;

pub use live::{answer_response, subscribe, Live, LiveEvent};
pub use respond::stored_data;

use std::{net::IpAddr, sync::Arc, time::Duration};

use crate::{
    auth::Credentials,
    error::ErrorCode,
    graphql::facts::RequestFacts,
    ratelimit::{Limited, OperationKind},
    state::AppState,
};

/// One GraphQL operation as any transport receives it.
#[derive(Debug, Default)]
pub struct Operation {
    /// The document's text (empty when only a persisted id is sent).
    pub query: String,
    /// The `persistedQuery` extension as sent: an APQ hash, or a safelist id.
    pub persisted: Option<serde_json::Value>,
    /// The `operationName`.
    pub operation_name: Option<String>,
    /// The variables.
    pub variables: async_graphql::Variables,
    /// The gateway's own document (a BFF URL's, `rest`): exempt from the safelist, never
    /// registered as a persisted query.
    pub trusted: bool,
}

impl From<async_graphql::Request> for Operation {
    fn from(mut request: async_graphql::Request) -> Self {
        let persisted = request
            .extensions
            .remove("persistedQuery")
            .map(|value| value.into_json().unwrap_or_default());
        Operation {
            query: request.query,
            persisted,
            operation_name: request.operation_name,
            variables: request.variables,
            trusted: false,
        }
    }
}

/// Who sends a request: its verified credentials and what the edge learned.
#[derive(Debug, Clone)]
pub struct Caller {
    /// What the bearer token amounts to.
    pub credentials: Credentials,
    /// The client's address (`http::observe::client_address`), for its rate-limit bucket.
    pub client_ip: Option<IpAddr>,
    /// The request id internal errors carry.
    pub request_id: String,
    /// The user's token for the next operation, already taken (at the edge by [`admit`], or
    /// by the subscription a multipart query stands for).
    pub prepaid: Option<Arc<Prepaid>>,
}

impl Caller {
    /// Step 1: verifies the request's bearer token (no database lookup: the principal is loaded,
    /// through the cache, by what needs it); `edge` carries what the edge charged ([`admit`]),
    /// and the user it already found verified, which is not looked up again.
    pub async fn authenticate(
        state: &AppState,
        headers: &axum::http::HeaderMap,
        client_ip: Option<IpAddr>,
        request_id: String,
        edge: Option<EdgeCharge>,
    ) -> Caller {
        let credentials = match edge.as_ref().and_then(|e| e.known) {
            Some(user) => Credentials::User(user),
            None => state.tokens.credentials(headers).await,
        };
        Caller {
            credentials,
            client_ip,
            request_id,
            prepaid: edge.map(|e| e.prepaid),
        }
    }

    /// This caller with its user's token for the next operation already taken.
    pub(super) fn paid(&self) -> Caller {
        let prepaid = match self.credentials {
            Credentials::User(user) => Some(Prepaid::new(user, Ok(()))),
            _ => None,
        };
        Caller {
            prepaid,
            ..self.clone()
        }
    }
}

/// What the edge charged beside the address's token: the user's query token for the request's
/// first operation, when the bearer token was already known (and whose it is).
#[derive(Debug, Clone)]
pub struct EdgeCharge {
    known: Option<i64>,
    prepaid: Arc<Prepaid>,
}

/// A user's decision for one operation's token, taken before the operation's charge (at the edge
/// with the address's, one round trip; or by a subscription standing for the query it turned out
/// to be): that charge spends it instead of asking again.
#[derive(Debug, Default)]
pub struct Prepaid(std::sync::Mutex<Option<(i64, Result<(), Limited>)>>);

impl Prepaid {
    fn new(user: i64, decision: Result<(), Limited>) -> Arc<Prepaid> {
        Arc::new(Prepaid(std::sync::Mutex::new(Some((user, decision)))))
    }

    /// The decision, once, when it was taken for `user`.
    fn spend(&self, user: i64) -> Option<Result<(), Limited>> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match *held {
            Some((for_user, _)) if for_user == user => held.take().map(|(_, decision)| decision),
            _ => None,
        }
    }
}

/// An operation's answer: executed, or the bytes of a whole-response cache hit (`{"data": …}`).
pub enum Answer {
    /// The engine ran (or a refusal answered before it).
    Executed(async_graphql::Response),
    /// A stored response.
    Cached(bytes::Bytes),
}

/// What a transport's answer needs from the operations of one request.
#[derive(Debug, Default)]
pub struct Tally {
    operations: u32,
    limited: u32,
    retry_after: Option<Duration>,
    /// SQL statements the request ran.
    pub sql_statements: u32,
}

impl Tally {
    fn add(&mut self, facts: &RequestFacts) {
        self.operations += 1;
        self.sql_statements += facts.sql_statements();
        if let Some(wait) = facts.retry_after() {
            self.limited += 1;
            self.retry_after = Some(self.retry_after.map_or(wait, |w| w.max(wait)));
        }
    }

    fn limited(retry_after: Duration) -> Tally {
        Tally {
            operations: 1,
            limited: 1,
            retry_after: Some(retry_after),
            sql_statements: 0,
        }
    }

    /// The wait to announce (HTTP 429) when every operation was refused by the rate limit; none
    /// when anything ran: a batch whose other operations ran (a booking among them) must not
    /// look failed, or clients would resend all of it.
    pub fn rate_limited(&self) -> Option<Duration> {
        self.retry_after
            .filter(|_| self.limited > 0 && self.limited == self.operations)
    }
}

/// Step 2 at the edge: one token from the client address's bucket per request, taken before the
/// body is read or parsed, so that refused, unparsable and anonymous requests pay like any other.
/// When the bearer token was verified before (a lookup, no signature check), the user's query
/// token for the first operation is taken in the same decision (one Redis call for both) and
/// spent by that operation's charge; a request that then runs no operation (a refused batch, a
/// body that does not parse) has paid it, as it paid the address's. Refused (the address): the
/// one-error answer and its tally.
pub async fn admit(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    client_ip: Option<IpAddr>,
) -> Result<EdgeCharge, (async_graphql::Response, Tally)> {
    let user = state.tokens.known_user(headers);
    match state.rate_limiter.check_edge(client_ip, user).await {
        Ok(decision) => Ok(EdgeCharge {
            known: user,
            prepaid: match (user, decision) {
                (Some(user), Some(decision)) => Prepaid::new(user, decision),
                _ => Arc::new(Prepaid::default()),
            },
        }),
        Err(limited) => Err((
            async_graphql::Response::from_errors(vec![limited.error()]),
            Tally::limited(limited.retry_after),
        )),
    }
}

/// One operation through the whole pipeline, the response cache included.
pub async fn run(state: &AppState, caller: &Caller, operation: Operation) -> (Answer, Tally) {
    let mut tally = Tally::default();
    let (answer, facts) = respond::run_cached(state, caller, operation).await;
    tally.add(&facts);
    (answer, tally)
}

/// An operation an adapter refused before it could run (a BFF URL's malformed parameter):
/// charged to the caller's bucket and observed like any other, answered with `error`.
pub async fn refuse(
    state: &AppState,
    caller: &Caller,
    operation: Operation,
    error: async_graphql::ServerError,
) -> (Answer, Tally) {
    let facts = new_facts(state);
    if let Some(name) = &operation.operation_name {
        facts.set_operation("query", name);
    }
    let resolution = match charge_user(state, caller).await {
        Err(limited) => Err(Refusal::Limited(limited)),
        Ok(()) => Err(Refusal::Error(error)),
    };
    let response = execute(state, caller, &facts, operation, resolution).await;
    let mut tally = Tally::default();
    tally.add(&facts);
    (Answer::Executed(response), tally)
}

/// A JSON array of operations: refused as a whole (one error coded QUERY_TOO_COMPLEX, nothing
/// runs) when batches are off or the array is longer than `limits.max_batch_size`; otherwise each
/// runs as its own operation (own limits, rate-limit token, persisted-query lookup; no response
/// cache) and the answers come back in order.
pub async fn run_batch(
    state: &AppState,
    authenticate: impl std::future::Future<Output = Caller>,
    operations: Vec<Operation>,
) -> (async_graphql::BatchResponse, Tally) {
    let limits = &state.settings.limits;
    let refusal = if !limits.batch_enabled {
        Some("batched requests (a JSON array of operations) are not enabled".to_string())
    } else if operations.len() > limits.max_batch_size {
        Some(format!(
            "a batch may hold at most {} operations, this one holds {}",
            limits.max_batch_size,
            operations.len()
        ))
    } else if operations.is_empty() {
        Some("the batch is empty".to_string())
    } else {
        None
    };
    if let Some(message) = refusal {
        let response = async_graphql::Response::from_errors(vec![
            ErrorCode::QueryTooComplex.server_error(message)
        ]);
        return (response.into(), Tally::default());
    }
    // Authenticated only once the batch is admitted: a refused one costs no token check.
    let caller = &authenticate.await;
    let runs = operations.into_iter().map(|mut operation| async move {
        let resolution = match charge_user(state, caller).await {
            Err(limited) => Err(Refusal::Limited(limited)),
            Ok(()) => prepare::resolve_persisted_query(state, &mut operation)
                .await
                .map_err(Refusal::Error),
        };
        let facts = new_facts(state);
        let response = execute(state, caller, &facts, operation, resolution).await;
        (response, facts)
    });
    let results = futures_util::future::join_all(runs).await;
    let mut tally = Tally::default();
    let mut responses = Vec::with_capacity(results.len());
    for (response, facts) in results {
        tally.add(&facts);
        responses.push(response);
    }
    (async_graphql::BatchResponse::Batch(responses), tally)
}

/// Why an operation is answered without running.
enum Refusal {
    /// The caller's rate-limit token was refused.
    Limited(Limited),
    /// The persisted query could not be resolved, or the variables were refused.
    Error(async_graphql::ServerError),
}

/// Step 2 per operation: a signed-in caller's query bucket, once per operation, before any work
/// on it (its client address paid at the edge). Anonymous callers have no bucket of their own; a
/// bad token is refused later, as UNAUTHENTICATED.
async fn charge_user(state: &AppState, caller: &Caller) -> Result<(), Limited> {
    let Credentials::User(user_id) = &caller.credentials else {
        return Ok(());
    };
    if let Some(decision) = caller.prepaid.as_ref().and_then(|p| p.spend(*user_id)) {
        return decision;
    }
    state
        .rate_limiter
        .check(Some(*user_id), None, OperationKind::Query)
        .await
}

/// Steps 3 (the document), 5 (execution) and 7 (observation) of one operation whose persisted
/// query is resolved (or refused): a refusal made before answers without running; a document
/// that proves valid is registered as a persisted query.
async fn execute(
    state: &AppState,
    caller: &Caller,
    facts: &Arc<RequestFacts>,
    operation: Operation,
    resolution: Result<Option<String>, Refusal>,
) -> async_graphql::Response {
    let started = std::time::Instant::now();
    let resolution = resolution.and_then(|register| {
        crate::graphql::limits::check_variables(&operation.variables)
            .map(|()| register)
            .map_err(Refusal::Error)
    });
    let mut registration = None;
    let mut response = match resolution {
        Ok(register) => {
            registration = register.map(|hash| (hash, operation.query.clone()));
            // Boxed: the engine's future is large, and unboxed it is part of the handler's
            // future, which axum boxes and every layer moves (a memcpy of its whole size each).
            Box::pin(prepare::prepare_and_execute(
                state, caller, facts, operation,
            ))
            .await
        }
        Err(Refusal::Limited(limited)) => {
            facts.set_retry_after(limited.retry_after);
            async_graphql::Response::from_errors(vec![limited.error()])
        }
        Err(Refusal::Error(error)) => async_graphql::Response::from_errors(vec![error]),
    };
    let codes = respond::finish_response(state, facts, caller, &mut response);
    if let Some((hash, query)) = registration {
        // Only a signed-in caller's document that parsed, passed the limits and validated is
        // kept: an anonymous or invalid registration would be storage for free.
        let signed_in = matches!(caller.credentials, Credentials::User(_));
        let valid = facts.operation().is_some()
            && !codes.iter().any(|code| prepare::REFUSALS.contains(code));
        if signed_in && valid {
            state.cache.register_persisted_query(&hash, &query).await;
        }
    }
    observe::record(state, facts, started, &codes);
    response
}

/// Fresh facts for one operation.
fn new_facts(state: &AppState) -> Arc<RequestFacts> {
    Arc::new(RequestFacts::new(
        state.settings.telemetry.n_plus_one_threshold,
    ))
}
