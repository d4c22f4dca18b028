//! Taking requests in: `POST /api/v1/requests` (the server classifies the request itself,
//! stores it with its audit row, and decides at once what its policy decides without a human:
//! a deny, a change freeze without break-glass approvers, an auto-approval) and
//! `POST /api/v1/no-changes`.

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::app::App;
use super::auth::Agent;
use super::classify::classify;
use super::decide::{decide, By, Change};
use super::error::ApiError;
use super::extract::Body;
use super::store::{Changed, NewRequest};
use crate::api::{CreateRequest, RequestView, State};
use crate::tool::Tool;

type St = AxState<std::sync::Arc<App>>;

/// How long an approval stays valid for the shim to start the run (ms), by `policy`.
pub(super) fn valid_for(policy: &crate::policy::Policy) -> i64 {
    i64::try_from(policy.serve().decision_valid_for.0.as_millis()).unwrap_or(i64::MAX)
}

/// The view with its web UI link, when the server has a web UI.
pub(super) fn linked(app: &App, mut view: RequestView) -> RequestView {
    view.agent_waiting = view.agent_waiting_at(app.clock.now_ms());
    if app.web.is_some() {
        if let Some(base) = &app.live().policy.serve().public_url {
            view.review_url = Some(format!(
                "{}/ui/requests/{}",
                base.trim_end_matches('/'),
                view.id
            ));
        }
    }
    view
}

fn tool_of(req: &CreateRequest) -> Result<Tool, ApiError> {
    Tool::from_name(&req.tool).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_request",
            format!("at `tool`: unknown tool {:?}", req.tool),
        )
    })
}

/// The create's `Idempotency-Key` header, if any: 16 to 128 characters of `A-Z a-z 0-9 _ -`.
fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(crate::api::IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or_default();
    let ok = (16..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(ApiError::bad_request(
            "invalid_request",
            "Idempotency-Key must be 16 to 128 characters of A-Z, a-z, 0-9, _ and -",
        ));
    }
    Ok(Some(v.to_string()))
}

/// A create repeated with an idempotency key the agent used before: the same request (200), or a
/// conflict when the key was used for another one.
fn repeated(app: &App, view: RequestView, request_sha256: &str) -> Result<Response, ApiError> {
    if view.request().sha256() == request_sha256 {
        return Ok((StatusCode::OK, Json(linked(app, view))).into_response());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_conflict",
        format!(
            "this Idempotency-Key was used for another request ({}); nothing was created",
            view.id
        ),
    ))
}

