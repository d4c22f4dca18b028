//! What a command can possibly do, read from its argv alone with the same readers as the shim:
//! `kubectl delete` can only delete, `helm uninstall` only removes (and runs its delete hooks),
//! `kubectl create` only creates. The server checks every change model it would auto-approve
//! against this set, so a model outside it (a hand-made request, a model that does not fit its
//! command) never buys a "policy approved" record.
//!
//! `None` means the effects cannot be bounded from argv (exec, cp, drain, plugins, `--force`,
//! anything unlisted): such a command is never auto-approved.

use super::schema::ChangeKind::{self, *};
use crate::argv::Invocation;
use crate::tool::Tool;

/// The changes a command can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effects {
    /// Every kind of change it can make.
    pub kinds: &'static [ChangeKind],
    /// It changes something whenever it succeeds, so a model without changes does not fit it.
    pub always_changes: bool,
}

const TERRAFORM_ALL: &[ChangeKind] = &[
    Create, Update, Delete, Replace, Read, Import, Move, Drift, Output,
];
const HELM_RELEASE: &[ChangeKind] = &[Create, Update, Delete, Replace];

/// The effects of `inv` run by `tool`, or `None` when argv cannot bound them.
pub fn of(tool: Tool, inv: &Invocation) -> Option<Effects> {
    if !inv.known_subcommand || !inv.uncertain.is_empty() {
        return None;
    }
    let path = inv.path_string();
    let (kinds, always_changes): (&'static [ChangeKind], bool) = match tool {
        Tool::Terraform | Tool::Tofu => match path.as_str() {
            "apply" => (TERRAFORM_ALL, false),
            "destroy" => (&[Delete, Read, Output, Drift, Move], false),
            "refresh" => (&[Drift, Read, Output], false),
            _ => return None,
        },
        Tool::Helm => match path.as_str() {
            "install" => (&[Create, Update, Replace], false),
            "upgrade" | "rollback" => (HELM_RELEASE, false),
            // Delete hooks create (or replace) their objects.
            "uninstall" | "delete" | "del" | "un" => (&[Delete, Create, Replace], false),
            _ => return None,
        },
        Tool::Kubectl => return kubectl(inv, &path),
    };
    Some(Effects {
        kinds,
        always_changes,
    })
}

fn kubectl(inv: &Invocation, path: &str) -> Option<Effects> {
    let on = |names: &[&str]| inv.has_flag(names) && inv.flag_value(names) != Some("false");
    // `--force` deletes and creates again; what it replaces is not in any model.
    if on(&["--force"]) {
        return None;
    }
    let (kinds, always_changes): (&'static [ChangeKind], bool) = match path {
        "create token" => return None,
        // `kubectl run -i --rm` attaches to what it starts and deletes it afterwards.
        "run" if on(&["-i", "--stdin", "-t", "--tty", "--attach", "--rm"]) => return None,
        p if p == "create" || p.starts_with("create ") => (&[Create], true),
        "run" | "expose" | "autoscale" => (&[Create], true),
        "apply" => (&[Create, Update], false),
        "delete" => (&[Delete], false),
        "rollout restart" => (&[Update], true),
        "replace"
        | "apply set-last-applied"
        | "label"
        | "annotate"
        | "patch"
        | "scale"
        | "taint"
        | "cordon"
        | "uncordon"
        | "rollout pause"
        | "rollout resume"
        | "rollout undo" => (&[Update], false),
        p if p.starts_with("set ") => (&[Update], false),
        _ => return None,
    };
    Some(Effects {
        kinds,
        always_changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effects(tool: Tool, line: &str) -> Option<Effects> {
        let args: Vec<std::ffi::OsString> = line.split_whitespace().map(Into::into).collect();
        let inv = crate::argv::read(tool, &args, &|_| None).unwrap();
        of(tool, &inv)
    }

    #[test]
    fn argv_bounds_what_a_command_can_do() {
        let k = Tool::Kubectl;
        assert_eq!(effects(k, "delete deploy web").unwrap().kinds, &[Delete]);
        assert_eq!(effects(k, "create configmap a").unwrap().kinds, &[Create]);
        assert!(effects(k, "create configmap a").unwrap().always_changes);
        assert_eq!(
            effects(k, "apply -f x.yaml").unwrap().kinds,
            &[Create, Update]
        );
        assert!(
            effects(k, "rollout restart deploy/web")
                .unwrap()
                .always_changes
        );
        for unbounded in [
            "exec web -- sh",
            "cp a web:/b",
            "drain node1",
            "replace --force -f cm.yaml",
            "apply --force -f x.yaml",
            "create token default",
            "run x --image=busybox -i --rm",
            "certificate approve csr1",
        ] {
            assert_eq!(effects(k, unbounded), None, "{unbounded}");
        }
        let h = Tool::Helm;
        assert!(!effects(h, "uninstall a b").unwrap().kinds.contains(&Update));
        assert_eq!(effects(h, "test r1"), None);
        assert_eq!(effects(Tool::Terraform, "import a.b id"), None);
        assert!(effects(Tool::Terraform, "apply").is_some());
    }
}
