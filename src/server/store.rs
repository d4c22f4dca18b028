//! The requests, as a state machine in the database: created pending; decided once
//! (`approved`, `rejected`, `expired` or `cancelled`) by a conditional update
//! (`… WHERE state = 'pending'`, and for a human decision, before the deadline); their outcome
//! recorded once. Every change is one operation of the writer (`writer.rs`) and appends its
//! audit row (`audit_log.rs`) in the same savepoint: if the row cannot be written, the change is
//! not made. Approvals and decisions are recorded by `decision_store.rs`. Signing a decision and choosing who may make it is `decide.rs`'s job.

use std::sync::Arc;

use serde_json::json;
use sqlx::AnyPool;

use super::audit_log::{AuditLog, Entry};
pub use super::db::{Result, StoreError};
use super::views::{summary, view_from_row};
use super::writer::Writer;
use crate::api::{Classification, CreateRequest, Outcome, RequestView, State};
use crate::signing::Keys;

/// An outcome report, as the store records it.
pub struct OutcomeReport<'a> {
    /// `agent:<name>` or `runner:<name>`.
    pub actor: String,
    /// Reported by a lockdown writer that ran the approved run itself.
    pub verified: bool,
    /// Whether the reporter may report on a request of this agent.
    pub owns: &'a (dyn Fn(&str) -> bool + Sync),
    /// Why this report is refused although the reporter may see the request.
    pub refused: Option<String>,
    pub outcome: &'a Outcome,
}

/// A request to insert.
pub struct NewRequest {
    pub id: String,
    pub agent: String,
    pub on_behalf_of: Option<String>,
    pub request: CreateRequest,
    pub classification: Classification,
    pub created_at: i64,
    pub deadline: i64,
    /// The create's `Idempotency-Key`: one request per agent and key.
    pub idempotency_key: Option<String>,
}

/// The result of a state change.
pub enum Changed {
    Done(Box<RequestView>),
    /// The request is not pending any more (or, for an agent, not its own and so "not found").
    Conflict(State),
    NotFound,
    /// The person may not make this decision (not an approver of its rule, or the human the
    /// agent acts for): why.
    NotAllowed(String),
    /// The person has approved this request already: their approval counts once.
    Duplicate(String),
}

pub struct Store {
    pub(super) writer: Writer,
    pub(super) read: AnyPool,
    pub(super) log: AuditLog,
    /// The notification sinks (`outbox.rs`): every change queues its events in its own
    /// transaction. `None` when no sink is configured.
    outbox: std::sync::RwLock<Option<Arc<super::outbox::Outbox>>>,
}

impl Store {
    /// Opens (and on first use creates) the database at `at`.
    pub async fn open(
        at: &super::db::Location,
        keys: Arc<Keys>,
        checkpoint_every: u64,
    ) -> Result<Store> {
        let (writer, read) = super::db::open(at).await?;
        let store = Store {
            writer: Writer::start(writer, at),
            read,
            log: AuditLog::new(keys, checkpoint_every),
            outbox: Default::default(),
        };
        store.catch_up_tree().await?;
        Ok(store)
    }

    /// Names the log's origin (its C2SP checkpoints' first line), before the store is used.
    pub fn set_log_origin(&mut self, origin: &str) {
        self.log.origin = origin.into();
    }

    /// Inserts a request and its `request_created` audit row.
    pub async fn create(&self, new: NewRequest) -> Result<RequestView> {
        Ok(self.create_once(new).await?.0)
    }

