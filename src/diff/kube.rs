//! The kube side of the change model: Kubernetes objects (JSON values, from the real kubectl's
//! `-o json` or from helm's rendered manifests) → masked, diffed and rendered for the approver.
//!
//! Masking happens on objects, before any text exists. A Secret (any object whose `kind` is
//! `Secret`, at any depth, so the items of a `List` too) has every value under `data` and
//! `stringData` replaced, and so has its `kubectl.kubernetes.io/last-applied-configuration`
//! annotation, in which client-side apply keeps a copy of the whole object. Before and after
//! are masked together: a value that changed is shown as changed, never what it was or became.
//! As a last line of defence, [`SecretValues`] collects every Secret value found in the objects
//! of a command (plain, base64 and decoded) and [`SecretValues::redact`] removes each one from
//! any text that is sent.
//!
//! The objects come from the agent's inputs; nothing here decides anything from them but what
//! to show.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::kube_fields::is_secret;
pub use super::kube_fields::{field_changes, key_fields, LAST_APPLIED};
pub use super::kube_yaml::{to_yaml, yaml_documents};
use super::{Action, AttrChange, ChangeSet, ResourceChange};

/// A masked value.
pub const MASKED: &str = "(sensitive value)";
/// A masked value that differs from the one on the other side.
pub const MASKED_CHANGED: &str = "(sensitive value, changed)";
/// Metadata the API server changes on every write: only noise in a diff.
const NOISE: &[&str] = &[
    "creationTimestamp",
    "generation",
    "managedFields",
    "resourceVersion",
    "uid",
];

/// The objects of a `kubectl … -o json` answer: the items of a `List`, else the object itself.
pub fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Object(mut m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
            match m.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            }
        }
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// What identifies an object: API group, kind, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn of(o: &Value) -> ObjectKey {
        let s = |v: &Value| v.as_str().unwrap_or("").to_string();
        let api = s(&o["apiVersion"]);
        ObjectKey {
            group: api
                .rsplit_once('/')
                .map(|(g, _)| g.to_string())
                .unwrap_or_default(),
            kind: s(&o["kind"]),
            namespace: o["metadata"]["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(String::from),
            name: s(&o["metadata"]["name"]),
        }
    }

    /// `Deployment prod/web`, `Namespace prod`.
    pub fn address(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// An object without what the server maintains (uid, resourceVersion, managedFields and, unless
/// `keep_status`, status).
pub fn clean(mut o: Value, keep_status: bool) -> Value {
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in NOISE {
            m.remove(*k);
        }
    }
    if let Some(m) = o.as_object_mut() {
        if !keep_status {
            m.remove("status");
        }
    }
    o
}

/// Masks every Secret in `before` and `after` (either may be `Null`), together: a value that
/// differs between the two sides is shown as [`MASKED_CHANGED`] on the after side.
pub fn mask_pair(before: &mut Value, after: &mut Value) {
    let (b, a) = (before.clone(), after.clone());
    mask_with(before, &a);
    mask_with(after, &b);
}

/// Masks every Secret in `v`.
pub fn mask(v: &mut Value) {
    mask_with(v, &v.clone());
}

/// Masks the Secrets in `v`; `other` is the same place on the other side of a diff (or `v`
/// itself), which decides whether a masked value reads as changed.
fn mask_with(v: &mut Value, other: &Value) {
    match v {
        Value::Object(m) => {
            if is_secret(m) {
                for field in ["data", "stringData"] {
                    if let Some(values) = m.get_mut(field) {
                        mask_values(values, &other[field]);
                    }
                }
                if let Some(ann) = m
                    .get_mut("metadata")
                    .and_then(|md| md.get_mut("annotations"))
                    .and_then(|a| a.get_mut(LAST_APPLIED))
                {
                    let changed = *ann != other["metadata"]["annotations"][LAST_APPLIED];
                    *ann = Value::String(if changed { MASKED_CHANGED } else { MASKED }.into());
                }
            }
            for (k, child) in m.iter_mut() {
                mask_with(child, other.get(k).unwrap_or(&Value::Null));
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter_mut().enumerate() {
                mask_with(child, other.get(i).unwrap_or(&Value::Null));
            }
        }
        _ => {}
    }
}

/// Replaces every scalar under a Secret's `data`/`stringData` (whatever its shape).
fn mask_values(v: &mut Value, other: &Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                mask_values(child, other.get(k).unwrap_or(&Value::Null));
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter_mut().enumerate() {
                mask_values(child, other.get(i).unwrap_or(&Value::Null));
            }
        }
        Value::Null => {}
        scalar => {
            let changed = *scalar != *other;
            *scalar = Value::String(if changed { MASKED_CHANGED } else { MASKED }.into());
        }
    }
}

