//! Prepared documents: a repeated operation skips the parser, the limit walk and, for the same
//! operation name and variables, validation. async-graphql parses and validates every request;
//! on an L1 hit of the dashboard query that was ~330 k and ~100 k of ~1.9 M instructions
//! (callgrind, docs/performance.md).
//!
//! Safe to reuse because each step is a pure function of what the key holds: the parsed document
//! of the document text; the limit verdict of the document and the (fixed) settings; the
//! validation verdict of the document, the schema, the operation name and the variable values.
//! Only documents that parsed and passed the limits, and validations that passed, are kept.

use std::sync::Arc;

use async_graphql::{
    parser::types::{ExecutableDocument, OperationType},
    ServerError, ValidationResult, Value, Variables,
};

use crate::cache::keys::fnv1a64;

/// Document text kept, in bytes (weighed by text length; the parsed form is roughly ten times
/// the text): 2 MiB is ~8 000 dashboard-sized documents, ~20 MiB of memory at most.
const MAX_DOCUMENT_BYTES: u64 = 2 * 1024 * 1024;
/// Text of refused documents kept (their verdict is as pure as a pass): a stranger repeating a
/// fan-out or a parse error pays a hash lookup, not a parse (~0.1 µs a byte).
const MAX_REFUSED_BYTES: u64 = 1024 * 1024;
/// Documents longer than this are not kept (the limits allow longer ones; they are rare).
const MAX_KEPT_CHARS: usize = 16 * 1024;
/// Validation verdicts kept, weighed by their variables (strings and items counted): a popular
/// screen's document is sent with hundreds of variable sets (40 clubs × 7 days of availability),
/// and shared answers need each one's verdict. 4 MiB is ~50 000 screen-sized verdicts.
const MAX_VERDICT_BYTES: u64 = 4 * 1024 * 1024;
/// Variables larger than this are not kept with a verdict (they are validated every time).
const MAX_KEPT_VARIABLES: usize = 1024;

/// A document that parsed and passed the query limits.
pub struct Prepared {
    /// 64-bit FNV-1a of the text: the cache key, and the hash spans report.
    pub hash: u64,
    query: Arc<str>,
    /// The parsed document; each request executes a clone (the engine consumes it).
    pub document: ExecutableDocument,
    /// Whether any operation in it is a mutation (rate limiting charges those as mutations).
    pub has_mutation: bool,
    verdicts: Verdicts,
}

/// Passed validations of every prepared document, by (document hash, hash of operation name and
/// variables), bounded by the bytes of their variables; each keeps its exact operation name and
/// variables, compared on every lookup.
type Verdicts = moka::sync::Cache<(u64, u64), Arc<Verdict>>;

struct Verdict {
    /// The document's text: the key holds only its 64-bit hash, and a crafted collision must not
    /// borrow another document's pass.
    document: Arc<str>,
    operation: Option<String>,
    variables: Variables,
    result: ValidationResult,
}

/// The lookup hash of an operation name and variables (exactness comes from the comparison).
fn verdict_key(operation: Option<&str>, variables: &Variables) -> u64 {
    let text = serde_json::to_string(variables).unwrap_or_default();
    // `{:?}` keeps "no operation name" and an empty one apart.
    fnv1a64(format!("{operation:?}\u{0}{text}").as_bytes())
}

impl Prepared {
    /// The validation result of an earlier request with this operation name and these variables.
    pub fn verdict(
        &self,
        operation: Option<&str>,
        variables: &Variables,
    ) -> Option<ValidationResult> {
        self.verdicts
            .get(&(self.hash, verdict_key(operation, variables)))
            .filter(|v| {
                *v.document == *self.query
                    && v.operation.as_deref() == operation
                    && v.variables == *variables
            })
            .map(|v| v.result)
    }

