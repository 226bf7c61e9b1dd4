//! The schema's one extension, for what must happen inside execution: the validation hook (it
//! applies the verdict the pipeline found for a prepared document, or validates and remembers),
//! the operation span and duration around execution proper, and field observation (one span per field that does work, per `telemetry.field_spans`; a
//! duration histogram for every non-leaf field; the slowest fields for the request summary; the
//! field path the N+1 detector reports). Root fields are observed by [`super::Rooted`], with or
//! without this extension. Without it (`telemetry.field_timing = "root"`), the pipeline opens
//! the operation span around the engine instead. No limit or rate limit is decided here.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Instant,
};

use async_graphql::{
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextResolve, NextValidation,
        ResolveInfo,
    },
    QueryPathSegment, ServerError, ServerResult, ValidationResult, Value, Variables,
};
use opentelemetry::KeyValue;
use tracing::{field::Empty, Instrument};

use super::{context::RequestContext, documents::Prepared, facts::RequestFacts};
use crate::{
    config::FieldSpans,
    telemetry::{metrics::Instruments, FIELD_PATH},
};

/// Factory registered on the schema (`telemetry.field_timing = "objects"` or
/// `field_spans = "all"`). One extension only: async-graphql runs every field of every request
/// through each registered extension's `resolve` hook (a boxed future per field per extension),
/// and a second extension cost ~20 % of an L1 hit's instructions.
pub struct Observe {
    /// Field span policy.
    pub field_spans: FieldSpans,
}

impl ExtensionFactory for Observe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ObserveExtension {
            field_spans: self.field_spans,
        })
    }
}

struct ObserveExtension {
    field_spans: FieldSpans,
}

/// What the pipeline hands the validation hook with a prepared document: the verdict when the
/// same document, operation and variables passed before (validation is skipped), or what the
/// hook needs to remember a new pass.
pub struct Validation {
    pending: Mutex<Option<Pending>>,
}

struct Pending {
    prepared: Arc<Prepared>,
    operation: Option<String>,
    variables: Variables,
    known: Option<ValidationResult>,
}

impl Validation {
    /// The validation state of `prepared` run as `operation` with `variables`.
    pub fn of(prepared: Arc<Prepared>, operation: Option<String>, variables: &Variables) -> Self {
        let known = prepared.verdict(operation.as_deref(), variables);
        Validation {
            pending: Mutex::new(Some(Pending {
                prepared,
                operation,
                variables: if known.is_some() {
                    Variables::default()
                } else {
                    variables.clone()
                },
                known,
            })),
        }
    }

    /// Remembers a pass proven otherwise (an answer with data from an engine without this
    /// hook), unless one was already known.
    pub fn passed(&self) {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(p) = pending.filter(|p| p.known.is_none()) {
            let passed = ValidationResult {
                cache_control: Default::default(),
                complexity: 0,
                depth: 0,
            };
            p.prepared.remember(p.operation, p.variables, passed);
        }
    }
}

/// Marks a span as failed with the first error's message, one `exception` event per error.
pub(crate) fn mark_errors(span: &tracing::Span, errors: &[ServerError]) {
    if let Some(first) = errors.first() {
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_message", first.message.as_str());
        for error in errors {
            let code = error
                .extensions
                .as_ref()
                .and_then(|e| e.get("code"))
                .map(|c| c.to_string())
                .unwrap_or_default();
            tracing::event!(parent: span, tracing::Level::WARN, exception.type = %code.trim_matches('"'), exception.message = %error.message, "exception");
        }
    }
}

/// The operation span (its name and type from the prepared document when known).
pub(crate) fn operation_span(
    facts: &RequestFacts,
    operation_name: Option<&str>,
) -> (tracing::Span, String, String) {
    let (kind, name) = facts.operation().unwrap_or_else(|| {
        (
            "query".into(),
            operation_name.unwrap_or_default().to_string(),
        )
    });
    let span = tracing::info_span!(
        "graphql.operation",
        otel.name = %if name.is_empty() { kind.clone() } else { format!("{kind} {name}") },
        graphql.operation.type = %kind,
        graphql.operation.name = %name,
        otel.status_code = Empty,
        otel.status_message = Empty,
    );
    (span, kind, name)
}

/// Marks the operation span's errors and records the operation duration.
pub(crate) fn finish_operation(
    span: &tracing::Span,
    response: &async_graphql::Response,
    instruments: Option<&Instruments>,
    kind: String,
    name: String,
    started: Instant,
) {
    mark_errors(span, &response.errors);
    if let Some(instruments) = instruments {
        instruments.operation_duration.record(
            started.elapsed().as_secs_f64(),
            &[
                KeyValue::new("graphql.operation.type", kind),
                KeyValue::new(
                    "graphql.operation.name",
                    instruments.operation_names.label(&name),
                ),
            ],
        );
    }
}

