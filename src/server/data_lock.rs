//! One server per data dir: `hitl-gate serve` holds an advisory lock (`flock`) on
//! `DATA_DIR/serve.lock` for its whole life, with its PID written in the file. A second `serve`
//! on the same data dir stops at once, naming the data dir and the holder's PID, instead of
//! replacing the admin socket (and, when it exits, deleting the first server's socket: the
//! break-glass path).
//!
//! The lock belongs to the open file, so it ends with the process however it ends (`kill -9`
//! included); the file itself stays, and a stale PID in it means nothing. Nothing else (the
//! approver commands, `audit`, `keys`) takes the lock.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// The lock file inside the data dir.
pub const LOCK_FILE: &str = "serve.lock";

/// The data dir's lock, held until dropped.
pub struct DataDirLock {
    _held: Flock<std::fs::File>,
}

impl DataDirLock {
    /// Takes the lock of `dir` (created 0600 if missing) and writes this process's PID in it;
    /// fails at once, naming `dir` and the holder's PID, when another server holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, String> {
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| {
                format!(
                    "cannot open the data dir's lock file {}: {e}",
                    path.display()
                )
            })?;
        let mut held = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(h) => h,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(in_use(dir, &path, holder(&mut file)));
            }
            Err((_, e)) => return Err(format!("cannot lock {}: {e}", path.display())),
        };
        held.set_len(0)
            .and_then(|()| held.rewind())
            .and_then(|()| writeln!(held, "{}", std::process::id()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(DataDirLock { _held: held })
    }
}

/// The PID the holder wrote, if it has written it yet.
fn holder(file: &mut std::fs::File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn in_use(dir: &Path, lock: &Path, pid: Option<u32>) -> String {
    let pid = pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"));
    format!(
        "the data dir {} is in use by another hitl-gate serve ({pid}, which holds {}); stop \
         that server first, or give this one a data dir of its own (--data-dir)",
        dir.display(),
        lock.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_fails_with_the_holders_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let e = DataDirLock::acquire(dir.path()).err().unwrap();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        let again = DataDirLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(again);
    }
}
