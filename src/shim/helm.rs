//! helm on the gated path: show the release diff computed with the real helm, bind the run to
//! the rendered manifest, and pin the context.
//!
//! - **Target**: as for kubectl (`kubectl.rs`, with helm's `--kube-context`, `--kubeconfig`,
//!   `-n`, `HELM_KUBECONTEXT`, `HELM_NAMESPACE`), resolved with the real kubectl, which must be
//!   found (PATH or `tools.kubectl.real_path`). The run gets `--kube-context <resolved>` when the
//!   agent gave none.
//! - **upgrade, install**: new = `.manifest` (and hook manifests) of the same command with
//!   `--dry-run=server -o json`; old = `helm get manifest REL` (empty for a new release). The
//!   objects are keyed by kind and name and diffed one by one, and the user-supplied values are
//!   diffed too (`helm get values` against the dry run's). The approval is bound to the SHA-256
//!   of the rendered manifest; right before the run it is rendered again, and if the chart, the
//!   values or what the chart looks up in the cluster changed, the run is refused.
//! - **uninstall / delete**: the current manifest, as removals.
//! - **rollback**: the current manifest against the target revision's.
//! - Anything else gated (plugin install, push, …): the command and its target, no diff.
//! - `--post-renderer` (an arbitrary program rewriting the manifest after it was shown) is
//!   refused unless `tools.helm.allow_post_renderer = true`; values from stdin are refused (pass
//!   a file), and so is `--generate-name` (every render names the release anew). `HELM_*` variables in force are listed for the approver (secrets masked).
//!
//! Secret `data` and `stringData` values never appear in what is shown or sent.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::gate::{Prepared, Stop};
use super::kubectl::{mask_secret_doc, render, resolve_target, target_header, unified};
use crate::argv::helm::is_global_flag;
use crate::argv::Invocation;
use crate::diff::{Action, AttrChange, ChangeSet, ResourceChange};
use crate::exit as code;

