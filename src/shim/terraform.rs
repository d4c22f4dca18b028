//! terraform and tofu on the gated path: plan once, show, bind the approval to the plan file,
//! apply exactly that plan file.
//!
//! - `apply` (no plan file) and `destroy`: `terraform [-chdir] plan -out=PRIVATE [-destroy]
//!   [plan flags]`, its output copied to stderr as it comes (the agent sees progress) and kept,
//!   without colour codes, as terraform's own text of the change; then `show -json` (the change
//!   model) on that file. A separate `show -no-color` would print the same text again at the
//!   cost of one more terraform process (docs/performance.md).
//! - `apply PLANFILE`: the agent's plan file is copied once into the private run directory and
//!   shown from there (`show -json` and `show -no-color`); the copy is what gets applied.
//! - The approved run is `terraform [-chdir] apply [flags valid with a plan file] PLANFILE`. It
//!   never plans again.
//! - Other gated subcommands (`import`, `state rm`, `taint`, …) have no plan: the approver sees
//!   the command and its target, and exactly that argv runs.
//!
//! The environment target (directory, workspace, backend type) is sent with the request and
//! recomputed right before the run; if it changed, the approval does not hold.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Command;

use super::child;
use super::gate::{Prepared, RunDir, Stop};
use crate::api::{CreateRequest, Diff, Target};
use crate::exit as code;
use crate::tool::Tool;

/// Flags that only shape the plan.
const PLAN_ONLY: &[&str] = &[
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
const DROPPED: &[&str] = &["-auto-approve"];

/// Refuses `TF_CLI_ARGS` and `TF_CLI_ARGS_<command>`: they would change what runs after the
/// approval without showing up in argv.
fn refuse_cli_args_env() -> Result<(), Stop> {
    for (k, v) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("TF_CLI_ARGS") && !v.is_empty() {
            return Err((
                code::REFUSED,
                format!(
                    "{k} is set; it would add arguments to terraform behind the approver's back, \
                     so gated commands refuse to run with it (unset it and pass the flags on the \
                     command line)"
                ),
            ));
        }
    }
    Ok(())
}

/// The target: the working directory with `-chdir` applied, the selected workspace and the
/// configured backend, read the way terraform reads them (`argv::terraform::{workspace,
/// backend}`, which the policy uses too).
pub fn target(cwd: &Path, chdir: Option<&str>) -> Target {
    let dir = chdir.map_or_else(|| cwd.to_path_buf(), |c| cwd.join(c));
    let dir = dir.canonicalize().unwrap_or(dir);
    let env = |k: &str| std::env::var(k).ok();
    Target {
        terraform_workspace: Some(crate::argv::terraform::workspace(&dir, &env)),
        terraform_backend: Some(crate::argv::terraform::backend(&dir, &env)),
        dir: Some(dir.to_string_lossy().into_owned()),
        ..Target::default()
    }
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
            return Err((
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

/// The parts of a terraform command line the gate rebuilds.
struct Split<'a> {
    /// `-chdir=DIR`, as given.
    chdir: Option<&'a str>,
    sub: Vec<&'a str>,
    /// Flags after the subcommand, one word each (`-var=a=b`).
    flags: Vec<(String, String)>,
    positionals: Vec<&'a str>,
}

/// Value flags whose value may be the next word (terraform's Go `flag` parsing).
const VALUE_FLAGS: &[&str] = &[
    "-lock-timeout",
    "-parallelism",
    "-replace",
    "-target",
    "-var",
    "-var-file",
];

fn split(args: &[String]) -> Result<Split<'_>, String> {
    let mut i = 0;
    let mut chdir = None;
    while i < args.len() && args[i].starts_with('-') {
        match args[i].strip_prefix("-chdir=") {
            Some(d) => chdir = Some(d),
            None => return Err(format!("the global flag {} is not supported here", args[i])),
        }
        i += 1;
    }
    let mut sub = Vec::new();
    while i < args.len() && !args[i].starts_with('-') && sub.len() < 2 {
        let word = args[i].as_str();
        let mut key = sub.join(" ");
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(word);
        if crate::argv::terraform::COMMANDS
            .binary_search(&key.as_str())
            .is_err()
        {
            break;
        }
        sub.push(word);
        i += 1;
    }
    let mut flags = Vec::new();
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a.len() < 2 {
            break;
        }
        let body = a.trim_start_matches('-');
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (format!("-{n}"), Some(v.to_string())),
            None => (format!("-{body}"), None),
        };
        let value = match value {
            None if VALUE_FLAGS.contains(&name.as_str()) => {
                i += 1;
                Some(
                    args.get(i)
                        .ok_or_else(|| format!("flag {a} needs a value"))?
                        .clone(),
                )
            }
            v => v,
        };
        let word = value.map_or_else(|| name.clone(), |v| format!("{name}={v}"));
        flags.push((name, word));
        i += 1;
    }
    let positionals = args[i..].iter().map(String::as_str).collect();
    Ok(Split {
        chdir,
        sub,
        flags,
        positionals,
    })
}

