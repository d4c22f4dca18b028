//! Lockdown, on the runner's side: the approved run goes to the writer (W), the only user that
//! can read the write credentials. This process (the runner's child, user R) runs nothing with
//! them; it sends W the approved request, the signed decision, its fds 0, 1 and 2 (the agent's)
//! and every sealed input of the run template, in the template's order
//! ([`crate::runner::wire::Job`]). W verifies all of it itself, runs the template and answers
//! like the runner does (`exit N`, `signal N`, `refused N MESSAGE`); the signals this process
//! receives go on to W. W reports the outcome to the server with its own token.

use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::process::ExitStatus;

use super::prepared::{Prepared, Stop};
use crate::api::SignedDecision;
use crate::exit as code;
use crate::policy::lockdown::Lockdown;
use crate::runner::wire::{Job, MAX_FDS};
use crate::tool::Tool;

/// Hands request `id`'s approved run to the writer; returns how it ended.
pub fn run(
    l: &Lockdown,
    tool: Tool,
    p: &Prepared,
    id: &str,
    decision: &SignedDecision,
) -> Result<ExitStatus, Stop> {
    let unavailable = |why: String| {
        Stop::new(
            code::RUNNER_UNAVAILABLE,
            format!(
                "lockdown mode: the writer at {} {why}; request {id} was approved, but nothing \
                 ran with the write credentials",
                l.writer.socket.display()
            ),
        )
    };
    let template = p
        .request
        .run
        .as_ref()
        .ok_or_else(|| Stop::internal("the request has no run template"))?;
    let kubeconfig = p.kube_pin.as_ref().map(|pin| pin.kubeconfig_path());
    let inputs: Vec<RawFd> = p
        .snapshots
        .iter()
        .filter(|s| kubeconfig.as_deref() != Some(s.path().as_str()))
        .map(|s| s.raw_fd())
        .collect();
    if inputs.len() != template.inputs.len() || inputs.len() + 3 > MAX_FDS {
        return Err(Stop::internal(format!(
            "the run has {} sealed inputs and its template {} (at most {})",
            inputs.len(),
            template.inputs.len(),
            MAX_FDS - 3
        )));
    }
    let job = Job {
        version: 1,
        tool: tool.name().into(),
        request_id: id.into(),
        request: p.request.clone(),
        decision: decision.clone(),
    };
    let stream = UnixStream::connect(&l.writer.socket)
        .map_err(|e| unavailable(format!("cannot be reached ({e})")))?;
    let mut fds: Vec<RawFd> = vec![0, 1, 2];
    fds.extend(inputs);
    super::lockdown::converse(&stream, &job, &fds, &unavailable)
}
