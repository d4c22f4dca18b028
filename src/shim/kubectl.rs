//! kubectl on the gated path: what only kubectl needs on top of `kube.rs`.
//!
//! - **Refused**, because no approval can be bound to them: `--raw` (a raw HTTP request that
//!   ignores `--dry-run`), `--kuberc`, `--cache-dir`, `edit` and `--edit` (an editor writes the
//!   change after approval), `--prune` / `--applyset` (deletes objects the manifests do not
//!   name), env from stdin (`-e -`), remote manifests, directories as `--from-file`.
//! - **Inputs** are read once into sealed snapshots and the run uses them: `-f` (files,
//!   directories as kubectl walks them, `-` for stdin), `-k` (rendered once by `kubectl
//!   kustomize` and applied as rendered), `--patch-file`, `--from-file`, `--from-env-file`,
//!   `--cert`/`--key`, `--custom`, and the TLS files of the connection.
//! - **What is shown**:
//!   - `delete`: the objects that would go, listed by `kubectl get … -o name` with the same
//!     selection (names after `--`, so none can be read as a flag);
//!   - every command that takes `--dry-run` and `-o` (per the pinned kubectl's flag table:
//!     apply, create, replace, scale, patch, label, set …, run, expose, …): the command itself
//!     with `--dry-run=server -o json` added where the agent's flags end (before its `--`), and
//!     the live objects read with `kubectl get`; both are diffed as objects, Secrets masked
//!     (`diff::kube`). `scale` prints the object as read, so its after-state is the live object
//!     with the new `--replicas`;
//!   - everything else (exec, cp, drain, rollout restart, plugins, uncertain readings): the
//!     command and its target, and a plain statement that no diff is possible.
//!
//! Until the approval, kubectl only ever runs `config view`, `kustomize`, `get` and commands
//! with `--dry-run=server`: nothing acts before approval.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::argv_edit::{render_flags, ArgvEdit, Edited};
use super::kube::{self, Resolved};
use super::prepared::{no_diff, request, Prepared, RunDir, Stop};
use super::sealed::{Sealed, Snapshots};
use crate::argv::kubectl::{is_global_flag, takes_flag};
use crate::argv::Invocation;
use crate::diff::kube::{items, objects_change, SecretValues};
use crate::diff::{Action, ChangeSet, ResourceChange};
use crate::exit as code;
use crate::tool::Tool;

/// Flags of `kubectl delete` that select objects, which `kubectl get` takes too.
const SELECT_FLAGS: &[&str] = &[
    "--all-namespaces",
    "--field-selector",
    "--recursive",
    "--selector",
    "-A",
    "-R",
    "-l",
];
/// Flags of `kubectl apply` that `kubectl diff` takes too (how the sources are applied).
const DIFF_FLAGS: &[&str] = &[
    "--field-manager",
    "--force-conflicts",
    "--recursive",
    "--selector",
    "--server-side",
    "-R",
    "-l",
];
/// Global flags the gate sets itself for every child.
const PINNED: &[&str] = &["--kubeconfig", "--context", "--kuberc", "--cache-dir"];
/// Flags whose value is one file that kubectl reads at run time.
const FILE_FLAGS: &[&str] = &[
    "--patch-file",
    "--from-env-file",
    "--cert",
    "--key",
    "--custom",
    "--certificate-authority",
    "--client-certificate",
    "--client-key",
];

