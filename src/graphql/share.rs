//! Which root fields of an operation another caller's answer can serve, and under which key.
//!
//! A root field's answer can be shared when it depends on the caller only through access
//! decisions (recorded and re-checked on every hit, `cache::response::Requirement`): the
//! fields in [`SHAREABLE`]. Its key is the field's *normalised text*: its name, its arguments
//! with variables substituted (sorted by name), and its selection set with fragments inlined
//! and `@skip`/`@include` evaluated, exactly as the engine evaluates them (async-graphql 7.2:
//! on the variables it is given, a missing or non-boolean condition counts as `false`; the
//! pipeline gives both the plan and the engine the variables with declared defaults filled in,
//! `graphql::with_defaults`); a selection they
//! leave out makes the plan give up (the answer's field order depends on where it stood). Two fields with
//! the same text are the same request to the engine, so they render the same bytes for callers
//! who get the same access decisions. The alias of the root field is not part of the key: the
//! answer is spliced in under whatever name the request gives it.
//!
//! Anything the plan cannot evaluate exactly (another root field, an unknown directive, a
//! variable it cannot resolve, a fragment on another root type, a repeated response key, text
//! over [`MAX_TEXT`]) makes the operation unshareable, and the executor answers it.

use async_graphql::{
    parser::types::{
        Directive, DocumentOperations, ExecutableDocument, OperationDefinition, OperationType,
        Selection, SelectionSet,
    },
    InputType, Name, Positioned, Value, Variables,
};
use async_graphql_value::Value as InputValue;

/// Root fields whose answers depend on the caller only through recorded access decisions.
pub const SHAREABLE: [&str; 3] = ["courtAvailability", "dashboard", "club"];

/// Normalised text kept per root field at most: the walk stops there, so planning a hostile
/// document (fragments spread many times) costs at most this much work.
pub const MAX_TEXT: usize = 8 * 1024;

/// One entry of the root object, in response order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// `__typename` of the query root.
    Typename,
    /// A shareable field and its normalised text (the shared key).
    Field {
        /// The root field's name (one of [`SHAREABLE`]).
        name: &'static str,
        /// The normalised field (see the module comment).
        text: String,
    },
}

/// The root of a query whose every entry can be shared: (response key, slot) in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePlan {
    /// The operation's name (empty when anonymous).
    pub operation_name: String,
    /// The entries of the root object.
    pub entries: Vec<(String, Slot)>,
}

impl SharePlan {
    /// The shared fields: (response key, field name, normalised text).
    pub fn fields(&self) -> impl Iterator<Item = (&str, &'static str, &str)> {
        self.entries.iter().filter_map(|(key, slot)| match slot {
            Slot::Field { name, text } => Some((key.as_str(), *name, text.as_str())),
            Slot::Typename => None,
        })
    }
}

/// The plan of the operation that runs, or `None` when any part of it must be executed.
pub fn plan(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Option<SharePlan> {
    // The engine's choice of operation, to the letter (a name with an anonymous single
    // operation is an error there).
    let (name, operation) = match (&document.operations, operation_name) {
        (DocumentOperations::Single(_), Some(_)) => return None,
        (DocumentOperations::Single(op), None) => ("", op),
        (DocumentOperations::Multiple(ops), Some(name)) => (name, ops.get(name)?),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            let (name, op) = ops.iter().next()?;
            (name.as_str(), op)
        }
        _ => return None,
    };
    let operation = &operation.node;
    if operation.ty != OperationType::Query || !operation.directives.is_empty() {
        return None;
    }
    let walk = Walk {
        document,
        operation,
        variables,
    };
    let mut entries = Vec::new();
    walk.root(&operation.selection_set.node, &mut entries, 0)?;
    let shares_a_field = entries
        .iter()
        .any(|(_, slot)| matches!(slot, Slot::Field { .. }));
    shares_a_field.then(|| SharePlan {
        operation_name: name.to_string(),
        entries,
    })
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    operation: &'a OperationDefinition,
    variables: &'a Variables,
}

/// Fragments nested deeper than this at the root make the plan give up.
const MAX_ROOT_DEPTH: usize = 16;

