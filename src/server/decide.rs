//! Deciding requests: who may move a request to which state, approvals that add up to a quorum,
//! the signed decision (Ed25519 over the canonical bytes of `signing.rs`), waking whoever waits
//! on it, and the reaper that expires overdue requests. The store records every approval and
//! the decision with their audit rows, each in one transaction, or not at all.
//!
//! A person's approval of a request that needs N approvals is recorded as an `approval` row
//! and leaves it pending until N distinct eligible people have approved; the last approval is
//! recorded with the decision, which lists them all. One eligible rejection ends it. A change
//! freeze in force at the moment of an approval holds it, even for a request made before the
//! freeze began. Who is eligible is `quorum.rs`'s job.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::app::App;
use super::error::ApiError;
use super::quorum::{self, Eligibility};
use super::store::{Changed, StoreError};
use crate::api::{Approval, RequestView, SignedDecision, State};
use crate::policy::approvals::Person;
use crate::signing;

/// Who makes a change.
pub enum By {
    /// A person deciding (in the web UI or over the admin socket), with what the audit row
    /// records about them.
    Person {
        who: Person,
        /// A verified email or name, to show.
        display: Option<String>,
        details: Option<serde_json::Value>,
    },
    /// The server's own policy (`policy:<rule>`, `policy:freeze:<name>`).
    Policy(String),
    /// The agent that made the request (cancel).
    Agent(String),
    /// The reaper (expiry).
    Reaper,
}

impl By {
    /// The identity recorded as the actor.
    pub fn actor(&self) -> String {
        match self {
            By::Person { who, .. } => who.actor.clone(),
            By::Policy(p) => p.clone(),
            By::Agent(a) => format!("agent:{a}"),
            By::Reaper => "system:reaper".into(),
        }
    }
}

/// A state change to apply.
pub struct Change<'a> {
    pub to: State,
    pub by: By,
    pub comment: Option<&'a str>,
    pub now: i64,
    /// How long an approval stays valid for the shim to start the run (ms).
    pub valid_for_ms: i64,
}

/// How often an approval is retried when another landed on the same request meanwhile.
const RACE_RETRIES: usize = 8;

/// Applies a change: a person's approval (which may only add to the quorum), a rejection, the
/// policy's decision, the agent's cancel or the reaper's expiry.
pub async fn decide(app: &App, id: &str, ch: Change<'_>) -> Result<Changed, StoreError> {
    for _ in 0..RACE_RETRIES {
        let Some(view) = app.store.get(id).await? else {
            return Ok(Changed::NotFound);
        };
        if let By::Agent(agent) = &ch.by {
            if &view.agent != agent {
                return Ok(Changed::NotFound);
            }
        }
        if view.state != State::Pending {
            return Ok(Changed::Conflict(view.state));
        }
        // A human decision must land before the deadline; past it, only the reaper's expiry
        // (and the agent's cancel) may end the request.
        let human = matches!(ch.by, By::Person { .. });
        if human && ch.now >= view.deadline {
            return Ok(Changed::Conflict(State::Expired));
        }
        let mut approvers: Vec<String> = Vec::new();
        let mut added = None;
        if let By::Person { who, display, .. } = &ch.by {
            if let Eligibility::MayNot(why) = quorum::eligibility(&view, who, ch.to) {
                return Ok(Changed::NotAllowed(why));
            }
            if ch.to == State::Approved {
                if view.approvals.iter().any(|a| a.approver == who.actor) {
                    return Ok(Changed::Duplicate(format!(
                        "you have approved this request already; it has {} of the {} \
                         approvals it needs, from different people",
                        view.approvals.len(),
                        view.classification.approvals_needed.max(1)
                    )));
                }
                let approval = Approval {
                    approver: who.actor.clone(),
                    display: display.clone(),
                    at: ch.now,
                    comment: ch.comment.map(Into::into),
                };
                let mut needed = view.classification.approvals_needed.max(1);
                // A change freeze that began after the request was made holds its approval
                // too: none at all, or its break-glass count.
                if view.classification.freeze.is_none() {
                    let env = view.classification.environment.as_deref();
                    if let Some(f) = app.live().policy.freeze_at(env, ch.now) {
                        match f.freeze_approvals {
                            None => {
                                return Ok(Changed::NotAllowed(format!(
                                    "change freeze {:?} is in force ({}); nothing is approved \
                                     in {} until it ends",
                                    f.name,
                                    f.reason,
                                    env.unwrap_or("any environment")
                                )))
                            }
                            Some(n) => needed = needed.max(n),
                        }
                    }
                }
                let needed = usize::try_from(needed).unwrap_or(usize::MAX);
                if view.approvals.len() + 1 < needed {
                    let details = match &ch.by {
                        By::Person { details, .. } => details.clone(),
                        _ => None,
                    };
                    if !app
                        .store
                        .record_approval(&view, &approval, details, needed)
                        .await?
                    {
                        continue;
                    }
                    tracing::info!(
                        id = %id,
                        approver = %who.actor,
                        approvals = view.approvals.len() + 1,
                        needed,
                        "approval recorded"
                    );
                    return woken(app, id, None).await;
                }
                approvers = view.approvals.iter().map(|a| a.approver.clone()).collect();
                added = Some(approval);
            }
        }
        approvers.push(ch.by.actor());
        let decision = sign(app, &view, &ch, approvers);
        let details = match &ch.by {
            By::Person { details, .. } => details.clone(),
            _ => None,
        };
        let recorded = app
            .store
            .record_decision(&view, &decision, &ch.by.actor(), human, details, added)
            .await?;
        if !recorded {
            match app.store.get(id).await? {
                // Another approval landed meanwhile: count again.
                Some(v) if v.state == State::Pending && ch.now < v.deadline => continue,
                // Still pending: the deadline passed; the reaper is about to expire it.
                Some(v) if v.state == State::Pending => {
                    return Ok(Changed::Conflict(State::Expired))
                }
                v => return Ok(Changed::Conflict(v.map_or(State::Pending, |v| v.state))),
            }
        }
        tracing::info!(
            id = %id,
            rule = %view.classification.rule,
            by = %ch.by.actor(),
            "request {}",
            ch.to.as_str()
        );
        return woken(app, id, Some((ch.to, ch.now))).await;
    }
    Err(StoreError(
        "the request changed too often while this decision was recorded; try again".into(),
    ))
}

