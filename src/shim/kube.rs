//! What kubectl and helm share on the shim side: the kube target, resolved once and pinned; the
//! environment of every kube child; reading the agent's inputs into sealed snapshots; and
//! editing the agent's argv to point at those snapshots.
//!
//! **The target** is resolved with the real kubectl (`config view --flatten --raw -o json`, with
//! the agent's `--kubeconfig`, `KUBECONFIG` and context), so it is what kubectl itself would
//! reach. The result is cut down to the target context, its cluster and its user, sealed
//! ([`super::sealed`]) and passed to every helper and to the approved run with `--kubeconfig`
//! and the context flag, so nothing the agent changes afterwards (the kubeconfig file, a FIFO
//! serving different readers different bytes) can send the run elsewhere. Kubeconfig files that
//! are not regular files, or live under `/dev`, `/proc` or `/sys`, are refused.
//!
//! **Every kube child** (helpers and the run) gets `KUBERC=off` and `KUBECTL_KUBERC=false` (a
//! kuberc can add flags, even `--context`, to any command), no `KUBECTL_EXTERNAL_DIFF`, a
//! `PATH` cut down to root-owned directories (`trusted_path.rs`), and a private discovery cache
//! (`KUBECACHEDIR`).
//!
//! **Inputs** (manifests, directories of them, stdin, kustomize renders, patch and env files,
//! charts and values) are read once (`sealed::read_input`), refused unless they are regular
//! files, and sealed; the argv that runs names the snapshots in place of the agent's paths
//! (`argv_edit.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::sealed::Sealed;
use crate::api::Target;
use crate::argv::Invocation;
use crate::tool::Tool;

/// Sets the environment of a kube child: kuberc off, no external diff program, a `PATH` of
/// trusted directories only (`trusted_path.rs`), and the private discovery cache (when there is
/// one).
pub fn child_env(c: &mut Command, cache_dir: Option<&Path>) {
    c.env("KUBERC", "off")
        .env("KUBECTL_KUBERC", "false")
        .env_remove("KUBECTL_EXTERNAL_DIFF")
        .env(
            "PATH",
            super::trusted_path::trusted_path(std::env::var_os("PATH").as_deref()),
        );
    if let Some(d) = cache_dir {
        c.env("KUBECACHEDIR", d);
    }
}

/// Runs a helper to completion: its exit code, stdout and stderr (stdin is an empty pipe, not
/// `/dev/null`, which a minimal container root may lack). Signals reach it as they reach the
/// shim's other children.
/// A failed helper's stderr ends with the `PATH` entries it did not get, if any.
pub fn run_helper(mut c: Command) -> Result<(i32, Vec<u8>, String), String> {
    let program = c.get_program().to_string_lossy().into_owned();
    c.stdin(Stdio::piped()).stderr(Stdio::piped());
    let (status, out, err) =
        super::child::output_all(&mut c).map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut err = String::from_utf8_lossy(&err).trim().to_string();
    let left_out = super::trusted_path::left_out(std::env::var_os("PATH").as_deref());
    if !status.success() && !left_out.is_empty() {
        let dirs: Vec<String> = left_out.iter().map(|d| d.display().to_string()).collect();
        err.push_str(&format!(
            "\n(kube helpers and runs get PATH without the directories that are not root-owned \
             or that others can write: {}; a credential plugin must be installed in a kept one)",
            dirs.join(", ")
        ));
    }
    Ok((status.code().unwrap_or(1), out, err))
}

/// The kube target of a command, resolved and pinned. Its `target` says whether it is exact
/// (`Target::is_exact`): a rule that loosens the gate never matches an inexact target.
pub struct Resolved {
    pub target: Target,
    /// The context the run is pinned to.
    pub context: String,
    /// The kubeconfig cut down to that context, sealed.
    pub kubeconfig: Sealed,
}

/// The names of the target flags of `tool` (kubectl or helm).
struct Flags {
    context: &'static str,
    insecure: &'static [&'static str],
    tls_server_name: &'static [&'static str],
    ca_file: &'static [&'static str],
}

