//! terraform (and tofu) plans: `terraform show -json PLANFILE` → [`ChangeSet`].
//!
//! The JSON plan format has `format_version` "0.x" (terraform 1.0) and "1.x" (1.1 and later);
//! `resource_changes[].change` has the same keys in both. A major version of 2 or later is
//! refused: a format this code was not written for could hide a change, so it fails closed.
//! Top-level keys added by newer versions are ignored. An `actions` list this code does not know
//! becomes [`Action::Unknown`], which needs approval and is flagged.
//!
//! Masking: a value whose `before_sensitive` / `after_sensitive` mark is `true` is shown as
//! `(sensitive value)`, at whatever depth the mark sits; a value marked in `after_unknown` is
//! shown as `(known after apply)`.
//!
//! A plan changes something when any resource action is not a no-op, and also when it imports
//! (`change.importing`), moves (`previous_address`), changes a root output (`output_changes`),
//! or writes drift to the state (`resource_drift`, which is all a refresh-only plan holds). A
//! plan that terraform itself calls `applyable` but that lists none of these is shown as an
//! unknown change, and one that `errored` is refused: "no changes" is only ever what this code
//! could read.

use serde_json::Value;

use super::{Action, ChangeSet, ResourceChange};

/// Reads the JSON of `terraform show -json PLANFILE`.
pub fn parse_plan(json: &[u8]) -> Result<ChangeSet, String> {
    let plan: Value = serde_json::from_slice(json)
        .map_err(|e| format!("terraform show -json did not print JSON: {e}"))?;
    let version = plan
        .get("format_version")
        .and_then(Value::as_str)
        .ok_or("the plan JSON has no format_version")?;
    let major: u64 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("the plan JSON format_version {version:?} is not a version"))?;
    if major >= 2 {
        return Err(format!(
            "the plan JSON format_version is {version}; this hitl-gate reads 0.x and 1.x only, \
             so it cannot show the change safely (upgrade hitl-gate)"
        ));
    }
    if plan.get("errored") == Some(&Value::Bool(true)) {
        return Err("terraform reports that the plan errored".into());
    }
    let list = |k: &str| {
        plan.get(k)
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
    };
    let mut resources = Vec::new();
    for rc in list("resource_changes") {
        resources.push(resource_change(rc)?);
    }
    for rc in list("resource_drift") {
        let mut d = resource_change(rc)?;
        if d.action != Action::NoOp {
            d.action_reason = Some(format!("{} outside terraform", d.action.participle()));
            d.action = Action::Drift;
            resources.push(d);
        }
    }
    if let Some(outputs) = plan.get("output_changes").and_then(Value::as_object) {
        for (name, change) in outputs {
            let actions = change.get("actions").and_then(Value::as_array);
            if actions.is_some_and(|a| a.iter().all(|x| x == "no-op")) {
                continue;
            }
            let field = |k: &str| change.get(k).unwrap_or(&Value::Null);
            resources.push(ResourceChange {
                address: format!("output.{name}"),
                action: Action::Output,
                action_reason: None,
                attributes: super::changed_attributes(
                    (field("before"), field("before_sensitive")),
                    (field("after"), field("after_sensitive")),
                    field("after_unknown"),
                ),
            });
        }
    }
    for key in [
        "deferred_changes",
        "deferred_action_invocations",
        "action_invocations",
    ] {
        if !list(key).is_empty() {
            resources.push(ResourceChange {
                address: key.into(),
                action: Action::Unknown(format!("{} entries", list(key).len())),
                action_reason: Some("this hitl-gate cannot show them".into()),
                attributes: Vec::new(),
            });
        }
    }
    let set = ChangeSet {
        resources,
        unknown: Vec::new(),
    };
    if set.is_empty() && plan.get("applyable") == Some(&Value::Bool(true)) {
        return Ok(ChangeSet {
            resources: vec![ResourceChange {
                address: "plan".into(),
                action: Action::Unknown("applyable".into()),
                action_reason: Some(
                    "terraform says the plan changes something this hitl-gate does not list".into(),
                ),
                attributes: Vec::new(),
            }],
            unknown: Vec::new(),
        });
    }
    Ok(set)
}

fn resource_change(rc: &Value) -> Result<ResourceChange, String> {
    let address = rc
        .get("address")
        .and_then(Value::as_str)
        .ok_or("a resource change has no address")?
        .to_string();
    let change = rc
        .get("change")
        .ok_or_else(|| format!("{address}: no change"))?;
    let actions: Vec<&str> = change
        .get("actions")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{address}: no actions"))?
        .iter()
        .map(|a| a.as_str().unwrap_or("?"))
        .collect();
    let action = match actions.as_slice() {
        ["no-op"] => Action::NoOp,
        ["create"] => Action::Create,
        ["read"] => Action::Read,
        ["update"] => Action::Update,
        ["delete"] => Action::Delete,
        ["delete", "create"] | ["create", "delete"] => Action::Replace,
        other => Action::Unknown(other.join(",")),
    };
    let field = |k: &str| change.get(k).unwrap_or(&Value::Null);
    let mut reasons: Vec<String> = rc
        .get("action_reason")
        .and_then(Value::as_str)
        .map(String::from)
        .into_iter()
        .collect();
    let mut action = action;
    if let Some(importing) = change.get("importing").filter(|i| !i.is_null()) {
        let id = importing["id"].as_str().unwrap_or("?");
        reasons.push(format!("imported from id {id:?}"));
        if action == Action::NoOp {
            action = Action::Import;
        }
    }
    if let Some(prev) = rc.get("previous_address").and_then(Value::as_str) {
        if prev != address {
            reasons.push(format!("moved from {prev}"));
            if action == Action::NoOp {
                action = Action::Move;
            }
        }
    }
    let attributes = if matches!(
        action,
        Action::NoOp | Action::Read | Action::Import | Action::Move
    ) {
        Vec::new()
    } else {
        super::changed_attributes(
            (field("before"), field("before_sensitive")),
            (field("after"), field("after_sensitive")),
            field("after_unknown"),
        )
    };
    Ok(ResourceChange {
        address,
        action,
        action_reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        attributes,
    })
}