    /// Keeps a passed validation for the next identical request.
    pub fn remember(
        &self,
        operation: Option<String>,
        variables: Variables,
        result: ValidationResult,
    ) {
        let mut budget = MAX_KEPT_VARIABLES;
        if !variables.values().all(|v| fits(v, &mut budget)) {
            return;
        }
        let key = (self.hash, verdict_key(operation.as_deref(), &variables));
        self.verdicts.insert(
            key,
            Arc::new(Verdict {
                document: self.query.clone(),
                operation,
                variables,
                result,
            }),
        );
    }
}

/// Whether a value's size (bytes of text, 8 per other item) fits the remaining budget.
fn fits(value: &Value, budget: &mut usize) -> bool {
    let size = match value {
        Value::String(s) => s.len(),
        Value::Binary(b) => b.len(),
        Value::Enum(n) => n.len(),
        _ => 8,
    };
    let Some(left) = budget.checked_sub(size) else {
        return false;
    };
    *budget = left;
    match value {
        Value::List(items) => items.iter().all(|v| fits(v, budget)),
        Value::Object(map) => map.iter().all(|(k, v)| {
            *budget = budget.saturating_sub(k.len());
            fits(v, budget)
        }),
        _ => true,
    }
}

/// Prepared documents of one schema, bounded.
pub struct DocumentCache {
    entries: moka::sync::Cache<u64, Arc<Prepared>>,
    /// Documents that failed to parse or broke a limit, with the error they got.
    refused: moka::sync::Cache<u64, Arc<(Box<str>, ServerError)>>,
    verdicts: Verdicts,
}

impl std::fmt::Debug for DocumentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentCache")
            .field("documents", &self.entries.entry_count())
            .finish()
    }
}

impl Default for DocumentCache {
    fn default() -> Self {
        DocumentCache {
            entries: moka::sync::Cache::builder()
                .weigher(|_, p: &Arc<Prepared>| u32::try_from(p.query.len()).unwrap_or(u32::MAX))
                .max_capacity(MAX_DOCUMENT_BYTES)
                .build(),
            refused: moka::sync::Cache::builder()
                .weigher(|_, r: &Arc<(Box<str>, ServerError)>| {
                    u32::try_from(r.0.len()).unwrap_or(u32::MAX)
                })
                .max_capacity(MAX_REFUSED_BYTES)
                .build(),
            verdicts: moka::sync::Cache::builder()
                .weigher(|_, v: &Arc<Verdict>| {
                    let mut budget = MAX_KEPT_VARIABLES;
                    v.variables.values().all(|value| fits(value, &mut budget));
                    u32::try_from(64 + MAX_KEPT_VARIABLES - budget).unwrap_or(u32::MAX)
                })
                .max_capacity(MAX_VERDICT_BYTES)
                .build(),
        }
    }
}

impl DocumentCache {
    /// The prepared document of exactly this text, or (not prepared yet) the text's hash, the
    /// key [`DocumentCache::insert`] files it under.
    pub fn lookup(&self, query: &str) -> Result<Arc<Prepared>, u64> {
        let hash = fnv1a64(query.as_bytes());
        self.entries
            .get(&hash)
            .filter(|p| *p.query == *query)
            .ok_or(hash)
    }

    /// The error an earlier request with exactly this text got (under the hash `lookup` gave).
    pub fn refusal(&self, hash: u64, query: &str) -> Option<ServerError> {
        self.refused
            .get(&hash)
            .filter(|r| *r.0 == *query)
            .map(|r| r.1.clone())
    }

    /// Keeps the verdict of a document that failed to parse or broke a limit.
    pub fn refuse(&self, hash: u64, query: &str, error: &ServerError) {
        if query.len() <= MAX_KEPT_CHARS {
            self.refused
                .insert(hash, Arc::new((query.into(), error.clone())));
        }
    }

