//! `hitl-gate runner`: lockdown mode's daemons. Lockdown separates two identities besides the
//! agent's: the runner (R, this file), which runs everything the agent steers, with the read
//! credentials only; and the writer (W, `writer.rs`), which holds the write credentials and
//! runs nothing but approved runs that R's children hand it, after checking them itself.
//!
//! The runner runs as R, one of the two users that can execute the real tools, and runs
//! commands for the agents' users, who connect through the shim (`shim/lockdown.rs`). Per
//! connection (one thread each):
//! 1. the caller's uid from SO_PEERCRED, mapped to an agent by the system policy's
//!    `[lockdown]`; any other uid is refused;
//! 2. the request and the caller's fds 0, 1 and 2 (`wire.rs`);
//! 3. the runner's own checks: a known tool, argv the readers can read, no flag that selects
//!    credentials or the API server (unless `allow_flags` says so); what the policy decides
//!    about the command is decided by the child, never by the shim;
//! 4. a child: this same binary under the tool's name, as R, in its own session, with the
//!    caller's fds as its stdio, the caller's working directory, only the variables the policy
//!    lets through plus `[lockdown] tool_env`, and `PATH` = `[lockdown] path` first. Running as
//!    `runner_user`, the shim works as in exec mode (passthrough exec, or the gated pipeline:
//!    plan or diff, submit, wait, verify) with R's read credentials, except that the approved
//!    run goes to W (`shim/handoff.rs`);
//! 5. the caller's signals forwarded to the child (`supervise.rs`); the child's end sent back.
//!
//! Both read only the system policy (`/etc/hitl-gate/policy.toml`); `HITL_GATE_POLICY` means
//! nothing to them.

pub mod bind;
mod supervise;
pub mod terraform;
pub mod verify;
pub mod wire;
pub mod writer;
mod writer_run;

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::policy::lockdown::{Lockdown, CREDENTIAL_FLAGS, DEFAULT_CREDENTIALS};
use crate::policy::Policy;
use crate::tool::Tool;

/// The runner's settings, read once at start.
struct Runner {
    lockdown: Lockdown,
    /// This binary, exec'd under the tool's name for each command.
    exe: PathBuf,
    /// Passed on to children: the runner's own HOME, and (test builds) the policy root.
    home: Option<OsString>,
    /// Terraform's data directories: `init` alone.
    dirs: terraform::DirLocks,
}

/// Serves until the process is killed.
pub fn serve(policy: &Policy) -> Result<(), String> {
    let lockdown = policy
        .lockdown()
        .cloned()
        .ok_or("the system policy has no [lockdown] section")?;
    let me = nix::unistd::getuid().as_raw();
    match lockdown.runner_uid(&crate::policy::load::root()) {
        Some(uid) if uid == me => {}
        Some(uid) => {
            return Err(format!(
                "the runner must run as [lockdown] runner_user {:?} (uid {uid}), not uid {me}",
                lockdown.runner_user
            ))
        }
        None => {
            return Err(format!(
                "[lockdown] runner_user {:?} is not a user on this machine",
                lockdown.runner_user
            ))
        }
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let socket = lockdown.runner_socket.clone();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .map_err(|e| format!("cannot bind {}: {e}", socket.display()))?;
    // Anyone may connect; only the uids of [lockdown.agent] are served. Restrict who may reach
    // the socket with its directory (install.sh: /run/hitl-gate, group of the agents, 0750).
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .map_err(|e| format!("cannot chmod {}: {e}", socket.display()))?;
    let runner = Arc::new(Runner {
        lockdown,
        exe,
        home: std::env::var_os("HOME"),
        dirs: terraform::DirLocks::default(),
    });
    println!("hitl-gate runner: listening on {}", socket.display());
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let r = runner.clone();
        std::thread::spawn(move || {
            if let Err(e) = handle(&r, conn) {
                eprintln!("hitl-gate runner: {e}");
            }
        });
    }
    Ok(())
}

