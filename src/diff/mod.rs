//! The common change model: what an approver is shown, per resource, whatever tool produced it.
//!
//! Producers (`terraform.rs` for terraform plans, `kube.rs` for Kubernetes objects) turn the
//! real tool's output into a [`ChangeSet`]. Its text rendering flags destroys and replaces
//! first, and its JSON form is the structured `diff.summary` sent to the server. Values arrive
//! here already masked: sensitive values are `(sensitive value)`, values only known after the
//! apply are `(known after apply)`.
//! The tool's output is untrusted text; nothing here decides anything from it but what to show.

pub mod kube;
mod kube_fields;
mod kube_yaml;
pub mod terraform;
pub mod wire;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// How a masked value is shown.
pub const SENSITIVE: &str = "(sensitive value)";
/// How a value only known after the change is shown.
pub const UNKNOWN: &str = "(known after apply)";

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
    /// terraform: an existing object is imported into the state (its `import` block).
    Import,
    /// terraform: the resource moves to a new address in the state (its `moved` block).
    Move,
    /// terraform: the object changed outside terraform; applying writes that to the state.
    Drift,
    /// terraform: a root module output changes.
    Output,
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
            Action::Import => "<-",
            Action::Move => "->",
            Action::Drift => "!",
            Action::Output => "~",
            Action::Unknown(_) => "?",
        }
    }

    /// The past participle, for a sentence about the object (`deleted outside terraform`).
    pub fn participle(&self) -> String {
        match self {
            Action::Create => "created".into(),
            Action::Update => "updated".into(),
            Action::Delete => "deleted".into(),
            Action::Replace => "replaced".into(),
            Action::Read => "read".into(),
            Action::NoOp => "left as it is".into(),
            Action::Import => "imported".into(),
            Action::Move => "moved".into(),
            Action::Drift => "written to the state as changed outside terraform".into(),
            Action::Output => "changed (an output)".into(),
            Action::Unknown(a) => format!("changed by an UNKNOWN ACTION {a:?}"),
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
            Action::Import => "import".into(),
            Action::Move => "move".into(),
            Action::Drift => "changed outside terraform; written to the state".into(),
            Action::Output => "output change".into(),
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

/// Every change of one command, or what could not be known of them.
///
/// Absent is not empty: when the gate cannot compute the change (no diff is possible for the
/// command, a dry run or a lookup failed), `unknown` says why, and the set is never "no
/// changes", whatever `resources` holds. The server never auto-approves such a set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangeSet {
    pub resources: Vec<ResourceChange>,
    /// Why the change is not fully known, one reason each; empty when it is.
    pub unknown: Vec<String>,
}

/// Counts in terraform's terms: a replace adds one and destroys one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Counts {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub replace: usize,
    pub read: usize,
    pub import: usize,
    #[serde(rename = "move")]
    pub moved: usize,
    pub drift: usize,
    pub output: usize,
    pub unknown: usize,
}

impl ChangeSet {
    /// A change the gate cannot compute, and why.
    pub fn unknown(why: impl Into<String>) -> ChangeSet {
        ChangeSet {
            resources: Vec::new(),
            unknown: vec![why.into()],
        }
    }

    /// Whether every change of the command is in the set.
    pub fn is_complete(&self) -> bool {
        self.unknown.is_empty()
    }

