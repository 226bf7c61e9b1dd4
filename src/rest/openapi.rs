//! The OpenAPI 3.1 document of the BFF URLs, generated from the route table, the documents'
//! variable declarations and their selections over the schema: nothing in it is written by hand
//! but the prose. Parameters are required exactly when their variable is non-null without a
//! default, and carry exactly the constraints `coerce` enforces; each 200 answer's schema is the
//! selection's shape (every selected field required, nullable where the schema says so, no
//! other property). Served at `GET /api/openapi.json` and committed as `openapi.json` (a test
//! compares the two).

use std::sync::LazyLock;

use async_graphql::parser::types::{
    BaseType, ExecutableDocument, Field, Selection, SelectionSet, Type, TypeKind,
};
use serde_json::{json, Map, Value};

use super::{
    endpoints,
    types::{SchemaTypes, ValueType, ID_PATTERN},
    Endpoint, Param, TABLE,
};
use crate::error::ErrorCode;

/// The statuses an error answer may have (the platform's mapping; CONFLICT belongs to
/// mutations, which no URL runs today, and is listed with the rest).
const ERROR_STATUSES: [(&str, &str, &str); 8] = [
    (
        "400",
        "BadRequest",
        "A parameter is missing or malformed, or the input breaks a rule (BAD_USER_INPUT).",
    ),
    (
        "401",
        "Unauthenticated",
        "No valid bearer token, or an unknown or inactive user (UNAUTHENTICATED).",
    ),
    (
        "403",
        "Forbidden",
        "Signed in, but the role does not allow this (FORBIDDEN).",
    ),
    (
        "404",
        "NotFound",
        "No such thing, or the caller may not know it exists (NOT_FOUND).",
    ),
    (
        "409",
        "Conflict",
        "The input clashes with the current state (CONFLICT).",
    ),
    (
        "429",
        "RateLimited",
        "Too many requests: retry after `Retry-After` seconds (RATE_LIMITED).",
    ),
    (
        "500",
        "InternalError",
        "Anything else; the details are in the logs under `requestId`.",
    ),
    (
        "503",
        "Unavailable",
        "A dependency (the database) is unavailable; retry later (SERVICE_UNAVAILABLE).",
    ),
];

static JSON: LazyLock<String> = LazyLock::new(|| {
    let mut text = serde_json::to_string_pretty(&document()).expect("JSON");
    text.push('\n');
    text
});

/// The document as served and committed (pretty JSON, keys sorted, a final newline).
pub fn json() -> &'static str {
    &JSON
}

/// The whole document.
pub fn document() -> Value {
    let types = &TABLE.types;
    let mut paths = Map::new();
    for endpoint in endpoints() {
        paths.insert(
            endpoint.route.path.to_string(),
            json!({ "get": operation(endpoint, types) }),
        );
    }
    let mut responses = Map::new();
    for (_, name, description) in ERROR_STATUSES {
        let mut response = json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
        });
        if name == "RateLimited" {
            response["headers"] = json!({ "Retry-After": {
                "description": "Seconds until a request may succeed.",
                "required": true,
                "schema": { "type": "integer", "minimum": 1 },
            }});
        }
        responses.insert(name.to_string(), response);
    }
    responses.insert(
        "NotModified".into(),
        json!({
            "description": "The answer is unchanged: `If-None-Match` holds its tag.",
            "headers": { "ETag": { "$ref": "#/components/headers/ETag" } },
        }),
    );
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "padel-bff: the platform's BFF URLs",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The platform's BFF URLs, each one persisted GraphQL operation (`config/rest/`) run through the same pipeline as `POST /graphql`: bearer token, rate limit, query limits, both caches, telemetry. Answers are `{\"success\": true, \"data\": …}` (the operation's `data`) or `{\"success\": false, \"error\": {\"code\", \"message\", \"requestId\"}}`. Generated from the route table and the schema; do not edit.",
        },
        "security": [{ "bearerAuth": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
            },
            "headers": {
                "ETag": {
                    "description": "A strong tag of the answer's data: send it back in `If-None-Match` to get 304 while it is unchanged.",
                    "required": true,
                    "schema": { "type": "string", "pattern": "^\"[0-9a-f]{32}\"$" },
                },
            },
            "responses": responses,
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["success", "error"],
                    "additionalProperties": false,
                    "properties": {
                        "success": { "const": false },
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "requestId"],
                            "additionalProperties": false,
                            "properties": {
                                "code": { "type": "string", "enum": codes },
                                "message": { "type": "string" },
                                "requestId": { "type": "string", "description": "The request's `x-request-id`." },
                            },
                        },
                    },
                },
            },
        },
    })
}

