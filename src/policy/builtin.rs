//! The built-in rules: what hitl-gate gates when no policy file exists, and what follows a
//! policy file's own rules unless `defaults.builtin_rules = false`.
//!
//! The lists are static data so the passthrough path allocates nothing for them. Read-only
//! commands are listed explicitly as `pass`; a known subcommand that is on neither list falls
//! through to the `builtin:unlisted` rule, which gates. docs/policy.md prints these lists; keep
//! them in step.

use super::schema::Action;
use crate::argv::Invocation;
use crate::tool::Tool;

/// A built-in rule: tools, subcommand globs, flags, action.
pub struct BuiltinRule {
    pub name: &'static str,
    pub tools: &'static [Tool],
    pub subcommands: &'static [&'static str],
    /// When not empty, the rule matches only a command with one of these flags on (given, and
    /// not `=false`).
    pub flags: &'static [&'static str],
    pub action: Action,
}

impl BuiltinRule {
    /// Whether the rule matches an invocation whose subcommand path is `path`.
    pub fn matches(&self, inv: &Invocation, path: &str) -> bool {
        let flag_on = |f: &&str| {
            inv.flags
                .iter()
                .any(|(n, v)| n == f && v.as_deref() != Some("false"))
        };
        self.subcommands
            .iter()
            .any(|p| super::glob::matches(p, path, None))
            && (self.flags.is_empty() || self.flags.iter().any(flag_on))
    }
}

const TF: &[Tool] = &[Tool::Terraform, Tool::Tofu];
const KUBECTL: &[Tool] = &[Tool::Kubectl];
const HELM: &[Tool] = &[Tool::Helm];

pub static RULES: &[BuiltinRule] = &[
    // Before the read-only list, which has `init` and `workspace new`: these flags write state.
    BuiltinRule {
        name: "builtin:terraform-state-copy",
        tools: TF,
        subcommands: &["init", "workspace new", "env new"],
        flags: &["-migrate-state", "-force-copy", "-state"],
        action: Action::Gate,
    },
    BuiltinRule {
        name: "builtin:terraform-mutating",
        tools: TF,
        subcommands: &[
            "apply",
            "destroy",
            "import",
            "refresh",
            "test",
            "state mv",
            "state rm",
            "state push",
            "state replace-provider",
            "taint",
            "untaint",
            "force-unlock",
            "workspace delete",
            "env delete",
        ],
        flags: &[],
        action: Action::Gate,
    },
    BuiltinRule {
        name: "builtin:terraform-read-only",
        tools: TF,
        subcommands: &[
            "",
            "console",
            "fmt",
            "get",
            "graph",
            "init",
            "login",
            "logout",
            "metadata*",
            "modules",
            "output",
            "plan",
            "providers*",
            "query",
            "show",
            "state",
            "state identities",
            "state list",
            "state pull",
            "state show",
            "validate",
            "version",
            "workspace",
            "workspace list",
            "workspace new",
            "workspace select",
            "workspace show",
            "env",
            "env list",
            "env new",
            "env select",
        ],
        flags: &[],
        action: Action::Pass,
    },
    BuiltinRule {
        name: "builtin:kubectl-mutating",
        tools: KUBECTL,
        subcommands: &[
            "apply",
            "apply edit-last-applied",
            "apply set-last-applied",
            "annotate",
            "attach",
            "auth reconcile",
            "autoscale",
            "certificate*",
            "cordon",
            "cp",
            "create*",
            "debug",
            "delete",
            "drain",
            "edit",
            "exec",
            "expose",
            "label",
            "patch",
            "port-forward",
            "proxy",
            "replace",
            "rollout pause",
            "rollout restart",
            "rollout resume",
            "rollout undo",
            "run",
            "scale",
            "set*",
            "taint",
            "uncordon",
        ],
        flags: &[],
        action: Action::Gate,
    },
    BuiltinRule {
        name: "builtin:kubectl-read-only",
        tools: KUBECTL,
        subcommands: &[
            "",
            "api-resources",
            "api-versions",
            "apply view-last-applied",
            "auth",
            "auth can-i",
            "auth whoami",
            "cluster-info*",
            "completion",
            "config*",
            "describe",
            "diff",
            "events",
            "explain",
            "get",
            "help",
            "kustomize",
            "logs",
            "options",
            "plugin*",
            "rollout",
            "rollout history",
            "rollout status",
            "top*",
            "version",
            "wait",
        ],
        flags: &[],
        action: Action::Pass,
    },
    BuiltinRule {
        name: "builtin:helm-mutating",
        tools: HELM,
        subcommands: &[
            "install",
            "upgrade",
            "uninstall",
            "delete",
            "del",
            "un",
            "rollback",
            "test",
            "plugin add",
            "plugin install",
            "plugin uninstall",
            "plugin rm",
            "plugin remove",
            "plugin update",
            "plugin up",
            "push",
        ],
        flags: &[],
        action: Action::Gate,
    },
    BuiltinRule {
        name: "builtin:helm-read-only",
        tools: HELM,
        subcommands: &[
            "",
            "completion*",
            "create",
            "dependency*",
            "dep*",
            "dependencies*",
            "env",
            "get*",
            "help",
            "history",
            "hist",
            "lint",
            "list",
            "ls",
            "package",
            "plugin",
            "plugin list",
            "plugin ls",
            "plugin package",
            "plugin verify",
            "pull",
            "fetch",
            "registry*",
            "repo*",
            "search*",
            "show*",
            "inspect*",
            "status",
            "template",
            "verify",
            "version",
        ],
        flags: &[],
        action: Action::Pass,
    },
];

/// The name reported when a known subcommand is on no list: it gates.
pub const UNLISTED: &str = "builtin:unlisted";
/// The name reported for unknown subcommands and uncertain readings.
pub const UNKNOWN: &str = "defaults.unknown_subcommand";

#[cfg(test)]
mod tests {
    /// docs/policy.md prints the built-in rules; this keeps it honest.
    #[test]
    fn docs_list_every_builtin_pattern() {
        let doc = include_str!("../../docs/policy.md");
        for rule in super::RULES {
            let line = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", rule.name)))
                .unwrap_or_else(|| panic!("docs/policy.md lacks rule {}", rule.name));
            for p in rule.subcommands.iter().filter(|p| !p.is_empty()) {
                assert!(
                    line.contains(&format!("`{p}`")),
                    "{}: {p} missing in docs",
                    rule.name
                );
            }
            assert!(
                line.contains(&format!("| {} |", rule.action.as_str())),
                "{}",
                rule.name
            );
        }
    }
}
