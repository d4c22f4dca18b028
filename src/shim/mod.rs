//! The shim: what runs when hitl-gate is called as terraform, tofu, kubectl or helm.
//!
//! One straight line, authorize then exec:
//! depth guard → policy → read argv → classify → `Pass`: resolve the real binary and exec it;
//! `Gate`: pick the tool's producer (`terraform.rs`, `kubectl.rs`, `helm.rs`) and run the gated
//! pipeline (`gate.rs`); `Deny`: refuse. Nothing here starts a runtime, a thread, a logger
//! or clap. Every failure ends the process with a code from `exit.rs` and one line on stderr.
//!
//! A kubectl or helm command that passes only because a rule loosens the gate for an
//! environment had its API server resolved with the real kubectl (`kube.rs`); it is exec'd
//! pinned to exactly what was resolved (the sealed kubeconfig and the context), so the
//! kubeconfig cannot be swapped between the check and the tool reading it. Every other
//! passthrough is exec'd untouched.

mod argv_edit;
pub mod child;
mod credentials;
pub mod exec;
mod gate;
mod handoff;
mod helm;
pub(crate) mod helm_inputs;
pub mod helm_model;
pub mod kube;
pub mod kube_diff;
pub(crate) mod kubectl;
mod kubectl_show;
pub(crate) mod lockdown;
pub mod prepared;
pub mod resolve;
mod resume;
pub mod say;
pub mod sealed;
pub(crate) mod terraform;
mod trusted_path;
pub(crate) mod wait;

use std::ffi::{OsStr, OsString};
use std::process::{exit, ExitStatus};

use crate::argv;
use crate::exit as code;
use crate::policy::{self, Context, Verdict};
use crate::tool::Tool;
use prepared::{command_line, Prepared, Stop};
use resolve::Resolver;

/// Runs the shim for `tool`. Never returns.
pub fn run(tool: Tool, argv0: OsString, args: Vec<OsString>) -> ! {
    match pipeline(tool, &argv0, &args) {
        Ok(status) => child::exit_like(status),
        Err(stop) => {
            say::say(&stop.message);
            exit(i32::from(stop.code))
        }
    }
}

