//! The gated (slow) path: prepare the diff with the real tool → submit → wait for a human →
//! verify the signed decision → run exactly what was approved → report the outcome.
//!
//! It is one straight line. Every way out that does not run the tool returns `Err((code,
//! message))` with a code from `exit.rs`; the caller prints the message once. The tool-specific
//! part (what to plan, what to show, what to run) is a [`Prepared`] made by `terraform.rs`.

use std::ffi::{OsStr, OsString};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::child;
use super::say::say;
use crate::api::{CreateRequest, Outcome, RequestView, State, Target};
use crate::argv::Invocation;
use crate::client::{Client, ClientError};
use crate::exit as code;
use crate::policy::{Decision, Policy};
use crate::signing;
use crate::tool::Tool;

/// Why the gated path stopped without running the tool: exit code and message.
pub type Stop = (u8, String);

/// What a tool-specific producer hands to the gate.
pub struct Prepared {
    /// The request to submit (argv, environment target, diff, artifact hashes).
    pub request: CreateRequest,
    /// What to run once approved.
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Recomputes the artifact hashes right before the run (they must equal the approved ones).
    pub artifacts_now: Box<dyn Fn() -> Result<Vec<String>, String>>,
    /// The plan changes nothing.
    pub no_changes: bool,
    /// Recomputes the environment target right before the run (it must not have drifted).
    pub target_now: Box<dyn Fn() -> Result<Target, String>>,
    /// Sealed snapshots the run reads (inputs, the pinned kubeconfig, the plan), named in its
    /// argv as `/proc/<pid>/fd/N`; they stay open until the run is over.
    pub snapshots: Vec<super::sealed::Sealed>,
    /// For kubectl and helm: the private discovery cache, and with it the kube child
    /// environment (`kube::child_env`) for the run.
    pub kube_cache: Option<PathBuf>,
    /// Private files of this run (plan output, caches), removed when the gate is done.
    pub run_dir: Option<RunDir>,
}

/// Events the waiting shim reacts to.
enum Event {
    Signal(i32),
    Decided(Box<RequestView>),
    /// The poller lost the server for good.
    Lost(String),
    /// The poller is retrying after a transient error.
    Retrying(String),
}

