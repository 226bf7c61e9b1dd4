//! Response fields in the order of the selection set, as the GraphQL spec requires
//! ("Serialized Map Ordering"). async-graphql 7.2 resolves an object's fields on a
//! `FuturesUnordered` and inserts each as it completes, so a field that waits for I/O (a cache
//! read, a DataLoader) lands after fields that were ready at once; the null completion of
//! `nulls` appends its keys too. This pass puts every object of `data` back in selection order:
//! typed clients and byte-comparing caches depend on it.

use async_graphql::{
    parser::types::{ExecutableDocument, Selection, SelectionSet},
    Value,
};

/// Reorders the `data` of the operation `operation` (or the only one) of `document`.
pub fn restore_operation(data: &mut Value, document: &ExecutableDocument, operation: Option<&str>) {
    if let Some(op) = super::chosen_operation(document, operation) {
        restore(data, document, &op.node.selection_set.node);
    }
}

/// Reorders `data` (the answer to `set` of `document`) into selection order, recursively.
pub fn restore(data: &mut Value, document: &ExecutableDocument, set: &SelectionSet) {
    apply(data, &Plan::of(document, &[set]));
}

/// The response keys of merged selection sets, in order, each with the plan of what it selects:
/// built once per answer from the document (not per object of the data: a day of slots is
/// hundreds of objects of one plan).
struct Plan<'a> {
    keys: Vec<(&'a str, Option<Plan<'a>>)>,
}

impl<'a> Plan<'a> {
    fn of(document: &'a ExecutableDocument, sets: &[&'a SelectionSet]) -> Plan<'a> {
        // Field merging: `a { x } a { y }` answers `a` with `x` then `y`.
        let mut keys: Vec<(&'a str, Vec<&'a SelectionSet>)> = Vec::new();
        for set in sets {
            collect(document, set, &mut keys);
        }
        Plan {
            keys: keys
                .into_iter()
                .map(|(key, children)| {
                    let below = (!children.iter().all(|s| s.items.is_empty()))
                        .then(|| Plan::of(document, &children));
                    (key, below)
                })
                .collect(),
        }
    }
}

/// Appends the response keys of `set` (through fragments) to `into`, with their sub-selections.
fn collect<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    into: &mut Vec<(&'a str, Vec<&'a SelectionSet>)>,
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let key = field.node.response_key().node.as_str();
                let child = &field.node.selection_set.node;
                match into.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, sets)) => sets.push(child),
                    None => into.push((key, vec![child])),
                }
            }
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                    collect(document, &fragment.node.selection_set.node, into);
                }
            }
            Selection::InlineFragment(inline) => {
                collect(document, &inline.node.selection_set.node, into);
            }
        }
    }
}

/// Puts every object of `data` in the order of `plan` (an object already in order is only
/// checked, not rebuilt).
fn apply(data: &mut Value, plan: &Plan<'_>) {
    match data {
        Value::List(items) => {
            for item in items {
                apply(item, plan);
            }
        }
        Value::Object(map) => {
            // In order when the keys are a subsequence of the plan's: string comparisons only,
            // no hashing (most objects are in order, and a day of slots is hundreds of them).
            let mut planned = plan.keys.iter().map(|(k, _)| *k);
            let in_order = map.keys().all(|key| planned.any(|k| k == key.as_str()));
            if !in_order {
                let mut ordered = async_graphql::indexmap::IndexMap::with_capacity(map.len());
                for (key, _) in &plan.keys {
                    if let Some((name, value)) = map.swap_remove_entry(*key) {
                        ordered.insert(name, value);
                    }
                }
                // Nothing should remain; keep whatever does rather than drop data.
                ordered.extend(std::mem::take(map));
                *map = ordered;
            }
            // The keys are now in plan order: walk both together.
            let mut plans = plan.keys.iter();
            for (name, value) in map.iter_mut() {
                if let Some((_, Some(below))) = plans.find(|(k, _)| *k == name.as_str()) {
                    apply(value, below);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_come_back_in_selection_order_through_fragments_and_lists() {
        let document = async_graphql::parser::parse_query(
            "{ a { z y } ...F b: c { q p } } fragment F on Query { d }",
        )
        .unwrap();
        let op = match &document.operations {
            async_graphql::parser::types::DocumentOperations::Single(op) => op,
            _ => unreachable!(),
        };
        let mut data = async_graphql::value!({
            "b": [{"p": 1, "q": 2}],
            "d": 3,
            "a": {"y": 4, "z": 5},
        });
        restore(&mut data, &document, &op.node.selection_set.node);
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"{"a":{"z":5,"y":4},"d":3,"b":[{"q":2,"p":1}]}"#
        );
    }
}
