//! The shared state of a running server ([`App`]) and the per-request wake-up of waiting
//! clients ([`Waiters`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};

use super::metrics::Metrics;
use super::store::Store;
use crate::policy::Policy;
use crate::signing::Keys;

/// An authenticated agent.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub on_behalf_of: Option<String>,
}

/// Shared state of a running server.
pub struct App {
    pub(crate) store: Store,
    pub(crate) policy: Policy,
    pub(crate) keys: Arc<Keys>,
    /// Agents by the SHA-256 of their token.
    pub(crate) agents: HashMap<String, Agent>,
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
}

/// A change the live inbox shows: a request appeared or left the pending state.
#[derive(Debug, Clone)]
pub enum Event {
    Created(String),
    Ended(String),
}

/// Per-request wake-up: a waiter subscribes, a decision notifies every subscriber at once.
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<String, Arc<Notify>>>,
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

    /// Drops the entry when nobody else holds it (a waiter that gave up).
    pub fn release(&self, id: &str, mine: Arc<Notify>) {
        let mut map = self.map.lock().expect("waiters lock");
        if Arc::strong_count(&mine) == 2 {
            map.remove(id);
        }
    }
}