/// One URL's `get`.
fn operation(endpoint: &Endpoint, types: &SchemaTypes) -> Value {
    let route = endpoint.route;
    let mut parameters: Vec<Value> = endpoint.params.iter().map(parameter).collect();
    parameters.push(json!({
        "name": "If-None-Match",
        "in": "header",
        "required": false,
        "description": "An `ETag` of an earlier answer: 304 without a body while the answer is unchanged.",
        "schema": { "type": "string" },
    }));
    let data = selection_schema(
        &endpoint.document,
        types,
        "Query",
        &[&endpoint.operation().selection_set.node],
    );
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({
            "description": "The operation's `data`.",
            "headers": { "ETag": { "$ref": "#/components/headers/ETag" } },
            "content": { "application/json": { "schema": {
                "type": "object",
                "required": ["success", "data"],
                "additionalProperties": false,
                "properties": { "success": { "const": true }, "data": data },
            }}},
        }),
    );
    responses.insert(
        "304".into(),
        json!({ "$ref": "#/components/responses/NotModified" }),
    );
    for (status, name, _) in ERROR_STATUSES {
        responses.insert(
            status.into(),
            json!({ "$ref": format!("#/components/responses/{name}") }),
        );
    }
    json!({
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": format!(
            "Runs `{}` of `{}`.",
            endpoint.operation_name, route.file
        ),
        "parameters": parameters,
        "responses": responses,
    })
}

/// A query-string parameter, with exactly the constraints the coercion enforces.
fn parameter(param: &Param) -> Value {
    let mut schema = match &param.value {
        ValueType::Id => json!({ "type": "string", "pattern": ID_PATTERN }),
        ValueType::Int { min, max } => json!({ "type": "integer", "minimum": min, "maximum": max }),
        ValueType::Float => json!({ "type": "number" }),
        ValueType::Boolean => json!({ "type": "boolean" }),
        ValueType::Text => json!({ "type": "string" }),
        ValueType::Date => json!({ "type": "string", "format": "date" }),
        ValueType::Enum(values) => {
            let lower: Vec<String> = values.iter().map(|v| v.to_ascii_lowercase()).collect();
            json!({ "type": "string", "enum": lower })
        }
    };
    if param.list {
        schema =
            json!({ "type": "array", "items": schema, "maxItems": super::coerce::MAX_LIST_ITEMS });
    }
    if let Some(default) = &param.default {
        schema["default"] = default.clone();
    }
    let mut value = json!({
        "name": param.spec.name,
        "in": "query",
        "required": param.required,
        "description": param.spec.description,
        "schema": schema,
    });
    if param.list {
        value["style"] = json!("form");
        value["explode"] = json!(true);
    }
    value
}

/// The JSON Schema of what a selection over `parent` answers: an object with every selected
/// response key, in the document's order, merged like the executor merges fields.
fn selection_schema(
    document: &ExecutableDocument,
    types: &SchemaTypes,
    parent: &str,
    sets: &[&SelectionSet],
) -> Value {
    let mut fields: Vec<(String, Vec<&Field>, bool)> = Vec::new();
    for set in sets {
        collect(document, set, true, &mut fields);
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (key, same, always) in &fields {
        let name = same[0].name.node.as_str();
        let schema = if name == "__typename" {
            json!({ "type": "string", "const": parent })
        } else {
            let definition = types
                .field(parent, name)
                .unwrap_or_else(|| panic!("{parent}.{name} is not in the schema"));
            let subsets: Vec<&SelectionSet> = same.iter().map(|f| &f.selection_set.node).collect();
            let mut schema = output_schema(document, types, &definition.ty.node, &subsets);
            if let Some(description) = &definition.description {
                schema = with_description(schema, &description.node);
            }
            schema
        };
        properties.insert(key.clone(), schema);
        if *always {
            required.push(key.clone());
        }
    }
    json!({
        "type": "object",
        "required": required,
        "additionalProperties": false,
        "properties": properties,
    })
}

/// The fields of a selection set by response key; a field under a directive (`@skip`,
/// `@include`) may be absent, so it is not required.
fn collect<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    always: bool,
    fields: &mut Vec<(String, Vec<&'a Field>, bool)>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                let key = field
                    .alias
                    .as_ref()
                    .map_or(field.name.node.as_str(), |a| a.node.as_str());
                let always = always && field.directives.is_empty();
                match fields.iter_mut().find(|(k, _, _)| k == key) {
                    Some((_, same, required)) => {
                        same.push(field);
                        *required |= always;
                    }
                    None => fields.push((key.to_string(), vec![field], always)),
                }
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                let fragment = &document.fragments[name].node;
                let always = always && spread.node.directives.is_empty();
                collect(document, &fragment.selection_set.node, always, fields);
            }
            Selection::InlineFragment(inline) => {
                let always = always && inline.node.directives.is_empty();
                collect(document, &inline.node.selection_set.node, always, fields);
            }
        }
    }
}

