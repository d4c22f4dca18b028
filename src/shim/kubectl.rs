//! kubectl on the gated path: resolve the target, show what would change (computed with the
//! real kubectl), bind the run to what was shown, and pin the context.
//!
//! - **Target**: `kubectl config view --minify -o json` with the agent's `--kubeconfig`,
//!   `--context`, `--cluster` and `--user` (kubectl itself merges a multi-file `KUBECONFIG`):
//!   context, cluster server, user, and the namespace (`-n`, else the context's, else
//!   `default`). It is recomputed from the agent's own flags right before the run; if the
//!   kubeconfig now resolves differently (another current-context, cluster or user), the approval
//!   does not hold. The run gets `--context <resolved>` when the agent gave none.
//! - **apply, create, replace with `-f`/`-k`**: `kubectl diff` of the same sources (with
//!   `KUBECTL_EXTERNAL_DIFF` unset, so the agent cannot make the diff lie). Manifests read from
//!   stdin are captured once into the private run directory and used for the diff and the run.
//!   Every source is hashed into the approval (a directory: all its files); if any changed, the
//!   run is refused. Remote URLs are refused: an approval cannot be bound to them.
//! - **delete**: the objects that would go, listed by the real `kubectl get … -o name`.
//! - **Every other command that takes `--dry-run` and `-o`** (per the flag table of the pinned
//!   kubectl: scale, patch, set …, label, annotate, rollout undo, autoscale, create without
//!   `-f`, expose, run, taint): the server's dry run (`--dry-run=server -o json`) against the
//!   live object, as a unified diff and per-field changes. `scale` prints the object as read,
//!   so its after-state is the live object with the new `--replicas`.
//! - Everything else (exec, cp, port-forward, drain, cordon, debug, attach, edit, rollout
//!   restart, plugins): the command and its resolved target, and a plain statement that no diff
//!   is possible.
//!
//! Secret `data` and `stringData` values never appear in what is shown or sent.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::child;
use super::gate::{Prepared, RunDir, Stop};
use crate::api::Target;
use crate::argv::kubectl::{is_global_flag, takes_flag};
use crate::argv::Invocation;
use crate::diff::{Action, ChangeSet, ResourceChange};
use crate::exit as code;

/// Flags of `kubectl apply/create/replace` that `kubectl diff` takes too (the sources and how
/// they are applied).
const DIFF_FLAGS: &[&str] = &[
    "--field-manager",
    "--filename",
    "--force-conflicts",
    "--kustomize",
    "--prune",
    "--recursive",
    "--selector",
    "--server-side",
    "-R",
    "-f",
    "-k",
    "-l",
];
/// Flags of `kubectl delete` that select objects, which `kubectl get` takes too.
const SELECT_FLAGS: &[&str] = &[
    "--all-namespaces",
    "--field-selector",
    "--filename",
    "--kustomize",
    "--recursive",
    "--selector",
    "-A",
    "-R",
    "-f",
    "-k",
    "-l",
];
/// Metadata the API server changes on every write; it would only be noise in a diff.
const NOISE: &[&str] = &[
    "creationTimestamp",
    "generation",
    "managedFields",
    "resourceVersion",
    "uid",
];

