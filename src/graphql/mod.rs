//! The GraphQL schema: one module per domain merged into the roots, the per-request context,
//! DataLoaders, scalars, and the mapping of every error to a stable `extensions.code`.

pub mod auth_context;
pub mod availability;
pub mod context;
pub mod dashboard;
pub mod documents;
pub mod extension;
pub mod facts;
pub mod leaves;
pub mod limits;
pub mod live;
pub mod loaders;
pub mod nulls;
pub mod order;
pub mod reservations;
pub mod root;
pub mod scalars;
pub mod share;
pub mod types;

use async_graphql::{MergedObject, MergedSubscription, Schema, SchemaBuilder};

use crate::{
    config::{FieldSpans, FieldTiming},
    error::ErrorCode,
};
pub use root::Rooted;

/// The query root: every domain's queries merged. Exported as `Query`, the contract's name.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    auth_context::AuthQuery,
    dashboard::DashboardQuery,
    availability::AvailabilityQuery,
    reservations::ReservationQuery,
);

/// The mutation root, exported as `Mutation`.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    reservations::ReservationMutation,
    auth_context::AuthMutation,
);

/// The subscription root, exported as `Subscription`: live answers fed by the cache's changes.
#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(availability::AvailabilitySubscription);

/// The executable schema.
pub type BffSchema = Schema<Rooted<QueryRoot>, Rooted<MutationRoot>, SubscriptionRoot>;

/// Schema settings that differ between profiles.
#[derive(Debug, Clone)]
pub struct SchemaOptions {
    /// Answer `__schema`/`__type`.
    pub introspection: bool,
    /// Which fields get spans.
    pub field_spans: FieldSpans,
    /// Which fields feed the field histogram.
    pub field_timing: FieldTiming,
    /// "Did you mean" hints in validation errors.
    pub suggestions: bool,
    /// Query limits.
    pub limits: crate::config::LimitSettings,
}

fn builder(
    field_spans: FieldSpans,
) -> SchemaBuilder<Rooted<QueryRoot>, Rooted<MutationRoot>, SubscriptionRoot> {
    Schema::build(
        Rooted::new(QueryRoot::default(), field_spans),
        Rooted::new(MutationRoot::default(), field_spans),
        SubscriptionRoot::default(),
    )
}

impl SchemaOptions {
    /// Whether the schema carries the extension (validate spans, validation reuse, non-root
    /// field timing); without it only root fields are observed (by `Rooted`).
    pub fn engine_hook(&self) -> bool {
        crate::config::field_hook(self.field_timing, self.field_spans)
    }
}

/// Builds the schema.
pub fn build_schema(options: SchemaOptions) -> BffSchema {
    let builder = builder(options.field_spans)
        .limit_complexity(options.limits.max_complexity)
        .limit_recursive_depth(options.limits.max_recursive_depth);
    let builder = if options.engine_hook() {
        builder.extension(extension::Observe {
            field_spans: options.field_spans,
        })
    } else {
        builder
    };
    // Every field on its own only when each gets a span.
    let builder = if options.field_spans == FieldSpans::All {
        builder
    } else {
        builder.data(leaves::Direct)
    };
    let builder = if options.introspection {
        builder
    } else {
        builder.disable_introspection()
    };
    let builder = if options.suggestions {
        builder
    } else {
        builder.disable_suggestions()
    };
    builder.finish()
}

/// The operation of `document` that runs: the one `operationName` names, or the only one.
pub fn chosen_operation<'a>(
    document: &'a async_graphql::parser::types::ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a async_graphql::Positioned<async_graphql::parser::types::OperationDefinition>> {
    use async_graphql::parser::types::DocumentOperations;
    match (&document.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        _ => None,
    }
}

/// The variables the operation runs with: a variable it declares with a default and the request
/// leaves out gets that default (the spec's CoerceVariableValues). async-graphql 7.2 applies
/// defaults to arguments but decides `@skip`/`@include` on the variables as sent, so without this
/// an omitted `$details: Boolean = true` would count as false. Borrowed when nothing is missing.
pub fn with_defaults<'a>(
    document: &async_graphql::parser::types::ExecutableDocument,
    name: Option<&str>,
    variables: &'a async_graphql::Variables,
) -> std::borrow::Cow<'a, async_graphql::Variables> {
    let mut filled = std::borrow::Cow::Borrowed(variables);
    let Some(operation) = chosen_operation(document, name) else {
        return filled;
    };
    for definition in &operation.node.variable_definitions {
        let definition = &definition.node;
        if let Some(default) = &definition.default_value {
            if !variables.contains_key(&definition.name.node) {
                filled
                    .to_mut()
                    .insert(definition.name.node.clone(), default.node.clone());
            }
        }
    }
    filled
}

/// The SDL `padel-bff schema` prints and `schema.graphql` holds.
pub fn sdl() -> String {
    builder(FieldSpans::Io).finish().sdl()
}

/// Gives every error a code: resolvers set theirs; parse, validation and input-coercion errors
/// raised by the engine get the conventional ones.
pub fn assign_error_codes(response: &mut async_graphql::Response) {
    let request_level = response.data == async_graphql::Value::Null;
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if has_code {
            continue;
        }
        let message = error.message.as_str();
        let code = if message.contains("Query is too complex")
            || message.contains("Query is nested too deep")
            || message.contains("recursive depth")
            || message.contains("recursion depth")
        {
            ErrorCode::QueryTooComplex
        } else if message.contains("Invalid value for argument")
            || message.contains("Failed to parse")
            || message.contains("Invalid value for variable")
            || message.contains("Variable") && message.contains("of type")
            || message.contains("Expected input type")
            || !error.path.is_empty()
            || !request_level
        {
            ErrorCode::BadUserInput
        } else if error.locations.is_empty() && message.contains("parse")
            || message.starts_with(" --> ")
        {
            ErrorCode::GraphqlParseFailed
        } else {
            ErrorCode::GraphqlValidationFailed
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code.as_str());
    }
}
