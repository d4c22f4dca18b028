//! The common change model: what an approver is shown, per resource, whatever tool produced it.
//!
//! Producers (one file per tool: `terraform.rs` today) turn the real tool's output into a
//! [`ChangeSet`]. Its text rendering flags destroys and replaces first, and its JSON form is the
//! structured `diff.summary` sent to the server. Values arrive here already masked: sensitive
//! values are `(sensitive value)`, values only known after the apply are `(known after apply)`.
//! The tool's output is untrusted text; nothing here decides anything from it but what to show.

pub mod terraform;

use serde::Serialize;

/// What happens to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Delete,
    /// Delete and create, in either order.
    Replace,
    Read,
    NoOp,
    /// An action this hitl-gate does not know (a newer tool's). It always needs approval.
    Unknown(String),
}

impl Action {
    /// The symbol terraform uses in its own plan output.
    fn symbol(&self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::Replace => "-/+",
            Action::Read => "<=",
            Action::NoOp => " ",
            Action::Unknown(_) => "?",
        }
    }

    fn word(&self) -> String {
        match self {
            Action::Create => "create".into(),
            Action::Update => "update".into(),
            Action::Delete => "DELETE".into(),
            Action::Replace => "REPLACE".into(),
            Action::Read => "read".into(),
            Action::NoOp => "no-op".into(),
            Action::Unknown(a) => format!("UNKNOWN ACTION {a:?}"),
        }
    }
}

/// One attribute that changes: its path and the values before and after, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttrChange {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// One resource's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceChange {
    pub address: String,
    pub action: Action,
    /// Why the tool chose the action (terraform's `action_reason`), if it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_reason: Option<String>,
    pub attributes: Vec<AttrChange>,
}

/// Every change of one command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangeSet {
    pub resources: Vec<ResourceChange>,
}

/// Counts in terraform's terms: a replace adds one and destroys one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub replace: usize,
    pub read: usize,
    pub unknown: usize,
}

impl ChangeSet {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for r in &self.resources {
            match r.action {
                Action::Create => c.add += 1,
                Action::Update => c.change += 1,
                Action::Delete => c.destroy += 1,
                Action::Replace => {
                    c.add += 1;
                    c.destroy += 1;
                    c.replace += 1;
                }
                Action::Read => c.read += 1,
                Action::NoOp => {}
                Action::Unknown(_) => c.unknown += 1,
            }
        }
        c
    }

    /// True when applying would change nothing: every resource is a no-op. A read or an unknown
    /// action counts as a change.
    pub fn is_empty(&self) -> bool {
        self.resources.iter().all(|r| r.action == Action::NoOp)
    }

    /// `+2 ~1 -1 (1 replace)`, in terraform's own terms.
    pub fn summary_line(&self) -> String {
        let c = self.counts();
        let mut s = format!("+{} ~{} -{}", c.add, c.change, c.destroy);
        for (n, what) in [
            (c.replace, "replace"),
            (c.read, "read"),
            (c.unknown, "unknown action"),
        ] {
            if n > 0 {
                s.push_str(&format!(" ({n} {what})"));
            }
        }
        s
    }

    /// The text shown to approvers above the tool's own output: the summary, then destroys,
    /// replaces and unknown actions flagged, then every change with its attributes.
    pub fn render(&self) -> String {
        let mut out = format!("Summary: {}\n", self.summary_line());
        let flagged: Vec<&ResourceChange> = self
            .resources
            .iter()
            .filter(|r| {
                matches!(
                    r.action,
                    Action::Delete | Action::Replace | Action::Unknown(_)
                )
            })
            .collect();
        if !flagged.is_empty() {
            out.push_str("\n!!! DESTRUCTIVE CHANGES !!!\n");
            for r in &flagged {
                out.push_str(&format!("!!! {} will be {}", r.address, r.action.word()));
                if let Some(why) = &r.action_reason {
                    out.push_str(&format!(" ({why})"));
                }
                out.push('\n');
            }
        }
        for r in self.resources.iter().filter(|r| r.action != Action::NoOp) {
            out.push_str(&format!(
                "\n{} {} ({})\n",
                r.action.symbol(),
                r.address,
                r.action.word()
            ));
            for a in &r.attributes {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
                out.push_str(&format!(
                    "    {}: {} -> {}\n",
                    a.path,
                    show(&a.before),
                    show(&a.after)
                ));
            }
        }
        out
    }

    /// The structured summary sent as `diff.summary`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "summary": self.summary_line(),
            "counts": self.counts(),
            "resources": self.resources,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(address: &str, action: Action) -> ResourceChange {
        ResourceChange {
            address: address.into(),
            action,
            action_reason: None,
            attributes: Vec::new(),
        }
    }

    #[test]
    fn summary_counts_in_terraform_terms() {
        let set = ChangeSet {
            resources: vec![
                rc("a", Action::Create),
                rc("b", Action::Update),
                rc("c", Action::Delete),
                rc("d", Action::Replace),
                rc("e", Action::NoOp),
            ],
        };
        assert_eq!(set.summary_line(), "+2 ~1 -2 (1 replace)");
        assert!(!set.is_empty());
        let text = set.render();
        assert!(text.contains("!!! c will be DELETE"), "{text}");
        assert!(text.contains("!!! d will be REPLACE"), "{text}");
        assert!(!text.contains("e ("), "no-ops are not listed: {text}");
    }

    #[test]
    fn only_no_ops_is_empty_and_unknown_is_a_change() {
        assert!(ChangeSet::default().is_empty());
        let set = ChangeSet {
            resources: vec![rc("a", Action::NoOp)],
        };
        assert!(set.is_empty());
        assert_eq!(set.summary_line(), "+0 ~0 -0");
        let set = ChangeSet {
            resources: vec![rc("a", Action::Unknown("forget".into()))],
        };
        assert!(!set.is_empty());
        assert_eq!(set.summary_line(), "+0 ~0 -0 (1 unknown action)");
        assert!(set.render().contains("UNKNOWN ACTION \"forget\""));
    }
}