/// Sends the final line and closes.
fn finish(mut conn: &UnixStream, line: &str) {
    let _ = conn.write_all(format!("{line}\n").as_bytes());
}

fn refuse(conn: &UnixStream, code: u8, message: &str) -> Result<(), String> {
    finish(
        conn,
        &format!("refused {code} {}", message.replace('\n', " ")),
    );
    Ok(())
}

fn handle(r: &Runner, conn: UnixStream) -> Result<(), String> {
    let cred =
        nix::sys::socket::getsockopt(&conn.as_fd(), nix::sys::socket::sockopt::PeerCredentials)
            .map_err(|e| format!("SO_PEERCRED: {e}"))?;
    let uid = cred.uid();
    let Some(agent) = r.lockdown.agent(uid).map(String::from) else {
        return refuse(
            &conn,
            crate::exit::REFUSED,
            &format!(
                "uid {uid} is not an agent this runner serves ([lockdown.agent]); nothing ran"
            ),
        );
    };
    let (req, fds, early) = match wire::receive(&conn) {
        Ok(x) => x,
        Err(e) => return refuse(&conn, crate::exit::REFUSED, &format!("bad request: {e}")),
    };
    let Some(tool) = Tool::from_name(&req.tool) else {
        return refuse(
            &conn,
            crate::exit::REFUSED,
            &format!("unknown tool {:?}", req.tool),
        );
    };
    let decode = |h: &String| wire::bytes_of(h).map(OsString::from_vec);
    let args: Vec<OsString> = match req.argv.iter().map(decode).collect() {
        Ok(a) => a,
        Err(e) => return refuse(&conn, crate::exit::REFUSED, &e),
    };
    let cwd = match decode(&req.cwd) {
        Ok(c) => PathBuf::from(c),
        Err(e) => return refuse(&conn, crate::exit::REFUSED, &e),
    };
    let inv = match check(&r.lockdown, tool, &args) {
        Ok(inv) => inv,
        Err(why) => return refuse(&conn, crate::exit::REFUSED, &why),
    };
    let mut cmd = std::process::Command::new(&r.exe);
    cmd.arg0(tool.name())
        .args(&args)
        .current_dir(&cwd)
        .env_clear()
        .stdin(std::process::Stdio::from(
            fds[0].try_clone().map_err(|e| e.to_string())?,
        ))
        .stdout(std::process::Stdio::from(
            fds[1].try_clone().map_err(|e| e.to_string())?,
        ))
        .stderr(std::process::Stdio::from(
            fds[2].try_clone().map_err(|e| e.to_string())?,
        ));
    drop(fds);
    for (k, v) in &req.env {
        let (Ok(k), Ok(v)) = (wire::bytes_of(k), wire::bytes_of(v)) else {
            continue;
        };
        let k = String::from_utf8_lossy(&k).into_owned();
        if r.lockdown.passes_env(tool.name(), &k) {
            cmd.env(k, OsString::from_vec(v));
        }
    }
    // The runner's settings and the `default` read credentials; the child, once it knows the
    // environment, picks that environment's set (`shim/credentials.rs`).
    let default_read = r.lockdown.credentials.get(DEFAULT_CREDENTIALS);
    for (k, v) in r
        .lockdown
        .tool_env
        .iter()
        .chain(default_read.map(|s| &s.read).into_iter().flatten())
    {
        cmd.env(k, v);
    }
    let mut path: Vec<PathBuf> = r.lockdown.path.clone();
    path.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
    cmd.env(
        "PATH",
        std::env::join_paths(path).map_err(|e| e.to_string())?,
    );
    if let Some(h) = &r.home {
        cmd.env("HOME", h);
    }
    // Its resume records (`shim/resume.rs`) are kept per agent, in the runner's home.
    cmd.env(crate::shim::lockdown::AGENT_VAR, uid.to_string());
    if cfg!(feature = "test-hooks") {
        if let Some(root) = std::env::var_os("HITL_GATE_TEST_ROOT") {
            cmd.env("HITL_GATE_TEST_ROOT", root);
        }
    }
    if !tool.is_terraform_like() {
        return run_child(&conn, cmd, tool, &args, &agent, uid, early);
    }
    // Terraform: the runner's own data directory for the configuration, checked for denied
    // providers under the directory's lock (`terraform.rs`).
    let dir = inv
        .target
        .chdir
        .as_ref()
        .map_or(cwd.clone(), |d| cwd.join(d));
    let data = match &r.home {
        Some(home) => terraform::data_dir(std::path::Path::new(home), &dir),
        None => Err("the runner has no HOME for terraform's data directories".into()),
    };
    let data = match data {
        Ok(d) => d,
        Err(why) => {
            return refuse(
                &conn,
                crate::exit::REFUSED,
                &format!("{why}; {tool} did not run"),
            )
        }
    };
    cmd.env("TF_DATA_DIR", &data);
    let init = inv.path_string().starts_with("init");
    let ran = r.dirs.with(&data, init, || {
        terraform::check(&dir, &data, &r.lockdown.terraform_denied_providers)?;
        Ok::<_, String>(run_child(&conn, cmd, tool, &args, &agent, uid, early))
    });
    match ran.and_then(|r| r) {
        Ok(result) => result,
        Err(why) => refuse(
            &conn,
            crate::exit::REFUSED,
            &format!("{why}; {tool} did not run"),
        ),
    }
}

