//! The gated (slow) path, one straight line: prepare (the tool's producer computes what to show
//! and what to run) → submit, or pick up this command's own detached request (`resume.rs`) →
//! wait for a human (or stop waiting: "still pending") → verify the signed decision → claim
//! the approval's one run → run exactly what was approved → report the outcome.
//!
//! Every way out that does not run the tool returns a [`Stop`] with a code from `exit.rs`; the
//! caller prints its message once. Which producer prepares the command (terraform, kubectl,
//! helm) is decided by the caller (`shim/mod.rs`), which hands it in as a closure.

use std::ffi::{OsStr, OsString};
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::time::Instant;

use super::child;
use super::prepared::{command_line, Prepared, Stop};
use super::resume::{self, Found};
use super::say::say;
use super::wait::{announce, refused_block, retry_briefly, wait, Event, Waiting};
use crate::api::{Outcome, RequestView, SignedDecision, State};
use crate::client::Client;
use crate::exit as code;
use crate::policy::{Decision, Policy};
use crate::signing;
use crate::tool::Tool;

/// What a producer is given: the argv as UTF-8 strings.
pub type Producer<'a> = &'a dyn Fn(&[String]) -> Result<Prepared, Stop>;

/// Runs the gated path for an invocation the policy gated. Returns the tool's exit status when
/// it ran, or why it did not.
pub fn run(
    tool: Tool,
    argv0: &OsStr,
    args: &[OsString],
    policy: &Policy,
    gate: &Decision,
    prepare: Producer<'_>,
) -> Result<ExitStatus, Stop> {
    let cmdline = command_line(tool, args);
    let unavailable = |why: String| Stop::unavailable(&cmdline, &gate.rule, why);
    let server_down = |why: String| Stop::server_down(&cmdline, &gate.rule, why);
    let approval = policy.approval();
    let Some(public_key) = approval.public_key.clone() else {
        return Err(unavailable(
            "no approval server is configured ([approval] url, token_file and public_key in the \
             policy)"
                .into(),
        ));
    };
    // The agent's bound on the wait is read before anything is asked.
    let waiting = Waiting::of(approval)?;
    // Signals first: the mask must be in place before any thread (reqwest's) exists.
    let (tx, rx) = mpsc::channel::<Event>();
    child::take_signals(tx.clone(), Event::Signal);
    let client = Client::from_config(approval).map_err(unavailable)?;
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_str().map(String::from))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            Stop::new(
                code::REFUSED,
                format!(
                    "`{cmdline}` has an argument that is not UTF-8; it cannot be shown to an \
                     approver faithfully, so it did not run"
                ),
            )
        })?;
    let mut prepared = prepare(&args)?;
    // The run's argv goes into the request, so the approval covers it too.
    prepared.request.run = super::prepared::run_template(&prepared);
    if let Some(sig) = child::received() {
        return Err(Stop::cancelled(format!(
            "`{cmdline}` was interrupted by {} before its request was submitted; it did not run",
            child::name(sig)
        )));
    }

    if prepared.no_changes && policy.skip_when_no_changes(&gate.rule) {
        retry_briefly(|| client.no_changes(&prepared.request)).map_err(|e| {
            server_down(format!(
                "the plan has no changes and recording that failed ({e})"
            ))
        })?;
        say(
            "the plan has no changes; running it without asking (recorded as no_changes, on \
             the agent's word)",
        );
        check_artifact(&prepared, &prepared.request.artifact_sha256)?;
        // No human approved it: in lockdown it runs here, with the read credentials.
        return child::run(&mut command(&prepared, argv0))
            .map_err(|e| Stop::cannot_run(&prepared.program, e));
    }

    let key = resume::Key::of(&prepared.request);
    let view = submit(&client, &key, &mut prepared, &cmdline).map_err(server_down)?;
    let view = match view.state {
        State::Pending => wait(&client, view, &rx, tx, &waiting)?,
        _ => view,
    };
    let id = view.id.clone();
    let decision = match (view.state, &view.decision) {
        (State::Approved, Some(d)) => d,
        (state, d) => {
            resume::forget(&key, &id);
            return Err(refused_block(state, d.as_ref(), &id, &cmdline));
        }
    };
    verify(tool, &args, &prepared, &public_key, &id, decision)?;
    // The approval's one run: claimed on the server before anything runs.
    resume::claim(&client, &id)?;
    resume::forget(&key, &id);
    say(&format!(
        "request {id} approved by {}{}; running it",
        decision.approvers.join(", "),
        decision
            .comment
            .as_deref()
            .map(|c| format!(" ({c:?})"))
            .unwrap_or_default()
    ));
    // Lockdown: the writer runs it, verifies it all again first, and reports the outcome.
    if let Some(l) = policy.lockdown() {
        return super::handoff::run(l, tool, &prepared, &id, decision);
    }
    let started = Instant::now();
    let status = child::run(&mut command(&prepared, argv0))
        .map_err(|e| Stop::cannot_run(&prepared.program, e))?;
    let outcome = Outcome {
        exit_code: status.code(),
        signal: std::os::unix::process::ExitStatusExt::signal(&status),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    if let Err(e) = retry_briefly(|| client.outcome(&id, &outcome)) {
        say(&format!(
            "warning: the outcome of request {id} was not recorded: {e}"
        ));
    }
    Ok(status)
}

