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
use crate::api::{now_ms, State};
use crate::audit::ExportLine;
use crate::server::app::{App, Event};
use crate::server::decide::{decide, Change};
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
    let actor = s.actor();
    let change = Change {
        to,
        actor: &actor,
        comment,
        now: now_ms(),
        valid_for_ms: i64::try_from(app.policy.serve().decision_valid_for.0.as_millis())
            .unwrap_or(i64::MAX),
        only_agent: None,
        details: Some(details),
    };
    match decide(&app, &id, change).await? {
        Changed::Done(_) => Ok(Page::Redirect(here).into_response()),
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
    if let Err(e) = auth::approver(&app, web, &headers, "/ui").await {
        return Err(match e {
            Page::Redirect(_) => Page::new(StatusCode::UNAUTHORIZED, "Signed out", "Sign in."),
            e => e,
        });
    }
    let rx = app.events.subscribe();
    let stop = app.shutdown.clone();
    let stream = stream::unfold((rx, stop), |(mut rx, mut stop)| async move {
        let event = tokio::select! {
            r = rx.recv() => match r {
                Ok(Event::Created(id)) => SseEvent::default().event("created").data(id),
                Ok(Event::Ended(id)) => SseEvent::default().event("ended").data(id),
                // Missed some: a refresh shows the current state anyway.
                Err(RecvError::Lagged(_)) => SseEvent::default().event("ended").data(""),
                Err(RecvError::Closed) => return None,
            },
            _ = stop.wait_for(|s| *s) => return None,
        };
        Some((Ok(event), (rx, stop)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

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
    let since = day(q.since)?;
    let until = day(q.until)?.map(|t| t + 86_400_000 - 1);
    let mut conn = app.store.reader().await?;
    let checkpoints = crate::server::audit_log::checkpoints(&mut conn).await?;
    struct Walk {
        conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
        after: i64,
        last: i64,
        checkpoints: Option<Vec<crate::audit::Checkpoint>>,
        failed: bool,
    }
    let walk = Walk {
        conn,
        after: 0,
        last: 0,
        checkpoints: Some(checkpoints),
        failed: false,
    };
    let body = stream::unfold(walk, move |mut w| async move {
        if w.failed {
            return None;
        }
        let page = crate::server::audit_log::page(&mut w.conn, w.after, since, until).await;
        let lines: Vec<ExportLine> = match page {
            Ok(rows) if !rows.is_empty() => {
                w.after = rows.last().map_or(w.after, |r| r.seq);
                w.last = w.after;
                rows.into_iter().map(ExportLine::Row).collect()
            }
            Ok(_) => {
                let last = w.last;
                w.checkpoints
                    .take()?
                    .into_iter()
                    .filter(|c| c.seq <= last)
                    .map(ExportLine::Checkpoint)
                    .collect()
            }
            Err(e) => {
                w.failed = true;
                return Some((Err(std::io::Error::other(e.to_string())), w));
            }
        };
        let mut text = String::new();
        for l in &lines {
            text.push_str(&serde_json::to_string(l).unwrap_or_default());
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
