//! terraform and tofu on the gated path: plan once, show, bind the approval to the plan file,
//! apply exactly that plan file.
//!
//! - `apply` (no plan file) and `destroy`: `terraform [-chdir] plan -out=PRIVATE [-destroy]
//!   [plan flags]`, its output copied to stderr as it comes (the agent sees progress) and kept,
//!   without colour codes, as terraform's own text of the change; then `show -json` (the change
//!   model) on that file. A separate `show -no-color` would print the same text again at the
//!   cost of one more terraform process (docs/performance.md).
//! - `apply PLANFILE`: the agent's plan file is read once (a regular file only) and shown from
//!   the copy (`show -json` and `show -no-color`); the copy is what gets applied.
//! - The plan is kept as a sealed snapshot (`sealed.rs`): `show` and `apply` read it through
//!   `/proc/<pid>/fd/N`, and no process can change it in between.
//! - The approved run is `terraform [-chdir] apply [flags valid with a plan file] PLANFILE`. It
//!   never plans again.
//! - Other gated subcommands (`import`, `state rm`, `taint`, …) have no plan: the approver sees
//!   the command and its target, and exactly that argv runs.
//!
//! The command line is the reader's `Invocation` (`argv/terraform.rs`), so the gate and the
//! policy agree on every flag. The environment target (directory, workspace, backend) is sent
//! with the request and recomputed right before the run; if it changed, the approval does not
//! hold.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Command;

use super::child;
use super::prepared::{no_diff, request, Prepared, RunDir, Stop};
use super::sealed::Sealed;
use crate::api::Target;
use crate::argv::Invocation;
use crate::exit as code;
use crate::tool::Tool;

/// Flags that only shape the plan.
pub(crate) const PLAN_ONLY: &[&str] = &[
    "-destroy",
    "-refresh",
    "-refresh-only",
    "-replace",
    "-target",
    "-var",
    "-var-file",
];
/// Flags that apply to both the plan and the apply of the plan file.
const BOTH: &[&str] = &[
    "-compact-warnings",
    "-input",
    "-lock",
    "-lock-timeout",
    "-no-color",
    "-parallelism",
];
/// Flags that are dropped: the human's approval replaces terraform's own prompt.
pub(crate) const DROPPED: &[&str] = &["-auto-approve"];

/// The target: the working directory with `-chdir` applied, the selected workspace and the
/// configured backend, read the way terraform reads them (`argv::terraform::{workspace,
/// backend}`, which the policy uses too).
pub fn target(cwd: &Path, chdir: Option<&str>) -> Target {
    let dir = chdir.map_or_else(|| cwd.to_path_buf(), |c| cwd.join(c));
    let dir = dir.canonicalize().unwrap_or(dir);
    let env = |k: &str| std::env::var(k).ok();
    let mut t = Target {
        terraform_workspace: Some(crate::argv::terraform::workspace(&dir, &env)),
        terraform_backend: Some(crate::argv::terraform::backend(&dir, &env)),
        dir: Some(dir.to_string_lossy().into_owned()),
        ..Target::default()
    };
    t.set_inexact(crate::policy::proxy_variables(&env));
    t
}

