//! Finding the real binary behind a shim.
//!
//! `which::which(tool)` would return the first match on PATH, which is the shim itself. So
//! PATH is walked here: absolute entries only, regular executable files only, skipping every
//! candidate that is this very binary (device + inode), a byte-identical copy of it (compared
//! only when the sizes are equal, so a real tool costs nothing extra), or another hitl-gate build
//! reached through a symlink named `hitl-gate`. A different build copied in under a tool's name
//! is caught by the depth guard in `exec.rs`.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::tool::{Tool, CLI_NAME};

/// Why no real binary was found.
#[derive(Debug)]
pub enum ResolveError {
    /// Nothing usable on PATH.
    NotFound { tool: Tool, searched: Vec<PathBuf> },
    /// The policy's `real_path` is unusable.
    BadRealPath { path: PathBuf, why: String },
    /// The policy's `real_path` is the shim itself.
    RealPathIsShim { path: PathBuf },
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::NotFound { tool, searched } => {
                let list: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "real {tool} not found: searched PATH entries [{}] (shims and relative \
                     entries skipped); install {tool} or set tools.{tool}.real_path in the policy",
                    list.join(", ")
                )
            }
            ResolveError::BadRealPath { path, why } => {
                write!(f, "tools real_path {} {why}", path.display())
            }
            ResolveError::RealPathIsShim { path } => write!(
                f,
                "tools real_path {} is hitl-gate itself, not the real tool",
                path.display()
            ),
        }
    }
}

/// The identity of a file: device and inode.
type FileId = (u64, u64);

/// How to recognise this binary.
pub struct SelfId {
    ids: Vec<FileId>,
    /// Where this binary can be read, and its size, for spotting byte-identical copies.
    files: Vec<(PathBuf, u64)>,
}

impl SelfId {
    /// This process's executable, by `/proc/self/exe`, plus argv[0] when it names a path
    /// (under valgrind `/proc/self/exe` is valgrind itself).
    pub fn current(argv0: &OsStr) -> SelfId {
        let mut me = SelfId {
            ids: Vec::with_capacity(2),
            files: Vec::with_capacity(2),
        };
        let mut add = |p: &Path| {
            if let Ok(m) = std::fs::metadata(p) {
                me.ids.push((m.dev(), m.ino()));
                me.files.push((p.to_path_buf(), m.len()));
            }
        };
        add(Path::new("/proc/self/exe"));
        if Path::new(argv0).components().count() > 1 {
            add(Path::new(argv0));
        }
        me
    }

    fn is(&self, meta: &std::fs::Metadata) -> bool {
        self.ids.contains(&(meta.dev(), meta.ino()))
    }

    /// True when `p` (described by `meta`) has exactly this binary's bytes: a plain copy of the
    /// shim installed under a tool's name. Files of another size are never read.
    fn is_copy(&self, p: &Path, meta: &std::fs::Metadata) -> bool {
        self.files
            .iter()
            .filter(|(_, len)| *len == meta.len())
            .any(|(me, _)| same_bytes(me, p).unwrap_or(false))
    }
}

/// Compares two files' contents.
fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Finds real binaries for this shim: it knows this binary (to skip it) and PATH. The one place
/// the shim, the gated path, `explain` and `doctor` find a real tool.
pub struct Resolver {
    me: SelfId,
    path: Option<OsString>,
}

impl Resolver {
    /// For this process, started as `argv0`, with this process's PATH.
    pub fn current(argv0: &OsStr) -> Resolver {
        Resolver {
            me: SelfId::current(argv0),
            path: std::env::var_os("PATH"),
        }
    }

    /// For this executable (the CLI: `explain`, `doctor`), with `path` as PATH.
    pub fn for_exe(path: Option<OsString>) -> Resolver {
        let exe = std::env::current_exe().unwrap_or_default();
        Resolver {
            me: SelfId::current(exe.as_os_str()),
            path,
        }
    }

    /// The real `tool`: the policy's `real_path`, else the first suitable PATH entry.
    pub fn find(&self, tool: Tool, real_path: Option<&Path>) -> Result<PathBuf, ResolveError> {
        resolve(tool, real_path, self.path.as_deref(), &self.me)
    }

    /// True when `p` is this binary or another hitl-gate shim (what the PATH walk skips).
    pub fn is_shim(&self, p: &Path) -> bool {
        matches!(candidate(p, &self.me), Candidate::Shim)
    }
}

/// Finds the real binary: the policy's `real_path`, else the first suitable PATH entry.
fn resolve(
    tool: Tool,
    real_path: Option<&Path>,
    path_var: Option<&OsStr>,
    me: &SelfId,
) -> Result<PathBuf, ResolveError> {
    if let Some(p) = real_path {
        return match candidate(p, me) {
            Candidate::Usable => Ok(p.to_path_buf()),
            Candidate::Shim => Err(ResolveError::RealPathIsShim { path: p.into() }),
            Candidate::Unusable(why) => Err(ResolveError::BadRealPath {
                path: p.into(),
                why: why.into(),
            }),
        };
    }
    let mut searched = Vec::new();
    let path_var = path_var.map(OsString::from).unwrap_or_default();
    for dir in std::env::split_paths(&path_var) {
        if !dir.is_absolute() {
            continue;
        }
        let p = dir.join(tool.name());
        if let Candidate::Usable = candidate(&p, me) {
            return Ok(p);
        }
        searched.push(dir);
    }
    Err(ResolveError::NotFound { tool, searched })
}

enum Candidate {
    Usable,
    Shim,
    Unusable(&'static str),
}

fn candidate(p: &Path, me: &SelfId) -> Candidate {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(_) => return Candidate::Unusable("does not exist or cannot be read"),
    };
    if !meta.is_file() {
        return Candidate::Unusable("is not a regular file");
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Candidate::Unusable("is not executable");
    }
    if me.is(&meta) || links_to_hitl_gate(p) || me.is_copy(p, &meta) {
        return Candidate::Shim;
    }
    Candidate::Usable
}

/// True when `p` is a symlink whose chain reaches a file named `hitl-gate` (another build's
/// shim). At most 16 links are followed, as a loop guard.
fn links_to_hitl_gate(p: &Path) -> bool {
    let mut cur = p.to_path_buf();
    for _ in 0..16 {
        match std::fs::read_link(&cur) {
            Ok(target) => {
                if target.file_name() == Some(OsStr::new(CLI_NAME)) {
                    return true;
                }
                cur = match cur.parent() {
                    Some(parent) => parent.join(target),
                    None => target,
                };
            }
            Err(_) => return false,
        }
    }
    false
}
