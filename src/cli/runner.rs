//! `hitl-gate runner`: lockdown mode's daemons (`crate::runner`). They read only the system
//! policy (`/etc/hitl-gate/policy.toml`). Without `--writer`, the runner, as its
//! `[lockdown] runner_user`; with it, the writer, as `[lockdown.writer] user`.

use super::error::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// Run the writer, the only identity with the write credentials, which runs nothing but
    /// approved runs the runner hands over (`[lockdown.writer]`), instead of the runner.
    #[arg(long)]
    writer: bool,
}

pub fn run(args: Args) -> Result<i32, CliError> {
    let path = crate::policy::load::root().join(crate::policy::load::SYSTEM_POLICY);
    let policy = crate::policy::load::load_file(&path, true, crate::policy::load::Sections::Shim)
        .map_err(|e| CliError::new(crate::exit::POLICY_ERROR, e.to_string()))?;
    let served = if args.writer {
        crate::runner::writer::serve(&policy)
    } else {
        crate::runner::serve(&policy)
    };
    served.map_err(|e| CliError::new(1, e))?;
    Ok(0)
}
