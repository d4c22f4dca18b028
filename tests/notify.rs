//! Notifications, end to end, with a local HTTP receiver standing in for a webhook endpoint and
//! for Slack: every event arrives (in order per request, the same idempotency key on every
//! retry, an HMAC the receiver can check) even when the receiver is down at first, or when the
//! server is killed with SIGKILL between the commit and the delivery; the Slack message has the
//! Block Kit structure docs/policy.md shows; escalations go only to the sinks that want them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::support::oidc::WebServer;
use crate::support::server::{
    create_body, free_port, policy_with, ServeProcess, TestServer, TOKEN_A,
};
use crate::support::Sandbox;

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: HeaderMap,
    body: String,
    /// The status it answered.
    status: u16,
}

/// The receiver: answers 503 to the first `fail` POSTs, then 200; records every POST.
#[derive(Clone, Default)]
struct Receiver {
    fail: Arc<AtomicUsize>,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    async fn start_on(listener: tokio::net::TcpListener, fail: usize) -> Receiver {
        let r = Receiver::default();
        r.fail.store(fail, Ordering::SeqCst);
        async fn hit(
            State(r): State<Receiver>,
            uri: axum::http::Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let failing = r
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let status = if failing {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            r.got.lock().unwrap().push(Got {
                path: uri.path().to_string(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                status: status.as_u16(),
            });
            status
        }
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::post(hit))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    /// The POSTs answered 200, as (event, idempotency key, payload).
    fn delivered(&self) -> Vec<(String, String, Value)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.status == 200)
            .map(|g| {
                let h = |k: &str| {
                    g.headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                (
                    h("x-hitl-event"),
                    h("x-hitl-idempotency-key"),
                    serde_json::from_str(&g.body).unwrap_or(Value::Null),
                )
            })
            .collect()
    }

    /// Waits until `done` holds for what arrived (at most 60 s).
    async fn until(&self, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let start = Instant::now();
        loop {
            let got = self.got.lock().unwrap().clone();
            if done(&got) {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{what} never arrived; got {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The server's `/metrics` text.
async fn metrics(url: &str) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the server's metrics hold every line of `want` (at most 60 s); returns them.
async fn metrics_until(url: &str, want: &[&str]) -> String {
    metrics_when(url, &format!("{want:?}"), |m| {
        want.iter().all(|w| m.lines().any(|l| l == *w))
    })
    .await
}

/// Waits until `done` holds for the server's metrics (at most 60 s); returns them.
async fn metrics_when(url: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let m = metrics(url).await;
        if done(&m) {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never {what}: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A 0600 file holding `text`.
fn secret(sb: &Sandbox, name: &str, text: &str) -> std::path::PathBuf {
    sb.policy(name, &format!("{text}\n"))
}

/// Checks a webhook POST's signature the way docs/api.md tells receivers to.
fn verify(secret: &str, g: &Got) {
    let h = |k: &str| g.headers.get(k).unwrap().to_str().unwrap().to_string();
    let ts: i64 = h("x-hitl-timestamp").parse().unwrap();
    let now = hitl_gate::api::now_ms() / 1000;
    assert!((now - ts).abs() < 300, "a fresh timestamp");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let want = ring::hmac::sign(&key, format!("{ts}.{}", g.body).as_bytes());
    assert_eq!(
        h("x-hitl-signature"),
        format!("v1={}", hitl_gate::hex::encode(want.as_ref())),
        "the HMAC over the timestamp and the body"
    );
}

async fn create(url: &str, argv: &[&str]) -> String {
    let agent = crate::support::server::Agent {
        url: url.to_string(),
        token: TOKEN_A.to_string(),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    };
    let (s, v) = agent.post("/api/v1/requests", create_body(argv)).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_down_at_first_gets_every_event_in_order_with_stable_keys_and_a_valid_hmac() {
    let sb = Sandbox::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rx = Receiver::start_on(listener, 3).await;
    let key = "webhook-shared-secret";
    let file = secret(&sb, "hook.secret", key);
    let srv = TestServer::start(&policy_with(&format!(
        "[[serve.notify]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret_file = \"{}\"\n",
        file.display()
    )))
    .await;
    let a = create(&srv.url, &["delete", "pod", "a"]).await;
    let b = create(&srv.url, &["delete", "pod", "b"]).await;
    let (s, v) = srv.approver().decide(&a, "approve", Some("fine")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = srv.approver().decide(&b, "reject", Some("not b")).await;
    assert_eq!(s, 200, "{v}");
    let got = rx
        .until("four events", |g| {
            g.iter().filter(|g| g.status == 200).count() >= 4
        })
        .await;
    // Three attempts failed first; each was retried with the same key.
    let failed: Vec<&Got> = got.iter().filter(|g| g.status == 503).collect();
    assert_eq!(failed.len(), 3, "{got:#?}");
    let delivered = rx.delivered();
    for f in &failed {
        let k = f.headers["x-hitl-idempotency-key"].to_str().unwrap();
        assert!(
            delivered.iter().any(|(_, dk, _)| dk == k),
            "the retry of {k} kept its key"
        );
    }
    for g in &got {
        verify(key, g);
    }
    // Every event, once delivered, in order per request.
    for (id, last) in [(&a, "decided"), (&b, "decided")] {
        let events: Vec<&str> = delivered
            .iter()
            .filter(|(_, _, p)| p["request"]["id"] == id.as_str())
            .map(|(e, _, _)| e.as_str())
            .collect();
        assert_eq!(events, vec!["created", last], "{id}");
    }
    let decided = delivered
        .iter()
        .find(|(e, _, p)| e == "decided" && p["request"]["id"] == b.as_str())
        .unwrap();
    assert_eq!(decided.2["decision"]["decision"], "rejected");
    assert_eq!(decided.2["decision"]["comment"], "not b");
    assert_eq!(decided.1, format!("{b}:decided:0"));
    // The payload is the summary, never the diff text.
    let created = &delivered[0].2;
    assert!(
        created["request"]["changes"]["summary"].is_null()
            || created["request"]["changes"].is_object()
    );
    assert!(!created.to_string().contains("3 replicas"), "{created}");
    // The metrics count the attempts, and nothing is left (once the server has recorded the
    // last delivery, which the receiver saw a moment before).
    metrics_until(
        &srv.url,
        &[
            "hitl_gate_notify_deliveries_total{sink=\"ops\",outcome=\"failed\"} 3",
            "hitl_gate_notify_deliveries_total{sink=\"ops\",outcome=\"delivered\"} 4",
            "hitl_gate_outbox_depth 0",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_before_a_sigkill_is_delivered_after_the_restart() {
    let sb = Sandbox::new();
    let port = free_port();
    let key = "another-secret";
    let file = secret(&sb, "hook.secret", key);
    let policy = sb.policy(
        "server.toml",
        &policy_with(&format!(
            "[[serve.notify]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret_file = \"{}\"\n",
            file.display()
        )),
    );
    let data = sb.path().join("data");
    let srv = ServeProcess::start(&policy, &data);
    // Nothing listens on the receiver's port yet: the first delivery fails.
    let id = create(&srv.url, &["delete", "pod", "x"]).await;
    metrics_when(&srv.url, "a failed delivery", |m| {
        m.lines().any(|l| {
            l.strip_prefix("hitl_gate_notify_deliveries_total{sink=\"ops\",outcome=\"failed\"} ")
                .is_some_and(|n| n != "0")
        })
    })
    .await;
    srv.signal(nix::sys::signal::Signal::SIGKILL);
    drop(srv);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let rx = Receiver::start_on(listener, 0).await;
    let _srv = ServeProcess::start(&policy, &data);
    let got = rx
        .until("the created event", |g| g.iter().any(|g| g.status == 200))
        .await;
    verify(key, &got[0]);
    let p: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(p["event"], "created");
    assert_eq!(p["request"]["id"], id.as_str());
    assert_eq!(
        got[0].headers["x-hitl-idempotency-key"],
        format!("{id}:created:0").as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_block_kit_with_a_link_and_a_follow_up_when_decided() {
    let sb = Sandbox::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rx = Receiver::start_on(listener, 0).await;
    let slack_url = secret(
        &sb,
        "slack.url",
        &format!("http://127.0.0.1:{port}/slack/T000/B000/XXX"),
    );
    let hook_secret = secret(&sb, "hook.secret", "s");
    let top = format!(
        "[[environment]]\nname = \"production\"\nrisk = \"high\"\nkube_contexts = [\"prod\"]\n\n[[serve.notify]]\nname = \"chat\"\nkind = \"slack\"\nurl_file = \"{}\"\nenvironments = [\"production\"]\nevents = [\"created\", \"decided\", \"escalation\"]\n\n[[serve.notify]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret_file = \"{}\"\n",
        slack_url.display(),
        hook_secret.display()
    );
    let w = WebServer::start(&top, "").await;
    let id = create(&w.srv.url, &["delete", "deployment", "web"]).await;
    let got = rx
        .until("the slack message", |g| {
            g.iter().any(|g| g.path.starts_with("/slack"))
        })
        .await;
    let msg: Value = serde_json::from_str(
        &got.iter()
            .find(|g| g.path.starts_with("/slack"))
            .unwrap()
            .body,
    )
    .unwrap();
    let blocks = msg["blocks"].as_array().unwrap();
    let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec!["header", "section", "section", "actions", "context"],
        "{msg:#}"
    );
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(
        blocks[0]["text"]["text"],
        "Approval needed: production (high)"
    );
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    assert!(
        blocks[1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("kubectl delete deployment web"),
        "{msg:#}"
    );
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    for want in [
        "*Environment*\nproduction",
        "*Risk*\nhigh",
        "*Changes*",
        "*Time left*",
        "*Needs*\n1 from any approver",
    ] {
        assert!(
            fields.iter().any(|f| f.starts_with(want)),
            "{want}: {fields:?}"
        );
    }
    let button = &blocks[3]["elements"][0];
    assert_eq!(button["type"], "button");
    assert_eq!(button["url"], format!("{}/ui/requests/{id}", w.url));
    assert!(msg["text"]
        .as_str()
        .unwrap()
        .contains("kubectl delete deployment web"));
    // Decided: a follow-up naming who decided, without the pending fields.
    let (s, v) = w
        .srv
        .approver()
        .decide(&id, "reject", Some("wrong cluster"))
        .await;
    assert_eq!(s, 200, "{v}");
    let got = rx
        .until("the follow-up", |g| {
            g.iter().filter(|g| g.path.starts_with("/slack")).count() >= 2
        })
        .await;
    let follow: Value = serde_json::from_str(
        &got.iter()
            .filter(|g| g.path.starts_with("/slack"))
            .nth(1)
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(follow["blocks"][0]["text"]["text"], "Rejected: production");
    let text = follow.to_string();
    assert!(
        text.contains("wrong cluster") && text.contains("local:"),
        "{follow:#}"
    );
    assert!(!text.contains("Time left"), "{follow:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_pending_escalates_to_the_sinks_that_want_it() {
    let sb = Sandbox::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rx = Receiver::start_on(listener, 0).await;
    let file = secret(&sb, "hook.secret", "s");
    let sinks = format!(
        "[[serve.notify]]\nname = \"pager\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/pager\"\nsecret_file = \"{f}\"\nevents = [\"escalation\"]\n\n[[serve.notify]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/ops\"\nsecret_file = \"{f}\"\n",
        f = file.display()
    );
    let srv = TestServer::start(&policy_with(&format!(
        "{sinks}\n[serve]\nescalate_after = \"10m\"\n"
    )))
    .await;
    let id = create(&srv.url, &["delete", "pod", "x"]).await;
    // Not before its time: the other sink hears of the request, the pager of nothing.
    rx.until("the created event", |g| g.iter().any(|g| g.path == "/ops"))
        .await;
    assert!(
        rx.got.lock().unwrap().iter().all(|g| g.path != "/pager"),
        "escalated early"
    );
    // Ten minutes later (the server's clock moved, not waited for).
    srv.clock.advance(Duration::from_secs(10 * 60 + 1));
    let got = rx
        .until("the escalation", |g| g.iter().any(|g| g.path == "/pager"))
        .await;
    let pager: Vec<&Got> = got.iter().filter(|g| g.path == "/pager").collect();
    assert_eq!(pager.len(), 1);
    assert_eq!(pager[0].headers["x-hitl-event"], "escalation");
    assert_eq!(
        pager[0].headers["x-hitl-idempotency-key"],
        format!("{id}:escalation:0").as_str()
    );
    // The other sink heard of the request, not of its escalation; and it escalates once, also
    // when the clock moves on (a negative check: the pause gives a second escalation time to
    // show itself; a slow machine cannot make it fail).
    srv.clock.advance(Duration::from_secs(10 * 60));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(
        got.iter().filter(|g| g.path == "/pager").count(),
        1,
        "{got:#?}"
    );
    let ops: Vec<&str> = got
        .iter()
        .filter(|g| g.path == "/ops")
        .map(|g| g.headers["x-hitl-event"].to_str().unwrap())
        .collect();
    assert_eq!(ops, vec!["created"]);
}
