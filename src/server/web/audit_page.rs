//! The audit page: whether the head of the chain verifies (the rows from the last signed
//! checkpoint to the newest chain correctly, and the checkpoint's signature is this server's
//! key's), the log's events (sequence number, time, kind, request with a link, actor) with
//! filters and paging, and the export of a range for `hitl-gate audit verify` offline.

use std::sync::Arc;

use axum::extract::{RawQuery, State as AxState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::auth;
use super::html::{frame, shown, when, Nav};
use super::page::{web_of, Page};
use super::pages::{day, encode, pairs, until, Kept};
use crate::audit::{verify_from, Checkpoint, Row, GENESIS};
use crate::server::app::App;
use crate::server::audit_log::{page as audit_rows, PageConn};
use crate::server::history::{AuditEvent, AuditFilter, AuditPage};

/// Events per page.
const PER_PAGE: i64 = 100;
/// The head is checked when at most this many rows follow the last signed checkpoint (the
/// checkpointer signs one every `checkpoint_every` rows and on a timer, so there are few).
const MAX_CHECKED: i64 = 5000;
/// The kinds of events, offered in the filter (any kind can be typed).
const KINDS: &[&str] = &[
    "request_created",
    "approval",
    "approved",
    "rejected",
    "expired",
    "cancelled",
    "outcome",
];

/// What the check of the chain's head found.
enum Head {
    /// The rows `from..=to` chain correctly, anchored by the checkpoint at `from` (or the
    /// first row).
    Verified {
        from: i64,
        to: i64,
        signed: bool,
    },
    Broken(String),
    NotChecked(String),
    Empty,
}

/// `GET /ui/audit?kind=&actor=&request=&since=&until=&before=&after=`
pub async fn audit(
    AxState(app): AxState<Arc<App>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    let q = q.unwrap_or_default();
    let s = auth::approver(&app, web, &headers, &format!("/ui/audit?{q}")).await?;
    let now = app.clock.now_ms();
    let (f, at, kept) = filter(&q).map_err(|p| p.signed_in(&s))?;
    let signed = |e| Page::from(e).signed_in(&s);
    let mut events = app
        .store
        .audit_events(&f, at, PER_PAGE + 1)
        .await
        .map_err(signed)?;
    let per_page = usize::try_from(PER_PAGE).unwrap_or(usize::MAX);
    // One more than a page says whether there is more in the direction of travel.
    let more = events.len() > per_page;
    if more {
        match at {
            AuditPage::After(_) => events.remove(0),
            _ => events.remove(per_page),
        };
    }
    let (head_row, cp) = app.store.audit_head().await.map_err(signed)?;
    let head = check_head(&app, head_row.as_ref(), cp.as_ref()).await;
    let view = View {
        events: &events,
        f: &f,
        query: encode(&kept),
        older: more || matches!(at, AuditPage::After(_)),
        newer: !matches!(at, AuditPage::Newest) && (more || matches!(at, AuditPage::Before(_))),
        head: &head,
        head_row: head_row.as_ref(),
        cp: cp.as_ref(),
        public_key: &app.keys.public_hex(),
    };
    Ok(frame("Audit log", Some(&s), now, Nav::Audit, body(&view)).into_response())
}

/// The filter, where the page starts, and the filters to keep in links, from the query.
fn filter(q: &str) -> Result<(AuditFilter, AuditPage, Kept), Page> {
    let mut f = AuditFilter::default();
    let mut at = AuditPage::Newest;
    let mut kept = Vec::new();
    let seq = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| Page::bad_request(format!("{v:?} is not a sequence number.")))
    };
    for (k, v) in pairs(q) {
        let value = Some(v.trim().to_string()).filter(|v| !v.is_empty());
        match k.as_str() {
            "kind" => f.kind = value.clone(),
            "actor" => f.actor = value.clone(),
            "request" => f.request_id = value.clone(),
            "since" => f.since = day(&value)?,
            "until" => f.until = until(&value, day(&value)?),
            "before" => at = AuditPage::Before(seq(&v)?),
            "after" => at = AuditPage::After(seq(&v)?),
            _ => return Err(Page::bad_request(format!("Unknown filter {k:?}."))),
        }
        if !matches!(k.as_str(), "before" | "after") {
            if let Some(value) = value {
                kept.push((k, value));
            }
        }
    }
    Ok((f, at, kept))
}

/// Checks the head of the chain: from the last signed checkpoint (or the first row) to the
/// newest row, when that is at most [`MAX_CHECKED`] rows.
async fn check_head(app: &App, head: Option<&(i64, String)>, cp: Option<&Checkpoint>) -> Head {
    let Some((last, _)) = head else {
        return Head::Empty;
    };
    let from = cp.map_or(1, |c| c.seq);
    if last - from >= MAX_CHECKED {
        return Head::NotChecked(format!(
            "{} rows follow the last signed checkpoint; check the whole log with `hitl-gate \
             audit verify`",
            last - from
        ));
    }
    let rows = match read_rows(app, from, *last).await {
        Ok(rows) => rows,
        Err(e) => return Head::NotChecked(format!("the log could not be read: {e}")),
    };
    let start = (
        from,
        rows.first()
            .map_or(GENESIS.to_string(), |r| r.prev_hash.clone()),
    );
    let cps: Vec<Checkpoint> = cp.cloned().into_iter().collect();
    let key = app.keys.public_hex();
    match verify_from(rows.into_iter().map(Ok), &cps, Some(&key), start) {
        Ok(r) if r.last_seq == *last => Head::Verified {
            from,
            to: *last,
            signed: cp.is_some(),
        },
        Ok(r) => Head::Broken(format!("the rows end at {}, not at {last}", r.last_seq)),
        Err(e) => Head::Broken(e.to_string()),
    }
}

