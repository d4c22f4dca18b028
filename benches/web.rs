//! Benchmarks of the web UI (a benchmark, not a test): run with
//! `cargo bench --bench web -- [render|live|streams]` (all three by default), after
//! scripts/fetch-test-tools (the OIDC provider and Chromium). Results and the exact commands
//! are recorded in docs/performance.md.
//!
//! - render: the server's time to answer `GET /ui` with 1,000 pending requests, against the
//!   empty inbox (the same page, the same session and middleware, no rows) in the same run;
//! - live: from a request's creation (the agent's POST sent) to its row in a connected
//!   headless Chromium's inbox (server-sent event, then the rows fetched and drawn), against the
//!   POST's own round trip in the same run;
//! - streams: 200 open event streams on one `hitl-gate serve` process: its RSS before and with
//!   them, and how long until all 200 have the event of a new request.
//!
//! The world (provider, server, sign-in, browser) is the test harness's, included from
//! `tests/support/`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::browser::Browser;
use support::oidc::{web_policy, Provider, WebClient, WebServer, CLIENT_SECRET};
use support::server::{create_body, TOKEN_A};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn p90(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() * 9 / 10]
}

fn body(i: usize) -> Value {
    let mut b = create_body(&["scale", "deploy", &format!("web-{i}"), "--replicas=3"]);
    b["nonce"] = json!(hitl_gate::hex::sha256(&i.to_le_bytes()));
    b
}

/// Milliseconds since the epoch, with sub-millisecond precision.
fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// Times `runs` GETs of `/ui` (ms each).
async fn time_inbox(c: &mut WebClient, url: &str, runs: usize) -> (Vec<f64>, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let r = c.get(&format!("{url}/ui")).await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r.status, 200);
        size = r.body.len();
    }
    (times, size)
}

async fn render() {
    let w = WebServer::start("", "").await;
    let mut c = WebClient::new(&w.url);
    c.sign_in(&w.url, "alice").await;
    let _ = time_inbox(&mut c, &w.url, 5).await;
    let (mut empty, empty_size) = time_inbox(&mut c, &w.url, 50).await;
    let agent = w.srv.agent(TOKEN_A);
    for chunk in (0..1000).collect::<Vec<_>>().chunks(50) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let a = agent.clone();
            set.spawn(async move { a.post("/api/v1/requests", body(i)).await.0 });
        }
        while let Some(s) = set.join_next().await {
            assert_eq!(s.unwrap(), 201);
        }
    }
    let _ = time_inbox(&mut c, &w.url, 3).await;
    let (mut full, full_size) = time_inbox(&mut c, &w.url, 50).await;
    let (me, mf) = (median(&mut empty), median(&mut full));
    println!("render: GET /ui, 50 runs each, same server and session");
    println!(
        "  empty inbox:       median {me:.2} ms, p90 {:.2} ms ({empty_size} bytes)",
        p90(&mut empty)
    );
    println!(
        "  1,000 pending:     median {mf:.2} ms, p90 {:.2} ms ({full_size} bytes)",
        p90(&mut full)
    );
    println!("  ratio 1,000 / empty: {:.1}", mf / me);
}

