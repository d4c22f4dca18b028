//! The change model of a gated helm command, covering every object the command touches,
//! computed by read-only helpers pinned to the resolved target:
//!
//! - **install, upgrade**: the release rendered by the command itself with
//!   `--dry-run=server -o json`, against the release's current manifest (`helm get manifest`;
//!   none for a new release), object by object, as helm-diff shows it; and the user-supplied
//!   values. Objects the release does not hold yet, and the hooks the command runs, are then
//!   looked up in the live cluster (`kubectl get`): a hook whose object exists replaces it (under
//!   `before-hook-creation` helm deletes the live object first), and a new object that already
//!   exists is an update of the live one, not a create.
//! - **uninstall** (every release named): each release's manifest as removals, and its delete
//!   hooks. A release that does not exist adds nothing.
//! - **rollback**: the current manifest against the target revision's, and that revision's
//!   rollback hooks.
//! - Anything else gated (test, plugins, push): no model can be made.
//!
//! Absent is not empty: a lookup that fails (other than "release not found"), a manifest that
//! cannot be read, or a command without a model makes the change unknown, never "no changes".

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::argv_edit::{render_flags, Edited};
use super::helm_inputs::{Env, Inputs};
use super::kube::{self, Resolved};
use super::kubectl_show::live_objects;
use super::prepared::{no_diff, Stop};
use crate::argv::helm::is_global_flag;
use crate::argv::Invocation;
use crate::diff::kube::{
    object_change, objects_change, value_changes, yaml_documents, ObjectKey, SecretValues,
};
use crate::diff::{Action, ChangeSet, ResourceChange};
use crate::tool::Tool;

/// Global flags the gate sets itself.
pub const PINNED: &[&str] = &["--kubeconfig", "--kube-context", "--kube-ca-file"];

/// What a gated helm command shows: the text, the model, and the rendered manifest the run is
/// bound to (install and upgrade only).
pub struct Model {
    pub text: String,
    pub changes: ChangeSet,
    pub rendered: Option<String>,
}

/// A render of the release: the manifest with its hooks (what the approval is bound to), the
/// hooks apart, the user-supplied values, the name.
pub struct Render {
    pub manifest: String,
    main: String,
    hooks: String,
    values: Value,
    name: String,
}

/// Runs a `--dry-run=server -o json` render.
pub fn render(c: std::process::Command) -> Result<Render, String> {
    let (status, out, err) = kube::run_helper(c)?;
    if status != 0 {
        return Err(err);
    }
    let v: Value =
        serde_json::from_slice(&out).map_err(|e| format!("helm printed no JSON: {e}"))?;
    let main = v["manifest"].as_str().unwrap_or_default().to_string();
    let mut hooks = String::new();
    for hook in v["hooks"].as_array().map_or(&[][..], Vec::as_slice) {
        if let Some(m) = hook["manifest"].as_str() {
            hooks.push_str("\n---\n");
            hooks.push_str(m);
        }
    }
    Ok(Render {
        manifest: format!("{main}{hooks}"),
        main,
        hooks,
        values: v["config"].clone(),
        name: v["name"].as_str().unwrap_or_default().to_string(),
    })
}

/// The read-only helpers of a helm command, pinned to the resolved target.
pub struct Helpers<'a> {
    pub env: Env<'a>,
    /// The real kubectl, for the live objects.
    pub kubectl: &'a Path,
    pub inv: &'a Invocation,
    pub resolved: &'a Resolved,
    pub inputs: &'a Inputs,
}