/// The resources whose configuration has a `local-exec` or `remote-exec` provisioner, from the
/// JSON of `terraform show -json PLANFILE` (its `configuration`, modules included), as
/// `address (type)`.
pub fn provisioners(json: &[u8]) -> Vec<String> {
    fn walk(module: &Value, prefix: &str, out: &mut Vec<String>) {
        for r in module["resources"].as_array().into_iter().flatten() {
            for p in r["provisioners"].as_array().into_iter().flatten() {
                let kind = p["type"].as_str().unwrap_or("?");
                if matches!(kind, "local-exec" | "remote-exec") {
                    let addr = r["address"].as_str().unwrap_or("?");
                    out.push(format!("{prefix}{addr} ({kind})"));
                }
            }
        }
        for (name, call) in module["module_calls"].as_object().into_iter().flatten() {
            walk(&call["module"], &format!("{prefix}module.{name}."), out);
        }
    }
    let mut out = Vec::new();
    if let Ok(plan) = serde_json::from_slice::<Value>(json) {
        walk(&plan["configuration"]["root_module"], "", &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_0_and_1_parse_and_2_is_refused() {
        for v in ["0.2", "1.2"] {
            let set = parse_plan(
                format!(r#"{{"format_version":"{v}","resource_changes":[],"applyable":false}}"#)
                    .as_bytes(),
            )
            .unwrap();
            assert!(set.is_empty());
        }
        let e = parse_plan(br#"{"format_version":"2.0"}"#).unwrap_err();
        assert!(e.contains("2.0") && e.contains("cannot show"), "{e}");
        assert!(parse_plan(b"not json").is_err());
        assert!(parse_plan(br#"{"resource_changes":[]}"#).is_err());
    }

    #[test]
    fn imports_moves_outputs_drift_and_applyable_plans_are_changes() {
        let plan = |body: &str| {
            parse_plan(format!(r#"{{"format_version":"1.2",{body}}}"#).as_bytes()).unwrap()
        };
        let import = plan(
            r#""resource_changes":[{"address":"x.a","change":{"actions":["no-op"],"importing":{"id":"i-1"}}}]"#,
        );
        assert_eq!(import.resources[0].action, Action::Import);
        assert!(
            import.render().contains("imported from id \"i-1\""),
            "{}",
            import.render()
        );
        let moved = plan(
            r#""resource_changes":[{"address":"x.b","previous_address":"x.a","change":{"actions":["no-op"]}}]"#,
        );
        assert_eq!(moved.resources[0].action, Action::Move);
        let out = plan(
            r#""resource_changes":[],"output_changes":{"o":{"actions":["update"],"before":"1","after":"2"},"same":{"actions":["no-op"]}}"#,
        );
        assert_eq!(out.resources.len(), 1);
        assert!(out.render().contains("output.o"), "{}", out.render());
        let drift = plan(
            r#""resource_changes":[],"resource_drift":[{"address":"x.a","change":{"actions":["update"],"before":{"k":"a"},"after":{"k":"b"}}}]"#,
        );
        assert_eq!(drift.resources[0].action, Action::Drift);
        assert!(
            drift.render().contains("; updated outside terraform)"),
            "{}",
            drift.render()
        );
        let applyable = plan(r#""resource_changes":[],"applyable":true"#);
        assert!(matches!(applyable.resources[0].action, Action::Unknown(_)));
        for set in [import, moved, out, drift, applyable] {
            assert!(!set.is_empty(), "{set:?}");
        }
        assert!(plan(r#""resource_changes":[],"applyable":false"#).is_empty());
        assert!(parse_plan(br#"{"format_version":"1.2","errored":true}"#).is_err());
    }

    #[test]
    fn masks_sensitive_and_marks_unknown_values() {
        let json = br#"{"format_version":"1.2","resource_changes":[
          {"address":"x.a","change":{"actions":["delete","create"],
            "before":{"id":"1","triggers":{"k":"old","pw":"hunter2"}},
            "after":{"triggers":{"k":"new","pw":"swordfish"}},
            "after_unknown":{"id":true,"triggers":{}},
            "before_sensitive":{"triggers":{"pw":true}},
            "after_sensitive":{"triggers":{"pw":true}}},
           "action_reason":"replace_because_cannot_update"},
          {"address":"x.b","change":{"actions":["forget"],"before":{"id":"2"},"after":null}}]}"#;
        let set = parse_plan(json).unwrap();
        let a = &set.resources[0];
        assert_eq!(a.action, Action::Replace);
        assert_eq!(
            a.action_reason.as_deref(),
            Some("replace_because_cannot_update")
        );
        let text = set.render();
        assert!(
            !text.contains("hunter2") && !text.contains("swordfish"),
            "{text}"
        );
        assert!(text.contains("triggers.k: \"old\" -> \"new\""), "{text}");
        assert!(text.contains("id: \"1\" -> (known after apply)"), "{text}");
        // A masked value that changed is listed as changed, masked on both sides.
        assert!(
            text.contains("triggers.pw: (sensitive value) -> (sensitive value)"),
            "{text}"
        );
        assert_eq!(set.resources[1].action, Action::Unknown("forget".into()));
        assert_eq!(
            set.summary_line(),
            "+1 ~0 -1 (1 replace) (1 unknown action)"
        );
    }
}