/// Prepares a gated terraform/tofu command.
pub fn prepare(tool: Tool, real: &Path, args: &[String]) -> Result<Prepared, Stop> {
    refuse_cli_args_env()?;
    refuse_dev_overrides()?;
    let refused = |why: String| (code::REFUSED, format!("{tool}: {why}; it did not run"));
    let s = split(args).map_err(refused)?;
    let cwd = std::env::current_dir().map_err(|e| {
        (
            code::INTERNAL,
            format!("cannot read the working directory: {e}"),
        )
    })?;
    let target = target(&cwd, s.chdir);
    let chdir_owned = s.chdir.map(String::from);
    let target_now: Box<dyn Fn() -> Result<Target, String>> = {
        let cwd = cwd.clone();
        Box::new(move || Ok(self::target(&cwd, chdir_owned.as_deref())))
    };
    let mut request = CreateRequest {
        tool: tool.name().into(),
        argv: args.to_vec(),
        cwd: cwd.to_string_lossy().into_owned(),
        host: super::gate::hostname(),
        environment: target,
        diff: Diff::default(),
        artifact_sha256: Vec::new(),
        reason: super::gate::reason(),
        nonce: super::gate::nonce(),
    };
    let global: Vec<OsString> = s
        .chdir
        .map(|d| OsString::from(format!("-chdir={d}")))
        .into_iter()
        .collect();

    let planned = matches!(s.sub.as_slice(), ["apply"] | ["destroy"]);
    if !planned {
        request.diff.text = format!(
            "`{}` changes infrastructure without a plan: no diff is possible for it. It runs \
             exactly as shown, in {}.\n",
            super::command_line(tool, &args.iter().map(OsString::from).collect::<Vec<_>>()),
            request.environment.dir.as_deref().unwrap_or("?"),
        );
        request.diff.summary = serde_json::json!({"summary": "no diff possible"});
        return Ok(Prepared {
            request,
            program: real.to_path_buf(),
            args: args.iter().map(OsString::from).collect(),
            artifacts_now: Box::new(|| Ok(Vec::new())),
            no_changes: false,
            target_now,
            snapshots: Vec::new(),
            kube_cache: None,
            run_dir: None,
        });
    }

    let mut plan_flags = Vec::new();
    let mut apply_flags = Vec::new();
    let mut plan_only_given = false;
    for (name, word) in &s.flags {
        if DROPPED.contains(&name.as_str()) {
            continue;
        } else if PLAN_ONLY.contains(&name.as_str()) {
            plan_only_given = true;
            plan_flags.push(word.clone());
        } else if BOTH.contains(&name.as_str()) {
            plan_flags.push(word.clone());
            apply_flags.push(word.clone());
        } else {
            return Err(refused(format!(
                "the flag {name} cannot be bound to an approved plan (gated apply and destroy \
                 accept {} and {})",
                PLAN_ONLY.join(" "),
                BOTH.join(" ")
            )));
        }
    }
    let run_dir = RunDir::create().map_err(|e| (code::INTERNAL, e))?;
    let cannot_run = |e: std::io::Error| {
        (
            code::CANNOT_EXECUTE,
            format!("cannot run {}: {e}", real.display()),
        )
    };
    // terraform's own text of the change: the plan's output, or `show -no-color` of a saved plan.
    let mut plan_text: Option<Vec<u8>> = None;
    let plan_file = run_dir.path.join("plan.tfplan");
    let tf = |extra: &[&OsStr]| {
        let mut c = Command::new(real);
        c.args(&global).args(extra);
        c
    };
    match (s.sub.as_slice(), s.positionals.as_slice()) {
        (["apply"], []) | (["destroy"], []) => {
            let mut c = tf(&[
                OsStr::new("plan"),
                OsStr::new("-out"),
                plan_file.as_os_str(),
            ]);
            if s.sub == ["destroy"] {
                c.arg("-destroy");
            }
            c.args(&plan_flags);
            let (status, out) = child::tee_stdout_to_stderr(&mut c).map_err(cannot_run)?;
            if !status.success() {
                return Err((
                    u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
                    format!("{tool} plan failed ({status}); nothing was submitted or applied"),
                ));
            }
            plan_text = Some(out);
        }
        (["apply"], [file]) => {
            if plan_only_given {
                return Err(refused(format!(
                    "{} cannot be combined with a saved plan file",
                    PLAN_ONLY.join(" ")
                )));
            }
            let base = s.chdir.map_or_else(|| cwd.clone(), |d| cwd.join(d));
            let from = base.join(file);
            let bytes = super::kube::read_input(&from)
                .map_err(|e| refused(format!("cannot read the plan file: {e}")))?;
            std::fs::write(&plan_file, bytes)
                .map_err(|e| (code::INTERNAL, format!("cannot keep the plan: {e}")))?;
        }
        _ => {
            return Err(refused(format!(
                "`{} {}` takes at most one plan file and no other arguments here",
                s.sub.join(" "),
                s.positionals.join(" ")
            )))
        }
    }

    // The plan is read once into a sealed copy (nobody can change it afterwards, the agent's own
    // user included); everything after this reads that copy, and the file is removed.
    let plan_bytes = std::fs::read(&plan_file).map_err(|e| {
        (
            code::INTERNAL,
            format!("cannot read {}: {e}", plan_file.display()),
        )
    })?;
    let _ = std::fs::remove_file(&plan_file);
    let sealed =
        super::sealed::Sealed::new("plan", &plan_bytes).map_err(|e| (code::INTERNAL, e))?;
    let plan = std::path::PathBuf::from(sealed.path());
    let show = |flag: &str| -> Result<Vec<u8>, Stop> {
        let mut c = tf(&[OsStr::new("show"), OsStr::new(flag), plan.as_os_str()]);
        let (status, out) = child::output(&mut c).map_err(cannot_run)?;
        if status.success() {
            Ok(out)
        } else {
            Err((
                u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
                format!("{tool} show {flag} failed ({status}); nothing was submitted or applied"),
            ))
        }
    };
    let changes = crate::diff::terraform::parse_plan(&show("-json")?)
        .map_err(|e| refused(format!("cannot read the plan: {e}")))?;
    let shown = match plan_text {
        Some(t) => strip_ansi(&t),
        None => show("-no-color")?,
    };
    let mut text = changes.render();
    text.push_str("\n--- terraform's own text ---\n");
    text.push_str(&String::from_utf8_lossy(&shown));
    request.diff = Diff {
        truncated: text.len() > super::gate::MAX_DIFF_TEXT,
        text: super::gate::truncate(text, super::gate::MAX_DIFF_TEXT),
        summary: changes.to_json(),
    };
    request.artifact_sha256 = vec![sealed.sha256().to_string()];
    let mut run_args: Vec<OsString> = global.clone();
    run_args.push("apply".into());
    run_args.extend(apply_flags.into_iter().map(OsString::from));
    run_args.push(plan.clone().into_os_string());
    let hash = sealed.sha256().to_string();
    Ok(Prepared {
        request,
        program: real.to_path_buf(),
        args: run_args,
        // Sealed: what runs is what was hashed and shown.
        artifacts_now: Box::new(move || Ok(vec![hash.clone()])),
        no_changes: changes.is_empty(),
        target_now,
        snapshots: vec![sealed],
        kube_cache: None,
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

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn colour_codes_are_stripped() {
        assert_eq!(
            strip_ansi(b"\x1b[1m  # a\x1b[0m will be \x1b[32m+\x1b[0m created\x1b["),
            b"  # a will be + created"
        );
    }

    #[test]
    fn split_reads_chdir_subcommand_flags_and_plan_file() {
        let a = v(&[
            "-chdir=infra",
            "apply",
            "-var",
            "a=b",
            "-auto-approve",
            "--target=x.y",
            "plan.out",
        ]);
        let s = split(&a).unwrap();
        assert_eq!(s.chdir, Some("infra"));
        assert_eq!(s.sub, ["apply"]);
        let words: Vec<&str> = s.flags.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(words, ["-var=a=b", "-auto-approve", "-target=x.y"]);
        assert_eq!(s.positionals, ["plan.out"]);
        let a = v(&["state", "rm", "null_resource.a"]);
        let s = split(&a).unwrap();
        assert_eq!(s.sub, ["state", "rm"]);
        assert_eq!(s.positionals, ["null_resource.a"]);
        assert!(split(&v(&["apply", "-var"])).is_err());
        assert!(split(&v(&["-help", "apply"])).is_err());
    }
}
