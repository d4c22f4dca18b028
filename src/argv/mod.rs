//! Foreign-argv readers: raw argv of terraform/tofu, kubectl or helm → [`Invocation`].
//!
//! These are hand-written on purpose and never use clap: the real tools accept flags hitl-gate
//! does not know, and argv must pass through byte for byte. The readers only *observe*; the
//! original `OsString`s are what gets exec'd.
//!
//! Reading is conservative. Whenever the reader cannot be sure what the real tool will do (an
//! unknown flag where a subcommand could follow, a value flag with no value), it says so in the
//! [`Invocation`] (`uncertain`), and the policy treats that command as unknown, which gates by
//! default. A reader can make the gate stricter; it must never make it looser.

use std::ffi::OsString;

use crate::tool::Tool;

pub mod cobra;
pub mod helm;
pub mod helm_flags;
mod invocation;
pub mod kubectl;
pub mod kubectl_flags;
pub mod terraform;

pub use invocation::{FlagAt, Invocation, ReadError, Target};

/// Reads argv (without argv[0]) for `tool`. `env` looks up environment variables the tool itself
/// reads for its target (passed in so tests and `explain` can control it).
pub fn read(
    tool: Tool,
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, ReadError> {
    // Arguments that are not UTF-8 are read lossily: U+FFFD never equals a flag or subcommand
    // name, so lossy reading can only turn a word into "unknown", never into something known.
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut inv = match tool {
        Tool::Terraform | Tool::Tofu => terraform::read(&args, env)?,
        Tool::Kubectl => kubectl::read(&args, env)?,
        Tool::Helm => helm::read(&args, env)?,
    };
    inv.tool = tool.name();
    Ok(inv)
}
