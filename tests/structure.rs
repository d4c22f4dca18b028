//! The shape of the source tree, checked: no file of `src/` imports a file that imports it back
//! (directly or around a longer circle), every file opens with a `//!` doc, and no file of
//! `src/shim/` or `src/server/` is over 450 lines unless its doc says why ("longer than 450
//! lines because …").
//!
//! An "import" is any path in the code that names another file's module: `crate::a::b::…`,
//! `super::…`, `self::…`, `use` trees with braces included. The test code at the end of a file
//! (`#[cfg(test)] mod tests`) is not counted: it belongs to the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, keyed by its module path (`shim::gate`, `shim`, `lib`).
fn modules() -> BTreeMap<Vec<String>, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter(|f| f.file_name().unwrap() != "main.rs")
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().with_extension("");
            let mut path: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if path.last().is_some_and(|l| l == "mod" || l == "lib") {
                path.pop();
            }
            (path, f)
        })
        .collect()
}

/// The file's code without its test module and comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a file's code names, with `use` trees expanded: `crate::…`, `super::…`,
/// `self::…`, and bare `name::…` (a child module, as `mod.rs` files name theirs; read as
/// `self::name::…`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0
            || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        let word_start = bytes[i].is_alphabetic() || bytes[i] == '_';
        if boundary && word_start {
            let (tree, end) = path_tree(&bytes, i);
            for p in tree {
                match p.first().map(String::as_str) {
                    // A lone `super` or `crate` is a visibility (`pub(super)`), not a path.
                    Some("crate" | "super" | "self") if p.len() > 1 => out.push(p),
                    Some("crate" | "super" | "self") => {}
                    Some(_) if p.len() > 1 => {
                        let mut q = vec!["self".to_string()];
                        q.extend(p);
                        out.push(q);
                    }
                    _ => {}
                }
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads a path (with `{…}` groups) starting at `i`; returns every path it names.
fn path_tree(b: &[char], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        let start = i;
        while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
            i += 1;
        }
        if i > start {
            prefix.push(b[start..i].iter().collect::<String>());
        }
        if b.get(i) == Some(&':') && b.get(i + 1) == Some(&':') {
            i += 2;
            if b.get(i) == Some(&'{') {
                i += 1;
                let mut all = Vec::new();
                loop {
                    while b.get(i).is_some_and(|c| c.is_whitespace() || *c == ',') {
                        i += 1;
                    }
                    if b.get(i) == Some(&'}') || i >= b.len() {
                        i += 1;
                        break;
                    }
                    let (sub, end) = path_tree(b, i);
                    for s in sub {
                        let mut p = prefix.clone();
                        p.extend(s.into_iter().filter(|x| x != "self"));
                        all.push(p);
                    }
                    i = end.max(i + 1);
                }
                return (all, i);
            }
            continue;
        }
        return (vec![prefix], i);
    }
}