/// Prepares a gated kubectl command.
pub fn prepare(real: &Path, args: &[String], inv: &Invocation) -> Result<Prepared, Stop> {
    let refused = |why: String| (code::REFUSED, format!("kubectl: {why}; it did not run"));
    let target = resolve_target(real, inv).map_err(refused)?;
    let context = target.kube_context.clone().unwrap_or_default();
    // The run and every helper command are pinned to the resolved context.
    let pin: Vec<String> = if inv.target.context.is_none() {
        vec![format!("--context={context}")]
    } else {
        Vec::new()
    };
    if let Some(url) = inv.files.iter().find(|f| is_url(f)) {
        return Err(refused(format!(
            "{url} is remote: an approval cannot be bound to what a URL serves (download it and \
             pass the file)"
        )));
    }
    let run_dir = RunDir::create().map_err(|e| (code::INTERNAL, e))?;
    let mut run_args = args.to_vec();
    if inv.reads_stdin {
        let capture = run_dir.path.join("stdin.yaml");
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| (code::INTERNAL, format!("cannot read stdin: {e}")))?;
        std::fs::write(&capture, &bytes)
            .map_err(|e| (code::INTERNAL, format!("cannot keep stdin: {e}")))?;
        run_args = replace_stdin(args, &capture).ok_or_else(|| {
            refused("cannot tell which argument reads stdin, so it cannot be bound".into())
        })?;
    }
    let run_inv = crate::argv::read(
        crate::tool::Tool::Kubectl,
        &run_args.iter().map(OsString::from).collect::<Vec<_>>(),
        &|k| std::env::var(k).ok(),
    )
    .map_err(|e| refused(e.to_string()))?;
    let sources: Vec<PathBuf> = run_inv.files.iter().map(PathBuf::from).collect();
    let artifact_sha256 = hash_sources(&sources).map_err(refused)?;

    let path = inv.path_string();
    let ctx = Kubectl {
        real,
        pin: &pin,
        inv: &run_inv,
    };
    let (text, changes) = if sources.is_empty() && path == "delete" {
        ctx.deletions()?
    } else if !sources.is_empty() && matches!(path.as_str(), "apply" | "create" | "replace") {
        ctx.source_diff()?
    } else if !sources.is_empty() && path == "delete" {
        ctx.deletions()?
    } else if takes_flag(&path, "--dry-run") && takes_flag(&path, "--output") {
        ctx.dry_run_diff(&run_args)
    } else {
        (
            format!(
                "`kubectl {}`: no diff is possible for this command. It runs exactly as shown \
                 against context {context} ({}), namespace {}.\n",
                args.join(" "),
                target.cluster_server.as_deref().unwrap_or("?"),
                target.namespace.as_deref().unwrap_or("?"),
            ),
            ChangeSet::default(),
        )
    };
    let shown = format!(
        "{}{}\n--- kubectl's own view ---\n{text}",
        target_header(&target),
        changes.render()
    );
    let request = super::gate::request(
        crate::tool::Tool::Kubectl,
        args,
        target,
        shown,
        &changes,
        artifact_sha256,
    );
    let mut final_args: Vec<OsString> = pin.iter().map(OsString::from).collect();
    final_args.extend(run_args.iter().map(OsString::from));
    let real_owned = real.to_path_buf();
    let inv_owned = inv.clone();
    Ok(Prepared {
        request,
        program: real.to_path_buf(),
        args: final_args,
        no_changes: false,
        target_now: Box::new(move || resolve_target(&real_owned, &inv_owned)),
        artifacts_now: Box::new(move || hash_sources(&sources)),
        run_dir: Some(run_dir),
    })
}

/// The helper commands, all run with the same global flags and pinned context.
struct Kubectl<'a> {
    real: &'a Path,
    pin: &'a [String],
    inv: &'a Invocation,
}

