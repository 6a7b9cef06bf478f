//! The modules of tong-core and rootfs-common form no import loop: no top-level module
//! uses (through a `crate::` path) a module that, directly or through others, uses it
//! back. docs/architecture.md draws the tree this keeps true. Doc comments do not count:
//! a link in prose is not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module name → the top-level modules its files name with `crate::`.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file belongs to: `src/child/hooks.rs` → `child`, `src/state.rs` → `state`.
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file without its comments (line comments, doc comments included).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every `crate::` path: `crate::a::b`, `crate::{a, b::c}`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::`, `tong_crate::`
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if depth == 1 && item_start => {
                        names.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| top_module(src, f)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let module = top_module(src, file);
        if module == "lib" {
            continue; // the crate root declares and re-exports every module
        }
        let code = without_comments(&std::fs::read_to_string(file).unwrap());
        let uses = graph.entry(module.clone()).or_default();
        for used in crate_paths(&code) {
            if used != module && modules.contains(&used) && used != "lib" {
                uses.insert(used);
            }
        }
    }
    graph
}

/// One import loop, as `a -> b -> a`, if there is any.
fn find_loop(graph: &Graph) -> Option<String> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle.join(" -> "));
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
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn assert_no_loop(src: &Path, known_edge: (&str, &str)) {
    let graph = graph(src);
    let (from, to) = known_edge;
    assert!(
        graph.get(from).is_some_and(|uses| uses.contains(to)),
        "the checker misread {}: {from} uses {to}, but it found {graph:?}",
        src.display()
    );
    if let Some(cycle) = find_loop(&graph) {
        panic!("import loop in {}: {cycle}", src.display());
    }
}

#[test]
fn tong_core_modules_form_no_loop() {
    assert_no_loop(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        ("runtime", "create"),
    );
}

#[test]
fn rootfs_common_modules_form_no_loop() {
    assert_no_loop(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/rootfs-common/src"),
        ("child", "steps"),
    );
}

#[test]
fn the_checker_finds_a_loop_and_reads_grouped_imports() {
    let paths = crate_paths("use crate::{a::X, b,\n c::{d, e}};\nlet x = crate::f::g(); $crate::h");
    assert_eq!(paths.into_iter().collect::<Vec<_>>(), ["a", "b", "c", "f"]);
    let graph: Graph = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert_eq!(find_loop(&graph).as_deref(), Some("a -> b -> c -> a"));
}
