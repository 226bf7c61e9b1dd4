//! Logging set-up and the per-request counters that operations report.

use std::sync::atomic::{AtomicU32, Ordering};

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
}

impl RequestStats {
    /// Records one SQL statement sent to the database.
    pub fn record_sql_statement(&self) {
        self.sql_statements.fetch_add(1, Ordering::Relaxed);
    }

    /// SQL statements so far.
    pub fn sql_statements(&self) -> u32 {
        self.sql_statements.load(Ordering::Relaxed)
    }
}
