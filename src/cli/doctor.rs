//! `hitl-gate doctor`: checks an installation the way an agent's shell will see it.
//!
//! - the policy in force loads and has safe permissions;
//! - for each tool: the first match on PATH is a hitl-gate shim (else the agent bypasses the
//!   gate), and a real binary is found behind it that is not a shim;
//! - with `[approval]` configured: the token file is readable by this user and not by others,
//!   the server answers, its public key is the pinned one, and it knows the token as an
//!   agent's (`GET /api/v1/whoami`);
//! - the approval server's data dir (`--data-dir`, else the policy's `[serve] data_dir`, else the
//!   default), if it is on this machine: this user must not be able to connect to its admin
//!   socket (that is approving) or read its signing key (that is signing approvals). Run doctor
//!   as the agent's user: the server must run as a user the agent is not.
//!
//! Prints one line per check and exits 1 if any check failed.

use std::ffi::OsStr;
use std::path::PathBuf;

use super::error::CliError;
use crate::policy;
use crate::shim::resolve::Resolver;
use crate::tool::ALL_TOOLS;

#[derive(clap::Args)]
pub struct Args {
    /// The approval server's data dir to check this user cannot reach [default: the policy's
    /// `[serve] data_dir`, else $XDG_DATA_HOME/hitl-gate].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<i32, CliError> {
    let mut failed = 0;
    let mut report = |ok: bool, line: String| {
        println!("{} {line}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failed += 1;
        }
    };
    if cfg!(feature = "test-hooks") {
        println!("note this build has test hooks (HITL_GATE_TEST_ROOT); do not deploy it");
    }
    let policy = match policy::load::load_for_cli() {
        Ok((p, source)) => {
            report(true, format!("policy: {source}"));
            Some(p)
        }
        Err(e) => {
            report(false, e.to_string());
            None
        }
    };
    // Lockdown mode, as root or the runner: what the read credential may do; as the agent:
    // the runner answers, and no tool or credential is this user's.
    let me = nix::unistd::getuid().as_raw();
    if let Some(l) = policy.as_ref().and_then(|p| p.lockdown()) {
        let as_runner = l.runner_uid(&policy::load::root()) == Some(me);
        if as_runner || me == 0 {
            let kubectl = l
                .path
                .iter()
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file());
            let (checks, warnings) =
                super::doctor_lockdown::reader_checks(l, kubectl.as_deref(), as_runner);
            for (ok, line) in checks {
                report(ok, line);
            }
            for w in warnings {
                println!("warn {w}");
            }
            if as_runner {
                // The runner's children use no shims: nothing else here applies to it.
                return Ok(if failed == 0 { 0 } else { 1 });
            }
        }
    }
    let lockdown = policy
        .as_ref()
        .and_then(|p| p.lockdown())
        .filter(|l| l.runner_uid(&policy::load::root()) != Some(me));
    if let Some(l) = lockdown {
        let token = policy
            .as_ref()
            .and_then(|p| p.approval().token_file.clone());
        for (ok, line) in super::doctor_lockdown::checks(l, token.as_deref()) {
            report(ok, line);
        }
        return Ok(if failed == 0 { 0 } else { 1 });
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let resolver = Resolver::for_exe(Some(path.clone()));
    for tool in ALL_TOOLS {
        let first = first_on_path(tool.name(), &path);
        let real = resolver.find(tool, policy.as_ref().and_then(|p| p.real_path(tool)));
        match (&first, &real) {
            // Not installed here (install.sh --tools): a note, not a failure. A shim whose real
            // tool is missing is broken (below).
            (None, Err(_)) => println!(
                "note {tool}: not installed here (neither a shim nor the real {tool} is on PATH)"
            ),
            (Some(f), _) if !resolver.is_shim(f) => report(
                false,
                format!(
                    "{tool}: the first {tool} on PATH is {}, not a hitl-gate shim; the agent \
                     bypasses the gate (put the shims directory first on PATH)",
                    f.display()
                ),
            ),
            (_, Ok(r)) => report(
                true,
                format!(
                    "{tool}: shim {} → real {}",
                    first
                        .as_ref()
                        .map_or("-".into(), |f| f.display().to_string()),
                    r.display()
                ),
            ),
            (_, Err(e)) => report(false, format!("{tool}: {e}")),
        }
    }
    match policy.as_ref().map(|p| p.approval()) {
        Some(a) if a.url.is_some() => {
            for (ok, line) in approval_checks(a) {
                report(ok, line);
            }
        }
        Some(_) => println!(
            "skip approval server: none configured ([approval] in the policy); gated commands \
             cannot run"
        ),
        None => {}
    }
    let data_dir = args
        .data_dir
        .or_else(|| policy.as_ref().and_then(|p| p.serve().data_dir.clone()))
        .or_else(|| super::locate::default_data_dir().ok());
    if let Some(dir) = data_dir {
        for (ok, line) in server_reach_checks(&dir) {
            report(ok, line);
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

/// Whether this user can reach the approval server's admin socket or signing key in `dir`.
fn server_reach_checks(dir: &std::path::Path) -> Vec<(bool, String)> {
    let user = nix::unistd::getuid();
    let socket = dir.join("admin.sock");
    let key = dir.join("signing.key");
    let mut out = Vec::new();
    if socket.exists() {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(_) => out.push((
                false,
                format!(
                    "this user (uid {user}) can connect to the approval server's admin socket {}: \
                     an agent running as this user could approve its own requests; run the server \
                     as a user the agent is not",
                    socket.display()
                ),
            )),
            Err(_) => out.push((
                true,
                format!(
                    "this user cannot reach the admin socket {}",
                    socket.display()
                ),
            )),
        }
    }
    if key.exists() {
        match std::fs::File::open(&key) {
            Ok(_) => out.push((
                false,
                format!(
                    "this user (uid {user}) can read the approval server's signing key {}: an \
                     agent running as this user could sign its own approvals; run the server as \
                     a user the agent is not",
                    key.display()
                ),
            )),
            Err(_) => out.push((
                true,
                format!("this user cannot read the signing key {}", key.display()),
            )),
        }
    }
    out
}

/// Token file, reachability and the pinned key, as (ok, line) results.
fn approval_checks(a: &crate::policy::schema::Approval) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let token = a.token_file.as_deref().unwrap_or(std::path::Path::new(""));
    let digest = match crate::client::read_token(token) {
        Ok(t) => {
            out.push((
                true,
                format!(
                    "token file {} is readable, and not by others",
                    token.display()
                ),
            ));
            crate::hex::sha256(t.as_bytes())
        }
        Err(e) => {
            out.push((false, e));
            return out;
        }
    };
    let client = match crate::client::Client::from_config(a) {
        Ok(c) => c,
        Err(e) => {
            out.push((false, e));
            return out;
        }
    };
    match client.public_key() {
        Ok(k) => {
            out.push((true, format!("approval server {} answers", client.base())));
            let pinned = a
                .public_key
                .as_deref()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if k.public_key == pinned {
                out.push((true, "the server's public key is the pinned one".into()));
            } else {
                out.push((
                    false,
                    format!(
                        "the server's public key {} is not the pinned {pinned}; every approval \
                         would be refused (or the server is not the one you meant)",
                        k.public_key
                    ),
                ));
            }
        }
        Err(e) => {
            out.push((false, format!("approval server: {e}")));
            return out;
        }
    }
    out.push(whoami_check(&client, token, &digest));
    out
}

/// Whether the server knows the token in `file` (SHA-256 `digest`) as an agent's.
fn whoami_check(
    client: &crate::client::Client,
    file: &std::path::Path,
    digest: &str,
) -> (bool, String) {
    match client.whoami() {
        Ok(w) if w.kind == "agent" => (
            true,
            format!(
                "the server knows the token in {} as agent {}{}",
                file.display(),
                crate::escape::terminal(&w.name, false),
                w.on_behalf_of
                    .as_deref()
                    .map(|h| format!(" (for {})", crate::escape::terminal(h, false)))
                    .unwrap_or_default()
            ),
        ),
        Ok(w) => (
            false,
            format!(
                "the token in {} is a {} token ({}), not an agent's: gated commands would be \
                 refused",
                file.display(),
                crate::escape::terminal(&w.kind, false),
                crate::escape::terminal(&w.name, false)
            ),
        ),
        // A 401 names the token file (client.rs); the digest is what the server's policy needs.
        Err(e) if e.to_string().contains(" answered 401 ") => (
            false,
            format!(
                "{e}. The token's SHA-256 is {digest}: the server's policy needs a \
                 [[serve.agent]] with token_sha256 = \"{digest}\""
            ),
        ),
        Err(e) => (false, format!("who the server takes the token for: {e}")),
    }
}

/// The first executable named `name` on PATH (absolute entries only, like the shim).
fn first_on_path(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
}