/// The JSON Schema of a field's value.
fn output_schema(
    document: &ExecutableDocument,
    types: &SchemaTypes,
    declared: &Type,
    sets: &[&SelectionSet],
) -> Value {
    let schema = match &declared.base {
        BaseType::List(inner) => json!({
            "type": "array",
            "items": output_schema(document, types, inner, sets),
        }),
        BaseType::Named(name) => match types.get(name).map(|t| &t.kind) {
            Some(TypeKind::Object(_)) => selection_schema(document, types, name, sets),
            Some(TypeKind::Enum(e)) => {
                let values: Vec<&str> = e
                    .values
                    .iter()
                    .map(|v| v.node.value.node.as_str())
                    .collect();
                json!({ "type": "string", "enum": values })
            }
            _ => scalar(name),
        },
    };
    if declared.nullable {
        nullable(schema)
    } else {
        schema
    }
}

/// How each scalar is written in JSON.
fn scalar(name: &str) -> Value {
    match name {
        "ID" | "String" => json!({ "type": "string" }),
        "Int" => json!({ "type": "integer", "format": "int32" }),
        "Float" => json!({ "type": "number", "format": "double" }),
        "Boolean" => json!({ "type": "boolean" }),
        "Date" => json!({ "type": "string", "format": "date" }),
        "DateTime" => json!({ "type": "string", "format": "date-time" }),
        "Decimal" => {
            json!({ "type": "string", "pattern": "^-?[0-9]+\\.[0-9]{2}$", "description": "An exact amount with two decimals." })
        }
        "LocalTime" => {
            json!({ "type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$", "description": "A wall-clock time, HH:MM." })
        }
        other => panic!("scalar {other} has no JSON Schema in rest::openapi"),
    }
}

/// `schema` or null.
fn nullable(schema: Value) -> Value {
    match schema.get("type") {
        Some(Value::String(t)) if schema.get("enum").is_none() && schema.get("const").is_none() => {
            let mut schema = schema.clone();
            schema["type"] = json!([t, "null"]);
            schema
        }
        _ => json!({ "anyOf": [schema, { "type": "null" }] }),
    }
}

/// `schema` with the field's description from the SDL.
fn with_description(mut schema: Value, description: &str) -> Value {
    if let Value::Object(map) = &mut schema {
        map.entry("description")
            .or_insert_with(|| Value::String(description.to_string()));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_and_answers_follow_the_documents() {
        let doc = document();
        let bulk = &doc["paths"]["/api/bff/bi/availability/bulk/"]["get"];
        let params = bulk["parameters"].as_array().unwrap();
        let by_name = |n: &str| params.iter().find(|p| p["name"] == n).unwrap().clone();
        assert_eq!(by_name("club")["required"], true);
        assert_eq!(by_name("date")["required"], true);
        assert_eq!(by_name("courts[]")["required"], false);
        assert_eq!(by_name("courts[]")["schema"]["type"], "array");
        assert_eq!(by_name("slot")["schema"]["default"], 90);
        assert_eq!(by_name("slot")["schema"]["minimum"], 15);
        let data = &bulk["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
            ["data"];
        let grid = &data["properties"]["courtAvailability"];
        assert_eq!(
            grid["required"],
            json!(["club", "date", "slotMinutes", "courts"])
        );
        let slot = &grid["properties"]["courts"]["items"]["properties"]["slots"]["items"];
        assert_eq!(slot["properties"]["available"]["type"], "boolean");
        let analytics = &doc["paths"]["/api/bff/bi/analytics/club/"]["get"];
        let period = analytics["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "period")
            .unwrap();
        assert_eq!(
            period["schema"]["enum"],
            json!(["day", "week", "month", "year"])
        );
        let dashboard = &analytics["responses"]["200"]["content"]["application/json"]["schema"]
            ["properties"]["data"]["properties"]["dashboard"];
        // The fragment's fields are spread in; a nullable Float may be null.
        assert!(dashboard["properties"]["current"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("uniquePlayers")));
        assert_eq!(
            dashboard["properties"]["change"]["properties"]["revenuePct"]["type"],
            json!(["number", "null"])
        );
        let auth = &doc["paths"]["/api/bff/auth/context/"]["get"];
        assert_eq!(
            auth["parameters"].as_array().unwrap().len(),
            1,
            "only If-None-Match"
        );
        let user = &auth["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
            ["data"]["properties"]["authContext"]["properties"]["currentOrganization"];
        assert_eq!(
            user["type"],
            json!(["object", "null"]),
            "a nullable object: {user}"
        );
    }
}