impl Helpers<'_> {
    /// The model of the command at `path`; `run` is its argv as it will run.
    pub fn model(
        &self,
        path: &str,
        args: &[String],
        run: &Edited,
        secrets: &mut SecretValues,
    ) -> Result<Model, Stop> {
        let model = match path {
            "upgrade" | "install" => return self.release(path, run, secrets),
            "uninstall" | "delete" | "del" | "un" => self.uninstall(secrets),
            "rollback" => self.rollback(secrets),
            _ => (
                no_diff(Tool::Helm, args, &self.resolved.target),
                ChangeSet::unknown(format!("no diff is possible for `helm {path}`")),
            ),
        };
        Ok(Model {
            text: model.0,
            changes: model.1,
            rendered: None,
        })
    }

    /// The command itself as a server-side dry run.
    pub fn render(&self, run: &Edited) -> Result<Render, String> {
        render(
            self.env
                .command(&run.with(&["--dry-run=server", "-o", "json"])),
        )
    }

    /// install and upgrade: the render against the release, hooks and new objects against the
    /// live cluster, and the values.
    fn release(&self, path: &str, run: &Edited, secrets: &mut SecretValues) -> Result<Model, Stop> {
        let r = self
            .render(run)
            .map_err(|e| Stop::refused("helm", format!("the dry run failed ({e})")))?;
        let mut unknown = ChangeSet::default();
        let old = self.lookup(&["get", "manifest", &r.name], &mut unknown);
        let old_values = self
            .lookup(&["get", "values", &r.name, "-o", "json"], &mut unknown)
            .map_or(Value::Null, |v| {
                serde_json::from_str(&v).unwrap_or(Value::Null)
            });
        let events: &[&str] = if path == "install" {
            &["pre-install", "post-install"]
        } else {
            &["pre-upgrade", "post-upgrade", "pre-install", "post-install"]
        };
        let (mut text, mut set) =
            self.objects(&old.unwrap_or_default(), &r.main, &r.hooks, events, secrets);
        set.extend(unknown);
        let values = value_changes(&old_values, &r.values);
        if !values.is_empty() {
            text.push_str("\nValues (user-supplied):\n");
            for a in &values {
                text.push_str(&format!(
                    "    {}: {} -> {}\n",
                    a.path,
                    a.before.as_deref().unwrap_or("(none)"),
                    a.after.as_deref().unwrap_or("(none)")
                ));
            }
            set.resources.push(ResourceChange {
                address: format!("values of release {}", r.name),
                action: Action::Update,
                action_reason: None,
                attributes: values,
            });
        }
        Ok(Model {
            text,
            changes: set,
            rendered: Some(r.manifest),
        })
    }

    /// uninstall: every release named, its objects removed and its delete hooks run.
    fn uninstall(&self, secrets: &mut SecretValues) -> (String, ChangeSet) {
        let mut text = String::new();
        let mut set = ChangeSet::default();
        if self.inv.positionals.is_empty() {
            set.unknown.push("no release is named".into());
        }
        for rel in &self.inv.positionals {
            let mut unknown = ChangeSet::default();
            let Some(manifest) = self.lookup(&["get", "manifest", rel], &mut unknown) else {
                if unknown.is_complete() {
                    text.push_str(&format!(
                        "Release {rel}: does not exist; nothing to remove\n"
                    ));
                }
                set.extend(unknown);
                continue;
            };
            let hooks = self.hooks(rel, None, &mut unknown);
            let events = &["pre-delete", "post-delete"];
            let (t, s) = self.objects(&manifest, "", &hooks, events, secrets);
            text.push_str(&format!("Release {rel}:\n{t}"));
            set.extend(s);
            set.extend(unknown);
        }
        (text, set)
    }

    /// rollback: the current manifest against the target revision's, and its rollback hooks.
    fn rollback(&self, secrets: &mut SecretValues) -> (String, ChangeSet) {
        let mut set = ChangeSet::default();
        let Some(release) = self.inv.positionals.first() else {
            return (String::new(), ChangeSet::unknown("no release is named"));
        };
        let current = self.lookup(&["get", "manifest", release], &mut set);
        let revision = match self.inv.positionals.get(1).filter(|r| *r != "0") {
            Some(r) => Some(r.clone()),
            None => self
                .lookup(&["status", release, "-o", "json"], &mut set)
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .and_then(|s| s["version"].as_u64())
                .map(|v| v.saturating_sub(1).to_string()),
        };
        let Some(revision) = revision else {
            set.unknown.push(format!(
                "the revision of release {release} to roll back to is unknown"
            ));
            return (String::new(), set);
        };
        let target = self.lookup(
            &["get", "manifest", release, "--revision", &revision],
            &mut set,
        );
        if current.is_none() || target.is_none() {
            set.unknown.push(format!(
                "release {release} or its revision {revision} could not be read"
            ));
        }
        let hooks = self.hooks(release, Some(&revision), &mut set);
        let events = &["pre-rollback", "post-rollback"];
        let (text, s) = self.objects(
            &current.unwrap_or_default(),
            &target.unwrap_or_default(),
            &hooks,
            events,
            secrets,
        );
        set.extend(s);
        (format!("Rollback to revision {revision}:\n{text}"), set)
    }

    /// The hooks of a release (at a revision), unless `--no-hooks`.
    fn hooks(&self, release: &str, revision: Option<&str>, set: &mut ChangeSet) -> String {
        if self.inv.has_flag(&["--no-hooks"]) {
            return String::new();
        }
        let mut sub = vec!["get", "hooks", release];
        if let Some(r) = revision {
            sub.extend(["--revision", r]);
        }
        self.lookup(&sub, set).unwrap_or_default()
    }

    /// A read-only helm command (`get`, `status`) with the global flags: its stdout, or `None`
    /// when the release does not exist. Any other failure is recorded in `set` as unknown.
    fn lookup(&self, sub: &[&str], set: &mut ChangeSet) -> Option<String> {
        let mut args: Vec<String> = sub.iter().map(|s| s.to_string()).collect();
        args.extend(render_flags(self.inv, |f| {
            is_global_flag(f) && !PINNED.contains(&f)
        }));
        args.extend(self.inputs.global.iter().cloned());
        args.extend(kube::pins(Tool::Helm, self.resolved));
        let failed = match kube::run_helper(self.env.command(&args)) {
            Ok((0, out, _)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok((_, _, err)) if err.contains("release: not found") => return None,
            Ok((status, _, err)) => format!("exit {status}: {err}"),
            Err(e) => e,
        };
        set.unknown
            .push(format!("`helm {}` failed ({failed})", sub.join(" ")));
        None
    }

    /// `old` against `new` (objects only in `old` removed), then the objects `old` does not
    /// hold and the hooks for `events` against the live cluster.
    fn objects(
        &self,
        old: &str,
        new: &str,
        hooks: &str,
        events: &[&str],
        secrets: &mut SecretValues,
    ) -> (String, ChangeSet) {
        let (o, n, h) = match (
            yaml_documents(old),
            yaml_documents(new),
            yaml_documents(hooks),
        ) {
            (Ok(o), Ok(n), Ok(h)) => (o, n, h),
            (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
                let why = format!("a manifest could not be read ({e})");
                return (
                    format!("{why}; its objects are not shown.\n"),
                    ChangeSet::unknown(why),
                );
            }
        };
        let hooks: Vec<Value> = h.into_iter().filter(|x| runs_on(x, events)).collect();
        for x in o.iter().chain(&n).chain(&hooks) {
            secrets.collect(x);
        }
        let (mut text, mut set) = objects_change(&o, &n, true, false);
        let held: BTreeSet<ObjectKey> = o.iter().map(ObjectKey::of).collect();
        let fresh: Vec<&Value> = n
            .iter()
            .filter(|x| !held.contains(&ObjectKey::of(x)))
            .collect();
        if fresh.is_empty() && hooks.is_empty() {
            return (text, set);
        }
        let probe: Vec<Value> = fresh.iter().copied().chain(&hooks).cloned().collect();
        let ns = self.resolved.target.namespace.clone().unwrap_or_default();
        let mut global = kube::pins(Tool::Kubectl, self.resolved);
        global.push(format!("--namespace={ns}"));
        let live = match live_objects(self.kubectl, self.env.cache, &global, &probe) {
            Ok(l) => l,
            Err(e) => {
                set.unknown
                    .push(format!("the live objects could not be read ({e})"));
                return (text, set);
            }
        };
        for l in &live {
            secrets.collect(l);
        }
        for f in fresh {
            let Some(l) = counterpart(&live, f, &ns) else {
                continue;
            };
            let why = "exists in the cluster outside the release: the live object is changed";
            let (t, rc) = against_live(l, f, Action::Update, why);
            set.resources.retain(|r| {
                !(r.action == Action::Create && r.address == ObjectKey::of(f).address())
            });
            text.push_str(&t);
            set.resources.push(rc);
        }
        text.push_str("\nHooks, against the live cluster:\n");
        for hk in &hooks {
            let (t, rc) = match counterpart(&live, hk, &ns) {
                Some(l) => against_live(
                    l,
                    hk,
                    Action::Replace,
                    "a hook: helm deletes the live object and creates it again",
                ),
                None => match object_change(None, Some(hk), false) {
                    Some(c) => c,
                    None => continue,
                },
            };
            text.push_str(&t);
            set.resources.push(rc);
        }
        (text, set)
    }
}

