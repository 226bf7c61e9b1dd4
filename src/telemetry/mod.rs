//! Logging set-up and the per-request counters that operations report.

use std::sync::{
    atomic::{AtomicBool, AtomicU32, Ordering},
    Mutex,
};

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, LogSettings};

/// Starts the global `tracing` subscriber: `RUST_LOG` wins over the configured level.
pub fn init_logging(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match settings.format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second initialisation (tests start several apps in one process) keeps the first.
    drop(result);
}

/// Counters of one request, shared by everything that works for it (resolvers, DataLoader
/// batches running on other tasks), so they are atomics rather than fields behind a lock.
#[derive(Debug, Default)]
pub struct RequestStats {
    sql_statements: AtomicU32,
    cache_outcomes: Mutex<Vec<(&'static str, crate::cache::Outcome)>>,
    superuser: AtomicBool,
}

impl RequestStats {
    /// Records one SQL statement sent to the database.
    pub fn record_sql_statement(&self) {
        self.sql_statements.fetch_add(1, Ordering::Relaxed);
    }

    /// Records where a cached value came from (kind name, outcome).
    pub fn record_cache(&self, kind: &'static str, outcome: crate::cache::Outcome) {
        self.cache_outcomes
            .lock()
            .expect("cache outcomes lock")
            .push((kind, outcome));
    }

    /// Cache outcomes so far, in order.
    pub fn cache_outcomes(&self) -> Vec<(&'static str, crate::cache::Outcome)> {
        self.cache_outcomes
            .lock()
            .expect("cache outcomes lock")
            .clone()
    }

    /// Marks the request as made by a superuser (who may see cache diagnostics).
    pub fn set_superuser(&self) {
        self.superuser.store(true, Ordering::Relaxed);
    }

    /// Whether the caller is a superuser.
    pub fn is_superuser(&self) -> bool {
        self.superuser.load(Ordering::Relaxed)
    }

    /// SQL statements so far.
    pub fn sql_statements(&self) -> u32 {
        self.sql_statements.load(Ordering::Relaxed)
    }
}
