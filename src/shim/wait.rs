//! Waiting for the decision: the poller thread long-polls the server (retrying lost
//! connections until the deadline, and pausing as long as a 429's `Retry-After` asks), the main
//! thread shows the time left and stops waiting when the wait is over (`[approval] max_wait`,
//! `HITL_GATE_WAIT`) or a signal comes: SIGTERM and SIGHUP (a harness's timeout) detach with
//! `on_signal = "detach"` (the request stays pending, "still pending" exit), SIGINT and SIGQUIT
//! (a person) cancel it; and what the agent reads when the answer is not yes.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::child;
use super::prepared::Stop;
use super::say::say;
use crate::api::{RequestView, State};
use crate::client::{Client, ClientError};
use crate::exit as code;
use crate::policy::schema::{Approval, OnSignal};

/// The agent's own bound on the wait (`30s`, `2m`): it may shorten `[approval] max_wait`, never
/// lengthen it.
pub const WAIT_VAR: &str = "HITL_GATE_WAIT";

/// How long this shim waits, and what a harness's signal does.
pub struct Waiting {
    /// The longest wait from now: the shorter of `max_wait` and `HITL_GATE_WAIT`.
    pub at_most: Option<Duration>,
    pub on_signal: OnSignal,
}

impl Waiting {
    /// From the policy and the agent's environment; an unreadable `HITL_GATE_WAIT` refuses
    /// (87) rather than waiting longer than asked.
    pub fn of(a: &Approval) -> Result<Waiting, Stop> {
        let own = match std::env::var_os(WAIT_VAR) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok_or_else(|| "not UTF-8".to_string())
                    .and_then(crate::policy::duration::parse_duration)
                    .map_err(|e| {
                        Stop::refused(
                            format!("{WAIT_VAR}={}", v.to_string_lossy()),
                            format!("not a duration like 90s, 5m or 1h ({e})"),
                        )
                    })?,
            ),
        };
        let policy = a.max_wait.map(|d| d.0);
        Ok(Waiting {
            at_most: [policy, own].into_iter().flatten().min(),
            on_signal: a.on_signal,
        })
    }
}

/// Events the waiting shim reacts to.
pub enum Event {
    Signal(i32),
    Decided(Box<RequestView>),
    /// One more approval landed; more are needed.
    Progress(Box<RequestView>),
    /// The poller lost the server for good.
    Lost(String),
    /// The poller is retrying after a transient error.
    Retrying(String),
    /// The server answered 429 (this agent holds too many long-polls); the poller asks again
    /// after the pause the server gave. Sent once per run of 429s.
    Busy(String),
}

/// Retries a call on transient errors for a few seconds (a server restarting, a blip), and
/// after a 429 when its `Retry-After` ends within them.
pub fn retry_briefly<T>(
    mut call: impl FnMut() -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    let mut delay = Duration::from_millis(100);
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        let result = call();
        let pause = match &result {
            Err(ClientError::Transient(_)) => delay,
            Err(ClientError::Busy(_, after)) => *after,
            _ => return result,
        };
        if Instant::now() + pause >= give_up {
            return result;
        }
        std::thread::sleep(pause);
        delay *= 2;
    }
}

/// What the agent sees once the request is submitted (or picked up again).
pub fn announce(cmdline: &str, view: &RequestView) {
    let c = &view.classification;
    let review = match &view.review_url {
        Some(url) => url.clone(),
        // The API URL answers 401 in a browser: without a web UI, the approvers' command.
        None => format!("hitl-gate show {}", view.id),
    };
    let freeze = c
        .freeze
        .as_ref()
        .map(|f| format!("\nchange freeze {:?} in force: {}", f.name, f.reason))
        .unwrap_or_default();
    say(&format!(
        "`{cmdline}` is waiting for a human (rule {}, environment {}); it {}\n\
         request {id}; review: {review}\n\
         changes: {}{freeze}",
        c.rule,
        c.environment.as_deref().unwrap_or("none"),
        c.needs(),
        view.changes.summary,
        id = view.id,
    ));
}

/// The line an agent reads when the shim stopped waiting and the request stays pending (exit
/// [`code::PENDING`]); docs/agents.md tells agents to parse it.
pub fn pending(id: &str, deadline_ms: i64, why: &str) -> Stop {
    let expires = jiff::Timestamp::from_second(deadline_ms.div_euclid(1000))
        .map_or_else(|_| deadline_ms.to_string(), |t| t.to_string());
    Stop::new(
        code::PENDING,
        format!(
            "pending {id}: run the same command again to keep waiting (expires {expires})\n\
             ({why}; the request stays pending and nothing ran)"
        ),
    )
}