    /// Adds the changes of `other` (and what is unknown of them).
    pub fn extend(&mut self, other: ChangeSet) {
        self.resources.extend(other.resources);
        self.unknown.extend(other.unknown);
    }

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
                Action::Import => c.import += 1,
                Action::Move => c.moved += 1,
                Action::Drift => c.drift += 1,
                Action::Output => c.output += 1,
                Action::Unknown(_) => c.unknown += 1,
            }
        }
        c
    }

    /// True when applying would change nothing: the set is complete and every entry is a
    /// no-op. A read, an import, a move, drift written to the state, an output change, an
    /// unknown action or an unknown change is a change.
    pub fn is_empty(&self) -> bool {
        self.is_complete() && self.resources.iter().all(|r| r.action == Action::NoOp)
    }

    /// `+2 ~1 -1 (1 replace)`, in terraform's own terms.
    pub fn summary_line(&self) -> String {
        let c = self.counts();
        let mut s = format!("+{} ~{} -{}", c.add, c.change, c.destroy);
        for (n, what) in [
            (c.replace, "replace"),
            (c.read, "read"),
            (c.import, "import"),
            (c.moved, "move"),
            (c.drift, "drift"),
            (c.output, "output change"),
            (c.unknown, "unknown action"),
        ] {
            if n > 0 {
                s.push_str(&format!(" ({n} {what})"));
            }
        }
        if !self.is_complete() {
            s.push_str(" (changes unknown)");
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
        if !self.is_complete() {
            out.push_str(
                "\n!!! THE CHANGES ARE NOT KNOWN: the gate could not compute all of them !!!\n",
            );
            for why in &self.unknown {
                out.push_str(&format!("!!! {why}\n"));
            }
        }
        if !flagged.is_empty() {
            out.push_str("\n!!! DESTRUCTIVE CHANGES !!!\n");
            for r in &flagged {
                out.push_str(&format!(
                    "!!! {} will be {}",
                    r.address,
                    r.action.participle()
                ));
                if let Some(why) = &r.action_reason {
                    out.push_str(&format!(" ({why})"));
                }
                out.push('\n');
            }
        }
        for r in self.resources.iter().filter(|r| r.action != Action::NoOp) {
            let why = r
                .action_reason
                .as_deref()
                .map(|w| format!("; {w}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "\n{} {} ({}{why})\n",
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

    /// The structured summary sent as `diff.summary` (`wire.rs` reads it back). `complete` is
    /// written out, never implied: a summary without `"complete": true` is an unknown change.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "complete": self.is_complete(),
            "unknown": self.unknown,
            "summary": self.summary_line(),
            "counts": self.counts(),
            "resources": self.resources,
        })
    }
}

/// The attributes that differ between two JSON values, as `path: before -> after`. Each side
/// comes with its sensitivity marks (the value's shape with `true` where a value is masked, or
/// `true` for all of it); `after_unknown` marks values only known after the change. A masked
/// value that changed is listed, masked on both sides; its raw text is never shown.
pub fn changed_attributes(
    before: (&Value, &Value),
    after: (&Value, &Value),
    after_unknown: &Value,
) -> Vec<AttrChange> {
    let mut b = BTreeMap::new();
    flatten(before.0, before.1, &Value::Null, String::new(), &mut b);
    let mut a = BTreeMap::new();
    flatten(after.0, after.1, after_unknown, String::new(), &mut a);
    let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (b.get(k), a.get(k));
            (x.map(|l| &l.raw) != y.map(|l| &l.raw)).then(|| AttrChange {
                path: k.clone(),
                before: x.map(|l| l.shown.clone()),
                after: y.map(|l| l.shown.clone()),
            })
        })
        .collect()
}

/// One flattened value: what is shown, and what is compared (the raw JSON, so a change of a
/// masked value is still seen as a change; the raw text is never shown).
struct Leaf {
    shown: String,
    raw: String,
}