impl Kubectl<'_> {
    /// A kubectl command with the pin and the agent's global flags.
    fn command(&self, sub: &[&str]) -> Command {
        let mut c = Command::new(self.real);
        c.args(self.pin)
            .args(sub)
            .args(render(self.inv, is_global_flag))
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .stdin(Stdio::null());
        c
    }

    /// Runs a helper, returning its exit code and stdout (stderr is passed through).
    fn run(&self, mut c: Command) -> Result<(i32, Vec<u8>), Stop> {
        let (status, out) = child::output(&mut c).map_err(|e| {
            (
                code::CANNOT_EXECUTE,
                format!("cannot run {}: {e}", self.real.display()),
            )
        })?;
        Ok((status.code().unwrap_or(1), out))
    }

    /// `kubectl diff` of the sources.
    fn source_diff(&self) -> Result<(String, ChangeSet), Stop> {
        let mut c = self.command(&["diff"]);
        c.args(render(self.inv, |f| DIFF_FLAGS.contains(&f)));
        let (status, out) = self.run(c)?;
        if status > 1 {
            return Err((
                u8::try_from(status).unwrap_or(1),
                format!("kubectl diff failed (exit {status}); nothing was submitted or applied"),
            ));
        }
        let text = mask_secrets_in_diff(&String::from_utf8_lossy(&out));
        let changes = changes_from_unified_diff(&text);
        Ok((text, changes))
    }

    /// The objects `delete` would remove.
    fn deletions(&self) -> Result<(String, ChangeSet), Stop> {
        let mut c = self.command(&["get"]);
        c.args(&self.inv.positionals)
            .args(render(self.inv, |f| SELECT_FLAGS.contains(&f)))
            .args(["-o", "name", "--ignore-not-found"]);
        let (status, out) = self.run(c)?;
        if status != 0 {
            return Err((
                u8::try_from(status).unwrap_or(1),
                format!("kubectl get (to list what delete removes) failed (exit {status}); nothing was submitted"),
            ));
        }
        let names: Vec<String> = String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .collect();
        let mut text = String::from("Objects that will be DELETED:\n");
        for n in &names {
            text.push_str(&format!("  - {n}\n"));
        }
        if names.is_empty() {
            text.push_str("  (none found now)\n");
        }
        let changes = ChangeSet {
            resources: names
                .into_iter()
                .map(|address| ResourceChange {
                    address,
                    action: Action::Delete,
                    action_reason: None,
                    attributes: Vec::new(),
                })
                .collect(),
        };
        Ok((text, changes))
    }

    /// The server's dry run against the live objects. A dry run that fails is not fatal: the
    /// approver is told no diff could be made, and why.
    fn dry_run_diff(&self, args: &[String]) -> (String, ChangeSet) {
        let mut c = Command::new(self.real);
        c.args(self.pin)
            .args(args)
            .args(["--dry-run=server", "-o", "json"])
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let out = match c.output() {
            Ok(o) if o.status.success() => o.stdout,
            Ok(o) => {
                return (
                    format!(
                        "No diff: the server's dry run failed: {}\n",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    ChangeSet::default(),
                )
            }
            Err(e) => return (format!("No diff: {e}\n"), ChangeSet::default()),
        };
        let Ok(after) = serde_json::from_slice::<Value>(&out) else {
            return (
                "No diff: the dry run printed no JSON\n".into(),
                ChangeSet::default(),
            );
        };
        let mut objects = match after.get("items").and_then(Value::as_array) {
            Some(items) => items.clone(),
            None => vec![after],
        };
        // `scale --dry-run=server -o json` prints the object as it was read, before the scale:
        // the change is the --replicas the agent asked for.
        if self.inv.path_string() == "scale" {
            let Some(n) = crate::argv::kubectl::last(&self.inv.flags, &["--replicas"])
                .and_then(|r| r.parse::<u64>().ok())
            else {
                return (
                    "No diff: scale without a --replicas count\n".into(),
                    ChangeSet::default(),
                );
            };
            for o in &mut objects {
                o["spec"]["replicas"] = Value::from(n);
            }
        }
        let mut text = String::new();
        let mut set = ChangeSet::default();
        for new in objects {
            let (kind, name, ns) = identity(&new);
            let mut c = self.command(&["get", &format!("{kind}/{name}")]);
            if let Some(ns) = &ns {
                c.arg(format!("--namespace={ns}"));
            }
            c.args(["-o", "json", "--ignore-not-found"]);
            let live = self
                .run(c)
                .ok()
                .filter(|(s, _)| *s == 0)
                .and_then(|(_, o)| serde_json::from_slice::<Value>(&o).ok());
            let (before, after) = (clean(live.clone()), clean(Some(new)));
            let marks = secret_marks(&kind);
            let attributes =
                crate::diff::changed_attributes((&before, &marks), (&after, &marks), &Value::Null);
            let address = format!("{kind} {}{name}", ns.map(|n| n + "/").unwrap_or_default());
            text.push_str(&unified_json(
                &address,
                &masked(&before, &kind),
                &masked(&after, &kind),
            ));
            set.resources.push(ResourceChange {
                address,
                action: if live.is_none() {
                    Action::Create
                } else if attributes.is_empty() {
                    Action::NoOp
                } else {
                    Action::Update
                },
                action_reason: None,
                attributes,
            });
        }
        (text, set)
    }
}

/// The flags of `inv` that `keep` selects, rendered back as arguments.
pub(super) fn render(inv: &Invocation, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in &inv.flags {
        if !keep(name) {
            continue;
        }
        match value {
            Some(v) if name.starts_with("--") => out.push(format!("{name}={v}")),
            Some(v) => {
                out.push(name.clone());
                out.push(v.clone());
            }
            None => out.push(name.clone()),
        }
    }
    out
}

/// The target as the approver reads it, first in the text shown.
pub(super) fn target_header(t: &Target) -> String {
    let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    format!(
        "Target: context {}, cluster {}, user {}, namespace {}\n",
        s(&t.kube_context),
        s(&t.cluster_server),
        s(&t.kube_user),
        s(&t.namespace)
    )
}

