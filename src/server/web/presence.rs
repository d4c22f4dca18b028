//! Who has a request's page open right now: each page's event stream (`events.rs`, opened with
//! `?watch=ID`) registers its session for that request while it is open, and every change is
//! announced, so the other pages on the request can say "also open now by …".
//!
//! It lives in this process's memory: with several replicas behind a load balancer, a page sees
//! the people whose streams reach the same replica (docs/architecture.md). Nothing is decided
//! from it; it is a courtesy to the approvers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// One open page of a request.
struct Viewer {
    token: u64,
    /// The SHA-256 of the session's id: one person's other tabs are not "someone else".
    session: String,
    name: String,
}

/// The open request pages of this process.
pub struct Presence {
    pages: Mutex<HashMap<String, Vec<Viewer>>>,
    next: AtomicU64,
    /// The id of each request whose viewers changed.
    changed: broadcast::Sender<String>,
}

impl Default for Presence {
    fn default() -> Presence {
        Presence {
            pages: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            changed: broadcast::channel(256).0,
        }
    }
}

/// A page registered as open; dropping it (the stream ended) unregisters it.
pub struct Watch {
    presence: Arc<Presence>,
    id: String,
    token: u64,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut pages = self
            .presence
            .pages
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(list) = pages.get_mut(&self.id) {
            list.retain(|v| v.token != self.token);
            if list.is_empty() {
                pages.remove(&self.id);
            }
        }
        drop(pages);
        let _ = self.presence.changed.send(self.id.clone());
    }
}

impl Presence {
    /// Registers a page of request `id` open in `session` by the person called `name`.
    pub fn watch(self: &Arc<Self>, id: &str, session: &str, name: &str) -> Watch {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        self.pages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_default()
            .push(Viewer {
                token,
                session: session.to_string(),
                name: name.to_string(),
            });
        let _ = self.changed.send(id.to_string());
        Watch {
            presence: self.clone(),
            id: id.to_string(),
            token,
        }
    }

    /// The names of the people who have request `id` open, each once, but for the session
    /// `session` and the person called `name` (their other tabs and devices).
    pub fn others(&self, id: &str, session: &str, name: &str) -> Vec<String> {
        let pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = pages
            .get(id)
            .into_iter()
            .flatten()
            .filter(|v| v.session != session && v.name != name)
            .map(|v| v.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The ids of requests whose viewers change, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn others_are_seen_while_their_pages_are_open() {
        let p = Arc::new(Presence::default());
        let mut rx = p.subscribe();
        let alice = p.watch("r1", "s-alice", "alice@example.com");
        let alice_again = p.watch("r1", "s-alice", "alice@example.com");
        let carol = p.watch("r1", "s-carol", "carol@example.com");
        let phone = p.watch("r1", "s-carol-phone", "carol@example.com");
        let alice_sees = p.others("r1", "s-alice", "alice@example.com");
        assert_eq!(alice_sees, ["carol@example.com"]);
        let carol_sees = p.others("r1", "s-carol", "carol@example.com");
        assert_eq!(carol_sees, ["alice@example.com"]);
        assert!(p.others("r2", "s-carol", "carol@example.com").is_empty());
        drop((carol, phone));
        assert!(p.others("r1", "s-alice", "alice@example.com").is_empty());
        drop((alice, alice_again));
        assert!(p.pages.lock().unwrap().is_empty());
        assert_eq!(rx.try_recv().unwrap(), "r1");
    }
}
