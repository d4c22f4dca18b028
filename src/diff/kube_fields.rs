//! The field-level side of the kube change model (`super::kube`): the fields that differ
//! between two objects, named list items matched by name, and the key fields of an object that
//! is deleted (never a Secret's value).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::diff::AttrChange;

/// The annotation in which client-side apply keeps the whole object, a Secret's values included.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// True for a Secret.
pub(super) fn is_secret(o: &Map<String, Value>) -> bool {
    o.get("kind").and_then(Value::as_str) == Some("Secret")
}

/// The sensitivity marks of an object for [`crate::diff::changed_attributes`]: a Secret's
/// values and its last-applied annotation.
pub(super) fn marks(o: &Value) -> Value {
    if !o.as_object().is_some_and(is_secret) {
        return Value::Null;
    }
    // Key by key, so a change names the key (`data.password`) without showing the value.
    let each = |field: &str| -> Value {
        match &o[field] {
            Value::Object(m) => {
                Value::Object(m.keys().map(|k| (k.clone(), Value::Bool(true))).collect())
            }
            Value::Null => Value::Null,
            _ => Value::Bool(true),
        }
    };
    serde_json::json!({"data": each("data"), "stringData": each("stringData"),
        "metadata": {"annotations": {LAST_APPLIED: true}}})
}

/// The fields that differ between two objects, one per changed value, masked where a Secret
/// holds it. Items of a list that are named (containers, env, ports, volumes) are matched by
/// name and shown by it (`spec.template.spec.containers[web].image`), so adding an item in
/// front does not make every later one look changed.
pub fn field_changes(before: &Value, after: &Value) -> Vec<AttrChange> {
    let (b, a) = (by_name(before), by_name(after));
    let mut out =
        crate::diff::changed_attributes((&b, &marks(before)), (&a, &marks(after)), &Value::Null);
    for c in &mut out {
        c.path = c.path.replace(NAMED, "[");
    }
    out
}

/// How a named item's key starts while a diff runs; `.` + this becomes `[` in the paths shown.
const NAMED: &str = ".\u{0}[";

/// `v` with every list whose items are all objects with distinct string `name`s turned into
/// an object keyed by those names (`\u{0}[NAME]`), at any depth.
fn by_name(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, c)| (k.clone(), by_name(c))).collect()),
        Value::Array(items) => {
            let names: Vec<&str> = items.iter().filter_map(|i| i["name"].as_str()).collect();
            let distinct: BTreeSet<&str> = names.iter().copied().collect();
            if !items.is_empty() && names.len() == items.len() && distinct.len() == names.len() {
                Value::Object(
                    items
                        .iter()
                        .zip(names)
                        .map(|(i, n)| (format!("{}{n}]", &NAMED[1..]), by_name(i)))
                        .collect(),
                )
            } else {
                Value::Array(items.iter().map(by_name).collect())
            }
        }
        other => other.clone(),
    }
}

/// The key fields of an object that is deleted, as attribute changes with no "after": a
/// workload's replicas and container images, a Service's type and ports, a volume's size and
/// storage class, a CronJob's schedule, an Ingress's hosts, a Secret's type and the *names* of
/// its keys (never a value), a ConfigMap's key names.
pub fn key_fields(o: &Value) -> Vec<AttrChange> {
    let mut out = Vec::new();
    let mut put = |path: String, v: &Value| {
        if !v.is_null() {
            out.push(AttrChange {
                path,
                before: Some(v.to_string()),
                after: None,
            });
        }
    };
    for p in [
        "spec.replicas",
        "spec.type",
        "spec.schedule",
        "spec.resources.requests.storage",
        "spec.capacity.storage",
        "spec.storageClassName",
    ] {
        put(p.into(), pointer(o, p));
    }
    for (path, image) in images(o, "") {
        put(path, &image);
    }
    if let Some(ports) = o["spec"]["ports"].as_array() {
        let shown: Vec<String> = ports.iter().map(port).collect();
        put("spec.ports".into(), &Value::String(shown.join(", ")));
    }
    if let Some(rules) = o["spec"]["rules"].as_array() {
        let hosts: Vec<&str> = rules.iter().filter_map(|r| r["host"].as_str()).collect();
        if !hosts.is_empty() {
            put(
                "spec.rules (hosts)".into(),
                &Value::String(hosts.join(", ")),
            );
        }
    }
    if o.as_object().is_some_and(is_secret) {
        put("type".into(), &o["type"]);
    }
    for field in ["data", "stringData", "binaryData"] {
        if let Some(m) = o[field].as_object() {
            let names: Vec<&str> = m.keys().map(String::as_str).collect();
            put(format!("{field} (keys)"), &Value::String(names.join(", ")));
        }
    }
    out
}