pub(super) async fn create(
    AxState(app): St,
    agent: Agent,
    headers: axum::http::HeaderMap,
    Body(req): Body<CreateRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let request_sha256 = req.sha256();
    if let Some(k) = &key {
        if let Some(existing) = app.store.by_idempotency_key(&agent.name, k).await? {
            return repeated(&app, existing, &request_sha256);
        }
    }
    let tool = tool_of(&req)?;
    for (i, h) in req.artifact_sha256.iter().enumerate() {
        if crate::hex::decode(h).map(|b| b.len()) != Some(32)
            || h.bytes().any(|b| b.is_ascii_uppercase())
        {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("at `artifact_sha256[{i}]`: not a lowercase hex SHA-256"),
            ));
        }
    }
    let now = app.clock.now_ms();
    // One policy for the whole request, whatever a reload does meanwhile.
    let live = app.live();
    let classification = classify(&live.policy, &req, tool, &agent, now);
    let timeout_ms = i64::try_from(classification.timeout_seconds * 1000).unwrap_or(i64::MAX);
    let timeout_ms = live
        .policy
        .rule_timeout(&classification.rule)
        .map_or(timeout_ms, |d| {
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        });
    // Decided at once, on the record: denied by the server's policy, rejected by a change
    // freeze, or approved by an auto-approval rule.
    let initial = if classification.verdict == "deny" {
        let rule = &classification.rule;
        Some((
            State::Rejected,
            format!("policy:{rule}"),
            format!("denied by the server's policy (rule {rule})"),
        ))
    } else if let Some(f) = classification
        .freeze
        .as_ref()
        .filter(|f| f.approvals.is_none())
    {
        Some((
            State::Rejected,
            format!("policy:freeze:{}", f.name),
            format!("change freeze {:?}: {}", f.name, f.reason),
        ))
    } else {
        classification.auto_approve.as_ref().map(|rule| {
            (
                State::Approved,
                format!("policy:{rule}"),
                format!("approved without a human by rule {rule:?}"),
            )
        })
    };
    let new = NewRequest {
        id: new_id()?,
        agent: agent.name.clone(),
        on_behalf_of: agent.on_behalf_of.clone(),
        request: req,
        classification,
        created_at: now,
        deadline: now.saturating_add(timeout_ms),
        idempotency_key: key,
    };
    let (mut view, created) = app.store.create_once(new).await?;
    if !created {
        return repeated(&app, view, &request_sha256);
    }
    let c = &view.classification;
    tracing::info!(
        id = %view.id,
        agent = %view.agent,
        on_behalf_of = %view.on_behalf_of.as_deref().unwrap_or("-"),
        tool = %view.tool,
        environment = %c.environment.as_deref().unwrap_or("-"),
        rule = %c.rule,
        verdict = %c.verdict,
        "request created"
    );
    app.reaper.notify_one();
    let _ = app.events.send(super::app::Event::Created(view.id.clone()));
    if let Some((to, actor, comment)) = initial {
        let change = Change {
            to,
            by: By::Policy(actor),
            comment: Some(&comment),
            now: app.clock.now_ms(),
            valid_for_ms: valid_for(&live.policy),
        };
        match decide(&app, &view.id, change).await? {
            Changed::Done(v) => {
                if to == State::Approved {
                    app.metrics.auto_approved();
                }
                view = *v;
            }
            // The agent cancelled it in the meantime, or it expired: its state says so.
            _ => view = app.store.get(&view.id).await?.unwrap_or(view),
        }
    }
    Ok((StatusCode::CREATED, Json(linked(&app, view))).into_response())
}

/// A terraform plan with no changes ran without asking (the rule's `skip_when_no_changes`): the
/// shim records it, with the plan it saw, as a `no_changes` audit row. Nothing is decided.
pub(super) async fn no_changes(
    AxState(app): St,
    agent: Agent,
    Body(req): Body<CreateRequest>,
) -> Result<Response, ApiError> {
    let tool = tool_of(&req)?;
    let now = app.clock.now_ms();
    let classification = classify(&app.live().policy, &req, tool, &agent, now);
    let seq = app
        .store
        .no_changes(&agent.name, &req, &classification, now)
        .await?;
    tracing::info!(
        seq,
        agent = %agent.name,
        tool = %req.tool,
        environment = %classification.environment.as_deref().unwrap_or("-"),
        rule = %classification.rule,
        "plan without changes recorded (ran without asking)"
    );
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"recorded": "no_changes", "seq": seq})),
    )
        .into_response())
}

/// A fresh request id: 16 bytes from the system's random source, as hex.
fn new_id() -> Result<String, ApiError> {
    id_from(|b| ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), b))
}

/// An id from the bytes `fill` gives. If the random source fails the request is not created
/// (500 `random_failed`), rather than the handler panicking.
fn id_from(
    fill: impl FnOnce(&mut [u8]) -> Result<(), ring::error::Unspecified>,
) -> Result<String, ApiError> {
    let mut b = [0u8; 16];
    fill(&mut b).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "random_failed",
            "the system's random source failed; the request was not created",
        )
    })?;
    Ok(crate::hex::encode(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_random_source_is_a_500_not_a_panic() {
        let err = id_from(|_| Err(ring::error::Unspecified)).unwrap_err();
        assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.code, "random_failed");
        let id = id_from(|b| {
            b.fill(0xab);
            Ok(())
        })
        .unwrap();
        assert_eq!(id, "ab".repeat(16));
        let id = new_id().unwrap();
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
