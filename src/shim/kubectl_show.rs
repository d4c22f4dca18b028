//! What a gated kubectl command shows the approver, computed by read-only kubectl helpers
//! pinned to the resolved target (`kube.rs`), with the kube child environment:
//!
//! - `delete`: the objects that would go, listed by `kubectl get … -o name` with the same
//!   selection (names after `--`, so none can be read as a flag);
//! - `apply`: `kubectl diff` with this binary as its external diff program (`kube_diff.rs`), so
//!   both sides come back as objects, kubectl's own view of the apply;
//! - every other command that takes `--dry-run` and `-o`: the command itself with
//!   `--dry-run=server -o json` added where the agent's flags end, against the live objects read
//!   with `kubectl get`.
//!
//! Objects are diffed and masked in `diff::kube`; every Secret value seen is collected for the
//! last line of defence.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::argv_edit::{render_flags, Edited};
use super::kube::{self, Resolved};
use super::prepared::Stop;
use super::sealed::Sealed;
use crate::argv::kubectl::is_global_flag;
use crate::argv::Invocation;
use crate::diff::kube::{clean, items, key_fields, objects_change, SecretValues};
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
/// The read-only helper commands, all pinned to the resolved target.
pub struct Helpers<'a> {
    pub real: &'a Path,
    pub inv: &'a Invocation,
    pub resolved: &'a Resolved,
    /// The `--filename=…` flags naming the manifest snapshots, in the agent's order.
    pub sources: &'a [String],
    pub cache: &'a PathBuf,
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
    pub fn source_diff(&self, secrets: &mut SecretValues) -> Result<(String, ChangeSet), Stop> {
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
        args.extend(self.sources.iter().cloned());
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

    /// The objects `delete` would remove: `kubectl get -o json` with the same selection, each
    /// named as kubectl names it (`deployment.apps/web`) with its key fields (replicas, images,
    /// a Secret's key names but never a value: `diff::kube::key_fields`).
    pub fn deletions(&self, secrets: &mut SecretValues) -> Result<(String, ChangeSet), Stop> {
        let mut args = vec!["get".to_string()];
        args.extend(self.global());
        args.extend(render_flags(self.inv, |f| SELECT_FLAGS.contains(&f)));
        args.extend(self.sources.iter().cloned());
        args.extend(["-o", "json", "--ignore-not-found", "--"].map(String::from));
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
        // Nothing found prints nothing; anything else must be kubectl's JSON.
        let objects = match String::from_utf8_lossy(&out).trim() {
            "" => Vec::new(),
            json => items(serde_json::from_str(json).map_err(|e| {
                Stop::refused(
                    "kubectl",
                    format!("kubectl get (to list what delete removes) printed no JSON: {e}"),
                )
            })?),
        };
        let mut text = String::from("Objects that will be DELETED:\n");
        let mut changes = ChangeSet::default();
        for o in &objects {
            secrets.collect(o);
            let address = kubectl_name(o);
            text.push_str(&format!("  - {address}\n"));
            changes.resources.push(ResourceChange {
                address,
                action: Action::Delete,
                action_reason: None,
                attributes: key_fields(&clean(o.clone(), false)),
            });
        }
        if objects.is_empty() {
            text.push_str("  (none found now)\n");
        }
        Ok((text, changes))
    }

    /// The server's dry run of the command itself against the live objects. A dry run that
    /// fails is not fatal: the approver is told no diff could be made, and why, and the change
    /// is unknown (never "no changes").
    pub fn dry_run_diff(&self, run: &Edited, secrets: &mut SecretValues) -> (String, ChangeSet) {
        let no = |why: String| {
            let text = format!("No diff: {why}\n");
            (text, ChangeSet::unknown(format!("no diff: {why}")))
        };
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
        let Some(sub) = self.inv.flag_value(&["--subresource"]) else {
            return live_objects(self.real, self.cache, &self.global(), after);
        };
        let mut args = vec!["get".to_string()];
        args.extend(self.global());
        args.push(format!("--subresource={sub}"));
        args.extend(self.sources.iter().cloned());
        args.extend(["-o", "json", "--ignore-not-found", "--"].map(String::from));
        args.extend(self.inv.positionals.iter().cloned());
        get_json(self.command(&args))
    }
}

/// The live counterparts of `objects` (those that exist), read in one `kubectl get -f` of a
/// sealed list of their kinds and names, with `global` (the pins) and the kube child
/// environment. Read-only: only `get` runs.
pub fn live_objects(
    kubectl: &Path,
    cache: &Path,
    global: &[String],
    objects: &[Value],
) -> Result<Vec<Value>, String> {
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Value> = objects
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
    let mut args = vec!["get".to_string()];
    args.extend(global.iter().cloned());
    args.push(format!("--filename={}", list.path()));
    args.extend(["-o", "json", "--ignore-not-found"].map(String::from));
    let mut c = Command::new(kubectl);
    c.args(&args);
    kube::child_env(&mut c, Some(cache));
    // `list` stays open until kubectl has read it.
    let found = get_json(c);
    drop(list);
    found
}

/// Runs a `kubectl get … -o json` helper: its objects, none for empty output.
fn get_json(c: Command) -> Result<Vec<Value>, String> {
    let (status, out, err) = kube::run_helper(c)?;
    if status != 0 {
        return Err(err);
    }
    if out.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let v: Value =
        serde_json::from_slice(&out).map_err(|e| format!("kubectl get printed no JSON: {e}"))?;
    Ok(items(v))
}

/// An object's name as `kubectl get -o name` prints it: `kind.group/name` (`pod/x` in the core
/// group).
fn kubectl_name(o: &Value) -> String {
    let kind = o["kind"].as_str().unwrap_or("unknown").to_lowercase();
    let group = o["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .map(|(g, _)| g);
    let name = o["metadata"]["name"].as_str().unwrap_or("");
    match group {
        Some(g) => format!("{kind}.{g}/{name}"),
        None => format!("{kind}/{name}"),
    }
}
