//! The one line at the top of a request's page that says what the approver is deciding, for
//! example "DELETE Deployment prod/web (3 replicas, image nginx:1.25.3) in production / prod,
//! for agent-a acting for oscar, 14 min left": the change from the change model (one resource
//! with its key fields, or several by action), where it runs, who asks, and the time left.
//!
//! The change model is what the shim sent (`diff.summary`): every string from it is made
//! visible before it is shown, and nothing here decides anything from it.

use maud::{html, Markup};
use serde_json::Value;

use super::fmt;
use super::html::{command, environment, left, shown};
use crate::api::{RequestView, State};

/// Resources named one by one before the rest are counted.
const NAMED: usize = 2;

/// One resource of the change model, as the summary reads it.
struct Resource<'a> {
    action: String,
    address: String,
    attributes: &'a [Value],
}

/// The resources of the model that change something.
fn resources(v: &RequestView) -> Vec<Resource<'_>> {
    let empty: &[Value] = &[];
    v.diff.summary["resources"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(empty)
        .iter()
        .map(|r| Resource {
            action: r["action"]
                .as_str()
                .map_or_else(|| r["action"].to_string(), String::from),
            address: shown(r["address"].as_str().unwrap_or("(no address)")),
            attributes: r["attributes"].as_array().map_or(empty, Vec::as_slice),
        })
        .filter(|r| r.action != "no-op")
        .collect()
}

/// An attribute's value as a person reads it: a JSON string without its quotes.
fn plain(v: &Value) -> Option<String> {
    let text = v.as_str()?;
    Some(shown(
        &serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_string()),
    ))
}

/// The key facts of one resource: for a create or a delete its key fields (replicas, images,
/// a Service's type and ports, a volume's size and class, a Secret's key names); for an update
/// what changed in them, or how many fields changed.
fn facts(r: &Resource<'_>) -> Vec<String> {
    let field = |a: &Value| a["path"].as_str().unwrap_or_default().to_string();
    let is_image = |p: &str| p.ends_with(".image") && p.contains("ontainers[");
    if r.action == "update" {
        let mut out: Vec<String> = r
            .attributes
            .iter()
            .filter(|a| is_image(&field(a)) || field(a) == "spec.replicas")
            .take(NAMED)
            .map(|a| {
                let what = if is_image(&field(a)) {
                    "image"
                } else {
                    "replicas"
                };
                let side = |k: &str| plain(&a[k]).unwrap_or_else(|| "none".into());
                format!("{what} {} → {}", side("before"), side("after"))
            })
            .collect();
        let fields = r
            .attributes
            .iter()
            .filter(|a| !field(a).contains(crate::diff::kube::LAST_APPLIED))
            .count();
        if out.is_empty() && fields > 0 {
            out.push(format!(
                "{fields} field{} changed",
                if fields == 1 { "" } else { "s" }
            ));
        }
        return out;
    }
    let side = if r.action == "create" {
        "after"
    } else {
        "before"
    };
    let mut images = Vec::new();
    let mut out = Vec::new();
    for a in r.attributes {
        let (p, Some(value)) = (field(a), plain(&a[side])) else {
            continue;
        };
        match p.as_str() {
            "spec.replicas" => out.push(format!("{value} replicas")),
            _ if is_image(&p) => images.push(value),
            "spec.type" => out.push(format!("type {value}")),
            "spec.ports" => out.push(format!("ports {value}")),
            "spec.resources.requests.storage" | "spec.capacity.storage" => out.push(value),
            "spec.storageClassName" => out.push(format!("class {value}")),
            "data (keys)" | "stringData (keys)" => out.push(format!("keys {value}")),
            _ => {}
        }
    }
    images.dedup();
    if !images.is_empty() {
        let n = images.len();
        let word = if n == 1 { "image" } else { "images" };
        out.push(format!("{word} {}", images.join(", ")));
    }
    out
}