fn flags(tool: Tool) -> Flags {
    match tool {
        Tool::Helm => Flags {
            context: "--kube-context",
            insecure: &["--kube-insecure-skip-tls-verify"],
            tls_server_name: &["--kube-tls-server-name"],
            ca_file: &["--kube-ca-file"],
        },
        _ => Flags {
            context: "--context",
            insecure: &["--insecure-skip-tls-verify"],
            tls_server_name: &["--tls-server-name"],
            ca_file: &["--certificate-authority"],
        },
    }
}

/// The kubeconfig files the command reads: `--kubeconfig`, else each file of `KUBECONFIG`,
/// else `~/.kube/config`.
fn kubeconfig_files(inv: &Invocation, env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    if let Some(k) = &inv.target.kubeconfig {
        return vec![PathBuf::from(k)];
    }
    match env("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(list) => std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => env("HOME")
            .map(|h| vec![PathBuf::from(h).join(".kube/config")])
            .unwrap_or_default(),
    }
}

/// Resolves the kube target of a kubectl or helm command with the real `kubectl`, and seals
/// the kubeconfig cut down to it. `cache_dir` is the discovery cache of the child, if any.
pub fn resolve(
    kubectl: &Path,
    tool: Tool,
    inv: &Invocation,
    cache_dir: Option<&Path>,
) -> Result<Resolved, String> {
    resolve_with(kubectl, tool, inv, cache_dir, None)
}

/// [`resolve`] with `KUBECONFIG` set to `kubeconfig` in place of this process's (lockdown's
/// write credential set).
pub fn resolve_with(
    kubectl: &Path,
    tool: Tool,
    inv: &Invocation,
    cache_dir: Option<&Path>,
    kubeconfig: Option<&str>,
) -> Result<Resolved, String> {
    let env = |k: &str| match (k, kubeconfig) {
        ("KUBECONFIG", Some(v)) => Some(v.to_string()),
        _ => std::env::var(k).ok(),
    };
    for f in kubeconfig_files(inv, &env) {
        super::sealed::check_input_path(&f)?;
        match std::fs::metadata(&f) {
            Ok(m) if !m.is_file() => {
                return Err(format!(
                    "the kubeconfig {} is not a regular file (a FIFO or device can serve each \
                     reader another cluster)",
                    f.display()
                ))
            }
            _ => {}
        }
    }
    let t = &inv.target;
    let mut c = Command::new(kubectl);
    c.args(["config", "view", "--flatten", "--raw", "-o", "json"]);
    // --minify keeps only the selected context, so a stale file elsewhere in the kubeconfig does
    // not matter; --cluster/--user overrides need the other entries.
    if t.cluster.is_none() && t.user.is_none() {
        c.arg("--minify");
        if let Some(ctx) = &t.context {
            c.arg(format!("--context={ctx}"));
        }
    }
    if let Some(k) = &t.kubeconfig {
        c.arg(format!("--kubeconfig={k}"));
    }
    child_env(&mut c, cache_dir);
    if let Some(k) = kubeconfig {
        c.env("KUBECONFIG", k);
    }
    let (status, out, err) = run_helper(c)?;
    if status != 0 {
        return Err(format!(
            "kubectl config view could not resolve the kube context ({err})"
        ));
    }
    let config: Value = serde_json::from_slice(&out)
        .map_err(|e| format!("kubectl config view printed no JSON: {e}"))?;
    let pinned = cut_down(&config, inv)?;
    let kubeconfig = Sealed::new("kubeconfig", pinned.config.to_string().as_bytes())?;
    let mut target = pinned.target;
    target.set_inexact(inexact(tool, inv, &env, &pinned.cluster, &target));
    Ok(Resolved {
        target,
        context: pinned.context,
        kubeconfig,
    })
}

