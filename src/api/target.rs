//! The environment target of a request as the shim resolved it (kube context, cluster server,
//! terraform workspace and backend, …), whether it is exact, and how it drifted.

use serde::{Deserialize, Serialize};

/// The target facts the shim resolved. The server re-matches them against its own policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terraform_workspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terraform_backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Why the shim cannot say that the command reaches exactly `cluster_server` (or
    /// `terraform_backend`): a proxy, a TLS or server override, a server URL that cannot be
    /// read exactly. Shown to approvers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inexact: Vec<String>,
    /// The shim checked how the command connects and saw nothing that could send it elsewhere.
    /// Absent (an older shim, a hand-made request) counts as inexact.
    #[serde(default)]
    pub exact: bool,
}

impl Target {
    /// Whether the target is exactly what it names: only an exact target can loosen the gate
    /// (a `pass` rule, an auto-approval).
    pub fn is_exact(&self) -> bool {
        self.exact && self.inexact.is_empty()
    }

    /// Records why the target is inexact (none: it is exact).
    pub fn set_inexact(&mut self, why: Vec<String>) {
        self.exact = why.is_empty();
        self.inexact = why;
    }

    /// One line for approvers, when the target is inexact.
    pub fn inexact_line(&self) -> Option<String> {
        if self.is_exact() {
            return None;
        }
        let why = if self.inexact.is_empty() {
            "the shim did not say how the command connects".to_string()
        } else {
            self.inexact.join("; ")
        };
        Some(format!("target inexact: {why}"))
    }

    /// How the target changed from `self` to `now`, in words (`the kube context changed from
    /// prod to dev`), or `None` when it did not.
    pub fn drift(&self, now: &Target) -> Option<String> {
        let fields = [
            ("kube context", &self.kube_context, &now.kube_context),
            ("cluster server", &self.cluster_server, &now.cluster_server),
            ("kube user", &self.kube_user, &now.kube_user),
            ("namespace", &self.namespace, &now.namespace),
            (
                "terraform workspace",
                &self.terraform_workspace,
                &now.terraform_workspace,
            ),
            (
                "terraform backend",
                &self.terraform_backend,
                &now.terraform_backend,
            ),
            ("directory", &self.dir, &now.dir),
            (
                "target's exactness",
                &self.inexact_line(),
                &now.inexact_line(),
            ),
        ];
        let changes: Vec<String> = fields
            .iter()
            .filter(|(_, a, b)| a != b)
            .map(|(what, a, b)| {
                format!(
                    "the {what} changed from {} to {}",
                    a.as_deref().unwrap_or("none"),
                    b.as_deref().unwrap_or("none")
                )
            })
            .collect();
        (!changes.is_empty()).then(|| changes.join(", "))
    }
}