/// Every Secret value in a set of objects, to be redacted from any text sent (the last line of
/// defence behind [`mask`]).
#[derive(Debug, Default, Clone)]
pub struct SecretValues(BTreeSet<String>);

/// Values shorter than this are not redacted from text: they would garble it, and are masked
/// in the objects anyway.
const MIN_REDACTED: usize = 4;

impl SecretValues {
    /// Collects the Secret values of `v` (plain; base64 and its decoding for `data`; and the
    /// same inside a last-applied annotation).
    pub fn collect(&mut self, v: &Value) {
        match v {
            Value::Object(m) => {
                if is_secret(m) {
                    self.scalars(m.get("data"), true);
                    self.scalars(m.get("stringData"), false);
                    if let Some(Value::String(la)) = m
                        .get("metadata")
                        .and_then(|md| md.get("annotations"))
                        .and_then(|a| a.get(LAST_APPLIED))
                    {
                        self.add(la.clone());
                        if let Ok(inner) = serde_json::from_str::<Value>(la) {
                            self.collect(&inner);
                        }
                    }
                }
                m.values().for_each(|c| self.collect(c));
            }
            Value::Array(a) => a.iter().for_each(|c| self.collect(c)),
            _ => {}
        }
    }

    fn scalars(&mut self, v: Option<&Value>, base64: bool) {
        match v {
            Some(Value::Object(m)) => m.values().for_each(|c| self.scalars(Some(c), base64)),
            Some(Value::Array(a)) => a.iter().for_each(|c| self.scalars(Some(c), base64)),
            Some(Value::String(s)) => {
                self.add(s.clone());
                if base64 {
                    if let Some(plain) = crate::hex::base64_decode(s) {
                        if let Ok(text) = String::from_utf8(plain) {
                            self.add(text);
                        }
                    }
                } else {
                    self.add(crate::hex::base64_encode(s.as_bytes()));
                }
            }
            Some(Value::Null) | None => {}
            Some(other) => self.add(other.to_string()),
        }
    }

