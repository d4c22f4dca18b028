//! The verdict: what to do with one invocation (`#[must_use]`, destructured by every caller;
//! there is no boolean "allowed" anywhere), and why.

use super::schema::{Action, Risk};

/// What to do with one invocation.
#[must_use = "a verdict decides whether a command runs; it must be acted on"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run the real tool now.
    Pass(Decision),
    /// Ask a human first.
    Gate(Decision),
    /// Never run it.
    Deny(Decision),
}

/// Why a verdict was reached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// The rule that matched (a `[[rule]]` name, or a `builtin:` / `defaults.` name).
    pub rule: String,
    /// The environment matched, if any rule needed one or `explain` asked.
    pub environment: Option<EnvMatch>,
    /// One line for the agent: what happened and why.
    pub reason: String,
}

/// An environment that matched, with its risk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnvMatch {
    pub name: String,
    pub risk: Risk,
}

impl Verdict {
    pub fn decision(&self) -> &Decision {
        match self {
            Verdict::Pass(d) | Verdict::Gate(d) | Verdict::Deny(d) => d,
        }
    }

    pub fn action(&self) -> Action {
        match self {
            Verdict::Pass(_) => Action::Pass,
            Verdict::Gate(_) => Action::Gate,
            Verdict::Deny(_) => Action::Deny,
        }
    }

    pub(super) fn new(action: Action, decision: Decision) -> Verdict {
        match action {
            Action::Pass => Verdict::Pass(decision),
            Action::Gate => Verdict::Gate(decision),
            Action::Deny => Verdict::Deny(decision),
            // The shim gates it; only the server, with the whole request, may approve it.
            Action::AutoApprove => Verdict::Gate(decision),
        }
    }
}
