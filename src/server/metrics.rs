//! `GET /metrics` in the Prometheus text format: pending requests, decisions by outcome, the
//! time-to-decision histogram, the number of waiting clients, the TCP connections refused
//! over the cap and the long-polls refused over an agent's cap; on PostgreSQL, the replica's id, its listener's reconnects and whether it runs
//! the reaper.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::api::State;

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 10] = [
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];
const OUTCOMES: [State; 4] = [
    State::Approved,
    State::Rejected,
    State::Expired,
    State::Cancelled,
];

#[derive(Default)]
pub struct Metrics {
    decisions: [AtomicU64; 4],
    buckets: [AtomicU64; 10],
    count: AtomicU64,
    sum_ms: AtomicU64,
    pub waiters: AtomicI64,
    /// TCP connections closed at once because `[serve] max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Long-polls answered 429 because their agent held `[serve] max_waits_per_agent`.
    pub long_polls_refused: AtomicU64,
    /// Requests approved by an `auto_approve` rule.
    auto_approved: AtomicU64,
    /// Notification deliveries by sink and outcome (`delivered`, `failed`).
    deliveries: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), u64>>,
    /// This replica's id (host and process), on PostgreSQL.
    pub replica: std::sync::OnceLock<String>,
    /// Times the connection listening for other replicas' changes was lost.
    pub listener_reconnects: AtomicU64,
    /// Whether this replica holds the reaper's lock.
    pub reaper_leader: std::sync::atomic::AtomicBool,
    /// Whether `/readyz` last answered "not ready" (its log line is written when this changes).
    pub unready: std::sync::atomic::AtomicBool,
}

impl Metrics {
    pub fn decided(&self, to: State, took_ms: i64) {
        if let Some(i) = OUTCOMES.iter().position(|s| *s == to) {
            self.decisions[i].fetch_add(1, Relaxed);
        }
        let secs = took_ms.max(0) as f64 / 1000.0;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ms
            .fetch_add(u64::try_from(took_ms.max(0)).unwrap_or(0), Relaxed);
    }

    /// One more request approved by an `auto_approve` rule.
    pub fn auto_approved(&self) {
        self.auto_approved.fetch_add(1, Relaxed);
    }

    /// One delivery attempt to `sink`.
    pub fn delivery(&self, sink: &str, ok: bool) {
        let outcome = if ok { "delivered" } else { "failed" };
        let mut d = self
            .deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *d.entry((sink.to_string(), outcome)).or_default() += 1;
    }

