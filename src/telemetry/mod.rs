//! Telemetry, a leaf that the layers above feed with data (durations, counts, outcomes): logging,
//! OpenTelemetry traces and metrics (the OTLP exporters are in `otel`), bounded metric labels,
//! and the in-process statistics behind the monitoring API. It depends on nothing but `config`.

pub mod labels;
pub mod metrics;
pub mod monitoring;
mod otel;

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
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
