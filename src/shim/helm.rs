//! helm on the gated path: what only helm needs on top of `kube.rs`.
//!
//! - **Target**: as for kubectl, with helm's `--kube-context`, `--kubeconfig`,
//!   `--kube-apiserver`, `-n` and their `HELM_*` variables, resolved with the real kubectl (which
//!   must be found) and pinned with `--kubeconfig` and `--kube-context`.
//! - **Inputs**, read once and sealed; the run uses the snapshots: the chart (a directory is
//!   packaged with `helm package`, a local archive copied, anything else pulled once with
//!   `helm pull` and the agent's repository flags, which the run then no longer needs), the
//!   values files, the `--set-file` files and `--kube-ca-file`.
//! - **upgrade, install**: new = the `.manifest` (and hook manifests) of the same command with
//!   `--dry-run=server -o json`; old = `helm get manifest REL`. Both are parsed and diffed as
//!   objects (Secrets masked), and the user-supplied values are diffed too. The approval is
//!   bound to the SHA-256 of the rendered manifest and of every snapshot; right before the run
//!   the release is rendered again from the same snapshots, so what the chart looks up in the
//!   cluster cannot have changed either.
//! - **uninstall / delete**: the current manifest, as removals. **rollback**: the current
//!   manifest against the target revision's. Anything else gated (test, plugin install, push):
//!   the command and its target, no diff.
//! - **Refused**: `--post-renderer` (a program that rewrites the manifest after it was shown)
//!   unless `tools.helm.allow_post_renderer = true`; values from stdin, devices or URLs;
//!   `--generate-name` (a new name on every render); `--dependency-update` (fetches at run time;
//!   run `helm dependency update` first).

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::argv_edit::{render_flags, ArgvEdit, Edited};
use super::helm_inputs::{command, Env, Inputs};
use super::kube::{self, Resolved};
use super::prepared::{no_diff, request, Prepared, RunDir, Stop};
use crate::argv::helm::is_global_flag;
use crate::argv::Invocation;
use crate::diff::kube::{manifest_change, value_changes, SecretValues};
use crate::diff::{Action, ChangeSet, ResourceChange};
use crate::tool::Tool;

/// Global flags the gate sets itself.
const PINNED: &[&str] = &["--kubeconfig", "--kube-context", "--kube-ca-file"];
/// Prepares a gated helm command. `kubectl` resolves the kube target.
pub fn prepare(
    real: &Path,
    kubectl: &Path,
    args: &[String],
    inv: &Invocation,
    allow_post_renderer: bool,
) -> Result<Prepared, Stop> {
    let refused = |why: String| Stop::refused("helm", why);
    refuse_unbindable(inv, allow_post_renderer).map_err(refused)?;
    let run_dir = RunDir::create().map_err(Stop::internal)?;
    let cache = run_dir.path.join("kube-cache");
    let resolved = kube::resolve(kubectl, Tool::Helm, inv, Some(&cache)).map_err(refused)?;
    let path = inv.path_string();
    let mut edit = ArgvEdit::new(args, inv);
    let h0 = Env {
        real,
        cache: &cache,
        run_dir: &run_dir.path,
    };
    let inputs = Inputs::read(&h0, inv, &path, &mut edit).map_err(refused)?;
    for p in kube::pins(Tool::Helm, &resolved) {
        edit.insert(p);
    }
    let run = edit.finish();
    let h = Helpers {
        env: h0,
        inv,
        resolved: &resolved,
        inputs: &inputs,
    };
    let release = inv.positionals.first().cloned().unwrap_or_default();
    let mut secrets = SecretValues::default();
    let (text, mut changes, rendered) = match path.as_str() {
        "upgrade" | "install" => {
            let r = h
                .render(&run)
                .map_err(|e| Stop::refused("helm", format!("the dry run failed ({e})")))?;
            let old = h.get(&["get", "manifest", &r.name]).unwrap_or_default();
            let old_values = h
                .get(&["get", "values", &r.name, "-o", "json"])
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or(Value::Null);
            let (mut text, mut set) = manifest_change(&old, &r.manifest, &mut secrets);
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
            (text, set, Some(r.manifest))
        }
        "uninstall" | "delete" | "del" | "un" => {
            let old = h.get(&["get", "manifest", &release]).unwrap_or_default();
            let (text, set) = manifest_change(&old, "", &mut secrets);
            (text, set, None)
        }
        "rollback" => {
            let current = h.get(&["get", "manifest", &release]).unwrap_or_default();
            let revision = match inv.positionals.get(1) {
                Some(r) => r.clone(),
                None => h
                    .get(&["status", &release, "-o", "json"])
                    .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                    .and_then(|s| s["version"].as_u64())
                    .map(|v| v.saturating_sub(1).to_string())
                    .unwrap_or_default(),
            };
            let target_manifest = h
                .get(&["get", "manifest", &release, "--revision", &revision])
                .unwrap_or_default();
            let (text, set) = manifest_change(&current, &target_manifest, &mut secrets);
            (
                format!("Rollback to revision {revision}:\n{text}"),
                set,
                None,
            )
        }
        _ => (
            no_diff(Tool::Helm, args, &resolved.target),
            ChangeSet::default(),
            None,
        ),
    };
    // The last line of defence: no Secret value found anywhere leaves in the text or the model.
    secrets.redact_changes(&mut changes);
    let shown = format!(
        "{}{}{}\n--- per object ---\n{text}",
        kube::target_header(&resolved.target),
        helm_env(),
        changes.render()
    );
    let snapshot_hashes = inputs.sealed.hashes();
    let artifacts = move |manifest: Option<&str>| -> Vec<String> {
        manifest
            .map(|m| crate::hex::sha256(m.as_bytes()))
            .into_iter()
            .chain(snapshot_hashes.iter().cloned())
            .collect()
    };
    let request = request(
        Tool::Helm,
        args,
        resolved.target.clone(),
        secrets.redact(&shown),
        Some(&changes),
        artifacts(rendered.as_deref()),
    );
    let renders = rendered.is_some();
    let (real_owned, kubectl_owned, inv_owned, cache_owned) = (
        real.to_path_buf(),
        kubectl.to_path_buf(),
        inv.clone(),
        cache.clone(),
    );
    // Rendering again right before the run reads the same snapshots, which the Prepared keeps
    // open for as long as this closure can be called.
    let render_args = run.with(&["--dry-run=server", "-o", "json"]);
    let check_cache = cache.clone();
    let pin = kube::Pin::new(kubectl, Tool::Helm, inv, &cache, &resolved);
    let snapshots = inputs.sealed.with(resolved.kubeconfig);
    Ok(Prepared {
        request,
        program: real.to_path_buf(),
        args: run.args.into_iter().map(OsString::from).collect(),
        no_changes: false,
        target_now: Box::new(move || {
            kube::resolve(&kubectl_owned, Tool::Helm, &inv_owned, Some(&cache_owned))
                .map(|r| r.target)
        }),
        artifacts_now: Box::new(move || {
            let manifest = if renders {
                Some(render(command(&real_owned, &render_args, &check_cache))?.manifest)
            } else {
                None
            };
            Ok(artifacts(manifest.as_deref()))
        }),
        snapshots,
        kube_pin: Some(pin),
        kube_cache: Some(cache),
        run_dir: Some(run_dir),
    })
}

