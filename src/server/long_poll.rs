//! Reading one request: `GET /api/v1/requests/{id}`, a long-poll when `wait` is given (it
//! returns at once when the request is decided, gets an approval the caller did not know of, or
//! the wait ends); and the agent's presence: each long-poll of the agent that made the request
//! renews `agent_waiting_until` (the wait plus [`WAITING_GRACE_MS`]), and
//! `POST /api/v1/requests/{id}/detach` clears it when its shim stops waiting (`max_wait`, a
//! harness's SIGTERM). A shim killed outright stops renewing it, so it lapses within a long-poll
//! and a grace. Approvers see "no agent waiting": approving runs nothing until the agent runs the
//! same command again. The record is in the database, so every replica sees it.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::Duration;

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::app::{App, Held};
use super::auth::Caller;
use super::error::ApiError;
use super::extract::Q;
use super::intake::linked;
use crate::api::{RequestView, State, MAX_WAIT_SECONDS, WAITING_GRACE_MS};

type St = AxState<std::sync::Arc<App>>;

/// A request id: 32 lowercase hex characters.
pub(super) fn check_id(id: &str) -> Result<(), ApiError> {
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_id",
            "a request id is 32 lowercase hex characters",
        ))
    }
}

pub(super) fn shutting_down() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the server is shutting down; retry the same request (it is kept)",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
    wait: Option<u64>,
    /// The number of approvals the caller knows of: a long-poll also returns when it changes
    /// (a request that needs several approvals got one more).
    approvals: Option<usize>,
}

/// Reads a request the caller may see: approvers see all, an agent only its own (others are
/// "not found", so their existence does not leak).
pub(super) async fn visible(app: &App, caller: &Caller, id: &str) -> Result<RequestView, ApiError> {
    check_id(id)?;
    let view = app
        .store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("request"))?;
    match caller {
        Caller::Agent(a) if a.name != view.agent => Err(ApiError::not_found("request")),
        _ => Ok(view),
    }
}

pub(super) async fn show(
    AxState(app): St,
    caller: Caller,
    Path(id): Path<String>,
    Q(q): Q<WaitQuery>,
) -> Result<Response, ApiError> {
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
    let mut poll = LongPoll {
        app: &app,
        caller: &caller,
        id: &id,
        until: tokio::time::Instant::now() + wait,
        known_approvals: q.approvals,
        slot: None,
        renewed: false,
    };
    let mut stop = app.shutdown.clone();
    loop {
        // Subscribe before reading, so a decision landing in between is not missed.
        let notify = app.waiters.subscribe(&id);
        let step = poll.step(&notify, &mut stop).await;
        app.waiters.release(&id, notify);
        if let Some(view) = step? {
            return Ok(Json(linked(&app, view)).into_response());
        }
    }
}

/// How long an agent over `[serve] max_waits_per_agent` is told to wait before it long-polls
/// again (`Retry-After`, seconds).
pub(super) const RETRY_AFTER_SECONDS: u16 = 2;

/// One long-poll: who asks, for which request, until when.
struct LongPoll<'a> {
    app: &'a App,
    caller: &'a Caller,
    id: &'a str,
    until: tokio::time::Instant,
    /// The number of approvals the caller knows of.
    known_approvals: Option<usize>,
    /// An agent's count in `[serve] max_waits_per_agent`, taken before its first wait.
    slot: Option<Held<'a>>,
    /// This long-poll has renewed the agent's presence.
    renewed: bool,
}

impl<'a> LongPoll<'a> {
    /// One round: the request if it is decided or the wait is over, `None` after a wake-up
    /// (read it again), an error on shutdown or when the agent holds too many long-polls. A
    /// request that needs no wait is answered whatever the agent holds.
    async fn step(
        &mut self,
        notify: &tokio::sync::Notify,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Option<RequestView>, ApiError> {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let view = visible(self.app, self.caller, self.id).await?;
        self.attended(&view).await?;
        if view.state != State::Pending
            || tokio::time::Instant::now() >= self.until
            || self
                .known_approvals
                .is_some_and(|k| k != view.approvals.len())
        {
            return Ok(Some(view));
        }
        if *stop.borrow() {
            return Err(shutting_down());
        }
        self.admit()?;
        let _counted = Counted::new(&self.app.metrics.waiters);
        tokio::select! {
            () = &mut notified => Ok(None),
            () = tokio::time::sleep_until(self.until) => Ok(None),
            _ = stop.changed() => Err(shutting_down()),
        }
    }

    /// The agent that made the request long-polls it: it waits until the long-poll ends and a
    /// grace past it. Recorded once per long-poll.
    async fn attended(&mut self, view: &RequestView) -> Result<(), ApiError> {
        let Caller::Agent(a) = self.caller else {
            return Ok(());
        };
        let left = self.until - tokio::time::Instant::now();
        if std::mem::replace(&mut self.renewed, true)
            || view.state != State::Pending
            || left.is_zero()
        {
            return Ok(());
        }
        let until = self.app.clock.now_ms()
            + i64::try_from(left.as_millis()).unwrap_or(i64::MAX / 2)
            + WAITING_GRACE_MS;
        self.app
            .store
            .set_waiting(self.id, &a.name, Some(until))
            .await?;
        Ok(())
    }

    /// Counts an agent's long-poll against `[serve] max_waits_per_agent` (once per long-poll);
    /// 429 over it. Approvers are not counted.
    fn admit(&mut self) -> Result<(), ApiError> {
        let (Caller::Agent(agent), None) = (self.caller, &self.slot) else {
            return Ok(());
        };
        let cap = self.app.live().policy.serve().max_waits_per_agent.get();
        match self.app.waiters.hold(&agent.name, cap) {
            Some(held) => {
                self.slot = Some(held);
                Ok(())
            }
            None => {
                self.app.metrics.long_polls_refused.fetch_add(1, Relaxed);
                Err(too_many_waits(cap))
            }
        }
    }
}

/// 429 `too_many_waits` (`refusal_headers` adds `Retry-After`).
fn too_many_waits(cap: usize) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_waits",
        format!(
            "this agent already holds as many long-polls as [serve] max_waits_per_agent allows \
             ({cap}); long-poll again after {RETRY_AFTER_SECONDS} s"
        ),
    )
}

/// One client in the `hitl_gate_waiters` gauge while it lives, so a client that goes away
/// mid-wait (its handler dropped) is not counted forever.
struct Counted<'a>(&'a AtomicI64);

impl<'a> Counted<'a> {
    fn new(gauge: &'a AtomicI64) -> Counted<'a> {
        gauge.fetch_add(1, Relaxed);
        Counted(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}
