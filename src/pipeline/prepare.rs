//! Step 3, preparing the document, and step 5, executing it: the persisted-query protocols (APQ,
//! the safelist), the cached parse with the query limits and the refused-document memory, the
//! mutation bucket's charge, the engine run with the cached validation verdict, and the
//! completion of its answer (nulls, field order).

use std::sync::Arc;

use async_graphql::{parser::types::OperationType, ServerError, ServerResult};
use tracing::{field::Empty, Instrument};

use super::{Caller, Operation};
use crate::{
    error::ErrorCode,
    graphql::{
        context::RequestContext,
        documents::{DocumentCache, Prepared},
        extension::{finish_operation, operation_span, Validation},
        facts::RequestFacts,
        limits::{check, check_text},
        with_defaults,
    },
    ratelimit::OperationKind,
    state::AppState,
};

/// Codes of a document refused before execution: such a document is never registered.
pub(super) const REFUSALS: [&str; 5] = [
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "QUERY_TOO_COMPLEX",
    "INTROSPECTION_DISABLED",
    "RATE_LIMITED",
];

/// Automatic persisted queries (the Apollo protocol): a hash alone is replaced by the document
/// registered under it (any replica may have registered it: the documents live in Redis); a
/// document with its hash is checked against it and returned for registration once it has proved
/// valid. The text is then prepared as usual, so every limit applies. In safelist mode only the
/// manifest's documents run, named by id/hash or sent verbatim, and nothing is registered.
pub(super) async fn resolve_persisted_query(
    state: &AppState,
    operation: &mut Operation,
) -> Result<Option<String>, ServerError> {
    let persisted = operation.persisted.take();
    if operation.trusted {
        return Ok(None);
    }
    if let Some(safelist) = &state.safelist {
        let id = persisted
            .as_ref()
            .and_then(|json| json["sha256Hash"].as_str().map(str::to_string));
        return match safelist.resolve(id.as_deref(), &operation.query) {
            Some(document) if operation.query.is_empty() || operation.query == document => {
                operation.query = document;
                Ok(None)
            }
            _ => Err(ErrorCode::OperationNotInSafelist
                .server_error("this operation is not in the safelist")),
        };
    }
    let Some(extension) = persisted else {
        return Ok(None);
    };
    let hash = extension["sha256Hash"]
        .as_str()
        .unwrap_or("")
        .to_ascii_lowercase();
    if extension["version"] != 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(
            ErrorCode::BadUserInput.server_error("persistedQuery needs version 1 and a sha256Hash")
        );
    }
    if operation.query.is_empty() {
        return match state.cache.persisted_query(&hash).await {
            Some(text) => {
                operation.query = text;
                Ok(None)
            }
            None => Err(ErrorCode::PersistedQueryNotFound.server_error("PersistedQueryNotFound")),
        };
    }
    if crate::safelist::sha256_hex(&operation.query) != hash {
        return Err(ErrorCode::BadUserInput.server_error("provided sha does not match query"));
    }
    Ok(Some(hash))
}

/// Parses the document (or takes the prepared one of the same text) and applies the query
/// limits; a refused text is remembered, so a repeated one is refused without parsing.
pub(super) fn prepare_document(state: &AppState, query: &str) -> ServerResult<Arc<Prepared>> {
    let documents: &DocumentCache = &state.documents;
    let limits = &state.settings.limits;
    let span = tracing::debug_span!(
        "graphql.parse",
        otel.name = "graphql.parse",
        graphql.document.hash = Empty,
        graphql.document.prepared = Empty,
    );
    match documents.lookup(query) {
        Ok(prepared) => {
            span.record(
                "graphql.document.hash",
                format_args!("{:016x}", prepared.hash),
            );
            span.record("graphql.document.prepared", true);
            Ok(prepared)
        }
        Err(hash) => {
            span.record("graphql.document.hash", format_args!("{hash:016x}"));
            span.record("graphql.document.prepared", false);
            check_text(query, limits)?;
            if let Some(error) = documents.refusal(hash, query) {
                return Err(error);
            }
            let parsed = span.in_scope(|| async_graphql::parser::parse_query(query));
            let document = match parsed {
                Ok(document) => document,
                Err(error) => {
                    let error = ServerError::from(error);
                    documents.refuse(hash, query, &error);
                    return Err(error);
                }
            };
            if let Err(error) = check(&document, limits, state.settings.server.introspection) {
                documents.refuse(hash, query, &error);
                return Err(error);
            }
            Ok(documents.insert(hash, query, document))
        }
    }
}

