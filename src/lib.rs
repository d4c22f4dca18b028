//! hitl-gate: a human-in-the-loop approval gate for AI agents that run terraform, tofu, kubectl
//! and helm.
//!
//! The binary is a multicall program (see `main.rs`): under a tool's name it is the shim
//! ([`shim`]), under its own name it is the CLI ([`cli`]). The library exposes the pieces so
//! tests, benchmarks and the server share one implementation.

// Unsafe code is allowed only where it is needed (shim/child.rs: signals and pre_exec), each
// block with a SAFETY note.
#![deny(unsafe_code)]

pub mod api;
pub mod argv;
pub mod audit;
pub mod cli;
pub mod client;
pub mod diff;
pub mod escape;
pub mod exit;
pub mod hex;
pub mod policy;
pub mod runner;
#[cfg(feature = "server")]
pub mod server;
pub mod shim;
pub mod signing;
pub mod tool;
#[cfg(feature = "server")]
pub mod witness;
