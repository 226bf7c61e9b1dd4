//! Query limits checked before any resolver or SQL runs: document size and tokens, depth (an
//! alias named `__schema` is no way around it), aliases, root fields and directives. Each refusal
//! is one GraphQL error with code `QUERY_TOO_COMPLEX`. Complexity and fragment recursion use the
//! engine's own limits, whose errors get the same code. The schema's one extension
//! (`telemetry::graphql`) applies them when it parses a document; a prepared document passed them.

use std::collections::HashSet;

use async_graphql::{
    parser::types::{ExecutableDocument, FragmentDefinition, Selection, SelectionSet},
    Name, Positioned, ServerError,
};

use crate::{
    config::LimitSettings, error::ErrorCode, graphql::context::RequestContext,
    ratelimit::OperationKind,
};

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

/// Walks selections (following fragments once per path) measuring depth and counting aliases
/// and directives.
struct Walk<'a> {
    fragments: &'a std::collections::HashMap<Name, Positioned<FragmentDefinition>>,
    aliases: usize,
    directives: usize,
    max_field_directives: usize,
}

impl Walk<'_> {
    fn depth(&mut self, set: &SelectionSet, visiting: &mut HashSet<Name>) -> usize {
        let mut deepest = 0;
        for selection in &set.items {
            let depth = match &selection.node {
                Selection::Field(field) => {
                    let f = &field.node;
                    if f.alias.is_some() {
                        self.aliases += 1;
                    }
                    self.directives += f.directives.len();
                    self.max_field_directives = self.max_field_directives.max(f.directives.len());
                    1 + self.depth(&f.selection_set.node, visiting)
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    self.directives += spread.node.directives.len();
                    match self.fragments.get(name) {
                        Some(fragment) if visiting.insert(name.clone()) => {
                            let d = self.depth(&fragment.node.selection_set.node, visiting);
                            visiting.remove(name);
                            d
                        }
                        _ => 0,
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.directives += inline.node.directives.len();
                    self.depth(&inline.node.selection_set.node, visiting)
                }
            };
            deepest = deepest.max(depth);
        }
        deepest
    }
}

/// Checks a parsed document against the limits.
pub fn check(
    document: &ExecutableDocument,
    limits: &LimitSettings,
    introspection: bool,
) -> Result<(), ServerError> {
    for (_, operation) in document.operations.iter() {
        let mut walk = Walk {
            fragments: &document.fragments,
            aliases: 0,
            directives: 0,
            max_field_directives: 0,
        };
        let set = &operation.node.selection_set.node;
        let depth = walk.depth(set, &mut HashSet::new());
        walk.directives += operation.node.directives.len();
        let root_fields: Vec<&str> = set
            .items
            .iter()
            .filter_map(|s| match &s.node {
                Selection::Field(f) => Some(f.node.name.node.as_str()),
                _ => None,
            })
            .collect();
        // By field *name*: an alias called __schema does not make a query introspection.
        let pure_introspection = !root_fields.is_empty()
            && root_fields.iter().all(|n| n.starts_with("__"))
            && set.items.len() == root_fields.len();
        let max_depth = if introspection && pure_introspection {
            INTROSPECTION_DEPTH.max(limits.max_depth)
        } else {
            limits.max_depth
        };
        if depth > max_depth {
            return Err(too_complex(format!(
                "query depth {depth} exceeds the limit of {max_depth}"
            )));
        }
        if walk.aliases > limits.max_aliases {
            return Err(too_complex(format!(
                "{} aliases exceed the limit of {}",
                walk.aliases, limits.max_aliases
            )));
        }
        if set.items.len() > limits.max_root_fields {
            return Err(too_complex(format!(
                "{} root fields exceed the limit of {}",
                set.items.len(),
                limits.max_root_fields
            )));
        }
        if walk.max_field_directives > limits.max_directives_per_field {
            return Err(too_complex(format!(
                "a field has more than {} directives",
                limits.max_directives_per_field
            )));
        }
        if walk.directives > limits.max_directives {
            return Err(too_complex(format!(
                "{} directives exceed the limit of {}",
                walk.directives, limits.max_directives
            )));
        }
    }
    Ok(())
}

/// Checks the document text before it is parsed: characters and tokens.
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
    Ok(())
}

/// Takes the request's rate-limit token: a document holding any mutation is charged as one
/// (the stricter budget). Runs for every request, prepared document or not.
pub async fn charge(request: &RequestContext, has_mutation: bool) -> Result<(), ServerError> {
    let Some((limiter, ip)) = &request.rate_limit else {
        return Ok(());
    };
    let kind = if has_mutation {
        OperationKind::Mutation
    } else {
        OperationKind::Query
    };
    if let Err(limited) = limiter.check(request.token_user_id(), *ip, kind).await {
        request.stats.set_retry_after(limited.retry_after);
        let seconds = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let mut error = ErrorCode::RateLimited
            .server_error(format!("too many requests: retry after {seconds} s"));
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("retryAfter", seconds);
        return Err(error);
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
        // Fragment cycles do not hang the walk.
        assert!(run(
            "query { ...A } fragment A on QueryRoot { ...B } fragment B on QueryRoot { ...A }",
            false
        )
        .is_ok());
    }
}