fn operation_type(kind: OperationType) -> &'static str {
    match kind {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// The request context of one operation of `caller` (every transport's, subscriptions' too).
pub(super) fn request_context(
    state: &AppState,
    caller: &Caller,
    facts: Arc<RequestFacts>,
) -> RequestContext {
    RequestContext::with_facts(
        &state.store,
        &state.cache,
        caller.credentials.clone(),
        Some(state.instruments.clone()),
        facts,
    )
    .with_date_window(crate::domain::period::DateWindow {
        days_back: state.settings.limits.date_days_back,
        days_ahead: state.settings.limits.date_days_ahead,
    })
}

/// Prepares the operation's document, charges the mutation bucket when it holds a mutation,
/// notes which operation runs, and executes it on the schema inside the operation span.
pub(super) async fn prepare_and_execute(
    state: &AppState,
    caller: &Caller,
    facts: &Arc<RequestFacts>,
    mut operation: Operation,
) -> async_graphql::Response {
    let context = request_context(state, caller, facts.clone());
    let prepared = match prepare_document(state, &operation.query) {
        Ok(prepared) => prepared,
        Err(error) => return async_graphql::Response::from_errors(vec![error]),
    };
    let name = operation.operation_name.as_deref();
    let filled = match with_defaults(&prepared.document, name, &operation.variables) {
        std::borrow::Cow::Owned(filled) => Some(filled),
        std::borrow::Cow::Borrowed(_) => None,
    };
    if let Some(filled) = filled {
        operation.variables = filled;
    }
    if prepared.has_mutation {
        let user_id = match caller.credentials {
            crate::auth::Credentials::User(id) => Some(id),
            _ => None,
        };
        let charged = state
            .rate_limiter
            .check(user_id, caller.client_ip, OperationKind::Mutation)
            .await;
        if let Err(limited) = charged {
            facts.set_retry_after(limited.retry_after);
            return async_graphql::Response::from_errors(vec![limited.error()]);
        }
    }
    // The operation that runs: the one `operationName` names, else the only one.
    let wanted = operation.operation_name.as_deref();
    let chosen = prepared
        .document
        .operations
        .iter()
        .find(|(name, _)| match wanted {
            Some(wanted) => name.is_some_and(|n| n.as_str() == wanted),
            None => true,
        });
    if let Some((name, definition)) = chosen {
        facts.set_operation(
            operation_type(definition.node.ty),
            name.map(|n| n.as_str()).unwrap_or(""),
        );
        if definition.node.ty == OperationType::Subscription {
            return async_graphql::Response::from_errors(vec![ErrorCode::BadUserInput
                .server_error(
                    "subscriptions are served over the websocket at /graphql/ws, or here with \
                     `Accept: multipart/mixed;subscriptionSpec=1.0`",
                )]);
        }
    }
    let validation = Validation::of(
        prepared.clone(),
        operation.operation_name.clone(),
        &operation.variables,
    );
    let hook = state.settings.telemetry.field_hook();
    let mut request = async_graphql::Request::new(operation.query)
        .variables(operation.variables)
        .data(context);
    // Without the engine hook nothing reuses a verdict, but shared answers need to know the
    // document passed with these variables: an answer with data is that proof (below).
    let mut unproven = None;
    if hook {
        request = request.data(validation);
    } else {
        unproven = Some(validation);
    }
    if let Some(name) = operation.operation_name.clone() {
        request = request.operation_name(name);
    }
    request.set_parsed_query(prepared.document.clone());
    let mut response = if hook {
        // The extension opens the operation span around execution proper.
        state.schema.execute(request).await
    } else {
        let (span, kind, name) = operation_span(facts, operation.operation_name.as_deref());
        let started = std::time::Instant::now();
        let response = state.schema.execute(request).instrument(span.clone()).await;
        let instruments = Some(&*state.instruments);
        finish_operation(&span, &response, instruments, kind, name, started);
        if let Some(validation) = unproven.filter(|_| response.data != async_graphql::Value::Null) {
            validation.passed();
        }
        response
    };
    complete_answer(
        &mut response,
        &prepared.document,
        operation.operation_name.as_deref(),
    );
    response
}

/// What the engine leaves to do on an answer: the nulls the spec requires for failed fields
/// (`graphql::nulls`) and selection order (`graphql::order`; the engine inserts fields as they
/// complete). A refused document (no data, no field errors) needs neither.
pub(super) fn complete_answer(
    response: &mut async_graphql::Response,
    document: &async_graphql::parser::types::ExecutableDocument,
    operation: Option<&str>,
) {
    use crate::graphql::{nulls, order};
    if response.data == async_graphql::Value::Null && !nulls::needs_completion(response) {
        return;
    }
    nulls::complete_with(response, document, operation);
    order::restore_operation(&mut response.data, document, operation);
}
