//! The shim in lockdown mode (`[lockdown]` in the system policy): it runs nothing itself. It
//! hands argv, the working directory, the variables the policy lets through and its own fds
//! 0, 1 and 2 to the runner (`runner/`), which decides and runs the command as another user.
//! The tool writes straight to the agent's terminal or pipes; the shim forwards the signals it
//! receives (all of them: the tool is not in the agent's process group, so the terminal's
//! Ctrl-C reaches only the shim), then ends as the tool ended, with its exit code or its
//! signal.
//!
//! When the runner cannot be reached, or goes away before the end, the shim exits with
//! [`code::RUNNER_UNAVAILABLE`] and nothing it could not see has run on its behalf.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::mpsc;

use super::prepared::Stop;
use crate::exit as code;
use crate::policy::lockdown::Lockdown;
use crate::runner::wire;
use crate::tool::Tool;

/// Set by the runner for its child: the agent's uid, which keeps the child's resume records
/// (`resume.rs`) apart per agent. An agent setting it outside lockdown only moves its own.
pub const AGENT_VAR: &str = "HITL_GATE_LOCKDOWN_AGENT";

/// Whether this process is the runner's child (it runs as `runner_user`), which works as in
/// exec mode.
pub fn is_runner(l: &Lockdown) -> bool {
    l.runner_uid(&crate::policy::load::root()) == Some(nix::unistd::getuid().as_raw())
}

enum Event {
    Signal(i32),
    Line(String),
    Closed,
}

/// Runs `tool args` through the runner. Returns the tool's status, or why nothing (or not all
/// of it) could be run.
pub fn forward(l: &Lockdown, tool: Tool, args: &[OsString]) -> Result<ExitStatus, Stop> {
    let unavailable = |why: String| {
        Stop::new(
            code::RUNNER_UNAVAILABLE,
            format!(
                "lockdown mode: the runner at {} {why}; {tool} did not run",
                l.runner_socket.display()
            ),
        )
    };
    let stream = UnixStream::connect(&l.runner_socket)
        .map_err(|e| unavailable(format!("cannot be reached ({e})")))?;
    let hex = |b: &[u8]| crate::hex::encode(b);
    let cwd = std::env::current_dir()
        .map_err(|e| Stop::internal(format!("cannot read the working directory: {e}")))?;
    let env = std::env::vars_os()
        .filter_map(|(k, v)| {
            let name = k.to_str()?;
            l.passes_env(tool.name(), name)
                .then(|| (hex(name.as_bytes()), hex(v.as_bytes())))
        })
        .collect();
    let req = wire::Request {
        version: 1,
        tool: tool.name().into(),
        argv: args.iter().map(|a| hex(a.as_bytes())).collect(),
        cwd: hex(cwd.as_os_str().as_bytes()),
        env,
    };
    converse(&stream, &req, &[0, 1, 2], &unavailable)
}

/// Sends `value` with `fds` to a lockdown daemon (the runner, or the writer), forwards this
/// process's signals as `signal N` lines until the daemon's last line, and ends as it says.
pub fn converse<T: serde::Serialize>(
    stream: &UnixStream,
    value: &T,
    fds: &[std::os::fd::RawFd],
    unavailable: &dyn Fn(String) -> Stop,
) -> Result<ExitStatus, Stop> {
    let (tx, rx) = mpsc::channel();
    super::child::take_signals(tx.clone(), Event::Signal);
    // A daemon that refuses a caller answers and hangs up without reading: its answer is still
    // there to read when sending fails.
    let sent = wire::send_line(stream, value, fds);
    let reader = stream
        .try_clone()
        .map_err(|e| Stop::internal(e.to_string()))?;
    std::thread::spawn(move || {
        let mut lines = BufReader::new(reader);
        let mut line = String::new();
        let event = match lines.read_line(&mut line) {
            Ok(n) if n > 0 => Event::Line(line),
            _ => Event::Closed,
        };
        let _ = tx.send(event);
    });
    loop {
        match rx.recv() {
            Ok(Event::Signal(sig)) => {
                let _ = wire::send_bytes(stream, format!("signal {sig}\n").as_bytes());
            }
            Ok(Event::Line(line)) => return ended(line.trim_end()),
            Ok(Event::Closed) | Err(_) => {
                return Err(match &sent {
                    Err(e) => unavailable(format!("did not take the command ({e})")),
                    Ok(()) => unavailable(
                        "went away before the command ended (it may have run in part)".into(),
                    ),
                })
            }
        }
    }
}

/// A daemon's last line: `exit N`, `signal N` or `refused N MESSAGE`.
fn ended(line: &str) -> Result<ExitStatus, Stop> {
    let mut words = line.splitn(3, ' ');
    let (kind, n) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let n: i32 = n
        .parse()
        .map_err(|_| Stop::internal(format!("the runner said {line:?}")))?;
    match kind {
        "exit" => Ok(ExitStatus::from_raw((n & 0xff) << 8)),
        "signal" => Ok(ExitStatus::from_raw(n & 0x7f)),
        "refused" => Err(Stop::new(
            u8::try_from(n).unwrap_or(code::REFUSED),
            words
                .next()
                .unwrap_or("the runner refused the command")
                .to_string(),
        )),
        _ => Err(Stop::internal(format!("the runner said {line:?}"))),
    }
}
