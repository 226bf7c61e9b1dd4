//! Telemetry: logging, OpenTelemetry traces and metrics, per-request counters, the GraphQL
//! extension that times fields, and the in-process statistics behind the monitoring API.

pub mod graphql;
pub mod labels;
pub mod metrics;
pub mod monitoring;
mod otel;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings, Settings};

static TRACING_EXPORT: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OTLP endpoint is configured and the layer installed).
pub fn exporting() -> bool {
    TRACING_EXPORT.load(Ordering::Relaxed)
}

/// Keeps the tracer provider for the final flush.
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes queued spans (bounded by the exporter timeout) and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider {
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        }
    }
}

/// Starts logging (text or JSON; `RUST_LOG` wins) and, with an OTLP endpoint, span export with
/// W3C trace-context propagation. Detailed spans (fields, SQL, cache, DataLoader) are DEBUG-level
/// and only enabled for the exporter, so without one they cost nothing.
pub fn init(settings: &Settings) -> TelemetryGuard {
    let log_filter = log_filter(&settings.log);
    let fmt_layer = match settings.log.format {
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => fmt::layer()
            .with_ansi(colors())
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(log_filter);
    let mut tracer_provider = None;
    let otel_layer =
        otel::export(&settings.telemetry).and_then(|export| {
            match otel::tracer_provider(&settings.telemetry, &export) {
                Ok(provider) => {
                    let tracer = provider.tracer("padel-bff");
                    tracer_provider = Some(provider);
                    opentelemetry::global::set_text_map_propagator(
                        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
                    );
                    TRACING_EXPORT.store(true, Ordering::Relaxed);
                    Some(
                        tracing_opentelemetry::layer()
                            .with_tracer(tracer)
                            .with_error_records_to_exceptions(true)
                            .with_filter(EnvFilter::new("padel_bff=debug,info")),
                    )
                }
                Err(error) => {
                    eprintln!("OpenTelemetry export disabled: {error:#}");
                    None
                }
            }
        });
    let _ = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
    TelemetryGuard { tracer_provider }
}

/// Colored text only on a terminal: log files and collectors get plain lines (and the escape
/// codes cost 2–12 % of an in-cache request's instructions).
fn colors() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

fn log_filter(settings: &LogSettings) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Starts only logging (tests set `TEST_LOG`); a second call keeps the first subscriber.
pub fn init_logging(settings: &LogSettings) {
    let builder = fmt()
        .with_env_filter(log_filter(settings))
        .with_ansi(colors())
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The Prometheus registry and meter provider of an application.
pub fn meter_provider(
    settings: &Settings,
    registry: &prometheus::Registry,
) -> anyhow::Result<opentelemetry_sdk::metrics::SdkMeterProvider> {
    otel::meter_provider(&settings.telemetry, registry)
}

tokio::task_local! {
    /// Path of the GraphQL field being resolved (set by the extension around non-leaf fields),
    /// so statements can say which field ran them.
    pub static FIELD_PATH: Arc<str>;
}

/// Counters of one request, shared by everything that works for it (resolvers, DataLoader
/// batches on other tasks): atomics and short critical sections, never held across an await.
#[derive(Debug, Default)]
pub struct RequestStats {
    sql_statements: AtomicU32,
    n_plus_one_threshold: u32,
    shapes: Mutex<HashMap<&'static str, u32>>,
    n_plus_one: Mutex<Vec<(String, &'static str)>>,
    cache_outcomes: Mutex<Vec<(&'static str, crate::cache::Outcome)>>,
    superuser: AtomicBool,
    user_id: Mutex<Option<i64>>,
    operation: Mutex<Option<(String, String)>>,
    root_fields: Mutex<Vec<String>>,
    slow_fields: Mutex<Vec<(String, Duration)>>,
    retry_after: Mutex<Option<Duration>>,
    /// SQL ran outside a cache load (the response holds data no cache tag tracks).
    untracked_sql: AtomicBool,
    /// Access decisions the response depends on (for the whole-response cache).
    requirements: Mutex<Vec<crate::cache::response::Requirement>>,
}

/// Slowest fields kept per request for the slow-request warning.
const SLOW_FIELDS_KEPT: usize = 5;

impl RequestStats {
    /// Counters for a request, flagging a statement shape seen `n_plus_one_threshold` times.
    pub fn new(n_plus_one_threshold: u32) -> RequestStats {
        RequestStats {
            n_plus_one_threshold: n_plus_one_threshold.max(2),
            ..Default::default()
        }
    }

    /// Records one SQL statement; outside a DataLoader batch, repeated shapes are checked for
    /// N+1. Returns the field path when this statement makes its shape a suspected N+1.
    pub fn record_sql_statement(&self, sql: &'static str, in_batch: bool) -> Option<String> {
        self.sql_statements.fetch_add(1, Ordering::Relaxed);
        if !crate::cache::response::in_cache_load() {
            self.untracked_sql.store(true, Ordering::Relaxed);
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

    /// Whether SQL ran outside cache loads (such a response must not be cached whole).
    pub fn ran_untracked_sql(&self) -> bool {
        self.untracked_sql.load(Ordering::Relaxed)
    }

    /// Notes an access decision the response depends on.
    pub fn require(&self, requirement: crate::cache::response::Requirement) {
        let mut requirements = self.requirements.lock().expect("requirements lock");
        if !requirements.contains(&requirement) {
            requirements.push(requirement);
        }
    }

    /// The access decisions noted so far.
    pub fn requirements(&self) -> Vec<crate::cache::response::Requirement> {
        self.requirements.lock().expect("requirements lock").clone()
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

    /// Records the executed operation's (type, name).
    pub fn set_operation(&self, kind: &str, name: &str) {
        *self.operation.lock().expect("operation lock") =
            Some((kind.to_string(), name.to_string()));
    }

    /// The operation's (type, name) once executed.
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
            slow.sort_by(|a, b| b.1.cmp(&a.1));
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

impl crate::store::StatementObserver for RequestStats {
    fn statement(&self, sql: &'static str, in_batch: bool) -> Option<String> {
        self.record_sql_statement(sql, in_batch)
    }
}
