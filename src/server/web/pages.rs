//! The request page's handler (GET), and what the pages share: a request id as the API
//! accepts it, the 404 page, and reading a page's query (the filters of the history and the
//! audit log: pairs, dates, the end of a date range, and the filters kept in links). The inbox,
//! the history and the audit log have their own files (`inbox.rs`, `history_page.rs`,
//! `audit_page.rs`); the rules for risky decisions are in `rules.rs`.

use std::sync::Arc;

use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::auth;
use super::decide_bar::Ctx;
use super::html::who;
use super::page::{web_of, Page};
use super::presence::Presence;
use super::request_page;
use super::rules::{needs_confirm, person, reauth, standing};
use crate::server::app::App;

/// The end of a time range given as `value`: a date (YYYY-MM-DD) means the whole day, unix
/// milliseconds mean that instant.
pub fn until(value: &Option<String>, start: Option<i64>) -> Option<i64> {
    let date = value.as_deref().is_some_and(|v| v.contains('-'));
    start.map(|t| {
        if date {
            t.saturating_add(86_400_000 - 1)
        } else {
            t
        }
    })
}

/// A time filter's value (a date or unix ms), or the 400 page.
pub fn day(v: &Option<String>) -> Result<Option<i64>, Page> {
    v.as_deref()
        .map(crate::audit::parse_time)
        .transpose()
        .map_err(Page::bad_request)
}

/// The pairs of a raw query string, decoded.
pub fn pairs(q: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{q}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// The filters a page keeps in its links, as pairs.
pub type Kept = Vec<(String, String)>;

/// Pairs as a query string.
pub fn encode(kept: &[(String, String)]) -> String {
    let mut u = reqwest::Url::parse("http://x/").expect("static URL");
    u.query_pairs_mut().extend_pairs(kept);
    u.query().unwrap_or_default().to_string()
}

/// A request id as the API accepts it, or the 404 page.
pub fn request_id(id: &str) -> Result<(), Page> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(not_found())
    }
}

pub fn not_found() -> Page {
    Page::new(
        StatusCode::NOT_FOUND,
        "No such request",
        "There is no request with this id.",
    )
}

/// `GET /ui/requests/{id}`
pub async fn request(
    AxState(app): AxState<Arc<App>>,
    Extension(presence): Extension<Arc<Presence>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    request_id(&id)?;
    let s = auth::approver(&app, web, &headers, &format!("/ui/requests/{id}")).await?;
    let signed = |e: Page| e.signed_in(&s);
    let v = app
        .store
        .get(&id)
        .await
        .map_err(|e| signed(e.into()))?
        .ok_or_else(|| signed(not_found()))?;
    let approver = app
        .store
        .approver_details(&id)
        .await
        .map_err(|e| signed(e.into()))?;
    let others = presence.others(&id, &s.id_sha256, &who(&s));
    let ctx = Ctx {
        s: &s,
        v: &v,
        approver: approver.as_ref(),
        standing: standing(&v, &person(&s)),
        confirm: needs_confirm(&v),
        reauth: reauth(&app, &s, &v),
        others,
        now: app.clock.now_ms(),
    };
    Ok(request_page::page(&ctx).into_response())
}
