//! What the web UI does besides showing pages: the decision form (the same `decide` and the
//! same transaction as the admin CLI, with the approver's identity, sign-in time, session hash,
//! source address and user agent in the audit row), the live inbox's server-sent events, and
//! the audit log export.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::auth;
use super::page::{web_of, Page};
use super::pages::{needs_confirm, needs_reauth, not_found, request_id};
use crate::api::State;
use crate::audit::ExportLine;
use crate::policy::approvals::Person;
use crate::server::app::{App, Event};
use crate::server::decide::{decide, By, Change};
use crate::server::store::Changed;

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /ui/requests/{id}/decision`
pub async fn decision(
    AxState(app): AxState<Arc<App>>,
    Path(id): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(f): Form<DecisionForm>,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    request_id(&id)?;
    let here = format!("/ui/requests/{id}");
    let s = auth::approver(&app, web, &headers, &here).await?;
    auth::check_form(web, &headers, &s, &f.csrf)?;
    let v = app.store.get(&id).await?.ok_or_else(not_found)?;
    if needs_reauth(&app, &s, &v) {
        // A decision in a high-risk environment needs a recent sign-in: the provider asks
        // again, and the approver comes back to this request.
        return Err(Page::Redirect(auth::login_url(&here, true)));
    }
    let comment = Some(f.comment.trim()).filter(|c| !c.is_empty());
    let to = match f.decision.as_str() {
        "approve" => State::Approved,
        "reject" => State::Rejected,
        _ => return Err(Page::bad_request("Choose Approve or Reject.")),
    };
    if to == State::Rejected && comment.is_none() {
        return Err(Page::bad_request(
            "A rejection needs a reason in the comment: the agent reads it.",
        ));
    }
    if to == State::Approved {
        if let Some(env) = needs_confirm(&v) {
            if f.confirm.trim() != env {
                return Err(Page::bad_request(format!(
                    "This deletes or replaces something in {env}: type {env:?} to approve it. \
                     Nothing was decided."
                )));
            }
        }
    }
    let details = json!({
        "via": "web",
        "issuer": &s.who.issuer,
        "subject": &s.who.subject,
        "email": &s.who.email,
        "name": &s.who.name,
        "auth_time": s.who.auth_time,
        "session_sha256": &s.id_sha256,
        "source_ip": peer.map(|Extension(ConnectInfo(a))| a.ip().to_string()),
        "user_agent": headers.get(header::USER_AGENT).and_then(|u| u.to_str().ok()),
    });
    let change = Change {
        to,
        by: By::Person {
            who: Person {
                actor: s.actor(),
                email: s.who.email.clone(),
                groups: s.who.groups.clone(),
            },
            display: s.who.email.clone().or_else(|| s.who.name.clone()),
            details: Some(details),
        },
        comment,
        now: app.clock.now_ms(),
        valid_for_ms: i64::try_from(app.live().policy.serve().decision_valid_for.0.as_millis())
            .unwrap_or(i64::MAX),
    };
    match decide(&app, &id, change).await? {
        Changed::Done(_) => Ok(Page::Redirect(here).into_response()),
        Changed::NotAllowed(why) => Err(Page::new(
            StatusCode::FORBIDDEN,
            "Not yours to decide",
            format!("{why}. Nothing was recorded."),
        )),
        Changed::Duplicate(why) => Err(Page::new(
            StatusCode::CONFLICT,
            "Already approved",
            format!("{why}."),
        )),
        Changed::Conflict(state) => Err(Page::new(
            StatusCode::CONFLICT,
            "Already decided",
            format!(
                "This request is {} already; your decision was not recorded.",
                state.as_str()
            ),
        )),
        Changed::NotFound => Err(not_found()),
    }
}

/// `GET /ui/events`: an event stream that names every request created (`created`) or ended
/// (`ended`), fed by the same wake-up that answers waiting shims. The inbox's script refreshes
/// its rows on each.
pub async fn events(
    AxState(app): AxState<Arc<App>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>>, Page> {
    let web = web_of(&app)?;
    if let Err(e) = auth::approver_with(&app, web, &headers, "/ui", false).await {
        return Err(match e {
            Page::Redirect(_) => Page::new(StatusCode::UNAUTHORIZED, "Signed out", "Sign in."),
            e => e,
        });
    }
    /// The stream's state: the events, shutdown, and a periodic check that the session that
    /// opened it is still valid (the stream ends when it is not; the page then reloads).
    struct Live {
        rx: tokio::sync::broadcast::Receiver<Event>,
        stop: tokio::sync::watch::Receiver<bool>,
        recheck: tokio::time::Interval,
        app: Arc<App>,
        headers: HeaderMap,
    }
    let mut recheck = tokio::time::interval(SESSION_RECHECK);
    recheck.reset();
    let live = Live {
        rx: app.events.subscribe(),
        stop: app.shutdown.clone(),
        recheck,
        app: app.clone(),
        headers,
    };
    enum Step {
        Event(Result<Event, RecvError>),
        Stop,
        Recheck,
    }
    let stream = stream::unfold(live, |mut l| async move {
        loop {
            let step = tokio::select! {
                r = l.rx.recv() => Step::Event(r),
                _ = l.stop.wait_for(|s| *s) => Step::Stop,
                _ = l.recheck.tick() => Step::Recheck,
            };
            let event = match step {
                Step::Event(Ok(Event::Created(id))) => {
                    SseEvent::default().event("created").data(id)
                }
                Step::Event(Ok(Event::Ended(id))) => SseEvent::default().event("ended").data(id),
                // Missed some: a refresh shows the current state anyway.
                Step::Event(Err(RecvError::Lagged(_))) => {
                    SseEvent::default().event("ended").data("")
                }
                Step::Event(Err(RecvError::Closed)) | Step::Stop => return None,
                Step::Recheck => {
                    let web = l.app.web.as_ref()?;
                    match auth::approver_with(&l.app, web, &l.headers, "/ui", false).await {
                        Ok(_) => continue,
                        Err(_) => return None,
                    }
                }
            };
            return Some((Ok(event), l));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// How often an open event stream checks that its session is still valid.
const SESSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// The longest an audit export may stream.
const EXPORT_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Deserialize)]
pub struct ExportQuery {
    since: Option<String>,
    until: Option<String>,
}

/// `GET /ui/audit/export?since=YYYY-MM-DD&until=YYYY-MM-DD`: the audit log as JSON lines, the
/// rows of the range and then the checkpoints up to its last row, the same format as
/// `hitl-gate audit export` (and verifiable the same way).
pub async fn export(
    AxState(app): AxState<Arc<App>>,
    Query(q): Query<ExportQuery>,
    headers: HeaderMap,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    auth::approver(&app, web, &headers, "/ui/audit").await?;
    let day = |v: Option<String>| -> Result<Option<i64>, Page> {
        v.filter(|v| !v.trim().is_empty())
            .map(|v| crate::audit::parse_time(v.trim()))
            .transpose()
            .map_err(Page::bad_request)
    };
    let since = day(q.since.clone())?;
    let until = super::pages::until(&q.until, day(q.until.clone())?);
    let Ok(permit) = app.exports.clone().try_acquire_owned() else {
        return Err(Page::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "An export is running",
            "Another audit export is being downloaded; try again when it has finished.",
        ));
    };
    let checkpoints = {
        let mut conn = app.store.reader().await?;
        crate::server::audit_log::checkpoints(crate::server::audit_log::PageConn::Any(&mut conn))
            .await?
    };
    /// The walk through the log: a read connection is taken for each page and given back.
    struct Walk {
        app: Arc<App>,
        after: i64,
        last: i64,
        checkpoints: Option<Vec<crate::audit::Checkpoint>>,
        done: bool,
        started: std::time::Instant,
        _permit: tokio::sync::OwnedSemaphorePermit,
    }
    let walk = Walk {
        app: app.clone(),
        after: 0,
        last: 0,
        checkpoints: Some(checkpoints),
        done: false,
        started: std::time::Instant::now(),
        _permit: permit,
    };
    let body = stream::unfold(walk, move |mut w| async move {
        if w.done {
            return None;
        }
        if w.started.elapsed() > EXPORT_LIMIT {
            w.done = true;
            let e = "the export took longer than 10 minutes; export a shorter range";
            return Some((Err(std::io::Error::other(e)), w));
        }
        let page = match w.app.store.reader().await {
            Ok(mut conn) => {
                let c = crate::server::audit_log::PageConn::Any(&mut conn);
                crate::server::audit_log::page(c, w.after, since, until).await
            }
            Err(e) => Err(e),
        };
        let lines: Vec<ExportLine> = match page {
            Ok(rows) if !rows.is_empty() => {
                w.after = rows.last().map_or(w.after, |r| r.seq);
                w.last = w.after;
                rows.into_iter().map(ExportLine::Row).collect()
            }
            Ok(_) => {
                let last = w.last;
                w.done = true;
                w.checkpoints
                    .take()?
                    .into_iter()
                    .filter(|c| c.seq <= last)
                    .map(ExportLine::Checkpoint)
                    .collect()
            }
            Err(e) => {
                w.done = true;
                return Some((Err(std::io::Error::other(e.to_string())), w));
            }
        };
        let mut text = String::new();
        for l in &lines {
            text.push_str(&crate::escape::json_line(l).unwrap_or_default());
            text.push('\n');
        }
        Some((Ok::<_, std::io::Error>(text), w))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/jsonl; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"hitl-gate-audit.jsonl\"",
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}