/// Prepares a gated kubectl command.
pub fn prepare(real: &Path, args: &[String], inv: &Invocation) -> Result<Prepared, Stop> {
    let refused = |why: String| Stop::refused("kubectl", why);
    refuse_unbindable(inv).map_err(refused)?;
    let run_dir = RunDir::create().map_err(Stop::internal)?;
    let cache = run_dir.path.join("kube-cache");
    let resolved = kube::resolve(real, Tool::Kubectl, inv, Some(&cache)).map_err(refused)?;
    let mut edit = ArgvEdit::new(args, inv);
    let inputs = Inputs::read(real, inv, &cache, &mut edit).map_err(refused)?;
    for p in kube::pins(Tool::Kubectl, &resolved) {
        edit.insert(p);
    }
    let run = edit.finish();

    let h = Helpers {
        real,
        inv,
        resolved: &resolved,
        inputs: &inputs,
        cache: &cache,
    };
    let path = inv.path_string();
    let mut secrets = inputs.secrets.clone();
    let (text, mut changes) = if !inv.known_subcommand || !inv.uncertain.is_empty() {
        no_kube_diff(args, &resolved, inv)
    } else if path == "delete" {
        h.deletions()?
    } else if path == "apply" {
        h.source_diff(&mut secrets)?
    } else if takes_flag(&path, "--dry-run") && takes_flag(&path, "--output") {
        h.dry_run_diff(&run, &mut secrets)
    } else {
        no_kube_diff(args, &resolved, inv)
    };
    // The last line of defence: no Secret value found anywhere leaves in the text or the model.
    secrets.redact_changes(&mut changes);
    let shown = format!(
        "{}{}\n--- per object ---\n{text}",
        kube::target_header(&resolved.target),
        changes.render()
    );
    let request = request(
        Tool::Kubectl,
        args,
        resolved.target.clone(),
        secrets.redact(&shown),
        Some(&changes),
        inputs.sealed.hashes(),
    );
    let (real_owned, inv_owned, cache_owned) = (real.to_path_buf(), inv.clone(), cache.clone());
    let hashes: Vec<String> = request.artifact_sha256.clone();
    let snapshots = inputs.sealed.with(resolved.kubeconfig);
    Ok(Prepared {
        request,
        program: real.to_path_buf(),
        args: run.args.into_iter().map(OsString::from).collect(),
        no_changes: false,
        target_now: Box::new(move || {
            kube::resolve(&real_owned, Tool::Kubectl, &inv_owned, Some(&cache_owned))
                .map(|r| r.target)
        }),
        // The inputs are sealed: what runs is what was hashed.
        artifacts_now: Box::new(move || Ok(hashes.clone())),
        snapshots,
        kube_cache: Some(cache),
        run_dir: Some(run_dir),
    })
}

/// Refuses what no approval can be bound to.
fn refuse_unbindable(inv: &Invocation) -> Result<(), String> {
    let path = inv.path_string();
    if inv.has_flag(&["--raw"]) {
        return Err(
            "--raw sends a raw HTTP request that ignores --dry-run, so no helper can show what \
             it does (use the typed command, for example `kubectl delete deployment web`)"
                .into(),
        );
    }
    if inv.has_flag(&["--kuberc"]) {
        return Err(
            "--kuberc loads preferences that can add flags to the command behind the \
             approver's back; gated commands run with kuberc off"
                .into(),
        );
    }
    if inv.has_flag(&["--cache-dir"]) {
        return Err(
            "--cache-dir points kubectl at a discovery cache the agent controls; gated \
             commands use a private one"
                .into(),
        );
    }
    if matches!(path.as_str(), "edit" | "apply edit-last-applied") || inv.has_flag(&["--edit"]) {
        return Err(
            "it opens an editor after approval, so what runs would be whatever the editor \
             writes (make the change with apply, patch or set, which can be shown)"
                .into(),
        );
    }
    if inv.has_flag(&["--prune", "--applyset", "--prune-allowlist"]) {
        return Err(
            "--prune deletes objects the manifests do not name, and the gate cannot show which \
             (delete them explicitly)"
                .into(),
        );
    }
    if inv
        .flags
        .iter()
        .any(|(n, v)| matches!(n.as_str(), "-e" | "--env") && v.as_deref() == Some("-"))
    {
        return Err(
            "it reads variables from stdin after approval, which cannot be shown (pass them as \
             arguments)"
                .into(),
        );
    }
    Ok(())
}

/// The agent's inputs, sealed, and the Secret values found in them.
struct Inputs {
    sealed: Snapshots,
    /// The `--filename=…` flags naming the manifest snapshots, in the agent's order.
    sources: Vec<String>,
    secrets: SecretValues,
}

