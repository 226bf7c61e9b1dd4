//! The facts of one request, in one place: its caller, its operation, its counters (SQL, cache
//! outcomes, field timings, N+1 suspects), its rate-limit wait, and the [`Recording`] of what
//! its answer depended on (for the whole-response cache). The pipeline, the resolvers, the store
//! (through [`StatementObserver`]) and DataLoader batches on other tasks all write here; the
//! pipeline reads it to answer and to feed telemetry.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::{
    cache::{
        response::{in_cache_load, require_in_scope, Recording, Requirement},
        CacheKey, Outcome,
    },
    store::StatementObserver,
    telemetry::FIELD_PATH,
};

/// Counters and facts of one request, shared by everything that works for it: atomics and short
/// critical sections, never held across an await.
#[derive(Debug, Default)]
pub struct RequestFacts {
    sql_statements: AtomicU32,
    n_plus_one_threshold: u32,
    shapes: Mutex<HashMap<&'static str, u32>>,
    n_plus_one: Mutex<Vec<(String, &'static str)>>,
    cache_outcomes: Mutex<Vec<(&'static str, Outcome)>>,
    superuser: AtomicBool,
    user_id: Mutex<Option<i64>>,
    operation: Mutex<Option<(String, String)>>,
    root_fields: Mutex<Vec<String>>,
    slow_fields: Mutex<Vec<(String, Duration)>>,
    retry_after: Mutex<Option<Duration>>,
    /// What the answer depended on: cached sources, access decisions, untracked reads.
    pub recording: Arc<Recording>,
    shared: std::sync::OnceLock<Vec<SharedField>>,
}

/// A shareable root field of a query that runs (`graphql::share`): what it reads is recorded
/// apart (and in the request's recording too), so its answer can be kept for other callers.
#[derive(Debug)]
pub struct SharedField {
    /// The field's key in the response (its alias or name).
    pub response_key: String,
    /// Where its answer is kept.
    pub key: CacheKey,
    /// Its normalised text.
    pub text: Box<str>,
    /// What resolving it read and decided.
    pub recording: Arc<Recording>,
}

/// Slowest fields kept per request for the slow-request warning.
const SLOW_FIELDS_KEPT: usize = 5;

impl RequestFacts {
    /// Fresh facts with the same N+1 threshold (one event of a live subscription).
    pub fn fresh(&self) -> RequestFacts {
        RequestFacts::new(self.n_plus_one_threshold)
    }

    /// Facts for a request, flagging a statement shape seen `n_plus_one_threshold` times.
    pub fn new(n_plus_one_threshold: u32) -> RequestFacts {
        RequestFacts {
            n_plus_one_threshold: n_plus_one_threshold.max(2),
            ..Default::default()
        }
    }

    /// Records one SQL statement; outside a cache load it spoils the recording (the answer then
    /// holds data no cache tag tracks); outside a DataLoader batch, repeated shapes are checked
    /// for N+1. Returns the field path when this statement makes its shape a suspected N+1.
    pub fn record_sql_statement(&self, sql: &'static str, in_batch: bool) -> Option<String> {
        self.sql_statements.fetch_add(1, Ordering::Relaxed);
        if !in_cache_load() {
            self.recording.spoil();
        }
        if in_batch {
            return None;
        }
        let seen = {
            let mut shapes = self.shapes.lock().expect("shapes lock");
            let n = shapes.entry(sql).or_insert(0);
            *n += 1;
            *n
        };
        if seen != self.n_plus_one_threshold {
            return None;
        }
        let path = FIELD_PATH
            .try_with(|p| p.to_string())
            .unwrap_or_else(|_| "(outside a field)".into());
        self.n_plus_one
            .lock()
            .expect("n+1 lock")
            .push((path.clone(), sql));
        Some(path)
    }

    /// Marks the shareable root fields of the query about to run: (response key, shared key,
    /// normalised text) each. Once per request.
    pub fn plan_shared(&self, fields: Vec<(String, CacheKey, Box<str>)>) {
        let fields = fields
            .into_iter()
            .map(|(response_key, key, text)| SharedField {
                response_key,
                key,
                text,
                recording: Arc::new(Recording::within(self.recording.clone())),
            })
            .collect();
        let _ = self.shared.set(fields);
    }

    /// The recording of the shareable root field answered under `response_key`, if planned.
    pub fn shared_recording(&self, response_key: &str) -> Option<Arc<Recording>> {
        self.shared
            .get()?
            .iter()
            .find(|f| f.response_key == response_key)
            .map(|f| f.recording.clone())
    }

    /// The shareable root fields planned for this request.
    pub fn shared_fields(&self) -> &[SharedField] {
        self.shared.get().map(Vec::as_slice).unwrap_or(&[])
    }

    /// Notes an access decision the answer depends on: in the recording in scope (a shared
    /// root field's, which passes it on to the request's), else in the request's.
    pub fn require(&self, requirement: Requirement) {
        if !require_in_scope(&requirement) {
            self.recording.require(requirement);
        }
    }

    /// SQL statements so far.
    pub fn sql_statements(&self) -> u32 {
        self.sql_statements.load(Ordering::Relaxed)
    }

    /// Suspected N+1 patterns: (field path, statement).
    pub fn n_plus_one(&self) -> Vec<(String, &'static str)> {
        self.n_plus_one.lock().expect("n+1 lock").clone()
    }

    /// Records where a cached value came from (kind name, outcome).
    pub fn record_cache(&self, kind: &'static str, outcome: Outcome) {
        self.cache_outcomes
            .lock()
            .expect("cache outcomes lock")
            .push((kind, outcome));
    }

    /// Cache outcomes so far, in order.
    pub fn cache_outcomes(&self) -> Vec<(&'static str, Outcome)> {
        self.cache_outcomes
            .lock()
            .expect("cache outcomes lock")
            .clone()
    }

    /// Marks the caller (and whether they are a superuser, who may see cache diagnostics).
    pub fn set_user(&self, user_id: i64, superuser: bool) {
        *self.user_id.lock().expect("user lock") = Some(user_id);
        if superuser {
            self.superuser.store(true, Ordering::Relaxed);
        }
    }

    /// The signed-in caller's id, once known.
    pub fn user_id(&self) -> Option<i64> {
        *self.user_id.lock().expect("user lock")
    }

    /// Whether the caller is a superuser.
    pub fn is_superuser(&self) -> bool {
        self.superuser.load(Ordering::Relaxed)
    }

    /// Records the operation's (type, name).
    pub fn set_operation(&self, kind: &str, name: &str) {
        *self.operation.lock().expect("operation lock") =
            Some((kind.to_string(), name.to_string()));
    }

    /// The operation's (type, name) once its document is prepared.
    pub fn operation(&self) -> Option<(String, String)> {
        self.operation.lock().expect("operation lock").clone()
    }

    /// Records a root field of the operation.
    pub fn add_root_field(&self, name: &str) {
        self.root_fields
            .lock()
            .expect("root fields lock")
            .push(name.to_string());
    }

    /// Root fields of the operation, in resolution order.
    pub fn root_fields(&self) -> Vec<String> {
        self.root_fields.lock().expect("root fields lock").clone()
    }

    /// Keeps the slowest field timings.
    pub fn record_field(&self, path: &str, took: Duration) {
        let mut slow = self.slow_fields.lock().expect("slow fields lock");
        if slow.len() < SLOW_FIELDS_KEPT || slow.last().is_some_and(|(_, d)| *d < took) {
            slow.push((path.to_string(), took));
            slow.sort_by_key(|(_, took)| std::cmp::Reverse(*took));
            slow.truncate(SLOW_FIELDS_KEPT);
        }
    }

    /// Marks the request as rate limited.
    pub fn set_retry_after(&self, wait: Duration) {
        *self.retry_after.lock().expect("retry lock") = Some(wait);
    }

    /// How long a rate-limited caller must wait.
    pub fn retry_after(&self) -> Option<Duration> {
        *self.retry_after.lock().expect("retry lock")
    }

    /// The slowest fields, slowest first.
    pub fn slowest_fields(&self) -> Vec<(String, Duration)> {
        self.slow_fields.lock().expect("slow fields lock").clone()
    }
}

impl StatementObserver for RequestFacts {
    fn statement(&self, sql: &'static str, in_batch: bool) -> Option<String> {
        self.record_sql_statement(sql, in_batch)
    }
}