/// Refuses what no approval can be bound to.
fn refuse_unbindable(inv: &Invocation, allow_post_renderer: bool) -> Result<(), String> {
    if !allow_post_renderer && inv.has_flag(&["--post-renderer"]) {
        return Err(
            "--post-renderer runs a program that rewrites the manifest after it was shown, so \
             the approval cannot be bound to it (allow it with tools.helm.allow_post_renderer)"
                .into(),
        );
    }
    if inv.has_flag(&["--generate-name", "-g"]) {
        return Err(
            "--generate-name picks a new release name on every render, so what runs could never \
             be the approved render (give the release a name)"
                .into(),
        );
    }
    if inv.has_flag(&["--dependency-update"]) {
        return Err(
            "--dependency-update fetches the chart's dependencies at run time, after approval \
             (run `helm dependency update` first)"
                .into(),
        );
    }
    Ok(())
}

/// A render of the release: the manifest (hooks included), the user-supplied values, the name.
struct Render {
    manifest: String,
    values: Value,
    name: String,
}

/// The read-only helm commands, pinned to the resolved target.
struct Helpers<'a> {
    env: Env<'a>,
    inv: &'a Invocation,
    resolved: &'a Resolved,
    inputs: &'a Inputs,
}

impl Helpers<'_> {
    /// The command itself as a server-side dry run.
    fn render(&self, run: &Edited) -> Result<Render, String> {
        render(
            self.env
                .command(&run.with(&["--dry-run=server", "-o", "json"])),
        )
    }

    /// A read-only helm command (`get`, `status`) with the global flags; its stdout, or `None`
    /// when it failed (a release that does not exist yet).
    fn get(&self, sub: &[&str]) -> Option<String> {
        let mut args: Vec<String> = sub.iter().map(|s| s.to_string()).collect();
        args.extend(render_flags(self.inv, |f| {
            is_global_flag(f) && !PINNED.contains(&f)
        }));
        args.extend(self.inputs.global.iter().cloned());
        args.extend(kube::pins(Tool::Helm, self.resolved));
        let (status, out, _) = kube::run_helper(self.env.command(&args)).ok()?;
        (status == 0).then(|| String::from_utf8_lossy(&out).into_owned())
    }
}

/// Runs a `--dry-run=server -o json` render.
fn render(c: Command) -> Result<Render, String> {
    let (status, out, err) = kube::run_helper(c)?;
    if status != 0 {
        return Err(err);
    }
    let v: Value =
        serde_json::from_slice(&out).map_err(|e| format!("helm printed no JSON: {e}"))?;
    let mut manifest = v["manifest"].as_str().unwrap_or_default().to_string();
    for hook in v["hooks"].as_array().map_or(&[][..], Vec::as_slice) {
        if let Some(m) = hook["manifest"].as_str() {
            manifest.push_str("\n---\n");
            manifest.push_str(m);
        }
    }
    Ok(Render {
        manifest,
        values: v["config"].clone(),
        name: v["name"].as_str().unwrap_or_default().to_string(),
    })
}

/// The `HELM_*` variables in force, for the approver (values of tokens and passwords masked).
fn helm_env() -> String {
    let mut vars: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("HELM_"))
        .map(|(k, v)| {
            let secret = ["TOKEN", "PASS", "KEY", "SECRET", "CONNECTION"]
                .iter()
                .any(|s| k.contains(s));
            format!("{k}={}", if secret { "***" } else { v.as_str() })
        })
        .collect();
    vars.sort();
    if vars.is_empty() {
        String::new()
    } else {
        format!("helm environment: {}\n", vars.join(" "))
    }
}
