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
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::{Action, AttrChange, ChangeSet, ResourceChange};

/// The annotation in which client-side apply keeps the whole object, a Secret's values included.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
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

/// Parses a YAML stream (a rendered manifest) into its documents as JSON values; empty documents
/// are skipped. Aliases are refused: they would let a small document expand without bound, and
/// no rendered manifest needs them.
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, String> {
    let mut b = Builder::default();
    Parser::new_from_str(text)
        .load(&mut b, true)
        .map_err(|e| format!("not YAML: {e}"))?;
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Builds JSON values from YAML parser events.
#[derive(Default)]
struct Builder {
    docs: Vec<Value>,
    /// Open collections: a sequence, or a mapping with the key waiting for its value.
    stack: Vec<(Value, Option<String>)>,
    error: Option<String>,
}

impl Builder {
    fn fail(&mut self, e: String) {
        self.error.get_or_insert(e);
    }

    fn push(&mut self, v: Value) {
        match self.stack.last_mut() {
            None => self.docs.push(v),
            Some((Value::Array(a), _)) => a.push(v),
            Some((Value::Object(m), key)) => match key.take() {
                None => {
                    *key = Some(match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                }
                Some(k) => {
                    if m.insert(k.clone(), v).is_some() {
                        self.fail(format!("duplicate key {k:?}"));
                    }
                }
            },
            Some(_) => unreachable!("only collections are stacked"),
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, _mark: Marker) {
        match ev {
            Event::Alias(_) => self.fail("YAML aliases are not accepted".into()),
            Event::Scalar(v, style, _, tag) => {
                let value = if style != TScalarStyle::Plain || tag.is_some() {
                    Value::String(v)
                } else {
                    plain_scalar(v)
                };
                self.push(value);
            }
            Event::SequenceStart(..) => self.stack.push((Value::Array(Vec::new()), None)),
            Event::MappingStart(..) => self.stack.push((Value::Object(Map::new()), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((v, _)) = self.stack.pop() {
                    self.push(v);
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// A plain YAML scalar as JSON: null, a boolean, a number or a string (YAML 1.2 core schema).
fn plain_scalar(v: String) -> Value {
    match yaml_rust2::Yaml::from_str(&v) {
        yaml_rust2::Yaml::Null => Value::Null,
        yaml_rust2::Yaml::Boolean(b) => Value::Bool(b),
        yaml_rust2::Yaml::Integer(i) => Value::from(i),
        yaml_rust2::Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(v), Value::Number),
        _ => Value::String(v),
    }
}

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

/// True for a Secret.
fn is_secret(o: &Map<String, Value>) -> bool {
    o.get("kind").and_then(Value::as_str) == Some("Secret")
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

/// The sensitivity marks of an object for [`crate::diff::changed_attributes`]: a Secret's
/// values and its last-applied annotation.
fn marks(o: &Value) -> Value {
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

/// Renders a JSON value as block YAML, for reading (keys sorted, strings quoted when a plain
/// scalar would be ambiguous or span lines). Only ever shown, never parsed.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => yaml_map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => yaml_seq(a, 0, &mut out),
        Value::Null => {}
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn yaml_map(m: &Map<String, Value>, indent: usize, out: &mut String) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key(k));
        out.push(':');
        yaml_value(v, indent, out);
    }
}

fn yaml_seq(a: &[Value], indent: usize, out: &mut String) {
    for v in a {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match v {
            Value::Object(m) if !m.is_empty() => {
                // The first key on the dash's line, the rest under it.
                let mut first = true;
                for (k, v) in m {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        out.push_str(&" ".repeat(indent + 2));
                    }
                    out.push_str(&key(k));
                    out.push(':');
                    yaml_value(v, indent + 2, out);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                yaml_seq(inner, indent + 2, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

/// The rest of a `key:` line: a scalar on it, or a nested block under it.
fn yaml_value(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml_map(m, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml_seq(a, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn key(k: &str) -> String {
    scalar(&Value::String(k.to_string()))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        Value::String(s) if plain_is_safe(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether a string can be shown unquoted without reading as something else.
fn plain_is_safe(s: &str) -> bool {
    !s.is_empty()
        && s.trim() == s
        && !matches!(
            plain_scalar(s.to_string()),
            Value::Null | Value::Bool(_) | Value::Number(_)
        )
        && !s.starts_with([
            '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%',
            '@', '`',
        ])
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && s.chars().all(|c| !c.is_control())
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
    fn yaml_streams_parse_like_kubectl_reads_them() {
        let docs = yaml_documents(
            "---\n# c\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {pw: aGk=}\n---\n\n---\nkind: List\nitems:\n- a: 1\n  b: \"2\"\n  c: 1.5\n  d: ~\n  e: yes\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["data"]["pw"], "aGk=");
        assert_eq!(
            docs[1]["items"][0],
            json!({"a": 1, "b": "2", "c": 1.5, "d": null, "e": "yes"})
        );
        assert!(yaml_documents("a: &x [1]\nb: *x\n")
            .unwrap_err()
            .contains("aliases"));
        assert!(yaml_documents("a: 1\na: 2\n")
            .unwrap_err()
            .contains("duplicate"));
    }

    #[test]
    fn the_yaml_rendering_reads_back_as_the_same_value() {
        let v = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "n": "1", "empty": ""}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.25", "args": ["-c", "a: b", "# x"], "env": []},
                {"name": "side", "command": [["nested"]]}]}}},
            "data": {"multi": "line one\nline two", "t": "true", "colon:": "x"}});
        let text = to_yaml(&v);
        assert!(text.contains("  replicas: 2\n"), "{text}");
        assert_eq!(yaml_documents(&text).unwrap(), vec![v], "{text}");
    }

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
