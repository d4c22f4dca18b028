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
    let mut resources = Vec::new();
    for rc in plan
        .get("resource_changes")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        resources.push(resource_change(rc)?);
    }
    Ok(ChangeSet { resources })
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
    let attributes = if action == Action::NoOp || action == Action::Read {
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
        action_reason: rc
            .get("action_reason")
            .and_then(Value::as_str)
            .map(String::from),
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_0_and_1_parse_and_2_is_refused() {
        for v in ["0.2", "1.2"] {
            let set = parse_plan(
                format!(r#"{{"format_version":"{v}","resource_changes":[],"applyable":true}}"#)
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
