//! Tracing and metrics settings, and the typed choices among them.

use std::time::Duration;

use serde::Deserialize;

use super::sections::duration;

/// OTLP transport (`telemetry.otlp_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318).
    #[serde(rename = "http/protobuf", alias = "http")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The protocol an `OTEL_EXPORTER_OTLP_PROTOCOL` value names, if it names one.
    pub fn parse(text: &str) -> Option<OtlpProtocol> {
        match text {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" | "http" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// Which fields get a span (`telemetry.field_spans`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldSpans {
    /// Root fields, where the operations run; their I/O (cache lookups, DataLoader batches,
    /// SQL) has spans of its own. Other non-leaf fields feed the histogram only.
    Io,
    /// Every field.
    All,
    /// None.
    None,
}

/// Which fields feed the field-duration histogram (`telemetry.field_timing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldTiming {
    /// Root fields and every field returning an object or a list (an engine hook on every field).
    Objects,
    /// Root fields only; no engine hook.
    Root,
}

/// Tracing and metrics settings; the standard `OTEL_*` variables win over these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `service.name` (`OTEL_SERVICE_NAME` wins).
    pub service_name: String,
    /// OTLP collector base URL (`OTEL_EXPORTER_OTLP_ENDPOINT` wins); empty and unset: no export.
    pub otlp_endpoint: String,
    /// `grpc` or `http/protobuf` (`OTEL_EXPORTER_OTLP_PROTOCOL` wins).
    pub otlp_protocol: OtlpProtocol,
    /// Fraction of new traces sampled, parent-based (`OTEL_TRACES_SAMPLER`/`_ARG` win; see
    /// `telemetry::sampling`): errors and slow requests are kept whatever it decides.
    pub sampler_ratio: f64,
    /// Spans waiting for export at most; more are dropped rather than slowing requests.
    pub export_queue_size: usize,
    /// How often queued spans are sent.
    #[serde(deserialize_with = "duration")]
    pub export_interval: Duration,
    /// How often metrics are pushed over OTLP.
    #[serde(deserialize_with = "duration")]
    pub metrics_interval: Duration,
    /// `io`: spans for fields that resolve entities or run operations (leaves are timed by the
    /// field histogram only); `all`: a span for every field; `none`: no field spans.
    pub field_spans: FieldSpans,
    /// `objects`: every root field and every field returning an object or a list is timed into
    /// the field histogram (an engine hook on every field: ~40 % of an in-cache answer's CPU);
    /// `root`: root fields only, and no engine hook at all (validation then has no span of its
    /// own and is not reused). `field_spans = "all"` needs the hook and implies `objects`. Query
    /// limits and the rate limit run in the pipeline either way.
    pub field_timing: FieldTiming,
    /// Executions of one statement shape in one request (outside DataLoader batches) that count
    /// as a suspected N+1.
    pub n_plus_one_threshold: u32,
    /// Distinct operation names metrics and monitoring report by name; others are `other`.
    pub max_operation_names: usize,
    /// Requests slower than this log a warning with their slowest fields.
    #[serde(deserialize_with = "duration")]
    pub slow_default: Duration,
    /// Threshold for `dashboard`.
    #[serde(deserialize_with = "duration")]
    pub slow_dashboard: Duration,
    /// Threshold for `authContext`.
    #[serde(deserialize_with = "duration")]
    pub slow_auth_context: Duration,
    /// Threshold for `courtAvailability`.
    #[serde(deserialize_with = "duration")]
    pub slow_court_availability: Duration,
    /// How often the alert rules of the monitoring page are evaluated.
    #[serde(deserialize_with = "duration")]
    pub alert_interval: Duration,
    /// Alerts the history keeps at most (the oldest ended ones are dropped first).
    pub alert_history: usize,
}

impl TelemetrySettings {
    /// Whether the schema carries the field hook (the extension): `field_timing = "objects"` or
    /// `field_spans = "all"`.
    pub fn field_hook(&self) -> bool {
        field_hook(self.field_timing, self.field_spans)
    }

    /// The slow-request threshold for an operation, from the names it goes by (its root fields,
    /// or its monitoring key such as `dashboard+authContext`): the strictest matching one.
    pub fn slow_threshold<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Duration {
        let names: Vec<String> = names.into_iter().map(str::to_ascii_lowercase).collect();
        [
            ("dashboard", self.slow_dashboard),
            ("authcontext", self.slow_auth_context),
            ("courtavailability", self.slow_court_availability),
        ]
        .iter()
        .filter(|(field, _)| names.iter().any(|n| n.contains(field)))
        .map(|(_, t)| *t)
        .min()
        .unwrap_or(self.slow_default)
    }
}

/// Whether these field settings need the engine's field hook (the schema's extension).
pub fn field_hook(timing: FieldTiming, spans: FieldSpans) -> bool {
    timing == FieldTiming::Objects || spans == FieldSpans::All
}
