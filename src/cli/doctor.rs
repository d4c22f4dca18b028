//! `hitl-gate doctor`: checks an installation the way an agent's shell will see it.
//!
//! - the policy in force loads and has safe permissions;
//! - for each tool: the first match on PATH is a hitl-gate shim (else the agent bypasses the
//!   gate), and a real binary is found behind it that is not a shim.
//!
//! Prints one line per check and exits 1 if any check failed.

use std::ffi::OsStr;
use std::path::PathBuf;

use super::CliError;
use crate::policy;
use crate::shim::resolve::{self, SelfId};
use crate::tool::ALL_TOOLS;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<i32, CliError> {
    let mut failed = 0;
    let mut report = |ok: bool, line: String| {
        println!("{} {line}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failed += 1;
        }
    };
    if cfg!(feature = "test-hooks") {
        println!("note this build has test hooks (HITL_GATE_TEST_ROOT); do not deploy it");
    }
    let policy = match policy::load::load() {
        Ok((p, source)) => {
            report(true, format!("policy: {source}"));
            Some(p)
        }
        Err(e) => {
            report(false, e.to_string());
            None
        }
    };
    let exe = std::env::current_exe().unwrap_or_default();
    let me = SelfId::current(exe.as_os_str());
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in ALL_TOOLS {
        let first = first_on_path(tool.name(), &path);
        let real = resolve::resolve(
            tool,
            policy.as_ref().and_then(|p| p.real_path(tool)),
            Some(&path),
            &me,
        );
        match (&first, &real) {
            (None, Err(_)) => println!("skip {tool}: neither a shim nor the real tool is on PATH"),
            (Some(f), _) if !is_shim(f, &me) => report(
                false,
                format!(
                    "{tool}: the first {tool} on PATH is {}, not a hitl-gate shim; the agent \
                     bypasses the gate (put the shims directory first on PATH)",
                    f.display()
                ),
            ),
            (_, Ok(r)) => report(
                true,
                format!(
                    "{tool}: shim {} → real {}",
                    first
                        .as_ref()
                        .map_or("-".into(), |f| f.display().to_string()),
                    r.display()
                ),
            ),
            (_, Err(e)) => report(false, format!("{tool}: {e}")),
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

/// The first executable named `name` on PATH (absolute entries only, like the shim).
fn first_on_path(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_shim(p: &std::path::Path, me: &SelfId) -> bool {
    // A path resolves to "Shim" exactly when `resolve` would skip it.
    resolve::resolve_one_is_shim(p, me)
}
