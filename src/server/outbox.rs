//! The notification outbox: which sinks want an event, its payload, and the rows inserted in
//! the same transaction as the change it reports (so an event is never lost, even to
//! `kill -9`). `outbox_store.rs` reads them back for the delivery worker (`notify.rs`).
//!
//! The payload is built here, once: the request's command, environment, risk, rule, the change
//! model's summary (counts, and each resource's address and action: never the diff text) and
//! who approved; every string is cut short and the whole body is capped.

use std::sync::Arc;

use serde_json::{json, Value};
use sqlx::AnyConnection;

use super::db::Result;
use crate::api::{Classification, CreateRequest, RequestView, SignedDecision};
use crate::policy::notify::{Event, Sink};

/// The most resources a payload lists.
const MAX_RESOURCES: usize = 50;
/// The largest payload, bytes: past it, the resource list is dropped.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// Which sinks want which events, and the base of the links to requests.
pub struct Outbox {
    pub sinks: Vec<Sink>,
    pub public_url: Option<String>,
    /// Wakes the delivery worker after a transaction that queued something commits.
    pub wake: Arc<tokio::sync::Notify>,
}

/// What an event is about.
pub struct Subject<'a> {
    pub id: &'a str,
    pub agent: &'a str,
    pub on_behalf_of: Option<&'a str>,
    pub request: &'a CreateRequest,
    pub classification: &'a Classification,
    pub deadline: i64,
}

impl<'a> Subject<'a> {
    pub fn of(view: &'a RequestView, request: &'a CreateRequest) -> Subject<'a> {
        Subject {
            id: &view.id,
            agent: &view.agent,
            on_behalf_of: view.on_behalf_of.as_deref(),
            request,
            classification: &view.classification,
            deadline: view.deadline,
        }
    }
}

/// One row to insert.
pub struct Queued {
    key: String,
    sink: String,
    event: Event,
    request_id: String,
    payload: String,
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

impl Outbox {
    /// The rows for `event` about `subject`, one per sink that wants it. `nth` tells events of
    /// one kind apart in the idempotency key (the count of approvals); `extra` is merged into
    /// the payload (`approvals`, `decision`).
    pub fn rows(
        &self,
        event: Event,
        subject: &Subject<'_>,
        nth: usize,
        extra: Value,
        now: i64,
    ) -> Vec<Queued> {
        let env = subject.classification.environment.as_deref();
        let wanted: Vec<&Sink> = self.sinks.iter().filter(|s| s.wants(event, env)).collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        let key = format!("{}:{}:{nth}", subject.id, event.as_str());
        let payload = self.payload(event, &key, subject, extra, now);
        wanted
            .into_iter()
            .map(|s| Queued {
                key: key.clone(),
                sink: s.name.clone(),
                event,
                request_id: subject.id.to_string(),
                payload: payload.clone(),
            })
            .collect()
    }

    fn payload(&self, event: Event, key: &str, s: &Subject<'_>, extra: Value, now: i64) -> String {
        let c = s.classification;
        let summary = &s.request.diff.summary;
        // The counts are the server's, from the model; the client's own are never copied.
        let changes = crate::api::Changes::of(summary);
        let resources: Vec<Value> = summary["resources"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter(|r| r["action"] != "no-op")
                    .take(MAX_RESOURCES)
                    .map(|r| {
                        json!({
                            "address": cut(r["address"].as_str().unwrap_or("?"), 200),
                            "action": r["action"],
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let command = cut(
            &std::iter::once(s.request.tool.as_str())
                .chain(s.request.argv.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            1000,
        );
        let mut body = json!({
            "version": 1,
            "event": event.as_str(),
            "key": key,
            "at": now,
            "request": {
                "id": s.id,
                "url": self.public_url.as_deref().map(|u| format!("{}/ui/requests/{}", u.trim_end_matches('/'), s.id)),
                "tool": &s.request.tool,
                "command": command,
                "agent": s.agent,
                "on_behalf_of": s.on_behalf_of,
                "environment": &c.environment,
                "risk": &c.risk,
                "rule": &c.rule,
                "reason": s.request.reason.as_deref().map(|r| cut(r, 300)),
                "changes": {
                    "complete": changes.complete,
                    "summary": changes.summary,
                    "counts": changes.counts,
                    "resources": resources,
                },
                "deadline": s.deadline,
                "approvals_needed": c.approvals_needed.max(1),
                "approvers": &c.approvers,
                "freeze": c.freeze.as_ref().map(|f| &f.name),
            },
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let mut text = body.to_string();
        if text.len() > MAX_PAYLOAD {
            body["request"]["changes"]["resources"] = json!([]);
            body["request"]["changes"]["resources_dropped"] = json!(true);
            text = body.to_string();
        }
        text
    }
}

/// The `decision` part of a payload: what was decided, by whom, and why (cut short).
pub fn decision_extra(d: &SignedDecision) -> Value {
    json!({
        "decision": {
            "decision": d.decision.as_str(),
            "approvers": &d.approvers,
            "comment": d.comment.as_deref().map(|c| cut(c, 500)),
            "decided_at": d.decided_at,
        }
    })
}

/// Inserts rows on the writer's transaction. A row already queued (the same key and sink) is
/// left as it is.
pub async fn insert(c: &mut AnyConnection, rows: &[Queued], now: i64) -> Result<()> {
    for r in rows {
        sqlx::query(
            "INSERT INTO outbox (key, sink, event, request_id, payload, created_at, next_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO NOTHING",
        )
        .bind(format!("{}@{}", r.key, r.sink))
        .bind(&r.sink)
        .bind(r.event.as_str())
        .bind(&r.request_id)
        .bind(&r.payload)
        .bind(now)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counts_notifications_show_are_the_servers_not_the_clients() {
        let sink: Sink = toml::from_str(
            "name = \"w\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/x\"\nsecret_file = \"/s\"\n",
        )
        .unwrap();
        let outbox = Outbox {
            sinks: vec![sink],
            public_url: None,
            wake: Arc::default(),
        };
        // The client says it changes nothing; its model deletes a Deployment.
        let request: CreateRequest = serde_json::from_value(json!({
            "tool": "kubectl", "argv": ["delete", "deploy", "web"], "cwd": "/", "host": "h",
            "diff": {"text": "", "summary": {"complete": true, "summary": "+0 ~0 -0",
                "counts": {"destroy": 0},
                "resources": [{"address": "Deployment web", "action": "delete"}]}},
            "nonce": "n",
        }))
        .unwrap();
        let c = Classification::default();
        let s = Subject {
            id: "r1",
            agent: "a",
            on_behalf_of: None,
            request: &request,
            classification: &c,
            deadline: 0,
        };
        let rows = outbox.rows(Event::Created, &s, 0, json!({}), 0);
        let p: Value = serde_json::from_str(&rows[0].payload).unwrap();
        assert_eq!(p["request"]["changes"]["summary"], "+0 ~0 -1");
        assert_eq!(p["request"]["changes"]["counts"]["destroy"], 1);
        // Slack's "Changes" field is drawn from the payload.
        let slack = super::super::slack::message(&p, 0).to_string();
        assert!(slack.contains("+0 ~0 -1"), "{slack}");
        assert!(!slack.contains("+0 ~0 -0"), "{slack}");
    }
}
