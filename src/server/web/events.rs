//! `GET /ui/events`: the live pages' server-sent events. Every stream names each request
//! created or ended (`created`, `ended`; a partial approval counts as created: the request is
//! back in the queues), fed by the same wake-up that answers waiting shims. A request page's
//! stream (`?watch=ID`) also registers the page as open (`presence.rs`) and carries `presence`
//! events: the names of the others who have that request open, as a JSON array.
//!
//! A stream checks now and then that the session that opened it is still valid and ends when
//! it is not (the page then reloads, which signs in again); a refresh from the stream does not
//! count as use of the session.

use std::sync::Arc;

use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Extension;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast::{error::RecvError, Receiver};

use super::auth;
use super::html::who;
use super::page::{web_of, Page};
use super::pages::request_id;
use super::presence::{Presence, Watch};
use crate::server::app::{App, Event};

/// How often an open event stream checks that its session is still valid.
const SESSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Deserialize)]
pub struct EventsQuery {
    /// The request whose page opened the stream.
    watch: Option<String>,
}

/// The stream's state: the events, shutdown, the periodic session check and, for a request
/// page, its registration and the presence changes.
struct Live {
    rx: Receiver<Event>,
    stop: tokio::sync::watch::Receiver<bool>,
    recheck: tokio::time::Interval,
    app: Arc<App>,
    headers: HeaderMap,
    watching: Option<Watching>,
}

/// A request page's registration.
struct Watching {
    id: String,
    session: String,
    name: String,
    presence: Arc<Presence>,
    changes: Receiver<String>,
    /// The last list sent, so an unchanged one is not sent again.
    sent: Option<Vec<String>>,
    _watch: Watch,
}

enum Step {
    Event(Result<Event, RecvError>),
    /// The viewers of some request changed (the watched one, maybe).
    Presence,
    Stop,
    Recheck,
}

/// The approver's session for a page's background call (its rows' fetch, its event stream):
/// the session is not touched, and without one the answer is 401 with `signed_out`, since the
/// page's script, not the person, would follow a redirect.
pub(super) async fn approver_in_background(
    app: &App,
    web: &crate::server::web_settings::Web,
    headers: &HeaderMap,
    signed_out: &str,
) -> Result<crate::server::sessions::Session, Page> {
    match auth::approver_with(app, web, headers, "/ui", false).await {
        Err(Page::Redirect(_)) => Err(Page::new(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            signed_out,
        )),
        r => r,
    }
}

/// `GET /ui/events[?watch=ID]`
pub async fn events(
    AxState(app): AxState<Arc<App>>,
    Extension(presence): Extension<Arc<Presence>>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>>, Page> {
    let web = web_of(&app)?;
    let s = approver_in_background(&app, web, &headers, "Sign in.").await?;
    let watching = match q.watch {
        Some(id) => {
            request_id(&id)?;
            // Subscribed before registering, so the first list includes this page's own change.
            let changes = presence.subscribe();
            let name = who(&s);
            let watch = presence.watch(&id, &s.id_sha256, &name);
            Some(Watching {
                id,
                session: s.id_sha256.clone(),
                name,
                presence,
                changes,
                sent: None,
                _watch: watch,
            })
        }
        None => None,
    };
    let mut recheck = tokio::time::interval(SESSION_RECHECK);
    recheck.reset();
    let live = Live {
        rx: app.events.subscribe(),
        stop: app.shutdown.clone(),
        recheck,
        app: app.clone(),
        headers,
        watching,
    };
    Ok(Sse::new(stream::unfold(live, next)).keep_alive(KeepAlive::default()))
}

/// The stream's next event, or its end.
async fn next(mut l: Live) -> Option<(Result<SseEvent, std::convert::Infallible>, Live)> {
    loop {
        if let Some(event) = l.watching.as_mut().and_then(presence_event) {
            return Some((Ok(event), l));
        }
        let watching = &mut l.watching;
        let presence = async {
            match watching.as_mut() {
                // Lagging behind is no loss: the next turn compares the whole list.
                Some(w) => w.changes.recv().await.map(drop),
                None => std::future::pending().await,
            }
        };
        let step = tokio::select! {
            r = l.rx.recv() => Step::Event(r),
            _ = presence => Step::Presence,
            _ = l.stop.wait_for(|s| *s) => Step::Stop,
            _ = l.recheck.tick() => Step::Recheck,
        };
        let event = match step {
            Step::Event(Ok(Event::Created(id))) => SseEvent::default().event("created").data(id),
            Step::Event(Ok(Event::Ended(id))) => SseEvent::default().event("ended").data(id),
            // Missed some: a refresh shows the current state anyway.
            Step::Event(Err(RecvError::Lagged(_))) => SseEvent::default().event("ended").data(""),
            Step::Event(Err(RecvError::Closed)) | Step::Stop => return None,
            // The next turn sends the list if it changed for this page.
            Step::Presence => continue,
            Step::Recheck => {
                let web = l.app.web.as_ref()?;
                match approver_in_background(&l.app, web, &l.headers, "Sign in.").await {
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        };
        return Some((Ok(event), l));
    }
}

/// A `presence` event when the others on the watched request differ from the last list sent.
fn presence_event(w: &mut Watching) -> Option<SseEvent> {
    let now = w.presence.others(&w.id, &w.session, &w.name);
    if w.sent.as_ref() == Some(&now) {
        return None;
    }
    let data = serde_json::to_string(&now).unwrap_or_else(|_| "[]".into());
    w.sent = Some(now);
    Some(SseEvent::default().event("presence").data(data))
}