/// Everything the shim can see that can send the command elsewhere than the target's server
/// says, or make that server unverifiable: TLS and server overrides in argv or helm's
/// variables, proxy variables, the cluster's `proxy-url`, `tls-server-name` and
/// `insecure-skip-tls-verify`, and a server URL that cannot be read exactly
/// (`policy::server_url`). Empty: the target is exact.
fn inexact(
    tool: Tool,
    inv: &Invocation,
    env: &dyn Fn(&str) -> Option<String>,
    cluster: &Value,
    target: &Target,
) -> Vec<String> {
    let f = flags(tool);
    let truthy = |v: Option<String>| v.is_some_and(|v| !v.is_empty() && v != "false");
    let mut why = Vec::new();
    for (names, what) in [
        (f.insecure, "the server's certificate is not checked"),
        (
            f.tls_server_name,
            "TLS is told to expect another server's name",
        ),
        (f.ca_file, "another certificate authority is trusted"),
    ] {
        if inv.has_flag(names) {
            why.push(format!("{}: {what}", names[0]));
        }
    }
    if inv.target.server.is_some() {
        why.push("the server is set on the command line, not by the kubeconfig".into());
    }
    if tool == Tool::Helm {
        for var in [
            "HELM_KUBEINSECURE_SKIP_TLS_VERIFY",
            "HELM_KUBETLS_SERVER_NAME",
            "HELM_KUBECAFILE",
        ] {
            if truthy(env(var)) {
                why.push(format!("{var} is set"));
            }
        }
    }
    why.extend(crate::policy::proxy_variables(env));
    if cluster["insecure-skip-tls-verify"] == Value::Bool(true) {
        why.push(
            "insecure-skip-tls-verify in the kubeconfig: the server's certificate is not checked"
                .into(),
        );
    }
    for key in ["tls-server-name", "proxy-url"] {
        if let Some(v) = cluster.get(key) {
            why.push(format!("{key} {v} in the kubeconfig"));
        }
    }
    if let Some(server) = &target.cluster_server {
        if let Err(e) = crate::policy::server_url::parse(server) {
            why.push(format!(
                "the server URL {server:?} cannot be read exactly ({e})"
            ));
        }
    }
    why
}

/// A kubeconfig cut down to one context.
struct Pinned {
    target: Target,
    context: String,
    cluster: Value,
    config: Value,
}

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| e["name"] == name)
}

/// Picks the context (the flag, else the current one), its cluster and user (or the
/// `--cluster` / `--user` overrides) and namespace from `kubectl config view`'s JSON, the way
/// kubectl does, and builds a kubeconfig holding only those.
fn cut_down(config: &Value, inv: &Invocation) -> Result<Pinned, String> {
    let t = &inv.target;
    let s = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
    let context = t
        .context
        .clone()
        .or_else(|| s(&config["current-context"]))
        .ok_or(
            "the kubeconfig selects no context (in-cluster configuration is not supported on \
             the gated path; use a kubeconfig)",
        )?;
    let ctx = named(&config["contexts"], &context)
        .ok_or_else(|| format!("the kubeconfig has no context {context:?}"))?;
    let cluster_name = t.cluster.clone().or_else(|| s(&ctx["context"]["cluster"]));
    let user_name = t.user.clone().or_else(|| s(&ctx["context"]["user"]));
    let cluster_entry = cluster_name
        .as_deref()
        .and_then(|n| named(&config["clusters"], n));
    let user_entry = user_name
        .as_deref()
        .and_then(|n| named(&config["users"], n));
    let cluster = cluster_entry
        .map(|c| c["cluster"].clone())
        .unwrap_or(Value::Null);
    let server = t.server.clone().or_else(|| s(&cluster["server"]));
    if server.is_none() {
        return Err(format!(
            "context {context:?} names no cluster with a server (cluster {})",
            cluster_name.as_deref().unwrap_or("none")
        ));
    }
    let mut pinned_ctx = ctx.clone();
    if let Some(n) = &cluster_name {
        pinned_ctx["context"]["cluster"] = json!(n);
    }
    if let Some(n) = &user_name {
        pinned_ctx["context"]["user"] = json!(n);
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": cluster_entry.into_iter().cloned().collect::<Vec<_>>(),
        "users": user_entry.into_iter().cloned().collect::<Vec<_>>(),
        "contexts": [pinned_ctx],
        "current-context": context,
    });
    let target = Target {
        kube_context: Some(context.clone()),
        cluster_server: server,
        kube_user: user_name,
        namespace: Some(
            t.namespace
                .clone()
                .or_else(|| s(&ctx["context"]["namespace"]))
                .unwrap_or_else(|| "default".into()),
        ),
        ..Target::default()
    };
    Ok(Pinned {
        target,
        context,
        cluster,
        config,
    })
}

