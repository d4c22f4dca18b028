//! The kubectl and helm flag tables (`src/argv/*_flags.rs`) still describe the pinned tools:
//! `scripts/gen-flag-tables` is run again against them, and its output (after rustfmt) must equal
//! the committed files. A new flag or subcommand in a pinned version fails here, naming the file.
//! The tables store the root's flags once; the reader's lookups (which fall back to the root)
//! are checked against every path's complete flag set, which the generator also writes.

use std::process::Command;

use hitl_gate::argv::cobra::{self, Arity, CommandSpec};

use crate::support::{code, stderr, tools};

#[test]
fn the_committed_flag_tables_match_the_pinned_tools_help() {
    // Fails with the fix named when the pinned tools are missing.
    let _ = (tools::kubectl(), tools::helm4(), tools::helm3());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let gen = Command::new("python3")
        .arg(root.join("scripts/gen-flag-tables"))
        .arg("--out")
        .arg(out.path())
        .env("HITL_TEST_TOOLS_DIR", tools::dir())
        .output()
        .expect("python3 runs scripts/gen-flag-tables (install python3)");
    assert_eq!(code(&gen), 0, "{}", stderr(&gen));
    for name in ["kubectl_flags.rs", "helm_flags.rs"] {
        let fresh = out.path().join(name);
        let fmt = Command::new("rustfmt")
            .args(["--edition", "2021"])
            .arg(&fresh)
            .output()
            .expect("rustfmt (rustup component add rustfmt)");
        assert_eq!(code(&fmt), 0, "{}", stderr(&fmt));
        let committed = std::fs::read_to_string(root.join("src/argv").join(name)).unwrap();
        let fresh = std::fs::read_to_string(&fresh).unwrap();
        assert!(
            committed == fresh,
            "src/argv/{name} no longer matches the pinned tools' --help: run \
             scripts/gen-flag-tables && cargo fmt, and review the change"
        );
    }
    let tables: [(&str, &[CommandSpec]); 2] = [
        ("kubectl", hitl_gate::argv::kubectl_flags::COMMANDS),
        ("helm", hitl_gate::argv::helm_flags::COMMANDS),
    ];
    for (tool, table) in tables {
        let full = out.path().join(format!("{tool}_full.json"));
        let full: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap();
        let checked = lookups_match(tool, table, &full);
        // Every path was compared, each on all its long flags and 62 short letters.
        assert_eq!(checked.0, table.len(), "{tool}: paths compared");
        assert!(
            checked.1 > 20 * table.len(),
            "{tool}: only {} long flags compared",
            checked.1
        );
    }
}

/// Compares the reader's lookups at every path with the path's complete flag set, for every
/// long flag the path has or the root has, and every letter and digit as a short flag. Returns
/// (paths, long flags) compared.
fn lookups_match(tool: &str, table: &[CommandSpec], full: &serde_json::Value) -> (usize, usize) {
    let arity = |v: &serde_json::Value| match v.as_str() {
        Some("Value") => Arity::Value,
        Some("Bool") => Arity::Bool,
        other => panic!("unknown arity {other:?}"),
    };
    let paths = full.as_object().unwrap();
    let root_long: Vec<&String> = paths[""]["long"].as_object().unwrap().keys().collect();
    let (mut npaths, mut nlong) = (0, 0);
    for (path, flags) in paths {
        npaths += 1;
        let long = flags["long"].as_object().unwrap();
        for name in long.keys().chain(root_long.iter().copied()) {
            let want = long.get(name).map(arity);
            let got = cobra::long_flag(table, path, name);
            assert_eq!(got, want, "{tool} {path:?} --{name}");
            nlong += 1;
        }
        let short = flags["short"].as_object().unwrap();
        for c in ('a'..='z').chain('A'..='Z').chain('0'..='9') {
            let want = short.get(&c.to_string()).map(arity);
            let got = cobra::short_flag(table, path, c);
            assert_eq!(got, want, "{tool} {path:?} -{c}");
        }
    }
    (npaths, nlong)
}
