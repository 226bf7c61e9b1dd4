//! Lists of leaf-only objects (a grid's slots, a month's days, a day's hours) rendered in one
//! pass. The engine resolves each field of each item as a boxed future through the extension
//! hook, then merges the results into a map: a grid's ~75 slots were 24 % of the gateway's CPU
//! on an uncached `courtAvailability` (docs/performance.md, run 18). These items are plain data
//! whose every field is a leaf, so when their selection is plain (fields, aliases, `__typename`,
//! fragments on the item type) the list is built directly, in the engine's order and with the
//! engine's scalar values. The engine has already removed what `@skip`/`@include` exclude when
//! the list resolves; any other directive, a fragment on another type, or a span wanted on every
//! field (`telemetry.field_spans = "all"`, no [`Direct`] in the schema data) goes through the
//! engine, item by item, as before.

use std::borrow::Cow;

use async_graphql::{
    parser::types::{Field, Selection, SelectionSet},
    registry::Registry,
    ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value,
};
use async_graphql_value::indexmap::IndexMap;

/// Schema data that allows direct rendering (absent when every field must run, and be spanned,
/// on its own).
pub struct Direct;

/// Selections walked per list at most before the engine is left to it: a plain selection of
/// these types is a handful, and the walk never costs more than the engine's own per item.
const MAX_VISITS: usize = 64;

/// An object type whose every field is a leaf read straight from the struct: no resolver, no
/// guard, no argument (the one-pass path never runs them).
pub trait Leaves: OutputType {
    /// The field's index among [`Leaves::value`]'s, by its GraphQL name.
    fn index(name: &str) -> Option<u8>;
    /// The value of the field at `index`, exactly as the engine renders it (the scalar's
    /// `to_value`).
    fn value(&self, index: u8) -> Value;
}

/// One entry of an item's object, in response order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    Typename,
    Field(u8),
}

/// A list of `T` (the same GraphQL type as `Vec<T>`) that renders itself in one pass when it can.
#[derive(Clone, PartialEq)]
pub struct LeafList<T>(pub Vec<T>);

impl<T> FromIterator<T> for LeafList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        LeafList(items.into_iter().collect())
    }
}

impl<T: Leaves> OutputType for LeafList<T> {
    fn type_name() -> Cow<'static, str> {
        <Vec<T> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<T> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<T> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let plan = ctx
            .data_opt::<Direct>()
            .and_then(|_| plan::<T>(ctx, &field.node.selection_set.node));
        match plan {
            Some(plan) => Ok(render(&self.0, &plan)),
            None => self.0.resolve(ctx, field).await,
        }
    }
}

/// The entries of each item's object, by response key in first-seen order (the engine keeps a
/// repeated key where it first stood), or `None` when the engine must run the selection.
/// Fragments come from `query_env` (public but hidden in async-graphql 7.2, which the derived
/// resolvers use too; there is no other way to them): what this copies of the engine is checked
/// by `share::leaf_lists_rendered_in_one_pass_are_byte_identical_to_the_engine`.
fn plan<T: Leaves>(
    ctx: &ContextSelectionSet<'_>,
    set: &SelectionSet,
) -> Option<Vec<(Name, Entry)>> {
    let mut entries = Vec::new();
    let mut visits = MAX_VISITS;
    walk::<T>(ctx, set, &mut entries, &mut visits)?;
    Some(entries)
}

