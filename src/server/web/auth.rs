//! Signing in and out of the web UI, and the session every page checks.
//!
//! - **Sign-in** (`/ui/login` → provider → `/auth/callback`): every sign-in asks for `max_age`,
//!   so the provider dates it (`auth_time`) and a fresh one counts for risky decisions. The
//!   `state` is stored hashed with the PKCE verifier, the nonce and the hash of a random cookie
//!   set in the browser that started it, and taken once; the callback refuses a `state` it does
//!   not hold (forged, replayed or older than 10 minutes), a browser without that cookie (login
//!   CSRF: someone else's callback URL), and an `iss` that is not the issuer (mix-up). Then the
//!   code is exchanged and the ID token checked (`oidc.rs`).
//! - **Sessions**: a 256-bit random id in the cookie `__Host-hitl_session` (`HttpOnly`, `Secure`,
//!   `SameSite=Lax`, `Path=/`; on plain-HTTP loopback `hitl_session` without `Secure`), only its
//!   SHA-256 in the database. A session ends after `session_idle` unused or `session_max` in all.
//! - **Forms**: every state-changing POST carries the session's CSRF token and comes from the
//!   public URL's origin (`Origin` header), or it is refused with 403.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use super::html;
use super::page::{web_of, Page};
use crate::server::app::App;
use crate::server::sessions::{Login, Session};
use crate::server::web_settings::Web;

/// The session cookie over HTTPS.
pub const SESSION_COOKIE: &str = "__Host-hitl_session";
/// The session cookie on plain-HTTP loopback (development): browsers refuse `__Host-` without
/// `Secure`.
const DEV_SESSION_COOKIE: &str = "hitl_session";
/// The cookie that binds a sign-in under way to the browser that started it.
const LOGIN_COOKIE: &str = "__Host-hitl_login";
const DEV_LOGIN_COOKIE: &str = "hitl_login";
/// A session is marked as used at most this often (ms), to keep page views from writing.
const TOUCH_EVERY_MS: i64 = 30_000;

fn cookie_name(web: &Web) -> &'static str {
    if web.secure {
        SESSION_COOKIE
    } else {
        DEV_SESSION_COOKIE
    }
}

fn login_cookie_name(web: &Web) -> &'static str {
    if web.secure {
        LOGIN_COOKIE
    } else {
        DEV_LOGIN_COOKIE
    }
}

/// A `Set-Cookie` value for `name` (empty `value` and no `max_age`: delete it).
fn set_cookie(web: &Web, name: &str, value: &str, max_age_s: i64) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{}",
        if web.secure { "; Secure" } else { "" }
    )
}

/// The value of cookie `name` in the request, if any.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// 32 random bytes as hex.
fn random_hex() -> Result<String, Page> {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).map_err(|_| {
        Page::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server could not sign you in",
            "The system's random source failed.",
        )
    })?;
    Ok(crate::hex::encode(&b))
}

/// The session this request carries, if it is still valid. An ended one is deleted.
pub async fn current(app: &App, web: &Web, headers: &HeaderMap) -> Result<Option<Session>, Page> {
    current_with(app, web, headers, true).await
}

/// [`current`]; with `touch` false the request does not count as use of the session (the
/// inbox's automatic refreshes, which would otherwise keep an unattended tab's session alive).
pub async fn current_with(
    app: &App,
    web: &Web,
    headers: &HeaderMap,
    touch: bool,
) -> Result<Option<Session>, Page> {
    let Some(id) = cookie(headers, cookie_name(web)) else {
        return Ok(None);
    };
    let hash = crate::hex::sha256(id.as_bytes());
    let Some(s) = app.store.session(&hash).await? else {
        return Ok(None);
    };
    let cfg = web.oidc.config();
    let now = app.clock.now_ms();
    if now - s.last_seen > ms(cfg.session_idle.0) || now - s.created_at > ms(cfg.session_max.0) {
        app.store.end_session(hash).await?;
        return Ok(None);
    }
    if touch && now - s.last_seen > TOUCH_EVERY_MS {
        app.store.touch_session(hash, now).await?;
    }
    Ok(Some(s))
}

/// The approver's session for a page at `here`: without one, a redirect to sign in that comes
/// back to `here`; signed in but outside the approver groups, 403.
pub async fn approver(
    app: &App,
    web: &Web,
    headers: &HeaderMap,
    here: &str,
) -> Result<Session, Page> {
    approver_with(app, web, headers, here, true).await
}