async fn live() {
    let w = WebServer::start("", "").await;
    let b = Browser::start(1280, 900).await;
    b.c.goto(&format!("{}/ui", w.url)).await.unwrap();
    b.provider_login("alice").await;
    b.wait_for("#inbox-rows", 15).await;
    b.js("window.__seen = {};
         new MutationObserver(function () {
           document.querySelectorAll('#inbox-rows a.req').forEach(function (a) {
             var id = a.getAttribute('href').split('/').pop();
             if (!(id in window.__seen)) { window.__seen[id] = Date.now(); }
           });
         }).observe(document.getElementById('inbox-rows'), {childList: true, subtree: true});
         return true")
        .await;
    // Let the event stream connect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agent = w.srv.agent(TOKEN_A);
    let approver = w.srv.approver();
    let (mut to_row, mut post) = (Vec::new(), Vec::new());
    let (mut to_fetch, mut serving, mut drawing) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..40 {
        let t0 = now_ms();
        let (s, v) = agent.post("/api/v1/requests", body(i)).await;
        post.push(now_ms() - t0);
        assert_eq!(s, 201);
        let id = v["id"].as_str().unwrap().to_string();
        let start = Instant::now();
        let seen = loop {
            let v = b.js(&format!("return window.__seen['{id}'] || 0")).await;
            if let Some(t) = v.as_f64().filter(|t| *t > 0.0) {
                break t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the row never appeared"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        to_row.push(seen - t0);
        // Where the time went: the last fetch of the rows before the row was seen (browser
        // clock): the event's arrival (fetch start), the server's answer, the drawing.
        let t = b
            .js(&format!(
                "var e = performance.getEntriesByType('resource').filter(function (e) {{
                   return e.name.indexOf('/ui/inbox-rows') >= 0 &&
                     performance.timeOrigin + e.startTime <= {seen};
                 }}).pop();
                 return e ? [performance.timeOrigin + e.startTime, performance.timeOrigin + e.responseStart,
                             performance.timeOrigin + e.responseEnd] : null"
            ))
            .await;
        if let Some(t) = t.as_array().filter(|a| a.len() == 3) {
            let at = |i: usize| t[i].as_f64().unwrap_or(0.0);
            to_fetch.push(at(0) - t0);
            serving.push(at(1) - at(0));
            drawing.push(seen - at(2));
        }
        approver.decide(&id, "approve", None).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (mr, mp) = (median(&mut to_row), median(&mut post));
    println!("live: 40 requests, each created while a headless Chromium shows the inbox");
    println!(
        "  creation -> row in the browser: median {mr:.1} ms, p90 {:.1} ms (browser clock, 1 ms steps)",
        p90(&mut to_row)
    );
    println!(
        "  the create POST alone:          median {mp:.1} ms, p90 {:.1} ms",
        p90(&mut post)
    );
    println!("  ratio: {:.2}", mr / mp);
    println!(
        "  of which (medians): the event reaching the page {:.1} ms, the rows' fetch until its \
         answer starts {:.1} ms, drawing after it ends {:.1} ms",
        median(&mut to_fetch),
        median(&mut serving),
        median(&mut drawing)
    );
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap())
        })
        .unwrap()
}

async fn streams() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::server::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let idp = Provider::start(dir.path(), &url);
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, web_policy(&url, &idp.issuer, &secret, "", "")).unwrap();
    std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let data = dir.path().join("data");
    let srv = support::server::ServeProcess::start_on(&policy, &data, &format!("127.0.0.1:{port}"));
    let pid = srv.child.id();
    let mut c = WebClient::new(&url);
    c.sign_in(&url, "alice").await;
    let cookie = c
        .cookies(&url)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_kb(pid);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let n = 200;
    let mut opened = 0;
    for _ in 0..n {
        let r = http
            .get(format!("{url}/ui/events"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        opened += 1;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut r = r;
            let mut buf = String::new();
            while let Ok(Some(chunk)) = r.chunk().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                if buf.contains("event: created") {
                    let _ = tx.send(Instant::now());
                    return;
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = rss_kb(pid);
    let agent = support::server::Agent {
        url: url.clone(),
        token: TOKEN_A.into(),
        http: reqwest::Client::new(),
    };
    let t0 = Instant::now();
    let (s, _) = agent.post("/api/v1/requests", body(0)).await;
    assert_eq!(s, 201);
    let mut last = Duration::ZERO;
    for _ in 0..n {
        let t = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("every stream gets the event")
            .unwrap();
        last = t - t0;
    }
    println!("streams: {opened} open event streams on one `hitl-gate serve` process");
    println!(
        "  RSS idle {:.1} MB, holding them {:.1} MB ({:.1} KB per stream)",
        idle as f64 / 1024.0,
        held as f64 / 1024.0,
        (held.saturating_sub(idle)) as f64 / n as f64
    );
    println!(
        "  a new request reached all {n} within {:.1} ms of the create POST being sent",
        last.as_secs_f64() * 1000.0
    );
    drop(srv);
    drop(idp);
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if all || which.iter().any(|w| w == "render") {
            render().await;
        }
        if all || which.iter().any(|w| w == "live") {
            live().await;
        }
        if all || which.iter().any(|w| w == "streams") {
            streams().await;
        }
    });
}