#[async_trait::async_trait]
impl Extension for ObserveExtension {
    /// The operation span and duration, around execution proper (validation has its own span).
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> async_graphql::Response {
        let Some(request) = ctx.data_opt::<RequestContext>() else {
            return next.run(ctx, operation_name).await;
        };
        let (span, kind, name) = operation_span(&request.facts, operation_name);
        let started = Instant::now();
        let response = next.run(ctx, operation_name).instrument(span.clone()).await;
        let instruments = request.instruments.as_deref();
        finish_operation(&span, &response, instruments, kind, name, started);
        response
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let span = tracing::debug_span!(
            "graphql.validate",
            otel.name = "graphql.validate",
            graphql.validation.reused = Empty,
            otel.status_code = Empty,
            otel.status_message = Empty
        );
        let pending = ctx
            .data_opt::<Validation>()
            .and_then(|v| v.pending.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(result) = pending.as_ref().and_then(|p| p.known) {
            // The same document, operation and variables passed before: the verdict is the same.
            span.record("graphql.validation.reused", true);
            return Ok(result);
        }
        span.record("graphql.validation.reused", false);
        let result = next.run(ctx).instrument(span.clone()).await;
        match &result {
            Err(errors) => mark_errors(&span, errors),
            Ok(passed) => {
                if let Some(p) = pending {
                    p.prepared.remember(p.operation, p.variables, *passed);
                }
            }
        }
        result
    }

    // Written out instead of `async fn` so that a leaf field (most fields: a day of slots is
    // hundreds) costs one small boxed future, not this hook's whole state machine.
    fn resolve<'life0, 'life1, 'life2, 'life3, 'life4, 'async_trait>(
        &'life0 self,
        ctx: &'life1 ExtensionContext<'life2>,
        info: ResolveInfo<'life3>,
        next: NextResolve<'life4>,
    ) -> Pin<Box<dyn Future<Output = ServerResult<Option<Value>>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        'life4: 'async_trait,
        Self: 'async_trait,
    {
        // Root fields are observed by `graphql::Rooted`, with or without this extension. The
        // engine also runs each item of a list through this hook (parent type `[Slot!]`, the
        // list's field name): items are not fields, and timing them was most of this hook's
        // work on a day of slots.
        if info.is_for_introspection
            || info.path_node.parent.is_none()
            || matches!(info.path_node.segment, QueryPathSegment::Index(_))
        {
            return Box::pin(next.run(ctx, info));
        }
        let want_span = self.field_spans == FieldSpans::All;
        if !want_span {
            // Leaves are reads of already loaded data: nothing to time or trace by default.
            let name = info
                .return_type
                .trim_matches(|c| c == '[' || c == ']' || c == '!');
            let leaf = ctx
                .schema_env
                .registry
                .types
                .get(name)
                .is_some_and(|t| t.is_leaf());
            if leaf {
                return Box::pin(next.run(ctx, info));
            }
        }
        Box::pin(measured(ctx, info, next, want_span))
    }
}

/// A non-root field that is timed (and, per `field_spans`, traced).
async fn measured(
    ctx: &ExtensionContext<'_>,
    info: ResolveInfo<'_>,
    next: NextResolve<'_>,
    want_span: bool,
) -> ServerResult<Option<Value>> {
    let parent_type = info.parent_type.to_string();
    let field_name = info.name.to_string();
    let path: Arc<str> = Arc::from(info.path_node.to_string());
    let request = ctx.data_opt::<RequestContext>();
    let run = next.run(ctx, info);
    observe_field(
        request,
        &parent_type,
        &field_name,
        path,
        false,
        want_span,
        run,
    )
    .await
}

/// Times one field into the request summary and the field histogram, traces it when `want_span`,
/// scopes the field path the N+1 detector reports, and for a root field turns a panic below it
/// into that field's generic error (the other root fields still answer, the process goes on).
pub(crate) async fn observe_field(
    request: Option<&RequestContext>,
    parent_type: &str,
    field_name: &str,
    path: Arc<str>,
    is_root: bool,
    want_span: bool,
    run: impl Future<Output = ServerResult<Option<Value>>>,
) -> ServerResult<Option<Value>> {
    if is_root {
        if let Some(request) = request {
            request.facts.add_root_field(field_name);
        }
    }
    let span = if want_span {
        tracing::debug_span!(
            "graphql.field",
            otel.name = %format_args!("{parent_type}.{field_name}"),
            graphql.field.path = %path,
            graphql.field.parent_type = %parent_type,
            graphql.field.name = %field_name,
            otel.status_code = Empty,
            otel.status_message = Empty,
        )
    } else {
        tracing::Span::none()
    };
    let started = Instant::now();
    let run = FIELD_PATH.scope(path.clone(), run.instrument(span.clone()));
    let result = if is_root {
        match futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await {
            Ok(result) => result,
            Err(_) => {
                tracing::error!(graphql.field.path = %path, "a resolver panicked");
                Err(crate::error::ErrorCode::InternalServerError
                    .server_error("internal server error"))
            }
        }
    } else {
        run.await
    };
    let took = started.elapsed();
    if let Err(error) = &result {
        mark_errors(&span, std::slice::from_ref(error));
    }
    if let Some(request) = request {
        request.facts.record_field(&path, took);
        if let Some(instruments) = &request.instruments {
            instruments.field_duration.record(
                took.as_secs_f64(),
                &[
                    KeyValue::new("graphql.field.parent_type", parent_type.to_string()),
                    KeyValue::new("graphql.field.name", field_name.to_string()),
                ],
            );
        }
    }
    result
}
