//! Sealed snapshots: the bytes an approval covers, read once and kept where nobody can change
//! them.
//!
//! Inputs are read once ([`read_input`]): only regular files (a FIFO, a device or a socket can
//! serve each reader different bytes, and is refused without blocking on it), never under
//! `/dev`, `/proc` or `/sys`.
//!
//! Every input of a gated run (the terraform plan, manifests, rendered kustomizations, charts,
//! values files, the pinned kubeconfig) is read once into a memfd, which is then sealed against
//! writing, growing and shrinking (`F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL`).
//! The approver is shown these bytes, the approval covers their SHA-256, and the real tool
//! reads them through `/proc/<shim pid>/fd/N` (not `/proc/self/…`: terraform 1.0 re-executes
//! itself under panicwrap, and that child inherits no extra fds). No process, the agent's own
//! user's included, can write to a sealed memfd, so there is no window between the last check
//! and the tool opening its input. (A process that can ptrace the tool can still change its
//! memory; the lockdown install, where the tool runs as another user, closes that.)

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// The largest input read into a snapshot.
const MAX_INPUT: u64 = 64 * 1024 * 1024;
/// The most files one directory source may hold.
const MAX_FILES: usize = 500;

/// Refuses paths under `/dev`, `/proc` and `/sys` (lexically and once resolved).
pub fn check_input_path(path: &Path) -> Result<(), String> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot read the working directory: {e}"))?
            .join(path)
    };
    for p in [Some(abs.clone()), abs.canonicalize().ok()]
        .into_iter()
        .flatten()
    {
        if ["/dev", "/proc", "/sys"].iter().any(|d| p.starts_with(d)) {
            return Err(format!(
                "{} is under {}: inputs must be regular files that can be read once and shown",
                path.display(),
                p.components().take(2).collect::<PathBuf>().display()
            ));
        }
    }
    Ok(())
}

/// Reads an input the agent named, once: it must be a regular file (a FIFO, a device or a
/// socket is refused without blocking on it), not under `/dev`, `/proc` or `/sys`, and at most
/// 64 MiB.
pub fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    check_input_path(path)?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file (a FIFO, device or socket can serve the approver and the \
             run different bytes)",
            path.display()
        ));
    }
    if meta.len() > MAX_INPUT {
        return Err(format!("{} is larger than 64 MiB", path.display()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes)
}

/// The manifest files of a `-f DIR` source, as kubectl reads them: the directory's `.json`,
/// `.yaml` and `.yml` files in name order, and with `recursive`, its subdirectories' too
/// (symlinked directories are not followed, symlinked files are).
pub fn manifest_files(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    walk(dir, recursive, &mut out)?;
    if out.len() > MAX_FILES {
        return Err(format!(
            "{} holds more than {MAX_FILES} manifest files",
            dir.display()
        ));
    }
    Ok(out)
}

fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let p = e.path();
        let ty = e.file_type().map_err(|e| format!("{}: {e}", p.display()))?;
        if ty.is_dir() {
            if recursive {
                walk(&p, recursive, out)?;
            }
            continue;
        }
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
        if matches!(ext, "json" | "yaml" | "yml") {
            out.push(p);
        }
    }
    Ok(())
}

/// One sealed snapshot.
#[derive(Debug)]
pub struct Sealed {
    file: File,
    sha256: String,
}

