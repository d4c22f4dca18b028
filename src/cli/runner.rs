//! `hitl-gate runner`: lockdown mode's daemon (`crate::runner`). It reads only the system
//! policy (`/etc/hitl-gate/policy.toml`) and must run as its `[lockdown] runner_user`.

use super::error::CliError;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<i32, CliError> {
    let path = crate::policy::load::root().join(crate::policy::load::SYSTEM_POLICY);
    let policy = crate::policy::load::load_file(&path, true, crate::policy::load::Sections::Shim)
        .map_err(|e| CliError::new(crate::exit::POLICY_ERROR, e.to_string()))?;
    crate::runner::serve(&policy).map_err(|e| CliError::new(1, e))?;
    Ok(0)
}
