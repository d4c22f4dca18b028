//! The kubectl and helm flag tables (`src/argv/*_flags.rs`) still describe the pinned tools:
//! `scripts/gen-flag-tables` is run again against them, and its output (after rustfmt) must equal
//! the committed files. A new flag or subcommand in a pinned version fails here, naming the file.

use std::process::Command;

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
}
