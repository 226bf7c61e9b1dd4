//! Query limits checked before any resolver or SQL runs: document size and tokens, depth (an
//! alias named `__schema` is no way around it), aliases, root fields and directives. Each refusal
//! is one GraphQL error with code `QUERY_TOO_COMPLEX`. Fragment recursion is checked first, in
//! linear time, with the engine's rule and message (`recursion`); complexity uses the engine's
//! own limit, whose errors get the same code. The pipeline (`pipeline::prepare`)
//! applies them when it parses a document; a prepared document passed them.

mod recursion;

use std::collections::{HashMap, HashSet};

use async_graphql::{
    parser::types::{ExecutableDocument, FragmentDefinition, Selection, SelectionSet},
    Name, Positioned, ServerError,
};

use crate::{config::LimitSettings, error::ErrorCode};

/// Depth a pure introspection query (GraphiQL's) may reach when introspection is on.
const INTROSPECTION_DEPTH: usize = 15;

/// An error with the `QUERY_TOO_COMPLEX` code.
pub fn too_complex(message: impl Into<String>) -> ServerError {
    ErrorCode::QueryTooComplex.server_error(message)
}

/// GraphQL tokens in a document (names, numbers, strings, punctuators), for the token limit.
pub fn count_tokens(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut tokens = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                tokens += 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                tokens += 1;
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                tokens += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || matches!(bytes[i], b'_' | b'.' | b'-' | b'+'))
                {
                    i += 1;
                }
            }
            _ => {
                tokens += 1;
                i += 1;
            }
        }
    }
    tokens
}

/// What a selection set costs once every fragment spread in it is expanded: the budget the
/// limits compare. Sums saturate, so a fan-out of 2^40 is a large number, not an overflow.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    /// Deepest field nesting below (a field counts 1).
    depth: usize,
    /// Field selections after expansion.
    fields: usize,
    /// Aliased field selections after expansion.
    aliases: usize,
    /// Directives after expansion (fields, spreads, inline fragments).
    directives: usize,
    /// Most directives on one selection.
    max_field_directives: usize,
    /// Whether `__schema` or `__type` is asked for.
    introspection: bool,
    /// Whether every root selection is an introspection field (`__schema`, `__type`, `__typename`).
    only_meta: bool,
}

impl Cost {
    /// This cost and another one beside it in the same selection set.
    fn beside(self, other: Cost) -> Cost {
        Cost {
            depth: self.depth.max(other.depth),
            fields: self.fields.saturating_add(other.fields),
            aliases: self.aliases.saturating_add(other.aliases),
            directives: self.directives.saturating_add(other.directives),
            max_field_directives: self.max_field_directives.max(other.max_field_directives),
            introspection: self.introspection || other.introspection,
            only_meta: self.only_meta && other.only_meta,
        }
    }
}

/// Costs selection sets, computing each fragment's cost once: the walk is linear in the size of
/// the document however often fragments spread each other (a naive walk of `F(i)` spreading
/// `F(i+1)` twice visits 2^n selections).
struct Costs<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    /// Costs of fragments spread at the root of an operation.
    at_root: HashMap<&'a str, Cost>,
    /// Costs of fragments spread below a field.
    nested: HashMap<&'a str, Cost>,
    /// Fragments being costed: a spread of one of these is a cycle (refused by validation), so it
    /// costs nothing here.
    open: HashSet<&'a str>,
}

impl<'a> Costs<'a> {
    fn new(fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>) -> Self {
        Costs {
            fragments,
            at_root: HashMap::new(),
            nested: HashMap::new(),
            open: HashSet::new(),
        }
    }

