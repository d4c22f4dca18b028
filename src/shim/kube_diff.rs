//! `hitl-gate LIVE MERGED kube-diff-collect` (internal; `cli::run` dispatches it): the external
//! diff program the gated path gives `kubectl diff` (`KUBECTL_EXTERNAL_DIFF`, an absolute path
//! to this binary). kubectl writes the live and the merged object of each resource into two
//! directories and runs it; it prints both sides as JSON objects, for the gate to diff and mask
//! itself. So the shown change is kubectl's own (client- or server-side apply, exactly as
//! `apply` will do it), and no `diff` program the agent can put on PATH is involved.

use std::path::Path;

use serde_json::{json, Value};

use crate::diff::kube::yaml_documents;

/// The key of the collector's output (so the gate can tell it from anything else kubectl prints).
pub const MARKER: &str = "hitl_gate_kube_diff";
/// The word after the two directories that selects the collector (kubectl appends the words of
/// `KUBECTL_EXTERNAL_DIFF` after them).
pub const WORD: &str = "kube-diff-collect";

/// Prints both sides of every object kubectl wrote, as one JSON line under [`MARKER`].
pub fn run(live: &Path, merged: &Path) -> Result<i32, String> {
    let mut names: Vec<String> = Vec::new();
    for dir in [live, merged] {
        for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let n = e.map_err(|e| e.to_string())?.file_name();
            names.push(n.to_string_lossy().into_owned());
        }
    }
    names.sort();
    names.dedup();
    let side = |dir: &Path, name: &str| -> Result<Value, String> {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => Ok(yaml_documents(&text)
                .map_err(|e| format!("{name}: {e}"))?
                .into_iter()
                .next()
                .unwrap_or(Value::Null)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
            Err(e) => Err(format!("{name}: {e}")),
        }
    };
    let mut pairs = Vec::new();
    for n in &names {
        pairs.push(json!({"file": n, "live": side(live, n)?, "merged": side(merged, n)?}));
    }
    println!("{}", json!({ MARKER: pairs }));
    Ok(0)
}
