//! Running one command for a caller on the other end of a lockdown socket (the runner's and the
//! writer's): the child in its own session with an empty signal mask, the caller's `signal N`
//! lines forwarded to it, and, when the caller goes away, SIGTERM (a waiting gated command
//! cancels its request) and 5 s later SIGKILL for its whole group.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Starts `cmd` and waits for it, forwarding the caller's signals (`early` holds any that came
/// with the request). `what` names it in the log line. `Err` when it could not start.
#[allow(unsafe_code)]
pub fn run(
    conn: &UnixStream,
    mut cmd: std::process::Command,
    early: Vec<u8>,
    what: &str,
) -> Result<ExitStatus, String> {
    // SAFETY: between fork and exec the closure only calls setsid and sigprocmask, both
    // async-signal-safe; it touches no memory the parent shares.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            )
            .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "cannot start {} in {}: {e}",
            cmd.get_program().to_string_lossy(),
            cmd.get_current_dir()
                .unwrap_or(std::path::Path::new("?"))
                .display()
        )
    })?;
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(|e| e.to_string())?);
    eprintln!("{what} [pid {pid}]");
    let reader = conn.try_clone().map_err(|e| e.to_string())?;
    std::thread::spawn(move || forward_signals(reader, early, pid));
    child.wait().map_err(|e| e.to_string())
}

/// The caller's signals (any that came with the request first), until it goes away; then the
/// child ends. A partial line at the end of `early` is completed by what is read next.
fn forward_signals(reader: UnixStream, early: Vec<u8>, pid: Pid) {
    let mut lines = BufReader::new(std::io::Cursor::new(early).chain(reader));
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let sig = line
                    .trim()
                    .strip_prefix("signal ")
                    .and_then(|n| n.parse::<i32>().ok().and_then(|n| Signal::try_from(n).ok()));
                if let Some(sig) = sig {
                    let _ = kill(pid, sig);
                }
            }
        }
    }
    // The caller is gone: a waiting gated command cancels its request on SIGTERM; then the
    // whole group goes.
    if kill(pid, None).is_ok() {
        let _ = kill(pid, Signal::SIGTERM);
        std::thread::sleep(Duration::from_secs(5));
        let _ = killpg(pid, Signal::SIGKILL);
    }
}

/// Sends the last line for `status`: `exit N`, or `signal N` when the child died of one.
pub fn finish_as(mut conn: &UnixStream, status: ExitStatus) -> Result<(), String> {
    let line = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "exit 1".to_string(),
    };
    let _ = conn.write_all(format!("{line}\n").as_bytes());
    Ok(())
}
