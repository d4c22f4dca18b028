//! The writer's check that a run template is the approved argv, and nothing more: both read with
//! the tool's own reader, the template may only
//! - keep the agent's subcommand, flags and positionals as they are;
//! - replace an input the tool would read (a manifest, a values file, the chart, the plan) by a
//!   sealed snapshot's placeholder, and drop the flags the producers replace (`-f`, `--values`,
//!   the chart's source flags, terraform's plan-only flags, `-auto-approve`);
//! - pin the kube target: `--kubeconfig` to the placeholder the writer fills with its own
//!   credential, and the context to the approved one.
//!
//! Everything else (a flag the agent did not give, a dropped flag that no producer replaces, a
//! positional that differs) is refused: a confused or compromised runner cannot widen a run.
//! [`fill`] then puts the writer's own paths in place of the placeholders.

use std::ffi::OsString;

use crate::api::{RunTemplate, Target};
use crate::argv::Invocation;
use crate::tool::Tool;

/// Checks `template` against the approved `argv` and target.
pub fn check(
    tool: Tool,
    argv: &[String],
    template: &[String],
    target: &Target,
) -> Result<(), String> {
    let read = |a: &[String]| {
        let os: Vec<OsString> = a.iter().map(OsString::from).collect();
        crate::argv::read(tool, &os, &|_| None)
    };
    let typed = read(argv).map_err(|e| format!("the approved argv cannot be read ({e})"))?;
    let run = read(template).map_err(|e| format!("the run template cannot be read ({e})"))?;
    if typed.path != run.path {
        return Err(format!(
            "the run's subcommand `{}` is not the approved `{}`",
            run.path_string(),
            typed.path_string()
        ));
    }
    let replaced = replaced(tool);
    for (name, value) in &run.flags {
        let kept = typed.flags.iter().any(|(n, v)| n == name && v == value);
        // Only an input flag may name a snapshot: never one the tool would run as a program.
        let sealed =
            value.as_deref().is_some_and(|v| v.contains('\0')) && replaced.contains(&name.as_str());
        if !(kept || sealed || is_pin(tool, name, value.as_deref(), target)) {
            return Err(format!(
                "the run adds {name} that the approved command does not have"
            ));
        }
    }
    for (name, value) in &typed.flags {
        let kept = run.flags.iter().any(|(n, v)| n == name && v == value);
        if !kept && !replaced.contains(&name.as_str()) && !is_context(tool, name) {
            return Err(format!(
                "the run drops {name}, which the approved command has"
            ));
        }
    }
    positionals(tool, &typed, &run)
}

/// The flags a producer replaces by a snapshot, or leaves out of the run because the snapshot
/// already holds what they say.
fn replaced(tool: Tool) -> Vec<&'static str> {
    use crate::shim::{helm_inputs, kubectl, terraform};
    match tool {
        Tool::Kubectl => [
            &["-f", "--filename", "-k", "--kustomize", "--from-file"][..],
            kubectl::FILE_FLAGS,
        ]
        .concat(),
        Tool::Helm => [
            &["-f", "--values", "--set-file", "--kube-ca-file"][..],
            helm_inputs::CHART_SOURCE,
        ]
        .concat(),
        Tool::Terraform | Tool::Tofu => [terraform::PLAN_ONLY, terraform::DROPPED].concat(),
    }
}

fn is_context(tool: Tool, name: &str) -> bool {
    match tool {
        Tool::Kubectl => name == "--context",
        Tool::Helm => name == "--kube-context",
        _ => false,
    }
}

/// The pins the producers add: the kubeconfig placeholder, and the approved context.
fn is_pin(tool: Tool, name: &str, value: Option<&str>, target: &Target) -> bool {
    match (tool, name) {
        (Tool::Kubectl | Tool::Helm, "--kubeconfig") => value == Some(RunTemplate::KUBECONFIG),
        _ => is_context(tool, name) && value.is_some() && value == target.kube_context.as_deref(),
    }
}

/// Positionals stay as they are; helm's chart and terraform's plan are the one that may be a
/// snapshot (terraform's added when the agent gave none).
fn positionals(tool: Tool, typed: &Invocation, run: &Invocation) -> Result<(), String> {
    let is_sealed = |p: &String| p.contains('\0');
    let same = match tool {
        Tool::Kubectl => typed.positionals == run.positionals,
        Tool::Helm => {
            typed.positionals.len() == run.positionals.len()
                && typed
                    .positionals
                    .iter()
                    .zip(&run.positionals)
                    .enumerate()
                    .all(|(i, (t, r))| t == r || (i == 1 && is_sealed(r)))
        }
        Tool::Terraform | Tool::Tofu => {
            matches!(run.positionals.as_slice(), [plan] if is_sealed(plan))
                && typed.positionals.len() <= 1
        }
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "the run's arguments {:?} are not the approved {:?}",
            run.positionals
                .iter()
                .map(|p| p.replace('\0', "@"))
                .collect::<Vec<_>>(),
            typed.positionals
        ))
    }
}