/// What the approved run of a kube command is pinned to, kept so that lockdown can pin it to
/// its write credential set instead (`credentials.rs`).
pub struct Pin {
    kubectl: PathBuf,
    tool: Tool,
    inv: Invocation,
    cache: PathBuf,
    /// The `--kubeconfig=` argument in the run's argv.
    arg: String,
    target: Target,
}

impl Pin {
    pub fn new(kubectl: &Path, tool: Tool, inv: &Invocation, cache: &Path, r: &Resolved) -> Pin {
        Pin {
            kubectl: kubectl.to_path_buf(),
            tool,
            inv: inv.clone(),
            cache: cache.to_path_buf(),
            arg: kubeconfig_flag(r),
            target: r.target.clone(),
        }
    }

    /// The path of the pinned kubeconfig snapshot, as the run's argv names it.
    pub fn kubeconfig_path(&self) -> String {
        self.arg
            .strip_prefix("--kubeconfig=")
            .unwrap_or(&self.arg)
            .to_string()
    }

    /// Points the run's `args` at `kubeconfig` (resolved and sealed like the first one) in
    /// place of the approved pin. Its context must reach the same cluster server and namespace;
    /// only the user may differ. Returns the new snapshot, to be kept open for the run.
    pub fn repin(
        &self,
        args: &mut [std::ffi::OsString],
        kubeconfig: &str,
    ) -> Result<Sealed, String> {
        if self.inv.target.kubeconfig.is_some() {
            return Err(
                "the command names its own --kubeconfig, so the write credential set \
                        cannot be applied"
                    .into(),
            );
        }
        let r = resolve_with(
            &self.kubectl,
            self.tool,
            &self.inv,
            Some(&self.cache),
            Some(kubeconfig),
        )?;
        let (now, then) = (&r.target, &self.target);
        for (what, a, b) in [
            ("context", &now.kube_context, &then.kube_context),
            ("cluster server", &now.cluster_server, &then.cluster_server),
            ("namespace", &now.namespace, &then.namespace),
        ] {
            if a != b {
                return Err(format!(
                    "the write credential set reaches {what} {a:?}, the approved command {b:?}"
                ));
            }
        }
        let slot = args
            .iter_mut()
            .find(|a| *a == self.arg.as_str())
            .ok_or("the run has no pinned kubeconfig to replace")?;
        *slot = kubeconfig_flag(&r).into();
        Ok(r.kubeconfig)
    }
}

/// `--kubeconfig=<the sealed snapshot of r>`.
fn kubeconfig_flag(r: &Resolved) -> String {
    format!("--kubeconfig={}", r.kubeconfig.path())
}

/// The flags that pin a kube child to a resolved target: the sealed kubeconfig and the context.
pub fn pins(tool: Tool, r: &Resolved) -> Vec<String> {
    vec![
        kubeconfig_flag(r),
        format!("{}={}", flags(tool).context, r.context),
    ]
}

/// The target as the approver reads it, first in the text shown, with why it is inexact.
pub fn target_header(t: &Target) -> String {
    let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    let mut h = format!(
        "Target: context {}, cluster {}, user {}, namespace {}\n",
        s(&t.kube_context),
        s(&t.cluster_server),
        s(&t.kube_user),
        s(&t.namespace)
    );
    if let Some(line) = t.inexact_line() {
        h.push_str(&format!("!!! {line}\n"));
    }
    h
}