/// What changes, in words: one resource with its facts, or the first few with the rest
/// counted; the command itself when the model names nothing.
pub fn what(v: &RequestView) -> String {
    let rs = resources(v);
    let named = |r: &Resource<'_>| {
        let f = facts(r);
        match f.is_empty() {
            true => r.address.clone(),
            false => format!("{} ({})", r.address, f.join(", ")),
        }
    };
    let verb = |r: &Resource<'_>| shown(&r.action.to_uppercase());
    let first: Vec<String> = rs.iter().take(NAMED).map(named).collect();
    let rest = rs.len().saturating_sub(NAMED);
    let same = rs.windows(2).all(|w| w[0].action == w[1].action);
    let mut out = match rs.len() {
        0 if v.changes.complete => format!("No changes: {}", fmt::middle(&command(v), 80)),
        0 => fmt::middle(&command(v), 80),
        1 => format!("{} {}", verb(&rs[0]), first[0]),
        2 if same => format!("{} {} and {}", verb(&rs[0]), first[0], first[1]),
        n if same => format!("{} {n}: {} and {rest} more", verb(&rs[0]), first.join(", ")),
        n => {
            let each: Vec<String> = rs
                .iter()
                .zip(&first)
                .map(|(r, f)| format!("{} {f}", verb(r)))
                .collect();
            let more = match rest {
                0 => String::new(),
                k => format!(" and {k} more"),
            };
            format!("{n} changes: {}{more}", each.join("; "))
        }
    };
    if !v.changes.complete {
        out.push_str(" (changes not fully known)");
    }
    // The model is the agent's side's word; the command is what runs. A command that deletes
    // or replaces, beside a model that shows neither, is said so, not summed up as harmless.
    let deletes = rs
        .iter()
        .any(|r| matches!(r.action.as_str(), "delete" | "replace"));
    if !deletes && super::rules::destructive(v) {
        out.push_str(" (the command deletes or replaces, which the change model does not show: read the command)");
    }
    out
}

/// Where it runs: the environment, then the namespace, workspace or context.
pub fn place(v: &RequestView) -> String {
    let t = &v.environment;
    let inner = t
        .namespace
        .as_ref()
        .or(t.terraform_workspace.as_ref())
        .or(t.kube_context.as_ref());
    match inner {
        Some(i) => format!("in {} / {}", environment(v), shown(i)),
        None => format!("in {}", environment(v)),
    }
}

/// Who asks: the agent, and the person it acts for.
pub fn asker(v: &RequestView) -> String {
    match &v.on_behalf_of {
        Some(h) => format!("for {} acting for {}", shown(&v.agent), shown(h)),
        None => format!("for {}", shown(&v.agent)),
    }
}

