//! Running the real tool: the passthrough `exec`, and the depth guard against shim-to-shim
//! recursion.
//!
//! The passthrough replaces this process with the real tool
//! (`std::os::unix::process::CommandExt::exec`: same PID, and SIGPIPE is reset to its default,
//! which `nix::unistd::execv` would not do). argv[0] stays what the agent typed; stdin, stdout,
//! stderr, cwd and the environment are untouched except for the depth counter.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// The environment variable that counts nested shim hops.
pub const DEPTH_VAR: &str = "HITL_GATE_DEPTH";

/// Shim hops allowed in one chain. A tool may legitimately run another gated tool (a terraform
/// `local-exec` running kubectl), so the limit is not 1; a loop between two shim builds reaches
/// it within milliseconds.
pub const MAX_DEPTH: u32 = 8;

/// The depth this shim runs at, or an error when the guard trips. A value that is not a number
/// trips the guard too: the variable can only make the shim stricter.
pub fn depth(value: Option<&OsStr>) -> Result<u32, String> {
    let Some(v) = value else { return Ok(0) };
    match v.to_str().and_then(|s| s.parse::<u32>().ok()) {
        Some(d) if d < MAX_DEPTH => Ok(d),
        Some(d) => Err(format!(
            "{DEPTH_VAR}={d}: hitl-gate shims called each other {d} times; another shim build \
             is probably first on PATH in place of the real tool (set tools.<tool>.real_path)"
        )),
        None => Err(format!(
            "{DEPTH_VAR}={} is not a number; refusing to run",
            v.to_string_lossy()
        )),
    }
}

/// Replaces this process with `real`. Returns only on failure.
pub fn exec_passthrough(
    real: &Path,
    argv0: &OsStr,
    args: &[OsString],
    depth: u32,
) -> std::io::Error {
    // Setting the variable in our own environment (instead of `Command::env`) lets std pass
    // `environ` through as is rather than copying every variable.
    // The shim is single-threaded here, so changing the environment is sound.
    std::env::set_var(DEPTH_VAR, (depth + 1).to_string());
    Command::new(real).arg0(argv0).args(args).exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_guard_only_gets_stricter() {
        assert_eq!(depth(None), Ok(0));
        assert_eq!(depth(Some(OsStr::new("3"))), Ok(3));
        assert!(depth(Some(OsStr::new("8"))).is_err());
        assert!(depth(Some(OsStr::new("-1"))).is_err());
        assert!(depth(Some(OsStr::new("lots"))).is_err());
    }
}