/// Flattens a value into `path → leaf`, masking what `sensitive` marks and replacing what
/// `unknown` marks. Both marks mirror the value's shape, or are `true` for a whole subtree.
fn flatten(
    value: &Value,
    sensitive: &Value,
    unknown: &Value,
    path: String,
    out: &mut BTreeMap<String, Leaf>,
) {
    let key = |p: &str| {
        if p.is_empty() {
            "(value)".to_string()
        } else {
            p.to_string()
        }
    };
    if unknown == &Value::Bool(true) {
        let leaf = Leaf {
            shown: UNKNOWN.into(),
            raw: UNKNOWN.into(),
        };
        out.insert(key(&path), leaf);
        return;
    }
    if sensitive == &Value::Bool(true) {
        let leaf = Leaf {
            shown: SENSITIVE.into(),
            raw: value.to_string(),
        };
        out.insert(key(&path), leaf);
        return;
    }
    let child = |mark: &Value, k: &Value| -> Value {
        match (mark, k) {
            (Value::Object(m), Value::String(k)) => m.get(k).cloned().unwrap_or(Value::Null),
            (Value::Array(a), Value::Number(i)) => i
                .as_u64()
                .and_then(|i| a.get(usize::try_from(i).ok()?))
                .cloned()
                .unwrap_or(Value::Null),
            _ => Value::Null,
        }
    };
    match value {
        Value::Object(m) => {
            // Unknown keys can appear in `after_unknown` only (the value is null there).
            let mut keys: Vec<&String> = m.keys().collect();
            if let Value::Object(u) = unknown {
                keys.extend(u.keys().filter(|k| !m.contains_key(*k)));
            }
            for k in keys {
                let kv = Value::String(k.clone());
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(
                    m.get(k).unwrap_or(&Value::Null),
                    &child(sensitive, &kv),
                    &child(unknown, &kv),
                    p,
                    out,
                );
            }
        }
        Value::Array(a) => {
            let n = match unknown {
                Value::Array(u) => a.len().max(u.len()),
                _ => a.len(),
            };
            for i in 0..n {
                let iv = Value::from(i);
                flatten(
                    a.get(i).unwrap_or(&Value::Null),
                    &child(sensitive, &iv),
                    &child(unknown, &iv),
                    format!("{path}[{i}]"),
                    out,
                );
            }
        }
        Value::Null => {}
        scalar => {
            let leaf = Leaf {
                shown: scalar.to_string(),
                raw: scalar.to_string(),
            };
            out.insert(key(&path), leaf);
        }
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
            unknown: Vec::new(),
        };
        assert_eq!(set.summary_line(), "+2 ~1 -2 (1 replace)");
        assert!(!set.is_empty());
        let text = set.render();
        assert!(text.contains("!!! c will be deleted\n"), "{text}");
        assert!(text.contains("!!! d will be replaced\n"), "{text}");
        assert!(!text.contains("e ("), "no-ops are not listed: {text}");
    }

    #[test]
    fn only_no_ops_is_empty_and_unknown_is_a_change() {
        assert!(ChangeSet::default().is_empty());
        let set = ChangeSet {
            resources: vec![rc("a", Action::NoOp)],
            unknown: Vec::new(),
        };
        assert!(set.is_empty());
        assert_eq!(set.summary_line(), "+0 ~0 -0");
        let set = ChangeSet {
            resources: vec![rc("a", Action::Unknown("forget".into()))],
            unknown: Vec::new(),
        };
        assert!(!set.is_empty());
        assert_eq!(set.summary_line(), "+0 ~0 -0 (1 unknown action)");
        let text = set.render();
        assert!(
            text.contains("!!! a will be changed by an UNKNOWN ACTION \"forget\"\n"),
            "{text}"
        );
        for a in [Action::Import, Action::Move, Action::Drift, Action::Output] {
            let set = ChangeSet {
                resources: vec![rc("a", a.clone())],
                unknown: Vec::new(),
            };
            assert!(!set.is_empty(), "{a:?} is a change");
        }
    }

    #[test]
    fn an_unknown_change_is_never_empty_and_says_so() {
        let set = ChangeSet::unknown("the dry run failed");
        assert!(!set.is_empty() && !set.is_complete());
        assert_eq!(set.summary_line(), "+0 ~0 -0 (changes unknown)");
        assert!(set.render().contains("the dry run failed"));
        let json = set.to_json();
        assert_eq!(json["complete"], false);
        assert_eq!(json["unknown"][0], "the dry run failed");
        assert_eq!(ChangeSet::default().to_json()["complete"], true);
    }
}