/// The summary line: what, where, who, and the time left (or the state, once decided).
pub fn line(v: &RequestView, now: i64) -> Markup {
    html! {
        h1.summary #summary {
            span.what { (what(v)) } " " (place(v)) ", " (asker(v)) ", "
            @if v.state == State::Pending {
                (left(v.deadline, now))
            } @else {
                span class={ "state state-" (v.state.as_str()) } { (v.state.as_str()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(tool: &str, argv: &[&str], summary: Value) -> RequestView {
        let mut v: RequestView = serde_json::from_value(json!({
            "id": "x", "state": "pending", "agent": "agent-a", "on_behalf_of": "oscar",
            "tool": tool, "argv": argv, "cwd": "/", "host": "h",
            "environment": {"namespace": "default", "kube_context": "prod"},
            "diff": {"text": "", "summary": summary, "truncated": false},
            "artifact_sha256": [], "reason": null,
            "classification": {"verdict": "gate", "rule": "r", "environment": "production",
                "risk": "high", "timeout_seconds": 900, "approvals_needed": 1},
            "created_at": 0, "deadline": 840_000, "decision": null, "outcome": null,
            "outcome_reported_by": null, "nonce": "n"
        }))
        .unwrap();
        v.changes = crate::api::Changes::of(&v.diff.summary);
        v
    }

    #[test]
    fn a_delete_reads_as_one_line_with_its_key_fields() {
        let v = view(
            "kubectl",
            &["delete", "deploy", "web"],
            json!({"complete": true, "resources": [{"address": "Deployment default/web",
                "action": "delete", "attributes": [
                {"path": "spec.replicas", "before": "3", "after": null},
                {"path": "spec.template.spec.containers[web].image",
                 "before": "\"nginx:1.25.3\"", "after": null}]}]}),
        );
        let text = format!("{} {}, {}", what(&v), place(&v), asker(&v));
        assert_eq!(
            text,
            "DELETE Deployment default/web (3 replicas, image nginx:1.25.3) in production / \
             default, for agent-a acting for oscar"
        );
        let html = line(&v, 0).into_string();
        assert!(html.contains("14 min left"), "{html}");
    }

    #[test]
    fn an_update_names_what_changed_and_many_are_counted() {
        let v = view(
            "kubectl",
            &["apply", "-f", "web.yaml"],
            json!({"complete": true, "resources": [{"address": "Deployment default/web",
                "action": "update", "attributes": [
                {"path": "spec.template.spec.containers[web].image",
                 "before": "\"nginx:1.25.3\"", "after": "\"nginx:1.26.0\""}]}]}),
        );
        assert_eq!(
            what(&v),
            "UPDATE Deployment default/web (image nginx:1.25.3 → nginx:1.26.0)"
        );
        let two = json!({"complete": true, "resources": [
            {"address": "a", "action": "create"}, {"address": "b", "action": "create"}]});
        assert_eq!(what(&view("terraform", &["apply"], two)), "CREATE a and b");
        let five: Vec<Value> = (0..5)
            .map(|i| json!({"address": format!("r{i}"), "action": "delete"}))
            .collect();
        let five = json!({"complete": true, "resources": five});
        assert_eq!(
            what(&view("terraform", &["destroy"], five)),
            "DELETE 5: r0, r1 and 3 more"
        );
        let many = json!({"complete": true, "resources": [
            {"address": "a", "action": "create"}, {"address": "b", "action": "delete"},
            {"address": "c", "action": "update", "attributes": [{"path": "x", "before": "1", "after": "2"}]}]});
        assert_eq!(
            what(&view("terraform", &["apply"], many)),
            "3 changes: CREATE a; DELETE b and 1 more"
        );
        let unknown = view("kubectl", &["scale", "deploy", "web"], json!({}));
        assert_eq!(
            what(&unknown),
            "kubectl scale deploy web (changes not fully known)"
        );
    }

    #[test]
    fn a_deleting_command_beside_a_model_without_a_delete_is_said_so() {
        let update = json!({"complete": true, "resources": [{"address": "ConfigMap default/x",
            "action": "update"}]});
        for (tool, argv) in [
            ("kubectl", &["delete", "ns", "prod"][..]),
            ("helm", &["uninstall", "web"][..]),
            ("terraform", &["destroy"][..]),
        ] {
            let w = what(&view(tool, argv, update.clone()));
            assert!(w.starts_with("UPDATE ConfigMap default/x"), "{w}");
            assert!(
                w.ends_with("(the command deletes or replaces, which the change model does not show: read the command)"),
                "{tool} {argv:?}: {w}"
            );
        }
        // A model that shows the delete, or a command that deletes nothing: no such words.
        let delete = json!({"complete": true, "resources": [{"address": "Namespace prod",
            "action": "delete"}]});
        let w = what(&view("kubectl", &["delete", "ns", "prod"], delete));
        assert_eq!(w, "DELETE Namespace prod");
        let w = what(&view("kubectl", &["apply", "-f", "x.yaml"], update));
        assert_eq!(w, "UPDATE ConfigMap default/x");
    }
}
