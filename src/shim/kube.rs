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
//! kuberc can add flags, even `--context`, to any command), no `KUBECTL_EXTERNAL_DIFF`, and a
//! private discovery cache (`KUBECACHEDIR`).
//!
//! **Inputs** (manifests, directories of them, stdin, kustomize renders, patch and env files,
//! charts and values) are read once, refused unless they are regular files, and sealed. The
//! argv that runs names the snapshots (`/proc/self/fd/N`) in place of the agent's paths.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::sealed::Sealed;
use crate::api::Target;
use crate::argv::Invocation;
use crate::tool::Tool;

/// Proxy variables: a proxy can carry a request for one API server to another.
const PROXY_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The largest input read into a snapshot.
const MAX_INPUT: u64 = 64 * 1024 * 1024;
/// The most files one directory source may hold.
const MAX_FILES: usize = 500;

/// Sets the environment of a kube child: kuberc off, no external diff program, and the private
/// discovery cache (when there is one).
pub fn child_env(c: &mut Command, cache_dir: Option<&Path>) {
    c.env("KUBERC", "off")
        .env("KUBECTL_KUBERC", "false")
        .env_remove("KUBECTL_EXTERNAL_DIFF");
    if let Some(d) = cache_dir {
        c.env("KUBECACHEDIR", d);
    }
}

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

/// Runs a helper to completion: its exit code, stdout and stderr (stdin is empty). Signals
/// reach it as they reach the shim's other children.
pub fn run_helper(mut c: Command) -> Result<(i32, Vec<u8>, String), String> {
    let program = c.get_program().to_string_lossy().into_owned();
    c.stdin(Stdio::null()).stderr(Stdio::piped());
    let (status, out, err) =
        super::child::output_all(&mut c).map_err(|e| format!("cannot run {program}: {e}"))?;
    Ok((
        status.code().unwrap_or(1),
        out,
        String::from_utf8_lossy(&err).trim().to_string(),
    ))
}

/// The kube target of a command, resolved and pinned.
pub struct Resolved {
    pub target: Target,
    /// The context the run is pinned to.
    pub context: String,
    /// The kubeconfig cut down to that context, sealed.
    pub kubeconfig: Sealed,
    /// False when something can change which server the command reaches in a way the
    /// resolution did not follow: TLS verification off, another TLS server name or CA, a proxy.
    /// A rule that loosens the gate never matches an inexact target.
    pub exact: bool,
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
    let env = |k: &str| std::env::var(k).ok();
    for f in kubeconfig_files(inv, &env) {
        check_input_path(&f)?;
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
    let f = flags(tool);
    let truthy = |v: Option<String>| v.is_some_and(|v| !v.is_empty() && v != "false");
    let overridden = inv.has_flag(f.insecure)
        || inv.has_flag(f.tls_server_name)
        || inv.has_flag(f.ca_file)
        || (tool == Tool::Helm
            && (truthy(env("HELM_KUBEINSECURE_SKIP_TLS_VERIFY"))
                || truthy(env("HELM_KUBETLS_SERVER_NAME"))
                || truthy(env("HELM_KUBECAFILE"))))
        || PROXY_VARS.iter().any(|v| truthy(env(v)))
        || pinned.cluster["insecure-skip-tls-verify"] == Value::Bool(true)
        || pinned.cluster.get("tls-server-name").is_some()
        || pinned.cluster.get("proxy-url").is_some();
    Ok(Resolved {
        target: pinned.target,
        context: pinned.context,
        kubeconfig,
        exact: !overridden,
    })
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

/// The flags that pin a kube child to a resolved target: the sealed kubeconfig and the context.
pub fn pins(tool: Tool, r: &Resolved) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", r.kubeconfig.path()),
        format!("{}={}", flags(tool).context, r.context),
    ]
}

/// The target as the approver reads it, first in the text shown.
pub fn target_header(t: &Target) -> String {
    let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    format!(
        "Target: context {}, cluster {}, user {}, namespace {}\n",
        s(&t.kube_context),
        s(&t.cluster_server),
        s(&t.kube_user),
        s(&t.namespace)
    )
}

/// The flags of `inv` that `keep` selects, rendered back as one word each (`--name=value`,
/// `-n=value`: pflag reads both, and a value can never be taken for a flag or a positional).
pub fn render(inv: &Invocation, keep: impl Fn(&str) -> bool) -> Vec<String> {
    inv.flags
        .iter()
        .filter(|(name, _)| keep(name))
        .map(|(name, value)| match value {
            Some(v) => format!("{name}={v}"),
            None => name.clone(),
        })
        .collect()
}

/// The agent's argv, edited: flag occurrences dropped (their word, or their letters in a short
/// cluster, and their value word), positionals replaced, and flags inserted where the agent's
/// flags end (before its `--`, so they stay flags, and after its own flags, so they win).
pub struct ArgvEdit<'a> {
    args: &'a [String],
    inv: &'a Invocation,
    drop: BTreeSet<usize>,
    cut: BTreeMap<usize, usize>,
    replace: BTreeMap<usize, String>,
    insert: Vec<String>,
}