/// Waits for the decision: a poller thread long-polls (retrying lost connections with backoff
/// until the deadline), this thread shows the time left, ends the wait when `how` says, and
/// reacts to signals (detach or cancel).
pub fn wait(
    client: &Client,
    view: RequestView,
    rx: &Receiver<Event>,
    tx: Sender<Event>,
    how: &Waiting,
) -> Result<RequestView, Stop> {
    let id = view.id.clone();
    let deadline = view.deadline;
    let poller = client.clone();
    let pid = id.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || poll(&poller, &pid, deadline, &tx, &stopped));
    let tty = std::io::stderr().is_terminal();
    let tick = Duration::from_secs(if tty { 1 } else { 30 });
    let give_up = how.at_most.map(|d| Instant::now() + d);
    // Stops waiting, the request left pending: the poller first, so no long-poll renews the
    // agent's presence after the server is told it left.
    let detach = |why: String| {
        stop.store(true, Ordering::SeqCst);
        if let Err(e) = client.detach(&id) {
            say(&format!(
                "warning: could not tell the server that this shim stopped waiting ({e})"
            ));
        }
        pending(&id, deadline, &why)
    };
    loop {
        let left = give_up.map(|g| g.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Err(detach(
                "the wait ended ([approval] max_wait or HITL_GATE_WAIT)".into(),
            ));
        }
        match rx.recv_timeout(left.map_or(tick, |l| l.min(tick))) {
            Ok(Event::Decided(v)) => return Ok(*v),
            Ok(Event::Progress(v)) => progress(&id, &v),
            Ok(Event::Signal(sig)) => {
                let harness = [
                    nix::sys::signal::Signal::SIGTERM,
                    nix::sys::signal::Signal::SIGHUP,
                ]
                .iter()
                .any(|s| *s as i32 == sig);
                if harness && how.on_signal == OnSignal::Detach {
                    return Err(detach(format!("got {}", child::name(sig))));
                }
                stop.store(true, Ordering::SeqCst);
                let how = match client.cancel(&id) {
                    Ok(_) => "cancelled on the server".to_string(),
                    Err(e) => format!("could not be cancelled on the server ({e})"),
                };
                return Err(Stop::cancelled(format!(
                    "got {} while waiting; request {id} {how}; nothing ran",
                    child::name(sig)
                )));
            }
            Ok(Event::Lost(e)) => {
                return Err(Stop::new(
                    code::APPROVAL_UNAVAILABLE,
                    format!(
                        "lost the approval server while waiting for request {id} ({e}); nothing \
                         ran\n{}",
                        super::prepared::SERVER_HINT
                    ),
                ))
            }
            Ok(Event::Retrying(e)) => {
                say(&format!(
                    "connection to the approval server lost ({e}); retrying"
                ));
            }
            Ok(Event::Busy(e)) => {
                say(&format!(
                    "the approval server asks this agent to wait ({e}); still waiting for \
                     request {id}"
                ));
            }
            Err(RecvTimeoutError::Timeout) => time_left(&id, deadline, tty),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Stop::internal("the waiting thread stopped"))
            }
        }
    }
}

/// One more approval landed; more are needed.
fn progress(id: &str, v: &RequestView) {
    let who: Vec<&str> = v
        .approvals
        .iter()
        .map(|a| a.display.as_deref().unwrap_or(&a.approver))
        .collect();
    say(&format!(
        "request {id}: {} of {} approvals ({}); waiting for more",
        v.approvals.len(),
        v.classification.approvals_needed.max(1),
        who.join(", ")
    ));
}

/// The time left before the request's deadline, live on a terminal.
fn time_left(id: &str, deadline: i64, tty: bool) {
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

/// The poller: long-polls until the request is decided. Transient errors are retried with
/// backoff, and a 429 after its `Retry-After`, until a minute past the deadline (by then the
/// server has expired the request). Neither is ever taken for a decision.
fn poll(client: &Client, id: &str, deadline: i64, tx: &Sender<Event>, stop: &AtomicBool) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    let mut backoff = FIRST_BACKOFF;
    let mut approvals = 0;
    let mut busy = false;
    while !stop.load(Ordering::SeqCst) {
        let pause = match client.wait(id, 55, approvals) {
            Ok(v) if v.state != State::Pending => {
                let _ = tx.send(Event::Decided(Box::new(v)));
                return;
            }
            Ok(v) => {
                (backoff, busy) = (FIRST_BACKOFF, false);
                if v.approvals.len() != approvals {
                    approvals = v.approvals.len();
                    let _ = tx.send(Event::Progress(Box::new(v)));
                }
                continue;
            }
            Err(ClientError::Fatal(e)) => {
                let _ = tx.send(Event::Lost(e));
                return;
            }
            Err(e) if crate::api::now_ms() > deadline + 60_000 => {
                let _ = tx.send(Event::Lost(format!("{e}; the deadline has passed")));
                return;
            }
            Err(ClientError::Busy(e, after)) => {
                if !std::mem::replace(&mut busy, true) {
                    let _ = tx.send(Event::Busy(e));
                }
                after
            }
            Err(ClientError::Transient(e)) => {
                let _ = tx.send(Event::Retrying(e));
                let pause = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                pause
            }
        };
        std::thread::sleep(pause);
    }
}

/// The block an agent reads when a human said no, nobody answered, or the request was
/// cancelled.
pub fn refused_block(
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
        State::Rejected if who.starts_with("policy:") => (
            code::REJECTED,
            format!("REJECTED by the server's policy ({who}), because: {comment}"),
        ),
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
    Stop::new(
        code,
        format!("{head}\nrequest {id}; `{cmdline}` did not run"),
    )
}