/// Runs the gated path for an invocation the policy gated. Returns the tool's exit status when
/// it ran, or why it did not.
pub fn run(
    tool: Tool,
    argv0: &OsStr,
    args: &[OsString],
    real: &dyn Fn() -> Result<PathBuf, Stop>,
    inv: &Invocation,
    policy: &Policy,
    gate: &Decision,
) -> Result<ExitStatus, Stop> {
    let cmdline = super::command_line(tool, args);
    let unavailable = |why: String| {
        (
            code::APPROVAL_UNAVAILABLE,
            format!(
                "`{cmdline}` needs approval ({}), but {why}; it did not run",
                gate.rule
            ),
        )
    };
    let approval = policy.approval();
    let Some(public_key) = approval.public_key.clone() else {
        return Err(unavailable(
            "no approval server is configured ([approval] url, token_file and public_key in the \
             policy)"
                .into(),
        ));
    };
    // Signals first: the mask must be in place before any thread (reqwest's) exists.
    let (tx, rx) = mpsc::channel::<Event>();
    child::take_signals(tx.clone(), Event::Signal);
    let client = Client::from_config(approval).map_err(unavailable)?;
    let real = real()?;
    let real = real.as_path();

    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_str().map(String::from))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            (
                code::REFUSED,
                format!(
                    "`{cmdline}` has an argument that is not UTF-8; it cannot be shown to an \
                     approver faithfully, so it did not run"
                ),
            )
        })?;
    let prepared = match tool {
        Tool::Kubectl => super::kubectl::prepare(real, &args, inv)?,
        Tool::Helm => {
            // helm's kube target is resolved with the real kubectl.
            let me = super::resolve::SelfId::current(argv0);
            let path = std::env::var_os("PATH");
            let kubectl = super::resolve::resolve(
                Tool::Kubectl,
                policy.real_path(Tool::Kubectl),
                path.as_deref(),
                &me,
            )
            .map_err(|e| {
                unavailable(format!(
                    "resolving the kube context of a gated helm command needs the real kubectl \
                     ({e})"
                ))
            })?;
            super::helm::prepare(real, &kubectl, &args, inv, policy.allow_post_renderer())?
        }
        _ => super::terraform::prepare(tool, real, &args)?,
    };
    if let Some(sig) = child::received() {
        return Err((
            code::CANCELLED,
            format!(
                "`{cmdline}` was interrupted by {} before its request was submitted; it did not run",
                child::name(sig)
            ),
        ));
    }

    if prepared.no_changes && policy.skip_when_no_changes(&gate.rule) {
        retry_briefly(|| client.no_changes(&prepared.request)).map_err(|e| {
            unavailable(format!(
                "the plan has no changes and recording that failed ({e})"
            ))
        })?;
        say(
            "the plan has no changes; running it without asking (recorded as no_changes, on \
             the agent's word)",
        );
        check_artifact(&prepared, &prepared.request.artifact_sha256)?;
        return child::run(&mut command(&prepared, argv0)).map_err(|e| {
            (
                code::CANNOT_EXECUTE,
                format!("cannot run {}: {e}", real.display()),
            )
        });
    }

    let view = retry_briefly(|| client.create(&prepared.request))
        .map_err(|e| unavailable(format!("submitting the request failed ({e})")))?;
    announce(&cmdline, &view, client.base(), &prepared.request);
    let view = wait(&client, view, &rx, tx)?;
    let id = view.id.clone();
    let decision = match (view.state, &view.decision) {
        (State::Approved, Some(d)) => d,
        (state, d) => return Err(refused_block(state, d.as_ref(), &id, &cmdline)),
    };

    let target = (prepared.target_now)().map_err(|e| {
        (
            code::VERIFICATION_FAILED,
            format!("request {id}: cannot recompute the target environment ({e}); nothing ran"),
        )
    })?;
    if let Some(drift) = prepared.request.environment.drift(&target) {
        return Err((
            code::VERIFICATION_FAILED,
            format!(
                "request {id} was approved for another target: {drift} since the request \
                 was made; nothing ran"
            ),
        ));
    }
    let artifact_now = artifact_hashes(&prepared)?;
    let want = signing::Expected {
        request_id: &id,
        argv_sha256: signing::argv_sha256(tool.name(), &args),
        environment_sha256: signing::environment_sha256(&target),
        artifact_sha256: artifact_now,
        request_sha256: prepared.request.sha256(),
        nonce: &prepared.request.nonce,
    };
    signing::check_approval(&public_key, decision, &want, crate::api::now_ms()).map_err(|e| {
        (
            code::VERIFICATION_FAILED,
            format!("request {id} was approved, but the approval does not hold: {e}; nothing ran"),
        )
    })?;
    say(&format!(
        "request {id} approved by {}{}; running it",
        decision.approvers.join(", "),
        decision
            .comment
            .as_deref()
            .map(|c| format!(" ({c:?})"))
            .unwrap_or_default()
    ));
    let started = Instant::now();
    let status = child::run(&mut command(&prepared, argv0)).map_err(|e| {
        (
            code::CANNOT_EXECUTE,
            format!("cannot run {}: {e}", real.display()),
        )
    })?;
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
        (
            code::VERIFICATION_FAILED,
            format!("cannot hash what is about to run ({e}); nothing ran"),
        )
    })
}

fn check_artifact(p: &Prepared, want: &[String]) -> Result<(), Stop> {
    if artifact_hashes(p)? == want {
        Ok(())
    } else {
        Err((
            code::VERIFICATION_FAILED,
            "what is about to run changed after it was shown; nothing ran".into(),
        ))
    }
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n[truncated by hitl-gate]\n");
    }
    text
}

