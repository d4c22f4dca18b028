//! YAML for the kube side of the change model (`super::kube`): a rendered manifest's stream
//! parsed into JSON values (aliases refused), and objects rendered as block YAML for reading.

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

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
}
