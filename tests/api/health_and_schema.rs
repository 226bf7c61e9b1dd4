//! Health endpoints, the exported schema, the CLI and the engine's own errors.

use serde_json::json;

use crate::on_both_backends;

#[test]
fn schema_graphql_equals_what_the_binary_prints() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_padel-bff"))
        .arg("schema")
        .output()
        .expect("run padel-bff schema");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert_eq!(
        printed, committed,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
    assert_eq!(printed, padel_bff::graphql::sdl());
    for contract in [
        "dashboard(clubId: ID!, period: Period! = MONTH, date: Date): ClubDashboard!",
        "courtAvailability(clubId: ID!, date: Date!, courtIds: [ID!], slotMinutes: Int! = 90): CourtAvailability!",
        "createReservation(input: CreateReservationInput!): Reservation!",
        "switchOrganization(organizationId: ID!): AuthContext!",
        "reservations(clubId: ID!, date: Date!, status: [ReservationStatus!]): [Reservation!]!",
    ] {
        assert!(printed.contains(contract), "missing from the schema: {contract}");
    }
}

on_both_backends!(health_and_readiness_answer_json, |app| {
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["checks"]["database"],
        "ok"
    );
});

on_both_backends!(graphiql_is_served_with_the_demo_owner_token, |app| {
    let page = app
        .client
        .get(format!("{}/graphql", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("graphiql"), "not a GraphiQL page");
    assert!(html.contains("Bearer ey"), "no pre-filled demo token");
});

on_both_backends!(parse_and_validation_errors_carry_codes_and_no_500, |app| {
    let token = app.token("owner@demo.padel").await;
    let reply = app
        .graphql(Some(&token), "{ authContext { ", json!({}))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.code(), "GRAPHQL_PARSE_FAILED");
    let reply = app
        .graphql(Some(&token), "{ authContext { noSuchField } }", json!({}))
        .await;
    assert_eq!(reply.code(), "GRAPHQL_VALIDATION_FAILED");
    let reply = app
        .graphql(
            Some(&token),
            "query($d: Date!) { courtAvailability(clubId: 1, date: $d) { date } }",
            json!({"d": "2026-02-30"}),
        )
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT", "{}", reply.body);
    let reply = app
        .graphql(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(reply.ok()["__schema"]["queryType"]["name"], "Query");
    let body_too_large = "x".repeat(300 * 1024);
    let reply = app.graphql(Some(&token), &body_too_large, json!({})).await;
    assert_eq!(reply.status, 413);
});

/// The exported schema against the contract the frontends were promised (the core issue's SDL,
/// kept apart in tests/contract/): every root name, type, field, argument and input field of the
/// contract exists with exactly the contract's type. Additions are free.
#[test]
fn the_exported_schema_keeps_the_core_contract() {
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
    use std::collections::HashMap;
    fn shapes(sdl: &str) -> (HashMap<String, String>, Vec<String>) {
        let document = async_graphql::parser::parse_schema(sdl).expect("SDL parses");
        let mut fields = HashMap::new();
        let mut roots = vec!["Query".to_string(), "Mutation".to_string()];
        for definition in document.definitions {
            match definition {
                TypeSystemDefinition::Type(ty) => {
                    let ty = ty.node;
                    let name = ty.name.node.to_string();
                    fields.insert(format!("{name} (type)"), kind_name(&ty.kind).to_string());
                    match ty.kind {
                        TypeKind::Object(object) => {
                            for field in object.fields {
                                let field = field.node;
                                let path = format!("{name}.{}", field.name.node);
                                fields.insert(path.clone(), field.ty.node.to_string());
                                for argument in field.arguments {
                                    let argument = argument.node;
                                    fields.insert(
                                        format!("{path}({})", argument.name.node),
                                        argument.ty.node.to_string(),
                                    );
                                }
                            }
                        }
                        TypeKind::InputObject(input) => {
                            for field in input.fields {
                                let field = field.node;
                                fields.insert(
                                    format!("{name}.{}", field.name.node),
                                    field.ty.node.to_string(),
                                );
                            }
                        }
                        TypeKind::Enum(values) => {
                            for value in values.values {
                                fields.insert(
                                    format!("{name}::{}", value.node.value.node),
                                    String::new(),
                                );
                            }
                        }
                        _ => {}
                    }
                }
                TypeSystemDefinition::Schema(schema) => {
                    let schema = schema.node;
                    roots = vec![
                        schema.query.map(|q| q.node.to_string()).unwrap_or_default(),
                        schema
                            .mutation
                            .map(|m| m.node.to_string())
                            .unwrap_or_default(),
                    ];
                }
                _ => {}
            }
        }
        (fields, roots)
    }
    fn kind_name(kind: &TypeKind) -> &'static str {
        match kind {
            TypeKind::Scalar => "scalar",
            TypeKind::Object(_) => "type",
            TypeKind::Interface(_) => "interface",
            TypeKind::Union(_) => "union",
            TypeKind::Enum(_) => "enum",
            TypeKind::InputObject(_) => "input",
        }
    }
    let contract = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/contract/core.graphql"
    ))
    .unwrap();
    let (promised, promised_roots) = shapes(&contract);
    let (exported, exported_roots) = shapes(&padel_bff::graphql::sdl());
    assert_eq!(exported_roots, promised_roots, "root type names");
    let mut broken: Vec<String> = promised
        .iter()
        .filter(|(path, ty)| exported.get(*path) != Some(ty))
        .map(|(path, ty)| format!("{path}: contract {ty}, exported {:?}", exported.get(path)))
        .collect();
    broken.sort();
    assert!(
        broken.is_empty(),
        "the schema breaks the contract:\n{}",
        broken.join("\n")
    );
}
