//! OpenTelemetry providers: traces and metrics over OTLP (gRPC or HTTP/protobuf), configured by
//! the standard `OTEL_*` variables or by `[telemetry]`. Without an endpoint nothing is exported and
//! no exporter runs.

use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{
    metrics::{PeriodicReader, SdkMeterProvider},
    trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider},
    Resource,
};

use crate::config::{OtlpProtocol, TelemetrySettings};

/// Where and how to export, resolved from the environment first, then the config.
#[derive(Debug, Clone)]
pub(crate) struct Export {
    /// Endpoint given in config (the exporter reads `OTEL_EXPORTER_OTLP_*ENDPOINT` itself).
    configured_endpoint: Option<String>,
    protocol: Protocol,
}

/// Whether a signal is exported over OTLP by `OTEL_{TRACES,METRICS}_EXPORTER` (the spec's
/// variables: `otlp` by default; `none`, and for metrics `prometheus`, turn the OTLP export of
/// that signal off: `/metrics` is always served).
fn signal_exported(variable: &str) -> bool {
    match std::env::var(variable) {
        Ok(value) => {
            let value = value.trim();
            value.is_empty() || value.split(',').any(|v| v.trim() == "otlp")
        }
        Err(_) => true,
    }
}

/// The span export target, or `None` when no endpoint is configured anywhere (or
/// `OTEL_TRACES_EXPORTER=none`).
pub(crate) fn trace_export(settings: &TelemetrySettings) -> Option<Export> {
    export(settings).filter(|_| signal_exported("OTEL_TRACES_EXPORTER"))
}

/// The export target, or `None` when no endpoint is configured anywhere.
fn export(settings: &TelemetrySettings) -> Option<Export> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let from_env =
        env("OTEL_EXPORTER_OTLP_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
    let configured_endpoint =
        (!settings.otlp_endpoint.is_empty()).then(|| settings.otlp_endpoint.clone());
    if from_env.is_none() && configured_endpoint.is_none() {
        return None;
    }
    let configured = settings.otlp_protocol;
    let protocol = match env("OTEL_EXPORTER_OTLP_PROTOCOL") {
        None => configured,
        Some(text) => OtlpProtocol::parse(&text).unwrap_or_else(|| {
            // Logging is not up yet (this decides how it starts).
            eprintln!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={text:?} is not grpc or http/protobuf; using \
                 telemetry.otlp_protocol ({configured:?})"
            );
            configured
        }),
    };
    let protocol = match protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::Grpc => Protocol::Grpc,
    };
    Some(Export {
        configured_endpoint: if from_env.is_some() {
            None
        } else {
            configured_endpoint
        },
        protocol,
    })
}

fn resource(settings: &TelemetrySettings) -> Resource {
    // `Resource::builder()` reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the configured
    // name applies only when the environment gives none.
    let builder = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_ok() {
        builder.build()
    } else {
        builder
            .with_service_name(settings.service_name.clone())
            .build()
    }
}

/// HTTP endpoints given in config are base URLs; signals live under `/v1/{signal}`.
fn signal_endpoint(export: &Export, signal: &str) -> Option<String> {
    let base = export.configured_endpoint.as_ref()?;
    Some(match export.protocol {
        Protocol::HttpBinary => format!("{}/v1/{signal}", base.trim_end_matches('/')),
        _ => base.clone(),
    })
}

/// The tracer provider: batch export with a bounded queue (spans beyond it are dropped, never
/// waited for). It samples everything it is given: the edge decided.
pub(crate) fn tracer_provider(
    settings: &TelemetrySettings,
    export: &Export,
) -> anyhow::Result<SdkTracerProvider> {
    let timeout = Duration::from_secs(5);
    let exporter = match export.protocol {
        Protocol::HttpBinary => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_timeout(timeout);
            if let Some(endpoint) = signal_endpoint(export, "traces") {
                builder = builder.with_endpoint(endpoint);
            }
            builder.build()?
        }
        _ => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_timeout(timeout);
            if let Some(endpoint) = signal_endpoint(export, "traces") {
                builder = builder.with_endpoint(endpoint);
            }
            builder.build()?
        }
    };
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(settings.export_queue_size)
                .with_scheduled_delay(settings.export_interval)
                .build(),
        )
        .build();
    // The decision is made once per request at the edge (`telemetry::sampling`, from the same
    // OTEL_TRACES_SAMPLER variables): spans that reach the SDK are recorded.
    let builder = SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(resource(settings))
        .with_sampler(Sampler::AlwaysOn)
        .with_id_generator(AnnouncedIds::default());
    Ok(builder.build())
}

thread_local! {
    static NEXT_TRACE_ID: std::cell::Cell<Option<opentelemetry::trace::TraceId>> =
        const { std::cell::Cell::new(None) };
}

/// Makes the next trace id this thread's tracer generates `id` (a kept request's span carries
/// the trace id its response already announced).
pub(crate) fn next_trace_id(id: opentelemetry::trace::TraceId) {
    if id != opentelemetry::trace::TraceId::INVALID {
        NEXT_TRACE_ID.set(Some(id));
    }
}

/// Random ids, except a trace id announced beforehand ([`next_trace_id`]).
#[derive(Debug, Default)]
struct AnnouncedIds(opentelemetry_sdk::trace::RandomIdGenerator);

impl opentelemetry_sdk::trace::IdGenerator for AnnouncedIds {
    fn new_trace_id(&self) -> opentelemetry::trace::TraceId {
        NEXT_TRACE_ID
            .take()
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        self.0.new_span_id()
    }
}

/// The meter provider: always a Prometheus reader (for `/metrics`), plus an OTLP reader when an
/// endpoint is configured.
/// Series per instrument at most (operation names × types, fields, codes, routes × statuses).
const METRIC_CARDINALITY_LIMIT: usize = 2000;

pub(crate) fn meter_provider(
    settings: &TelemetrySettings,
    registry: &prometheus::Registry,
) -> anyhow::Result<SdkMeterProvider> {
    let prometheus = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .scope_info_enabled(false)
        .build()?;
    // Labels are bounded where they are made (operation names, routes, methods); the SDK's
    // cardinality limit is the second wall: past it, new series fold into one overflow series.
    let mut builder = SdkMeterProvider::builder()
        .with_reader(prometheus)
        .with_resource(resource(settings))
        .with_view(|_: &opentelemetry_sdk::metrics::Instrument| {
            opentelemetry_sdk::metrics::Stream::builder()
                .with_cardinality_limit(METRIC_CARDINALITY_LIMIT)
                .build()
                .ok()
        });
    // Each reader aggregates every measurement again: the OTLP one doubles the cost of every
    // histogram record (docs/performance.md, run 14), so `OTEL_METRICS_EXPORTER=prometheus`
    // leaves it out where Prometheus scrapes `/metrics` anyway.
    if let Some(export) = export(settings).filter(|_| signal_exported("OTEL_METRICS_EXPORTER")) {
        let exporter = match export.protocol {
            Protocol::HttpBinary => {
                let mut b = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary);
                if let Some(endpoint) = signal_endpoint(&export, "metrics") {
                    b = b.with_endpoint(endpoint);
                }
                b.build()?
            }
            _ => {
                let mut b = opentelemetry_otlp::MetricExporter::builder().with_tonic();
                if let Some(endpoint) = signal_endpoint(&export, "metrics") {
                    b = b.with_endpoint(endpoint);
                }
                b.build()?
            }
        };
        builder = builder.with_reader(
            PeriodicReader::builder(exporter)
                .with_interval(settings.metrics_interval)
                .build(),
        );
    }
    Ok(builder.build())
}