impl Sealed {
    /// Copies `bytes` into a new memfd named `name` (shown in `/proc/*/fd`) and seals it.
    pub fn new(name: &str, bytes: &[u8]) -> Result<Sealed, String> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            format!("cannot {what} a sealed copy of {name}: {e}")
        };
        let fd: OwnedFd = memfd_create(
            format!("hitl-gate:{name}").as_str(),
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(|e| err("create", &e))?;
        let mut file = File::from(fd);
        file.write_all(bytes).map_err(|e| err("write", &e))?;
        fcntl(
            file.as_fd(),
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_WRITE
                    | SealFlag::F_SEAL_GROW
                    | SealFlag::F_SEAL_SHRINK
                    | SealFlag::F_SEAL_SEAL,
            ),
        )
        .map_err(|e| err("seal", &e))?;
        Ok(Sealed {
            file,
            sha256: crate::hex::sha256(bytes),
        })
    }

    /// The path another process opens to read it, valid while this process lives (and across
    /// an `exec` of it, see [`keep_across_exec`]).
    pub fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.file.as_raw_fd())
    }

    /// SHA-256 of the sealed bytes (lowercase hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Its descriptor in this process (to pass it on with SCM_RIGHTS).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }

    /// A snapshot another process sealed and passed here: refused unless it is sealed against
    /// writing, growing and shrinking (then no process can change it, its maker included); its
    /// SHA-256 is computed here, from the bytes.
    pub fn received(fd: OwnedFd) -> Result<Sealed, String> {
        let need = SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK;
        let seals = fcntl(fd.as_fd(), FcntlArg::F_GET_SEALS)
            .map_err(|e| format!("a passed input is not a sealed memfd ({e})"))?;
        if !SealFlag::from_bits_truncate(seals).contains(need) {
            return Err("a passed input is not sealed against writing".into());
        }
        let file = File::from(fd);
        // By offset: the descriptor shares its file position with the maker's.
        let mut bytes = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = std::os::unix::fs::FileExt::read_at(&file, &mut chunk, bytes.len() as u64)
                .map_err(|e| format!("cannot read a passed input: {e}"))?;
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
            if bytes.len() as u64 > MAX_INPUT {
                return Err("a passed input is larger than 64 MiB".into());
            }
        }
        Ok(Sealed {
            sha256: crate::hex::sha256(&bytes),
            file,
        })
    }
}

/// The snapshots of one gated command, in the order they were taken.
#[derive(Debug, Default)]
pub struct Snapshots(Vec<Sealed>);

impl Snapshots {
    /// Seals `bytes` (named `label` in `/proc/*/fd`); returns the path the tool reads them at.
    pub fn seal(&mut self, label: &str, bytes: impl AsRef<[u8]>) -> Result<String, String> {
        let s = Sealed::new(label, bytes.as_ref())?;
        let path = s.path();
        self.0.push(s);
        Ok(path)
    }

    /// The SHA-256 of each snapshot, in order: what the approval is bound to.
    pub fn hashes(&self) -> Vec<String> {
        self.0.iter().map(|s| s.sha256().to_string()).collect()
    }

    /// All of them, with `also` (the pinned kubeconfig), for the run to keep open.
    pub fn with(self, also: Sealed) -> Vec<Sealed> {
        let mut v = self.0;
        v.push(also);
        v
    }
}

/// Clears close-on-exec on the snapshots in this process, for an `exec` that replaces it (the
/// passthrough of a command pinned to a resolved kubeconfig).
pub fn keep_across_exec<'a>(snapshots: impl IntoIterator<Item = &'a Sealed>) -> Result<(), String> {
    for s in snapshots {
        fcntl(s.file.as_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
            .map_err(|e| format!("cannot pass a sealed snapshot on: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_snapshot_cannot_be_written_and_reads_back() {
        let s = Sealed::new("plan", b"PK plan bytes").unwrap();
        assert_eq!(std::fs::read(s.path()).unwrap(), b"PK plan bytes");
        assert_eq!(s.sha256(), crate::hex::sha256(b"PK plan bytes"));
        // Through its /proc path, as another process of this user would open it.
        let mut w = std::fs::OpenOptions::new().write(true).open(s.path());
        if let Ok(f) = w.as_mut() {
            assert!(
                f.write_all(b"swapped").is_err(),
                "a sealed memfd took a write"
            );
        }
        assert!(std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(s.path())
            .is_err());
        assert_eq!(std::fs::read(s.path()).unwrap(), b"PK plan bytes");
        // Another process reads it by its path, with no fd of its own.
        let out = std::process::Command::new("/bin/cat")
            .arg(s.path())
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"PK plan bytes", "{out:?}");
    }

    #[test]
    fn device_and_proc_paths_and_fifos_are_refused() {
        for p in ["/dev/stdin", "/proc/self/fd/0", "/sys/kernel/x"] {
            assert!(read_input(Path::new(p)).is_err(), "{p}");
        }
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_input(&fifo).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::write(dir.path().join("m.yaml"), "a: 1\n").unwrap();
        assert_eq!(read_input(&dir.path().join("m.yaml")).unwrap(), b"a: 1\n");
    }
}