    /// The request of `agent` created with idempotency key `key`, if any.
    pub async fn by_idempotency_key(&self, agent: &str, key: &str) -> Result<Option<RequestView>> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM requests WHERE agent = $1 AND idem_key = $2")
                .bind(agent)
                .bind(key)
                .fetch_optional(&self.read)
                .await?;
        match id {
            Some(id) => self.get(&id).await,
            None => Ok(None),
        }
    }

    /// Creates the request, unless its agent already made one with the same idempotency key:
    /// the request, and whether it is new. The check and the insert are one write.
    pub async fn create_once(&self, new: NewRequest) -> Result<(RequestView, bool)> {
        let data = json!({
            "request": &new.request,
            "on_behalf_of": &new.on_behalf_of,
            "classification": &new.classification,
        });
        let body = json!({
            "command": {"tool": &new.request.tool, "argv": &new.request.argv},
            "environment": &new.request.environment,
            "request": &new.request,
            "agent": &new.agent,
            "on_behalf_of": &new.on_behalf_of,
            "classification": &new.classification,
            "deadline": new.deadline,
        });
        let summary = summary(
            &new.request,
            new.on_behalf_of.as_deref(),
            &new.classification,
        );
        let log = self.log.clone();
        let id = new.id.clone();
        let queued = self.outbox().map_or_else(Vec::new, |o| {
            let subject = super::outbox::Subject {
                id: &new.id,
                agent: &new.agent,
                on_behalf_of: new.on_behalf_of.as_deref(),
                request: &new.request,
                classification: &new.classification,
                deadline: new.deadline,
            };
            o.rows(
                crate::policy::notify::Event::Created,
                &subject,
                0,
                json!({}),
                new.created_at,
            )
        });
        let existing = self
            .writer
            .write(move |c| {
                Box::pin(async move {
                    if let Some(key) = &new.idempotency_key {
                        let id: Option<String> = sqlx::query_scalar(
                            "SELECT id FROM requests WHERE agent = $1 AND idem_key = $2",
                        )
                        .bind(&new.agent)
                        .bind(key)
                        .fetch_optional(&mut *c)
                        .await?;
                        if id.is_some() {
                            return Ok(id);
                        }
                    }
                    sqlx::query(
                        "INSERT INTO requests (id, agent, state, created_at, deadline, data, \
                         summary, idem_key, agent_waiting_until) \
                         VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&new.id)
                    .bind(&new.agent)
                    .bind(new.created_at)
                    .bind(new.deadline)
                    .bind(data.to_string())
                    .bind(summary.to_string())
                    .bind(&new.idempotency_key)
                    // The shim that submitted it long-polls next.
                    .bind(new.created_at + crate::api::WAITING_GRACE_MS)
                    .execute(&mut *c)
                    .await?;
                    let actor = format!("agent:{}", new.agent);
                    let entry = Entry {
                        at: new.created_at,
                        kind: "request_created",
                        request_id: Some(&new.id),
                        actor: &actor,
                        body: &body,
                    };
                    log.append(c, entry).await?;
                    super::outbox::insert(c, &queued, new.created_at).await?;
                    Ok(None)
                })
            })
            .await?;
        let created = existing.is_none();
        if created {
            self.woke_outbox();
        }
        let id = existing.unwrap_or(id);
        let view = self
            .get(&id)
            .await?
            .ok_or_else(|| StoreError("the request vanished after insert".into()))?;
        Ok((view, created))
    }

    /// Sets the notification sinks (at start, and when a reload changes them).
    pub fn set_outbox(&self, outbox: super::outbox::Outbox) {
        let outbox = (!outbox.sinks.is_empty()).then(|| Arc::new(outbox));
        *self.outbox.write().expect("outbox lock") = outbox;
    }

    /// The notification sinks in force, if any.
    pub(super) fn outbox(&self) -> Option<Arc<super::outbox::Outbox>> {
        self.outbox.read().expect("outbox lock").clone()
    }

    /// Wakes the delivery worker (after a transaction that may have queued events).
    pub(super) fn woke_outbox(&self) {
        if let Some(o) = self.outbox() {
            o.wake.notify_one();
        }
    }

    /// Records a plan with no changes that ran without asking: one `no_changes` audit row with
    /// the command, the environment and the diff as the agent's shim saw it. Returns its seq.
    pub async fn no_changes(
        &self,
        agent: &str,
        request: &CreateRequest,
        classification: &Classification,
        now: i64,
    ) -> Result<i64> {
        let body = json!({
            "command": {"tool": &request.tool, "argv": &request.argv},
            "environment": &request.environment,
            "request": request,
            "agent": agent,
            "classification": classification,
            // The server never saw the plan: this row is the agent's word.
            "reported_by": format!("agent:{agent}"),
            "verified": false,
        });
        // The seq comes from the append itself: two overlapping calls each get their own.
        self.append_alone(now, "no_changes", None, format!("agent:{agent}"), body)
            .await
    }

    /// Appends one audit row that changes no request, in its own operation of the writer.
    /// Returns its seq.
    pub(super) async fn append_alone(
        &self,
        at: i64,
        kind: &'static str,
        request_id: Option<String>,
        actor: String,
        body: serde_json::Value,
    ) -> Result<i64> {
        let log = self.log.clone();
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let entry = Entry {
                        at,
                        kind,
                        request_id: request_id.as_deref(),
                        actor: &actor,
                        body: &body,
                    };
                    log.append(c, entry).await
                })
            })
            .await
    }

    /// Records how an approved run ended, once: reported by the request's agent (its word), or
    /// by a lockdown writer that serves the agent (verified). A report that comes second, or
    /// that `refused` says is not this reporter's to make, is refused and recorded
    /// (`outcome_refused`).
    pub async fn outcome(&self, id: &str, r: &OutcomeReport<'_>, now: i64) -> Result<Changed> {
        let Some(view) = self.get(id).await? else {
            return Ok(Changed::NotFound);
        };
        if !(r.owns)(&view.agent) {
            return Ok(Changed::NotFound);
        }
        if view.state != State::Approved {
            return Ok(Changed::Conflict(view.state));
        }
        let why = match (&r.refused, &view.outcome) {
            (Some(why), _) => Some(why.clone()),
            (None, Some(_)) => Some("an outcome is already recorded for this request".into()),
            (None, None) => None,
        };
        if let Some(why) = why {
            let body = json!({
                "command": {"tool": &view.tool, "argv": &view.argv},
                "attempted_outcome": r.outcome,
                "reported_by": &r.actor,
                "why": why,
            });
            self.append_alone(
                now,
                "outcome_refused",
                Some(id.to_string()),
                r.actor.clone(),
                body,
            )
            .await?;
            return Ok(Changed::Conflict(view.state));
        }
        let body = json!({
            "command": {"tool": &view.tool, "argv": &view.argv},
            "environment": &view.environment,
            "outcome": r.outcome,
            "reported_by": &r.actor,
            "verified": r.verified,
        });
        let log = self.log.clone();
        let (id_s, actor) = (id.to_string(), r.actor.clone());
        let mut stored = serde_json::to_value(r.outcome).expect("outcome serialises");
        stored["reported_by"] = json!(r.actor);
        stored["verified"] = json!(r.verified);
        let text = stored.to_string();
        let updated = self
            .writer
            .write(move |c| {
                Box::pin(async move {
                    let r = sqlx::query(
                        "UPDATE requests SET outcome = $1 WHERE id = $2 AND state = 'approved' \
                         AND outcome IS NULL",
                    )
                    .bind(&text)
                    .bind(&id_s)
                    .execute(&mut *c)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Ok(false);
                    }
                    let entry = Entry {
                        at: now,
                        kind: "outcome",
                        request_id: Some(&id_s),
                        actor: &actor,
                        body: &body,
                    };
                    log.append(c, entry).await?;
                    Ok(true)
                })
            })
            .await?;
        if !updated {
            return Ok(Changed::Conflict(State::Approved));
        }
        Ok(Changed::Done(Box::new(
            self.get(id).await?.expect("exists"),
        )))
    }

    pub async fn get(&self, id: &str) -> Result<Option<RequestView>> {
        let row = sqlx::query(
            "SELECT id, agent, state, created_at, deadline, data, decision, outcome, approvals, \
             agent_waiting_until, run_claim FROM requests WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| view_from_row(&r)).transpose()
    }

    /// Requests, newest first, optionally only those in `state`.
    pub async fn list(&self, state: Option<State>, limit: i64) -> Result<Vec<RequestView>> {
        let rows = sqlx::query(
            "SELECT id, agent, state, created_at, deadline, data, decision, outcome, approvals, \
             agent_waiting_until, run_claim FROM requests \
             WHERE ($1 IS NULL OR state = $1) ORDER BY created_at DESC, id LIMIT $2",
        )
        .bind(state.map(State::as_str))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(view_from_row).collect()
    }

    /// Ids of pending requests whose deadline has passed.
    pub async fn overdue(&self, now: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM requests WHERE state = 'pending' AND deadline <= $1 ORDER BY deadline",
        )
        .bind(now)
        .fetch_all(&self.read)
        .await?)
    }

    /// The earliest deadline among pending requests.
    pub async fn next_deadline(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(deadline) FROM requests WHERE state = 'pending'")
                .fetch_one(&self.read)
                .await?,
        )
    }

    pub async fn count(&self, state: State) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE state = $1")
                .bind(state.as_str())
                .fetch_one(&self.read)
                .await?,
        )
    }

    /// Signs a checkpoint over the current head if rows were added since the last one.
    pub async fn checkpoint(&self, now: i64) -> Result<()> {
        let log = self.log.clone();
        self.writer
            .write(move |c| Box::pin(async move { log.checkpoint(c, now).await }))
            .await
    }
}