/// The pipeline. A passthrough never returns (it execs); a gated command that ran returns the
/// tool's status; otherwise the exit code and the reason.
fn pipeline(tool: Tool, argv0: &OsStr, args: &[OsString]) -> Result<ExitStatus, Stop> {
    let depth = exec::depth(std::env::var_os(exec::DEPTH_VAR).as_deref())
        .map_err(|e| Stop::new(code::RECURSION, e))?;
    let (policy, _source) = policy::load::load_sections(policy::load::Sections::Shim)
        .map_err(|e| Stop::new(code::POLICY_ERROR, format!("{e}; {tool} did not run")))?;
    // Lockdown: the runner, as another user, decides and runs; this process runs nothing.
    if let Some(l) = policy.lockdown() {
        if !lockdown::is_runner(l) {
            return lockdown::forward(l, tool, args);
        }
    }
    let env = |k: &str| std::env::var(k).ok();
    let inv = argv::read(tool, args, &env).map_err(|e| {
        Stop::new(
            code::REFUSED,
            format!("cannot read the {tool} command line safely ({e}); it did not run"),
        )
    })?;
    let resolver = Resolver::current(argv0);
    // Resolved only when a rule that loosens the gate asks for the kube server.
    let resolved: std::cell::RefCell<Option<kube::Resolved>> = std::cell::RefCell::new(None);
    let kube_server = || {
        let r = resolve_kube_target(tool, &resolver, args, &inv, &policy)?;
        let server = r
            .target
            .is_exact()
            .then(|| r.target.cluster_server.clone())
            .flatten();
        *resolved.borrow_mut() = Some(r);
        server
    };
    let ctx = Context {
        kube_server: &kube_server,
        ..Context::process()
    };
    let verdict = policy.classify(tool, &inv, &ctx);
    // Lockdown, as the runner's child: the environment's credential sets.
    let credentials = credentials::select(&policy, tool, &inv, &ctx);
    match verdict {
        Verdict::Pass(_) => {
            if let Some(set) = credentials {
                credentials::apply(&set.read);
            }
            let real = resolver.find(tool, policy.real_path(tool))?;
            let pinned;
            let args = match resolved.borrow().as_ref() {
                Some(r) => {
                    pinned = pin_passthrough(tool, args, &inv, r)?;
                    &pinned[..]
                }
                None => args,
            };
            let err = exec::exec_passthrough(&real, argv0, args, depth);
            Err(Stop::new(
                code::CANNOT_EXECUTE,
                format!("cannot execute {}: {err}", real.display()),
            ))
        }
        Verdict::Gate(d) => {
            if let Some(set) = credentials {
                credentials::apply(&set.read);
            }
            // Nested shims (a local-exec running kubectl) see the hop, as after an exec.
            std::env::set_var(exec::DEPTH_VAR, (depth + 1).to_string());
            let cmdline = command_line(tool, args);
            // Which producer prepares the command, and what else it needs (helm resolves its
            // kube target with the real kubectl).
            let producer = |args: &[String]| -> Result<Prepared, Stop> {
                let real = resolver.find(tool, policy.real_path(tool))?;
                match tool {
                    Tool::Kubectl => kubectl::prepare(&real, args, &inv),
                    Tool::Helm => {
                        let kubectl = resolver
                            .find(Tool::Kubectl, policy.real_path(Tool::Kubectl))
                            .map_err(|e| {
                                Stop::unavailable(
                                    &cmdline,
                                    &d.rule,
                                    format!(
                                        "resolving the kube context of a gated helm command \
                                         needs the real kubectl ({e})"
                                    ),
                                )
                            })?;
                        helm::prepare(&real, &kubectl, args, &inv, policy.allow_post_renderer())
                    }
                    Tool::Terraform | Tool::Tofu => {
                        terraform::prepare(tool, &real, args, &inv, policy.lockdown().is_some())
                    }
                }
            };
            gate::run(tool, argv0, args, &policy, &d, &producer)
        }
        Verdict::Deny(d) => Err(Stop::new(
            code::DENIED_BY_POLICY,
            format!(
                "`{}` is denied by policy ({}{}): {}",
                command_line(tool, args),
                d.rule,
                env_suffix(&d),
                d.reason
            ),
        )),
    }
}

/// The kube target of a kubectl or helm command, resolved with the real kubectl, for a rule
/// that loosens the gate. `None` (no loosening) when it cannot be resolved, or when an argument
/// is not UTF-8 (the pinned argv could not be rebuilt byte for byte).
pub fn resolve_kube_target(
    tool: Tool,
    resolver: &Resolver,
    args: &[OsString],
    inv: &argv::Invocation,
    policy: &policy::Policy,
) -> Option<kube::Resolved> {
    if !matches!(tool, Tool::Kubectl | Tool::Helm) || args.iter().any(|a| a.to_str().is_none()) {
        return None;
    }
    let kubectl = resolver
        .find(Tool::Kubectl, policy.real_path(Tool::Kubectl))
        .ok()?;
    kube::resolve(&kubectl, tool, inv, None).ok()
}

/// The passthrough argv pinned to a resolved target (its sealed kubeconfig kept open across the
/// exec).
fn pin_passthrough(
    tool: Tool,
    args: &[OsString],
    inv: &argv::Invocation,
    r: &kube::Resolved,
) -> Result<Vec<OsString>, Stop> {
    let strings: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut edit = argv_edit::ArgvEdit::new(&strings, inv);
    for p in kube::pins(tool, r) {
        edit.insert(p);
    }
    sealed::keep_across_exec([&r.kubeconfig]).map_err(Stop::internal)?;
    Ok(edit.finish().args.into_iter().map(OsString::from).collect())
}

fn env_suffix(d: &policy::Decision) -> String {
    d.environment
        .as_ref()
        .map(|e| format!(", environment {}", e.name))
        .unwrap_or_default()
}
