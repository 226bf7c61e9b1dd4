//! Telemetry, a leaf that the layers above feed with data (durations, counts, outcomes): logging,
//! OpenTelemetry traces and metrics (the OTLP exporters are in `otel`), bounded metric labels,
//! and the in-process statistics behind the monitoring API. It depends on nothing but `config`.

pub mod alerts;
pub mod labels;
pub mod metrics;
pub mod monitoring;
mod otel;
pub mod sampling;

use std::sync::Arc;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{
    filter::FilterExt, fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer,
};

use crate::config::{LogFormat, LogSettings, Settings};

/// The root sampler and the tracer unsampled-but-kept requests are exported with.
static SAMPLER: std::sync::OnceLock<(sampling::Sampler, opentelemetry_sdk::trace::SdkTracer)> =
    std::sync::OnceLock::new();

/// The OTLP endpoint traces go to (the standard variables first, then the config), if any
/// (`padel-bff doctor` probes it).
pub fn otlp_endpoint(settings: &crate::config::TelemetrySettings) -> Option<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .or_else(|| (!settings.otlp_endpoint.is_empty()).then(|| settings.otlp_endpoint.clone()))
}

/// Whether a new request is traced (`parent`: the caller's sampled flag); false when nothing
/// is exported.
pub fn sample(parent: Option<bool>) -> bool {
    SAMPLER
        .get()
        .is_some_and(|(sampler, _)| sampler.decide(parent))
}

/// One unsampled request that must be exported after all (it failed or was slow): its one span,
/// from what the edge recorded anyway.
pub struct KeptRequest {
    /// `METHOD route`.
    pub name: String,
    /// The caller's trace context (may be empty).
    pub parent: opentelemetry::Context,
    /// The trace id the response announced (used when there is no caller context).
    pub trace_id: opentelemetry::trace::TraceId,
    /// When the request arrived and when it was answered.
    pub start: std::time::SystemTime,
    /// When it was answered.
    pub end: std::time::SystemTime,
    /// The request's attributes.
    pub attributes: Vec<opentelemetry::KeyValue>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// Exports a kept request's span, bypassing the sampler (the decision to keep is made).
pub fn export_kept(kept: KeptRequest) {
    use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
    let Some((_, tracer)) = SAMPLER.get() else {
        return;
    };
    let builder = tracer
        .span_builder(kept.name)
        .with_kind(SpanKind::Server)
        .with_start_time(kept.start)
        .with_attributes(kept.attributes);
    // Without a caller's context the SDK makes a trace id: the one the response announced. (With
    // one it takes the caller's, and an id left behind would go to this thread's next root span.)
    use opentelemetry::trace::TraceContextExt;
    if !kept.parent.span().span_context().is_valid() {
        otel::next_trace_id(kept.trace_id);
    }
    let mut span = tracer.build_with_context(builder, &kept.parent);
    if let Some(error) = kept.error {
        span.set_status(Status::error(error));
    }
    span.end_with_timestamp(kept.end);
}

/// Whether spans are exported (an OTLP endpoint is configured and the layer installed).
pub fn exporting() -> bool {
    SAMPLER.get().is_some()
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
    let fmt_layer = log_layer(&settings.log);
    let mut tracer_provider = None;
    let otel_layer = otel::trace_export(&settings.telemetry).and_then(|export| {
        match otel::tracer_provider(&settings.telemetry, &export) {
            Ok(provider) => {
                let tracer = provider.tracer("padel-bff");
                let sampler = sampling::Sampler::from_env(settings.telemetry.sampler_ratio);
                let _ = SAMPLER.set((sampler, tracer.clone()));
                tracer_provider = Some(provider);
                opentelemetry::global::set_text_map_propagator(
                    opentelemetry_sdk::propagation::TraceContextPropagator::new(),
                );
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_error_records_to_exceptions(true)
                        // The request's decision first: for an unsampled request the
                        // directives (a locked map lookup per call site) are never asked.
                        .with_filter(SampledOnly.and(EnvFilter::new("padel_bff=debug,info"))),
                )
            }
            Err(error) => {
                eprintln!("OpenTelemetry export disabled: {error:#}");
                None
            }
        }
    });
    if otel_layer.is_some() {
        let logs_only = tracing_subscriber::registry().with(log_layer(&settings.log));
        let _ = LOGS_ONLY.set(tracing::Dispatch::new(logs_only));
    }
    let _ = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
    TelemetryGuard { tracer_provider }
}

/// The log lines' layer (text or JSON, `RUST_LOG` or `log.level`).
fn log_layer<S>(settings: &LogSettings) -> impl Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let layer = match settings.format {
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
    };
    layer.with_filter(log_filter(settings))
}

/// A subscriber with the log lines only, for unsampled requests (`None` when nothing is
/// exported): under it their spans and events never reach the exporter's layer at all, not even
/// to be filtered out there, so they cost what they cost without an exporter.
static LOGS_ONLY: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();

/// The subscriber an unsampled request runs under.
pub fn unsampled_dispatch() -> Option<&'static tracing::Dispatch> {
    LOGS_ONLY.get()
}

/// The exporter's filter: a request's spans reach it only when the request is sampled, so an
/// unsampled one builds no span data at all. Spans outside any request's task do not.
struct SampledOnly;

impl<S> tracing_subscriber::layer::Filter<S> for SampledOnly {
    fn enabled(
        &self,
        _meta: &tracing::Metadata<'_>,
        _cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        // Outside a request's task (DataLoader batches and refreshes on tasks of their own, whose
        // spans have no parent the exporter knows, start-up): not exported, so an unsampled
        // request's batches do not turn into traces of their own.
        sampling::in_sampled_request().unwrap_or(false)
    }

    fn callsite_enabled(
        &self,
        _meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Decided per request, never per call site.
        tracing::subscriber::Interest::sometimes()
    }
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
