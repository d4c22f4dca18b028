//! Several replicas of the server on one PostgreSQL database.
//!
//! - **Wake-up across replicas.** Every audited change (a create, an approval, a decision, an
//!   outcome) sends `NOTIFY hitl_gate, '<kind> <request id>'` in its own transaction
//!   (`audit_log.rs`), so it is delivered when, and only if, the change commits. Each replica
//!   LISTENs ([`listener`]) and wakes its own long-polls and live inboxes. When the listening
//!   connection is lost, it is made again, and once it listens every waiter of the replica is
//!   woken: each reads its request's state again, so no decision made meanwhile is missed.
//! - **One reaper at a time** ([`Leadership`]): the replica holding a session advisory lock on
//!   its own connection expires overdue requests; the others try to take the lock every second.
//!   When the holder dies, its connection closes, the lock is free, and another replica takes
//!   over within about a second. (Two reapers would still be safe: an expiry is a conditional
//!   update like any decision.)

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgListener};
use sqlx::Connection;

use super::app::{App, Event};

use super::audit_log::CHANNEL;
/// The advisory lock the reaper's holder keeps.
const REAPER_LOCK: i64 = 0x6869_746c_0003;

/// LISTENs until the process ends; wakes this replica's waiters for each change.
pub async fn listener(app: Arc<App>, url: String) {
    let mut listening: Option<PgListener> = None;
    loop {
        let Some(l) = listening.as_mut() else {
            let l = match PgListener::connect(&url).await {
                Ok(mut l) => l.listen(CHANNEL).await.map(|()| l),
                Err(e) => Err(e),
            };
            match l {
                Ok(l) => {
                    listening = Some(l);
                    // Whatever happened while nobody listened: every waiter reads again.
                    app.waiters.wake_all();
                    app.reaper.notify_one();
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
            continue;
        };
        match l.try_recv().await {
            Ok(Some(n)) => changed(&app, n.payload()),
            // The connection was lost. It is made again above, and only once it LISTENs again
            // is every waiter woken: a change committed before that is read, one after it is
            // heard.
            Ok(None) => {
                app.metrics.listener_reconnects.fetch_add(1, Relaxed);
                listening = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "listening for other replicas' changes failed; listening again");
                app.metrics.listener_reconnects.fetch_add(1, Relaxed);
                listening = None;
            }
        }
    }
}

/// A change another replica (or this one) committed: `<audit kind> <request id>`.
fn changed(app: &App, payload: &str) {
    let Some((kind, id)) = payload.split_once(' ') else {
        return;
    };
    app.waiters.wake(id);
    match kind {
        "request_created" => {
            let _ = app.events.send(Event::Created(id.to_string()));
            app.reaper.notify_one();
        }
        "approved" | "rejected" | "expired" | "cancelled" => {
            let _ = app.events.send(Event::Ended(id.to_string()));
        }
        _ => {}
    }
}

/// The reaper's lock, on a connection of its own.
pub struct Leadership {
    url: String,
    held: Option<PgConnection>,
}

impl Leadership {
    pub fn new(url: String) -> Leadership {
        Leadership { url, held: None }
    }

    /// Whether this replica holds the reaper's lock now (taking it when it is free). A lost
    /// connection loses the lock.
    pub async fn check(&mut self, app: &App) -> bool {
        if let Some(c) = self.held.as_mut() {
            if c.ping().await.is_ok() {
                return true;
            }
            self.held = None;
        }
        if let Ok(mut c) = PgConnection::connect(&self.url).await {
            let got: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(REAPER_LOCK)
                .fetch_one(&mut c)
                .await;
            if got.unwrap_or(false) {
                self.held = Some(c);
            }
        }
        let leader = self.held.is_some();
        if app.metrics.reaper_leader.swap(leader, Relaxed) != leader {
            if leader {
                tracing::info!("this replica took the reaper's lock: it expires requests and delivers notifications");
            } else {
                tracing::warn!("this replica lost the reaper's lock (its connection was lost)");
            }
        }
        leader
    }
}