/// The signed decision for `view` with `approvers`.
fn sign(app: &App, view: &RequestView, ch: &Change<'_>, approvers: Vec<String>) -> SignedDecision {
    let mut decision = SignedDecision {
        request_id: view.id.clone(),
        decision: ch.to,
        approvers,
        comment: ch.comment.map(Into::into),
        argv_sha256: signing::argv_sha256(&view.tool, &view.argv),
        artifact_sha256: view.artifact_sha256.clone(),
        environment_sha256: signing::environment_sha256(&view.environment),
        request_sha256: view.request().sha256(),
        nonce: view.nonce.clone(),
        decided_at: ch.now,
        valid_until: if ch.to == State::Approved {
            ch.now + ch.valid_for_ms
        } else {
            ch.now
        },
        signature: String::new(),
    };
    decision.signature = app.keys.sign(&signing::decision_bytes(&decision));
    decision
}

/// Reads the request after a change, wakes its waiters (shims, the inbox), and counts a
/// decision (`decided`: its state and time).
async fn woken(app: &App, id: &str, decided: Option<(State, i64)>) -> Result<Changed, StoreError> {
    let view = app
        .store
        .get(id)
        .await?
        .ok_or_else(|| StoreError("the request vanished after its change".into()))?;
    app.waiters.wake(id);
    match decided {
        Some((to, now)) => {
            let _ = app.events.send(super::app::Event::Ended(id.to_string()));
            app.metrics.decided(to, now - view.created_at);
        }
        None => {
            let _ = app.events.send(super::app::Event::Created(id.to_string()));
        }
    }
    Ok(Changed::Done(Box::new(view)))
}

/// Expires every overdue pending request.
pub async fn expire_due(app: &App) {
    let now = app.clock.now_ms();
    let Ok(ids) = app.store.overdue(now).await else {
        return;
    };
    for id in ids {
        let change = Change {
            to: State::Expired,
            by: By::Reaper,
            comment: Some("nobody decided before the deadline"),
            now,
            valid_for_ms: 0,
        };
        if let Err(e) = decide(app, &id, change).await {
            tracing::error!(id = %id, error = %e, "expiring failed; will retry");
        }
    }
}

/// Sleeps until the next deadline (or a new request), then expires what is due. With several
/// replicas (`leadership`), only the holder of the reaper's lock does, and every replica checks
/// the lock at least every second.
pub async fn reaper(app: Arc<App>, mut leadership: Option<super::replicas::Leadership>) {
    let mut stop = app.shutdown.clone();
    loop {
        if let Some(l) = leadership.as_mut() {
            if !l.check(&app).await {
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    _ = stop.changed() => return,
                }
            }
        }
        let now = app.clock.now_ms();
        let due = match app.store.next_deadline().await {
            Ok(Some(d)) => d,
            _ => now + 60_000,
        };
        let due = if leadership.is_some() {
            due.min(now + 1000)
        } else {
            due
        };
        let notified = app.reaper.notified();
        tokio::select! {
            () = app.clock.sleep_until(due) => expire_due(&app).await,
            () = notified => {}
            _ = stop.changed() => return,
        }
    }
}

/// Signs a checkpoint at least every `interval` while rows are being added.
pub async fn checkpointer(app: Arc<App>, interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = app.store.checkpoint(app.clock.now_ms()).await {
            tracing::error!(error = %e, "checkpoint failed");
        }
    }
}

fn conflict(state: State) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "already_decided",
        format!("the request is already {}", state.as_str()),
    )
}

/// The answer to a state change: the request, or why it did not change.
pub(super) fn changed(r: Changed) -> Result<Response, ApiError> {
    match r {
        Changed::Done(v) => Ok(Json(*v).into_response()),
        Changed::Conflict(s) => Err(conflict(s)),
        Changed::NotFound => Err(ApiError::not_found("request")),
        Changed::NotAllowed(why) => Err(ApiError::forbidden(why)),
        Changed::Duplicate(why) => {
            Err(ApiError::new(StatusCode::CONFLICT, "already_approved", why))
        }
    }
}
