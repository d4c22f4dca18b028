//! The multicall entry point.
//!
//! One binary, several names: installed as (or symlinked to) `terraform`, `tofu`, `kubectl` or
//! `helm`, it is the shim that gates that tool; as `hitl-gate` it is the CLI. The file name of
//! argv[0] is the *first* thing looked at, before any runtime, logger, thread or argument parser
//! exists, so that a harmless command reaches the real tool's `exec` as cheaply as possible.
//! Any other name fails with the list of valid ones.

use hitl_gate::tool::{self, Mode};

fn main() {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    match tool::mode_from_argv0(&argv0) {
        Ok(Mode::Shim(t)) => hitl_gate::shim::run(t, argv0, args.collect()),
        Ok(Mode::Cli) => std::process::exit(hitl_gate::cli::run()),
        Err(name) => {
            eprintln!(
                "hitl-gate: started as {name:?}, which is not a name this binary answers to; \
                 valid names: {}",
                tool::valid_names()
            );
            std::process::exit(i32::from(hitl_gate::exit::BAD_NAME))
        }
    }
}
