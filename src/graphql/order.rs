//! Response fields in the order of the selection set, as the GraphQL spec requires
//! ("Serialized Map Ordering"). async-graphql 7.2 resolves an object's fields on a
//! `FuturesUnordered` and inserts each as it completes, so a field that waits for I/O (a cache
//! read, a DataLoader) lands after fields that were ready at once; the null completion of
//! `nulls` appends its keys too. This pass puts every object of `data` back in selection order:
//! typed clients and byte-comparing caches depend on it.

use async_graphql::{
    parser::types::{ExecutableDocument, Selection, SelectionSet},
    Name, Value,
};

/// Reorders the `data` of the operation `operation` (or the only one) of `document`.
pub fn restore_operation(data: &mut Value, document: &ExecutableDocument, operation: Option<&str>) {
    if let Some(op) = super::chosen_operation(document, operation) {
        restore(data, document, &op.node.selection_set.node);
    }
}

/// Reorders `data` (the answer to `set` of `document`) into selection order, recursively.
pub fn restore(data: &mut Value, document: &ExecutableDocument, set: &SelectionSet) {
    restore_sets(data, document, &[set]);
}

/// The response keys of the merged selection sets, in order, each with every sub-selection
/// the key collects (field merging: `a { x } a { y }` answers `a` with `x` then `y`).
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

fn restore_sets(data: &mut Value, document: &ExecutableDocument, sets: &[&SelectionSet]) {
    match data {
        Value::List(items) => {
            for item in items {
                restore_sets(item, document, sets);
            }
        }
        Value::Object(map) => {
            let mut keys = Vec::new();
            for set in sets {
                collect(document, set, &mut keys);
            }
            let in_order = map.keys().map(Name::as_str).eq(keys
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| map.contains_key(*k)));
            if !in_order {
                let mut ordered = async_graphql::indexmap::IndexMap::with_capacity(map.len());
                for (key, _) in &keys {
                    if let Some((name, value)) = map.swap_remove_entry(*key) {
                        ordered.insert(name, value);
                    }
                }
                // Nothing should remain; keep whatever does rather than drop data.
                ordered.extend(std::mem::take(map));
                *map = ordered;
            }
            for (key, child_sets) in &keys {
                if child_sets.iter().all(|s| s.items.is_empty()) {
                    continue;
                }
                if let Some(value) = map.get_mut(*key) {
                    restore_sets(value, document, child_sets);
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
