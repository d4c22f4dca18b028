//! The shim and the server when the network fails them: a create whose answer is lost is
//! retried into the same request (`Idempotency-Key`), and `[approval] url` as a list moves past
//! a URL that cannot be reached or answers 503 to the next one. Against the real server, the
//! real shim and kubectl, and the test-only fake Kubernetes API; the failures come from small
//! TCP stand-ins in this file.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::support::gate::{finish, KubeGated};
use crate::support::server::{create_body, read_message, TOKEN_A};
use crate::support::{code, stderr};

/// A proxy to `upstream` that lets the server answer the first create in full, then hangs up
/// on the shim without a byte of that answer. Counts the creates it saw.
struct LoseFirstCreateAnswer {
    url: String,
    creates: Arc<AtomicUsize>,
}

impl LoseFirstCreateAnswer {
    async fn start(upstream: &str) -> LoseFirstCreateAnswer {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let creates = Arc::new(AtomicUsize::new(0));
        let seen = creates.clone();
        tokio::spawn(async move {
            loop {
                let (mut client, _) = l.accept().await.unwrap();
                let (upstream, seen) = (upstream.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut server = TcpStream::connect(&upstream).await.unwrap();
                    let first = read_message(&mut client).await;
                    server.write_all(&first).await.unwrap();
                    if first.starts_with(b"POST /api/v1/requests ")
                        && seen.fetch_add(1, Ordering::SeqCst) == 0
                    {
                        // The server commits and answers; the shim never hears of it.
                        read_message(&mut server).await;
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        LoseFirstCreateAnswer { url, creates }
    }
}

/// A URL that answers every request with 503; counts them.
async fn unavailable() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            let counted = counted.clone();
            tokio::spawn(async move {
                read_message(&mut c).await;
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = c
                    .write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    (url, hits)
}

/// A URL nothing listens on.
async fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

/// Points the agent's policy at `url` (a TOML string or list).
fn agent_url(w: &KubeGated, url: &str) {
    let text = std::fs::read_to_string(&w.agent_policy).unwrap();
    let from = format!("url = \"{}\"", w.srv.url);
    assert!(text.contains(&from), "{text}");
    std::fs::write(
        &w.agent_policy,
        text.replace(&from, &format!("url = {url}")),
    )
    .unwrap();
}

/// Every request the server holds.
async fn all_requests(w: &KubeGated) -> Vec<Value> {
    let (s, v) = w.approver().request("GET", "/api/v1/requests", None).await;
    assert_eq!(s, 200, "{v}");
    v.as_array().unwrap().clone()
}

/// Runs a gated `kubectl delete deployment web -n prod` to approval and checks it ran, and that
/// the server holds one request for it.
async fn delete_approved(w: &KubeGated) {
    let mut child = w.kubectl(&["delete", "deployment", "web", "-n", "prod"]);
    let req = w.pending(&mut child).await;
    // A retried create would have come within a few hundred milliseconds (a negative check: the
    // pause gives a second request time to show; the check after the shim ended is the sure
    // one).
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(all_requests(w).await.len(), 1, "one request, not two");
    w.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(all_requests(w).await.len(), 1, "one request, not two");
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_retried_into_the_same_request() {
    let w = KubeGated::new().await;
    w.fake.put_deployment("prod", "web");
    let proxy = LoseFirstCreateAnswer::start(&w.srv.url).await;
    agent_url(&w, &format!("\"{}\"", proxy.url));
    delete_approved(&w).await;
    assert!(
        proxy.creates.load(Ordering::SeqCst) >= 2,
        "the create was retried"
    );
    assert_eq!(all_requests(&w).await.len(), 1, "one request, not two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shim_moves_past_a_dead_url_and_a_503_to_the_next_replica() {
    let w = KubeGated::new().await;
    w.fake.put_deployment("prod", "web");
    let (busy, hits) = unavailable().await;
    let dead = dead_url().await;
    agent_url(&w, &format!("[\"{dead}\", \"{busy}\", \"{}\"]", w.srv.url));
    delete_approved(&w).await;
    assert!(hits.load(Ordering::SeqCst) >= 1, "the 503 URL was tried");
    assert_eq!(all_requests(&w).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_request_or_a_conflict() {
    let w = KubeGated::new().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let create = |body: Value, key: &str| {
        http.post(format!("{}/api/v1/requests", w.srv.url))
            .bearer_auth(TOKEN_A)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let body = create_body(&["delete", "deployment", "web"]);
    let key = "k-0123456789abcdef";
    let first = create(body.clone(), key).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = create(body.clone(), key).await.unwrap();
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    // The same key for another command: refused, nothing created.
    let other = create(create_body(&["delete", "deployment", "api"]), key)
        .await
        .unwrap();
    assert_eq!(other.status(), 409);
    let err: Value = other.json().await.unwrap();
    assert_eq!(err["code"], "idempotency_conflict", "{err}");
    // Another key is another request; a malformed key is refused.
    let third = create(body.clone(), "k-fedcba9876543210").await.unwrap();
    assert_eq!(third.status(), 201);
    let bad = create(body, "short").await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(all_requests(&w).await.len(), 2);
}
