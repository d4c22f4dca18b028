//! The policy file's schema (TOML, serde). Every field here is documented, line by line, in
//! `policy.example.toml` and `docs/policy.md`; keep the three in step.
//!
//! Unknown keys are errors (`deny_unknown_fields`): a typo in a security policy must not be
//! silently ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Schema version. Only 1 exists.
    pub version: u32,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub tools: Tools,
    /// `[[environment]]` tables, matched in file order; the first match wins.
    #[serde(default, rename = "environment")]
    pub environments: Vec<Environment>,
    /// `[[rule]]` tables, matched in file order before the built-in rules; the first match wins.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

/// `[defaults]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// What to do with a subcommand the reader does not know (kubectl/helm plugins, typos,
    /// commands newer than hitl-gate) or cannot read with certainty.
    #[serde(default = "Action::gate")]
    pub unknown_subcommand: Action,
    /// Whether the built-in rules (docs/policy.md lists them) follow the file's rules.
    #[serde(default = "yes")]
    pub builtin_rules: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            unknown_subcommand: Action::Gate,
            builtin_rules: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// `[tools.<name>]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tools {
    pub terraform: Option<ToolConfig>,
    pub tofu: Option<ToolConfig>,
    pub kubectl: Option<ToolConfig>,
    pub helm: Option<ToolConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// Absolute path of the real binary. When unset, PATH is searched (skipping the shims).
    pub real_path: Option<PathBuf>,
}

/// What a rule does with a matching command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Run the real tool at once, untouched.
    Pass,
    /// Ask a human first.
    Gate,
    /// Never run it.
    Deny,
}

impl Action {
    fn gate() -> Action {
        Action::Gate
    }

    /// The spelling used in policy files and `explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Gate => "gate",
            Action::Deny => "deny",
        }
    }
}

/// How much damage a mistake in an environment can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

/// A tool name as written in a rule's `tools` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolName {
    Terraform,
    Tofu,
    Kubectl,
    Helm,
}

/// `[[environment]]`: a named target, matched when *any* of its selectors matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub name: String,
    pub risk: Risk,
    /// Globs over the kube context (kubectl `--context`, helm `--kube-context`, else the
    /// kubeconfig's current-context).
    #[serde(default)]
    pub kube_contexts: Vec<String>,
    /// Globs over the namespace given on the command line (or `HELM_NAMESPACE`).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Globs over the terraform workspace (`TF_WORKSPACE`, else `.terraform/environment`,
    /// else `default`).
    #[serde(default)]
    pub terraform_workspaces: Vec<String>,
    /// Globs over the working directory (with terraform's `-chdir` applied). `*` stays within
    /// one path segment, `**` crosses segments.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// `[[rule]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Shown in messages, `explain` and (later) the audit log. Unique.
    pub name: String,
    /// Tools this rule applies to. Empty means all four.
    #[serde(default)]
    pub tools: Vec<ToolName>,
    /// Globs over the subcommand path joined by spaces (`rollout restart`); `*` matches any
    /// run of characters, spaces included. Empty means any subcommand.
    #[serde(default)]
    pub subcommands: Vec<String>,
    /// Flag conditions, all of which must hold: flag spelling (with its dashes) → accepted
    /// values (globs). `["*"]` accepts any value and a bare boolean flag.
    #[serde(default)]
    pub flags: BTreeMap<String, Vec<String>>,
    /// Environment names this rule is limited to. Empty means any environment, or none.
    #[serde(default)]
    pub environments: Vec<String>,
    pub action: Action,
}