/// This host's name (for the request; informational).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The largest diff text sent; longer text is cut and marked truncated.
pub const MAX_DIFF_TEXT: usize = 4 * 1024 * 1024;

/// The request for a gated command: its argv as typed, where it runs, its target, the text the
/// approver is shown (cut to [`MAX_DIFF_TEXT`]) with the change model, and the artifact hashes.
/// The agent's own words come from `HITL_GATE_REASON` (shown, never trusted).
pub fn request(
    tool: Tool,
    args: &[String],
    environment: Target,
    text: String,
    changes: &crate::diff::ChangeSet,
    artifact_sha256: Vec<String>,
) -> CreateRequest {
    CreateRequest {
        tool: tool.name().into(),
        argv: args.to_vec(),
        cwd: std::env::current_dir()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default(),
        host: hostname(),
        environment,
        diff: crate::api::Diff {
            truncated: text.len() > MAX_DIFF_TEXT,
            text: truncate(text, MAX_DIFF_TEXT),
            summary: changes.to_json(),
        },
        artifact_sha256,
        reason: reason(),
        nonce: nonce(),
    }
}

/// The agent's own words for a request, from `HITL_GATE_REASON` (shown, never trusted).
pub fn reason() -> Option<String> {
    std::env::var("HITL_GATE_REASON")
        .ok()
        .filter(|r| !r.is_empty())
}

/// A fresh nonce for one gated command: 32 random bytes, hex.
pub fn nonce() -> String {
    let mut b = [0u8; 32];
    // A system without randomness cannot run the gate at all; an all-zero nonce would only
    // weaken replay protection, so fail loudly instead.
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the system random source works");
    crate::hex::encode(&b)
}

/// SHA-256 of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String, String> {
    std::fs::read(path)
        .map(|b| crate::hex::sha256(&b))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Retries a call on transient errors for a few seconds (a server restarting, a blip).
fn retry_briefly<T>(mut call: impl FnMut() -> Result<T, ClientError>) -> Result<T, ClientError> {
    let mut delay = Duration::from_millis(100);
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        match call() {
            Err(ClientError::Transient(_)) if Instant::now() + delay < give_up => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            other => return other,
        }
    }
}

/// What the agent sees once the request is submitted.
fn announce(cmdline: &str, view: &RequestView, base: &str, req: &CreateRequest) {
    let summary = req
        .diff
        .summary
        .get("summary")
        .and_then(|s| s.as_str())
        .unwrap_or("no diff");
    say(&format!(
        "`{cmdline}` is waiting for a human (rule {}, environment {})\n\
         request {id}; review: {base}/api/v1/requests/{id} (approvers: hitl-gate show {id})\n\
         changes: {summary}",
        view.classification.rule,
        view.classification.environment.as_deref().unwrap_or("none"),
        id = view.id,
    ));
}

/// Waits for the decision: a poller thread long-polls (retrying lost connections with backoff
/// until the deadline), this thread shows the time left and reacts to signals by cancelling.
fn wait(
    client: &Client,
    view: RequestView,
    rx: &Receiver<Event>,
    tx: Sender<Event>,
) -> Result<RequestView, Stop> {
    let id = view.id.clone();
    let deadline = view.deadline;
    let poller = client.clone();
    let pid = id.clone();
    std::thread::spawn(move || poll(&poller, &pid, deadline, &tx));
    let tty = std::io::stderr().is_terminal();
    let tick = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(30)
    };
    loop {
        let event = rx.recv_timeout(tick);
        match event {
            Ok(Event::Decided(v)) => return Ok(*v),
            Ok(Event::Signal(sig)) => {
                let how = match client.cancel(&id) {
                    Ok(_) => "cancelled on the server".to_string(),
                    Err(e) => format!("could not be cancelled on the server ({e})"),
                };
                return Err((
                    code::CANCELLED,
                    format!(
                        "got {} while waiting; request {id} {how}; nothing ran",
                        child::name(sig)
                    ),
                ));
            }
            Ok(Event::Lost(e)) => {
                return Err((
                    code::APPROVAL_UNAVAILABLE,
                    format!(
                    "lost the approval server while waiting for request {id} ({e}); nothing ran"
                ),
                ))
            }
            Ok(Event::Retrying(e)) => {
                say(&format!(
                    "connection to the approval server lost ({e}); retrying"
                ));
            }
            Err(RecvTimeoutError::Timeout) => {
                let left = (deadline - crate::api::now_ms()).max(0) / 1000;
                let line = format!(
                    "waiting for approval of request {id}: {}m{:02}s left",
                    left / 60,
                    left % 60
                );
                if tty {
                    super::say::live(&line);
                } else {
                    say(&line);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err((code::INTERNAL, "the waiting thread stopped".into()))
            }
        }
    }
}