/// The request this command waits for: its own detached one picked up again (`resume.rs`), or
/// a new one (recorded for a later run, superseding a stale detached one).
fn submit(
    client: &Client,
    key: &resume::Key,
    p: &mut Prepared,
    cmdline: &str,
) -> Result<RequestView, String> {
    let view = match resume::attach(client, key, p).map_err(|s| s.message)? {
        Found::Resume(view) => *view,
        Found::New { replaces } => {
            let view = retry_briefly(|| client.create(&p.request))
                .map_err(|e| format!("submitting the request failed ({e})"))?;
            resume::save(key, &view.id, p);
            if let Some(old) = replaces {
                resume::supersede(client, &old, &view.id);
            }
            view
        }
    };
    if view.state == State::Pending {
        announce(cmdline, &view);
    }
    Ok(view)
}

/// Checks the signed decision against what is about to run: the target as it is now, the
/// argv, every artifact hash, the request's hash and nonce.
fn verify(
    tool: Tool,
    args: &[String],
    p: &Prepared,
    public_key: &str,
    id: &str,
    decision: &SignedDecision,
) -> Result<(), Stop> {
    let target = (p.target_now)().map_err(|e| {
        Stop::verification(format!(
            "request {id}: cannot recompute the target environment ({e}); nothing ran"
        ))
    })?;
    if let Some(drift) = p.request.environment.drift(&target) {
        return Err(Stop::verification(format!(
            "request {id} was approved for another target: {drift} since the request was \
             made; nothing ran"
        )));
    }
    let want = signing::Expected {
        request_id: id,
        argv_sha256: signing::argv_sha256(tool.name(), args),
        environment_sha256: signing::environment_sha256(&target),
        artifact_sha256: artifact_hashes(p)?,
        request_sha256: p.request.sha256(),
        nonce: &p.request.nonce,
    };
    signing::check_approval(public_key, decision, &want, crate::api::now_ms()).map_err(|e| {
        Stop::verification(format!(
            "request {id} was approved, but the approval does not hold: {e}; nothing ran"
        ))
    })
}

/// The command that runs the approved artifact.
fn command(p: &Prepared, argv0: &OsStr) -> Command {
    let mut c = Command::new(&p.program);
    std::os::unix::process::CommandExt::arg0(&mut c, argv0);
    c.args(&p.args);
    if let Some(cache) = &p.kube_cache {
        super::kube::child_env(&mut c, Some(cache));
    }
    c
}

/// The artifact hashes as they are now.
fn artifact_hashes(p: &Prepared) -> Result<Vec<String>, Stop> {
    (p.artifacts_now)().map_err(|e| {
        Stop::verification(format!(
            "cannot hash what is about to run ({e}); nothing ran"
        ))
    })
}

fn check_artifact(p: &Prepared, want: &[String]) -> Result<(), Stop> {
    if artifact_hashes(p)? == want {
        Ok(())
    } else {
        Err(Stop::verification(
            "what is about to run changed since it was shown; nothing ran",
        ))
    }
}
