//! The inbox: pending requests, soonest deadline first, and the approver's own queue ("for
//! me": the requests this person may approve and has not approved yet, by the same rules the
//! decision applies). The tab title carries that queue's length; the page's script keeps the
//! rows current from the event stream and, when the approver asks for it, raises a browser
//! notification for each new request for them. A long command is cut in the middle, so its
//! tail (an image tag, a release name) stays visible on a phone.

use std::sync::Arc;

use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::auth;
use super::fmt::{middle, short};
use super::html::{command, count_badges, frame, left, markers, shown, Nav};
use super::page::{web_of, Page};
use super::rules::{for_me, person};
use crate::api::RequestView;
use crate::policy::approvals::Person;
use crate::server::app::App;

/// Pending requests shown in the inbox at most.
const INBOX_MAX: i64 = 1000;
/// A command in the inbox is cut to about this many characters (in its middle).
const COMMAND_CHARS: usize = 100;

#[derive(Deserialize, Default)]
pub struct InboxQuery {
    /// `me`: only the requests for the signed-in approver.
    #[serde(rename = "for")]
    for_: Option<String>,
}

impl InboxQuery {
    fn mine(&self) -> bool {
        self.for_.as_deref() == Some("me")
    }
}

/// The rows of one view of the inbox, with the counts of both views.
struct Rows {
    rows: Vec<(RequestView, bool)>,
    all: usize,
    mine: usize,
}

/// The pending requests, each marked when it is for `p`; only those with `only_mine`.
async fn rows(app: &App, p: &Person, only_mine: bool) -> Result<Rows, Page> {
    let pending = app.store.pending_summaries(INBOX_MAX).await?;
    let all = pending.len();
    let marked: Vec<(RequestView, bool)> = pending
        .into_iter()
        .map(|v| {
            let m = for_me(&v, p);
            (v, m)
        })
        .collect();
    let mine = marked.iter().filter(|(_, m)| *m).count();
    let rows = marked
        .into_iter()
        .filter(|(_, m)| *m || !only_mine)
        .collect();
    Ok(Rows { rows, all, mine })
}

/// `GET /ui[?for=me]`
pub async fn inbox(
    AxState(app): AxState<Arc<App>>,
    Query(q): Query<InboxQuery>,
    headers: HeaderMap,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    let here = if q.mine() { "/ui?for=me" } else { "/ui" };
    let s = auth::approver(&app, web, &headers, here).await?;
    let r = rows(&app, &person(&s), q.mine()).await?;
    let now = app.clock.now_ms();
    let title = match r.mine {
        0 => "Inbox".to_string(),
        n => format!("({n}) Inbox"),
    };
    Ok(frame(&title, Some(&s), now, Nav::Inbox, page(&r, q.mine(), now)).into_response())
}

/// `GET /ui/inbox-rows[?for=me]`: the rows alone, which the script fetches when the event
/// stream says something changed, with both views' counts in `X-Pending` and `X-For-Me`.
/// Without a session: 401 (the script then reloads the page, which signs in again).
pub async fn inbox_rows(
    AxState(app): AxState<Arc<App>>,
    Query(q): Query<InboxQuery>,
    headers: HeaderMap,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    let s = super::events::approver_in_background(
        &app,
        web,
        &headers,
        "Your session ended; reload the page to sign in again.",
    )
    .await?;
    let r = rows(&app, &person(&s), q.mine()).await?;
    let mut resp = list(&r, q.mine(), app.clock.now_ms()).into_response();
    for (k, n) in [("x-pending", r.all), ("x-for-me", r.mine)] {
        resp.headers_mut().insert(k, HeaderValue::from(n));
    }
    Ok(resp)
}

/// The inbox page: its two views, the notification switch, the rows.
fn page(r: &Rows, mine: bool, now: i64) -> Markup {
    let tab = |href: &str, text: &str, id: &str, n: usize, current: bool| {
        html! {
            a href=(href) aria-current=[current.then_some("page")] {
                (text) " " span.count #(id) { (n) }
            }
        }
    };
    html! {
        div.inboxhead {
            h1 { @if mine { "Waiting for you" } @else { "Waiting for a decision" } }
            nav.tabs aria-label="Inbox views" {
                (tab("/ui?for=me", "For me", "count-mine", r.mine, mine))
                (tab("/ui", "All pending", "count-all", r.all, !mine))
            }
            button #notify type="button" hidden aria-pressed="false" {
                "Notify me of new requests for me"
            }
        }
        ul #inbox-rows .cards data-view=(if mine { "mine" } else { "all" }) {
            (list(r, mine, now))
        }
    }
}

/// The inbox's list items (also served alone, for the live refresh).
fn list(r: &Rows, mine: bool, now: i64) -> Markup {
    html! {
        @if r.rows.is_empty() {
            li.empty {
                @if mine { "Nothing is waiting for you." } @else { "Nothing is waiting." }
            }
        }
        @for (v, m) in &r.rows {
            (row(v, *m, now))
        }
    }
}

/// One pending request in the inbox.
fn row(v: &RequestView, mine: bool, now: i64) -> Markup {
    let cmd = command(v);
    let cut = middle(&cmd, COMMAND_CHARS);
    // The whole command in the tooltip, only when it was cut.
    let whole = (cut != cmd).then(|| short(&cmd, 2000));
    html! {
        li.card data-id=(v.id) data-for-me[mine] {
            a.req href={ "/ui/requests/" (v.id) } {
                div.line1 {
                    (markers(v, mine, now))
                    (left(v.deadline, now))
                }
                code.cmd title=[whole] { (cut) }
                div.line3 {
                    (count_badges(v))
                    span.agent {
                        "agent " (shown(&v.agent))
                        @if let Some(h) = &v.on_behalf_of { " for " (shown(h)) }
                    }
                }
                @if let Some(reason) = &v.reason {
                    div.reason { "“" (short(&shown(reason), 200)) "”" }
                }
            }
        }
    }
}