/// The rows `from..=to`, page by page.
async fn read_rows(app: &App, from: i64, to: i64) -> Result<Vec<Row>, String> {
    let mut conn = app.store.reader().await.map_err(|e| e.to_string())?;
    let mut rows: Vec<Row> = Vec::new();
    let mut after = from - 1;
    while after < to {
        let page = audit_rows(PageConn::Any(&mut conn), after, None, None)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last().map(|r| r.seq) else {
            break;
        };
        rows.extend(page.into_iter().filter(|r| r.seq <= to));
        after = last;
    }
    Ok(rows)
}

/// What the page shows.
struct View<'a> {
    events: &'a [AuditEvent],
    f: &'a AuditFilter,
    query: String,
    older: bool,
    newer: bool,
    head: &'a Head,
    head_row: Option<&'a (i64, String)>,
    cp: Option<&'a Checkpoint>,
    public_key: &'a str,
}

fn body(v: &View<'_>) -> Markup {
    html! {
        h1 { "Audit log" }
        (head(v))
        h2 { "Events" }
        (filters(v.f))
        @if v.events.is_empty() { p.empty { "No events match." } }
        @else { (table(v.events)) }
        nav.pages aria-label="Pages of the audit log" {
            @if v.newer {
                @if let Some(e) = v.events.first() {
                    a href=(link(&v.query, "after", e.seq)) { "← newer" }
                }
            }
            @if v.older {
                @if let Some(e) = v.events.last() {
                    a href=(link(&v.query, "before", e.seq)) { "older →" }
                }
            }
        }
        h2 { "Export" }
        form.filters method="get" action="/ui/audit/export" {
            label { "From " input type="date" name="since"; }
            label { "To " input type="date" name="until"; }
            button type="submit" { "Download JSONL" }
        }
        p { "Check an export offline, on any machine, with the key above:" }
        pre.cmd { "hitl-gate audit verify --file hitl-gate-audit.jsonl --public-key " (v.public_key) }
    }
}

/// A page of the list: the filters of `query`, and where it starts.
fn link(query: &str, key: &str, seq: i64) -> String {
    match query {
        "" => format!("/ui/audit?{key}={seq}"),
        q => format!("/ui/audit?{q}&{key}={seq}"),
    }
}

/// The chain's head, its check, the last checkpoint and the server's key.
fn head(v: &View<'_>) -> Markup {
    html! {
        @match v.head {
            Head::Verified { from, to, signed } => p.verified #chain {
                "The chain's head verifies: rows " (from) " to " (to) " chain correctly"
                @if *signed { ", from a checkpoint signed with this server's key" } "."
            },
            Head::Broken(why) => p.notice.broken #chain { "The chain's head does NOT verify: " (why) "." },
            Head::NotChecked(why) => p.notice #chain { "The chain's head was not checked here: " (why) "." },
            Head::Empty => p #chain { "The log is empty." },
        }
        dl.facts {
            dt { "Newest row" }
            dd { @match v.head_row { Some((seq, hash)) => { "seq " (seq) ", hash " code { (hash) } } None => { "none yet" } } }
            dt { "Last signed checkpoint" }
            dd { @match v.cp {
                Some(c) => { "seq " (c.seq) " at " (when(c.at)) ", head " code { (c.head_hash) } }
                None => { "none yet" }
            } }
            dt { "Server public key (ed25519)" }
            dd { code { (v.public_key) } }
        }
    }
}

/// The filter form.
fn filters(f: &AuditFilter) -> Markup {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let date = |ms: Option<i64>| {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    html! {
        form.filters method="get" action="/ui/audit" {
            label { "Kind " input name="kind" list="kinds" value=(opt(&f.kind)) size="14"; }
            datalist #kinds { @for k in KINDS { option value=(k) {} } }
            label { "Actor " input name="actor" value=(opt(&f.actor)) size="14"; }
            label { "Request " input name="request" value=(opt(&f.request_id)) size="14"; }
            label { "From " input type="date" name="since" value=(date(f.since)); }
            label { "To " input type="date" name="until" value=(date(f.until)); }
            button type="submit" { "Filter" }
        }
    }
}

/// The events as a table.
fn table(events: &[AuditEvent]) -> Markup {
    html! {
        div.scroll {
            table.events {
                thead { tr {
                    th scope="col" { "seq" } th scope="col" { "time" } th scope="col" { "kind" }
                    th scope="col" { "request" } th scope="col" { "actor" }
                } }
                tbody {
                    @for e in events {
                        tr {
                            td.num { (e.seq) }
                            td { (when(e.at)) }
                            td { code { (shown(&e.kind)) } }
                            td { @match &e.request_id {
                                Some(id) => a href={ "/ui/requests/" (shown(id)) } { code { (shown(&id.chars().take(12).collect::<String>())) "…" } },
                                None => "—",
                            } }
                            td { code { (shown(&e.actor)) } }
                        }
                    }
                }
            }
        }
    }
}
