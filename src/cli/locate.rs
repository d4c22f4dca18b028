//! Where the server's files are, found the same way by every command: the data dir is
//! `--data-dir`, else the policy's `[serve] data_dir` (the policy `hitl-gate serve` reads, see
//! `policy::load::load_for_cli`), else `$XDG_DATA_HOME/hitl-gate`; the configuration dir of
//! `hitl-gate init` is `$XDG_CONFIG_HOME/hitl-gate`. Both defaults come from the `dirs` crate;
//! with no home directory to be found there is no default, and the command says so.

use std::path::PathBuf;

use super::error::CliError;

/// The default data dir, `$XDG_DATA_HOME/hitl-gate` (`~/.local/share/hitl-gate`).
pub fn default_data_dir() -> Result<PathBuf, CliError> {
    dirs::data_dir()
        .map(|d| d.join("hitl-gate"))
        .ok_or_else(|| {
            CliError::new(
                1,
                "no home directory to put the data dir in (HOME is unset and the user has \
                 none): give --data-dir, or [serve] data_dir in the policy",
            )
        })
}

/// The default configuration dir of `hitl-gate init`, `$XDG_CONFIG_HOME/hitl-gate`.
pub fn default_config_dir() -> Result<PathBuf, CliError> {
    dirs::config_dir()
        .map(|d| d.join("hitl-gate"))
        .ok_or_else(|| {
            CliError::new(
                1,
                "no home directory to put the configuration in (HOME is unset and the user has \
                 none): give --dir",
            )
        })
}

/// How the data dir was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Flag,
    Policy,
    Default,
}

/// The server's data dir: `flag`, else the policy's `[serve] data_dir`, else the default. A
/// policy that cannot be loaded is an error (the same policy would stop `serve`).
pub fn data_dir(flag: Option<PathBuf>) -> Result<(PathBuf, Found), CliError> {
    if let Some(d) = flag {
        return Ok((d, Found::Flag));
    }
    let (policy, _) = crate::policy::load::load_for_cli()
        .map_err(|e| CliError::new(crate::exit::POLICY_ERROR, e.to_string()))?;
    match policy.serve().data_dir.clone() {
        Some(d) => Ok((d, Found::Policy)),
        None => Ok((default_data_dir()?, Found::Default)),
    }
}
