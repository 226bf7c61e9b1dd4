//! Field-error null propagation as the GraphQL spec requires (§ "Handling Field Errors"), which
//! async-graphql does not do: it leaves a failed field out of its parent object (and answers
//! `data: null` when every root field failed). Clients such as Apollo and Relay expect the key to
//! be present with `null`, and a failed non-null field to null its nearest nullable ancestor.
//!
//! After execution, for every error with a path, the first key along the path missing from `data`
//! is the failed field: it becomes `null` when its type is nullable; otherwise the null moves up to
//! the nearest nullable field on the path, or to `data` itself.

use std::{collections::HashMap, sync::OnceLock};

use async_graphql::{
    parser::types::{
        BaseType, ExecutableDocument, OperationType, Selection, SelectionSet, Type, TypeKind,
    },
    PathSegment, Value,
};

/// Field types of the schema's object types: (type, field) → (nullable, innermost named type).
struct FieldTypes {
    fields: HashMap<(String, String), (bool, String)>,
    query: String,
    mutation: String,
}

fn named(ty: &Type) -> String {
    match &ty.base {
        BaseType::Named(name) => name.to_string(),
        BaseType::List(inner) => named(inner),
    }
}

fn field_types() -> &'static FieldTypes {
    static TYPES: OnceLock<FieldTypes> = OnceLock::new();
    TYPES.get_or_init(|| {
        let document =
            async_graphql::parser::parse_schema(super::sdl()).expect("the exported SDL parses");
        let mut types = FieldTypes {
            fields: HashMap::new(),
            query: "Query".into(),
            mutation: "Mutation".into(),
        };
        for definition in document.definitions {
            match definition {
                async_graphql::parser::types::TypeSystemDefinition::Type(ty) => {
                    let ty = ty.node;
                    let fields = match ty.kind {
                        TypeKind::Object(object) => object.fields,
                        TypeKind::Interface(interface) => interface.fields,
                        _ => continue,
                    };
                    for field in fields {
                        let field = field.node;
                        types.fields.insert(
                            (ty.name.node.to_string(), field.name.node.to_string()),
                            (field.ty.node.nullable, named(&field.ty.node)),
                        );
                    }
                }
                async_graphql::parser::types::TypeSystemDefinition::Schema(schema) => {
                    if let Some(query) = &schema.node.query {
                        types.query = query.node.to_string();
                    }
                    if let Some(mutation) = &schema.node.mutation {
                        types.mutation = mutation.node.to_string();
                    }
                }
                _ => {}
            }
        }
        types
    })
}