fn walk<T: Leaves>(
    ctx: &ContextSelectionSet<'_>,
    set: &SelectionSet,
    entries: &mut Vec<(Name, Entry)>,
    visits: &mut usize,
) -> Option<()> {
    for selection in &set.items {
        *visits = visits.checked_sub(1)?;
        match &selection.node {
            Selection::Field(field) => {
                let field = &field.node;
                if !field.directives.is_empty()
                    || !field.arguments.is_empty()
                    || !field.selection_set.node.items.is_empty()
                {
                    return None;
                }
                let entry = if field.name.node == "__typename" {
                    Entry::Typename
                } else {
                    Entry::Field(T::index(&field.name.node)?)
                };
                let key = &field.response_key().node;
                match entries.iter().find(|(k, _)| k == key) {
                    // The same field again (validation merged them): the first place stands.
                    Some((_, seen)) if *seen == entry => {}
                    Some(_) => return None,
                    None => entries.push((key.clone(), entry)),
                }
            }
            Selection::FragmentSpread(spread) => {
                let fragment = ctx
                    .query_env
                    .fragments
                    .get(&spread.node.fragment_name.node)?;
                if !spread.node.directives.is_empty()
                    || !fragment.node.directives.is_empty()
                    || fragment.node.type_condition.node.on.node != *T::type_name()
                {
                    return None;
                }
                walk::<T>(ctx, &fragment.node.selection_set.node, entries, visits)?;
            }
            Selection::InlineFragment(inline) => {
                let on = inline.node.type_condition.as_ref();
                if !inline.node.directives.is_empty()
                    || on.is_some_and(|c| c.node.on.node != *T::type_name())
                {
                    return None;
                }
                walk::<T>(ctx, &inline.node.selection_set.node, entries, visits)?;
            }
        }
    }
    Some(())
}

/// The list's value: each item's object as the engine builds it (`null` for an item whose
/// selection the engine left empty).
fn render<T: Leaves>(items: &[T], plan: &[(Name, Entry)]) -> Value {
    let typename = T::type_name();
    Value::List(
        items
            .iter()
            .map(|item| {
                if plan.is_empty() {
                    return Value::Null;
                }
                let mut object = IndexMap::with_capacity(plan.len());
                for (key, entry) in plan {
                    let value = match entry {
                        Entry::Typename => Value::String(typename.to_string()),
                        Entry::Field(index) => item.value(*index),
                    };
                    object.insert(key.clone(), value);
                }
                Value::Object(object)
            })
            .collect(),
    )
}

/// Implements [`Leaves`] for a `SimpleObject` of scalar fields, each named as the schema names it:
/// `leaves!(Slot { "start" => start, "end" => end })`.
macro_rules! leaves {
    ($ty:ty { $($name:literal => $field:ident),+ $(,)? }) => {
        impl $crate::graphql::leaves::Leaves for $ty {
            fn index(name: &str) -> Option<u8> {
                [$($name),+].iter().position(|n| *n == name).map(|i| i as u8)
            }

            fn value(&self, index: u8) -> async_graphql::Value {
                let mut at = 0u8;
                $(
                    if index == at {
                        return async_graphql::ScalarType::to_value(&self.$field);
                    }
                    at += 1;
                )+
                let _ = at;
                async_graphql::Value::Null
            }
        }
    };
}
pub(crate) use leaves;

#[cfg(test)]
mod tests {
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

    use super::Leaves;
    use crate::graphql::{
        availability::Slot,
        dashboard::{DayStats, HourStats},
    };

    /// The GraphQL field names of `ty` in the exported SDL.
    fn fields(ty: &str) -> Vec<String> {
        let document = async_graphql::parser::parse_schema(crate::graphql::sdl()).unwrap();
        for definition in document.definitions {
            if let TypeSystemDefinition::Type(t) = definition {
                if t.node.name.node == ty {
                    if let TypeKind::Object(object) = t.node.kind {
                        return object
                            .fields
                            .iter()
                            .map(|f| f.node.name.node.to_string())
                            .collect();
                    }
                }
            }
        }
        panic!("no object type {ty}");
    }

    fn indexes<T: Leaves>(ty: &str) -> Vec<Option<u8>> {
        fields(ty).iter().map(|f| T::index(f)).collect()
    }

    /// Every field of each leaf type has a distinct index (a field the macro missed would
    /// make every selection of it fall back; a renamed one would never be rendered).
    #[test]
    fn every_field_of_a_leaf_type_is_rendered_by_its_name() {
        for (ty, found) in [
            ("Slot", indexes::<Slot>("Slot")),
            ("DayStats", indexes::<DayStats>("DayStats")),
            ("HourStats", indexes::<HourStats>("HourStats")),
        ] {
            let mut seen: Vec<u8> = found
                .iter()
                .map(|i| i.unwrap_or_else(|| panic!("{ty}: a field without an index: {found:?}")))
                .collect();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), found.len(), "{ty}: {found:?}");
        }
    }
}
