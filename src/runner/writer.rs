//! `hitl-gate runner --writer`: lockdown's writer (W). It runs as `[lockdown.writer] user`, the
//! only user that can read the write credential sets, and it runs nothing but approved runs:
//!
//! 1. a connection on its socket, from the runner's uid only (SO_PEERCRED); the runner's
//!    children hand it an approved run ([`super::wire::Job`]) with the agent's fds 0, 1 and 2
//!    and the run's sealed inputs;
//! 2. every check of `verify.rs`, with the server key pinned in the system policy: a forged,
//!    replayed, expired or foreign decision, or an input that is not the approved one, is
//!    refused, recorded in W's `refusals.log`, and nothing runs;
//! 3. the command built from the signed run template alone (`writer_run.rs`): W's own
//!    credentials, a private working directory (terraform: the approved one), never a path the
//!    agent or the runner named;
//! 4. the run, supervised like the runner's (`supervise.rs`), and its outcome reported to the
//!    server with W's own token (`[[serve.runner]]`): recorded as verified.
//!
//! Why the runner's children hand work over, not the agent's shim: the runner's child holds
//! the sealed snapshots the approver saw and can pass them as descriptors; W then reads nothing
//! else. W trusts none of it until the signature holds.

use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;

use super::verify::{verify, Ledger, Verified};
use super::wire::{self, Job};
use crate::api::Outcome;
use crate::policy::lockdown::Lockdown;
use crate::policy::Policy;

/// The writer's settings, read once at start.
struct Writer {
    policy: Policy,
    lockdown: Lockdown,
    public_key: String,
    /// W's home: its credentials, terraform data directories and kube caches.
    home: PathBuf,
    ledger: Ledger,
    runner_uid: u32,
}

/// Serves until the process is killed.
pub fn serve(policy: &Policy) -> Result<(), String> {
    let lockdown = policy
        .lockdown()
        .cloned()
        .ok_or("the system policy has no [lockdown] section")?;
    let root = crate::policy::load::root();
    let me = nix::unistd::getuid().as_raw();
    let w = &lockdown.writer;
    let uid_of = |user: &str| {
        crate::policy::lockdown::uid_of(user, &root)
            .ok_or_else(|| format!("{user:?} is not a user on this machine"))
    };
    if uid_of(&w.user)? != me {
        return Err(format!(
            "the writer must run as [lockdown.writer] user {:?}, not uid {me}",
            w.user
        ));
    }
    let runner_uid = uid_of(&lockdown.runner_user)?;
    let public_key = policy
        .approval()
        .public_key
        .clone()
        .ok_or("the system policy pins no [approval] public_key")?;
    let home = PathBuf::from(std::env::var_os("HOME").ok_or("the writer has no HOME")?);
    let ledger = Ledger::open(home.join(".hitl-gate"))?;
    let socket = w.socket.clone();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .map_err(|e| format!("cannot bind {}: {e}", socket.display()))?;
    // Only the runner's uid is served; its directory keeps others from even connecting
    // (install.sh: the writer's, group of the runner, 0750).
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .map_err(|e| format!("cannot chmod {}: {e}", socket.display()))?;
    let writer = Arc::new(Writer {
        policy: policy.clone(),
        lockdown,
        public_key,
        home,
        ledger,
        runner_uid,
    });
    println!("hitl-gate writer: listening on {}", socket.display());
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let w = writer.clone();
        std::thread::spawn(move || {
            if let Err(e) = handle(&w, &conn) {
                eprintln!("hitl-gate writer: {e}");
            }
        });
    }
    Ok(())
}

fn refuse(conn: &UnixStream, message: &str) -> Result<(), String> {
    let line = format!(
        "refused {} {}\n",
        crate::exit::VERIFICATION_FAILED,
        message.replace('\n', " ")
    );
    let _ = wire::send_bytes(conn, line.as_bytes());
    Ok(())
}

fn handle(w: &Writer, conn: &UnixStream) -> Result<(), String> {
    let cred =
        nix::sys::socket::getsockopt(&conn.as_fd(), nix::sys::socket::sockopt::PeerCredentials)
            .map_err(|e| format!("SO_PEERCRED: {e}"))?;
    let now = crate::api::now_ms();
    if cred.uid() != w.runner_uid {
        let why = format!(
            "uid {} is not the runner's; only the runner hands over runs",
            cred.uid()
        );
        w.ledger.refused("-", &why, now);
        return refuse(conn, &format!("{why}; nothing ran"));
    }
    let (job, mut fds, early): (Job, _, _) = match wire::receive_line(conn) {
        Ok(x) => x,
        Err(e) => return refuse(conn, &format!("bad job: {e}; nothing ran")),
    };
    if job.version != 1 || fds.len() < 3 {
        return refuse(
            conn,
            "bad job: version 1 with fds 0, 1 and 2 expected; nothing ran",
        );
    }
    let inputs = fds.split_off(3);
    let id = job.request_id.clone();
    let checked = verify(&w.public_key, job, inputs, now).and_then(|v| {
        w.ledger.claim(&v.id)?;
        Ok(v)
    });
    let v = match checked {
        Ok(v) => v,
        Err(why) => {
            w.ledger.refused(&id, &why, now);
            return refuse(
                conn,
                &format!("the writer refused request {id}: {why}; nothing ran"),
            );
        }
    };
    let stdio: [std::os::fd::OwnedFd; 3] = fds.try_into().map_err(|_| "three stdio fds")?;
    run(w, conn, v, stdio, early)
}

/// Runs a verified job and reports its outcome.
fn run(
    w: &Writer,
    conn: &UnixStream,
    v: Verified,
    stdio: [std::os::fd::OwnedFd; 3],
    early: Vec<u8>,
) -> Result<(), String> {
    let setup = super::writer_run::Writer {
        policy: &w.policy,
        lockdown: &w.lockdown,
        home: &w.home,
    };
    let prepared = match super::writer_run::command(&setup, &v, stdio) {
        Ok(p) => p,
        Err(why) => {
            w.ledger.refused(&v.id, &why, crate::api::now_ms());
            return refuse(conn, &format!("request {}: {why}; nothing ran", v.id));
        }
    };
    let what = format!(
        "hitl-gate writer: approved request {}: {}",
        v.id,
        crate::shim::prepared::command_line(
            v.tool,
            &v.request.argv.iter().map(Into::into).collect::<Vec<_>>()
        )
    );
    let started = std::time::Instant::now();
    let status = match super::supervise::run(conn, prepared.command, early, &what) {
        Ok(s) => s,
        Err(why) => return refuse(conn, &why),
    };
    drop(prepared.keep);
    report(w, &v.id, status, started.elapsed());
    super::supervise::finish_as(conn, status)
}

/// Reports the outcome with the writer's own token (recorded by the server as verified).
fn report(w: &Writer, id: &str, status: std::process::ExitStatus, took: std::time::Duration) {
    let outcome = Outcome {
        exit_code: status.code(),
        signal: std::os::unix::process::ExitStatusExt::signal(&status),
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
    };
    let sent =
        crate::client::Client::with_token_file(w.policy.approval(), &w.lockdown.writer.token_file)
            .and_then(|c| {
                crate::shim::wait::retry_briefly(|| c.outcome(id, &outcome))
                    .map_err(|e| e.to_string())
            });
    if let Err(e) = sent {
        eprintln!("hitl-gate writer: the outcome of request {id} was not recorded: {e}");
    }
}