    fn add(&mut self, s: String) {
        // Each line of a multi-line value is redacted on its own: a diff shows lines.
        for line in s.lines() {
            let line = line.trim();
            if line.chars().count() >= MIN_REDACTED {
                self.0.insert(line.to_string());
                // base64 without its padding, as it may appear cut.
                let unpadded = line.trim_end_matches('=');
                if unpadded.len() >= MIN_REDACTED {
                    self.0.insert(unpadded.to_string());
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The change model with every collected value redacted from its addresses, reasons and
    /// attribute values.
    pub fn redact_changes(&self, set: &mut ChangeSet) {
        if self.is_empty() {
            return;
        }
        for r in &mut set.resources {
            r.address = self.redact(&r.address);
            if let Some(why) = &r.action_reason {
                r.action_reason = Some(self.redact(why));
            }
            for a in &mut r.attributes {
                a.path = self.redact(&a.path);
                for v in [&mut a.before, &mut a.after].into_iter().flatten() {
                    *v = self.redact(v);
                }
            }
        }
    }

    /// `text` with every collected value replaced by [`MASKED`] (longest values first, so a
    /// value that contains another is removed whole).
    pub fn redact(&self, text: &str) -> String {
        let mut values: Vec<&String> = self.0.iter().collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let mut out = text.to_string();
        for v in values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASKED);
            }
        }
        out
    }
}

/// The diff of one object: before and after (either may be absent), both cleaned (status
/// kept with `keep_status`) and masked, as a unified diff of their YAML and as a resource
/// change. Returns `None` when nothing changes.
pub fn object_change(
    before: Option<&Value>,
    after: Option<&Value>,
    keep_status: bool,
) -> Option<(String, ResourceChange)> {
    let key = ObjectKey::of(after.or(before)?);
    let clean = |o: Option<&Value>| o.cloned().map_or(Value::Null, |o| clean(o, keep_status));
    let (b, a) = (clean(before), clean(after));
    let (action, attributes) = match (before, after) {
        (None, Some(_)) => (Action::Create, field_changes(&b, &a)),
        // What goes: the live object's key fields, not every field of it.
        (Some(_), None) => (Action::Delete, key_fields(&b)),
        _ => match field_changes(&b, &a) {
            fields if fields.is_empty() => return None,
            fields => (Action::Update, fields),
        },
    };
    let (mut bm, mut am) = (b, a);
    mask_pair(&mut bm, &mut am);
    let address = key.address();
    let text = unified(&address, &to_yaml(&bm), &to_yaml(&am));
    Some((
        text,
        ResourceChange {
            address,
            action,
            action_reason: None,
            attributes,
        },
    ))
}

/// The change of a set of objects: each object of `after` against the object with its key in
/// `before` (created when there is none); with `deletions`, objects only in `before` are
/// removed. Objects that do not change are left out. `keep_status`: see [`object_change`].
pub fn objects_change(
    before: &[Value],
    after: &[Value],
    deletions: bool,
    keep_status: bool,
) -> (String, ChangeSet) {
    let index = |objs: &[Value]| -> BTreeMap<ObjectKey, Value> {
        objs.iter().map(|o| (ObjectKey::of(o), o.clone())).collect()
    };
    let (old, new) = (index(before), index(after));
    let mut keys: BTreeSet<&ObjectKey> = new.keys().collect();
    if deletions {
        keys.extend(old.keys());
    }
    let mut text = String::new();
    let mut set = ChangeSet::default();
    for k in keys {
        if let Some((t, rc)) = object_change(old.get(k), new.get(k), keep_status) {
            text.push_str(&t);
            set.resources.push(rc);
        }
    }
    (text, set)
}

/// The per-object diff of two manifests and its change model; the Secret values of both go to
/// `secrets`. A manifest that is not YAML is not shown (it could hold anything).
pub fn manifest_change(old: &str, new: &str, secrets: &mut SecretValues) -> (String, ChangeSet) {
    match (yaml_documents(old), yaml_documents(new)) {
        (Ok(o), Ok(n)) => {
            for obj in o.iter().chain(&n) {
                secrets.collect(obj);
            }
            objects_change(&o, &n, true, false)
        }
        (Err(e), _) | (_, Err(e)) => (
            format!("The manifest could not be read ({e}); its objects are not shown.\n"),
            ChangeSet {
                resources: vec![ResourceChange {
                    address: "manifest".into(),
                    action: Action::Unknown("unreadable manifest".into()),
                    action_reason: None,
                    attributes: Vec::new(),
                }],
                unknown: vec![format!("the manifest could not be read ({e})")],
            },
        ),
    }
}

/// A unified diff of two texts, headed `before ADDRESS` / `after ADDRESS`.
pub fn unified(address: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("before {address}"), &format!("after {address}"))
        .to_string()
}