/// Resolves a path written in module `at` to the file module it names (the longest prefix that
/// is a file), if any.
fn resolve(
    at: &[String],
    path: &[String],
    mods: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<Vec<String>> {
    let mut base: Vec<String> = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "self" => at.to_vec(),
        "super" => at[..at.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    let mut rest = &path[1..];
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut best = None;
    let mut cur = base.clone();
    if mods.contains_key(&cur) {
        best = Some(cur.clone());
    }
    for seg in rest {
        cur.push(seg.clone());
        if mods.contains_key(&cur) {
            best = Some(cur.clone());
        }
    }
    best
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let mods = modules();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, file) in &mods {
        let text = std::fs::read_to_string(file).unwrap();
        let targets = edges.entry(m.clone()).or_default();
        for p in paths(&code(&text)) {
            if let Some(t) = resolve(m, &p, &mods) {
                // A module naming its own parent's re-exports through `super::x` where x is a
                // sibling file resolves to that sibling; a path to the parent itself is an edge.
                if &t != m && !t.is_empty() {
                    targets.insert(t);
                }
            }
        }
    }
    // Every circle, found by a depth-first search from each module.
    let name = |m: &Vec<String>| m.join("::");
    let mut circles = BTreeSet::new();
    for start in edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, trail)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    let mut c: Vec<String> = trail.iter().map(name).collect();
                    let min = c
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| (*s).clone())
                        .unwrap()
                        .0;
                    c.rotate_left(min);
                    circles.insert(c.join(" -> "));
                } else if !trail.contains(next) && trail.len() < 8 {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles among src/ files:\n{}",
        circles.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn every_file_has_a_doc_and_shim_and_server_files_stay_short() {
    let mut problems = Vec::new();
    for file in modules().values() {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.display().to_string();
        if !text.starts_with("//!") {
            problems.push(format!("{name} does not open with a //! doc"));
        }
        let in_scope = ["/src/shim/", "/src/server/"]
            .iter()
            .any(|d| name.contains(d));
        let lines = text.lines().count();
        let doc: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join(" ");
        if in_scope && lines > 450 && !doc.contains("longer than 450 lines because") {
            problems.push(format!("{name} has {lines} lines and no reason at its top"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_use_trees_and_nested_supers() {
    let found = paths(
        "use super::{prepared::{Prepared, Stop}, say::say};\nlet x = crate::diff::kube::items(v);\npub(super) fn f() {}\npub(crate) struct S;",
    );
    assert!(
        found.iter().all(|p| p.len() > 1),
        "a visibility is no path: {found:?}"
    );
    assert!(
        found.contains(&vec!["super".into(), "prepared".into(), "Prepared".into()]),
        "{found:?}"
    );
    assert!(
        found.contains(&vec!["super".into(), "say".into(), "say".into()]),
        "{found:?}"
    );
    assert!(
        found.contains(&vec![
            "crate".into(),
            "diff".into(),
            "kube".into(),
            "items".into()
        ]),
        "{found:?}"
    );
}

#[test]
fn only_the_audit_tampering_tests_open_the_database() {
    // Tests read the server's state through the API or the CLI; opening the store's database
    // (the `raw_db` helper, or sqlx itself) is for tests/audit.rs alone, which tampers with it
    // on purpose, and for the PostgreSQL harness, which administers the cluster (roles, grants,
    // cutting connections) and tries what a role may not.
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = Vec::new();
    let mut dirs = vec![tests.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let allowed = [
        tests.join("audit.rs"),
        tests.join("support/server.rs"),
        tests.join("support/postgres.rs"),
    ];
    let this = tests.join("structure.rs");
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !allowed.contains(f) && **f != this)
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.contains("raw_db") || text.contains("sqlx")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(files.len() > 20, "only {} test files found", files.len());
    assert!(
        offenders.is_empty(),
        "these tests open the store's database directly: {offenders:?}"
    );
}

#[test]
fn the_architecture_page_names_every_shim_and_server_file() {
    // docs/architecture.md maps both halves; a file added or renamed without the map following
    // fails here. Every backquoted `src/….rs` path the page names must exist, too.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let words: BTreeSet<&str> = doc
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    let mut missing = Vec::new();
    let mut seen = 0;
    for half in ["src/shim", "src/server", "src/server/web"] {
        for e in std::fs::read_dir(root.join(half)).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".rs") {
                seen += 1;
                if stem != "mod" && !words.contains(stem) {
                    missing.push(format!("{half}/{name}"));
                }
            }
        }
    }
    assert!(seen > 25, "only {seen} files looked at");
    assert!(
        missing.is_empty(),
        "docs/architecture.md does not name {missing:?}"
    );
    let named: Vec<&str> = doc
        .split('`')
        .filter(|w| w.starts_with("src/") && w.ends_with(".rs"))
        .collect();
    for path in &named {
        assert!(
            root.join(path).exists(),
            "docs/architecture.md names {path}, which is gone"
        );
    }
}
