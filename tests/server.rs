//! The approval server: lifecycle with push wake-up, races, restart, identity, bad input,
//! server-side policy, signed decisions, fail-closed audit, shutdown and TLS. A real server on
//! `127.0.0.1:0` with real SQLite; decisions through the admin socket or the built CLI.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::server::{
    create_body, policy_with, waiters_at_least, ServeProcess, TestServer, TOKEN_A, TOKEN_B,
};
use crate::support::{bin, code, run, stderr, stdout};

/// The long-polls' wait (the server's most).
const BIG_WAIT: u64 = 60;
/// A long-poll answered sooner was woken, not ended by its wait (generous: a busy machine may
/// take seconds to answer).
const WOKEN: Duration = Duration::from_secs(30);

/// Starts a long-poll in the background; returns its handle and when it started.
fn poll(
    agent: &crate::support::server::Agent,
    id: &str,
) -> tokio::task::JoinHandle<(u16, Value, Duration)> {
    let (agent, id) = (agent.clone(), id.to_string());
    tokio::spawn(async move {
        let t = Instant::now();
        let (s, v) = agent.wait(&id, BIG_WAIT).await;
        (s, v, t.elapsed())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_reject_cancel_and_expiry_wake_the_poller_at_once() {
    let srv = TestServer::start(&policy_with(
        "[[rule]]\nname = \"quick\"\ntools = [\"kubectl\"]\nsubcommands = [\"scale\"]\naction = \"gate\"\ntimeout = \"1h\"\n",
    ))
    .await;
    let a = srv.agent(TOKEN_A);
    let ap = srv.approver();

    // Approve, once the poller waits.
    let id = a.create(&["delete", "deploy", "web"]).await;
    let waiter = poll(&a, &id);
    waiters_at_least(&srv.url, 1).await;
    let (s, v) = ap.decide(&id, "approve", Some("ok")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v, took) = waiter.await.unwrap();
    assert_eq!((s, v["state"].as_str()), (200, Some("approved")));
    assert!(took < WOKEN, "the poller waited {took:?}, not woken");
    assert!(
        v["decision"]["approvers"][0]
            .as_str()
            .unwrap()
            .starts_with("local:"),
        "{v}"
    );

    // Reject, with its reason.
    let id = a.create(&["delete", "deploy", "api"]).await;
    let waiter = poll(&a, &id);
    waiters_at_least(&srv.url, 1).await;
    let (s, v) = ap.decide(&id, "reject", None).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("reason_required")));
    let (s, _) = ap
        .decide(&id, "reject", Some("not during the freeze"))
        .await;
    assert_eq!(s, 200);
    let (_, v, took) = waiter.await.unwrap();
    assert_eq!(v["state"], "rejected");
    assert_eq!(v["decision"]["comment"], "not during the freeze");
    assert!(took < WOKEN, "{took:?}");

    // Cancel by the agent.
    let id = a.create(&["delete", "pod", "x"]).await;
    let waiter = poll(&a, &id);
    waiters_at_least(&srv.url, 1).await;
    let (s, _) = a
        .post(&format!("/api/v1/requests/{id}/cancel"), json!({}))
        .await;
    assert_eq!(s, 200);
    let (_, v, took) = waiter.await.unwrap();
    assert_eq!(v["state"], "cancelled");
    assert!(took < WOKEN, "{took:?}");

    // Expiry by the rule's timeout (an hour): pending (the poller waits) until the server's
    // clock passes it, then expired at once.
    let id = a.create(&["scale", "deploy", "web", "--replicas=0"]).await;
    let waiter = poll(&a, &id);
    waiters_at_least(&srv.url, 1).await;
    srv.clock.advance(Duration::from_secs(3601));
    let (_, v, took) = waiter.await.unwrap();
    assert_eq!(v["state"], "expired", "{v}");
    assert_eq!(v["classification"]["rule"], "quick");
    assert!(took < WOKEN, "{took:?}");
    assert_eq!(v["decision"]["approvers"][0], "system:reaper");

    // A decision on a decided or expired request is a conflict.
    let (s, v) = ap.decide(&id, "approve", None).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("already_decided")));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_approve_reject_and_the_reaper_leave_exactly_one_decision() {
    let srv = TestServer::start(&policy_with(
        "[[rule]]\nname = \"race\"\ntools = [\"kubectl\"]\naction = \"gate\"\ntimeout = \"1h\"\n",
    ))
    .await;
    let a = srv.agent(TOKEN_A);
    let mut ids = Vec::new();
    for round in 0..200 {
        let id = a.create(&["delete", "pod", &format!("p{round}")]).await;
        // The deadline passes when the server's clock moves an hour on (wherever it stands):
        // before both decisions (the reaper's round), after them (the humans'), or while they
        // are on their way (a real race of all three).
        let past = srv.clock.offset_ms() + 3_600_001;
        let clock = srv.clock.clone();
        let deadline = move || clock.set_offset_ms(past);
        let ap1 = srv.approver();
        let ap2 = srv.approver();
        let (i1, i2) = (id.clone(), id.clone());
        if round % 3 == 0 {
            deadline();
        }
        let approve = tokio::spawn(async move { ap1.decide(&i1, "approve", None).await });
        let reject = tokio::spawn(async move { ap2.decide(&i2, "reject", Some("race")).await });
        let (r1, r2) = if round % 3 == 2 {
            let ((), r1, r2) = tokio::join!(async { deadline() }, approve, reject);
            (r1, r2)
        } else {
            tokio::join!(approve, reject)
        };
        if round % 3 == 1 {
            deadline();
        }
        let (s1, s2) = (r1.unwrap().0, r2.unwrap().0);
        assert!(
            [s1, s2].iter().filter(|s| **s == 200).count() <= 1,
            "round {round}: both decisions succeeded ({s1}, {s2})"
        );
        assert!(
            [s1, s2].iter().all(|s| *s == 200 || *s == 409),
            "round {round}: {s1} {s2}"
        );
        ids.push(id);
    }
    // The reaper finishes every request nobody won (however long a busy machine takes).
    let ap = srv.approver();
    let start = Instant::now();
    loop {
        let (_, v) = ap
            .request("GET", "/api/v1/requests?state=pending", None)
            .await;
        if v.as_array().is_some_and(|a| a.is_empty()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "still pending: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Read back through the API and the audit export, not the store's tables.
    let rows = crate::support::server::audit_rows(&srv.data);
    let mut won = std::collections::BTreeMap::<String, u32>::new();
    for id in &ids {
        let (status, v) = ap
            .request("GET", &format!("/api/v1/requests/{id}"), None)
            .await;
        assert_eq!(status, 200, "{v}");
        let state = v["state"].as_str().unwrap().to_string();
        assert_ne!(state, "pending", "{id}");
        *won.entry(state.clone()).or_default() += 1;
        let kinds: Vec<&str> = rows
            .iter()
            .filter(|r| r.request_id.as_deref() == Some(id.as_str()))
            .map(|r| r.kind.as_str())
            .collect();
        // One creation row, then exactly one decision row: the state that won.
        assert_eq!(kinds, ["request_created", state.as_str()], "{id}");
    }
    // All three contenders really raced: the reaper won some rounds, the humans others.
    let humans =
        won.get("approved").copied().unwrap_or(0) + won.get("rejected").copied().unwrap_or(0);
    assert!(
        won.get("expired").copied().unwrap_or(0) > 0,
        "the reaper never won: {won:?}"
    );
    assert!(humans > 0, "no human decision ever won: {won:?}");
    eprintln!("race winners over 200 rounds: {won:?}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_restarts_with_its_state_and_the_waiting_client_gets_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        policy_with("[[rule]]\nname = \"short\"\ntools = [\"kubectl\"]\nsubcommands = [\"scale\"]\naction = \"gate\"\ntimeout = \"10m\"\n[[rule]]\nname = \"medium\"\ntools = [\"kubectl\"]\nsubcommands = [\"patch\"]\naction = \"gate\"\ntimeout = \"30m\"\n[[rule]]\nname = \"long\"\ntools = [\"kubectl\"]\nsubcommands = [\"delete\"]\naction = \"gate\"\ntimeout = \"24h\"\n"),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&policy).unwrap().permissions(),
        0o600,
    );
    std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let first = ServeProcess::start(&policy, &data);
    let mut agent = crate::support::server::Agent {
        url: first.url.clone(),
        token: TOKEN_A.into(),
        http: reqwest::Client::new(),
    };
    let pending = agent.create(&["delete", "deploy", "web"]).await;
    let overdue = agent
        .create(&["scale", "deploy", "web", "--replicas=0"])
        .await;
    // Its deadline falls after the restart: the new server must re-arm a timer for it.
    let rearmed = agent.create(&["patch", "deploy", "web", "-p", "{}"]).await;
    // A client is waiting when the server dies.
    let waiter = {
        let (a, id) = (agent.clone(), pending.clone());
        tokio::spawn(async move { a.wait(&id, BIG_WAIT).await })
    };
    waiters_at_least(&first.url, 1).await;
    first.signal(nix::sys::signal::Signal::SIGKILL);
    let (s, _) = waiter
        .await
        .map(|_| (0u16, Value::Null))
        .unwrap_or((0, Value::Null));
    let _ = s; // the connection died with the server: the client must reconnect.
    drop(first);

    // Down for longer than the short rule's timeout (the servers' clock, moved).
    crate::support::clock::TestClock::in_dir(dir.path()).advance(Duration::from_secs(11 * 60));
    let second = ServeProcess::start(&policy, &data);
    agent.url = second.url.clone();
    let (_, v) = agent.get(&format!("/api/v1/requests/{overdue}")).await;
    assert_eq!(v["state"], "expired", "expired at start: {v}");
    let (_, v) = agent.get(&format!("/api/v1/requests/{pending}")).await;
    assert_eq!(v["state"], "pending", "state intact: {v}");
    let (_, v) = agent.get(&format!("/api/v1/requests/{rearmed}")).await;
    assert_eq!(v["state"], "pending", "not yet due: {v}");
    let waiter = {
        let (a, id) = (agent.clone(), rearmed.clone());
        tokio::spawn(async move { a.wait(&id, BIG_WAIT).await })
    };
    waiters_at_least(&second.url, 1).await;
    second.clock.advance(Duration::from_secs(20 * 60));
    let (s, v) = waiter.await.unwrap();
    assert_eq!(
        (s, v["state"].as_str()),
        (200, Some("expired")),
        "re-armed timer: {v}"
    );

    // The client reconnects and long-polls; a decision through the new server wakes it.
    let waiter = {
        let (a, id) = (agent.clone(), pending.clone());
        tokio::spawn(async move { a.wait(&id, BIG_WAIT).await })
    };
    waiters_at_least(&second.url, 1).await;
    let out = run(std::process::Command::new(bin())
        .args(["approve", &pending, "-m", "after restart", "--data-dir"])
        .arg(&data));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (s, v) = waiter.await.unwrap();
    assert_eq!((s, v["state"].as_str()), (200, Some("approved")), "{v}");
    drop(second);

    let out = run(std::process::Command::new(bin())
        .args(["audit", "verify", "--db"])
        .arg(data.join("hitl-gate.db")));
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_waiters_with_a_retryable_error_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_with("")).unwrap();
    std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut srv = ServeProcess::start(&policy, &data);
    let agent = crate::support::server::Agent {
        url: srv.url.clone(),
        token: TOKEN_A.into(),
        http: reqwest::Client::new(),
    };
    let id = agent.create(&["delete", "pod", "x"]).await;
    let waiter = {
        let (a, id) = (agent.clone(), id.clone());
        tokio::spawn(async move { a.wait(&id, BIG_WAIT).await })
    };
    waiters_at_least(&srv.url, 1).await;
    srv.signal(nix::sys::signal::Signal::SIGTERM);
    let (s, v) = waiter.await.unwrap();
    assert_eq!((s, v["code"].as_str()), (503, Some("shutting_down")), "{v}");
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "graceful exit: {status:?}");

    let again = ServeProcess::start(&policy, &data);
    let agent = crate::support::server::Agent {
        url: again.url.clone(),
        ..agent
    };
    let (_, v) = agent.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(v["state"], "pending", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_cannot_decide_list_or_see_others_and_bad_tokens_learn_nothing() {
    let srv = TestServer::start(&policy_with("")).await;
    let a = srv.agent(TOKEN_A);
    let b = srv.agent(TOKEN_B);
    let id = a.create(&["delete", "pod", "x"]).await;

    let (s, v) = a
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")));
    let (s, _) = a.get("/api/v1/requests").await;
    assert_eq!(s, 403, "an agent cannot list");
    let (s, v) = b.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (404, Some("not_found")),
        "another agent's request is invisible"
    );
    let (s, _) = b
        .post(&format!("/api/v1/requests/{id}/cancel"), json!({}))
        .await;
    assert_eq!(s, 404, "nor cancellable");

    let wrong = srv.agent("not-a-token");
    let (s, v) = wrong.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(s, 401);
    // Only that the token is unknown: nothing of the request, never the token.
    assert_eq!(
        v,
        json!({"code": "unauthorized", "message": "unknown agent token: no [[serve.agent]] of this server has its SHA-256 (token_sha256)"})
    );
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/requests", srv.url))
        .json(&create_body(&["delete"]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "no token");

    // The approver identity is the local user, from SO_PEERCRED, via the real CLI.
    let out = run(std::process::Command::new(bin())
        .args(["approve", &id, "--json", "--data-dir"])
        .arg(&srv.data));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let user = hitl_gate::server::auth::username(nix::unistd::getuid().as_raw());
    assert_eq!(v["decision"]["approvers"], json!([format!("local:{user}")]));

    let (_, v) = a.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(v["state"], "approved");
    let d: hitl_gate::api::SignedDecision = serde_json::from_value(v["decision"].clone()).unwrap();
    hitl_gate::signing::verify_decision(&srv.public_key, &d)
        .expect("the decision verifies with the public key");
    assert_eq!(
        d.argv_sha256,
        hitl_gate::signing::argv_sha256("kubectl", &["delete".into(), "pod".into(), "x".into()])
    );
    assert!(
        d.valid_until - d.decided_at == 300_000,
        "default validity 5 minutes"
    );
    let (_, pk) = a.get("/api/v1/public-key").await;
    assert_eq!(pk["public_key"], srv.public_key);

    // Outcome, once.
    let (s, _) = a
        .post(
            &format!("/api/v1/requests/{id}/outcome"),
            json!({"exit_code": 0, "duration_ms": 1234}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = a
        .post(
            &format!("/api/v1/requests/{id}/outcome"),
            json!({"exit_code": 0, "duration_ms": 1}),
        )
        .await;
    assert_eq!(s, 409);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_to_reject_without_a_reason_and_lists_and_shows() {
    let srv = TestServer::start(&policy_with("")).await;
    let id = srv.agent(TOKEN_A).create(&["delete", "pod", "x"]).await;
    let out = run(std::process::Command::new(bin())
        .args(["reject", &id, "--data-dir"])
        .arg(&srv.data));
    assert_eq!(code(&out), 2, "clap requires -m: {}", stderr(&out));
    let out = run(std::process::Command::new(bin())
        .args(["list", "--data-dir"])
        .arg(&srv.data));
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));
    let out = run(std::process::Command::new(bin())
        .args(["show", &id, "--data-dir"])
        .arg(&srv.data));
    assert!(
        stdout(&out).contains("- deployment web (3 replicas)"),
        "{}",
        stdout(&out)
    );
    let out = run(std::process::Command::new(bin())
        .args(["reject", &id, "-m", "no", "--data-dir"])
        .arg(&srv.data));
    assert_eq!(code(&out), 0);
    assert!(
        stdout(&out).contains("rejected by local:"),
        "{}",
        stdout(&out)
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_in_a_directory_others_can_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let policy = hitl_gate::policy::load::parse(&policy_with("")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = hitl_gate::server::launch_with_listener(
        hitl_gate::server::Config {
            data_dir: data,
            policy,
            tls: None,
            clock: hitl_gate::server::Clock::system(),
            reload: None,
        },
        listener,
        async {},
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.contains("writable by group or others"), "{err}");
    // The admin CLI refuses such a directory too: a socket there could be anyone's.
    let out = run(std::process::Command::new(bin())
        .args(["list", "--data-dir"])
        .arg(dir.path().join("data")));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refusing the admin socket"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_listens_on_a_host_name_and_explains_an_unresolvable_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(std::process::Command::new(bin())
        .args([
            "serve",
            "--listen",
            "no-such-host.invalid:8080",
            "--data-dir",
        ])
        .arg(dir.path().join("d"))
        .env("HITL_GATE_TEST_ROOT", dir.path()));
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("localhost:8080"), "{}", stderr(&out));
    // localhost resolves to a loopback address, which needs no TLS.
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_with("")).unwrap();
    std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let srv = ServeProcess::start_on(&policy, &dir.path().join("data"), "localhost:0");
    assert!(
        srv.url.starts_with("http://127.0.0.1:") || srv.url.starts_with("http://[::1]:"),
        "{}",
        srv.url
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_json_errors() {
    let srv = TestServer::start(&policy_with("[serve]\nbody_limit_bytes = 4096\n")).await;
    let a = srv.agent(TOKEN_A);
    let mut body = create_body(&["delete", "pod", "x"]);
    body["diff"]["text"] = json!("x".repeat(10_000));
    let (s, v) = a.post("/api/v1/requests", body).await;
    assert_eq!((s, v["code"].as_str()), (413, Some("body_too_large")));
    assert!(v["message"].as_str().unwrap().contains("4096"), "{v}");

    // Query strings and methods get JSON errors with a code too.
    let id = a.create(&["delete", "pod", "q"]).await;
    let (s, v) = a.get(&format!("/api/v1/requests/{id}?wait=soon")).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_query")), "{v}");
    let (s, v) = a.get(&format!("/api/v1/requests/{id}?color=red")).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_query")), "{v}");
    let r = a
        .http
        .delete(format!("{}/api/v1/requests", srv.url))
        .bearer_auth(TOKEN_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "method_not_allowed");

    let r = a
        .http
        .post(format!("{}/api/v1/requests", srv.url))
        .bearer_auth(TOKEN_A)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "invalid_json");

    let mut body = create_body(&["delete"]);
    body["diff"]["text"] = json!(42);
    let (s, v) = a.post("/api/v1/requests", body).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_json")));
    assert!(
        v["message"].as_str().unwrap().contains("diff.text"),
        "field path: {v}"
    );

    let mut body = create_body(&["delete"]);
    body["environment"]["kube_contxt"] = json!("prod");
    let (s, v) = a.post("/api/v1/requests", body).await;
    assert_eq!(s, 400);
    assert!(
        v["message"].as_str().unwrap().contains("kube_contxt"),
        "{v}"
    );

    let mut body = create_body(&["delete"]);
    body["tool"] = json!("rm");
    let (s, v) = a.post("/api/v1/requests", body).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_request")));

    let (s, v) = a.get("/api/v1/requests/not-an-id").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_id")));
    let (s, v) = a.get("/api/v1/requests/../../etc/passwd").await;
    assert!(s == 400 || s == 404, "{s} {v}");
    let (s, v) = a.get(&format!("/api/v1/requests/{}", "0".repeat(32))).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")));
    let (s, v) = a.get("/api/v1/nothing-here").await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")));

    // Argv and diff are stored exactly as received.
    let mut body = create_body(&[
        "delete",
        "pod",
        "<script>alert(1)</script>",
        "\u{1b}[31mred",
    ]);
    body["diff"]["text"] = json!("line\r\n\u{0}nul <b>");
    let (s, v) = a.post("/api/v1/requests", body.clone()).await;
    assert_eq!(s, 201);
    assert_eq!(v["argv"], body["argv"]);
    assert_eq!(v["diff"]["text"], body["diff"]["text"]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_policy_is_authoritative() {
    let srv = TestServer::start(&policy_with(
        "[[environment]]\nname = \"production\"\nrisk = \"high\"\nkube_contexts = [\"prod\"]\n\n\
         [[rule]]\nname = \"never-drain\"\ntools = [\"kubectl\"]\nsubcommands = [\"drain\"]\naction = \"deny\"\n",
    ))
    .await;
    let a = srv.agent(TOKEN_A);
    // The shim gated it; the server's policy would pass it: a human still decides.
    let (s, v) = a
        .post("/api/v1/requests", create_body(&["get", "pods"]))
        .await;
    assert_eq!(s, 201);
    assert_eq!(v["state"], "pending", "never auto-approved on a mismatch");
    assert_eq!(v["classification"]["verdict"], "pass");
    // High risk (production via the reported context): 15 minutes.
    let (_, v) = a
        .post("/api/v1/requests", create_body(&["delete", "pod", "x"]))
        .await;
    assert_eq!(v["classification"]["environment"], "production");
    assert_eq!(v["classification"]["timeout_seconds"], 900);
    assert_eq!(
        v["deadline"].as_i64().unwrap() - v["created_at"].as_i64().unwrap(),
        900_000
    );
    // The server's deny rule rejects at once, on the record.
    let (_, v) = a
        .post("/api/v1/requests", create_body(&["drain", "node1"]))
        .await;
    assert_eq!(v["state"], "rejected");
    assert_eq!(v["decision"]["approvers"], json!(["policy:never-drain"]));
    // Elsewhere: the default hour.
    let mut body = create_body(&["delete", "pod", "x"]);
    body["environment"] = json!({"kube_context": "dev"});
    let (_, v) = a.post("/api/v1/requests", body).await;
    assert_eq!(v["classification"]["timeout_seconds"], 3600);
    srv.stop().await;
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "this test needs to mount a small tmpfs (root, or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_decision_and_keeps_the_request_pending() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    let _fs = Tmpfs::mount(&mnt, "2m");
    let data = mnt.join("data");
    let srv =
        TestServer::start_in(tempfile::tempdir().unwrap(), data.clone(), &policy_with("")).await;
    let a = srv.agent(TOKEN_A);
    let id = a.create(&["delete", "pod", "x"]).await;
    // Fill the file system: the next write of the database (the decision and its audit row)
    // has nowhere to go.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let (s, v) = srv.approver().decide(&id, "approve", Some("now")).await;
    assert_eq!((s, v["code"].as_str()), (500, Some("store_failed")), "{v}");
    let (_, v) = a.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(v["state"], "pending", "no decision without its audit row");
    // Space again: the same decision goes through, and the log verifies.
    std::fs::remove_file(&filler).unwrap();
    let (s, v) = srv.approver().decide(&id, "approve", Some("now")).await;
    assert_eq!(s, 200, "{v}");
    srv.stop().await;
    let out = run(std::process::Command::new(bin())
        .args(["audit", "verify", "--db"])
        .arg(data.join("hitl-gate.db")));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("2 rows"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health() {
    let srv = TestServer::start(&policy_with("")).await;
    let a = srv.agent(TOKEN_A);
    let id = a.create(&["delete", "pod", "x"]).await;
    let pending = a.create(&["delete", "pod", "y"]).await;
    // One long-poll in flight shows in the waiters gauge.
    let waiter = poll(&a, &pending);
    waiters_at_least(&srv.url, 1).await;
    a.post(&format!("/api/v1/requests/{pending}/cancel"), json!({}))
        .await;
    waiter.await.unwrap();
    let _pending = a.create(&["delete", "pod", "z"]).await;
    srv.approver().decide(&id, "approve", None).await;
    let text = reqwest::get(format!("{}/metrics", srv.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "hitl_gate_pending_requests 1",
        "hitl_gate_decisions_total{outcome=\"approved\"} 1",
        "hitl_gate_decisions_total{outcome=\"cancelled\"} 1",
        "hitl_gate_time_to_decision_seconds_count 2",
        "hitl_gate_waiters 0",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
    let ok = reqwest::get(format!("{}/healthz", srv.url)).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    srv.stop().await;
}

#[test]
fn serve_refuses_a_public_address_without_tls_and_keys_show_matches() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(std::process::Command::new(bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("d"))
        .env("HITL_GATE_TEST_ROOT", dir.path()));
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("refusing to listen on 0.0.0.0:0 without TLS"),
        "{}",
        stderr(&out)
    );

    let out = run(std::process::Command::new(bin())
        .args(["keys", "show", "--data-dir"])
        .arg(dir.path().join("d")));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    assert_eq!(key.len(), 64);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("d/signing.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let again = run(std::process::Command::new(bin())
        .args(["keys", "show", "--data-dir"])
        .arg(dir.path().join("d")));
    assert_eq!(stdout(&again).trim(), key, "the key persists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = crate::support::test_certificate(dir.path());
    let policy = hitl_gate::policy::load::parse(&policy_with("")).unwrap();
    let tls = hitl_gate::server::tls::load(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let data = dir.path().join("data");
    let task = tokio::spawn(hitl_gate::server::launch_with_listener(
        hitl_gate::server::Config {
            data_dir: data,
            policy,
            tls: Some(tls),
            clock: hitl_gate::server::Clock::system(),
            reload: None,
        },
        listener,
        async move {
            let _ = rx.await;
        },
        |_| {},
    ));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .build()
        .unwrap();
    let mut last = None;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        match client.get(format!("https://{addr}/healthz")).send().await {
            Ok(r) => {
                last = Some(Ok(r.status().as_u16()));
                break;
            }
            Err(e) => last = Some(Err(format!("{e:?}"))),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, Some(Ok(200)));
    // Connections that never start their handshake hold no one else up: the handshake runs in
    // each connection's own task. (When the accept loop shook hands, each silent connection
    // stalled every new one for 10 s: these five, for 50 s.)
    let silent: Vec<std::net::TcpStream> = (0..5)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let fresh = reqwest::Client::builder()
        .add_root_certificate(ca)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        fresh.get(format!("https://{addr}/healthz")).send(),
    )
    .await;
    assert!(
        matches!(&answer, Ok(Ok(r)) if r.status() == 200),
        "a new connection waited behind silent ones: {answer:?}"
    );
    drop(silent);
    let plain = reqwest::get(format!("http://{addr}/healthz")).await;
    assert!(
        plain.is_err(),
        "plain HTTP must not be served on a TLS listener"
    );
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_decision_after_the_deadline_is_refused_even_before_the_reaper_runs() {
    // The store directly (no reaper): a pending request whose deadline has passed cannot be
    // approved or rejected, only expired.
    use hitl_gate::api::{Classification, CreateRequest, State};
    use hitl_gate::server::store::{NewRequest, Store};
    let dir = tempfile::tempdir().unwrap();
    let keys = std::sync::Arc::new(hitl_gate::signing::Keys::load_or_create(dir.path()).unwrap());
    let store = Store::open(
        &hitl_gate::server::Location::Sqlite(dir.path().join("db")),
        keys,
        100,
    )
    .await
    .unwrap();
    let now = hitl_gate::api::now_ms();
    let request: CreateRequest =
        serde_json::from_value(create_body(&["delete", "pod", "x"])).unwrap();
    let classification = Classification {
        verdict: "gate".into(),
        rule: "r".into(),
        environment: None,
        risk: None,
        timeout_seconds: 1,
        approvals_needed: 1,
        ..Default::default()
    };
    let id = "0123456789abcdef0123456789abcdef".to_string();
    store
        .create(NewRequest {
            id: id.clone(),
            agent: "agent-a".into(),
            on_behalf_of: None,
            request,
            classification,
            created_at: now - 2000,
            deadline: now - 1000,
            idempotency_key: None,
        })
        .await
        .unwrap();
    // What decide.rs would record; the store itself refuses a human decision past the
    // deadline in its conditional update, whatever its caller checked.
    let view = store.get(&id).await.unwrap().unwrap();
    let decision = |to: State| hitl_gate::api::SignedDecision {
        request_id: id.clone(),
        decision: to,
        approvers: vec!["local:alice".into()],
        comment: Some("late".into()),
        argv_sha256: String::new(),
        artifact_sha256: Vec::new(),
        environment_sha256: String::new(),
        request_sha256: String::new(),
        nonce: String::new(),
        decided_at: now,
        valid_until: now,
        signature: String::new(),
    };
    for to in [State::Approved, State::Rejected] {
        let recorded = store
            .record_decision(&view, &decision(to), "local:alice", true, None, None)
            .await
            .unwrap();
        assert!(!recorded, "{to:?} landed after the deadline");
    }
    assert!(store
        .record_decision(
            &view,
            &decision(State::Expired),
            "system:reaper",
            false,
            None,
            None
        )
        .await
        .unwrap());
    assert_eq!(store.get(&id).await.unwrap().unwrap().state, State::Expired);
}
