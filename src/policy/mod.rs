//! The policy: which commands pass, which are gated and which are denied, in which
//! environments. Shared by the shim (its verdict) and the server (its classification).
//!
//! Classification is one straight pass: the file's rules in order, then the built-in rules,
//! then the fallbacks. The first match wins. The result is a [`Verdict`], a `#[must_use]` enum
//! that callers must destructure; there is no boolean "allowed" anywhere.

pub mod approvals;
pub mod builtin;
mod classify;
pub mod duration;
pub mod effects;
pub mod freeze;
pub mod glob;
pub mod load;
pub mod lockdown;
mod matching;
pub mod notify;
pub mod on_server;
pub mod schema;
pub mod server_url;
mod validate;
mod verdict;

use std::path::Path;

use crate::tool::Tool;
pub use matching::{proxy_variables, Context, Facts};
pub use schema::{Action, Risk};
use schema::{PolicyFile, Rule};
pub use verdict::{Decision, EnvMatch, Verdict};

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    file: PolicyFile,
}

impl Policy {
    /// The built-in rules alone (no file).
    pub fn builtin() -> Policy {
        Policy {
            file: PolicyFile {
                version: 1,
                defaults: Default::default(),
                tools: Default::default(),
                environments: Vec::new(),
                rules: Vec::new(),
                serve: Default::default(),
                approval: Default::default(),
                freezes: Vec::new(),
                lockdown: None,
            },
        }
    }

    /// Validates a parsed file: the things serde cannot check.
    pub fn from_file(file: PolicyFile) -> Result<Policy, String> {
        validate::check(&file)?;
        Ok(Policy { file })
    }

    /// The `[approval]` section (the shim's client settings).
    pub fn approval(&self) -> &schema::Approval {
        &self.file.approval
    }

    /// Whether a plan with no changes runs without asking under `rule` (file rules may turn it
    /// off; built-in rules keep the default, true).
    pub fn skip_when_no_changes(&self, rule: &str) -> bool {
        self.file
            .rules
            .iter()
            .find(|r| r.name == rule)
            .and_then(|r| r.skip_when_no_changes)
            .unwrap_or(true)
    }

    /// The `[lockdown]` section, if any.
    pub fn lockdown(&self) -> Option<&lockdown::Lockdown> {
        self.file.lockdown.as_ref()
    }

    /// The `[serve]` section.
    pub fn serve(&self) -> &schema::Serve {
        &self.file.serve
    }

    /// The file's rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.file.rules
    }

    /// A file rule by name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.file.rules.iter().find(|r| r.name == name)
    }

    /// Whether an environment is defined by the API server its commands reach.
    pub fn names_kube_servers(&self) -> bool {
        self.file
            .environments
            .iter()
            .any(|e| !e.kube_servers.is_empty())
    }

    /// The `[[freeze]]` entries.
    pub fn freezes(&self) -> &[freeze::Freeze] {
        &self.file.freezes
    }

    /// The freeze in force at `now_ms` for a request in `environment`, if any (the first in
    /// file order).
    pub fn freeze_at(&self, environment: Option<&str>, now_ms: i64) -> Option<&freeze::Freeze> {
        self.file
            .freezes
            .iter()
            .find(|f| f.covers(environment) && f.active_at(now_ms))
    }

    /// The timeout a rule sets, if it is a file rule that sets one.
    pub fn rule_timeout(&self, rule: &str) -> Option<std::time::Duration> {
        self.file
            .rules
            .iter()
            .find(|r| r.name == rule)
            .and_then(|r| r.timeout.map(|d| d.0))
    }

    /// Whether gated helm commands may use `--post-renderer` (`tools.helm.allow_post_renderer`).
    pub fn allow_post_renderer(&self) -> bool {
        self.file
            .tools
            .helm
            .as_ref()
            .is_some_and(|h| h.allow_post_renderer)
    }

    /// The configured real binary for `tool`, if any.
    pub fn real_path(&self, tool: Tool) -> Option<&Path> {
        let t = &self.file.tools;
        let cfg = match tool {
            Tool::Terraform => &t.terraform,
            Tool::Tofu => &t.tofu,
            Tool::Kubectl => &t.kubectl,
            Tool::Helm => &t.helm,
        };
        cfg.as_ref().and_then(|c| c.real_path.as_deref())
    }
}