/// Refuses provider development overrides in the CLI configuration: with them, the providers
/// that plan and apply run come from a directory the agent controls, and terraform checks none
/// of them against the lock file.
fn refuse_dev_overrides() -> Result<(), Stop> {
    let files: Vec<std::path::PathBuf> = match std::env::var_os("TF_CLI_CONFIG_FILE") {
        Some(f) if !f.is_empty() => vec![f.into()],
        _ => std::env::var_os("HOME")
            .map(|h| {
                vec![
                    Path::new(&h).join(".terraformrc"),
                    Path::new(&h).join("terraform.rc"),
                ]
            })
            .unwrap_or_default(),
    };
    for f in files {
        if std::fs::read_to_string(&f).is_ok_and(|t| t.contains("dev_overrides")) {
            return Err(Stop::new(
                code::REFUSED,
                format!(
                    "{} sets provider dev_overrides: the providers that plan and apply run would \
                     come from a directory the agent controls, unchecked; gated commands refuse \
                     to run with them",
                    f.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Prepares a gated terraform/tofu command from the reader's invocation.
pub fn prepare(
    tool: Tool,
    real: &Path,
    args: &[String],
    inv: &Invocation,
    lockdown: bool,
) -> Result<Prepared, Stop> {
    let refused = |why: String| Stop::refused(tool, why);
    if let Some(var) = crate::argv::terraform::cli_args_var(std::env::vars_os()) {
        return Err(refused(format!(
            "{var} is set; it would add arguments to terraform behind the approver's back, so \
             gated commands refuse to run with it (unset it and pass the flags on the command \
             line)"
        )));
    }
    refuse_dev_overrides()?;
    // Flags before the subcommand: only -chdir=DIR is bound (the reader refuses other forms).
    let path_at = inv.path_at.unwrap_or(args.len());
    let (global, flags): (Vec<_>, Vec<_>) = inv
        .flags
        .iter()
        .zip(&inv.flag_at)
        .partition(|(_, at)| at.word < path_at);
    if let Some(((name, _), _)) = global.iter().find(|((n, _), _)| n != "-chdir") {
        return Err(refused(format!(
            "the global flag {name} is not supported here"
        )));
    }
    let chdir = inv.target.chdir.as_deref();
    let cwd = std::env::current_dir()
        .map_err(|e| Stop::internal(format!("cannot read the working directory: {e}")))?;
    let environment = target(&cwd, chdir);
    let target_now: Box<dyn Fn() -> Result<Target, String>> = {
        let (cwd, chdir) = (cwd.clone(), chdir.map(String::from));
        Box::new(move || Ok(target(&cwd, chdir.as_deref())))
    };
    let global: Vec<OsString> = chdir
        .map(|d| OsString::from(format!("-chdir={d}")))
        .into_iter()
        .collect();

    let sub: Vec<&str> = inv.path.iter().map(String::as_str).collect();
    if !matches!(sub.as_slice(), ["apply"] | ["destroy"]) {
        let text = format!(
            "{}It changes infrastructure without a plan.\n",
            no_diff(tool, args, &environment)
        );
        return Ok(Prepared {
            request: request(tool, args, environment, text, None, Vec::new()),
            program: real.to_path_buf(),
            args: args.iter().map(OsString::from).collect(),
            artifacts_now: Box::new(|| Ok(Vec::new())),
            no_changes: false,
            target_now,
            snapshots: Vec::new(),
            kube_cache: None,
            kube_pin: None,
            run_dir: None,
        });
    }

    let mut plan_flags = Vec::new();
    let mut apply_flags = Vec::new();
    let mut plan_only_given = false;
    for ((name, value), _) in &flags {
        let word = value
            .as_ref()
            .map_or_else(|| name.clone(), |v| format!("{name}={v}"));
        if DROPPED.contains(&name.as_str()) {
            continue;
        } else if PLAN_ONLY.contains(&name.as_str()) {
            plan_only_given = true;
            plan_flags.push(word);
        } else if BOTH.contains(&name.as_str()) {
            plan_flags.push(word.clone());
            apply_flags.push(word);
        } else {
            return Err(refused(format!(
                "the flag {name} cannot be bound to an approved plan (gated apply and destroy \
                 accept {} and {})",
                PLAN_ONLY.join(" "),
                BOTH.join(" ")
            )));
        }
    }
    let run_dir = RunDir::create().map_err(Stop::internal)?;
    let tf = |extra: &[&OsStr]| {
        let mut c = Command::new(real);
        c.args(&global).args(extra);
        c
    };
    // terraform's own text of the change: the plan's output, or `show -no-color` of a saved plan.
    let mut plan_text: Option<Vec<u8>> = None;
    let plan_bytes = match (sub.as_slice(), inv.positionals.as_slice()) {
        (["apply" | "destroy"], []) => {
            let plan_file = run_dir.path.join("plan.tfplan");
            let mut c = tf(&[
                OsStr::new("plan"),
                OsStr::new("-out"),
                plan_file.as_os_str(),
            ]);
            if sub == ["destroy"] {
                c.arg("-destroy");
            }
            c.args(&plan_flags);
            let (status, out) =
                child::tee_stdout_to_stderr(&mut c).map_err(|e| Stop::cannot_run(real, e))?;
            if !status.success() {
                return Err(Stop::tool_failed(
                    status.code().unwrap_or(1),
                    format!("{tool} plan failed ({status}); nothing was submitted or applied"),
                ));
            }
            plan_text = Some(out);
            // Read once into the sealed copy below; the file itself is not used again.
            let bytes = std::fs::read(&plan_file)
                .map_err(|e| Stop::internal(format!("cannot read {}: {e}", plan_file.display())))?;
            let _ = std::fs::remove_file(&plan_file);
            bytes
        }
        (["apply"], [file]) => {
            if plan_only_given {
                return Err(refused(format!(
                    "{} cannot be combined with a saved plan file",
                    PLAN_ONLY.join(" ")
                )));
            }
            let from = chdir
                .map_or_else(|| cwd.clone(), |d| cwd.join(d))
                .join(file);
            super::sealed::read_input(&from)
                .map_err(|e| refused(format!("cannot read the plan file: {e}")))?
        }
        _ => {
            return Err(refused(format!(
                "`{} {}` takes at most one plan file and no other arguments here",
                sub.join(" "),
                inv.positionals.join(" ")
            )))
        }
    };
    // Sealed: nobody can change the plan from here on, the agent's own user included.
    let sealed = Sealed::new("plan", &plan_bytes).map_err(Stop::internal)?;
    let plan = std::path::PathBuf::from(sealed.path());
    let show = |flag: &str| -> Result<Vec<u8>, Stop> {
        let mut c = tf(&[OsStr::new("show"), OsStr::new(flag), plan.as_os_str()]);
        let (status, out) = child::output(&mut c).map_err(|e| Stop::cannot_run(real, e))?;
        if status.success() {
            Ok(out)
        } else {
            Err(Stop::tool_failed(
                status.code().unwrap_or(1),
                format!("{tool} show {flag} failed ({status}); nothing was submitted or applied"),
            ))
        }
    };
    let json = show("-json")?;
    let changes = crate::diff::terraform::parse_plan(&json)
        .map_err(|e| refused(format!("cannot read the plan: {e}")))?;
    if lockdown {
        // Provisioners run programs at apply time as the runner's user: not in lockdown mode.
        let found = crate::diff::terraform::provisioners(&json);
        if !found.is_empty() {
            return Err(refused(format!(
                "the configuration has provisioners that run programs ({}); they are refused \
                 in lockdown mode",
                found.join(", ")
            )));
        }
    }
    let shown = match plan_text {
        Some(t) => strip_ansi(&t),
        None => show("-no-color")?,
    };
    let mut text = changes.render();
    text.push_str("\n--- terraform's own text ---\n");
    text.push_str(&String::from_utf8_lossy(&shown));
    let hash = sealed.sha256().to_string();
    let mut run_args: Vec<OsString> = global.clone();
    run_args.push("apply".into());
    run_args.extend(apply_flags.into_iter().map(OsString::from));
    run_args.push(plan.into_os_string());
    Ok(Prepared {
        request: request(
            tool,
            args,
            environment,
            text,
            Some(&changes),
            vec![hash.clone()],
        ),
        program: real.to_path_buf(),
        args: run_args,
        // Sealed: what runs is what was hashed and shown.
        artifacts_now: Box::new(move || Ok(vec![hash.clone()])),
        no_changes: changes.is_empty(),
        target_now,
        snapshots: vec![sealed],
        kube_cache: None,
        kube_pin: None,
        run_dir: Some(run_dir),
    })
}

/// Removes terminal escape sequences (CSI `ESC [ … final`) from terraform's coloured output.
fn strip_ansi(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0x1b && bytes.get(i + 1) == Some(&b'[') {
            i += 2;
            while i < bytes.len() && !(0x40..=0x7e).contains(&bytes[i]) {
                i += 1;
            }
            i += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_are_stripped() {
        assert_eq!(
            strip_ansi(b"\x1b[1m  # a\x1b[0m will be \x1b[32m+\x1b[0m created\x1b["),
            b"  # a will be + created"
        );
    }
}
