//! Processes the tests start, owned so that none outlives its test, also when the test panics.
//!
//! - Every process the harness starts leads its own process group (`process_group(0)`), so its
//!   children (chromedriver's Chromium, the shim's terraform or kubectl) are in that group.
//!   [`kill_group`] kills the group with SIGKILL and reaps the leader. It kills only while the
//!   leader is not reaped yet: until then neither its pid nor its group id can be reused (this
//!   machine's pid_max can be 32768, and the suite starts far more processes than that).
//! - Every such process also carries an [`Owner`]'s token in its environment
//!   (`HITL_TEST_OWNER`). Dropping the owner (a [`super::Sandbox`], a server process, the OIDC
//!   provider, the browser) kills every process that still carries the token: what left the
//!   group (a daemon that called `setsid`) or outlived a leader that was already reaped.
//! - `scripts/test` exports `HITL_TEST_RUN` and, at its end, fails if a process that carries it
//!   is still alive. Commands whose environment the harness clears get it back
//!   ([`keep_marker`]).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

/// The variable `scripts/test` exports to every process of one run (its leak check looks for
/// it).
pub const RUN_MARKER: &str = "HITL_TEST_RUN";
/// The variable that names the [`Owner`] of a process.
pub const OWNER: &str = "HITL_TEST_OWNER";

/// Passes `HITL_TEST_RUN` on to `c` (for commands started with a cleared environment).
pub fn keep_marker(c: &mut Command) -> &mut Command {
    if let Some(v) = std::env::var_os(RUN_MARKER) {
        c.env(RUN_MARKER, v);
    }
    c
}

/// Whether `pid`, a child of this process, has not been reaped yet (it runs, or is a zombie):
/// while it is not, its pid and its process group id stay taken.
fn unreaped(pid: Pid) -> bool {
    waitid(
        Id::Pid(pid),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
    )
    .is_ok()
}

/// Kills `child`'s whole process group (when `child` leads one and is not reaped yet), then
/// `child` itself, and reaps it.
pub fn kill_group(child: &mut Child) {
    let pid = Pid::from_raw(child.id() as i32);
    if unreaped(pid) && nix::unistd::getpgid(Some(pid)) == Ok(pid) {
        let _ = killpg(pid, Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until `child` has ended, without reaping it; then kills what is left of its process
/// group (when it leads one). The caller reaps it.
pub fn end_group_after(child: &Child) -> bool {
    let pid = Pid::from_raw(child.id() as i32);
    match waitid(
        Id::Pid(pid),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
    ) {
        Ok(nix::sys::wait::WaitStatus::StillAlive) => false,
        Ok(_) => {
            if nix::unistd::getpgid(Some(pid)) == Ok(pid) {
                let _ = killpg(pid, Signal::SIGKILL);
            }
            true
        }
        // Reaped already (or not ours): nothing to wait for.
        Err(_) => true,
    }
}

/// A token that marks the processes one part of a test started; dropping it kills every process
/// still marked with it.
pub struct Owner {
    token: String,
}

impl Default for Owner {
    fn default() -> Owner {
        Owner::new()
    }
}

impl Owner {
    pub fn new() -> Owner {
        let mut b = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
        Owner {
            token: hitl_gate::hex::encode(&b),
        }
    }

    /// Makes `c` lead its own process group and carry this owner's token (and the run's
    /// marker).
    pub fn mark<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        keep_marker(c).env(OWNER, &self.token).process_group(0)
    }

    /// The processes alive now that carry this owner's token.
    pub fn alive(&self) -> Vec<i32> {
        let want = format!("{OWNER}={}", self.token).into_bytes();
        let me = std::process::id() as i32;
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| pid != me)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == want.as_slice()))
            })
            .collect()
    }

    /// Kills every process that carries the token (again, until none is left: one may be
    /// forking while it is killed).
    pub fn kill_all(&self) {
        for _ in 0..20 {
            let alive = self.alive();
            if alive.is_empty() {
                return;
            }
            for pid in alive {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A child process that leads its own process group, killed with the group when dropped.
pub struct Group {
    pub child: Child,
    owner: Owner,
}

impl Group {
    /// Starts `c` in a process group of its own, marked with a fresh owner.
    pub fn spawn(c: &mut Command) -> std::io::Result<Group> {
        let owner = Owner::new();
        let child = owner.mark(c).spawn()?;
        Ok(Group { child, owner })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the group now (what dropping it does).
    pub fn kill(&mut self) {
        kill_group(&mut self.child);
        self.owner.kill_all();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}