impl Inputs {
    /// Reads every input once into a sealed snapshot and edits the argv to name the snapshots.
    fn read(
        real: &Path,
        inv: &Invocation,
        cache: &Path,
        edit: &mut ArgvEdit<'_>,
    ) -> Result<Inputs, String> {
        let mut inputs = Inputs {
            sealed: Snapshots::default(),
            sources: Vec::new(),
            secrets: SecretValues::default(),
        };
        let recursive = inv
            .flag_value(&["-R", "--recursive"])
            .map_or(inv.has_flag(&["-R", "--recursive"]), |v| v != "false");
        let mut stdin_read = false;
        for (i, (name, value)) in inv.flags.iter().enumerate() {
            let Some(v) = value else { continue };
            let files: Vec<(String, Vec<u8>)> = match name.as_str() {
                "-f" | "--filename" => {
                    if v == "-" {
                        if std::mem::replace(&mut stdin_read, true) {
                            return Err("stdin is named as a source twice".into());
                        }
                        let mut bytes = Vec::new();
                        std::io::stdin()
                            .read_to_end(&mut bytes)
                            .map_err(|e| format!("cannot read stdin: {e}"))?;
                        vec![("stdin".into(), bytes)]
                    } else if is_url(v) {
                        return Err(format!(
                            "{v} is remote: an approval cannot be bound to what a URL serves \
                             (download it and pass the file)"
                        ));
                    } else {
                        read_source(Path::new(v), recursive)?
                    }
                }
                "-k" | "--kustomize" => {
                    vec![(format!("kustomize {v}"), kustomize(real, v, cache)?)]
                }
                n if FILE_FLAGS.contains(&n) => {
                    let s = inputs
                        .sealed
                        .seal(v, super::sealed::read_input(Path::new(v))?)?;
                    edit.drop_flag(i);
                    edit.insert(format!("{name}={s}"));
                    continue;
                }
                "--from-file" => {
                    let (key, file) = match v.split_once('=') {
                        Some((k, f)) => (k.to_string(), f),
                        None => (
                            Path::new(v)
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            v.as_str(),
                        ),
                    };
                    if Path::new(file).is_dir() {
                        return Err(format!(
                            "--from-file {file} is a directory; name its files one by one so \
                             each can be read once and shown"
                        ));
                    }
                    let s = inputs
                        .sealed
                        .seal(file, super::sealed::read_input(Path::new(file))?)?;
                    edit.drop_flag(i);
                    edit.insert(format!("--from-file={key}={s}"));
                    continue;
                }
                _ => continue,
            };
            edit.drop_flag(i);
            for (label, bytes) in files {
                // The Secrets of the manifests, for the last line of defence.
                for doc in crate::diff::kube::yaml_documents(&String::from_utf8_lossy(&bytes))
                    .unwrap_or_default()
                {
                    inputs.secrets.collect(&doc);
                }
                let path = inputs.sealed.seal(&label, bytes)?;
                let flag = format!("--filename={path}");
                edit.insert(flag.clone());
                inputs.sources.push(flag);
            }
        }
        Ok(inputs)
    }
}

/// A `-f` source: a file, or a directory's manifest files as kubectl walks it.
fn read_source(p: &Path, recursive: bool) -> Result<Vec<(String, Vec<u8>)>, String> {
    super::sealed::check_input_path(p)?;
    let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let files = if meta.is_dir() {
        super::sealed::manifest_files(p, recursive)?
    } else {
        vec![p.to_path_buf()]
    };
    files
        .into_iter()
        .map(|f| Ok((f.display().to_string(), super::sealed::read_input(&f)?)))
        .collect()
}

/// `kubectl kustomize DIR`, rendered once.
fn kustomize(real: &Path, dir: &str, cache: &Path) -> Result<Vec<u8>, String> {
    if !is_url(dir) {
        super::sealed::check_input_path(Path::new(dir))?;
    }
    let mut c = Command::new(real);
    c.args(["kustomize", dir]);
    kube::child_env(&mut c, Some(cache));
    let (status, out, err) = kube::run_helper(c)?;
    if status != 0 {
        return Err(format!("kubectl kustomize {dir} failed: {err}"));
    }
    Ok(out)
}

