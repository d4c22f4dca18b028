//! The history: decided requests, newest first, fifty a page, with filters (state, tool,
//! environment, agent, approver, a date range) that the page's links keep while paging.

use std::sync::Arc;

use axum::extract::{RawQuery, State as AxState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::auth;
use super::fmt::{duration, middle, short};
use super::html::{approver_name, command, environment, frame, shown, when, Nav};
use super::page::{web_of, Page};
use super::pages::{day, encode, pairs, until, Kept};
use crate::server::app::App;
use crate::server::history::{Decided, Filter};

/// Decided requests per history page.
const PER_PAGE: i64 = 50;
/// The last history page that can be asked for.
const MAX_PAGE: i64 = 100_000;

/// `GET /ui/history?state=&tool=&environment=&agent=&approver=&since=&until=&page=`
pub async fn history(
    AxState(app): AxState<Arc<App>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    let q = q.unwrap_or_default();
    let s = auth::approver(&app, web, &headers, &format!("/ui/history?{q}")).await?;
    let now = app.clock.now_ms();
    let (f, page, kept) = filter(&q).map_err(|p| p.signed_in(&s))?;
    let mut rows = app
        .store
        .history(&f, PER_PAGE + 1, (page - 1) * PER_PAGE)
        .await
        .map_err(|e| Page::from(e).signed_in(&s))?;
    let per_page = usize::try_from(PER_PAGE).unwrap_or(usize::MAX);
    let more = rows.len() > per_page;
    rows.truncate(per_page);
    let nav = Paging {
        page,
        more,
        query: encode(&kept),
    };
    Ok(frame(
        "History",
        Some(&s),
        now,
        Nav::History,
        body(&rows, &f, &nav),
    )
    .into_response())
}

/// The filter, the page and the filters to keep in links, from the query.
fn filter(q: &str) -> Result<(Filter, i64, Kept), Page> {
    let mut f = Filter::default();
    let mut page = 1;
    let mut kept = Vec::new();
    for (k, v) in pairs(q) {
        let value = Some(v.trim().to_string()).filter(|v| !v.is_empty());
        match k.as_str() {
            "state" => f.state = value.clone(),
            "tool" => f.tool = value.clone(),
            "environment" => f.environment = value.clone(),
            "agent" => f.agent = value.clone(),
            "approver" => f.approver = value.clone(),
            "since" => f.since = day(&value)?,
            "until" => f.until = until(&value, day(&value)?),
            "page" => page = v.parse::<i64>().unwrap_or(1).clamp(1, MAX_PAGE),
            _ => return Err(Page::bad_request(format!("Unknown filter {k:?}."))),
        }
        if k != "page" {
            if let Some(value) = value {
                kept.push((k, value));
            }
        }
    }
    Ok((f, page, kept))
}

/// Where a page is in the list.
struct Paging {
    page: i64,
    more: bool,
    /// The filters, as a query string.
    query: String,
}

fn body(rows: &[Decided], f: &Filter, nav: &Paging) -> Markup {
    html! {
        h1 { "History" }
        (filters(f))
        @if rows.is_empty() { p.empty { "No decided requests match." } }
        ul.cards {
            @for d in rows { (row(d)) }
        }
        nav.pages aria-label="Pages of the history" {
            @if nav.page > 1 { a href={ "/ui/history?" (nav.query) "&page=" (nav.page - 1) } { "← newer" } }
            @if nav.more { a href={ "/ui/history?" (nav.query) "&page=" (nav.page + 1) } { "older →" } }
        }
    }
}

/// The filter form.
fn filters(f: &Filter) -> Markup {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let date = |ms: Option<i64>| {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    html! {
        form.filters method="get" action="/ui/history" {
            label { "State "
                select name="state" {
                    @for st in ["", "approved", "rejected", "expired", "cancelled"] {
                        option value=(st) selected[f.state.as_deref() == Some(st)] {
                            @if st.is_empty() { "any" } @else { (st) }
                        }
                    }
                }
            }
            label { "Tool " input name="tool" value=(opt(&f.tool)) size="9"; }
            label { "Environment " input name="environment" value=(opt(&f.environment)) size="10"; }
            label { "Agent " input name="agent" value=(opt(&f.agent)) size="10"; }
            label { "Approver " input name="approver" value=(opt(&f.approver)) size="14"; }
            label { "From " input type="date" name="since" value=(date(f.since)); }
            label { "To " input type="date" name="until" value=(date(f.until)); }
            button type="submit" { "Filter" }
        }
    }
}

/// One decided request.
fn row(d: &Decided) -> Markup {
    let v = &d.view;
    html! {
        li.card {
            a.req href={ "/ui/requests/" (v.id) } {
                div.line1 {
                    span class={ "state state-" (v.state.as_str()) } { (v.state.as_str()) }
                    span.tool { (shown(&v.tool)) }
                    span.env { (environment(v)) }
                    span.when { (when(v.created_at)) }
                }
                code.cmd { (middle(&command(v), 120)) }
                div.line3 {
                    span.agent { "agent " (shown(&v.agent)) }
                    @if let Some(dec) = &v.decision {
                        span.by { "by " (approver_name(dec.approvers.first(), d.approver.as_ref())) " at " (when(dec.decided_at)) }
                    }
                    @if let Some(o) = &v.outcome {
                        span.outcome {
                            "run: "
                            @match (o.exit_code, o.signal) {
                                (Some(c), _) => { "exit " (c) }
                                (None, Some(sig)) => { "signal " (sig) }
                                _ => { "ended" }
                            }
                            ", " (duration(i64::try_from(o.duration_ms).unwrap_or(i64::MAX)))
                            @if v.outcome_verified { " (reported by the writer)" } @else { " (reported by the agent)" }
                        }
                    }
                }
                @if let Some(c) = v.decision.as_ref().and_then(|d| d.comment.as_ref()) {
                    div.reason { "“" (short(&shown(c), 200)) "”" }
                }
            }
        }
    }
}
