//! The server stays reachable under idle connections: connections over `[serve]
//! max_connections` are closed at once, a connection that sends no complete request head
//! within `header_read_timeout` is closed, and the admin socket answers approvers throughout.
//! A refused token does not keep its connection. One agent's long-polls cannot take every
//! connection: over `[serve] max_waits_per_agent` they get 429 with `Retry-After`, other agents
//! and approvers still work, and a shim told 429 keeps waiting and gets its decision.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::gate::{finish, KubeGated};
use crate::support::server::{policy_with, TestServer, TOKEN_A, TOKEN_B};
use crate::support::{code, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_neither_lock_out_approvers_nor_stay_open() {
    let srv = TestServer::start(&policy_with(
        "[serve]\nmax_connections = 20\nheader_read_timeout = \"1s\"\n",
    ))
    .await;
    let addr = srv.url.strip_prefix("http://").unwrap().to_string();
    let mut idle: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    // A slow client: half a request head, then nothing.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /api/v1/public-key HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    idle.push(slow);

    let t = Instant::now();
    let (s, v) = srv
        .approver()
        .request("GET", "/api/v1/requests?state=all", None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the admin socket took {:?}",
        t.elapsed()
    );

    // Every one of them is closed by the server: at once over the cap, after the head deadline
    // otherwise (all within one 6 s window).
    let start = Instant::now();
    let deadline = start + Duration::from_secs(6);
    let open = tokio::task::spawn_blocking(move || {
        idle.iter_mut()
            .map(|c| closed_by_server(c, deadline))
            .filter(|closed| !closed)
            .count()
    })
    .await
    .unwrap();
    assert_eq!(
        open,
        0,
        "connections still open after {:?}",
        start.elapsed()
    );

    // And agents get through again.
    let id = srv.agent(TOKEN_A).create(&["delete", "pod", "x"]).await;
    assert_eq!(id.len(), 32);
    srv.stop().await;
}

/// Reads until the server closes the connection (EOF or reset) or `deadline` passes.
fn closed_by_server(c: &mut std::net::TcpStream, deadline: Instant) -> bool {
    let mut b = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        c.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .unwrap();
        match c.read(&mut b) {
            Ok(0) => return true,
            // A response (408) sent as it closes.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_does_not_keep_its_connection() {
    let srv = TestServer::start(&policy_with("[serve]\nheader_read_timeout = \"1s\"\n")).await;
    let addr = srv.url.strip_prefix("http://").unwrap().to_string();
    // Request after request with a wrong token, each well within the head deadline: the first
    // 401 ends the connection.
    let poll = format!(
        "GET /api/v1/requests/{}?wait=60 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\r\n",
        "0".repeat(32)
    );
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let start = Instant::now();
    let mut answers = Vec::new();
    while let Some(answer) = exchange(&mut c, poll.as_bytes()).await {
        answers.push(answer);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the connection stayed open through {} refused requests",
            answers.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    let head = answers[0].to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("connection: close"), "{head}");

    // A wrong token with a body that never comes: answered and closed, not waited for.
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(
        b"POST /api/v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\
          Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "still open after 5 s (header_read_timeout is 1 s)"
    );
    assert!(
        got.starts_with(b"HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    srv.stop().await;
}

/// Sends `req` and reads one response (head and `Content-Length` body); `None` once the server
/// has closed the connection.
async fn exchange(c: &mut tokio::net::TcpStream, req: &[u8]) -> Option<String> {
    c.write_all(req).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), c.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return None,
            Err(_) => panic!("no answer within 10 s"),
        }
    }
}

/// The value of the metric `name` (no labels) in `/metrics`.
async fn metric(url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

/// Waits (30 s at most) until the metric `name` reaches `at_least`.
async fn metric_reaches(url: &str, name: &str, at_least: f64) {
    let start = Instant::now();
    loop {
        let v = metric(url, name).await;
        if v >= at_least {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{name} is {v}, not {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One long-poll by `token` on request `id`, on a connection of its own (closed after the
/// answer): the status, `Retry-After` and the body.
async fn long_poll(url: &str, token: &str, id: &str) -> (u16, Option<String>, Value) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = http
        .get(format!("{url}/api/v1/requests/{id}?wait=60"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the server took the connection");
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), retry, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_over_its_long_poll_cap_gets_429_and_takes_no_more_connections() {
    let srv = TestServer::start(&policy_with(
        "[serve]\nmax_connections = 10\nmax_waits_per_agent = 3\nheader_read_timeout = \"2s\"\n",
    ))
    .await;
    let a = srv.agent(TOKEN_A);
    let ids = [
        a.create(&["delete", "pod", "one"]).await,
        a.create(&["delete", "pod", "two"]).await,
    ];
    // Twenty long-polls, one after another, more than the connections the server takes.
    let mut held = Vec::new();
    for i in 0..20 {
        let p = spawn_poll(&srv.url, TOKEN_A, &ids[i % 2]);
        if waits_or_ends(&srv.url, &p, held.len() + 1).await {
            held.push(p);
            continue;
        }
        let (status, retry, body) = p.await.unwrap();
        assert_eq!(status, 429, "long-poll {i}: {body}");
        assert_eq!(body["code"], "too_many_waits", "{body}");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("max_waits_per_agent"));
        let secs: u64 = retry.expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&secs), "{secs}");
    }
    assert_eq!(held.len(), 3);
    assert_eq!(
        metric(&srv.url, "hitl_gate_long_polls_refused_total").await,
        17.0
    );

    // Another agent and an approver still connect and work.
    let b_id = srv.agent(TOKEN_B).create(&["delete", "pod", "three"]).await;
    let b_poll = spawn_poll(&srv.url, TOKEN_B, &b_id);
    assert!(
        waits_or_ends(&srv.url, &b_poll, 4).await,
        "agent-b's long-poll"
    );
    let ap = srv.approver();
    let (s, v) = ap.decide(&b_id, "approve", Some("ok")).await;
    assert_eq!(s, 200, "{v}");
    let (status, _, view) = b_poll.await.unwrap();
    assert_eq!(
        (status, view["state"].as_str()),
        (200, Some("approved")),
        "{view}"
    );

    // A long-poll of a decided request is answered whatever the agent holds.
    let c_id = a.create(&["delete", "pod", "four"]).await;
    let (s, v) = ap.decide(&c_id, "reject", Some("no")).await;
    assert_eq!(s, 200, "{v}");
    let (status, _, view) = long_poll(&srv.url, TOKEN_A, &c_id).await;
    assert_eq!(
        (status, view["state"].as_str()),
        (200, Some("rejected")),
        "{view}"
    );

    // The held ones get their decisions.
    for id in &ids {
        let (s, v) = ap.decide(id, "approve", Some("ok")).await;
        assert_eq!(s, 200, "{v}");
    }
    for p in held {
        let (status, _, view) = p.await.unwrap();
        assert_eq!(
            (status, view["state"].as_str()),
            (200, Some("approved")),
            "{view}"
        );
    }
    srv.stop().await;
}

type Poll = tokio::task::JoinHandle<(u16, Option<String>, Value)>;

/// [`long_poll`] as a task.
fn spawn_poll(url: &str, token: &'static str, id: &str) -> Poll {
    let (url, id) = (url.to_string(), id.to_string());
    tokio::spawn(async move { long_poll(&url, token, &id).await })
}

/// Waits (30 s at most) until `p` either waits in the server (`hitl_gate_waiters` reaches
/// `waiters`: true) or has its answer (false).
async fn waits_or_ends(url: &str, p: &Poll, waiters: usize) -> bool {
    let start = Instant::now();
    loop {
        if p.is_finished() {
            return false;
        }
        if metric(url, "hitl_gate_waiters").await >= waiters as f64 {
            return true;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the long-poll neither waits nor ends"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_told_429_keeps_waiting_and_gets_its_decision() {
    let w = KubeGated::with_policy("[serve]\nmax_waits_per_agent = 1\n", "").await;
    w.fake.put_deployment("prod", "web");
    // The agent's one long-poll is taken, and kept taken, by another of its requests.
    let a = w.srv.agent(TOKEN_A);
    let holder_id = a.create(&["delete", "pod", "holder"]).await;
    let (url, hid) = (w.srv.url.clone(), holder_id.clone());
    let holder = tokio::spawn(async move {
        loop {
            long_poll(&url, TOKEN_A, &hid).await;
        }
    });
    metric_reaches(&w.srv.url, "hitl_gate_waiters", 1.0).await;

    let mut child = w.kubectl(&["delete", "deployment", "web", "-n", "prod"]);
    let id = shim_request(&w, &mut child, &holder_id).await;
    // Refused, the shim asks again only when `Retry-After` (2 s) has passed: three refusals
    // take two pauses.
    metric_reaches(&w.srv.url, "hitl_gate_long_polls_refused_total", 1.0).await;
    let first = Instant::now();
    metric_reaches(&w.srv.url, "hitl_gate_long_polls_refused_total", 3.0).await;
    assert!(
        first.elapsed() >= Duration::from_secs(3),
        "the shim asked again {:?} after a 429 with Retry-After: 2",
        first.elapsed() / 2
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the shim ended on a 429"
    );
    w.decide(&id, "approve", "ok").await;
    let out = finish(child).await;
    holder.abort();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("asks this agent to wait"),
        "{}",
        stderr(&out)
    );
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_none());
}

/// The id of the pending request the shim submitted (not `other`), waiting for it.
async fn shim_request(w: &KubeGated, child: &mut std::process::Child, other: &str) -> String {
    let start = Instant::now();
    loop {
        let (s, v) = w
            .approver()
            .request("GET", "/api/v1/requests?state=pending", None)
            .await;
        assert_eq!(s, 200, "{v}");
        let found = v.as_array().unwrap().iter().find_map(|r| {
            let id = r["id"].as_str().unwrap();
            (id != other).then(|| id.to_string())
        });
        if let Some(id) = found {
            return id;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the shim ended before submitting"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no request from the shim"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
