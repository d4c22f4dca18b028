//! The HTTP routes of `/api/v1` and the public endpoints. docs/api.md documents each.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Request, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::app::{App, Held};
use super::auth::{Agent, Approver, Caller, Reporter};
use super::decide::{decide, By, Change};
use super::error::ApiError;
use super::extract::{Body, Q};
use super::intake::{self, linked, valid_for};
use super::store::{Changed, OutcomeReport};
use crate::api::{DecisionBody, Outcome, PublicKey, RequestView, State, Verb};
use crate::policy::approvals::Person;

/// The longest a single long-poll waits, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 60;

/// Alive (always 200), and whether the database answers.
async fn healthz(AxState(app): AxState<Arc<App>>) -> String {
    let db = if app.store.reachable().await {
        "reachable"
    } else {
        "unreachable"
    };
    format!("ok\ndatabase: {db}\n")
}

/// Ready to serve: 200 while the database answers, 503 while it does not.
async fn readyz(AxState(app): AxState<Arc<App>>) -> Response {
    if app.store.reachable().await {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
    }
}

pub fn router(app: Arc<App>) -> Router {
    let body_limit = app.body_limit;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/public-key", get(public_key))
        .route("/api/v1/requests", post(intake::create).get(list))
        .route("/api/v1/requests/{id}", get(show))
        .route("/api/v1/requests/{id}/cancel", post(cancel))
        .route("/api/v1/requests/{id}/outcome", post(outcome))
        .route("/api/v1/requests/{id}/decision", post(decision))
        .route("/api/v1/no-changes", post(intake::no_changes))
        .merge(super::web::router(app.clone()))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(request_deadline))
        .layer(axum::middleware::map_response(refusal_headers))
        .with_state(app)
}

/// Headers of refusals. A refused credential ends the connection (`Connection: close`): a
/// caller without a valid token cannot keep a connection, and its place under `[serve]
/// max_connections`, by sending request after request within `header_read_timeout`, and an
/// unread body is not waited for. A 429 says when to ask again (`Retry-After`).
async fn refusal_headers(mut r: Response) -> Response {
    let (name, value) = match r.status() {
        StatusCode::UNAUTHORIZED => (header::CONNECTION, HeaderValue::from_static("close")),
        StatusCode::TOO_MANY_REQUESTS => (header::RETRY_AFTER, RETRY_AFTER_SECONDS.into()),
        _ => return r,
    };
    r.headers_mut().insert(name, value);
    r
}

/// The longest any request may take (a long-poll's wait plus a margin): a client that sends
/// its body a byte at a time cannot hold a connection forever.
const REQUEST_DEADLINE: Duration = Duration::from_secs(MAX_WAIT_SECONDS + 30);

async fn request_deadline(req: Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            "the request took too long to arrive or to answer",
        )
        .into_response(),
    }
}

type St = AxState<Arc<App>>;

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

async fn metrics(AxState(app): St) -> Result<Response, ApiError> {
    let pending = app.store.count(State::Pending).await?;
    let (depth, oldest) = app.store.outbox_depth().await?;
    let age = oldest.map_or(0.0, |t| (app.clock.now_ms() - t).max(0) as f64 / 1000.0);
    Ok((
        [("content-type", "text/plain; version=0.0.4")],
        app.metrics.render(pending, (depth, age)),
    )
        .into_response())
}

