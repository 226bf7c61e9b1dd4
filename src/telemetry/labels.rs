//! Operation names as metric labels and monitoring keys, from a bounded set. The name is the
//! client's to choose (`operationName`, or the document's), and every distinct label value is a
//! series in `/metrics` and an entry in the monitoring table: names the safelist lists, then the
//! first `max` distinct names seen, each cut to [`MAX_LABEL_CHARS`]; everything else is `other`.

use std::{collections::HashSet, sync::Mutex};

/// Longest label kept (characters).
pub const MAX_LABEL_CHARS: usize = 64;

/// The label of every name outside the set.
pub const OTHER: &str = "other";

/// The bounded set of operation names reported as themselves.
#[derive(Debug)]
pub struct OperationNames {
    max: usize,
    /// Admitted names, and how many of them were admitted as seen (not preset).
    known: Mutex<(HashSet<String>, usize)>,
}

impl OperationNames {
    /// Admits the `preset` names (the safelist's) and then up to `max` names as they are seen.
    pub fn new(max: usize, preset: impl IntoIterator<Item = String>) -> OperationNames {
        let known = preset.into_iter().map(|n| cut(&n).to_string()).collect();
        OperationNames {
            max,
            known: Mutex::new((known, 0)),
        }
    }

    /// The label of `name`: itself (cut) when admitted, else [`OTHER`].
    pub fn label(&self, name: &str) -> String {
        let name = cut(name);
        let mut guard = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let (known, seen) = &mut *guard;
        if known.contains(name) {
            return name.to_string();
        }
        if *seen < self.max {
            known.insert(name.to_string());
            *seen += 1;
            return name.to_string();
        }
        OTHER.to_string()
    }
}

fn cut(name: &str) -> &str {
    match name.char_indices().nth(MAX_LABEL_CHARS) {
        Some((at, _)) => &name[..at],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_the_bound_are_other_and_long_names_are_cut() {
        let names = OperationNames::new(2, ["Listed".to_string()]);
        assert_eq!(names.label("Listed"), "Listed");
        assert_eq!(names.label("First"), "First");
        assert_eq!(names.label("Second"), "Second");
        assert_eq!(names.label("Third"), OTHER);
        assert_eq!(names.label("First"), "First");
        let long = "é".repeat(100);
        let names = OperationNames::new(5, []);
        assert_eq!(names.label(&long).chars().count(), MAX_LABEL_CHARS);
    }
}
