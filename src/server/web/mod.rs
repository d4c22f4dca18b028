//! The approvers' web UI, served by `hitl-gate serve` when `[serve.oidc]` is configured:
//! sign-in with the company's identity provider (`auth.rs`), the pages (the inbox `inbox.rs`,
//! a request `pages.rs` with `request_page.rs`, the history `history_page.rs`, the audit log
//! `audit_page.rs`), what changes state (`actions.rs`: the decision form, the audit export) and
//! the live pages' event stream (`events.rs`, with who has a request open, `presence.rs`).
//!
//! The pages are rendered on the server (maud, compile-time templates); one small script, one
//! stylesheet and the icon are embedded in the binary (`static/`). Every page works without the
//! script, less live. Every response carries a strict Content-Security-Policy (no inline script
//! or style), `frame-ancestors 'none'`, `Referrer-Policy`, `nosniff` and `Cache-Control:
//! no-store`.
//!
//! Agent tokens open nothing here: the UI knows only its own session cookie.

mod actions;
mod audit_page;
mod auth;
mod decide_bar;
mod events;
mod fields;
mod fmt;
mod history_page;
mod html;
mod inbox;
mod page;
mod pages;
mod presence;
mod request_page;
mod rules;
mod summary;

use std::sync::Arc;

use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use super::app::App;
use super::oidc::CALLBACK_PATH;

/// The web UI's routes. Without `[serve.oidc]` they answer 404 with a page that says so.
pub fn router(app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui", get(inbox::inbox))
        .route("/ui/inbox-rows", get(inbox::inbox_rows))
        .route("/ui/requests/{id}", get(pages::request))
        .route("/ui/requests/{id}/decision", post(actions::decision))
        .route("/ui/history", get(history_page::history))
        .route("/ui/audit", get(audit_page::audit))
        .route("/ui/audit/export", get(actions::export))
        .route("/ui/events", get(events::events))
        .route("/ui/login", get(auth::login))
        .route("/ui/logout", post(auth::logout))
        .route("/ui/signed-out", get(auth::signed_out))
        .route(CALLBACK_PATH, get(auth::callback))
        .route("/ui/static/app.js", get(script))
        .route("/ui/static/app.css", get(style))
        .route("/favicon.ico", get(favicon))
        .layer(Extension(Arc::new(presence::Presence::default())))
        .layer(axum::middleware::from_fn_with_state(app, headers))
}

/// The security headers of every web response.
async fn headers(AxState(app): AxState<Arc<App>>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    // Forms post only here; the redirects after them may lead to the identity provider (its
    // issuer, authorization and logout endpoints).
    let form_action: String = app
        .web
        .as_ref()
        .map(|w| {
            let mut origins = w.oidc.form_origins();
            origins.push(w.issuer_origin.clone());
            origins.sort();
            origins.dedup();
            origins.iter().map(|o| format!(" {o}")).collect()
        })
        .unwrap_or_default();
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; base-uri 'none'; frame-ancestors 'none'; \
         form-action 'self'{form_action}"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static(REFERRER_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The referrer policy of every page.
const REFERRER_POLICY: &str = "no-referrer";

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("static/app.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("static/app.css"),
    )
}

/// The icon browsers ask for on their own (`/favicon.ico`), with or without the web UI.
async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/x-icon"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        &include_bytes!("static/favicon.ico")[..],
    )
}