impl<'a> ArgvEdit<'a> {
    pub fn new(args: &'a [String], inv: &'a Invocation) -> Self {
        ArgvEdit {
            args,
            inv,
            drop: BTreeSet::new(),
            cut: BTreeMap::new(),
            replace: BTreeMap::new(),
            insert: Vec::new(),
        }
    }

    /// Drops the `i`-th flag of the invocation (and its value).
    pub fn drop_flag(&mut self, i: usize) {
        let Some(at) = self.inv.flag_at.get(i) else {
            return;
        };
        if at.offset <= 1 {
            self.drop.insert(at.word);
        } else {
            // `-Rf x`: keep `-R`.
            self.cut.insert(at.word, at.offset);
        }
        if let Some(v) = at.value_word {
            self.drop.insert(v);
        }
    }

    /// Replaces the `i`-th positional.
    pub fn replace_positional(&mut self, i: usize, with: String) {
        if let Some(&w) = self.inv.positional_at.get(i) {
            self.replace.insert(w, with);
        }
    }

    /// Adds a flag (one word) where the flags end.
    pub fn insert(&mut self, flag: String) {
        self.insert.push(flag);
    }

    pub fn finish(self) -> Edited {
        let end = self.inv.terminator.unwrap_or(self.args.len());
        let mut args = Vec::with_capacity(self.args.len() + self.insert.len());
        let mut flags_end = None;
        for (i, a) in self.args.iter().enumerate() {
            if i == end {
                flags_end = Some(args.len());
                args.extend(self.insert.iter().cloned());
            }
            if self.drop.contains(&i) {
                continue;
            }
            if let Some(s) = self.replace.get(&i) {
                args.push(s.clone());
            } else if let Some(&n) = self.cut.get(&i) {
                args.push(a[..n].to_string());
            } else {
                args.push(a.clone());
            }
        }
        let flags_end = flags_end.unwrap_or_else(|| {
            args.extend(self.insert.iter().cloned());
            args.len()
        });
        Edited { args, flags_end }
    }
}

/// An edited argv and where more flags can be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub args: Vec<String>,
    /// The index at which flags added later are still read as flags, and win.
    pub flags_end: usize,
}

impl Edited {
    /// The argv with `extra` flags added where the flags end.
    pub fn with(&self, extra: &[&str]) -> Vec<String> {
        let mut a = self.args.clone();
        a.splice(
            self.flags_end..self.flags_end,
            extra.iter().map(|s| s.to_string()),
        );
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(tool: Tool, args: &[&str]) -> (Vec<String>, Invocation) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let os: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        let inv = crate::argv::read(tool, &os, &|_| None).unwrap();
        (args, inv)
    }

    #[test]
    fn added_flags_land_before_the_agents_terminator_and_after_its_flags() {
        let (args, inv) = read(
            Tool::Kubectl,
            &["run", "x", "--image=b", "--", "sh", "-c", "x"],
        );
        let e = ArgvEdit::new(&args, &inv).finish();
        assert_eq!(
            e.with(&["--dry-run=server", "-o", "json"]),
            [
                "run",
                "x",
                "--image=b",
                "--dry-run=server",
                "-o",
                "json",
                "--",
                "sh",
                "-c",
                "x"
            ]
        );
        // A `--` that is a flag's value is not the terminator.
        let (args, inv) = read(Tool::Kubectl, &["-n", "--", "scale", "deploy", "web"]);
        assert_eq!(inv.terminator, None);
        let e = ArgvEdit::new(&args, &inv).finish();
        assert_eq!(e.with(&["--x"]).last().map(String::as_str), Some("--x"));
    }

    #[test]
    fn source_flags_are_dropped_in_every_spelling() {
        for (argv, kept) in [
            (&["apply", "-f", "a.yaml"][..], &["apply"][..]),
            (&["apply", "-fa.yaml"], &["apply"]),
            (&["apply", "-f=a.yaml"], &["apply"]),
            (&["apply", "--filename", "a.yaml"], &["apply"]),
            (
                &["apply", "--filename=a.yaml", "--server-side"],
                &["apply", "--server-side"],
            ),
            (&["apply", "-Rf", "dir"], &["apply", "-R"]),
            (&["apply", "-Rfdir"], &["apply", "-R"]),
        ] {
            let (args, inv) = read(Tool::Kubectl, argv);
            let mut e = ArgvEdit::new(&args, &inv);
            for (i, (name, _)) in inv.flags.iter().enumerate() {
                if name == "-f" || name == "--filename" {
                    e.drop_flag(i);
                }
            }
            e.insert("--filename=/proc/self/fd/9".into());
            let mut want: Vec<&str> = kept.to_vec();
            want.push("--filename=/proc/self/fd/9");
            assert_eq!(e.finish().args, want, "{argv:?}");
        }
        let (args, inv) = read(Tool::Helm, &["upgrade", "--", "rel", "./chart"]);
        let mut e = ArgvEdit::new(&args, &inv);
        e.replace_positional(1, "/proc/self/fd/7".into());
        e.insert("--kube-context=prod".into());
        assert_eq!(
            e.finish().args,
            [
                "upgrade",
                "--kube-context=prod",
                "--",
                "rel",
                "/proc/self/fd/7"
            ]
        );
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