/// The attribute changes of two JSON values (helm's user-supplied values), for the change model.
pub fn value_changes(before: &Value, after: &Value) -> Vec<AttrChange> {
    let nonnull = |v: &Value| {
        if v.is_null() {
            Value::Object(Map::new())
        } else {
            v.clone()
        }
    };
    crate::diff::changed_attributes(
        (&nonnull(before), &Value::Null),
        (&nonnull(after), &Value::Null),
        &Value::Null,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_in_lists_annotations_and_flow_style() {
        let last =
            json!({"apiVersion": "v1", "kind": "Secret", "stringData": {"t": "plain-token"}})
                .to_string();
        let mut before = json!({"kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s",
                "annotations": {LAST_APPLIED: last}}, "data": {"pw": "aHVudGVyMg==", "same": "eA=="}},
            {"apiVersion": "v1", "kind": "ConfigMap", "data": {"pw": "visible"}}]});
        let mut after = before.clone();
        after["items"][0]["data"]["pw"] = json!("c3dvcmRmaXNo");
        let mut values = SecretValues::default();
        values.collect(&before);
        values.collect(&after);
        mask_pair(&mut before, &mut after);
        let text = format!("{before}{after}");
        for s in [
            "aHVudGVyMg",
            "c3dvcmRmaXNo",
            "plain-token",
            "hunter2",
            "swordfish",
        ] {
            assert!(!text.contains(s), "{s} in {text}");
        }
        assert_eq!(after["items"][0]["data"]["pw"], MASKED_CHANGED);
        assert_eq!(after["items"][0]["data"]["same"], MASKED);
        assert_eq!(after["items"][1]["data"]["pw"], "visible", "not a Secret");
        let leaked = "x hunter2 y c3dvcmRmaXNo plain-token c3dvcmRmaXNo";
        let red = values.redact(leaked);
        assert!(
            !red.contains("hunter2") && !red.contains("swordfish") && !red.contains("plain-token"),
            "{red}"
        );
    }

    #[test]
    fn object_changes_name_fields_and_mask_secret_values() {
        let live = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "p", "uid": "1", "resourceVersion": "7"},
            "data": {"pw": "aHVudGVyMg=="}});
        let mut new = live.clone();
        new["metadata"]["labels"] = json!({"tier": "back"});
        new["data"]["pw"] = json!("c3dvcmRmaXNo");
        new["metadata"]["resourceVersion"] = json!("8");
        let (text, rc) = object_change(Some(&live), Some(&new), false).unwrap();
        assert_eq!(rc.address, "Secret p/s");
        assert_eq!(rc.action, Action::Update);
        assert!(
            !text.contains("aHVudGVyMg") && !text.contains("c3dvcmRmaXNo"),
            "{text}"
        );
        assert!(
            text.contains("+    tier: back") && text.contains(MASKED_CHANGED),
            "{text}"
        );
        assert!(!text.contains("resourceVersion"), "{text}");
        let paths: Vec<&str> = rc.attributes.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(paths, ["data.pw", "metadata.labels.tier"]);
        assert_eq!(
            rc.attributes[0].after.as_deref(),
            Some(crate::diff::SENSITIVE)
        );
        assert!(object_change(Some(&live), Some(&live), false).is_none());
        let (_, created) = object_change(None, Some(&new), false).unwrap();
        assert_eq!(created.action, Action::Create);
    }
    #[test]
    fn manifests_are_diffed_per_object_and_secrets_masked() {
        let old = "---\n# Source: c/templates/d.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: rel-web\nspec:\n  replicas: 1\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: rel-creds\ndata:\n  password: aHVudGVyMg==\n";
        let new = "---\n# Source: c/templates/d.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: rel-web\nspec:\n  replicas: 3\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rel-conf\ndata:\n  a: b\n";
        let mut secrets = SecretValues::default();
        let (text, set) = manifest_change(old, new, &mut secrets);
        assert!(!text.contains("aHVudGVyMg"), "{text}");
        assert!(
            text.contains("-  replicas: 1") && text.contains("+  replicas: 3"),
            "{text}"
        );
        let by = |k: &str| set.resources.iter().find(|r| r.address == k).unwrap();
        assert_eq!(by("Deployment rel-web").action, Action::Update);
        assert_eq!(by("Deployment rel-web").attributes[0].path, "spec.replicas");
        assert_eq!(by("Secret rel-creds").action, Action::Delete);
        assert_eq!(by("ConfigMap rel-conf").action, Action::Create);
        assert_eq!(set.summary_line(), "+1 ~1 -1");
        assert_eq!(secrets.redact("x hunter2 y"), format!("x {} y", MASKED));
    }
}