/// Prepares a gated helm command. `kubectl` resolves the kube target.
pub fn prepare(
    real: &Path,
    kubectl: &Path,
    args: &[String],
    inv: &Invocation,
    allow_post_renderer: bool,
) -> Result<Prepared, Stop> {
    let refused = |why: String| (code::REFUSED, format!("helm: {why}; it did not run"));
    if !allow_post_renderer && inv.flags.iter().any(|(f, _)| f == "--post-renderer") {
        return Err(refused(
            "--post-renderer runs a program that rewrites the manifest after it was shown, so \
             the approval cannot be bound to it (allow it with tools.helm.allow_post_renderer)"
                .into(),
        ));
    }
    if inv
        .flags
        .iter()
        .any(|(f, _)| f == "--generate-name" || f == "-g")
    {
        return Err(refused(
            "--generate-name picks a new release name on every render, so what runs could never \
             be the approved render (give the release a name)"
                .into(),
        ));
    }
    if inv.reads_stdin {
        return Err(refused(
            "values read from stdin cannot be bound to an approval (pass a file)".into(),
        ));
    }
    let target = resolve_target(kubectl, inv).map_err(refused)?;
    let context = target.kube_context.clone().unwrap_or_default();
    let pin: Vec<String> = if inv.target.context.is_none() {
        vec![format!("--kube-context={context}")]
    } else {
        Vec::new()
    };
    let h = Helm {
        real,
        pin: &pin,
        inv,
        args,
    };
    let path = inv.path_string();
    let release = inv.positionals.first().cloned().unwrap_or_default();
    let (text, changes, rendered) = match path.as_str() {
        "upgrade" | "install" => {
            let (new, new_values, name) = h.render().map_err(|e| {
                (
                    code::REFUSED,
                    format!("helm: the dry run failed ({e}); nothing was submitted"),
                )
            })?;
            let name = if path == "upgrade" { release } else { name };
            let old = h.get(&["get", "manifest", &name]).unwrap_or_default();
            let old_values = h
                .get(&["get", "values", &name, "-o", "json"])
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or(Value::Null);
            let (mut text, mut set) = manifest_diff(&old, &new);
            let values = crate::diff::changed_attributes(
                (&nonnull(old_values), &Value::Null),
                (&nonnull(new_values), &Value::Null),
                &Value::Null,
            );
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
                    address: format!("values of release {name}"),
                    action: Action::Update,
                    action_reason: None,
                    attributes: values,
                });
            }
            (text, set, Some(new))
        }
        "uninstall" | "delete" => {
            let old = h.get(&["get", "manifest", &release]).unwrap_or_default();
            let (text, set) = manifest_diff(&old, "");
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
            let (text, set) = manifest_diff(&current, &target_manifest);
            (
                format!("Rollback to revision {revision}:\n{text}"),
                set,
                None,
            )
        }
        _ => (
            format!(
                "`helm {}`: no diff is possible for this command. It runs exactly as shown \
                 against context {context}, namespace {}.\n",
                args.join(" "),
                target.namespace.as_deref().unwrap_or("?")
            ),
            ChangeSet::default(),
            None,
        ),
    };
    let shown = format!(
        "{}{}{}\n--- per object ---\n{text}",
        target_header(&target),
        helm_env(),
        changes.render()
    );
    let artifact_sha256 = rendered
        .as_deref()
        .map(|m| vec![crate::hex::sha256(m.as_bytes())])
        .unwrap_or_default();
    let request = super::gate::request(
        crate::tool::Tool::Helm,
        args,
        target,
        shown,
        &changes,
        artifact_sha256,
    );
    let mut final_args: Vec<OsString> = pin.iter().map(OsString::from).collect();
    final_args.extend(args.iter().map(OsString::from));
    let (real_owned, kubectl_owned, inv_owned) =
        (real.to_path_buf(), kubectl.to_path_buf(), inv.clone());
    let (pin_owned, args_owned) = (pin.clone(), args.to_vec());
    let renders = rendered.is_some();
    Ok(Prepared {
        request,
        program: real.to_path_buf(),
        args: final_args,
        no_changes: false,
        target_now: {
            let inv = inv.clone();
            Box::new(move || resolve_target(&kubectl_owned, &inv))
        },
        artifacts_now: Box::new(move || {
            if !renders {
                return Ok(Vec::new());
            }
            let h = Helm {
                real: &real_owned,
                pin: &pin_owned,
                inv: &inv_owned,
                args: &args_owned,
            };
            let (manifest, _, _) = h.render()?;
            Ok(vec![crate::hex::sha256(manifest.as_bytes())])
        }),
        run_dir: None,
    })
}

/// helm helper commands, all pinned to the resolved context.
struct Helm<'a> {
    real: &'a Path,
    pin: &'a [String],
    inv: &'a Invocation,
    args: &'a [String],
}

impl Helm<'_> {
    /// The command itself as a server-side dry run: its rendered manifest (hooks included), the
    /// user-supplied values and the release name.
    fn render(&self) -> Result<(String, Value, String), String> {
        let out = Command::new(self.real)
            .args(self.pin)
            .args(self.args)
            .args(["--dry-run=server", "-o", "json"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.real.display()))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("helm printed no JSON: {e}"))?;
        let mut manifest = v["manifest"].as_str().unwrap_or_default().to_string();
        for hook in v["hooks"].as_array().map_or(&[][..], Vec::as_slice) {
            if let Some(m) = hook["manifest"].as_str() {
                manifest.push_str("\n---\n");
                manifest.push_str(m);
            }
        }
        let name = v["name"].as_str().unwrap_or_default().to_string();
        Ok((manifest, v["config"].clone(), name))
    }

    /// A read-only helm command (`get`, `status`) with the global flags; its stdout, or `None`
    /// when it failed (a release that does not exist yet).
    fn get(&self, sub: &[&str]) -> Option<String> {
        let out = Command::new(self.real)
            .args(self.pin)
            .args(sub)
            .args(render(self.inv, is_global_flag))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn nonnull(v: Value) -> Value {
    if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    }
}