/// Resolves context, cluster server, user and namespace with the real kubectl.
pub fn resolve_target(real: &Path, inv: &Invocation) -> Result<Target, String> {
    let mut c = Command::new(real);
    c.args(["config", "view", "--minify", "-o", "json"]);
    for (flag, value) in [
        ("--kubeconfig", &inv.target.kubeconfig),
        ("--context", &inv.target.context),
        ("--cluster", &inv.target.cluster),
        ("--user", &inv.target.user),
    ] {
        if let Some(v) = value {
            c.arg(format!("{flag}={v}"));
        }
    }
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", real.display()))?;
    if !out.status.success() {
        return Err(format!(
            "cannot resolve the kube context ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("kubectl config view printed no JSON: {e}"))?;
    let ctx = &v["contexts"][0];
    let name = v["current-context"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| ctx["name"].as_str())
        .ok_or("the kubeconfig selects no context")?
        .to_string();
    let s = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
    Ok(Target {
        kube_context: Some(name),
        cluster_server: inv
            .target
            .server
            .clone()
            .or_else(|| s(&v["clusters"][0]["cluster"]["server"])),
        kube_user: inv
            .target
            .user
            .clone()
            .or_else(|| s(&ctx["context"]["user"])),
        namespace: Some(
            inv.target
                .namespace
                .clone()
                .or_else(|| s(&ctx["context"]["namespace"]))
                .unwrap_or_else(|| "default".into()),
        ),
        ..Target::default()
    })
}

fn is_url(f: &str) -> bool {
    let f = f.to_ascii_lowercase();
    f.starts_with("http://") || f.starts_with("https://")
}

/// The same argv with the stdin source (`-f -`, `--filename=-`, …) replaced by `capture`;
/// `None` when it cannot be found.
fn replace_stdin(args: &[String], capture: &Path) -> Option<Vec<String>> {
    let cap = capture.to_string_lossy().into_owned();
    let mut out = Vec::with_capacity(args.len());
    let mut replaced = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            out.extend(args[i..].iter().cloned());
            break;
        }
        let takes_next = a == "--filename"
            || (a.starts_with('-') && !a.starts_with("--") && a.ends_with('f') && a.len() >= 2);
        if takes_next && args.get(i + 1).map(String::as_str) == Some("-") {
            out.push(a.clone());
            out.push(cap.clone());
            replaced = true;
            i += 2;
            continue;
        }
        if matches!(a.as_str(), "-f=-" | "--filename=-" | "-f-") {
            out.push(format!("--filename={cap}"));
            replaced = true;
        } else {
            out.push(a.clone());
        }
        i += 1;
    }
    replaced.then_some(out)
}

/// One hash per source: a file's bytes; a directory's files (recursively, sorted by path, each
/// as `path NUL sha256 LF`).
fn hash_sources(sources: &[PathBuf]) -> Result<Vec<String>, String> {
    sources
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
            if meta.is_dir() {
                let mut files = Vec::new();
                walk(p, p, &mut files)?;
                files.sort();
                let mut listing = String::new();
                for rel in files {
                    let sha = super::gate::file_sha256(&p.join(&rel))?;
                    listing.push_str(&format!("{}\0{sha}\n", rel.display()));
                }
                Ok(crate::hex::sha256(listing.as_bytes()))
            } else {
                super::gate::file_sha256(p)
            }
        })
        .collect()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = e.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

