//! The approvers' web UI, served by `hitl-gate serve` when `[serve.oidc]` is configured:
//! sign-in with the company's identity provider (`auth.rs`), the pages (`pages.rs`, with their
//! HTML in `html.rs`), and what changes state or streams (`actions.rs`: the decision form, the
//! live inbox's server-sent events, the audit export).
//!
//! The pages are rendered on the server (maud, compile-time templates); one small script and
//! one stylesheet are embedded in the binary (`static/`). Every page works without the script,
//! less live. Every response carries a strict Content-Security-Policy (no inline script or
//! style), `frame-ancestors 'none'`, `Referrer-Policy`, `nosniff` and `Cache-Control: no-store`.
//!
//! Agent tokens open nothing here: the UI knows only its own session cookie.

mod actions;
mod auth;
mod html;
mod pages;
mod request_page;

use std::sync::Arc;

use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use super::app::App;
use super::oidc::{Oidc, CALLBACK_PATH};
use crate::policy::schema::Serve;

/// The web UI's settings, checked at start.
pub struct Web {
    pub oidc: Oidc,
    /// `[serve] public_url`, without a trailing slash.
    pub public_url: String,
    /// `scheme://host[:port]` of the public URL: every form must come from it.
    pub origin: String,
    /// The issuer's origin, where sign-in forms may lead (CSP `form-action`).
    pub issuer_origin: String,
    /// HTTPS: cookies are `Secure` and `__Host-` prefixed. Plain HTTP is allowed on loopback
    /// only, for development.
    pub secure: bool,
}

impl Web {
    /// The web UI for `[serve]`, or `None` without `[serve.oidc]`.
    pub fn from_config(serve: &Serve) -> Result<Option<Web>, String> {
        let Some(oidc) = &serve.oidc else {
            return Ok(None);
        };
        let public_url = serve
            .public_url
            .as_deref()
            .ok_or("[serve.oidc] needs [serve] public_url, the URL approvers open")?
            .trim_end_matches('/')
            .to_string();
        let url = reqwest::Url::parse(&public_url)
            .map_err(|e| format!("[serve] public_url {public_url:?}: {e}"))?;
        let host = url.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let secure = match url.scheme() {
            "https" => true,
            "http" if loopback => false,
            _ => {
                return Err(format!(
                    "[serve] public_url {public_url:?} must be https:// (plain http:// only on \
                     127.0.0.1, [::1] or localhost, for development)"
                ))
            }
        };
        if url.path() != "/" || url.query().is_some() {
            return Err(format!(
                "[serve] public_url {public_url:?} must be an origin without a path (the UI \
                 lives under /ui)"
            ));
        }
        let issuer = reqwest::Url::parse(&oidc.issuer)
            .map_err(|e| format!("[serve.oidc] issuer {:?}: {e}", oidc.issuer))?;
        Ok(Some(Web {
            oidc: Oidc::new(oidc, &public_url)?,
            origin: url.origin().ascii_serialization(),
            issuer_origin: issuer.origin().ascii_serialization(),
            public_url,
            secure,
        }))
    }
}

/// The web UI's routes. Without `[serve.oidc]` they answer 404 with a page that says so.
pub fn router(app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui", get(pages::inbox))
        .route("/ui/inbox-rows", get(pages::inbox_rows))
        .route("/ui/requests/{id}", get(pages::request))
        .route("/ui/requests/{id}/decision", post(actions::decision))
        .route("/ui/history", get(pages::history))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/audit/export", get(actions::export))
        .route("/ui/events", get(actions::events))
        .route("/ui/login", get(auth::login))
        .route("/ui/logout", post(auth::logout))
        .route("/ui/signed-out", get(auth::signed_out))
        .route(CALLBACK_PATH, get(auth::callback))
        .route("/ui/static/app.js", get(script))
        .route("/ui/static/app.css", get(style))
        .layer(axum::middleware::from_fn_with_state(app, headers))
}

/// The web UI of `app`, or the 404 page that says it is off.
fn web_of(app: &App) -> Result<&Web, Page> {
    app.web.as_ref().ok_or_else(|| {
        Page::new(
            StatusCode::NOT_FOUND,
            "The web UI is off",
            "This server has no [serve.oidc] section, so nobody can sign in here. Approvers \
             decide with `hitl-gate approve` on the server host.",
        )
    })
}

/// A page that ends a request early: a redirect, or a short explanation with its status.
pub enum Page {
    Redirect(String),
    Status(StatusCode, &'static str, String),
    /// A whole page already rendered.
    Rendered(StatusCode, maud::Markup),
}

impl Page {
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Page {
        Page::Status(status, title, message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Page {
        Page::new(StatusCode::FORBIDDEN, "Not allowed", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Page {
        Page::new(StatusCode::BAD_REQUEST, "That did not work", message)
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self {
            // 303: after a form's POST the browser follows with a GET.
            Page::Redirect(to) => Redirect::to(&to).into_response(),
            Page::Status(status, title, message) => {
                (status, html::message_page(title, &message)).into_response()
            }
            Page::Rendered(status, page) => (status, page).into_response(),
        }
    }
}

impl From<super::store::StoreError> for Page {
    fn from(e: super::store::StoreError) -> Page {
        Page::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server could not record that",
            format!("Nothing changed: {e}"),
        )
    }
}

/// The security headers of every web response.
async fn headers(AxState(app): AxState<Arc<App>>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    // Forms post only here, and the sign-in redirect may lead to the identity provider.
    let form_action = app
        .web
        .as_ref()
        .map(|w| format!(" {}", w.issuer_origin))
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
