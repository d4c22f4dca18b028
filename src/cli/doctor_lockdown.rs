//! `hitl-gate doctor` in lockdown mode. Run as the agent's user ([`checks`]): the runner
//! answers, and this user can execute no real tool (on PATH, in `[lockdown] path`, or in the
//! usual places under the root: `/usr/local/bin`, `/usr/bin`, `/bin`, `/snap/bin`) and read no
//! credential it can find (the runner's and the writer's `tool_env` files, the credential sets,
//! kubeconfigs, cloud credential files, the approval and writer tokens). Run as root or the
//! runner ([`reader_checks`]): what the read credential may do, and that the runner can read
//! nothing of the writer's.

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
        .chain(&l.writer.tool_env)
        .filter(|(k, _)| k.as_str() != "TF_CLI_CONFIG_FILE")
        .chain(sets)
        .map(|(_, v)| PathBuf::from(v))
        .filter(|p| p.is_absolute())
        .collect();
    files.extend(token_file.map(Path::to_path_buf));
    files.push(l.writer.token_file.clone());
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

/// As root or as the runner's user: what each read kubeconfig may do (`kubectl auth can-i` in
/// each of its contexts) and, as the runner, that it can read none of the writer's files.
/// Returns the checks and the warnings: the agent can obtain the read credential (a chart, a
/// kustomize generator or a terraform configuration can print it), so it should hold no write
/// verb that takes effect, and no Secret.
pub fn reader_checks(
    l: &Lockdown,
    kubectl: Option<&Path>,
    as_runner: bool,
) -> (Vec<(bool, String)>, Vec<String>) {
    let mut checks = Vec::new();
    let mut warnings = Vec::new();
    let read: Vec<&String> = l
        .tool_env
        .get("KUBECONFIG")
        .into_iter()
        .chain(
            l.credentials
                .values()
                .filter_map(|s| s.read.get("KUBECONFIG")),
        )
        .collect();
    for kc in read {
        match kubectl {
            Some(k) => warnings.extend(powers(k, kc)),
            None => warnings.push(format!("{kc}: no real kubectl found to ask what it may do")),
        }
    }
    if as_runner {
        let w = &l.writer;
        let files = w
            .tool_env
            .iter()
            .filter(|(k, _)| k.as_str() != "TF_CLI_CONFIG_FILE")
            .chain(l.credentials.values().flat_map(|s| s.write.iter()))
            .map(|(_, v)| PathBuf::from(v))
            .chain([w.token_file.clone()]);
        let mut readable = 0;
        for f in files.filter(|f| f.is_file() && access(f, AccessFlags::R_OK).is_ok()) {
            readable += 1;
            checks.push((
                false,
                format!(
                    "the runner can read {}, the writer's: the write credential is not separated",
                    f.display()
                ),
            ));
        }
        if readable == 0 {
            checks.push((
                true,
                "the writer's files: the runner can read none of them".into(),
            ));
        }
    }
    (checks, warnings)
}

/// What a kubeconfig's contexts may do that a read credential should not: a write verb, or
/// reading Secrets.
fn powers(kubectl: &Path, kubeconfig: &str) -> Vec<String> {
    let run = |args: &[&str]| {
        std::process::Command::new(kubectl)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("KUBERC", "off")
            .stdin(std::process::Stdio::null())
            .output()
    };
    let contexts = match run(&["config", "get-contexts", "-o", "name"]) {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => return vec![format!("{kubeconfig}: kubectl cannot read it")],
    };
    let mut out = Vec::new();
    for ctx in contexts.lines().filter(|c| !c.is_empty()) {
        let can: Vec<&str> = [
            ("create", "deployments"),
            ("patch", "deployments"),
            ("delete", "deployments"),
            ("get", "secrets"),
        ]
        .into_iter()
        .filter(|(verb, what)| {
            run(&["auth", "can-i", verb, what, "--context", ctx]).is_ok_and(|o| o.status.success())
        })
        .map(|(verb, what)| {
            if what == "secrets" {
                "get secrets"
            } else {
                verb
            }
        })
        .collect();
        if !can.is_empty() {
            out.push(format!(
                "the read credential {kubeconfig} (context {ctx}) may {}: the agent can obtain \
                 it (docs/security.md); give the runner a role without write verbs and without \
                 Secrets, or limit its writes to server-side dry runs with an admission policy",
                can.join(", ")
            ));
        }
    }
    out
}