    fn set(&mut self, set: &'a SelectionSet, root: bool) -> Cost {
        let mut total = Cost {
            only_meta: true,
            ..Cost::default()
        };
        for selection in &set.items {
            let cost = match &selection.node {
                Selection::Field(field) => {
                    let f = &field.node;
                    let name = f.name.node.as_str();
                    let below = self.set(&f.selection_set.node, false);
                    let directives = f.directives.len();
                    Cost {
                        depth: below.depth.saturating_add(1),
                        fields: below.fields.saturating_add(1),
                        aliases: below.aliases.saturating_add(usize::from(f.alias.is_some())),
                        directives: below.directives.saturating_add(directives),
                        max_field_directives: below.max_field_directives.max(directives),
                        introspection: below.introspection
                            || (root && matches!(name, "__schema" | "__type")),
                        // By field *name*: an alias called __schema is no introspection.
                        only_meta: name.starts_with("__"),
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let directives = spread.node.directives.len();
                    let fragment = self.fragment(spread.node.fragment_name.node.as_str(), root);
                    Cost {
                        directives: fragment.directives.saturating_add(directives),
                        max_field_directives: fragment.max_field_directives.max(directives),
                        ..fragment
                    }
                }
                Selection::InlineFragment(inline) => {
                    let directives = inline.node.directives.len();
                    let inner = self.set(&inline.node.selection_set.node, root);
                    Cost {
                        directives: inner.directives.saturating_add(directives),
                        max_field_directives: inner.max_field_directives.max(directives),
                        ..inner
                    }
                }
            };
            total = total.beside(cost);
        }
        total
    }

    /// A fragment's cost, memoised. Root-level and nested spreads differ only in whether
    /// `__schema` counts as introspection, so the two are memoised apart.
    fn fragment(&mut self, name: &'a str, root: bool) -> Cost {
        let Some((key, fragment)) = self.fragments.get_key_value(name) else {
            return Cost::default();
        };
        let key = key.as_str();
        let memo = if root { &self.at_root } else { &self.nested };
        if let Some(cost) = memo.get(key) {
            return *cost;
        }
        if !self.open.insert(key) {
            return Cost::default();
        }
        let cost = self.set(&fragment.node.selection_set.node, root);
        self.open.remove(key);
        let memo = if root {
            &mut self.at_root
        } else {
            &mut self.nested
        };
        memo.insert(key, cost);
        cost
    }
}

/// Checks a parsed document against the limits, in time linear in its size. The budget covers
/// the whole document (every operation), expanded: a fragment spread costs what it expands to.
pub fn check(
    document: &ExecutableDocument,
    limits: &LimitSettings,
    introspection: bool,
) -> Result<(), ServerError> {
    recursion::check_recursion(document, limits.max_recursive_depth)?;
    let mut costs = Costs::new(&document.fragments);
    let mut fields = 0usize;
    let mut aliases = 0usize;
    let mut directives = 0usize;
    for (_, operation) in document.operations.iter() {
        let set = &operation.node.selection_set.node;
        let cost = costs.set(set, true);
        let operation_directives = operation.node.directives.len()
            + operation
                .node
                .variable_definitions
                .iter()
                .map(|v| v.node.directives.len())
                .sum::<usize>();
        fields = fields.saturating_add(cost.fields);
        aliases = aliases.saturating_add(cost.aliases);
        directives = directives
            .saturating_add(cost.directives)
            .saturating_add(operation_directives);
        if cost.introspection && !introspection {
            return Err(ErrorCode::IntrospectionDisabled.server_error(
                "introspection is disabled: the document asks for __schema or __type",
            ));
        }
        let max_depth = if introspection && cost.only_meta {
            INTROSPECTION_DEPTH.max(limits.max_depth)
        } else {
            limits.max_depth
        };
        if cost.depth > max_depth {
            return Err(too_complex(format!(
                "query depth {} exceeds the limit of {max_depth}",
                cost.depth
            )));
        }
        if set.items.len() > limits.max_root_fields {
            return Err(too_complex(format!(
                "{} root fields exceed the limit of {}",
                set.items.len(),
                limits.max_root_fields
            )));
        }
        if cost
            .max_field_directives
            .max(operation.node.directives.len())
            > limits.max_directives_per_field
        {
            return Err(too_complex(format!(
                "a field has more than {} directives",
                limits.max_directives_per_field
            )));
        }
    }
    let fragment_directives: usize = document
        .fragments
        .values()
        .map(|f| f.node.directives.len())
        .sum();
    directives = directives.saturating_add(fragment_directives);
    if fields > limits.max_fields {
        return Err(too_complex(format!(
            "the document expands to {fields} fields, over the limit of {}",
            limits.max_fields
        )));
    }
    if aliases > limits.max_aliases {
        return Err(too_complex(format!(
            "{aliases} aliases exceed the limit of {}",
            limits.max_aliases
        )));
    }
    if directives > limits.max_directives {
        return Err(too_complex(format!(
            "{directives} directives exceed the limit of {}",
            limits.max_directives
        )));
    }
    Ok(())
}

/// What one pass over the text, outside strings and comments, finds before the parser runs:
/// the deepest nesting of `{`, `(` and `[` (the parser recurses on it), and the directives (`@`).
/// Parsing costs ~0.1 µs a byte, so a document refused on these is refused for the price of a
/// scan (a 11 KB directive bomb cost 1.25 ms of CPU parsed, in `benches/load.rs` "hostile").
struct Scan {
    deepest: usize,
    directives: usize,
}

/// [`Scan`]s `text`, stopping once the nesting passes `limit`.
fn scan(text: &str, limit: usize) -> Scan {
    let bytes = text.as_bytes();
    let (mut i, mut depth, mut deepest, mut directives) = (0, 0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'(' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    break;
                }
            }
            b'}' | b')' | b']' => depth = depth.saturating_sub(1),
            b'@' => directives += 1,
            _ => {}
        }
        i += 1;
    }
    Scan {
        deepest,
        directives,
    }
}