/// The value at a dotted path of plain keys.
fn pointer<'a>(o: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(o, |v, k| &v[k])
}

/// Every container image under `v` (pods, pod templates, job templates), by its path.
fn images(v: &Value, path: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Value::Object(m) = v {
        for (k, child) in m {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match (k.as_str(), child) {
                ("containers" | "initContainers", Value::Array(cs)) => {
                    for (i, c) in cs.iter().enumerate() {
                        let name = c["name"]
                            .as_str()
                            .map_or_else(|| i.to_string(), String::from);
                        out.push((format!("{here}[{name}].image"), c["image"].clone()));
                    }
                }
                ("metadata" | "status", _) => {}
                _ => out.extend(images(child, &here)),
            }
        }
    }
    out
}

/// A Service port as `80/TCP→8080` (with its name when it has one).
fn port(p: &Value) -> String {
    let n = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut s = format!(
        "{}/{}",
        n(&p["port"]),
        p["protocol"].as_str().unwrap_or("TCP")
    );
    let target = n(&p["targetPort"]);
    if !target.is_empty() && target != n(&p["port"]) {
        s.push_str(&format!("→{target}"));
    }
    if let Some(name) = p["name"].as_str() {
        s.push_str(&format!(" ({name})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::kube::*;
    use crate::diff::Action;
    use serde_json::json;

    #[test]
    fn containers_are_matched_and_named_by_their_names() {
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "p"},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.25.3", "env": [{"name": "A", "value": "1"}]}]}}}});
        let mut new = live.clone();
        // A sidecar in front, and the image of web changed: only web's image reads as changed.
        new["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "proxy", "image": "envoy:1.30"},
            {"name": "web", "image": "nginx:1.26.0", "env": [{"name": "A", "value": "1"}]}]);
        let (_, rc) = object_change(Some(&live), Some(&new), false).unwrap();
        let paths: Vec<&str> = rc.attributes.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.template.spec.containers[proxy].image",
                "spec.template.spec.containers[proxy].name",
                "spec.template.spec.containers[web].image",
            ]
        );
        assert_eq!(rc.attributes[2].before.as_deref(), Some("\"nginx:1.25.3\""));
        assert_eq!(rc.attributes[2].after.as_deref(), Some("\"nginx:1.26.0\""));
    }

    #[test]
    fn a_deleted_object_shows_its_key_fields_and_a_secret_only_its_key_names() {
        let fields = |o: Value| -> Vec<(String, String)> {
            let (_, rc) = object_change(Some(&o), None, false).unwrap();
            assert_eq!(rc.action, Action::Delete);
            rc.attributes
                .into_iter()
                .map(|a| (a.path, a.before.unwrap()))
                .collect()
        };
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "b"}},
            "spec": {"replicas": 3, "selector": {}, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.25.3", "args": ["-x"]}]}}}});
        assert_eq!(
            fields(deploy),
            [
                ("spec.replicas".into(), "3".into()),
                (
                    "spec.template.spec.containers[web].image".into(),
                    "\"nginx:1.25.3\"".into()
                ),
            ]
        );
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer", "ports": [
                {"port": 80, "targetPort": 8080, "protocol": "TCP", "name": "http"}]}});
        assert_eq!(
            fields(svc),
            [
                ("spec.type".into(), "\"LoadBalancer\"".into()),
                ("spec.ports".into(), "\"80/TCP→8080 (http)\"".into()),
            ]
        );
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data"},
            "spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "10Gi"}}}});
        assert_eq!(
            fields(pvc),
            [
                ("spec.resources.requests.storage".into(), "\"10Gi\"".into()),
                ("spec.storageClassName".into(), "\"fast\"".into()),
            ]
        );
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "creds"}, "data": {"password": "aHVudGVyMg==", "user": "YWRt"}});
        let shown = fields(secret);
        assert_eq!(
            shown,
            [
                ("type".into(), "\"Opaque\"".into()),
                ("data (keys)".into(), "\"password, user\"".into()),
            ]
        );
        assert!(!format!("{shown:?}").contains("aHVudGVyMg"));
    }
}