/// [`approver`], with [`current_with`]'s `touch`.
pub async fn approver_with(
    app: &App,
    web: &Web,
    headers: &HeaderMap,
    here: &str,
    touch: bool,
) -> Result<Session, Page> {
    let Some(s) = current_with(app, web, headers, touch).await? else {
        return Err(Page::Redirect(login_url(here, false)));
    };
    if !web.oidc.is_approver(&s.who.groups) {
        let message = format!(
            "You are signed in as {}, who is not in an approver group. Ask for access, or sign \
             out and sign in as someone else.",
            html::who(&s)
        );
        return Err(Page::Rendered(
            StatusCode::FORBIDDEN,
            html::message_page_for(Some(&s), "Not an approver", &message),
        ));
    }
    Ok(s)
}

/// Where to sign in, coming back to `here`; `fresh` asks the provider to authenticate again.
pub fn login_url(here: &str, fresh: bool) -> String {
    let mut q = form_urlencoded(&[("return_to", here)]);
    if fresh {
        q.push_str("&fresh=1");
    }
    format!("/ui/login?{q}")
}

fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    let mut u = reqwest::Url::parse("http://x/").expect("static URL");
    u.query_pairs_mut().extend_pairs(pairs);
    u.query().unwrap_or_default().to_string()
}

/// Checks that a state-changing form comes from this UI: the `Origin` header is the public
/// URL's, and the CSRF token is the session's.
///
/// Under `Referrer-Policy: no-referrer` a browser sends `Origin: null` with a form POST even to
/// its own origin (the Fetch standard ties the two), so `null` is accepted only together with
/// `Sec-Fetch-Site: same-origin`, which the browser sets itself and no page can forge.
pub fn check_form(web: &Web, headers: &HeaderMap, s: &Session, csrf: &str) -> Result<(), Page> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let ours = origin == Some(web.origin.as_str())
        || (origin == Some("null") && site == Some("same-origin"));
    if !ours {
        return Err(Page::forbidden(format!(
            "This form did not come from {} (its Origin is {}); nothing was done.",
            web.origin,
            origin.map_or("missing".into(), |o| format!("{o:?}"))
        )));
    }
    if !same(csrf.as_bytes(), s.csrf.as_bytes()) {
        return Err(Page::forbidden(
            "This form's security token is missing or stale (reload the page); nothing was done.",
        ));
    }
    Ok(())
}

/// Constant-time equality.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Only a local page may be returned to after sign-in (no open redirect).
fn safe_return(to: Option<&str>) -> String {
    match to {
        Some(t)
            if t.starts_with("/ui")
                && !t.contains("//")
                && !t.contains('\\')
                && t.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            t.into()
        }
        _ => "/ui".into(),
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
    fresh: Option<String>,
}

/// `GET /ui/login`: stores a sign-in under way and sends the browser to the provider.
pub async fn login(
    AxState(app): AxState<Arc<App>>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    // `max_age` on every sign-in: the provider must then say when the user authenticated
    // (`auth_time`; without it a sign-in never counts as recent for a risky decision). A fresh
    // one asks for 0 (authenticate again, now); any other for a session's longest life, which
    // only asks again when the provider's own sign-in is older than a session may live.
    let max_age = Some(if q.fresh.is_some() {
        Duration::ZERO
    } else {
        web.oidc.config().session_max.0
    });
    let (url, state, pending) = web.oidc.begin(max_age).await.map_err(unavailable)?;
    let browser = random_hex()?;
    let login = Login {
        browser_sha256: crate::hex::sha256(browser.as_bytes()),
        nonce: pending.nonce,
        pkce_verifier: pending.pkce_verifier,
        return_to: safe_return(q.return_to.as_deref()),
        max_age: max_age.map(|d| i64::try_from(d.as_secs()).unwrap_or(0)),
        created_at: app.clock.now_ms(),
    };
    if !app
        .store
        .put_login(crate::hex::sha256(state.as_bytes()), login)
        .await?
    {
        return Err(Page::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins under way",
            "This server has too many unfinished sign-ins right now. Try again in a few minutes.",
        ));
    }
    let bind = set_cookie(
        web,
        login_cookie_name(web),
        &browser,
        crate::server::sessions::LOGIN_TTL_MS / 1000,
    );
    Ok(([(header::SET_COOKIE, bind)], Page::Redirect(url)).into_response())
}