/// Refuses variables holding a NUL character anywhere (strings or keys): no column may store
/// one (Postgres refuses it, which would surface as an internal error), and no rule needs one.
pub fn check_variables(variables: &async_graphql::Variables) -> Result<(), ServerError> {
    fn has_nul(value: &async_graphql::Value) -> bool {
        use async_graphql::Value;
        match value {
            Value::String(s) => s.contains('\0'),
            Value::List(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if variables
        .iter()
        .any(|(k, v)| k.contains('\0') || has_nul(v))
    {
        return Err(ErrorCode::BadUserInput.server_error("a variable contains a NUL character"));
    }
    Ok(())
}

/// Checks the document text before it is parsed: characters, tokens, bracket nesting, directives
/// and NUL characters, each in one linear pass.
pub fn check_text(query: &str, limits: &LimitSettings) -> Result<(), ServerError> {
    if query.chars().count() > limits.max_document_chars {
        return Err(too_complex(format!(
            "the document exceeds {} characters",
            limits.max_document_chars
        )));
    }
    if count_tokens(query) > limits.max_document_tokens {
        return Err(too_complex(format!(
            "the document exceeds {} tokens",
            limits.max_document_tokens
        )));
    }
    let scan = scan(query, limits.max_nesting);
    if scan.deepest > limits.max_nesting {
        return Err(too_complex(format!(
            "the document nests brackets deeper than {}",
            limits.max_nesting
        )));
    }
    // The same count the parsed check makes (every directive of the document), made early.
    if scan.directives > limits.max_directives {
        return Err(too_complex(format!(
            "{} directives exceed the limit of {}",
            scan.directives, limits.max_directives
        )));
    }
    if query.contains('\0') {
        return Err(ErrorCode::BadUserInput.server_error("the document contains a NUL character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitSettings {
        crate::config::Settings::load_from(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
            &[],
        )
        .unwrap()
        .limits
    }

    fn run(query: &str, introspection: bool) -> Result<(), ServerError> {
        check(
            &async_graphql::parser::parse_query(query).unwrap(),
            &limits(),
            introspection,
        )
    }

    #[test]
    fn counts_tokens_like_a_lexer() {
        assert_eq!(count_tokens("{ a { b(c: \"x y\") } }"), 11);
        assert_eq!(count_tokens("query Q($v: Int = 5) { ...F }"), 14);
    }

    #[test]
    fn depth_aliases_root_fields_and_directives_are_limited() {
        assert!(run(
            "{ authContext { clubs { club { organization { clubs { courts { name } } } } } } }",
            false
        )
        .is_ok());
        let deep = format!("{{ {}name{} }}", "a { ".repeat(9), " }".repeat(9));
        assert!(run(&deep, false).is_err());
        // Renaming a field __schema does not lift the limit.
        let disguised = format!("{{ __schema: {}name{} }}", "a { ".repeat(9), " }".repeat(9));
        assert!(run(&disguised, true).is_err());
        let aliases: String = (0..16).map(|i| format!("a{i}: __typename ")).collect();
        assert!(run(&format!("{{ {aliases} }}"), false).is_err());
        let roots: String = (0..21).map(|_| "__typename ".to_string()).collect();
        assert!(run(&format!("{{ {roots} }}"), false).is_err());
        assert!(run("{ __typename @include(if: true) @include(if: true) @include(if: true) @include(if: true) @include(if: true) @include(if: true) }", false).is_err());
        // Fragment cycles do not hang the walk: they are refused at the recursion limit, as the
        // engine refuses them before validation would.
        let cycle = run(
            "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
            false,
        );
        assert!(cycle.is_err_and(|e| e.message.contains("recursion depth")));
    }
}
