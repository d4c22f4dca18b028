//! What an agent does to its own request after submitting it: cancel it, supersede it (the
//! same command run again with other inputs made a new request), detach from it (its shim
//! stopped waiting: `max_wait`, a harness's SIGTERM), and claim an approval's one run. Each is
//! allowed only to the agent that made the request (others get "not found").
//!
//! The claim makes "exactly one run per approval" the server's rule, not the shims': a shim
//! claims the approved request with a random value of its own before it runs anything; the
//! first claim holds, a retry of the same claim is answered the same, any other is refused
//! (409 `run_claimed`), and a request whose outcome is recorded cannot be claimed.

use std::sync::Arc;

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::app::App;
use super::auth::{Agent, Caller};
use super::db::Result;
use super::decide::{changed, decide, By, Change};
use super::error::ApiError;
use super::extract::Body;
use super::intake::linked;
use super::long_poll::{check_id, visible};
use super::store::Store;
use crate::api::{ClaimBody, State};

type St = AxState<Arc<App>>;

pub(super) async fn cancel(
    AxState(app): St,
    agent: Agent,
    Path(id): Path<String>,
) -> std::result::Result<Response, ApiError> {
    cancelled(&app, &agent, &id, "cancelled by the agent").await
}

/// `POST /api/v1/requests/{id}/supersede`: the agent ran the same command again with other
/// inputs and made a new request; the old one ends, cancelled, with why.
pub(super) async fn supersede(
    AxState(app): St,
    agent: Agent,
    Path(id): Path<String>,
    Body(b): Body<crate::api::SupersedeBody>,
) -> std::result::Result<Response, ApiError> {
    let reason = format!(
        "superseded: {}",
        b.reason.chars().take(500).collect::<String>()
    );
    cancelled(&app, &agent, &id, &reason).await
}

async fn cancelled(
    app: &App,
    agent: &Agent,
    id: &str,
    comment: &str,
) -> std::result::Result<Response, ApiError> {
    check_id(id)?;
    let change = Change {
        to: State::Cancelled,
        by: By::Agent(agent.name.clone()),
        comment: Some(comment),
        now: app.clock.now_ms(),
        valid_for_ms: 0,
    };
    changed(decide(app, id, change).await?)
}

/// `POST /api/v1/requests/{id}/detach`: the agent's shim stopped waiting for its pending
/// request. 200 with the request (no agent waiting, or decided by now).
pub(super) async fn detach(
    AxState(app): St,
    agent: Agent,
    Path(id): Path<String>,
) -> std::result::Result<Response, ApiError> {
    check_id(&id)?;
    let view = visible(&app, &Caller::Agent(agent.clone()), &id).await?;
    if view.state == State::Pending {
        app.store.set_waiting(&id, &agent.name, None).await?;
    }
    let view = visible(&app, &Caller::Agent(agent), &id).await?;
    Ok(Json(linked(&app, view)).into_response())
}

/// `POST /api/v1/requests/{id}/claim`: 200 with the request when this claim holds its run,
/// 409 `run_claimed` when another does, or the request is not approved or already ran.
pub(super) async fn claim(
    AxState(app): St,
    agent: Agent,
    Path(id): Path<String>,
    Body(b): Body<ClaimBody>,
) -> std::result::Result<Response, ApiError> {
    check_id(&id)?;
    if b.claim.len() != 32
        || !b
            .claim
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            "at `claim`: 32 lowercase hex characters",
        ));
    }
    let view = visible(&app, &Caller::Agent(agent.clone()), &id).await?;
    if !app.store.claim_run(&id, &agent.name, &b.claim).await? {
        let why = match view.state {
            State::Approved if view.outcome.is_some() => "its approval already ran".to_string(),
            State::Approved => "another run of the same command has claimed its approval".into(),
            s => format!("it is {}, not approved", s.as_str()),
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "run_claimed",
            format!("request {id} cannot be run here: {why}"),
        ));
    }
    let view = visible(&app, &Caller::Agent(agent), &id).await?;
    Ok(Json(linked(&app, view)).into_response())
}

impl Store {
    /// Claims approved request `id` of `agent` for the one run of its approval: true when
    /// `claim` holds it now (it was free, or is this same claim again: a retried call), false
    /// when another claim holds it, or the request is not approved (or already ran).
    pub async fn claim_run(&self, id: &str, agent: &str, claim: &str) -> Result<bool> {
        let (id, agent, claim) = (id.to_string(), agent.to_string(), claim.to_string());
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let r = sqlx::query(
                        "UPDATE requests SET run_claim = $1 WHERE id = $2 AND agent = $3 \
                         AND state = 'approved' AND outcome IS NULL \
                         AND (run_claim IS NULL OR run_claim = $1)",
                    )
                    .bind(&claim)
                    .bind(&id)
                    .bind(&agent)
                    .execute(&mut *c)
                    .await?;
                    Ok(r.rows_affected() > 0)
                })
            })
            .await
    }

    /// Records until when `agent`'s shim waits for its pending request `id` (`None`: it
    /// stopped waiting). Changes nothing else, and nothing once the request is decided.
    pub async fn set_waiting(&self, id: &str, agent: &str, until: Option<i64>) -> Result<bool> {
        let (id, agent) = (id.to_string(), agent.to_string());
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let r = sqlx::query(
                        "UPDATE requests SET agent_waiting_until = $1 WHERE id = $2 \
                         AND agent = $3 AND state = 'pending'",
                    )
                    .bind(until)
                    .bind(&id)
                    .bind(&agent)
                    .execute(&mut *c)
                    .await?;
                    Ok(r.rows_affected() > 0)
                })
            })
            .await
    }
}
