//! The server's log: `tracing` events on stderr, one line per event, as text (the default) or
//! JSON objects (`--log-format json`, `[serve] log_format = "json"`), filtered by
//! `HITL_GATE_LOG` (an `EnvFilter`: `info`, `hitl_gate=debug,sqlx=warn`, …; default
//! `warn,hitl_gate=info`).
//!
//! The events are logged where they happen (a request created in `intake.rs`, approvals and
//! decisions in `decide.rs`, escalations and failed deliveries in `notify.rs`, the reaper's
//! lock in `replicas.rs`, reloads in `reload.rs`, the writer's reconnections in `writer.rs`).
//! This file adds one line per refused or failed answer ([`answers`]): every 401 and 403
//! with its reason (rate-limited: at most [`REFUSALS_PER_MINUTE`] a minute, the next line
//! counting those left out), and every 5xx with its cause. A line holds ids, names, rules,
//! outcomes and reasons: never a token, a secret, a query string (it can carry an OIDC code)
//! or diff text.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::auth::LocalPeer;
use super::error::Cause;
use crate::policy::schema::LogFormat;

/// The variable that filters the log.
pub const FILTER_VAR: &str = "HITL_GATE_LOG";
/// The filter without `HITL_GATE_LOG`: the server's own events, and other crates' warnings.
const DEFAULT_FILTER: &str = "warn,hitl_gate=info";

/// Starts the log (once per process): stderr, in `format`, filtered by `HITL_GATE_LOG`.
pub fn init(format: LogFormat) -> Result<(), String> {
    let filter = match std::env::var(FILTER_VAR) {
        Ok(v) => tracing_subscriber::EnvFilter::try_new(&v)
            .map_err(|e| format!("{FILTER_VAR}={v:?}: {e}"))?,
        Err(_) => tracing_subscriber::EnvFilter::new(DEFAULT_FILTER),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let done = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    done.map_err(|e| format!("cannot start the log: {e}"))
}

/// The most 401/403 lines a minute; the rest are counted and the next line logged says how
/// many were left out.
pub const REFUSALS_PER_MINUTE: u32 = 20;

/// Logs a line for each refused (401, 403) or failed (5xx) answer. The health probes log
/// only when readiness changes (`routes.rs`).
pub async fn answers(req: Request, next: Next) -> Response {
    // Kept without formatting anything: most answers are not logged.
    let method = req.method().clone();
    let uri = req.uri().clone();
    let tcp = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let local = req
        .extensions()
        .get::<ConnectInfo<LocalPeer>>()
        .map(|c| c.0 .0.clone());
    let r = next.run(req).await;
    let status = r.status();
    let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
    // The path only: a query string can carry an OIDC code or state.
    let path = uri.path();
    if !(refused || status.is_server_error()) || path == "/readyz" || path == "/healthz" {
        return r;
    }
    let peer = match (tcp, local) {
        (_, Some(who)) => format!(
            "admin socket ({})",
            who.as_deref().unwrap_or("unknown user")
        ),
        (Some(addr), None) => addr.to_string(),
        (None, None) => "-".into(),
    };
    let cause = r.extensions().get::<Cause>();
    // A server stopping answers every waiting client 503 `shutting_down` (they retry): one line
    // at shutdown (`mod.rs`) says so, not one per client.
    if cause.is_some_and(|c| c.code == "shutting_down") {
        return r;
    }
    let cause = cause.map_or_else(
        || "-".into(),
        |c| one_line(&format!("{}: {}", c.code, c.message)),
    );
    if refused {
        if let Some(left_out) = admit_refusal() {
            tracing::warn!(
                status = status.as_u16(),
                %method,
                %path,
                %peer,
                reason = %cause,
                left_out,
                "request refused"
            );
        }
    } else {
        tracing::error!(
            status = status.as_u16(),
            %method,
            %path,
            %peer,
            %cause,
            "request failed"
        );
    }
    r
}

/// `text` on one line: every run of white space (newlines included: a TOML error spans
/// several) becomes one space, so an event is always one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The refusals logged in the current minute: when it began, how many lines, how many left
/// out.
static REFUSALS: Mutex<Option<(Instant, u32, u64)>> = Mutex::new(None);

/// Whether one more refusal may be logged now; if so, how many were left out before it.
fn admit_refusal() -> Option<u64> {
    let mut w = REFUSALS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    admit(&mut w, Instant::now())
}

fn admit(w: &mut Option<(Instant, u32, u64)>, now: Instant) -> Option<u64> {
    let (start, lines, left_out) = w.get_or_insert((now, 0, 0));
    if now.duration_since(*start) >= Duration::from_secs(60) {
        *start = now;
        *lines = 0;
    }
    if *lines >= REFUSALS_PER_MINUTE {
        *left_out += 1;
        return None;
    }
    *lines += 1;
    Some(std::mem::take(left_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_capped_per_minute_and_the_next_line_counts_the_rest() {
        let mut w = None;
        let t0 = Instant::now();
        for _ in 0..REFUSALS_PER_MINUTE {
            assert_eq!(admit(&mut w, t0), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(admit(&mut w, t0 + Duration::from_secs(30)), None);
        }
        assert_eq!(admit(&mut w, t0 + Duration::from_secs(61)), Some(5));
        assert_eq!(admit(&mut w, t0 + Duration::from_secs(62)), Some(0));
    }
}
