//! The shim: what runs when hitl-gate is called as terraform, tofu, kubectl or helm.
//!
//! One straight line, authorize then exec:
//! depth guard → policy → read argv → classify → `Pass`: resolve the real binary and exec it;
//! `Gate`: ask for approval; `Deny`: refuse. Nothing here starts a runtime, a thread, a logger
//! or clap. Every failure ends the process with a code from `exit.rs` and one line on stderr.

pub mod exec;
pub mod resolve;

use std::ffi::{OsStr, OsString};
use std::process::exit;

use crate::argv;
use crate::exit as code;
use crate::policy::{self, Context, Verdict};
use crate::tool::Tool;

/// Runs the shim for `tool`. Never returns.
pub fn run(tool: Tool, argv0: OsString, args: Vec<OsString>) -> ! {
    let (status, message) = pipeline(tool, &argv0, &args);
    eprintln!("hitl-gate: {message}");
    exit(i32::from(status))
}

/// The pipeline. It returns only when the command does not run: with the exit code and the
/// one-line reason.
fn pipeline(tool: Tool, argv0: &OsStr, args: &[OsString]) -> (u8, String) {
    let depth = match exec::depth(std::env::var_os(exec::DEPTH_VAR).as_deref()) {
        Ok(d) => d,
        Err(e) => return (code::RECURSION, e),
    };
    let (policy, _source) = match policy::load::load() {
        Ok(p) => p,
        Err(e) => return (code::POLICY_ERROR, format!("{e}; {tool} did not run")),
    };
    let env = |k: &str| std::env::var(k).ok();
    let inv = match argv::read(tool, args, &env) {
        Ok(inv) => inv,
        Err(e) => {
            return (
                code::REFUSED,
                format!("cannot read the {tool} command line safely ({e}); it did not run"),
            )
        }
    };
    let verdict = policy.classify(tool, &inv, &Context::process());
    match verdict {
        Verdict::Pass(_) => {
            let me = resolve::SelfId::current(argv0);
            let path = std::env::var_os("PATH");
            let real = match resolve::resolve(tool, policy.real_path(tool), path.as_deref(), &me) {
                Ok(r) => r,
                Err(e @ resolve::ResolveError::RealPathIsShim { .. }) => {
                    return (code::RECURSION, e.to_string())
                }
                Err(e) => return (code::NOT_FOUND, e.to_string()),
            };
            let err = exec::exec_passthrough(&real, argv0, args, depth);
            (126, format!("cannot execute {}: {err}", real.display()))
        }
        Verdict::Gate(d) => (
            code::APPROVAL_UNAVAILABLE,
            format!(
                "`{}` needs approval ({}{}); no approval server is configured, so it did not run",
                command_line(tool, args),
                d.rule,
                env_suffix(&d),
            ),
        ),
        Verdict::Deny(d) => (
            code::DENIED_BY_POLICY,
            format!(
                "`{}` is denied by policy ({}{}): {}",
                command_line(tool, args),
                d.rule,
                env_suffix(&d),
                d.reason
            ),
        ),
    }
}

fn env_suffix(d: &policy::Decision) -> String {
    d.environment
        .as_ref()
        .map(|e| format!(", environment {}", e.name))
        .unwrap_or_default()
}

/// The command as one line for messages (lossy; never used to run anything).
pub fn command_line(tool: Tool, args: &[OsString]) -> String {
    let mut s = tool.name().to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
