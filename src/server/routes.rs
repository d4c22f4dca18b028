//! The HTTP routes of `/api/v1` and the public endpoints. docs/api.md documents each.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Request, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::agent_runs;
use super::app::App;
use super::auth::{Anyone, Approver, Caller, Reporter};
use super::decide::{changed, decide, By, Change};
use super::error::ApiError;
use super::extract::{Body, Q};
use super::intake::{self, linked, valid_for};
use super::long_poll::{self, check_id, RETRY_AFTER_SECONDS};
use super::store::{Changed, OutcomeReport};
use crate::api::{DecisionBody, Outcome, PublicKey, RequestView, State, Verb, WhoAmI};
use crate::policy::approvals::Person;

use crate::api::MAX_WAIT_SECONDS;

/// Alive (always 200), and whether the database answers.
async fn healthz(AxState(app): AxState<Arc<App>>) -> String {
    let db = if app.store.reachable().await {
        "reachable"
    } else {
        "unreachable"
    };
    format!("ok\ndatabase: {db}\n")
}

/// Ready to serve: 200 while the database answers reads and the writer's own connection, 503
/// while it does not. Logged when readiness changes. (`/healthz`, the liveness probe, asks
/// only the read pool: a busy writer must not make a replica look dead.)
async fn readyz(AxState(app): AxState<Arc<App>>) -> Response {
    let ready = app.store.reachable().await && app.store.writable().await;
    if app.metrics.unready.swap(!ready, Relaxed) == ready {
        if ready {
            tracing::info!("ready again: the database answers");
        } else {
            tracing::error!("not ready: the database does not answer (reads or the writer)");
        }
    }
    if ready {
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
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/reload", post(super::reload::route))
        .route("/api/v1/requests", post(intake::create).get(list))
        .route("/api/v1/requests/{id}", get(long_poll::show))
        .route("/api/v1/requests/{id}/cancel", post(agent_runs::cancel))
        .route("/api/v1/requests/{id}/detach", post(agent_runs::detach))
        .route(
            "/api/v1/requests/{id}/supersede",
            post(agent_runs::supersede),
        )
        .route("/api/v1/requests/{id}/claim", post(agent_runs::claim))
        .route("/api/v1/requests/{id}/outcome", post(outcome))
        .route("/api/v1/requests/{id}/decision", post(decision))
        .route("/api/v1/no-changes", post(intake::no_changes))
        .route(
            "/api/v1/audit/checkpoint",
            get(super::transparency::checkpoint),
        )
        .route("/api/v1/audit/proof", get(super::transparency::proof))
        .route(
            "/api/v1/audit/consistency",
            get(super::transparency::consistency),
        )
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
        .layer(axum::middleware::from_fn(super::logging::answers))
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

/// `GET /api/v1/whoami`: who the server takes the caller for (an agent's name and the human
/// it acts for; a runner's agents; an approver's identity). It grants nothing.
async fn whoami(who: Anyone) -> Json<WhoAmI> {
    let (kind, name, on_behalf_of, agents) = match who {
        Anyone::Caller(Caller::Agent(a)) => ("agent", a.name, a.on_behalf_of, Vec::new()),
        Anyone::Caller(Caller::Approver(a)) => ("approver", a.0, None, Vec::new()),
        Anyone::Runner(r) => ("runner", r.name, None, r.agents),
    };
    Json(WhoAmI {
        kind: kind.into(),
        name,
        on_behalf_of,
        agents,
    })
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
                .live()
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
    match &result {
        Changed::Conflict(State::Approved) => tracing::warn!(
            id = %id,
            by = %report.actor,
            "outcome refused: not this reporter's to record now (recorded as outcome_refused)"
        ),
        Changed::Done(_) => tracing::info!(
            id = %id,
            by = %report.actor,
            exit_code = o.exit_code,
            signal = o.signal,
            verified = report.verified,
            "outcome recorded"
        ),
        _ => {}
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
    let live = app.live();
    if !live.policy.serve().allow_local_approvers {
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
        valid_for_ms: valid_for(&live.policy),
    };
    changed(decide(&app, &id, change).await?)
}
