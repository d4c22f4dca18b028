//! Signals and children on the gated path.
//!
//! The gated path runs the real tool as a child (plan, show, then the approved run) instead of
//! `exec`ing it, so it must behave like the tool towards signals:
//! - SIGINT, SIGTERM, SIGHUP and SIGQUIT are blocked in every thread (the mask is set before any
//!   thread exists) and taken by one thread with `sigwaitinfo`. Each one is recorded and sent as
//!   an event to whoever waits for a decision (which then cancels the request).
//! - A signal sent to the shim by a process (`kill`) is forwarded to the running child. One made
//!   by the terminal (Ctrl-C: the kernel sends it to the whole foreground process group) is not:
//!   the child got it already, and a second SIGINT makes terraform abandon its graceful stop.
//! - Children start with an empty signal mask (`pre_exec`), so they see signals as usual.
//! - When the child dies of a signal, the shim dies of the same one ([`exit_like`]).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Mutex, PoisonError};

use nix::libc;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

/// The child that signals are forwarded to, if one runs. The signal thread sends while holding
/// the lock, and the waiter clears it before it reaps the child (see [`wait`]), so a signal can
/// never reach a process that took over the pid of a child already gone.
static CHILD: Mutex<Option<Pid>> = Mutex::new(None);
/// The last signal received, 0 for none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

const HANDLED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in HANDLED {
        set.add(s);
    }
    set
}

/// Blocks the handled signals in this thread (and every thread it creates afterwards) and
/// starts the thread that takes them. Each signal is sent to `events` (mapped by `wrap`).
/// Call it once, before any other thread exists.
pub fn take_signals<E: Send + 'static>(events: Sender<E>, wrap: fn(i32) -> E) {
    let set = handled_set();
    // Only fails for an invalid `how`, which this is not.
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    std::thread::spawn(move || loop {
        let Some((sig, from_kill)) = wait_for_signal(&set) else {
            continue;
        };
        RECEIVED.store(sig as i32, Ordering::SeqCst);
        if from_kill {
            let child = CHILD.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(pid) = *child {
                // The child is not reaped while the lock is held: this pid is still ours.
                let _ = nix::sys::signal::kill(pid, sig);
            }
        }
        let _ = events.send(wrap(sig as i32));
    });
}

/// The next of the blocked signals in `set` that arrives, and whether a process sent it with
/// `kill` (`SI_USER`) rather than the terminal. nix has no `sigwaitinfo`, hence the one unsafe
/// call.
#[allow(unsafe_code)]
fn wait_for_signal(set: &SigSet) -> Option<(Signal, bool)> {
    // SAFETY: `info` is a plain C struct that sigwaitinfo fills in, and `set` is a valid,
    // initialised signal set for the duration of the call.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let sig = unsafe { libc::sigwaitinfo(set.as_ref(), &mut info) };
    let sig = Signal::try_from(sig).ok()?;
    Some((sig, info.si_code == libc::SI_USER))
}

