//! helm on the gated path: what only helm needs on top of `kube.rs`.
//!
//! - **Target**: as for kubectl, with helm's `--kube-context`, `--kubeconfig`,
//!   `--kube-apiserver`, `-n` and their `HELM_*` variables, resolved with the real kubectl (which
//!   must be found) and pinned with `--kubeconfig` and `--kube-context`.
//! - **Inputs**, read once and sealed; the run uses the snapshots: the chart (a directory is
//!   packaged with `helm package`, a local archive copied, anything else pulled once with
//!   `helm pull` and the agent's repository flags, which the run then no longer needs), the
//!   values files, the `--set-file` files and `--kube-ca-file`.
//! - **What is shown** (`helm_model.rs`): for upgrade and install, the render of the same
//!   command with `--dry-run=server -o json` against the release, with hooks and new objects
//!   against the live cluster; for uninstall, every release named; for rollback, the target
//!   revision. The approval is bound to the SHA-256 of the rendered manifest (hooks included)
//!   and of every snapshot; right before the run the release is rendered again from the same
//!   snapshots, so what the chart looks up in the cluster cannot have changed either.
//! - **Refused**: `--post-renderer` (a program that rewrites the manifest after it was shown)
//!   unless `tools.helm.allow_post_renderer = true`; values from stdin, devices or URLs;
//!   `--generate-name` (a new name on every render); `--dependency-update` (fetches at run time;
//!   run `helm dependency update` first).

use std::ffi::OsString;
use std::path::Path;

use super::argv_edit::ArgvEdit;
use super::helm_inputs::{command, Env, Inputs};
use super::helm_model::{render, Helpers, Model};
use super::kube;
use super::prepared::{request, Prepared, RunDir, Stop};
use crate::argv::Invocation;
use crate::diff::kube::SecretValues;
use crate::tool::Tool;
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
        kubectl,
        inv,
        resolved: &resolved,
        inputs: &inputs,
    };
    let mut secrets = SecretValues::default();
    let Model {
        text,
        mut changes,
        rendered,
    } = h.model(&path, args, &run, &mut secrets)?;
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
