//! What the web UI does besides showing pages: the decision form (the same `decide` and the
//! same transaction as the admin CLI, with the approver's identity, sign-in time, session hash,
//! source address and user agent in the audit row) and the audit log export. (The live pages'
//! event stream is `events.rs`.)

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;

use super::auth;
use super::page::{web_of, Page};
use super::pages::{not_found, request_id};
use super::rules::{needs_confirm, person, reauth};
use crate::api::State;
use crate::audit::ExportLine;
use crate::server::app::App;
use crate::server::decide::{decide, By, Change};
use crate::server::sessions::Session;
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
    auth::check_form(web, &headers, &s, &f.csrf).map_err(|p| p.signed_in(&s))?;
    let source_ip = peer.map(|Extension(ConnectInfo(a))| a.ip().to_string());
    decide_as(&app, &s, &id, f, &headers, source_ip)
        .await
        .map_err(|p| p.signed_in(&s))
}

/// The decision of `s` on request `id`, after the form's checks: the risky-decision rules,
/// then `decide`.
async fn decide_as(
    app: &App,
    s: &Session,
    id: &str,
    f: DecisionForm,
    headers: &HeaderMap,
    source_ip: Option<String>,
) -> Result<Response, Page> {
    let here = format!("/ui/requests/{id}");
    let v = app.store.get(id).await?.ok_or_else(not_found)?;
    if reauth(app, s, &v).is_some() {
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
        "source_ip": source_ip,
        "user_agent": headers.get(header::USER_AGENT).and_then(|u| u.to_str().ok()),
    });
    let change = Change {
        to,
        by: By::Person {
            who: person(s),
            display: s.who.email.clone().or_else(|| s.who.name.clone()),
            details: Some(details),
        },
        comment,
        now: app.clock.now_ms(),
        valid_for_ms: i64::try_from(app.live().policy.serve().decision_valid_for.0.as_millis())
            .unwrap_or(i64::MAX),
    };
    match decide(app, id, change).await? {
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
    let s = auth::approver(&app, web, &headers, "/ui/audit").await?;
    let signed = |p: Page| p.signed_in(&s);
    let day = |v: Option<String>| -> Result<Option<i64>, Page> {
        v.filter(|v| !v.trim().is_empty())
            .map(|v| crate::audit::parse_time(v.trim()))
            .transpose()
            .map_err(|e| signed(Page::bad_request(e)))
    };
    let since = day(q.since.clone())?;
    let until = super::pages::until(&q.until, day(q.until.clone())?);
    let Ok(permit) = app.exports.clone().try_acquire_owned() else {
        return Err(signed(Page::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "An export is running",
            "Another audit export is being downloaded; try again when it has finished.",
        )));
    };
    let checkpoints = async {
        let mut conn = app.store.reader().await?;
        crate::server::audit_log::checkpoints(crate::server::audit_log::PageConn::Any(&mut conn))
            .await
    }
    .await
    .map_err(|e| signed(e.into()))?;
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