    /// The text of `/metrics`: `pending` requests, and the outbox's undelivered rows and the
    /// age of the oldest (seconds).
    pub fn render(&self, pending: i64, outbox: (i64, f64)) -> String {
        let mut s = String::new();
        s.push_str(
            "# HELP hitl_gate_connections_refused_total TCP connections closed at once over the cap.\n",
        );
        s.push_str("# TYPE hitl_gate_connections_refused_total counter\n");
        s.push_str(&format!(
            "hitl_gate_connections_refused_total {}\n",
            self.connections_refused.load(Relaxed)
        ));
        s.push_str(
            "# HELP hitl_gate_long_polls_refused_total Long-polls answered 429 over an agent's cap.\n",
        );
        s.push_str("# TYPE hitl_gate_long_polls_refused_total counter\n");
        s.push_str(&format!(
            "hitl_gate_long_polls_refused_total {}\n",
            self.long_polls_refused.load(Relaxed)
        ));
        s.push_str("# HELP hitl_gate_pending_requests Requests waiting for a decision.\n");
        s.push_str("# TYPE hitl_gate_pending_requests gauge\n");
        s.push_str(&format!("hitl_gate_pending_requests {pending}\n"));
        s.push_str(
            "# HELP hitl_gate_decisions_total Terminal decisions since start, by outcome.\n",
        );
        s.push_str("# TYPE hitl_gate_decisions_total counter\n");
        for (i, o) in OUTCOMES.iter().enumerate() {
            s.push_str(&format!(
                "hitl_gate_decisions_total{{outcome=\"{}\"}} {}\n",
                o.as_str(),
                self.decisions[i].load(Relaxed)
            ));
        }
        s.push_str("# HELP hitl_gate_time_to_decision_seconds From request to decision.\n");
        s.push_str("# TYPE hitl_gate_time_to_decision_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            s.push_str(&format!(
                "hitl_gate_time_to_decision_seconds_bucket{{le=\"{b}\"}} {}\n",
                self.buckets[i].load(Relaxed)
            ));
        }
        let count = self.count.load(Relaxed);
        s.push_str(&format!(
            "hitl_gate_time_to_decision_seconds_bucket{{le=\"+Inf\"}} {count}\n"
        ));
        s.push_str(&format!(
            "hitl_gate_time_to_decision_seconds_sum {}\n",
            self.sum_ms.load(Relaxed) as f64 / 1000.0
        ));
        s.push_str(&format!(
            "hitl_gate_time_to_decision_seconds_count {count}\n"
        ));
        s.push_str(
            "# HELP hitl_gate_auto_approvals_total Requests approved by an auto_approve rule.\n",
        );
        s.push_str("# TYPE hitl_gate_auto_approvals_total counter\n");
        s.push_str(&format!(
            "hitl_gate_auto_approvals_total {}\n",
            self.auto_approved.load(Relaxed)
        ));
        s.push_str(
            "# HELP hitl_gate_notify_deliveries_total Notification delivery attempts, by sink and outcome.\n",
        );
        s.push_str("# TYPE hitl_gate_notify_deliveries_total counter\n");
        for ((sink, outcome), n) in self
            .deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let sink = sink.replace(['\\', '"', '\n'], "_");
            s.push_str(&format!(
                "hitl_gate_notify_deliveries_total{{sink=\"{sink}\",outcome=\"{outcome}\"}} {n}\n"
            ));
        }
        s.push_str("# HELP hitl_gate_outbox_depth Notifications not yet delivered.\n");
        s.push_str("# TYPE hitl_gate_outbox_depth gauge\n");
        s.push_str(&format!("hitl_gate_outbox_depth {}\n", outbox.0));
        s.push_str(
            "# HELP hitl_gate_outbox_oldest_seconds Age of the oldest undelivered notification.\n",
        );
        s.push_str("# TYPE hitl_gate_outbox_oldest_seconds gauge\n");
        s.push_str(&format!("hitl_gate_outbox_oldest_seconds {}\n", outbox.1));
        s.push_str("# HELP hitl_gate_waiters Clients waiting in a long-poll.\n");
        s.push_str("# TYPE hitl_gate_waiters gauge\n");
        s.push_str(&format!(
            "hitl_gate_waiters {}\n",
            self.waiters.load(Relaxed)
        ));
        if let Some(r) = self.replica.get() {
            s.push_str(&format!(
                "# HELP hitl_gate_replica_info This replica (PostgreSQL).\n\
                 # TYPE hitl_gate_replica_info gauge\n\
                 hitl_gate_replica_info{{replica=\"{}\"}} 1\n\
                 # HELP hitl_gate_listener_reconnects_total Lost connections listening for other \
                 replicas' changes.\n\
                 # TYPE hitl_gate_listener_reconnects_total counter\n\
                 hitl_gate_listener_reconnects_total {}\n\
                 # HELP hitl_gate_reaper_leader Whether this replica runs the reaper.\n\
                 # TYPE hitl_gate_reaper_leader gauge\n\
                 hitl_gate_reaper_leader {}\n",
                r.replace(['\\', '"', '\n'], "_"),
                self.listener_reconnects.load(Relaxed),
                u8::from(self.reaper_leader.load(Relaxed))
            ));
        }
        s
    }
}
