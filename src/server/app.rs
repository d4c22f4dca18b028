//! The shared state of a running server ([`App`]), the per-request wake-up of waiting clients
//! ([`Waiters`]) and the long-polls each agent holds ([`Held`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{watch, Notify};

use super::live::Live;
use super::metrics::Metrics;
use super::store::Store;
use crate::policy::Policy;
use crate::signing::Keys;

/// How the server loads its policy again (`hitl-gate reload`, SIGHUP): the policy and where it
/// came from, or why it cannot be loaded.
pub type Loader = Arc<dyn Fn() -> Result<(Policy, String), String> + Send + Sync>;

/// Shared state of a running server.
pub struct App {
    pub(crate) store: Store,
    /// The policy and what is derived from it; replaced whole by a reload ([`App::live`]).
    pub(crate) live: RwLock<Arc<Live>>,
    /// How to load the policy again; `None` when the server was given a policy, not a file.
    pub(crate) loader: Option<Loader>,
    /// Wakes the notification worker: a transaction queued something, or the sinks changed.
    pub(crate) notify_wake: Arc<Notify>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) waiters: Waiters,
    pub(crate) metrics: Metrics,
    pub(crate) reaper: Notify,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Largest accepted request body, bytes.
    pub(crate) body_limit: usize,
    /// Every request created or ended, for the web UI's live inbox (server-sent events).
    pub(crate) events: tokio::sync::broadcast::Sender<Event>,
    /// The web UI, when `[serve.oidc]` is configured.
    pub(crate) web: Option<super::web_settings::Web>,
    /// One audit export streams at a time (each holds a read connection per page).
    pub(crate) exports: Arc<tokio::sync::Semaphore>,
    /// The time every decision is made at (`clock.rs`).
    pub(crate) clock: super::clock::Clock,
}

impl App {
    /// The policy in force and what is derived from it: one whole policy, however many reloads
    /// happen while the caller holds it.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().expect("live lock").clone()
    }

    /// Puts `live` in force (every later [`App::live`] sees it).
    pub fn replace_live(&self, live: Live) {
        let live = Arc::new(live);
        self.store
            .set_outbox(live.outbox(self.notify_wake.clone(), self.web.is_some()));
        *self.live.write().expect("live lock") = live;
        self.notify_wake.notify_one();
    }
}

/// A change the live inbox shows: a request appeared or left the pending state.
#[derive(Debug, Clone)]
pub enum Event {
    Created(String),
    Ended(String),
}

/// Per-request wake-up: a waiter subscribes, a decision notifies every subscriber at once. Also
/// counts the long-polls each agent holds, so one agent cannot take every connection
/// (`[serve] max_waits_per_agent`).
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<String, Arc<Notify>>>,
    /// Long-polls held, by agent name.
    held: Mutex<HashMap<String, usize>>,
}

/// One long-poll of an agent, counted until dropped (also when the client goes away and its
/// handler is dropped mid-wait).
pub struct Held<'a> {
    waiters: &'a Waiters,
    agent: String,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut held = self.waiters.held.lock().expect("held lock");
        if let Some(n) = held.get_mut(&self.agent) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.agent);
            }
        }
    }
}

impl Waiters {
    pub fn subscribe(&self, id: &str) -> Arc<Notify> {
        let mut map = self.map.lock().expect("waiters lock");
        map.entry(id.to_string()).or_default().clone()
    }

    pub fn wake(&self, id: &str) {
        if let Some(n) = self.map.lock().expect("waiters lock").remove(id) {
            n.notify_waiters();
        }
    }

    /// Wakes every waiter (they read their request again).
    pub fn wake_all(&self) {
        let all: Vec<_> = self.map.lock().expect("waiters lock").drain().collect();
        for (_, n) in all {
            n.notify_waiters();
        }
    }

    /// Counts one more long-poll of `agent`; `None` when it already holds `cap`.
    pub fn hold(&self, agent: &str, cap: usize) -> Option<Held<'_>> {
        let mut held = self.held.lock().expect("held lock");
        let n = held.entry(agent.to_string()).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Held {
            waiters: self,
            agent: agent.to_string(),
        })
    }

    /// Drops the entry when nobody else holds it (a waiter that gave up).
    pub fn release(&self, id: &str, mine: Arc<Notify>) {
        let mut map = self.map.lock().expect("waiters lock");
        if Arc::strong_count(&mine) == 2 {
            map.remove(id);
        }
    }
}
