//! Deciding requests: who may move a request to which terminal state, the signed decision
//! (Ed25519 over the canonical bytes of `signing.rs`), waking whoever waits on it, and the
//! reaper that expires overdue requests. The store records the decision and its audit row in
//! one transaction, or not at all.

use std::sync::Arc;

use super::app::App;
use super::store::{Changed, StoreError};
use crate::api::{now_ms, SignedDecision, State};
use crate::signing;

/// A state change to apply.
pub struct Change<'a> {
    pub to: State,
    pub actor: &'a str,
    pub comment: Option<&'a str>,
    pub now: i64,
    /// How long an approval stays valid for the shim to start the run (ms).
    pub valid_for_ms: i64,
    /// Only this agent may make the change (cancel); None for approvers and the reaper.
    pub only_agent: Option<&'a str>,
    /// More about who decided, for the audit row (a web decision's identity and session).
    pub details: Option<serde_json::Value>,
}

/// Moves a pending request to a terminal state: signs the decision, has the store record it
/// with its audit row, and wakes whoever waits on it.
pub async fn decide(app: &App, id: &str, ch: Change<'_>) -> Result<Changed, StoreError> {
    let Some(view) = app.store.get(id).await? else {
        return Ok(Changed::NotFound);
    };
    if ch.only_agent.is_some_and(|agent| view.agent != agent) {
        return Ok(Changed::NotFound);
    }
    if view.state != State::Pending {
        return Ok(Changed::Conflict(view.state));
    }
    // A human decision must land before the deadline; past it, only the reaper's expiry (and
    // the agent's cancel) may end the request.
    let human = matches!(ch.to, State::Approved | State::Rejected);
    if human && ch.now >= view.deadline {
        return Ok(Changed::Conflict(State::Expired));
    }
    let mut decision = SignedDecision {
        request_id: view.id.clone(),
        decision: ch.to,
        approvers: vec![ch.actor.to_string()],
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
    if !app
        .store
        .record_decision(&view, &decision, ch.actor, human, ch.details)
        .await?
    {
        let state = match app.store.get(id).await? {
            // Still pending: the deadline passed; the reaper is about to expire it.
            Some(v) if v.state == State::Pending => State::Expired,
            v => v.map_or(State::Pending, |v| v.state),
        };
        return Ok(Changed::Conflict(state));
    }
    let view = app
        .store
        .get(id)
        .await?
        .ok_or_else(|| StoreError("the request vanished after its decision".into()))?;
    app.waiters.wake(id);
    let _ = app.events.send(super::app::Event::Ended(id.to_string()));
    app.metrics.decided(ch.to, ch.now - view.created_at);
    Ok(Changed::Done(Box::new(view)))
}

/// Expires every overdue pending request.
pub async fn expire_due(app: &App) {
    let now = now_ms();
    let Ok(ids) = app.store.overdue(now).await else {
        return;
    };
    for id in ids {
        let change = Change {
            to: State::Expired,
            actor: "system:reaper",
            comment: Some("nobody decided before the deadline"),
            now,
            valid_for_ms: 0,
            only_agent: None,
            details: None,
        };
        if let Err(e) = decide(app, &id, change).await {
            eprintln!("hitl-gate serve: expiring {id} failed (will retry): {e}");
        }
    }
}

/// Sleeps until the next deadline (or a new request), then expires what is due.
pub async fn reaper(app: Arc<App>) {
    let mut stop = app.shutdown.clone();
    loop {
        let wait = match app.store.next_deadline().await {
            Ok(Some(d)) => u64::try_from(d - now_ms()).unwrap_or(0),
            _ => 60_000,
        };
        let notified = app.reaper.notified();
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(wait)) => expire_due(&app).await,
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
        if let Err(e) = app.store.checkpoint(now_ms()).await {
            eprintln!("hitl-gate serve: checkpoint failed: {e}");
        }
    }
}