/// The last signal the shim received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The name of a signal number, for messages.
pub fn name(sig: i32) -> String {
    Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

/// Starts `cmd` with an empty signal mask and makes it the child signals are forwarded to.
#[allow(unsafe_code)]
fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    // SAFETY: the closure runs between fork and exec and only calls pthread_sigmask, which is
    // async-signal-safe; it touches no memory the parent shares.
    unsafe {
        cmd.pre_exec(|| {
            let empty = SigSet::empty();
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&empty), None)
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn()?;
    *CHILD.lock().unwrap_or_else(PoisonError::into_inner) =
        i32::try_from(child.id()).ok().map(Pid::from_raw);
    Ok(child)
}

/// Waits for the forwarded-to child and stops forwarding: it waits for the child to end
/// without reaping it (`WNOWAIT`, so its pid cannot be reused yet), stops forwarding, and only
/// then reaps it.
fn wait(mut child: Child) -> std::io::Result<ExitStatus> {
    if let Ok(raw) = i32::try_from(child.id()) {
        let pid = Pid::from_raw(raw);
        while let Err(nix::errno::Errno::EINTR) =
            waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
        {}
    }
    *CHILD.lock().unwrap_or_else(PoisonError::into_inner) = None;
    child.wait()
}

/// Runs `cmd` to completion with an empty signal mask, forwarding signals to it meanwhile. Its
/// output goes straight to the shim's (so the shim no longer knows where stderr's cursor is).
pub fn run(cmd: &mut Command) -> std::io::Result<ExitStatus> {
    let status = wait(spawn(cmd)?);
    super::say::unknown();
    status
}

/// Copies `from` to this process's stderr as it comes, keeping track of where the cursor is
/// (`say.rs`), and, with `keep`, a copy of the bytes.
fn copy_to_stderr(
    mut from: impl std::io::Read,
    mut keep: Option<&mut Vec<u8>>,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut buf = [0u8; 8192];
    let mut err = std::io::stderr();
    loop {
        match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                // The agent's stderr may be gone; nothing to do about it.
                let _ = err.write_all(&buf[..n]);
                super::say::copied(&buf[..n]);
                if let Some(k) = keep.as_deref_mut() {
                    k.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Passes a child's stderr on, on a thread (so its pipe can never fill and stall the child).
fn pass_stderr(child: &mut Child) -> Option<std::thread::JoinHandle<()>> {
    let from = child.stderr.take()?;
    Some(std::thread::spawn(move || {
        let _ = copy_to_stderr(from, None);
    }))
}

/// Runs `cmd` like [`run`], capturing its stdout; its stderr is passed on.
pub fn output(cmd: &mut Command) -> std::io::Result<(ExitStatus, Vec<u8>)> {
    capture(cmd, false).map(|(status, out, _)| (status, out))
}

/// Runs `cmd` like [`run`], capturing stdout and stderr.
pub fn output_all(cmd: &mut Command) -> std::io::Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
    capture(cmd, true)
}

/// Runs `cmd`, capturing its stdout; its stderr is kept (`keep_stderr`) or passed on. stderr is
/// read on a second thread, so neither pipe can fill up and stall the child.
fn capture(
    cmd: &mut Command,
    keep_stderr: bool,
) -> std::io::Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
    use std::io::Read;
    let mut child = spawn(
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    )?;
    // A piped stdin is closed at once: the child reads end-of-file.
    drop(child.stdin.take());
    let errs = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let _ = if keep_stderr {
                e.read_to_end(&mut kept).map(drop)
            } else {
                copy_to_stderr(e, None)
            };
            kept
        })
    });
    let mut out = Vec::new();
    let read = child
        .stdout
        .take()
        .map_or(Ok(0), |mut s| s.read_to_end(&mut out));
    let status = wait(child);
    let err = errs
        .map(|t| t.join().unwrap_or_default())
        .unwrap_or_default();
    read?;
    Ok((status?, out, err))
}

/// Runs `cmd` like [`run`], copying its stdout to this process's stderr as it comes and keeping
/// a copy; its stderr is passed on too.
pub fn tee_stdout_to_stderr(cmd: &mut Command) -> std::io::Result<(ExitStatus, Vec<u8>)> {
    let mut child = spawn(
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    )?;
    // A piped stdin is closed at once: the child reads end-of-file.
    drop(child.stdin.take());
    let errs = pass_stderr(&mut child);
    let mut kept = Vec::new();
    let read = child
        .stdout
        .take()
        .map_or(Ok(()), |out| copy_to_stderr(out, Some(&mut kept)));
    let status = wait(child);
    if let Some(t) = errs {
        let _ = t.join();
    }
    read?;
    Ok((status?, kept))
}

/// Ends this process the way `status` ended the child: the same exit code, or death by the
/// same signal (128 + N if that signal does not kill).
#[allow(unsafe_code)]
pub fn exit_like(status: ExitStatus) -> ! {
    if let Some(sig) = status.signal() {
        if let Ok(s) = Signal::try_from(sig) {
            // SAFETY: installs the default disposition (no handler of ours runs), so raising the
            // signal ends this process as it ended the child.
            let _ = unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigDfl) };
            let mut set = SigSet::empty();
            set.add(s);
            let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
            let _ = nix::sys::signal::raise(s);
        }
        std::process::exit(128 + sig);
    }
    std::process::exit(status.code().unwrap_or(1))
}
