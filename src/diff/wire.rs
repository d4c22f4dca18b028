//! The change model as the server reads it back from a request's `diff.summary`.
//!
//! The summary is what a client sent: the shim's model, or whatever a hand-made request
//! claims. The server trusts none of its derived fields. It reads only the resources'
//! addresses and actions, and computes the counts and the summary line itself from them, so the
//! figures shown anywhere (Slack, webhooks, `show`, the UI) are the server's. A summary that
//! does not say `"complete": true`, or lists a reason in `unknown`, or holds an action this
//! build cannot read, is an unknown change: absent is not empty.

use serde_json::Value;

use super::{Action, ChangeSet, ResourceChange};

impl Action {
    /// The change model's (kebab-case) name of a known action; `None` for [`Action::Unknown`].
    pub fn as_str(&self) -> Option<&'static str> {
        Some(match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Replace => "replace",
            Action::Read => "read",
            Action::NoOp => "no-op",
            Action::Import => "import",
            Action::Move => "move",
            Action::Drift => "drift",
            Action::Output => "output",
            Action::Unknown(_) => return None,
        })
    }

    /// Reads an action as the model writes it; anything else is [`Action::Unknown`].
    pub fn from_wire(v: &Value) -> Action {
        let known = [
            Action::Create,
            Action::Update,
            Action::Delete,
            Action::Replace,
            Action::Read,
            Action::NoOp,
            Action::Import,
            Action::Move,
            Action::Drift,
            Action::Output,
        ];
        v.as_str()
            .and_then(|s| known.into_iter().find(|a| a.as_str() == Some(s)))
            .unwrap_or_else(|| Action::Unknown(v.to_string()))
    }
}

impl ChangeSet {
    /// The model a request's `diff.summary` reports, read by the server: addresses and actions
    /// only (attributes are for display and are not read back), and every reason it is not
    /// complete. Never fails: what cannot be read makes the set unknown.
    pub fn from_wire(summary: &Value) -> ChangeSet {
        let mut set = ChangeSet::default();
        match summary.get("resources").and_then(Value::as_array) {
            Some(list) => {
                for r in list {
                    let address = r.get("address").and_then(Value::as_str);
                    let action = Action::from_wire(r.get("action").unwrap_or(&Value::Null));
                    set.resources.push(ResourceChange {
                        address: address.unwrap_or("(no address)").to_string(),
                        action,
                        action_reason: None,
                        attributes: Vec::new(),
                    });
                }
            }
            None => set
                .unknown
                .push("the request carries no change model".into()),
        }
        if let Some(why) = summary.get("unknown").and_then(Value::as_array) {
            for w in why {
                let text = w.as_str().map_or_else(|| w.to_string(), String::from);
                set.unknown.push(text);
            }
        }
        if set.unknown.is_empty() && summary.get("complete") != Some(&Value::Bool(true)) {
            set.unknown
                .push("the change model does not say it is complete".into());
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_model_round_trips_through_the_wire() {
        let set = ChangeSet {
            resources: vec![
                ResourceChange {
                    address: "configmap/a".into(),
                    action: Action::Create,
                    action_reason: None,
                    attributes: Vec::new(),
                },
                ResourceChange {
                    address: "x".into(),
                    action: Action::Unknown("forget".into()),
                    action_reason: None,
                    attributes: Vec::new(),
                },
            ],
            unknown: Vec::new(),
        };
        let back = ChangeSet::from_wire(&set.to_json());
        assert!(back.is_complete());
        assert_eq!(back.resources[0].action, Action::Create);
        assert!(matches!(back.resources[1].action, Action::Unknown(_)));
        assert_eq!(back.counts(), set.counts());
        let unknown = ChangeSet::unknown("no dry run");
        assert_eq!(
            ChangeSet::from_wire(&unknown.to_json()).unknown,
            ["no dry run"]
        );
    }

    #[test]
    fn absent_is_not_empty() {
        for summary in [
            json!({"resources": []}),
            json!({"resources": [], "complete": "true"}),
            json!({"summary": "no diff possible"}),
            json!(null),
            json!({"resources": [], "complete": true, "unknown": ["helm lookup failed"]}),
        ] {
            let set = ChangeSet::from_wire(&summary);
            assert!(!set.is_complete() && !set.is_empty(), "{summary}");
        }
        let set = ChangeSet::from_wire(&json!({"resources": [], "complete": true}));
        assert!(set.is_complete() && set.is_empty());
    }

    #[test]
    fn the_counts_are_computed_not_copied() {
        let summary = json!({
            "complete": true,
            "summary": "+0 ~0 -0",
            "counts": {"add": 0, "change": 0, "destroy": 0},
            "resources": [{"address": "deployment/web", "action": "delete"}],
        });
        let set = ChangeSet::from_wire(&summary);
        assert_eq!(set.counts().destroy, 1);
        assert_eq!(set.summary_line(), "+0 ~0 -1");
    }
}