    /// Keeps a document that parsed and passed the limits under the hash `lookup` gave; returns
    /// it prepared.
    pub fn insert(&self, hash: u64, query: &str, document: ExecutableDocument) -> Arc<Prepared> {
        let has_mutation = document
            .operations
            .iter()
            .any(|(_, op)| op.node.ty == OperationType::Mutation);
        let prepared = Arc::new(Prepared {
            hash,
            query: query.into(),
            document,
            has_mutation,
            verdicts: self.verdicts.clone(),
        });
        if query.len() <= MAX_KEPT_CHARS {
            self.entries.insert(hash, prepared.clone());
        }
        prepared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{CacheControl, Name};

    fn result(complexity: usize) -> ValidationResult {
        ValidationResult {
            cache_control: CacheControl::default(),
            complexity,
            depth: 1,
        }
    }

    fn variables(club: &str) -> Variables {
        let mut v = Variables::default();
        v.insert(Name::new("c"), Value::String(club.into()));
        v
    }

    #[test]
    fn a_refused_text_is_refused_again_without_parsing_and_only_that_text() {
        let cache = DocumentCache::default();
        let text = "{ a @x @y }";
        let hash = cache.lookup(text).err().unwrap();
        assert!(cache.refusal(hash, text).is_none());
        let error = ServerError::new("2 directives exceed the limit of 1", None);
        cache.refuse(hash, text, &error);
        assert_eq!(
            cache.refusal(hash, text).map(|e| e.message),
            Some(error.message)
        );
        // The hash names the text; a different text under it is not refused for it.
        assert!(cache.refusal(hash, "{ a }").is_none());
        assert!(
            cache.lookup(text).is_err(),
            "a refused text is never prepared"
        );
    }

    #[test]
    fn documents_are_found_by_exact_text_only() {
        let cache = DocumentCache::default();
        let text = "mutation M { a } query Q { b }";
        let parsed = async_graphql::parser::parse_query(text).unwrap();
        let hash = cache.lookup(text).err().unwrap();
        let prepared = cache.insert(hash, text, parsed);
        assert!(prepared.has_mutation);
        assert_eq!(cache.lookup(text).ok().map(|p| p.hash), Some(hash));
        assert!(cache.lookup("query Q { b }").is_err());
        assert!(cache.lookup(&format!("{text} ")).is_err());
    }

    #[test]
    fn verdicts_need_the_same_operation_and_variables() {
        let cache = DocumentCache::default();
        let text = "query Q($c: ID!) { b(c: $c) }";
        let hash = cache.lookup(text).err().unwrap();
        let prepared = cache.insert(
            hash,
            text,
            async_graphql::parser::parse_query(text).unwrap(),
        );
        assert!(!prepared.has_mutation);
        prepared.remember(Some("Q".into()), variables("1"), result(7));
        assert_eq!(
            prepared
                .verdict(Some("Q"), &variables("1"))
                .map(|r| r.complexity),
            Some(7)
        );
        assert!(prepared.verdict(Some("Q"), &variables("2")).is_none());
        assert!(prepared.verdict(None, &variables("1")).is_none());
        // A screen sent with hundreds of variable sets keeps the verdict of each.
        for i in 0..500 {
            prepared.remember(None, variables(&i.to_string()), result(i));
        }
        assert!((0..500).all(|i| prepared
            .verdict(None, &variables(&i.to_string()))
            .map(|r| r.complexity)
            == Some(i)));
        assert!(prepared.verdict(Some("Q"), &variables("1")).is_some());
        // Another document's verdicts are its own.
        let other = cache.insert(
            hash ^ 1,
            "query Q($c: ID!) { b(c: $c) a }",
            async_graphql::parser::parse_query("query Q($c: ID!) { b(c: $c) a }").unwrap(),
        );
        assert!(other.verdict(Some("Q"), &variables("1")).is_none());
        // Large variables are validated every time, never kept.
        let large = variables(&"x".repeat(MAX_KEPT_VARIABLES + 1));
        prepared.remember(None, large.clone(), result(1));
        assert!(prepared.verdict(None, &large).is_none());
    }
}
