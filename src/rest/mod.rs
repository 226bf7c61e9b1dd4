//! The platform's BFF URLs (`/api/bff/…`), each backed by one persisted GraphQL operation of
//! `config/rest/` and run through the same pipeline as `/graphql` (`http::rest` is the adapter).
//! This module owns the route table ([`ROUTES`]), the endpoints it resolves to against the schema
//! ([`endpoints`]: each parameter's variable type, requiredness and default read from the
//! document), the query string's coercion to the operation's variables (`coerce`), and the
//! OpenAPI document generated from all of that (`openapi`). Nothing here knows an operation by
//! name: adding a URL is one `.graphql` file and one [`Route`].

mod coerce;
pub mod openapi;
mod types;

use std::sync::LazyLock;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationDefinition};

pub use coerce::coerce;
use types::{SchemaTypes, ValueType};

/// One platform URL and the persisted operation behind it.
#[derive(Debug)]
pub struct Route {
    /// The path, trailing slash included, as the platform's frontends call it.
    pub path: &'static str,
    /// The OpenAPI `operationId`.
    pub operation_id: &'static str,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// The file under `config/rest/` (named in the OpenAPI document).
    pub file: &'static str,
    /// The persisted GraphQL document (one operation).
    pub document: &'static str,
    /// The query-string parameters, each bound to one of the operation's variables.
    pub parameters: &'static [Parameter],
}

/// One query-string parameter. Its type, whether it is required and its default come from the
/// variable's declaration in the document; only what the variable type cannot say is here.
#[derive(Debug)]
pub struct Parameter {
    /// The name in the query string (`courts[]` for a list: the key repeats).
    pub name: &'static str,
    /// The operation's variable it sets.
    pub variable: &'static str,
    /// For the OpenAPI document.
    pub description: &'static str,
    /// Inclusive bounds of an `Int` the resolver enforces (checked here too, and published).
    pub range: Option<(i64, i64)>,
}

/// The route table: the platform's three BFF URLs.
pub static ROUTES: [Route; 3] = [
    Route {
        path: "/api/bff/bi/analytics/club/",
        operation_id: "clubAnalytics",
        summary: "A club's analytics for a period (the GraphQL `dashboard`)",
        file: "config/rest/club_analytics.graphql",
        document: include_str!("../../config/rest/club_analytics.graphql"),
        parameters: &[
            Parameter {
                name: "club",
                variable: "clubId",
                description: "The club's id. Needs MANAGER of the club, OWNER or ADMIN of its \
                              organization, or a superuser.",
                range: None,
            },
            Parameter {
                name: "period",
                variable: "period",
                description: "The period holding `date`: the day, its ISO week, its month or its \
                              year.",
                range: None,
            },
            Parameter {
                name: "date",
                variable: "date",
                description: "A date in the period (default: today in the club's time zone). \
                              Within `limits.date_days_back` / `limits.date_days_ahead` of \
                              the club's today (730 / 365 by default), else 400.",
                range: None,
            },
        ],
    },
    Route {
        path: "/api/bff/auth/context/",
        operation_id: "authContext",
        summary: "The signed-in user's profile, organizations, clubs and permissions (the \
                  GraphQL `authContext`)",
        file: "config/rest/auth_context.graphql",
        document: include_str!("../../config/rest/auth_context.graphql"),
        parameters: &[],
    },
    Route {
        path: "/api/bff/bi/availability/bulk/",
        operation_id: "availabilityBulk",
        summary: "Slots of many courts of a club on a date (the GraphQL `courtAvailability`)",
        file: "config/rest/availability_bulk.graphql",
        document: include_str!("../../config/rest/availability_bulk.graphql"),
        parameters: &[
            Parameter {
                name: "club",
                variable: "clubId",
                description: "The club's id.",
                range: None,
            },
            Parameter {
                name: "date",
                variable: "date",
                description: "The date, within `limits.date_days_back` / \
                              `limits.date_days_ahead` of the club's today (730 / 365 by \
                              default), else 400.",
                range: None,
            },
            Parameter {
                name: "courts[]",
                variable: "courtIds",
                description: "Only these courts (`courts[]=1&courts[]=2`), each an active court \
                              of the club (else 400); every active court when absent.",
                range: None,
            },
            Parameter {
                name: "slot",
                variable: "slotMinutes",
                description: "The slot length in minutes.",
                range: Some((
                    *crate::domain::slots::SLOT_MINUTES_RANGE.start() as i64,
                    *crate::domain::slots::SLOT_MINUTES_RANGE.end() as i64,
                )),
            },
        ],
    },
];