async fn public_key(AxState(app): St) -> Json<PublicKey> {
    Json(PublicKey {
        algorithm: "ed25519".into(),
        public_key: app.keys.public_hex(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
}

async fn list(
    AxState(app): St,
    _who: Approver,
    Q(q): Q<ListQuery>,
) -> Result<Json<Vec<RequestView>>, ApiError> {
    let state = match q.state.as_deref() {
        None | Some("all") => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("unknown state {s:?}"))
        })?),
    };
    Ok(Json(
        app.store
            .list(state, q.limit.unwrap_or(100).clamp(1, 1000))
            .await?
            .into_iter()
            .map(|v| linked(&app, v))
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    wait: Option<u64>,
    /// The number of approvals the caller knows of: a long-poll also returns when it changes
    /// (a request that needs several approvals got one more).
    approvals: Option<usize>,
}

/// Reads a request the caller may see: approvers see all, an agent only its own (others are
/// "not found", so their existence does not leak).
async fn visible(app: &App, caller: &Caller, id: &str) -> Result<RequestView, ApiError> {
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

async fn show(
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
const RETRY_AFTER_SECONDS: u16 = 2;

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

    /// Counts an agent's long-poll against `[serve] max_waits_per_agent` (once per long-poll);
    /// 429 over it. Approvers are not counted.
    fn admit(&mut self) -> Result<(), ApiError> {
        let (Caller::Agent(agent), None) = (self.caller, &self.slot) else {
            return Ok(());
        };
        let cap = self.app.policy.serve().max_waits_per_agent.get();
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

fn shutting_down() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the server is shutting down; retry the same request (it is kept)",
    )
}

fn conflict(state: State) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "already_decided",
        format!("the request is already {}", state.as_str()),
    )
}

fn changed(r: Changed) -> Result<Response, ApiError> {
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

async fn cancel(
    AxState(app): St,
    agent: Agent,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let change = Change {
        to: State::Cancelled,
        by: By::Agent(agent.name.clone()),
        comment: Some("cancelled by the agent"),
        now: app.clock.now_ms(),
        valid_for_ms: 0,
    };
    changed(decide(&app, &id, change).await?)
}

async fn outcome(
    AxState(app): St,
    who: Reporter,
    Path(id): Path<String>,
    Body(o): Body<Outcome>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let report = match &who {
        // The agent's word, unless a lockdown writer reports its runs.
        Reporter::Agent(a) => OutcomeReport {
            actor: format!("agent:{}", a.name),
            verified: false,
            owns: &|agent: &str| agent == a.name,
            refused: app
                .runners
                .values()
                .find(|r| r.agents.contains(&a.name))
                .map(|r| {
                    format!(
                        "runner {:?} reports the outcomes of agent {:?} (lockdown)",
                        r.name, a.name
                    )
                }),
            outcome: &o,
        },
        Reporter::Runner(r) => OutcomeReport {
            actor: format!("runner:{}", r.name),
            verified: true,
            owns: &|agent: &str| r.agents.iter().any(|a| a == agent),
            refused: None,
            outcome: &o,
        },
    };
    let result = app.store.outcome(&id, &report, app.clock.now_ms()).await?;
    if let Changed::Conflict(State::Approved) = &result {
        eprintln!(
            "hitl-gate serve: {} tried to record an outcome for request {id} that is not its \
             to record now; refused and recorded (outcome_refused)",
            report.actor
        );
    }
    changed(result)
}

async fn decision(
    AxState(app): St,
    who: Approver,
    Path(id): Path<String>,
    Body(d): Body<DecisionBody>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    if !app.policy.serve().allow_local_approvers {
        return Err(ApiError::forbidden(
            "local approvers are turned off ([serve] allow_local_approvers = false): decide in \
             the web UI",
        ));
    }
    let comment = d
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if d.decision == Verb::Reject && comment.is_none() {
        return Err(ApiError::bad_request(
            "reason_required",
            "a rejection needs a reason in `comment`: the agent reads it",
        ));
    }
    let to = match d.decision {
        Verb::Approve => State::Approved,
        Verb::Reject => State::Rejected,
    };
    let change = Change {
        to,
        by: By::Person {
            who: Person {
                actor: who.0.clone(),
                email: None,
                groups: Vec::new(),
            },
            display: None,
            details: None,
        },
        comment,
        now: app.clock.now_ms(),
        valid_for_ms: valid_for(&app),
    };
    changed(decide(&app, &id, change).await?)
}