/// The poller: long-polls until the request is decided. Transient errors are retried with
/// backoff until a minute past the deadline (by then the server has expired the request).
fn poll(client: &Client, id: &str, deadline: i64, tx: &Sender<Event>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.wait(id, 55) {
            Ok(v) if v.state != State::Pending => {
                let _ = tx.send(Event::Decided(Box::new(v)));
                return;
            }
            Ok(_) => backoff = Duration::from_millis(100),
            Err(ClientError::Fatal(e)) => {
                let _ = tx.send(Event::Lost(e));
                return;
            }
            Err(ClientError::Transient(e)) => {
                if crate::api::now_ms() > deadline + 60_000 {
                    let _ = tx.send(Event::Lost(format!("{e}; the deadline has passed")));
                    return;
                }
                let _ = tx.send(Event::Retrying(e));
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The block an agent reads when a human said no, nobody answered, or the request was
/// cancelled.
fn refused_block(
    state: State,
    d: Option<&crate::api::SignedDecision>,
    id: &str,
    cmdline: &str,
) -> Stop {
    let who = d.map_or("unknown".into(), |d| d.approvers.join(", "));
    let comment = d
        .and_then(|d| d.comment.as_deref())
        .unwrap_or("(no comment)");
    let (code, head) = match state {
        State::Rejected => (
            code::REJECTED,
            format!("REJECTED by {who}: a human said no, because: {comment}"),
        ),
        State::Expired => (
            code::EXPIRED,
            "EXPIRED: nobody decided before the request's deadline, so it was rejected \
             automatically"
                .to_string(),
        ),
        State::Cancelled => (code::CANCELLED, format!("CANCELLED by {who}: {comment}")),
        State::Approved | State::Pending => (
            code::VERIFICATION_FAILED,
            format!("the server answered {} without a decision", state.as_str()),
        ),
    };
    (
        code,
        format!("{head}\nhitl-gate: request {id}; `{cmdline}` did not run"),
    )
}

/// A private directory for one gated run: `$TMPDIR/hitl-gate-<uid>/run-<pid>-<random>` (0700).
/// Directories of earlier runs whose process is gone are removed on the way.
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn create() -> Result<RunDir, String> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let uid = nix::unistd::getuid().as_raw();
        let base = std::env::temp_dir().join(format!("hitl-gate-{uid}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
        }
        let meta =
            std::fs::symlink_metadata(&base).map_err(|e| format!("{}: {e}", base.display()))?;
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
            return Err(format!(
                "{} is not a private directory of this user (mode 0700); refusing to keep plan \
                 files there",
                base.display()
            ));
        }
        clean_stale(&base);
        let mut rnd = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rnd)
            .map_err(|_| "no system randomness".to_string())?;
        let path = base.join(format!(
            "run-{}-{}",
            std::process::id(),
            crate::hex::encode(&rnd)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(RunDir { path })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes `run-<pid>-*` directories whose process no longer exists.
fn clean_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("run-"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