/// The template with its placeholders replaced: the `n`-th input by `inputs[n]`, the pinned
/// kubeconfig by `kubeconfig`. A placeholder with nothing for it is an error.
pub fn fill(
    template: &[String],
    inputs: &[String],
    kubeconfig: Option<&str>,
) -> Result<Vec<String>, String> {
    template
        .iter()
        .map(|arg| {
            let mut out = String::new();
            let mut rest = arg.as_str();
            while let Some(start) = rest.find('\0') {
                out.push_str(&rest[..start]);
                let after = &rest[start + 1..];
                let end = after
                    .find('\0')
                    .ok_or("a placeholder in the run template is not closed")?;
                let name = &after[..end];
                let path = match name.strip_prefix("input:") {
                    Some(n) => n
                        .parse::<usize>()
                        .ok()
                        .and_then(|n| inputs.get(n))
                        .map(String::as_str),
                    None if name == "kubeconfig" => kubeconfig,
                    None => None,
                };
                out.push_str(
                    path.ok_or_else(|| format!("nothing is given for the placeholder {name:?}"))?,
                );
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            Ok(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn target() -> Target {
        Target {
            kube_context: Some("prod".into()),
            ..Target::default()
        }
    }

    #[test]
    fn a_template_may_only_seal_inputs_and_pin_the_target() {
        let k = Tool::Kubectl;
        let argv = s(&["apply", "-f", "x.yaml", "--server-side"]);
        let ok = s(&[
            "apply",
            "--server-side",
            "--filename=\0input:0\0",
            "--kubeconfig=\0kubeconfig\0",
            "--context=prod",
        ]);
        check(k, &argv, &ok, &target()).unwrap();
        for (bad, why) in [
            (
                vec![
                    "apply",
                    "--filename=\0input:0\0",
                    "--kubeconfig=\0kubeconfig\0",
                ],
                "drops --server-side",
            ),
            (
                vec![
                    "apply",
                    "--server-side",
                    "--force",
                    "--filename=\0input:0\0",
                ],
                "adds --force",
            ),
            (
                vec!["apply", "--server-side", "--filename=/etc/x"],
                "adds --filename",
            ),
            (
                vec![
                    "apply",
                    "--server-side",
                    "--context=dev",
                    "--filename=\0input:0\0",
                ],
                "adds --context",
            ),
            (
                vec!["delete", "--server-side", "--filename=\0input:0\0"],
                "subcommand",
            ),
            (
                vec!["apply", "--server-side", "--kubeconfig=/w/kc"],
                "adds --kubeconfig",
            ),
            (
                vec!["apply", "--server-side", "--cache-dir=\0input:0\0"],
                "adds --cache-dir",
            ),
        ] {
            let e = check(k, &argv, &s(&bad), &target()).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let argv = s(&["delete", "deploy", "web"]);
        let e = check(k, &argv, &s(&["delete", "deploy", "api"]), &target()).unwrap_err();
        assert!(e.contains("not the approved"), "{e}");
        let t = Tool::Terraform;
        check(
            t,
            &s(&["apply", "-var", "a=b", "-auto-approve"]),
            &s(&["apply", "\0input:0\0"]),
            &target(),
        )
        .unwrap();
        assert!(check(t, &s(&["apply"]), &s(&["apply", "plan.tfplan"]), &target()).is_err());
    }

    #[test]
    fn placeholders_are_filled_and_nothing_else_is_touched() {
        let got = fill(
            &s(&[
                "--filename=\0input:1\0",
                "--kubeconfig=\0kubeconfig\0",
                "a@b",
            ]),
            &s(&["/p/0", "/p/1"]),
            Some("/w/kc"),
        )
        .unwrap();
        assert_eq!(got, s(&["--filename=/p/1", "--kubeconfig=/w/kc", "a@b"]));
        assert!(fill(&s(&["\0input:2\0"]), &s(&["/p/0"]), None).is_err());
        assert!(fill(&s(&["\0kubeconfig\0"]), &[], None).is_err());
        assert!(fill(&s(&["\0input:0"]), &s(&["/p/0"]), None).is_err());
    }
}