fn unavailable(e: String) -> Page {
    Page::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "The identity provider cannot be reached",
        format!("{e}. Try again in a moment."),
    )
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/callback`: the provider sends the browser back with a code.
pub async fn callback(
    AxState(app): AxState<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    let state = q.state.unwrap_or_default();
    let login = app
        .store
        .take_login(crate::hex::sha256(state.as_bytes()), app.clock.now_ms())
        .await?
        .ok_or_else(|| {
            Page::bad_request(
                "This sign-in is not one this server started, was already used, or is older \
                 than 10 minutes. Sign in again.",
            )
        })?;
    // The browser that comes back must be the one that started the sign-in: otherwise a
    // callback URL of someone else's sign-in would sign this browser in as them.
    let bound = cookie(&headers, login_cookie_name(web))
        .is_some_and(|b| crate::hex::sha256(b.as_bytes()) == login.browser_sha256);
    if !bound {
        return Err(Page::bad_request(
            "This sign-in was started in another browser (or its cookie is gone). Sign in again \
             from here.",
        ));
    }
    // Only now, for a sign-in this browser started, is the provider's own error shown (made
    // visible and cut short: it arrives in the URL, which anyone can write).
    if let Some(e) = q.error {
        let cut = |t: &str| html::shown(&t.chars().take(200).collect::<String>());
        return Err(Page::bad_request(format!(
            "The identity provider did not sign you in: {}{}",
            cut(&e),
            q.error_description
                .map(|d| format!(" ({})", cut(&d)))
                .unwrap_or_default()
        )));
    }
    if let Some(iss) = q.iss.as_deref() {
        if iss != web.oidc.config().issuer {
            return Err(Page::bad_request(format!(
                "The answer came from {iss:?}, not from the configured identity provider."
            )));
        }
    }
    let code = q
        .code
        .ok_or_else(|| Page::bad_request("The identity provider sent no code."))?;
    let pending = crate::server::oidc::Pending {
        nonce: login.nonce,
        pkce_verifier: login.pkce_verifier,
        max_age: login
            .max_age
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0))),
    };
    let who = web
        .oidc
        .finish(&code, &pending)
        .await
        .map_err(|e| Page::forbidden(format!("Sign-in refused: {e}.")))?;
    // Signing in again ends the session this browser had.
    if let Some(old) = cookie(&headers, cookie_name(web)) {
        app.store
            .end_session(crate::hex::sha256(old.as_bytes()))
            .await?;
    }
    let id = random_hex()?;
    let now = app.clock.now_ms();
    let session = Session {
        id_sha256: crate::hex::sha256(id.as_bytes()),
        who,
        created_at: now,
        last_seen: now,
        csrf: random_hex()?,
    };
    let max = ms(web.oidc.config().session_max.0);
    app.store.put_session(session, now - max).await?;
    let mut resp = Page::Redirect(login.return_to).into_response();
    for c in [
        set_cookie(web, cookie_name(web), &id, max / 1000),
        set_cookie(web, login_cookie_name(web), "", 0),
    ] {
        if let Ok(v) = axum::http::HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/logout`: ends the session here, then at the provider if it offers that.
pub async fn logout(
    AxState(app): AxState<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    let Some(s) = current(&app, web, &headers).await? else {
        return Ok(Page::Redirect("/ui/signed-out".into()).into_response());
    };
    check_form(web, &headers, &s, &f.csrf)?;
    app.store.end_session(s.id_sha256).await?;
    let back = format!("{}/ui/signed-out", web.public_url);
    let to = web
        .oidc
        .end_session_url(&back)
        .await
        .unwrap_or_else(|| "/ui/signed-out".into());
    let clear = set_cookie(web, cookie_name(web), "", 0);
    Ok(([(header::SET_COOKIE, clear)], Page::Redirect(to)).into_response())
}

/// `GET /ui/signed-out`
pub async fn signed_out() -> Response {
    html::message_page(
        "Signed out",
        "Your session has ended. Sign in again to decide requests.",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::safe_return;

    #[test]
    fn only_a_plain_local_page_is_returned_to() {
        for (to, want) in [
            (Some("/ui/requests/abc"), "/ui/requests/abc"),
            (
                Some("/ui/history?state=approved&page=2"),
                "/ui/history?state=approved&page=2",
            ),
            (None, "/ui"),
            (Some("https://evil.example/ui"), "/ui"),
            (Some("//evil.example/ui"), "/ui"),
            (Some("/ui//evil.example"), "/ui"),
            (Some("/ui\\evil"), "/ui"),
            (Some("/ui\r\nSet-Cookie: x=y"), "/ui"),
            (Some("/ui/\u{202e}"), "/ui"),
            (Some("/api/v1/requests"), "/ui"),
        ] {
            assert_eq!(safe_return(to), want, "{to:?}");
        }
    }
}
