//! The engine's recursion limit (`limits.max_recursive_depth`: selection sets, fragment spreads
//! and inline fragments nested), applied in linear time and before every other limit. async-graphql
//! checks the same rule with the same message when it parses, but by walking every path: a
//! document whose fragments spread each other twice costs it 2^depth visits. Here each fragment's
//! height is computed once; then one walk follows only a path that fails, so the first failure is
//! found where the engine finds it (same message, same position).

use std::collections::HashMap;

use async_graphql::{
    parser::types::{ExecutableDocument, Selection, SelectionSet},
    Name, Positioned, ServerError,
};

/// Nesting below a selection set (0 for a set of leaves); `usize::MAX` when a fragment cycle makes
/// it unbounded (the engine then fails at the limit).
struct Heights<'a> {
    document: &'a ExecutableDocument,
    /// The limit: a path of more fragments than this fails whatever lies below, so the walk
    /// stops there (its stack stays bounded however long a chain the document spells out).
    max: usize,
    fragments: HashMap<&'a Name, usize>,
    visiting: Vec<&'a Name>,
}

impl<'a> Heights<'a> {
    fn set(&mut self, set: &'a SelectionSet) -> usize {
        let mut height = 0usize;
        for item in &set.items {
            let below = match self.child(&item.node) {
                Some(child) => self.of_child(child).saturating_add(1),
                None => 0,
            };
            height = height.max(below);
        }
        height
    }

    /// The selection set one level below an item, if it has one the engine descends into.
    fn child(&self, selection: &'a Selection) -> Option<Child<'a>> {
        match selection {
            Selection::Field(field) if !field.node.selection_set.node.items.is_empty() => {
                Some(Child::Set(&field.node.selection_set))
            }
            Selection::Field(_) => None,
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                self.document
                    .fragments
                    .get(name)
                    .map(|fragment| Child::Fragment(name, &fragment.node.selection_set))
            }
            Selection::InlineFragment(inline) => Some(Child::Set(&inline.node.selection_set)),
        }
    }

    fn of_child(&mut self, child: Child<'a>) -> usize {
        match child {
            Child::Set(set) => self.set(&set.node),
            Child::Fragment(name, set) => {
                if let Some(known) = self.fragments.get(name) {
                    return *known;
                }
                if self.visiting.len() > self.max || self.visiting.contains(&name) {
                    return usize::MAX;
                }
                self.visiting.push(name);
                let height = self.set(&set.node);
                self.visiting.pop();
                self.fragments.insert(name, height);
                height
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Child<'a> {
    Set(&'a Positioned<SelectionSet>),
    Fragment(&'a Name, &'a Positioned<SelectionSet>),
}

/// Refuses a document nested deeper than `max` (QUERY_TOO_COMPLEX, the engine's message and
/// position).
pub(super) fn check_recursion(
    document: &ExecutableDocument,
    max: usize,
) -> Result<(), ServerError> {
    let mut heights = Heights {
        document,
        max,
        fragments: HashMap::new(),
        visiting: Vec::new(),
    };
    for (_, operation) in document.operations.iter() {
        let set = &operation.node.selection_set;
        if heights.set(&set.node) > max {
            return Err(first_failure(&mut heights, set, 0, max));
        }
    }
    Ok(())
}

/// Follows the first failing path, in document order, to the set the engine reports.
fn first_failure<'a>(
    heights: &mut Heights<'a>,
    set: &'a Positioned<SelectionSet>,
    depth: usize,
    max: usize,
) -> ServerError {
    if depth > max {
        return refusal(max, set);
    }
    for item in &set.node.items {
        let Some(child) = heights.child(&item.node) else {
            continue;
        };
        if heights.of_child(child).saturating_add(depth + 1) > max {
            let inner = match child {
                Child::Set(inner) | Child::Fragment(_, inner) => inner,
            };
            return first_failure(heights, inner, depth + 1, max);
        }
    }
    // Unreachable when the height said this set fails; refuse all the same.
    refusal(max, set)
}

fn refusal(max: usize, set: &Positioned<SelectionSet>) -> ServerError {
    let mut error = super::too_complex(format!(
        "The recursion depth of the query cannot be greater than `{max}`"
    ));
    error.locations = vec![set.pos];
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};

    #[derive(SimpleObject, Default)]
    struct Node {
        id: i32,
        #[graphql(skip)]
        _private: (),
    }

    #[derive(Default)]
    struct Query;

    #[Object]
    impl Query {
        async fn node(&self) -> Node {
            Node::default()
        }
        async fn me(&self) -> Query {
            Query
        }
    }

    /// The engine's own answer to `text` under the same limit (its first error, if any).
    async fn engine(text: &str, max: usize) -> Option<(String, Vec<async_graphql::Pos>)> {
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
            .limit_recursive_depth(max)
            .finish();
        let response = schema.execute(text).await;
        let recursion = response
            .errors
            .into_iter()
            .find(|e| e.message.contains("recursion depth"))?;
        Some((recursion.message, recursion.locations))
    }

    fn ours(text: &str, max: usize) -> Option<(String, Vec<async_graphql::Pos>)> {
        let document = async_graphql::parser::parse_query(text).unwrap();
        check_recursion(&document, max)
            .err()
            .map(|e| (e.message, e.locations))
    }

    #[tokio::test]
    async fn it_refuses_what_the_engine_refuses_with_the_same_message_and_position() {
        let chain = |n: usize| {
            let mut text = String::from("query { ...F0 }\n");
            for i in 0..n {
                text.push_str(&format!(
                    "fragment F{i} on Query {{ me {{ ...F{} }} }}\n",
                    i + 1
                ));
            }
            text.push_str(&format!("fragment F{n} on Query {{ node {{ id }} }}\n"));
            text
        };
        let nested =
            |n: usize| format!("{{ {}node {{ id }}{} }}", "me { ".repeat(n), " }".repeat(n));
        let inline = |n: usize| {
            format!(
                "{{ {}node {{ id }}{} }}",
                "... on Query { ".repeat(n),
                " }".repeat(n)
            )
        };
        let documents = [
            chain(3),
            chain(15),
            chain(16),
            chain(40),
            nested(10),
            nested(40),
            inline(31),
            inline(40),
            "{ a: node { id } b: me { ...F } } fragment F on Query { me { me { me { node { id } } } } }"
                .to_string(),
        ];
        for max in [4, 32] {
            for text in &documents {
                assert_eq!(
                    ours(text, max),
                    engine(text, max).await,
                    "max {max}: {text}"
                );
            }
        }
        assert!(ours(&chain(40), 32).is_some(), "a deep chain is refused");
    }

    #[test]
    fn fragments_that_spread_each_other_twice_cost_one_visit_each() {
        // 2^60 paths for a walk that visits every one; a handful of visits here.
        let mut text = String::from("query { ...F0 }\n");
        for i in 0..60 {
            text.push_str(&format!(
                "fragment F{i} on Query {{ me {{ ...F{next} ...F{next} }} }}\n",
                next = i + 1
            ));
        }
        text.push_str("fragment F60 on Query { node { id } }\n");
        let document = async_graphql::parser::parse_query(&text).unwrap();
        let refused = check_recursion(&document, 32).unwrap_err();
        assert!(
            refused.message.contains("recursion depth"),
            "{}",
            refused.message
        );
        // A cycle is refused too, without running forever.
        let cycle = async_graphql::parser::parse_query(
            "query { ...A } fragment A on Query { me { ...B } } fragment B on Query { ...A }",
        )
        .unwrap();
        assert!(check_recursion(&cycle, 32).is_err());
    }
}
