//! What the gated pipeline and the tool-specific producers share: the [`Prepared`] command a
//! producer hands to the pipeline, the [`Stop`] that ends the gated path without running
//! anything, the request builder, and the private run directory.
//!
//! This is the lower module both sides import (`gate.rs` and `wait.rs` above it, `kubectl.rs`,
//! `helm.rs` and `terraform.rs` beside them), so none of them imports another back.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::api::{CreateRequest, RunTemplate, Target};
use crate::exit as code;
use crate::tool::Tool;

/// Why the gated path stopped without running the tool: the exit code (`exit.rs`) and the one
/// line the agent reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub code: u8,
    pub message: String,
}

impl Stop {
    pub fn new(code: u8, message: impl Into<String>) -> Stop {
        Stop {
            code,
            message: message.into(),
        }
    }

    /// The gate refuses the command itself (87): `WHAT: WHY; it did not run`.
    pub fn refused(what: impl std::fmt::Display, why: impl std::fmt::Display) -> Stop {
        Stop::new(code::REFUSED, format!("{what}: {why}; it did not run"))
    }

    /// The command needs approval and none can be had (83).
    pub fn unavailable(cmdline: &str, rule: &str, why: impl std::fmt::Display) -> Stop {
        Stop::new(
            code::APPROVAL_UNAVAILABLE,
            format!("`{cmdline}` needs approval ({rule}), but {why}; it did not run"),
        )
    }

    /// The approval server could not be reached or failed (83), with what to do about it.
    pub fn server_down(cmdline: &str, rule: &str, why: impl std::fmt::Display) -> Stop {
        let mut s = Stop::unavailable(cmdline, rule, why);
        s.message.push('\n');
        s.message.push_str(SERVER_HINT);
        s
    }

    /// An approval arrived but does not hold (88).
    pub fn verification(message: impl Into<String>) -> Stop {
        Stop::new(code::VERIFICATION_FAILED, message)
    }

    /// hitl-gate itself failed (89).
    pub fn internal(message: impl Into<String>) -> Stop {
        Stop::new(code::INTERNAL, message)
    }

    /// A program could not be started (126).
    pub fn cannot_run(program: &Path, e: impl std::fmt::Display) -> Stop {
        Stop::new(
            code::CANNOT_EXECUTE,
            format!("cannot run {}: {e}", program.display()),
        )
    }

    /// The real tool failed while the gate prepared the command: its own exit code.
    pub fn tool_failed(status: i32, message: impl Into<String>) -> Stop {
        Stop::new(u8::try_from(status).unwrap_or(1), message)
    }

    /// The request was cancelled, or the shim interrupted (82).
    pub fn cancelled(message: impl Into<String>) -> Stop {
        Stop::new(code::CANCELLED, message)
    }
}

impl From<super::resolve::ResolveError> for Stop {
    fn from(e: super::resolve::ResolveError) -> Stop {
        let code = match e {
            super::resolve::ResolveError::RealPathIsShim { .. } => code::RECURSION,
            _ => code::NOT_FOUND,
        };
        Stop::new(code, e.to_string())
    }
}

/// The line under an unreachable or failing approval server: what to do.
pub const SERVER_HINT: &str = "check the approval server with `hitl-gate doctor` (run as this \
                               user, it says what is wrong), or start it (`hitl-gate serve`)";

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
    /// For kubectl and helm: what the run is pinned to (lockdown re-pins it to the write
    /// credential set).
    pub kube_pin: Option<super::kube::Pin>,
    /// Private files of this run (plan output, caches), removed when the gate is done.
    pub run_dir: Option<RunDir>,
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
/// approver is shown (cut to [`MAX_DIFF_TEXT`]) with the change model (`None` when no diff is
/// possible), and the artifact hashes. The agent's own words come from `HITL_GATE_REASON`
/// (shown, never trusted).
pub fn request(
    tool: Tool,
    args: &[String],
    environment: Target,
    text: String,
    changes: Option<&crate::diff::ChangeSet>,
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
            // No model: the change is unknown, said so explicitly (absent is not empty).
            summary: changes.map_or_else(
                || {
                    crate::diff::ChangeSet::unknown("no diff is possible for this command")
                        .to_json()
                },
                crate::diff::ChangeSet::to_json,
            ),
        },
        artifact_sha256,
        reason: reason(),
        nonce: nonce(),
        run: None,
    }
}

/// The run's argv as a template ([`RunTemplate`]): each sealed snapshot's path replaced by its
/// placeholder, the pinned kubeconfig's by [`RunTemplate::KUBECONFIG`]. `None` when an
/// argument is not UTF-8.
pub fn run_template(p: &Prepared) -> Option<RunTemplate> {
    let kubeconfig = p.kube_pin.as_ref().map(|pin| pin.kubeconfig_path());
    let mut inputs = Vec::new();
    let mut names: Vec<(String, String)> = Vec::new();
    for s in &p.snapshots {
        if kubeconfig.as_deref() == Some(s.path().as_str()) {
            names.push((s.path().to_string(), RunTemplate::KUBECONFIG.into()));
        } else {
            names.push((s.path().to_string(), RunTemplate::input(inputs.len())));
            inputs.push(s.sha256().to_string());
        }
    }
    let argv = p
        .args
        .iter()
        .map(|a| a.to_str().map(|a| replace_paths(a, &names)))
        .collect::<Option<Vec<_>>>()?;
    Some(RunTemplate { argv, inputs })
}

/// `arg` with every snapshot path of `names` replaced by its placeholder; a path counts only
/// where it ends (so `/proc/1/fd/5` never matches inside `/proc/1/fd/50`).
fn replace_paths(arg: &str, names: &[(String, String)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    'outer: while !rest.is_empty() {
        for (path, placeholder) in names {
            if let Some(after) = rest.strip_prefix(path.as_str()) {
                if !after.starts_with(|c: char| c.is_ascii_digit()) {
                    out.push_str(placeholder);
                    rest = after;
                    continue 'outer;
                }
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
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

/// The command as one line for messages (lossy; never used to run anything).
pub fn command_line(tool: Tool, args: &[OsString]) -> String {
    let mut s = tool.name().to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// What the approver reads for a command no diff can be made for.
pub fn no_diff(tool: Tool, args: &[String], target: &Target) -> String {
    let t = |v: &Option<String>| v.as_deref().unwrap_or("?").to_string();
    let where_ = if tool.is_terraform_like() {
        format!("in {}", t(&target.dir))
    } else {
        format!(
            "against context {}, cluster {}, namespace {}",
            t(&target.kube_context),
            t(&target.cluster_server),
            t(&target.namespace)
        )
    };
    format!(
        "`{tool} {}`: no diff is possible for this command. It runs exactly as shown {where_}.\n",
        args.join(" ")
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
