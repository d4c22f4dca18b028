//! `hitl-gate doctor` in lockdown mode, run as the agent's user: the runner answers, and this
//! user can execute no real tool (on PATH, in `[lockdown] path`, or in the usual places under
//! the root: `/usr/local/bin`, `/usr/bin`, `/bin`, `/snap/bin`) and read no
//! credential it can find (the runner's `tool_env` files, kubeconfigs, cloud credential files,
//! the approval token).

use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

use crate::policy::lockdown::Lockdown;
use crate::tool::ALL_TOOLS;

/// The checks, as (ok, line).
pub fn checks(l: &Lockdown, token_file: Option<&Path>) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    match std::os::unix::net::UnixStream::connect(&l.runner_socket) {
        Ok(_) => out.push((
            true,
            format!("runner: {} answers", l.runner_socket.display()),
        )),
        Err(e) => out.push((
            false,
            format!(
                "runner: {} cannot be reached ({e}); every command exits 90",
                l.runner_socket.display()
            ),
        )),
    }
    let shim = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    let root = crate::policy::load::root();
    let mut dirs: Vec<PathBuf> = l.path.clone();
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    dirs.extend(["usr/local/bin", "usr/bin", "bin", "snap/bin"].map(|d| root.join(d)));
    let mut seen = std::collections::HashSet::new();
    for tool in ALL_TOOLS {
        for d in &dirs {
            let p = d.join(tool.name());
            if !seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())) {
                continue;
            }
            let is_shim = p
                .canonicalize()
                .ok()
                .is_some_and(|c| Some(&c) == shim.as_ref());
            if !is_shim && p.is_file() && access(&p, AccessFlags::X_OK).is_ok() {
                out.push((
                    false,
                    format!(
                        "{tool}: this user can execute the real {} and so bypass the runner",
                        p.display()
                    ),
                ));
            }
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    // R's files named in tool_env (but for the terraform CLI configuration, which is settings,
    // root-owned and readable by all, not a credential) and in every credential set.
    let sets = l
        .credentials
        .values()
        .flat_map(|s| s.read.iter().chain(&s.write));
    let mut files: Vec<PathBuf> = l
        .tool_env
        .iter()
        .filter(|(k, _)| k.as_str() != "TF_CLI_CONFIG_FILE")
        .chain(sets)
        .map(|(_, v)| PathBuf::from(v))
        .filter(|p| p.is_absolute())
        .collect();
    files.extend(token_file.map(Path::to_path_buf));
    if let Some(k) = std::env::var_os("KUBECONFIG") {
        files.extend(std::env::split_paths(&k));
    }
    if let Some(g) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
        files.push(PathBuf::from(g));
    }
    if let Some(h) = &home {
        for f in [
            ".kube/config",
            ".aws/credentials",
            ".aws/config",
            ".azure/accessTokens.json",
        ] {
            files.push(h.join(f));
        }
        files.push(h.join(".config/gcloud/application_default_credentials.json"));
    }
    let mut readable = 0;
    for f in files {
        if f.is_file() && access(&f, AccessFlags::R_OK).is_ok() {
            readable += 1;
            out.push((
                false,
                format!(
                    "this user can read {}: a credential the runner should hold alone",
                    f.display()
                ),
            ));
        }
    }
    if readable == 0 {
        out.push((
            true,
            "credentials: this user can read none it can find".into(),
        ));
    }
    out
}
