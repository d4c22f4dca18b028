//! The multicall entry point.
//!
//! One binary, several names: installed as (or symlinked to) `terraform`, `tofu`, `kubectl` or
//! `helm`, it is the shim that gates that tool; as `hitl-gate` it is the CLI. The file name of
//! argv[0] is the *first* thing looked at, before any runtime, logger, thread or argument parser
//! exists, so that a harmless command reaches the real tool's `exec` as cheaply as possible.
//! Any other name fails with the list of valid ones.

//!
//! `#![no_main]`: the C `main` below is the entry point, so std's runtime start-up
//! (`lang_start`: main-thread stack-guard discovery through `pthread_getattr_np`, which parses
//! `/proc/self/maps`, and the SIGPIPE-to-ignore dance) never runs. That is a third of the shim's
//! cost. std still receives argv and the environment from glibc, so `std::env` works as usual.
//! Consequences, all intended: SIGPIPE keeps its default disposition in every mode, and a stack
//! overflow is a plain SIGSEGV without std's message, and stdout is flushed explicitly.

#![no_main]
// The one unsafe item is the C entry point below.
#![deny(unsafe_code)]

use std::ffi::c_int;

use hitl_gate::tool::{self, Mode};

/// The process entry point (called by the C runtime).
// SAFETY: `#[no_mangle]` exports this as the C `main`; no other symbol of the program is named
// `main`, and the signature is the one the C runtime calls.
#[allow(unsafe_code)]
#[no_mangle]
pub extern "C" fn main(_argc: c_int, _argv: *const *const std::ffi::c_char) -> c_int {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    match tool::mode_from_argv0(&argv0) {
        Ok(Mode::Shim(t)) => hitl_gate::shim::run(t, argv0, args.collect()),
        Ok(Mode::Cli) => {
            let code = hitl_gate::cli::run();
            // std's runtime, which would flush stdout at exit, is not in use (see above).
            let _ = std::io::Write::flush(&mut std::io::stdout());
            code
        }
        Err(name) => {
            eprintln!(
                "hitl-gate: started as {name:?}, which is not a name this binary answers to; \
                 valid names: {}",
                tool::valid_names()
            );
            c_int::from(hitl_gate::exit::BAD_NAME)
        }
    }
}
