//! Delivering notifications: the worker that takes due rows from the outbox (`outbox_store.rs`)
//! and POSTs them to their sinks, at least once, with a stable idempotency key; a failure is
//! retried with exponential backoff and jitter (1 s doubling to at most 5 minutes), across
//! restarts, since the row stays in the database until it is delivered. It also queues the
//! escalation of requests still pending after `[serve] escalate_after`.
//!
//! - A **webhook** gets the payload as JSON with `X-Hitl-Event`, `X-Hitl-Idempotency-Key`,
//!   `X-Hitl-Timestamp` (unix seconds) and `X-Hitl-Signature: v1=<hex HMAC-SHA256 over
//!   "<timestamp>.<body>">` with the sink's shared secret.
//! - **Slack** gets a Block Kit message (`slack.rs`) at its incoming-webhook URL.
//!
//! Chat is a pointer to the request's page, never a way to decide.

use std::sync::Arc;
use std::time::Duration;

use super::app::App;
use super::outbox_store::Due;
use super::sinks::{Loaded, Target};

/// The longest wait between two retries.
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;

/// The wait before retry number `attempts` (1, 2, …): 1 s doubling, at most 5 minutes, each
/// cut by a random share of up to half (jitter, so receivers coming back are not stampeded).
fn backoff_ms(attempts: i64) -> i64 {
    let base = 1000_i64
        .saturating_mul(1_i64 << attempts.clamp(1, 20).saturating_sub(1))
        .min(MAX_BACKOFF_MS);
    let mut b = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    let r = i64::from(u16::from_le_bytes(b));
    base - base / 2 * r / 65_535
}

/// The signature header's value for `body` sent at `timestamp` (unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
    format!("v1={}", crate::hex::encode(tag.as_ref()))
}

/// Delivers one row; `Err` says why it failed.
async fn deliver(http: &Http, sink: &Loaded, row: &Due, now: i64) -> Result<(), String> {
    let (url, req) = match &sink.target {
        Target::Webhook { url, secret } => {
            let ts = now / 1000;
            let req = http
                .for_url(url)
                .post(url)
                .header("content-type", "application/json")
                .header("x-hitl-event", &row.event)
                .header("x-hitl-idempotency-key", &row.key)
                .header("x-hitl-timestamp", ts.to_string())
                .header("x-hitl-signature", signature(secret, ts, &row.payload))
                .body(row.payload.clone());
            (url, req)
        }
        Target::Slack { url } => {
            let payload: serde_json::Value =
                serde_json::from_str(&row.payload).map_err(|e| e.to_string())?;
            let req = http
                .for_url(url)
                .post(url)
                .json(&super::slack::message(&payload, now));
            (url, req)
        }
    };
    let r = req.send().await.map_err(|e| {
        // reqwest's message can carry the URL, which for Slack is a secret.
        let _ = url;
        format!("cannot reach the sink ({})", e.without_url())
    })?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!("the sink answered {}", r.status()))
    }
}

/// HTTP clients: loopback targets are reached directly, others through the environment's proxy
/// settings, if any. Neither follows redirects.
struct Http {
    direct: reqwest::Client,
    proxied: reqwest::Client,
}

impl Http {
    fn new() -> Result<Http, String> {
        let b = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
        };
        Ok(Http {
            direct: b().no_proxy().build().map_err(|e| e.to_string())?,
            proxied: b().build().map_err(|e| e.to_string())?,
        })
    }

    fn for_url(&self, url: &str) -> &reqwest::Client {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(String::from))
            .unwrap_or_default();
        if super::oidc::is_loopback(&host) {
            &self.direct
        } else {
            &self.proxied
        }
    }
}

/// The worker: delivers due rows, queues escalations, sleeps until the next is due (or a new
/// row is queued, or a reload changed the sinks), until shutdown. It reads the sinks in force
/// at each round; with none, it sleeps until a reload brings some.
pub async fn worker(app: Arc<App>) {
    let http = match Http::new() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "notifications are off");
            return;
        }
    };
    let wake = app.notify_wake.clone();
    let mut stop = app.shutdown.clone();
    // Several replicas (PostgreSQL): only the one running the reaper delivers, so an event is
    // not sent once per replica; it looks for due rows every second, since rows queued by the
    // other replicas do not wake it.
    let replicas = app.metrics.replica.get().is_some();
    loop {
        if replicas
            && !app
                .metrics
                .reaper_leader
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = stop.changed() => return,
            }
        }
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let live = app.live();
        if live.sinks.is_empty() {
            tokio::select! {
                () = &mut woken => continue,
                _ = stop.changed() => return,
            }
        }
        let (sinks, escalate) = (&live.sinks, live.escalate);
        let names: Vec<String> = sinks.iter().map(|s| s.name.clone()).collect();
        let now = app.clock.now_ms();
        if let Some(e) = escalate {
            match app.store.unescalated().await {
                Ok(list) => {
                    for (id, created, deadline) in list {
                        if e.at(created, deadline) <= now {
                            match app.store.escalate(&id, now).await {
                                Ok(true) => tracing::info!(id = %id, "request escalated"),
                                Ok(false) => {}
                                Err(err) => {
                                    tracing::error!(id = %id, error = %err, "escalating failed")
                                }
                            }
                        }
                    }
                }
                Err(err) => tracing::error!(error = %err, "reading escalations failed"),
            }
        }
        let due = app
            .store
            .outbox_due(&names, now, 50)
            .await
            .unwrap_or_default();
        for row in &due {
            let Some(sink) = sinks.iter().find(|s| s.name == row.sink) else {
                continue;
            };
            let result = deliver(&http, sink, row, app.clock.now_ms()).await;
            app.metrics.delivery(&row.sink, result.is_ok());
            let failed = result
                .err()
                .map(|e| (app.clock.now_ms() + backoff_ms(row.attempts + 1), e));
            if let Some((_, e)) = &failed {
                tracing::warn!(
                    sink = %row.sink,
                    event = %row.event,
                    key = %row.key,
                    attempt = row.attempts + 1,
                    error = %e,
                    "notification delivery failed; will retry"
                );
            }
            if let Err(e) = app
                .store
                .outbox_result(row.id, app.clock.now_ms(), failed)
                .await
            {
                tracing::error!(error = %e, "recording a delivery failed");
            }
        }
        if !due.is_empty() {
            continue;
        }
        let next = app.store.outbox_next(&names).await.ok().flatten();
        let now = app.clock.now_ms();
        let mut until = next.map_or(now + 30_000, |n| n.clamp(now, now + 30_000));
        if escalate.is_some() || replicas {
            until = until.min(now + 1000);
        }
        tokio::select! {
            () = app.clock.sleep_until(until) => {}
            () = &mut woken => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_growing_at_five_minutes() {
        for _ in 0..50 {
            let b1 = backoff_ms(1);
            assert!((500..=1000).contains(&b1), "{b1}");
            let b4 = backoff_ms(4);
            assert!((4000..=8000).contains(&b4), "{b4}");
            let b30 = backoff_ms(30);
            assert!((150_000..=300_000).contains(&b30), "{b30}");
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_the_timestamp_and_the_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let sig = signature(b"Jefe", 0, "x");
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64, "{sig}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let tag = ring::hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            crate::hex::encode(tag.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            sig,
            format!(
                "v1={}",
                crate::hex::encode(ring::hmac::sign(&key, b"0.x").as_ref())
            )
        );
    }
}