fn is_url(f: &str) -> bool {
    let f = f.to_ascii_lowercase();
    f.starts_with("http://") || f.starts_with("https://")
}

/// The shown text when no diff is possible, with what the approver should know on top.
fn no_kube_diff(args: &[String], r: &Resolved, inv: &Invocation) -> (String, ChangeSet) {
    let mut text = no_diff(Tool::Kubectl, args, &r.target);
    if !inv.uncertain.is_empty() {
        text.push_str(&format!(
            "hitl-gate could not read this command line with certainty: {}\n",
            inv.uncertain.join("; ")
        ));
    }
    if inv.has_flag(&["-i", "--stdin"]) {
        text.push_str(
            "It reads the agent's standard input after approval; that input is not shown.\n",
        );
    }
    (text, ChangeSet::default())
}

/// The read-only helper commands, all pinned to the resolved target.
struct Helpers<'a> {
    real: &'a Path,
    inv: &'a Invocation,
    resolved: &'a Resolved,
    inputs: &'a Inputs,
    cache: &'a PathBuf,
}

impl Helpers<'_> {
    /// A kubectl command with the kube child environment.
    fn command(&self, args: &[String]) -> Command {
        let mut c = Command::new(self.real);
        c.args(args);
        kube::child_env(&mut c, Some(self.cache));
        c
    }

    /// The agent's global flags (but the ones the gate pins) and the pins.
    fn global(&self) -> Vec<String> {
        let mut g = render_flags(self.inv, |f| is_global_flag(f) && !PINNED.contains(&f));
        g.extend(kube::pins(Tool::Kubectl, self.resolved));
        g
    }

    /// `kubectl diff` of the sources, as `apply` will apply them, with the gate's own collector
    /// as the external diff program (`kube_diff.rs`): both sides come back as
    /// objects and are diffed and masked here.
    fn source_diff(&self, secrets: &mut SecretValues) -> Result<(String, ChangeSet), Stop> {
        let fail = |why: String| Stop::refused("kubectl", why);
        let me = std::env::current_exe()
            .map_err(|e| fail(format!("cannot find this binary for kubectl diff: {e}")))?;
        let me = me.to_str().filter(|p| !p.contains(' ')).ok_or_else(|| {
            fail(format!(
                "this binary's path {} has a space, which KUBECTL_EXTERNAL_DIFF cannot hold",
                me.display()
            ))
        })?;
        let mut args = vec!["diff".to_string()];
        args.extend(self.global());
        args.extend(render_flags(self.inv, |f| DIFF_FLAGS.contains(&f)));
        args.extend(self.inputs.sources.iter().cloned());
        let mut c = self.command(&args);
        c.env(
            "KUBECTL_EXTERNAL_DIFF",
            format!("{me} {}", super::kube_diff::WORD),
        );
        let (status, out, err) =
            kube::run_helper(c).map_err(|e| Stop::new(code::CANNOT_EXECUTE, e))?;
        if status > 1 {
            return Err(fail(format!("kubectl diff failed (exit {status}: {err})")));
        }
        // kubectl always runs its diff program once the objects are read: no collector output
        // means the change was not shown, which is an error, never "no changes".
        let text = String::from_utf8_lossy(&out);
        let line = text
            .lines()
            .find(|l| l.contains(super::kube_diff::MARKER))
            .ok_or_else(|| fail(format!("kubectl diff showed no change ({err})")))?;
        let v: Value = serde_json::from_str(line)
            .map_err(|e| fail(format!("the diff collector printed no JSON: {e}")))?;
        let pairs = v[super::kube_diff::MARKER]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let (mut live, mut merged) = (Vec::new(), Vec::new());
        for p in &pairs {
            secrets.collect(&p["live"]);
            secrets.collect(&p["merged"]);
            if !p["live"].is_null() {
                live.push(p["live"].clone());
            }
            if !p["merged"].is_null() {
                merged.push(p["merged"].clone());
            }
        }
        Ok(objects_change(&live, &merged, true, false))
    }

    /// The objects `delete` would remove: `kubectl get` with the same selection.
    fn deletions(&self) -> Result<(String, ChangeSet), Stop> {
        let mut args = vec!["get".to_string()];
        args.extend(self.global());
        args.extend(render_flags(self.inv, |f| SELECT_FLAGS.contains(&f)));
        args.extend(self.inputs.sources.iter().cloned());
        args.extend(["-o", "name", "--ignore-not-found", "--"].map(String::from));
        args.extend(self.inv.positionals.iter().cloned());
        let (status, out, err) = kube::run_helper(self.command(&args))
            .map_err(|e| Stop::new(code::CANNOT_EXECUTE, e))?;
        if status != 0 {
            return Err(Stop::tool_failed(
                status,
                format!(
                    "kubectl get (to list what delete removes) failed (exit {status}: {err}); \
                     nothing was submitted"
                ),
            ));
        }
        let names: Vec<String> = String::from_utf8_lossy(&out)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
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

    /// The server's dry run of the command itself against the live objects. A dry run that
    /// fails is not fatal: the approver is told no diff could be made, and why.
    fn dry_run_diff(&self, run: &Edited, secrets: &mut SecretValues) -> (String, ChangeSet) {
        let no = |why: String| (format!("No diff: {why}\n"), ChangeSet::default());
        let args = run.with(&["--dry-run=server", "-o", "json"]);
        let (status, out, err) = match kube::run_helper(self.command(&args)) {
            Ok(r) => r,
            Err(e) => return no(e),
        };
        if status != 0 {
            return no(format!("the server's dry run failed: {err}"));
        }
        let Ok(after) = serde_json::from_slice::<Value>(&out) else {
            return no("the dry run printed no JSON".into());
        };
        let mut after = items(after);
        if after.is_empty() {
            return no("the dry run returned no object".into());
        }
        // `scale --dry-run=server -o json` prints the object as read: the change is the
        // --replicas the agent asked for.
        if self.inv.path_string() == "scale" {
            let Some(n) = self
                .inv
                .flag_value(&["--replicas"])
                .and_then(|r| r.parse::<u64>().ok())
            else {
                return no("scale without a --replicas count".into());
            };
            for o in &mut after {
                o["spec"]["replicas"] = Value::from(n);
            }
        }
        let live = match self.live(&after) {
            Ok(l) => l,
            Err(e) => return no(format!("the live objects could not be read: {e}")),
        };
        for o in after.iter().chain(&live) {
            secrets.collect(o);
        }
        // A status patch changes only what a diff otherwise leaves out as noise.
        let status = self.inv.flag_value(&["--subresource"]) == Some("status");
        objects_change(&live, &after, false, status)
    }

    /// The live objects: with `--subresource`, that subresource of the named objects; else the
    /// objects named by `after`, read in one `kubectl get -f`.
    fn live(&self, after: &[Value]) -> Result<Vec<Value>, String> {
        let mut args = vec!["get".to_string()];
        args.extend(self.global());
        // Kept open until kubectl has read it.
        let _list;
        if let Some(sub) = self.inv.flag_value(&["--subresource"]) {
            args.push(format!("--subresource={sub}"));
            args.extend(self.inputs.sources.iter().cloned());
            args.extend(["-o", "json", "--ignore-not-found", "--"].map(String::from));
            args.extend(self.inv.positionals.iter().cloned());
        } else {
            let ids: Vec<Value> = after
                .iter()
                .map(|o| {
                    json!({"apiVersion": o["apiVersion"], "kind": o["kind"], "metadata": {
                        "name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"]}})
                })
                .collect();
            let list = Sealed::new(
                "objects",
                json!({"apiVersion": "v1", "kind": "List", "items": ids})
                    .to_string()
                    .as_bytes(),
            )?;
            args.push(format!("--filename={}", list.path()));
            args.extend(["-o", "json", "--ignore-not-found"].map(String::from));
            _list = list;
        }
        let (status, out, err) = kube::run_helper(self.command(&args))?;
        if status != 0 {
            return Err(err);
        }
        if out.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_slice(&out)
            .map_err(|e| format!("kubectl get printed no JSON: {e}"))?;
        let found = items(v);
        Ok(found)
    }
}
