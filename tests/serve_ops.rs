//! The server as operators run it: one `hitl-gate serve` per data dir (on SQLite and on
//! PostgreSQL), its log (one line per event, text or JSON, never a token, a secret or diff
//! text), the policy loaded again on SIGHUP and by `hitl-gate reload` (a good file, a bad one),
//! and `GET /api/v1/whoami`. `serve` runs as a child process of the built binary; the PostgreSQL
//! restart is in `replicas.rs`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::support::server::{
    free_port, policy_with, waiters_at_least, Agent, Approver, ServeProcess, TestServer, TOKEN_A,
    TOKEN_B,
};
use crate::support::{bin, code, postgres, run, run_within, stderr, stdout};

/// A token no `[[serve.agent]]` has until a reload adds it.
const TOKEN_C: &str = "token-of-agent-c";
/// The diff text of every request `create_body` makes: it must never reach the log.
const DIFF_TEXT: &str = "deployment web (3 replicas)";

/// A temp dir with a policy file (0600) and a data dir path.
struct World {
    dir: tempfile::TempDir,
    policy: PathBuf,
    data: PathBuf,
}

impl World {
    fn new(policy: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let w = World {
            policy: dir.path().join("policy.toml"),
            data: dir.path().join("data"),
            dir,
        };
        w.write(policy);
        std::fs::set_permissions(
            &w.policy,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        w
    }

    /// Replaces the policy file's text (its mode stays).
    fn write(&self, policy: &str) {
        std::fs::write(&self.policy, policy).unwrap();
    }

    /// `hitl-gate ARGS --data-dir DATA` as this user (an approver on the admin socket).
    fn cli(&self, args: &[&str]) -> std::process::Output {
        run(Command::new(bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data))
    }

    fn approver(&self) -> Approver {
        Approver {
            socket: self.data.join("admin.sock"),
        }
    }
}

fn agent(url: &str, token: &str) -> Agent {
    Agent {
        url: url.to_string(),
        token: token.to_string(),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    }
}

/// `[[serve.agent]]` for agent-c (token [`TOKEN_C`]).
fn agent_c() -> String {
    format!(
        "\n[[serve.agent]]\nname = \"agent-c\"\ntoken_sha256 = \"{}\"\n",
        hitl_gate::hex::sha256(TOKEN_C.as_bytes())
    )
}

/// A second `serve` on `w`'s data dir stops at once, naming the data dir and the first one's
/// PID; the first keeps its admin socket (list and approve still work); once the first is gone,
/// a new one starts on the same dir.
async fn one_serve_per_data_dir(w: World) {
    let first = ServeProcess::start(&w.policy, &w.data);
    let id = agent(&first.url, TOKEN_A)
        .create(&["delete", "deploy", "web"])
        .await;
    let start = Instant::now();
    let out = run_within(
        Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&w.data)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HITL_GATE_POLICY", &w.policy)
            .env("HITL_GATE_TEST_ROOT", w.dir.path()),
        Duration::from_secs(60),
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains(&format!("the data dir {} is in use", w.data.display()))
            && err.contains(&format!("pid {}", first.child.id())),
        "{err}"
    );
    assert!(
        stdout(&out).is_empty(),
        "it never started: {}",
        stdout(&out)
    );
    eprintln!("the second serve stopped after {:?}", start.elapsed());
    // The break-glass path still works on the first server.
    let out = w.cli(&["list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));
    let out = w.cli(&["approve", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The lock dies with its holder, however it dies.
    first.signal(Signal::SIGKILL);
    drop(first);
    let again = ServeProcess::start(&w.policy, &w.data);
    let (_, v) = agent(&again.url, TOKEN_A)
        .get(&format!("/api/v1/requests/{id}"))
        .await;
    assert_eq!(v["state"], "approved", "{v}");
    let out = w.cli(&["list", "--state", "approved"]);
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_the_same_data_dir_stops_and_the_first_keeps_its_socket() {
    one_serve_per_data_dir(World::new(&policy_with(""))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_the_same_data_dir_stops_on_postgresql_too() {
    let (policy, _url) = postgres::with_database(&policy_with(""));
    one_serve_per_data_dir(World::new(&policy)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_has_one_line_per_event_and_no_token_secret_or_diff() {
    let secret = "webhook-secret-never-logged";
    let w = World::new("");
    let secret_file = w.dir.path().join("hook.secret");
    std::fs::write(&secret_file, secret).unwrap();
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // A sink nobody listens on: every delivery fails.
    w.write(&policy_with(&format!(
        "[serve]\nescalate_after = \"10m\"\n\n[[serve.notify]]\nname = \"ops\"\nkind = \
         \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\nsecret_file = \"{}\"\nevents = \
         [\"created\", \"escalation\"]\n",
        free_port(),
        secret_file.display()
    )));
    let mut srv = ServeProcess::start_logged(&w.policy, &w.data, &[]);
    let a = agent(&srv.url, TOKEN_A);
    let ap = w.approver();

    let approved = a.create(&["delete", "deploy", "a"]).await;
    let line = srv
        .log_line(&["request created", &format!("id={approved}")])
        .await;
    for field in [
        "agent=agent-a",
        "on_behalf_of=alice",
        "tool=kubectl",
        "rule=",
    ] {
        assert!(line.contains(field), "{field}: {line}");
    }
    assert_eq!(ap.decide(&approved, "approve", Some("fine")).await.0, 200);
    let user = hitl_gate::server::auth::username(nix::unistd::getuid().as_raw());
    let by = format!("by=local:{user}");
    srv.log_line(&["request approved", &format!("id={approved}"), &by])
        .await;

    let rejected = a.create(&["delete", "deploy", "b"]).await;
    let reason = "reason-text-stays-out-of-the-log";
    assert_eq!(ap.decide(&rejected, "reject", Some(reason)).await.0, 200);
    srv.log_line(&["request rejected", &format!("id={rejected}"), &by])
        .await;

    let cancelled = a.create(&["delete", "deploy", "c"]).await;
    let (s, _) = a
        .post(&format!("/api/v1/requests/{cancelled}/cancel"), json!({}))
        .await;
    assert_eq!(s, 200);
    srv.log_line(&[
        "request cancelled",
        &format!("id={cancelled}"),
        "by=agent:agent-a",
    ])
    .await;

    // Escalated past escalate_after, then expired past its timeout (the server's clock, moved).
    let expired = a.create(&["delete", "deploy", "d"]).await;
    srv.clock.advance(Duration::from_secs(11 * 60));
    srv.log_line(&["request escalated", &format!("id={expired}")])
        .await;
    srv.log_line(&["notification delivery failed", "sink=ops"])
        .await;
    srv.clock.advance(Duration::from_secs(3600));
    srv.log_line(&[
        "request expired",
        &format!("id={expired}"),
        "by=system:reaper",
    ])
    .await;

    // Refusals, with their reasons.
    let stranger = "a-token-the-server-does-not-know";
    let (s, _) = agent(&srv.url, stranger).get("/api/v1/whoami").await;
    assert_eq!(s, 401);
    srv.log_line(&[
        "request refused",
        "status=401",
        "unknown agent token",
        "path=/api/v1/whoami",
    ])
    .await;
    let (s, _) = a.get("/api/v1/requests").await;
    assert_eq!(s, 403);
    srv.log_line(&["request refused", "status=403", "agents cannot"])
        .await;

    let log = srv.log_text();
    // One line per event.
    for (id, outcome) in [
        (&approved, "approved"),
        (&rejected, "rejected"),
        (&cancelled, "cancelled"),
        (&expired, "expired"),
    ] {
        let id = format!("id={id}");
        assert_eq!(srv.log_count(&["request created", &id]), 1, "{log}");
        assert_eq!(
            srv.log_count(&[&format!("request {outcome}"), &id]),
            1,
            "{log}"
        );
    }
    assert_eq!(srv.log_count(&["request escalated"]), 1, "{log}");

    // Stopping with a shim waiting: one line says so, not one per waiting client.
    let waiting = a.create(&["delete", "deploy", "e"]).await;
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.wait(&waiting, 60).await })
    };
    waiters_at_least(&srv.url, 1).await;
    srv.signal(Signal::SIGTERM);
    assert_eq!(waiter.await.unwrap().0, 503);
    assert!(srv.child.wait().unwrap().success());
    let log = srv.log_text();
    assert_eq!(srv.log_count(&["shutting down"]), 1, "{log}");
    assert_eq!(srv.log_count(&["request failed"]), 0, "{log}");
    // Never a token, a secret, a reason typed by a person, or diff text.
    for never in [TOKEN_A, stranger, secret, DIFF_TEXT, reason] {
        assert!(!log.contains(never), "{never:?} is in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_json_when_asked_and_the_flag_wins_over_the_policy() {
    let w = World::new(&policy_with("[serve]\nlog_format = \"json\"\n"));
    let srv = ServeProcess::start_logged(&w.policy, &w.data, &[]);
    let id = agent(&srv.url, TOKEN_A)
        .create(&["delete", "deploy", "web"])
        .await;
    srv.log_line(&["request created", &id]).await;
    let log = srv.log_text();
    let events: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let created = events
        .iter()
        .find(|e| e["message"] == "request created")
        .unwrap();
    assert_eq!(created["id"], id.as_str(), "{created}");
    assert_eq!(created["agent"], "agent-a", "{created}");
    assert_eq!(created["tool"], "kubectl", "{created}");
    assert_eq!(created["level"], "INFO", "{created}");
    assert!(!log.contains(DIFF_TEXT) && !log.contains(TOKEN_A), "{log}");
    drop(srv);

    // --log-format text overrides the policy.
    let data = w.dir.path().join("data2");
    let srv = ServeProcess::start_logged(&w.policy, &data, &["--log-format", "text"]);
    let id = agent(&srv.url, TOKEN_A)
        .create(&["delete", "deploy", "web"])
        .await;
    let line = srv.log_line(&["request created", &id]).await;
    assert!(serde_json::from_str::<Value>(&line).is_err(), "{line}");
    assert!(line.contains(&format!("id={id}")), "{line}");
}

/// Polls `GET /api/v1/whoami` with `token` until it answers `status` (at most 60 s).
async fn whoami_until(url: &str, token: &str, status: u16) -> Value {
    let start = Instant::now();
    loop {
        let (s, v) = agent(url, token).get("/api/v1/whoami").await;
        if s == status {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "whoami stayed {s}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_good_policy_and_keeps_the_old_one_when_the_new_fails() {
    let w = World::new(&policy_with(""));
    let mut srv = ServeProcess::start_logged(&w.policy, &w.data, &[]);
    let (s, v) = agent(&srv.url, TOKEN_C).get("/api/v1/whoami").await;
    assert_eq!(s, 401, "{v}");

    // A new agent, and agent-b gone: SIGHUP puts both in force without a restart.
    let with_c = policy_with(&agent_c()).replace(
        &format!(
            "[[serve.agent]]\nname = \"agent-b\"\ntoken_sha256 = \"{}\"\n",
            hitl_gate::hex::sha256(TOKEN_B.as_bytes())
        ),
        "",
    );
    w.write(&with_c);
    srv.signal(Signal::SIGHUP);
    let v = whoami_until(&srv.url, TOKEN_C, 200).await;
    assert_eq!(v["name"], "agent-c", "{v}");
    whoami_until(&srv.url, TOKEN_B, 401).await;
    srv.log_line(&["policy reloaded", "by=SIGHUP", "agents=2"])
        .await;
    let c = agent(&srv.url, TOKEN_C);
    let id = c.create(&["delete", "deploy", "web"]).await;

    // A file that does not load: the old policy stays in force, and the log says why.
    w.write("version = 1\n[[rule]]\nname = \n");
    srv.signal(Signal::SIGHUP);
    let line = srv
        .log_line(&["policy reload failed", "by=SIGHUP", "old policy stays"])
        .await;
    assert!(line.contains("line 3"), "the error says where: {line}");
    assert_eq!(c.get("/api/v1/whoami").await.0, 200);
    assert_eq!(agent(&srv.url, TOKEN_A).get("/api/v1/whoami").await.0, 200);
    let (_, v) = c.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(v["state"], "pending", "{v}");
    let alive = srv.child.try_wait().unwrap();
    assert!(alive.is_none(), "serve ended: {alive:?}");
    // Fixed again, it loads again.
    w.write(&with_c);
    srv.signal(Signal::SIGHUP);
    let start = Instant::now();
    while srv.log_count(&["policy reloaded", "by=SIGHUP"]) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            srv.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hitl_gate_reload_reloads_over_the_admin_socket_and_only_there() {
    let w = World::new(&policy_with(""));
    let srv = ServeProcess::start_logged(&w.policy, &w.data, &[]);

    // A good file, with a setting that needs a restart: loaded, and that setting named.
    w.write(&policy_with(&format!(
        "{}\n[serve]\nlisten = \"127.0.0.1:1\"\n",
        agent_c()
    )));
    let out = w.cli(&["reload"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("policy reloaded from"), "{text}");
    assert!(text.contains("3 agents"), "{text}");
    assert!(
        text.contains("in force only after a restart: [serve] listen"),
        "{text}"
    );
    assert_eq!(
        whoami_until(&srv.url, TOKEN_C, 200).await["name"],
        "agent-c"
    );
    let user = hitl_gate::server::auth::username(nix::unistd::getuid().as_raw());
    srv.log_line(&[
        "policy reloaded",
        &format!("by=local:{user}"),
        "[serve] listen",
    ])
    .await;

    // A bad file: refused, the reason printed once, the old policy still in force.
    w.write("version = 1\n[[serve.agent]]\nname = \"x\"\n");
    let out = w.cli(&["reload"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("hitl-gate: server answered 422: the old policy stays in force:"),
        "{err}"
    );
    assert!(err.contains("token_sha256"), "the reason: {err}");
    assert_eq!(agent(&srv.url, TOKEN_C).get("/api/v1/whoami").await.0, 200);

    // An agent cannot reload, and without a token nobody can.
    let (s, v) = agent(&srv.url, TOKEN_A)
        .post("/api/v1/reload", json!({}))
        .await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/api/v1/reload", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(srv.log_count(&["policy reloaded"]), 1, "{}", srv.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_names_the_caller_and_an_unknown_token_learns_only_that() {
    let runner = format!(
        "[[serve.runner]]\nname = \"writer\"\ntoken_sha256 = \"{}\"\nagents = [\"agent-a\"]\n",
        hitl_gate::hex::sha256(b"token-of-the-writer")
    );
    let srv = TestServer::start(&policy_with(&runner)).await;
    let (s, v) = srv.agent(TOKEN_A).get("/api/v1/whoami").await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"kind": "agent", "name": "agent-a", "on_behalf_of": "alice"})
    );
    let (_, v) = srv.agent(TOKEN_B).get("/api/v1/whoami").await;
    assert_eq!(
        v,
        json!({"kind": "agent", "name": "agent-b", "on_behalf_of": null})
    );
    let (_, v) = srv.agent("token-of-the-writer").get("/api/v1/whoami").await;
    assert_eq!(
        v,
        json!({"kind": "runner", "name": "writer", "on_behalf_of": null, "agents": ["agent-a"]})
    );
    let (s, v) = srv.approver().request("GET", "/api/v1/whoami", None).await;
    let user = hitl_gate::server::auth::username(nix::unistd::getuid().as_raw());
    assert_eq!(s, 200);
    assert_eq!(v["kind"], "approver");
    assert_eq!(v["name"], format!("local:{user}"));
    let (s, v) = srv.agent("not-a-token").get("/api/v1/whoami").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")), "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.starts_with("unknown agent token"), "{message}");
    assert!(!message.contains("not-a-token"), "{message}");
    // whoami answers; it grants nothing: the agent still cannot list or decide.
    let (s, _) = srv.agent(TOKEN_A).get("/api/v1/requests").await;
    assert_eq!(s, 403);
    srv.stop().await;
}
