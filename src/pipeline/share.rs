//! Step 4b, shared answers: a query whose root fields are all shareable (`graphql::share`) is
//! answered by splicing the rendered answers other callers got for the same fields, once the
//! access decisions each needed are re-checked against this caller; otherwise it runs with each
//! shareable field recorded apart, and their answers are kept for the next caller.
//!
//! What makes it exactly as correct as the executor:
//! - a hit needs the same document, operation and variables to have passed validation before
//!   (`documents::Prepared::verdict`), so an invalid document is never answered from here;
//! - the key is the field's normalised text, compared in full on a hit, not only its hash;
//! - only answers without errors are kept, and only when nothing in the request read anything
//!   the cache does not track (the request's recording is spoiled by any such read);
//! - every access decision the field needed is stored with it and must come out the same for
//!   the caller (`Requirement::Club` asks "at least this level", so a player and a manager
//!   who both may see a grid share it; a dashboard is only served at MANAGER);
//! - the root object is written in the plan's order, the order the executor uses.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use tracing::Instrument;

use super::{prepare::prepare_document, Operation};
use crate::{
    auth::Credentials,
    cache::{
        response::{requirements_hold, StoredResponse},
        CacheKey, Kind, Outcome,
    },
    config::Profile,
    graphql::{
        facts::RequestFacts,
        share::{plan, Slot},
    },
    state::AppState,
};

/// What the shared answers can do for one query.
pub(super) enum Lookup {
    /// Answered: the body and the facts of the hit.
    Served(Bytes, Arc<RequestFacts>),
    /// Not answered, but its shareable fields can be kept once it runs: (response key, key,
    /// normalised text) each.
    Planned(Vec<(String, CacheKey, Box<str>)>),
    /// Some part of it must run.
    Unshareable,
}

/// The shared key of a root field's normalised text.
fn key(name: &str, text: &str) -> CacheKey {
    CacheKey::new(Kind::Shared, &[("field", &name)], text)
}

/// Looks the query's shareable root fields up; serves them when every one is there and may be
/// served to this caller.
pub(super) async fn lookup(
    state: &AppState,
    user_id: i64,
    operation: &Operation,
    started: Instant,
) -> Lookup {
    // A refused document is answered by the executor path, with its error.
    let Ok(prepared) = prepare_document(state, &operation.query) else {
        return Lookup::Unshareable;
    };
    let name = operation.operation_name.as_deref();
    // As the executor will run it (`prepare_and_execute`), defaults filled in.
    let variables = crate::graphql::with_defaults(&prepared.document, name, &operation.variables);
    let Some(plan) = plan(&prepared.document, name, &variables) else {
        return Lookup::Unshareable;
    };
    let fields: Vec<(String, CacheKey, Box<str>)> = plan
        .fields()
        .map(|(response_key, name, text)| (response_key.to_string(), key(name, text), text.into()))
        .collect();
    let validated = prepared.verdict(name, &variables).is_some();
    let mut answers = Vec::with_capacity(fields.len());
    for (_, key, text) in &fields {
        match state.cache.response_get(key) {
            Some(stored) if validated && *stored.text == **text => answers.push(stored),
            _ => break,
        }
    }
    if answers.len() < fields.len() {
        state.cache.record_answer(Kind::Shared, Outcome::Miss);
        return Lookup::Planned(fields);
    }
    let facts = super::new_facts(state);
    let span = super::respond::hit_span(&plan.operation_name, Kind::Shared);
    let credentials = Credentials::User(user_id);
    let (principal, _) = crate::auth::principal(&state.cache, &state.store, &credentials)
        .instrument(span.clone())
        .await;
    let principal = principal.ok().filter(|principal| {
        answers.iter().all(|stored| {
            requirements_hold(
                &stored.requirements,
                &principal.viewer,
                crate::reads::today_at,
            )
        })
    });
    let Some(principal) = principal else {
        span.record("cache.outcome", "rejected");
        state.cache.record_answer(Kind::Shared, Outcome::Miss);
        return Lookup::Planned(fields);
    };
    facts.set_user(principal.user.id, principal.user.is_superuser);
    for (_, name, _) in plan.fields() {
        facts.add_root_field(name);
    }
    let show_cache = state.settings.profile == Profile::Development || facts.is_superuser();
    let body = splice(&plan.entries, &answers, show_cache);
    super::respond::record_hit(
        state,
        &facts,
        &span,
        Kind::Shared,
        (&plan.operation_name, &plan.operation_name),
        started,
    );
    Lookup::Served(body, facts)
}

/// `{"data":{…}}` with each entry in order: `__typename` written, fields spliced.
fn splice(entries: &[(String, Slot)], answers: &[Arc<StoredResponse>], show_cache: bool) -> Bytes {
    let size: usize = answers.iter().map(|a| a.body.len()).sum();
    let mut body = Vec::with_capacity(size + 32 * entries.len() + 80);
    body.extend_from_slice(b"{\"data\":{");
    let mut answers = answers.iter();
    for (i, (response_key, slot)) in entries.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        // Response keys are GraphQL names: nothing in them needs escaping.
        body.push(b'"');
        body.extend_from_slice(response_key.as_bytes());
        body.extend_from_slice(b"\":");
        match slot {
            Slot::Typename => body.extend_from_slice(b"\"Query\""),
            Slot::Field { .. } => {
                if let Some(answer) = answers.next() {
                    body.extend_from_slice(&answer.body);
                }
            }
        }
    }
    body.push(b'}');
    if show_cache {
        body.extend_from_slice(br#","extensions":{"cache":[{"kind":"shared","outcome":"l1Hit"}]}"#);
    }
    body.push(b'}');
    body.into()
}

/// Keeps the answers of the planned shareable fields of an executed query: each one without
/// errors under it, when nothing in the request was read untracked.
pub(super) fn store(
    state: &AppState,
    response: &async_graphql::Response,
    facts: &RequestFacts,
    epoch: u64,
) {
    let fields = facts.shared_fields();
    if fields.is_empty() || facts.recording.is_spoiled() {
        return;
    }
    if response.errors.iter().any(|e| e.path.is_empty()) {
        return;
    }
    let async_graphql::Value::Object(data) = &response.data else {
        return;
    };
    for field in fields {
        let failed = response.errors.iter().any(|error| {
            matches!(error.path.first(), Some(async_graphql::PathSegment::Field(name)) if *name == field.response_key)
        });
        let Some(value) = data.get(field.response_key.as_str()).filter(|_| !failed) else {
            continue;
        };
        let Ok(body) = serde_json::to_vec(value) else {
            continue;
        };
        let stored = StoredResponse {
            requirements: field.recording.requirements(),
            operation: String::new(),
            name: String::new(),
            kinds: Vec::new(),
            body: body.into(),
            text: field.text.clone(),
        };
        state
            .cache
            .response_put(&field.key, &field.recording, stored, epoch);
    }
}
