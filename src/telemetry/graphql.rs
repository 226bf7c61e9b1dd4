//! The GraphQL telemetry extension: operation, parse and validation spans; one span per field that
//! does work (configurable); a duration histogram for every field; root fields and slow fields
//! for the request summary; the field path that the N+1 detector reports.

use std::{sync::Arc, time::Instant};

use async_graphql::{
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextResolve,
        NextValidation, ResolveInfo,
    },
    parser::types::{ExecutableDocument, OperationType},
    Response, ServerError, ServerResult, ValidationResult, Value, Variables,
};
use opentelemetry::KeyValue;
use tracing::{field::Empty, Instrument};

use super::FIELD_PATH;
use crate::{cache::keys::fnv1a64, graphql::context::RequestContext};

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

/// Factory registered on the schema.
pub struct Telemetry {
    /// Field span policy.
    pub field_spans: FieldSpans,
}

impl ExtensionFactory for Telemetry {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(TelemetryExtension {
            field_spans: self.field_spans,
        })
    }
}

struct TelemetryExtension {
    field_spans: FieldSpans,
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
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let span = tracing::debug_span!("graphql.parse", otel.name = "graphql.parse", graphql.document.hash = %format!("{:016x}", fnv1a64(query.as_bytes())));
        let document = next.run(ctx, query, variables).instrument(span).await?;
        if let Some(request) = ctx.data_opt::<RequestContext>() {
            // The operation that runs: the one `operationName` names, else the only one.
            let wanted = request.operation_name.as_deref();
            let chosen = document.operations.iter().find(|(name, _)| match wanted {
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
            otel.status_code = Empty,
            otel.status_message = Empty
        );
        let result = next.run(ctx).instrument(span.clone()).await;
        if let Err(errors) = &result {
            mark_errors(&span, errors);
        }
        result
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let (kind, name) = ctx
            .data_opt::<RequestContext>()
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
        let started = Instant::now();
        let response = next.run(ctx, operation_name).instrument(span.clone()).await;
        mark_errors(&span, &response.errors);
        if let Some(request) = ctx.data_opt::<RequestContext>() {
            if let Some(instruments) = &request.instruments {
                instruments.operation_duration.record(
                    started.elapsed().as_secs_f64(),
                    &[
                        KeyValue::new("graphql.operation.type", kind),
                        KeyValue::new("graphql.operation.name", name),
                    ],
                );
            }
        }
        response
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.is_for_introspection {
            return next.run(ctx, info).await;
        }
        let is_root = info.path_node.parent.is_none();
        let leaf = {
            let name = info
                .return_type
                .trim_matches(|c| c == '[' || c == ']' || c == '!');
            ctx.schema_env
                .registry
                .types
                .get(name)
                .is_some_and(|t| t.is_leaf())
        };
        // Leaves are reads of already loaded data: nothing to time or trace by default, and they
        // are most of the fields (a day of slots is hundreds).
        let want_span = match self.field_spans {
            FieldSpans::All => true,
            FieldSpans::Io => is_root,
            FieldSpans::None => false,
        };
        if leaf && !is_root && !want_span {
            return next.run(ctx, info).await;
        }
        let request = ctx.data_opt::<RequestContext>();
        if is_root {
            if let Some(request) = request {
                request.stats.add_root_field(info.name);
            }
        }
        let parent_type = info.parent_type.to_string();
        let field_name = info.name.to_string();
        let path: Arc<str> = Arc::from(info.path_node.to_string());
        let span = if want_span {
            tracing::debug_span!(
                "graphql.field",
                otel.name = %format!("{parent_type}.{field_name}"),
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
        let run = FIELD_PATH.scope(path.clone(), next.run(ctx, info).instrument(span.clone()));
        let result = if is_root {
            // A panic below a root field fails that field alone with the generic error; the
            // other root fields of the operation still answer and the process goes on.
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
                        KeyValue::new("graphql.field.parent_type", parent_type),
                        KeyValue::new("graphql.field.name", field_name),
                    ],
                );
            }
        }
        result
    }
}
