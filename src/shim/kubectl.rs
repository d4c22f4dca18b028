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
use std::path::Path;
use std::process::Command;

use super::argv_edit::ArgvEdit;
use super::kube::{self, Resolved};
use super::kubectl_show::Helpers;
use super::prepared::{no_diff, request, Prepared, RunDir, Stop};
use super::sealed::Snapshots;
use crate::argv::kubectl::takes_flag;
use crate::argv::Invocation;
use crate::diff::kube::SecretValues;
use crate::diff::ChangeSet;
use crate::tool::Tool;

/// Flags whose value is one file that kubectl reads at run time.
pub(crate) const FILE_FLAGS: &[&str] = &[
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
        sources: &inputs.sources,
        cache: &cache,
    };
    let path = inv.path_string();
    let mut secrets = inputs.secrets.clone();
    let (text, mut changes) = if !inv.known_subcommand || !inv.uncertain.is_empty() {
        no_kube_diff(args, &resolved, inv)
    } else if path == "delete" {
        h.deletions(&mut secrets)?
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
    let pin = kube::Pin::new(real, Tool::Kubectl, inv, &cache, &resolved);
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
        kube_pin: Some(pin),
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
    let why = format!("no diff is possible for `kubectl {}`", inv.path_string());
    (text, ChangeSet::unknown(why))
}