impl Walk<'_> {
    fn root(
        &self,
        set: &SelectionSet,
        entries: &mut Vec<(String, Slot)>,
        depth: usize,
    ) -> Option<()> {
        if depth > MAX_ROOT_DEPTH {
            return None;
        }
        for item in &set.items {
            if !self.included(item.node.directives())? {
                continue;
            }
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let key = field.response_key().node.to_string();
                    if entries.iter().any(|(k, _)| *k == key) {
                        // The engine merges repeated keys; not worth mirroring.
                        return None;
                    }
                    let name = field.name.node.as_str();
                    let slot = if name == "__typename" {
                        Slot::Typename
                    } else {
                        let name = SHAREABLE.into_iter().find(|n| *n == name)?;
                        let mut text = String::with_capacity(128);
                        self.field(
                            &mut text,
                            &field.name,
                            &field.arguments,
                            &field.selection_set.node,
                        )?;
                        Slot::Field { name, text }
                    };
                    entries.push((key, slot));
                }
                Selection::FragmentSpread(spread) => {
                    let fragment = self
                        .document
                        .fragments
                        .get(&spread.node.fragment_name.node)?;
                    if fragment.node.type_condition.node.on.node != "Query"
                        || !fragment.node.directives.is_empty()
                    {
                        return None;
                    }
                    self.root(&fragment.node.selection_set.node, entries, depth + 1)?;
                }
                Selection::InlineFragment(inline) => {
                    let on = inline.node.type_condition.as_ref();
                    if on.is_some_and(|c| c.node.on.node != "Query") {
                        return None;
                    }
                    self.root(&inline.node.selection_set.node, entries, depth + 1)?;
                }
            }
        }
        Some(())
    }

    /// `name(arg:value …){…}`, arguments sorted by name with variables substituted.
    fn field(
        &self,
        text: &mut String,
        name: &Positioned<Name>,
        arguments: &[(Positioned<Name>, Positioned<InputValue>)],
        set: &SelectionSet,
    ) -> Option<()> {
        use std::fmt::Write;
        text.push_str(name.node.as_str());
        if !arguments.is_empty() {
            let mut sorted: Vec<_> = arguments.iter().collect();
            sorted.sort_by(|a, b| a.0.node.cmp(&b.0.node));
            text.push('(');
            for (arg, value) in sorted {
                let value = self.value(&value.node)?;
                let _ = write!(text, "{}:{value} ", arg.node);
                if text.len() > MAX_TEXT {
                    return None;
                }
            }
            text.push(')');
        }
        if !set.items.is_empty() {
            text.push('{');
            self.selection(text, set)?;
            text.push('}');
        }
        (text.len() <= MAX_TEXT).then_some(())
    }

    fn selection(&self, text: &mut String, set: &SelectionSet) -> Option<()> {
        for item in &set.items {
            if text.len() > MAX_TEXT {
                return None;
            }
            if !self.included(item.node.directives())? {
                continue;
            }
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    text.push_str(field.response_key().node.as_str());
                    text.push(':');
                    self.field(
                        text,
                        &field.name,
                        &field.arguments,
                        &field.selection_set.node,
                    )?;
                    text.push(' ');
                }
                Selection::FragmentSpread(spread) => {
                    let fragment = self
                        .document
                        .fragments
                        .get(&spread.node.fragment_name.node)?;
                    if !fragment.node.directives.is_empty() {
                        return None;
                    }
                    text.push_str("...on ");
                    text.push_str(fragment.node.type_condition.node.on.node.as_str());
                    text.push('{');
                    self.selection(text, &fragment.node.selection_set.node)?;
                    text.push_str("} ");
                }
                Selection::InlineFragment(inline) => {
                    text.push_str("...");
                    if let Some(on) = &inline.node.type_condition {
                        text.push_str("on ");
                        text.push_str(on.node.on.node.as_str());
                    }
                    text.push('{');
                    self.selection(text, &inline.node.selection_set.node)?;
                    text.push_str("} ");
                }
            }
        }
        Some(())
    }

    /// Whether the engine keeps a selection with these directives (`None`: a directive other
    /// than `@skip`/`@include`, or a selection it skips). Mirrors async-graphql 7.2's
    /// `remove_skipped_selection`. A skipped selection makes the plan give up: the answer's
    /// field order (`graphql::order`) follows the document with its skipped selections in place,
    /// so two documents with the same text without them could order their fields differently.
    fn included(&self, directives: &[Positioned<Directive>]) -> Option<bool> {
        let mut kept = true;
        for directive in directives {
            let include = match directive.node.name.node.as_str() {
                "skip" => false,
                "include" => true,
                _ => return None,
            };
            if let Some(condition) = directive.node.get_argument("if") {
                let value = condition
                    .node
                    .clone()
                    .into_const_with(|name| self.variables.get(&name).cloned().ok_or(()))
                    .unwrap_or_default();
                let value: bool = InputType::parse(Some(value)).unwrap_or_default();
                if include != value {
                    kept = false;
                }
            }
        }
        kept.then_some(true)
    }

    /// An argument's value as the engine resolves it: a variable's value, else its default
    /// (null for a nullable variable); `None` when it has neither (the engine fails there).
    fn value(&self, value: &InputValue) -> Option<Value> {
        value
            .clone()
            .into_const_with(|name| {
                self.operation
                    .variable_definitions
                    .iter()
                    .find(|def| def.node.name.node == name)
                    .and_then(|def| {
                        self.variables
                            .get(&def.node.name.node)
                            .or_else(|| def.node.default_value())
                    })
                    .cloned()
                    .ok_or(())
            })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(query: &str, variables: serde_json::Value) -> Option<SharePlan> {
        let document = async_graphql::parser::parse_query(query).unwrap();
        plan(&document, None, &Variables::from_json(variables))
    }

    fn texts(plan: &SharePlan) -> Vec<(&str, &str)> {
        plan.fields().map(|(key, _, text)| (key, text)).collect()
    }

    #[test]
    fn fragments_variables_and_aliases_of_the_root_field_normalise_away() {
        let plain = plan_of(
            r#"{ courtAvailability(date: "2026-12-01", clubId: 1) { date courts { court { name } } } }"#,
            serde_json::json!({}),
        )
        .unwrap();
        let dressed = plan_of(
            r#"query Q($c: ID!, $d: Date = "2026-12-01") { grid: courtAvailability(clubId: $c, date: $d) { ...F } }
               fragment F on CourtAvailability { date courts { court { name } } }"#,
            serde_json::json!({"c": 1}),
        )
        .unwrap();
        assert_eq!(
            texts(&plain)[0].1,
            r#"courtAvailability(clubId:1 date:"2026-12-01" ){date:date courts:courts{court:court{name:name } } }"#
        );
        assert_eq!(texts(&dressed)[0].0, "grid");
        // The fragment stays visible as a fragment (its type condition), so the texts differ
        // only in that; the variables and the alias are gone.
        assert!(texts(&dressed)[0].1.starts_with(
            r#"courtAvailability(clubId:1 date:"2026-12-01" ){...on CourtAvailability{"#
        ));
    }

    #[test]
    fn skip_and_include_are_evaluated_as_the_engine_does() {
        let query = r#"query($x: Boolean, $y: Boolean = true) { club(id: 1) { id name @include(if: $x) slug @skip(if: $y) } }"#;
        let with = plan_of(query, serde_json::json!({"x": true})).unwrap();
        // The plan, like the engine, reads conditions from the variables it is given: `$y`'s
        // default is not applied here (the pipeline fills defaults in before both), so
        // `@skip(if: $y)` keeps `slug` when `$y` is absent.
        assert_eq!(texts(&with)[0].1, "club(id:1 ){id:id name:name slug:slug }");
        // A skipped selection: not shared (the field order depends on where it stood).
        assert!(plan_of(query, serde_json::json!({"y": true})).is_none());
        assert!(plan_of(query, serde_json::json!({})).is_none());
    }

    #[test]
    fn anything_that_depends_on_the_caller_or_cannot_be_evaluated_is_not_shared() {
        let none = |q: &str| plan_of(q, serde_json::json!({})).is_none();
        assert!(none("{ authContext { user { id } } }"));
        assert!(none("{ club(id: 1) { id } authContext { user { id } } }"));
        assert!(none("{ club(id: 1) { id @custom } }"));
        assert!(none("{ a: club(id: 1) { id } a: club(id: 1) { name } }"));
        assert!(none("query($c: ID!) { club(id: $c) { id } }"));
        assert!(none("mutation { cancelReservation(id: 1) { id } }"));
        assert!(none(
            "{ ...F } fragment F on Mutation { club(id: 1) { id } }"
        ));
        // Nothing to share: the executor answers (and registers a persisted query).
        assert!(none("{ __typename }"));
        let typename = plan_of("{ __typename club(id: 2) { id } }", serde_json::json!({})).unwrap();
        assert_eq!(
            typename.entries[0],
            ("__typename".to_string(), Slot::Typename)
        );
    }

    #[test]
    fn a_fragment_bomb_stops_at_the_text_limit() {
        let mut query = String::from("{ club(id: 1) { ...F0 } }\n");
        for i in 0..30 {
            query.push_str(&format!(
                "fragment F{i} on Club {{ ...F{} ...F{} }}\n",
                i + 1,
                i + 1
            ));
        }
        query.push_str("fragment F30 on Club { id }\n");
        // 2^30 spreads: without the limit this would not end; it gives up after MAX_TEXT bytes.
        assert!(plan_of(&query, serde_json::json!({})).is_none());
    }
}
