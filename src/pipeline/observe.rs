//! Step 7, observation: the summary log line, the slow-request warning, the metrics and the
//! monitoring statistics of one operation (its span and duration: `graphql::extension`). Telemetry receives the
//! numbers; what they mean for the request is decided here.

use std::time::Instant;

use opentelemetry::KeyValue;

use crate::{
    cache::Outcome, error::ErrorCode, graphql::facts::RequestFacts, state::AppState,
    telemetry::monitoring::RequestRecord,
};

/// The `extensions.code` of an error (every error has one after `assign_error_codes`).
pub(super) fn error_code(error: &async_graphql::ServerError) -> &'static str {
    let code = error.extensions.as_ref().and_then(|e| e.get("code"));
    let text = match code {
        Some(async_graphql::Value::String(code)) => code.as_str(),
        _ => "",
    };
    ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .find(|c| *c == text)
        .unwrap_or("")
}

/// The monitoring key of an operation: its name, or its root fields when anonymous; from the
/// bounded set of labels (`telemetry::labels`).
pub(super) fn operation_key(state: &AppState, facts: &RequestFacts) -> String {
    let key = match facts.operation() {
        Some((_, name)) if !name.is_empty() => name,
        _ => {
            let mut roots = facts.root_fields();
            roots.sort();
            roots.dedup();
            if roots.is_empty() {
                "anonymous".into()
            } else {
                roots.join("+")
            }
        }
    };
    state.instruments.operation_names.label(&key)
}

/// Summary line, slow-request warning, metrics and monitoring for one operation.
pub(super) fn record(
    state: &AppState,
    facts: &RequestFacts,
    started: Instant,
    codes: &[&'static str],
) {
    let duration = started.elapsed();
    let operation = operation_key(state, facts);
    let outcomes = facts.cache_outcomes();
    let hits = outcomes
        .iter()
        .filter(|(_, o)| !matches!(o, Outcome::Miss | Outcome::Bypass))
        .count();
    let cache: Vec<String> = outcomes
        .iter()
        .map(|(kind, outcome)| format!("{kind}:{}", outcome.name()))
        .collect();
    let n_plus_one = facts.n_plus_one();
    let status = if codes.is_empty() { "ok" } else { "error" };
    tracing::Span::current().record("graphql.operation.name", operation.as_str());
    tracing::info!(
        graphql.operation = %operation,
        status,
        error.codes = %codes.join(","),
        duration_ms = duration.as_secs_f64() * 1000.0,
        sql_statements = facts.sql_statements(),
        cache = %cache.join(","),
        user.id = facts.user_id(),
        "graphql request finished"
    );
    let telemetry = &state.settings.telemetry;
    let roots = facts.root_fields();
    let threshold = telemetry.slow_threshold(roots.iter().map(String::as_str));
    // Errors and slow operations are traced whatever the sampler decided (not refusals by the
    // rate limit: a flood of them would be exported one by one).
    let failures: Vec<&str> = codes
        .iter()
        .copied()
        .filter(|c| *c != ErrorCode::RateLimited.as_str())
        .collect();
    if !failures.is_empty() {
        crate::telemetry::sampling::keep(&operation, &failures.join(","));
    } else if duration > threshold {
        crate::telemetry::sampling::keep(&operation, "slow");
    }
    if duration > threshold {
        let slowest: Vec<String> = facts
            .slowest_fields()
            .iter()
            .map(|(path, d)| format!("{path}={:.1}ms", d.as_secs_f64() * 1000.0))
            .collect();
        tracing::warn!(
            graphql.operation = %operation,
            duration_ms = duration.as_secs_f64() * 1000.0,
            threshold_ms = threshold.as_secs_f64() * 1000.0,
            slowest_fields = %slowest.join(", "),
            "slow graphql request"
        );
    }
    let instruments = &state.instruments;
    instruments.sql_per_operation.record(
        u64::from(facts.sql_statements()),
        &[KeyValue::new("graphql.operation.name", operation.clone())],
    );
    for code in codes {
        instruments
            .errors
            .add(1, &[KeyValue::new("error.code", *code)]);
    }
    state.monitoring.record(
        &operation,
        RequestRecord {
            duration,
            failed: !codes.is_empty(),
            cache_lookups: outcomes.len() as u64,
            cache_hits: hits as u64,
            sql_statements: u64::from(facts.sql_statements()),
            n_plus_one: n_plus_one.len() as u64,
            codes,
        },
    );
    // Moved, not copied: the slowest-requests list reads it at the edge.
    crate::telemetry::sampling::note_operation(operation);
}
