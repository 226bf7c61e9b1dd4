//! The schema's one extension: operation, parse and validation spans; one span per field that
//! does work (configurable); a duration histogram for every non-leaf field; root fields and slow
//! fields for the request summary; the field path that the N+1 detector reports. It also applies
//! the query limits and the rate-limit charge, and serves prepared documents
//! (`graphql::documents`).

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    time::Instant,
};

use async_graphql::{
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
        NextPrepareRequest, NextResolve, NextValidation, ResolveInfo,
    },
    parser::types::{ExecutableDocument, OperationType},
    QueryPathSegment, Request, Response, ServerError, ServerResult, ValidationResult, Value,
    Variables,
};
use opentelemetry::KeyValue;
use tracing::{field::Empty, Instrument};

use super::{metrics::Instruments, FIELD_PATH};
use crate::{
    config::LimitSettings,
    graphql::{
        context::RequestContext,
        documents::{DocumentCache, Prepared},
        limits::{charge, check, check_text},
    },
};

/// Which fields get a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldSpans {
    /// Root fields, where the operations run; their I/O (cache lookups, DataLoader batches,
    /// SQL) has spans of its own. Other non-leaf fields feed the histogram only.
    Io,
    /// Every field.
    All,
    /// None.
    None,
}

impl FieldSpans {
    /// Parses the `telemetry.field_spans` setting.
    pub fn parse(text: &str) -> FieldSpans {
        match text {
            "all" => FieldSpans::All,
            "none" => FieldSpans::None,
            _ => FieldSpans::Io,
        }
    }
}

/// Which fields feed the field-duration histogram (`telemetry.field_timing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldTiming {
    /// Root fields and every field returning an object or a list (an engine hook on every field).
    Objects,
    /// Root fields only; no engine hook.
    Root,
}

impl FieldTiming {
    /// Parses the `telemetry.field_timing` setting.
    pub fn parse(text: &str) -> FieldTiming {
        match text {
            "root" => FieldTiming::Root,
            _ => FieldTiming::Objects,
        }
    }
}

/// Factory registered on the schema: its one extension. The query limits, the rate-limit charge
/// and the prepared-document cache live here too, because async-graphql runs every field of every
/// request through each registered extension's `resolve` hook (a boxed future per field per
/// extension): a second extension cost ~20 % of an L1 hit's instructions.
pub struct Telemetry {
    /// Field span policy.
    pub field_spans: FieldSpans,
    /// Query limits.
    pub limits: LimitSettings,
    /// Whether introspection is on (a pure introspection query may nest deeper).
    pub introspection: bool,
    /// Documents already parsed and checked.
    pub documents: Arc<DocumentCache>,
}

impl ExtensionFactory for Telemetry {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(TelemetryExtension {
            field_spans: self.field_spans,
            limits: self.limits.clone(),
            introspection: self.introspection,
            documents: self.documents.clone(),
            operation: OnceLock::new(),
            pending: Mutex::new(None),
        })
    }
}

/// One request's pass through the pipeline (the factory makes one per request).
struct TelemetryExtension {
    field_spans: FieldSpans,
    limits: LimitSettings,
    introspection: bool,
    documents: Arc<DocumentCache>,
    /// The request's `operationName` (part of the validation key).
    operation: OnceLock<Option<String>>,
    /// Between parse and validation: the prepared document and what validation may reuse.
    pending: Mutex<Option<PendingValidation>>,
}

struct PendingValidation {
    prepared: Arc<Prepared>,
    operation: Option<String>,
    variables: Variables,
    known: Option<ValidationResult>,
}

fn operation_type(kind: OperationType) -> &'static str {
    match kind {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

fn mark_errors(span: &tracing::Span, errors: &[ServerError]) {
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

#[async_trait::async_trait]
impl Extension for TelemetryExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let _ = self.operation.set(request.operation_name.clone());
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let prepared = prepare_document(
            &self.documents,
            &self.limits,
            self.introspection,
            ctx.data_opt::<RequestContext>(),
            query,
            next.run(ctx, query, variables),
        )
        .await?;
        let document = prepared.document.clone();
        if let Some(operation) = self.operation.get().cloned() {
            let known = prepared.verdict(operation.as_deref(), variables);
            *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(PendingValidation {
                prepared,
                operation,
                variables: if known.is_some() {
                    Variables::default()
                } else {
                    variables.clone()
                },
                known,
            });
        }
        Ok(document)
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
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
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

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let request = ctx.data_opt::<RequestContext>();
        let (span, kind, name) = operation_span(request, operation_name);
        let started = Instant::now();
        let response = next.run(ctx, operation_name).instrument(span.clone()).await;
        let instruments = request.and_then(|r| r.instruments.as_deref());
        finish_operation(&span, &response, instruments, kind, name, started);
        response
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
        Box::pin(self.measured(ctx, info, next, want_span))
    }
}

impl TelemetryExtension {
    /// A non-root field that is timed (and, per `field_spans`, traced).
    async fn measured(
        &self,
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
            request.stats.add_root_field(field_name);
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
        request.stats.record_field(&path, took);
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

/// Parses the document (or takes the prepared one of the same text), applies the query limits,
/// charges the rate limit and notes which operation runs. Shared by the extension's parse hook
/// and, with `field_timing = "root"` (no extension), by the HTTP handler before it executes.
pub(crate) async fn prepare_document(
    documents: &DocumentCache,
    limits: &LimitSettings,
    introspection: bool,
    request: Option<&RequestContext>,
    query: &str,
    parse: impl Future<Output = ServerResult<ExecutableDocument>>,
) -> ServerResult<Arc<Prepared>> {
    let span = tracing::debug_span!(
        "graphql.parse",
        otel.name = "graphql.parse",
        graphql.document.hash = Empty,
        graphql.document.prepared = Empty,
    );
    let prepared = match documents.lookup(query) {
        Ok(prepared) => {
            span.record(
                "graphql.document.hash",
                format_args!("{:016x}", prepared.hash),
            );
            span.record("graphql.document.prepared", true);
            prepared
        }
        Err(hash) => {
            span.record("graphql.document.hash", format_args!("{hash:016x}"));
            span.record("graphql.document.prepared", false);
            check_text(query, limits)?;
            if let Some(error) = documents.refusal(hash, query) {
                return Err(error);
            }
            let document = match parse.instrument(span).await {
                Ok(document) => document,
                Err(error) => {
                    documents.refuse(hash, query, &error);
                    return Err(error);
                }
            };
            if let Err(error) = check(&document, limits, introspection) {
                documents.refuse(hash, query, &error);
                return Err(error);
            }
            documents.insert(hash, query, document)
        }
    };
    if let Some(request) = request {
        charge(request, prepared.has_mutation).await?;
        // The operation that runs: the one `operationName` names, else the only one.
        let wanted = request.operation_name.as_deref();
        let chosen = prepared
            .document
            .operations
            .iter()
            .find(|(name, _)| match wanted {
                Some(wanted) => name.is_some_and(|n| n.as_str() == wanted),
                None => true,
            });
        if let Some((name, operation)) = chosen {
            request.stats.set_operation(
                operation_type(operation.node.ty),
                name.map(|n| n.as_str()).unwrap_or(""),
            );
        }
    }
    Ok(prepared)
}

/// The operation span (its name and type from the parsed document when known).
pub(crate) fn operation_span(
    request: Option<&RequestContext>,
    operation_name: Option<&str>,
) -> (tracing::Span, String, String) {
    let (kind, name) = request
        .and_then(|r| r.stats.operation())
        .unwrap_or_else(|| {
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
    response: &Response,
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
