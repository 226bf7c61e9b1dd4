//! The shape of the code, checked from its text: no import cycle between the top-level modules of
//! `src/` (layers point one way: docs/architecture.md), telemetry a leaf, and no source file over
//! 500 lines unless its `//!` says why.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

const MAX_LINES: usize = 500;

/// Every `.rs` file under `src/` with the top-level module it belongs to.
fn sources() -> Vec<(String, PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&root).expect("under src");
            let first = relative
                .components()
                .next()
                .expect("a component")
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            let text = std::fs::read_to_string(&path).expect("a source file is readable");
            (first, path, text)
        })
        .collect()
}

/// The top-level modules a file names through `crate::…` paths (in `use` lines, groups
/// included, and inline paths), comments left out.
fn crate_references(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut names = BTreeSet::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at + "crate::".len();
        from = start;
        // `padel_crate::` or `my_crate::` are not `crate::`.
        let before = code[..start - "crate::".len()].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if bytes.get(start) == Some(&b'{') {
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for &b in &bytes[start..] {
                match b {
                    b'{' => {
                        depth += 1;
                        if depth == 1 {
                            continue;
                        }
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            items.push(std::mem::take(&mut item));
                            break;
                        }
                    }
                    b',' if depth == 1 => {
                        items.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(b as char);
            }
            for item in items {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        } else {
            let name: String = code[start..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names.remove("self");
    names
}

/// Which top-level module uses which.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, _, text) in sources() {
        if module == "lib" || module == "main" {
            continue;
        }
        let uses = graph.entry(module.clone()).or_default();
        for name in crate_references(&text) {
            if name != module {
                uses.insert(name);
            }
        }
    }
    graph
}

/// A cycle in `graph`, as the path that closes it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_reference_reader_sees_use_groups_inline_paths_and_skips_comments() {
    let text = "use crate::{cache::{Cache, Kind}, error::ErrorCode, self};\n\
                let x = crate::store::Store::new(); // crate::http::router\n\
                /// see [`crate::pipeline`]\n\
                let y = padel_crate::thing;";
    let found: Vec<String> = crate_references(text).into_iter().collect();
    assert_eq!(found, ["cache", "error", "store"]);
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_only_a_cycle() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(
        find_cycle(&graph(&[
            ("http", "graphql"),
            ("graphql", "store"),
            ("http", "store")
        ])),
        None
    );
    let cycle = find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
}

#[test]
fn no_import_cycle_between_the_top_level_modules_of_src() {
    let graph = module_graph();
    assert!(
        graph.contains_key("pipeline") && graph.contains_key("store"),
        "{graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between top-level modules: {} (layers point one way, see \
             docs/architecture.md)",
            cycle.join(" → ")
        );
    }
}

#[test]
fn telemetry_is_a_leaf_that_uses_only_config() {
    let graph = module_graph();
    let uses = &graph["telemetry"];
    let others: Vec<&String> = uses.iter().filter(|m| m.as_str() != "config").collect();
    assert!(others.is_empty(), "telemetry uses {others:?}");
}

#[test]
fn no_source_file_is_over_500_lines_unless_it_says_why() {
    let mut long = Vec::new();
    for (_, path, text) in sources() {
        let lines = text.lines().count();
        // A file that truly needs more says so in its module doc: "Over 500 lines: …".
        let excused = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .any(|l| l.contains("Over 500 lines"));
        if lines > MAX_LINES && !excused {
            long.push(format!("{} ({lines} lines)", path.display()));
        }
    }
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}