/// The field of `set` answering under response `key` (looking through fragments).
fn find_field<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    key: &str,
) -> Option<(&'a str, &'a SelectionSet)> {
    for selection in &set.items {
        let found = match &selection.node {
            Selection::Field(field) => {
                (field.node.response_key().node.as_str() == key).then(|| {
                    (
                        field.node.name.node.as_str(),
                        &field.node.selection_set.node,
                    )
                })
            }
            Selection::FragmentSpread(spread) => document
                .fragments
                .get(&spread.node.fragment_name.node)
                .and_then(|f| find_field(document, &f.node.selection_set.node, key)),
            Selection::InlineFragment(inline) => {
                find_field(document, &inline.node.selection_set.node, key)
            }
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Completes `data` with the nulls the spec requires for the errors of `response`, given the
/// document that was executed (`query`) and the operation chosen.
pub fn complete(response: &mut async_graphql::Response, query: &str, operation: Option<&str>) {
    if !needs_completion(response) {
        return;
    }
    if let Ok(document) = async_graphql::parser::parse_query(query) {
        complete_with(response, &document, operation);
    }
}

/// Whether any error of `response` names a field (only those leave nulls to complete).
pub fn needs_completion(response: &async_graphql::Response) -> bool {
    response.errors.iter().any(|e| !e.path.is_empty())
}

/// [`complete`] with the document already parsed.
pub fn complete_with(
    response: &mut async_graphql::Response,
    document: &ExecutableDocument,
    operation: Option<&str>,
) {
    if !needs_completion(response) {
        return;
    }
    let Some(op) = super::chosen_operation(document, operation) else {
        return;
    };
    let op = &op.node;
    let types = field_types();
    let root = match op.ty {
        OperationType::Query => types.query.as_str(),
        OperationType::Mutation => types.mutation.as_str(),
        OperationType::Subscription => return,
    };
    let paths: Vec<Vec<PathSegment>> = response
        .errors
        .iter()
        .filter(|e| !e.path.is_empty())
        .map(|e| e.path.clone())
        .collect();
    for path in paths {
        let Some(target) = null_target(
            &response.data,
            document,
            &op.selection_set.node,
            root,
            types,
            &path,
        ) else {
            continue;
        };
        if target.null_data {
            // Nothing of `data` survives; later errors have nowhere to go.
            response.data = Value::Null;
            return;
        }
        apply(&mut response.data, &path[..target.len]);
    }
}

/// Where a null goes for one error: the first `len` segments of its path name the field that
/// becomes null, or `null_data` when it is `data` itself.
struct Target {
    len: usize,
    null_data: bool,
}

fn null_target(
    data: &Value,
    document: &ExecutableDocument,
    root_set: &SelectionSet,
    root_type: &str,
    types: &FieldTypes,
    path: &[PathSegment],
) -> Option<Target> {
    // Walk the data along the path, noting for every field segment whether the field is nullable.
    let mut value = Some(data).filter(|v| !matches!(v, Value::Null));
    let mut set = root_set;
    let mut type_name = root_type.to_string();
    // (segments up to and including this field, nullable)
    let mut fields: Vec<(usize, bool)> = Vec::new();
    for (i, segment) in path.iter().enumerate() {
        match segment {
            PathSegment::Field(key) => {
                let (name, child_set) = find_field(document, set, key)?;
                let (nullable, child_type) = types
                    .fields
                    .get(&(type_name.clone(), name.to_string()))
                    .cloned()
                    .or_else(|| name.starts_with("__").then(|| (true, String::new())))?;
                fields.push((i + 1, nullable));
                let present = match value {
                    Some(Value::Object(map)) => map.get(key.as_str()),
                    // A null parent already absorbed the error.
                    Some(Value::Null) => return None,
                    Some(_) => return None,
                    None if i == 0 => None,
                    None => return None,
                };
                match present {
                    Some(child) => {
                        value = Some(child);
                        set = child_set;
                        type_name = child_type;
                    }
                    None => {
                        // The failed field: null it, or its nearest nullable ancestor.
                        return Some(match fields.iter().rev().find(|(_, n)| *n) {
                            Some((len, _)) => Target {
                                len: *len,
                                null_data: false,
                            },
                            None => Target {
                                len: 0,
                                null_data: true,
                            },
                        });
                    }
                }
            }
            PathSegment::Index(index) => {
                value = match value {
                    Some(Value::List(items)) => items.get(*index),
                    _ => return None,
                };
            }
        }
    }
    None
}

/// Sets the field at `path` to null (creating `data` when every root field failed).
fn apply(data: &mut Value, path: &[PathSegment]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if matches!(data, Value::Null) {
        if !parents.is_empty() {
            return;
        }
        *data = Value::Object(Default::default());
    }
    let mut cursor = data;
    for segment in parents {
        cursor = match (segment, cursor) {
            (PathSegment::Field(key), Value::Object(map)) => match map.get_mut(key.as_str()) {
                Some(next) => next,
                None => return,
            },
            (PathSegment::Index(i), Value::List(items)) => match items.get_mut(*i) {
                Some(next) => next,
                None => return,
            },
            _ => return,
        };
    }
    if let (PathSegment::Field(key), Value::Object(map)) = (last, cursor) {
        map.insert(async_graphql::Name::new(key), Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{value, Pos, ServerError};

    use super::*;

    fn failed(data: Value, paths: &[&[&str]]) -> async_graphql::Response {
        let mut response = async_graphql::Response::new(data);
        for path in paths {
            let mut error = ServerError::new("failed", Some(Pos::default()));
            error.path = path
                .iter()
                .map(|s| match s.parse::<usize>() {
                    Ok(i) => PathSegment::Index(i),
                    Err(_) => PathSegment::Field(s.to_string()),
                })
                .collect();
            response.errors.push(error);
        }
        response
    }

    #[test]
    fn a_failed_nullable_field_is_present_as_null() {
        let query = r#"{ a: club(id: "1") { id } b: club(id: "3") { id } }"#;
        let mut response = failed(value!({ "a": { "id": "1" } }), &[&["b"]]);
        complete(&mut response, query, None);
        assert_eq!(response.data, value!({ "a": { "id": "1" }, "b": null }));
        // Every root field failed: data is an object of nulls, not null.
        let mut response = failed(Value::Null, &[&["club"]]);
        complete(&mut response, r#"{ club(id: "9") { id } }"#, None);
        assert_eq!(response.data, value!({ "club": null }));
    }

    #[test]
    fn a_failed_non_null_field_nulls_its_nearest_nullable_ancestor() {
        // dashboard is non-null: the whole data becomes null.
        let query = r#"{ a: club(id: "1") { id } d: dashboard(clubId: "9") { from } }"#;
        let mut response = failed(value!({ "a": { "id": "1" } }), &[&["d"]]);
        complete(&mut response, query, None);
        assert_eq!(response.data, Value::Null);
        // Club.name is non-null: the nullable club above it becomes null, through a fragment.
        let query = r#"query Q { club(id: "1") { ...F } other: club(id: "2") { id } } fragment F on Club { id name }"#;
        let mut response = failed(
            value!({ "club": { "id": "1" }, "other": { "id": "2" } }),
            &[&["club", "name"]],
        );
        complete(&mut response, query, Some("Q"));
        assert_eq!(
            response.data,
            value!({ "club": null, "other": { "id": "2" } })
        );
    }

    #[test]
    fn once_data_is_null_later_errors_do_not_bring_it_back() {
        let query = r#"{ d: dashboard(clubId: "9") { from } e: club(id: "3") { id } }"#;
        let mut response = failed(Value::Null, &[&["d"], &["e"]]);
        complete(&mut response, query, None);
        assert_eq!(response.data, Value::Null);
        let mut response = failed(Value::Null, &[&["e"], &["d"]]);
        complete(&mut response, query, None);
        assert_eq!(response.data, Value::Null);
    }

    #[test]
    fn errors_already_absorbed_or_without_path_change_nothing() {
        let query = r#"{ club(id: "1") { id name } }"#;
        let mut response = failed(value!({ "club": null }), &[&["club", "name"]]);
        complete(&mut response, query, None);
        assert_eq!(response.data, value!({ "club": null }));
        let mut response =
            async_graphql::Response::from_errors(vec![ServerError::new("parse error", None)]);
        complete(&mut response, "{ nope", None);
        assert_eq!(response.data, Value::Null);
    }
}