/// A route resolved against the schema: its document parsed, each parameter typed by its
/// variable's declaration.
#[derive(Debug)]
pub struct Endpoint {
    /// The route.
    pub route: &'static Route,
    /// The operation's name in the document (what metrics and the monitoring API show).
    pub operation_name: String,
    /// The parsed document (for the response schema).
    document: ExecutableDocument,
    /// The parameters, in the route's order.
    params: Vec<Param>,
}

/// A parameter with its variable's declaration.
#[derive(Debug)]
struct Param {
    spec: &'static Parameter,
    value: ValueType,
    /// Whether the variable is a list (the key may repeat).
    list: bool,
    /// Non-null without a default: the parameter must be given.
    required: bool,
    /// The declared default, as the URL would spell it.
    default: Option<serde_json::Value>,
}

impl Endpoint {
    /// The operation the document holds.
    fn operation(&self) -> &OperationDefinition {
        &crate::graphql::chosen_operation(&self.document, None)
            .expect("resolve checked there is one operation")
            .node
    }
}

/// The endpoints and the schema's types they were resolved with, built once.
struct Table {
    types: SchemaTypes,
    endpoints: Vec<Endpoint>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let types = SchemaTypes::from_sdl(&crate::graphql::sdl());
    let endpoints = ROUTES
        .iter()
        .map(|route| resolve(route, &types).unwrap_or_else(|e| panic!("{}: {e}", route.file)))
        .collect();
    Table { types, endpoints }
});

/// Every endpoint. The documents are compiled in and a unit test resolves them, so this cannot
/// fail at run time.
pub fn endpoints() -> &'static [Endpoint] {
    &TABLE.endpoints
}

/// The endpoint served at `path`.
pub fn endpoint(path: &str) -> Option<&'static Endpoint> {
    endpoints().iter().find(|e| e.route.path == path)
}

/// Whether `path` is one of the BFF URLs (the edge charges their client address like `/graphql`).
pub fn is_route(path: &str) -> bool {
    ROUTES.iter().any(|r| r.path == path)
}

/// Parses a route's document and types its parameters by the variables they set.
fn resolve(route: &'static Route, types: &SchemaTypes) -> Result<Endpoint, String> {
    let document = async_graphql::parser::parse_query(route.document).map_err(|e| e.to_string())?;
    let operation = crate::graphql::chosen_operation(&document, None)
        .ok_or("the document must hold exactly one operation")?;
    let operation_name = match &document.operations {
        DocumentOperations::Multiple(ops) => ops.keys().next().map(|n| n.to_string()),
        DocumentOperations::Single(_) => None,
    }
    .ok_or("the operation needs a name (metrics and the monitoring API show it)")?;
    let mut params = Vec::with_capacity(route.parameters.len());
    for spec in route.parameters {
        let definition = operation
            .node
            .variable_definitions
            .iter()
            .find(|v| v.node.name.node.as_str() == spec.variable)
            .ok_or_else(|| format!("no variable ${} for parameter {}", spec.variable, spec.name))?;
        let declared = &definition.node.var_type.node;
        let (named, list) = types::unwrap_list(declared)?;
        let value = types.value_type(named, spec.range)?;
        let default = definition
            .node
            .default_value
            .as_ref()
            .map(|d| types::url_default(&d.node, &value));
        params.push(Param {
            spec,
            value,
            list,
            required: !declared.nullable && default.is_none(),
            default,
        });
    }
    for definition in &operation.node.variable_definitions {
        let name = definition.node.name.node.as_str();
        let bound = route.parameters.iter().any(|p| p.variable == name);
        let optional =
            definition.node.var_type.node.nullable || definition.node.default_value.is_some();
        if !bound && !optional {
            return Err(format!("the required variable ${name} has no parameter"));
        }
    }
    Ok(Endpoint {
        route,
        operation_name,
        document,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_resolves_against_the_schema() {
        assert_eq!(endpoints().len(), ROUTES.len());
        let analytics = endpoint("/api/bff/bi/analytics/club/").unwrap();
        let required: Vec<_> = analytics
            .params
            .iter()
            .map(|p| (p.spec.name, p.required))
            .collect();
        assert_eq!(
            required,
            [("club", true), ("period", false), ("date", false)]
        );
        assert_eq!(
            analytics.params[1].default,
            Some(serde_json::json!("month"))
        );
        let bulk = endpoint("/api/bff/bi/availability/bulk/").unwrap();
        assert!(bulk.params[2].list && !bulk.params[2].required);
        assert_eq!(bulk.params[3].default, Some(serde_json::json!(90)));
        assert!(is_route("/api/bff/auth/context/") && !is_route("/api/bff/auth/context"));
    }
}