/// Whether a hook object runs on one of `events` (its `helm.sh/hook` annotation, which is what
/// helm reads).
fn runs_on(hook: &Value, events: &[&str]) -> bool {
    hook["metadata"]["annotations"]["helm.sh/hook"]
        .as_str()
        .is_some_and(|v| v.split(',').any(|e| events.contains(&e.trim())))
}

/// The live object `o` names: same group, kind and name, and its namespace (the release's when
/// the manifest gives none; none for a cluster-scoped object).
fn counterpart<'a>(live: &'a [Value], o: &Value, ns: &str) -> Option<&'a Value> {
    let k = ObjectKey::of(o);
    live.iter().find(|l| {
        let lk = ObjectKey::of(l);
        lk.group == k.group
            && lk.kind == k.kind
            && lk.name == k.name
            && (lk.namespace == k.namespace
                || (k.namespace.is_none() && lk.namespace.as_deref().is_none_or(|n| n == ns)))
    })
}

/// `new` against the live object it changes, with the action and why.
fn against_live(live: &Value, new: &Value, action: Action, why: &str) -> (String, ResourceChange) {
    let address = ObjectKey::of(live).address();
    let (text, mut rc) = object_change(Some(live), Some(new), false).unwrap_or_else(|| {
        let rc = ResourceChange {
            address: address.clone(),
            action: Action::Update,
            action_reason: None,
            attributes: Vec::new(),
        };
        (format!("{address}: the same as the live object\n"), rc)
    });
    rc.address = address;
    rc.action = action;
    rc.action_reason = Some(why.into());
    (text, rc)
}
