//! The four tools hitl-gate stands in for, and the facts the rest of the code needs about each.
//!
//! The multicall binary decides its mode from the file stem of argv[0]. This module owns that
//! mapping so that `main`, the shim and the CLI all agree on the spelling of every name.

use std::ffi::OsStr;
use std::path::Path;

/// A tool the shim can stand in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    Terraform,
    /// OpenTofu. It reads argv exactly like terraform and shares its code path.
    Tofu,
    Kubectl,
    Helm,
}

/// Every tool, in the order the docs list them.
pub const ALL_TOOLS: [Tool; 4] = [Tool::Terraform, Tool::Tofu, Tool::Kubectl, Tool::Helm];

/// The name of the binary when it runs as the CLI.
pub const CLI_NAME: &str = "hitl-gate";

impl Tool {
    /// The command name, as typed by the agent and as found on PATH.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Terraform => "terraform",
            Tool::Tofu => "tofu",
            Tool::Kubectl => "kubectl",
            Tool::Helm => "helm",
        }
    }

    /// Looks a tool up by its command name.
    pub fn from_name(name: &str) -> Option<Tool> {
        ALL_TOOLS.into_iter().find(|t| t.name() == name)
    }

    /// True for terraform and tofu, which share one argv reader and one diff producer.
    pub fn is_terraform_like(self) -> bool {
        matches!(self, Tool::Terraform | Tool::Tofu)
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the binary should do, chosen from argv[0] alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Shim(Tool),
    Cli,
}

/// Picks the mode from the file stem of argv[0] (`/opt/x/kubectl` → kubectl, `hitl-gate.exe`
/// is not special-cased: this is a Unix tool). Returns the stem on failure so the caller can name
/// it.
pub fn mode_from_argv0(argv0: &OsStr) -> Result<Mode, String> {
    let stem = Path::new(argv0)
        .file_name()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    if stem == CLI_NAME {
        return Ok(Mode::Cli);
    }
    Tool::from_name(&stem)
        .map(Mode::Shim)
        .ok_or_else(|| stem.into_owned())
}

/// The list of valid program names, for the error shown when argv[0] is none of them.
pub fn valid_names() -> String {
    let mut names: Vec<&str> = ALL_TOOLS.iter().map(|t| t.name()).collect();
    names.push(CLI_NAME);
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_picks_the_mode_from_the_file_name() {
        assert_eq!(
            mode_from_argv0(OsStr::new("kubectl")),
            Ok(Mode::Shim(Tool::Kubectl))
        );
        assert_eq!(
            mode_from_argv0(OsStr::new("/opt/hitl-gate/shims/tofu")),
            Ok(Mode::Shim(Tool::Tofu))
        );
        assert_eq!(mode_from_argv0(OsStr::new("./hitl-gate")), Ok(Mode::Cli));
        assert_eq!(
            mode_from_argv0(OsStr::new("kubectl-foo")),
            Err("kubectl-foo".into())
        );
        assert_eq!(mode_from_argv0(OsStr::new("")), Err(String::new()));
    }
}