/// The annotation in which client-side apply keeps the whole object, a Secret's values included.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Masks a Secret's values in a `kubectl diff`: everything under `data:` and `stringData:`, and
/// the last-applied-configuration annotation (which holds them too). kubectl masks `data`
/// itself but not that annotation.
pub fn mask_secrets_in_diff(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut masker: Option<SecretMasker> = None;
    for line in text.split_inclusive('\n') {
        if line.starts_with("diff ") {
            masker = line.contains(".Secret.").then(SecretMasker::default);
            out.push_str(line);
            continue;
        }
        match &mut masker {
            Some(m)
                if !(line.starts_with("---")
                    || line.starts_with("+++")
                    || line.starts_with("@@")) =>
            {
                // The first character is the diff's: ' ', '-' or '+'.
                let (prefix, body) = line.split_at(line.len().min(1));
                out.push_str(prefix);
                out.push_str(&m.line(body));
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// One Secret manifest (a YAML document) with its values masked; other kinds unchanged.
pub fn mask_secret_doc(doc: &str, kind: &str) -> String {
    if kind != "Secret" {
        return doc.to_string();
    }
    let mut m = SecretMasker::default();
    doc.split_inclusive('\n').map(|l| m.line(l)).collect()
}

/// Masks a Secret's YAML line by line: every value under `data:` and `stringData:`, and the
/// last-applied-configuration annotation.
#[derive(Default)]
struct SecretMasker {
    /// Inside a masked block: the indent of the key that opened it.
    block: Option<usize>,
}

impl SecretMasker {
    /// The line (with its newline, if any) as it may be shown.
    fn line(&mut self, line: &str) -> String {
        let content = line.trim_end_matches(['\n', '\r']);
        let nl = &line[content.len()..];
        let indent = content.len() - content.trim_start().len();
        let key = content.trim();
        let pad = " ".repeat(indent);
        if let Some(d) = self.block {
            if indent > d && !key.is_empty() {
                return match key.split_once(':') {
                    Some((k, _)) => format!("{pad}{k}: ***{nl}"),
                    None => format!("{pad}***{nl}"),
                };
            }
            self.block = None;
        }
        if key == "data:" || key == "stringData:" {
            self.block = Some(indent);
        }
        if let Some(rest) = key
            .strip_prefix(LAST_APPLIED)
            .and_then(|r| r.strip_prefix(':'))
        {
            // `key: |` continues on deeper lines; `key: {...}` carries it on this one.
            self.block = Some(indent);
            if !matches!(rest.trim(), "" | "|" | "|-" | ">" | ">-") {
                return format!("{pad}{LAST_APPLIED}: ***{nl}");
            }
        }
        line.to_string()
    }
}

/// The change model of a `kubectl diff`: one resource per file pair, its changed `key: value`
/// lines paired by key.
fn changes_from_unified_diff(text: &str) -> ChangeSet {
    let mut set = ChangeSet::default();
    for section in text.split("\ndiff ").map(|s| s.trim_start_matches("diff ")) {
        let Some(header) = section.lines().next() else {
            continue;
        };
        let Some(file) = header.split_whitespace().last() else {
            continue;
        };
        let name = file.rsplit('/').next().unwrap_or(file);
        if !header.contains("LIVE") && !header.contains("MERGED") {
            continue;
        }
        let created = section.contains("@@ -0,0 ");
        let (mut before, mut after) = (
            std::collections::BTreeMap::new(),
            std::collections::BTreeMap::new(),
        );
        for l in section.lines().skip(1) {
            if l.starts_with("---") || l.starts_with("+++") {
                continue;
            }
            let side = match l.chars().next() {
                Some('-') => &mut before,
                Some('+') => &mut after,
                _ => continue,
            };
            if let Some((k, v)) = l[1..].trim().split_once(':') {
                if !NOISE.contains(&k.trim()) {
                    side.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        let attributes = keys
            .into_iter()
            .filter(|k| before.get(*k) != after.get(*k))
            .map(|k| crate::diff::AttrChange {
                path: k.clone(),
                before: before.get(k).cloned(),
                after: after.get(k).cloned(),
            })
            .collect();
        set.resources.push(ResourceChange {
            address: object_address(name),
            action: if created {
                Action::Create
            } else {
                Action::Update
            },
            action_reason: None,
            attributes,
        });
    }
    set
}

/// `apps.v1.Deployment.default.web` → `Deployment default/web`.
fn object_address(file: &str) -> String {
    let parts: Vec<&str> = file.split('.').collect();
    match parts
        .iter()
        .position(|p| p.chars().next().is_some_and(char::is_uppercase))
    {
        Some(k) => {
            let kind = parts[k];
            let rest = &parts[k + 1..];
            match rest {
                [ns, name @ ..] if !name.is_empty() => format!("{kind} {ns}/{}", name.join(".")),
                [name] => format!("{kind} {name}"),
                _ => file.to_string(),
            }
        }
        _ => file.to_string(),
    }
}

/// Kind, name and namespace of an object.
fn identity(o: &Value) -> (String, String, Option<String>) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    (
        s(&o["kind"]),
        s(&o["metadata"]["name"]),
        o["metadata"]["namespace"].as_str().map(String::from),
    )
}

/// An object without server-managed noise (and without status).
fn clean(o: Option<Value>) -> Value {
    let Some(mut o) = o else {
        return Value::Null;
    };
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in NOISE {
            m.remove(*k);
        }
    }
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
    o
}

/// The sensitivity marks of an object of `kind`: a Secret's values are masked.
fn secret_marks(kind: &str) -> Value {
    if kind == "Secret" {
        serde_json::json!({"data": true, "stringData": true})
    } else {
        Value::Null
    }
}

/// The object as shown: a Secret's values replaced by `***`.
fn masked(o: &Value, kind: &str) -> Value {
    let mut o = o.clone();
    if kind == "Secret" {
        for field in ["data", "stringData"] {
            if let Some(m) = o.get_mut(field).and_then(Value::as_object_mut) {
                for v in m.values_mut() {
                    *v = Value::String("***".into());
                }
            }
        }
    }
    o
}

/// A unified diff of two objects rendered as pretty JSON.
fn unified_json(address: &str, before: &Value, after: &Value) -> String {
    let show = |v: &Value| match v {
        Value::Null => String::new(),
        v => serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
    };
    unified(address, &show(before), &show(after))
}

/// A unified diff of two texts, headed `before ADDRESS` / `after ADDRESS`.
pub(super) fn unified(address: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("before {address}"), &format!("after {address}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stdin_sources_are_replaced_by_the_capture() {
        let cap = Path::new("/run/cap.yaml");
        for args in [
            v(&["apply", "-f", "-"]),
            v(&["apply", "--filename", "-"]),
            v(&["apply", "-f=-"]),
            v(&["apply", "--filename=-"]),
            v(&["apply", "-Rf", "-"]),
        ] {
            let out = replace_stdin(&args, cap).unwrap_or_else(|| panic!("{args:?}"));
            assert!(out.iter().any(|a| a.ends_with("/run/cap.yaml")), "{out:?}");
            assert!(!out.iter().any(|a| a == "-"), "{out:?}");
        }
        assert_eq!(replace_stdin(&v(&["apply", "-f", "x.yaml"]), cap), None);
    }

    #[test]
    fn secret_values_are_masked_in_a_kubectl_diff() {
        let diff = [
            "diff -u -N /tmp/LIVE-1/v1.Secret.default.creds /tmp/MERGED-2/v1.Secret.default.creds",
            "--- /tmp/LIVE-1/v1.Secret.default.creds",
            "+++ /tmp/MERGED-2/v1.Secret.default.creds",
            "@@ -1,5 +1,5 @@",
            " apiVersion: v1",
            " data:",
            "-  password: aHVudGVyMg==",
            "+  password: c3dvcmRmaXNo",
            " kind: Secret",
            " metadata:",
            "   annotations:",
            r#"-    kubectl.kubernetes.io/last-applied-configuration: {"data":{"password":"aHVudGVyMg=="}}"#,
            "+    kubectl.kubernetes.io/last-applied-configuration: |",
            r#"+      {"stringData":{"token":"plain-secret"}}"#,
            "   name: creds",
            "diff -u -N /tmp/LIVE-1/apps.v1.Deployment.default.web /tmp/MERGED-2/apps.v1.Deployment.default.web",
            "-  replicas: 1",
            "+  replicas: 3",
            "",
        ]
        .join("\n");
        let diff = diff.as_str();
        let masked = mask_secrets_in_diff(diff);
        assert!(
            !masked.contains("aHVudGVyMg") && !masked.contains("c3dvcmRmaXNo"),
            "{masked}"
        );
        assert!(masked.contains("-  password: ***"), "{masked}");
        assert!(masked.contains(" kind: Secret"), "{masked}");
        assert!(!masked.contains("plain-secret"), "{masked}");
        assert!(
            masked.contains("  name: creds"),
            "masking ends with the annotation: {masked}"
        );
        assert!(
            masked.contains("+  replicas: 3"),
            "other objects untouched: {masked}"
        );
        let set = changes_from_unified_diff(&masked);
        let web = set
            .resources
            .iter()
            .find(|r| r.address == "Deployment default/web")
            .unwrap();
        assert_eq!(web.attributes[0].path, "replicas");
        assert_eq!(web.attributes[0].after.as_deref(), Some("3"));
    }

    #[test]
    fn object_addresses_read_from_diff_file_names() {
        assert_eq!(
            object_address("apps.v1.Deployment.default.web"),
            "Deployment default/web"
        );
        assert_eq!(
            object_address("v1.ConfigMap.prod.app.conf"),
            "ConfigMap prod/app.conf"
        );
        assert_eq!(object_address("v1.Namespace.prod"), "Namespace prod");
    }
}