/// One manifest document: its key (`Kind name`), kind and text.
fn documents(manifest: &str) -> Vec<(String, String, String)> {
    let mut docs = Vec::new();
    for doc in manifest.split("\n---") {
        let doc = doc.trim_start_matches("---").trim_matches('\n');
        let kind = doc
            .lines()
            .find_map(|l| l.strip_prefix("kind:"))
            .map(|k| k.trim().to_string());
        let Some(kind) = kind else { continue };
        let mut in_meta = false;
        let mut name = String::new();
        for l in doc.lines() {
            if l.starts_with("metadata:") {
                in_meta = true;
            } else if in_meta && !l.starts_with(' ') && !l.starts_with('#') {
                in_meta = false;
            } else if in_meta {
                if let Some(n) = l.strip_prefix("  name:") {
                    name = n.trim().trim_matches('"').to_string();
                }
            }
        }
        let text = mask_secret_doc(doc, &kind);
        docs.push((format!("{kind} {name}"), kind, text + "\n"));
    }
    docs
}

/// The per-object diff of two manifests and its change model.
fn manifest_diff(old: &str, new: &str) -> (String, ChangeSet) {
    let (old, new) = (documents(old), documents(new));
    let mut keys: Vec<&String> = old.iter().chain(new.iter()).map(|(k, _, _)| k).collect();
    keys.sort();
    keys.dedup();
    let mut text = String::new();
    let mut set = ChangeSet::default();
    for key in keys {
        let find = |docs: &[(String, String, String)]| {
            docs.iter()
                .find(|(k, _, _)| k == key)
                .map(|(_, _, t)| t.clone())
        };
        let (before, after) = (find(&old), find(&new));
        let action = match (&before, &after) {
            (None, Some(_)) => Action::Create,
            (Some(_), None) => Action::Delete,
            (Some(b), Some(a)) if a == b => Action::NoOp,
            _ => Action::Update,
        };
        if action == Action::NoOp {
            continue;
        }
        let (b, a) = (before.unwrap_or_default(), after.unwrap_or_default());
        text.push_str(&unified(key, &b, &a));
        set.resources.push(ResourceChange {
            address: key.clone(),
            action,
            action_reason: None,
            attributes: line_changes(&b, &a),
        });
    }
    (text, set)
}

/// The `key: value` lines that differ between two texts, paired by key.
fn line_changes(before: &str, after: &str) -> Vec<AttrChange> {
    let pairs = |t: &str| -> std::collections::BTreeMap<String, String> {
        t.lines()
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    };
    let diff = similar::TextDiff::from_lines(before, after);
    let (mut removed, mut added) = (String::new(), String::new());
    for change in diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Delete => removed.push_str(change.value()),
            similar::ChangeTag::Insert => added.push_str(change.value()),
            similar::ChangeTag::Equal => {}
        }
    }
    let (b, a) = (pairs(&removed), pairs(&added));
    let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| AttrChange {
            path: k.clone(),
            before: b.get(k).cloned(),
            after: a.get(k).cloned(),
        })
        .collect()
}

/// The `HELM_*` variables in force, for the approver (values of tokens and passwords masked).
fn helm_env() -> String {
    let mut vars: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("HELM_"))
        .map(|(k, v)| {
            let secret = ["TOKEN", "PASS", "KEY", "SECRET"]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_diffed_per_object_and_secrets_masked() {
        let old = "---\n# Source: c/templates/d.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: rel-web\nspec:\n  replicas: 1\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: rel-creds\ndata:\n  password: aHVudGVyMg==\n";
        let new = "---\n# Source: c/templates/d.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: rel-web\nspec:\n  replicas: 3\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rel-conf\ndata:\n  a: b\n";
        let (text, set) = manifest_diff(old, new);
        assert!(!text.contains("aHVudGVyMg"), "{text}");
        assert!(
            text.contains("-  replicas: 1") && text.contains("+  replicas: 3"),
            "{text}"
        );
        let by = |k: &str| set.resources.iter().find(|r| r.address == k).unwrap();
        assert_eq!(by("Deployment rel-web").action, Action::Update);
        assert_eq!(by("Deployment rel-web").attributes[0].path, "replicas");
        assert_eq!(by("Secret rel-creds").action, Action::Delete);
        assert_eq!(by("ConfigMap rel-conf").action, Action::Create);
        assert_eq!(set.summary_line(), "+1 ~1 -1");
    }
}
