//! The schema's types as the BFF URLs need them: what a variable accepts in a query string
//! ([`ValueType`]) and, for the OpenAPI document, the fields of each object type.

use std::collections::HashMap;

use async_graphql::parser::types::{
    BaseType, FieldDefinition, Type, TypeDefinition, TypeKind, TypeSystemDefinition,
};

/// The SDL's type definitions by name.
pub(super) struct SchemaTypes {
    types: HashMap<String, TypeDefinition>,
}

/// What a query-string value of a variable may be, after the variable's named type.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ValueType {
    /// A positive integer id in decimal, as every id of this API ([`ID_PATTERN`]).
    Id,
    /// An integer within inclusive bounds.
    Int { min: i64, max: i64 },
    /// A finite number.
    Float,
    /// `true` or `false`.
    Boolean,
    /// Any text.
    Text,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// One of an enum's values, written in lower case in URLs (`period=month` for `MONTH`).
    Enum(Vec<String>),
}

/// The ids of this API: positive integers below 10^18 without leading zeros (the resolvers
/// parse an id as a positive `i64`; 18 digits always fit).
pub(super) const ID_PATTERN: &str = "^[1-9][0-9]{0,17}$";

impl SchemaTypes {
    /// Reads the type definitions of the exported SDL.
    pub(super) fn from_sdl(sdl: &str) -> SchemaTypes {
        let document = async_graphql::parser::parse_schema(sdl).expect("the exported SDL parses");
        let types = document
            .definitions
            .into_iter()
            .filter_map(|definition| match definition {
                TypeSystemDefinition::Type(t) => Some((t.node.name.node.to_string(), t.node)),
                _ => None,
            })
            .collect();
        SchemaTypes { types }
    }

    /// The definition of a named type.
    pub(super) fn get(&self, name: &str) -> Option<&TypeDefinition> {
        self.types.get(name)
    }

    /// The definition of `object.field`.
    pub(super) fn field(&self, object: &str, field: &str) -> Option<&FieldDefinition> {
        match &self.get(object)?.kind {
            TypeKind::Object(o) => o
                .fields
                .iter()
                .find(|f| f.node.name.node.as_str() == field)
                .map(|f| &f.node),
            _ => None,
        }
    }

    /// What a query-string value of a variable of type `named` may be.
    pub(super) fn value_type(
        &self,
        named: &str,
        range: Option<(i64, i64)>,
    ) -> Result<ValueType, String> {
        let value = match named {
            "ID" => ValueType::Id,
            "Int" => {
                let (min, max) = range.unwrap_or((i32::MIN.into(), i32::MAX.into()));
                ValueType::Int { min, max }
            }
            "Float" => ValueType::Float,
            "Boolean" => ValueType::Boolean,
            "String" => ValueType::Text,
            "Date" => ValueType::Date,
            other => match self.get(other).map(|t| &t.kind) {
                Some(TypeKind::Enum(e)) => ValueType::Enum(
                    e.values
                        .iter()
                        .map(|v| v.node.value.node.to_string())
                        .collect(),
                ),
                _ => return Err(format!("a parameter cannot be of type {other}")),
            },
        };
        if range.is_some() && !matches!(value, ValueType::Int { .. }) {
            return Err(format!("a range is only for Int parameters, not {named}"));
        }
        Ok(value)
    }
}

/// The named type of a variable and whether it is a list of it (lists of lists have no URL form).
pub(super) fn unwrap_list(declared: &Type) -> Result<(&str, bool), String> {
    match &declared.base {
        BaseType::Named(name) => Ok((name.as_str(), false)),
        BaseType::List(inner) => match &inner.base {
            BaseType::Named(name) => Ok((name.as_str(), true)),
            BaseType::List(_) => Err("a list of lists has no query-string form".into()),
        },
    }
}

/// A declared default as the URL spells it (enum values in lower case).
pub(super) fn url_default(value: &async_graphql::Value, kind: &ValueType) -> serde_json::Value {
    match (value, kind) {
        (async_graphql::Value::Enum(name), ValueType::Enum(_)) => {
            serde_json::Value::String(name.to_ascii_lowercase())
        }
        (other, _) => other.clone().into_json().unwrap_or_default(),
    }
}