/// Starts the child, forwards the caller's signals to it, and sends back how it ended.
fn run_child(
    conn: &UnixStream,
    cmd: std::process::Command,
    tool: Tool,
    args: &[OsString],
    agent: &str,
    uid: u32,
    early: Vec<u8>,
) -> Result<(), String> {
    let what = format!(
        "hitl-gate runner: {agent} (uid {uid}): {}",
        crate::shim::prepared::command_line(tool, args)
    );
    match supervise::run(conn, cmd, early, &what) {
        Ok(status) => supervise::finish_as(conn, status),
        Err(why) => refuse(conn, crate::exit::CANNOT_EXECUTE, &why),
    }
}

/// Refuses commands that show or change the runner's credentials (`kubectl config` but for
/// `view` without `--raw`, `current-context`, `get-contexts`, `get-clusters`; `helm plugin`,
/// `helm registry`; `terraform login`/`logout`) and flags that select credentials or the API
/// server, unless the policy allows them. Returns the reading of argv, for the other checks.
fn check(l: &Lockdown, tool: Tool, args: &[OsString]) -> Result<crate::argv::Invocation, String> {
    let env = |_: &str| None;
    let inv = crate::argv::read(tool, args, &env)
        .map_err(|e| format!("cannot read the {tool} command line safely ({e}); it did not run"))?;
    // Commands that would show or change the runner's own credentials and configuration.
    let path = inv.path_string();
    let shows_raw = inv.has_flag(&["--raw"]);
    let refused_command = match tool {
        Tool::Kubectl if path == "config view" => shows_raw,
        Tool::Kubectl => {
            path.starts_with("config")
                && ![
                    "config current-context",
                    "config get-contexts",
                    "config get-clusters",
                ]
                .contains(&path.as_str())
        }
        Tool::Helm => path.starts_with("plugin") || path.starts_with("registry"),
        Tool::Terraform | Tool::Tofu => path.starts_with("login") || path.starts_with("logout"),
    };
    if refused_command {
        return Err(format!(
            "`{tool} {path}{}` would show or change the runner's own credentials or \
             configuration; it is refused in lockdown mode; {tool} did not run",
            if shows_raw { " --raw" } else { "" }
        ));
    }
    for (name, _) in &inv.flags {
        if CREDENTIAL_FLAGS.contains(&name.as_str()) && !l.allow_flags.iter().any(|a| a == name) {
            return Err(format!(
                "{name} is refused in lockdown mode: the runner's own credentials and API \
                 servers are used ([lockdown] allow_flags can allow it); {tool} did not run"
            ));
        }
    }
    Ok(inv)
}
