//! Several replicas of `hitl-gate serve` (child processes of the built binary) on one database of
//! the throwaway PostgreSQL cluster (`support::postgres`), sharing one signing key:
//! - a client waiting on one replica gets a decision made on another at once (LISTEN/NOTIFY),
//!   also after the listening connection was cut;
//! - a shim whose replica is killed (SIGKILL) while it waits goes on on the next URL and runs
//!   what was approved there;
//! - racing decisions on three replicas and the reaper leave one terminal state and one audit
//!   row per request, and one chain that verifies;
//! - the reaper's holder killed, expiry still happens on time on another replica;
//! - a replica with another signing key refuses to start, and so does one whose database has a
//!   newer schema;
//! - the database restarted during a decision: the decision fails cleanly and succeeds when
//!   retried; while it is down, `/readyz` is 503 and `/healthz` says so;
//! - right after a database restart, the first write on every replica succeeds (the writer
//!   makes its connection again before it begins a transaction), and the log says so; a
//!   replica whose writer's connection is dead is not ready, even while its reads work;
//! - replicas run as a role with docs/deploy.md's grants, which cannot change the audit log;
//!   a row the owner changes behind the triggers is found and located by `audit verify`;
//! - the Kubernetes example passes kubectl's client dry run;
//! - three replicas send each notification once (the reaper's holder delivers);
//! - an approver signed in through one replica decides on another (sessions live in the
//!   database), against the real OIDC provider.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::gate::{finish, KubeGated};
use crate::support::postgres;
use crate::support::server::{
    policy_with, waiters_at_least, Agent, Approver, ServeProcess, TestServer, TOKEN_A,
};
use crate::support::{code, stderr};

/// N replicas on one fresh database.
struct Replicas {
    dir: tempfile::TempDir,
    db: String,
    policy: PathBuf,
    procs: Vec<Option<ServeProcess>>,
}

impl Replicas {
    fn start(n: usize, extra: &str) -> Replicas {
        Self::start_on(postgres::shared().create_db(), n, extra)
    }

    /// N replicas on the database at `db`.
    fn start_on(db: String, n: usize, extra: &str) -> Replicas {
        Self::start_keyed(db, n, extra, None)
    }

    /// N replicas on the database at `db`, with the signing key file `key` (else a new one).
    fn start_keyed(db: String, n: usize, extra: &str, key: Option<&Path>) -> Replicas {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, postgres::with_url(&policy_with(extra), &db)).unwrap();
        let mut r = Replicas {
            dir,
            db,
            policy,
            procs: Vec::new(),
        };
        for i in 0..n {
            let data = r.data(i);
            std::fs::create_dir_all(&data).unwrap();
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
            // The same key file on every replica.
            let from = match (i, key) {
                (0, None) => None,
                (0, Some(k)) => Some(k.to_path_buf()),
                _ => Some(r.data(0).join(hitl_gate::signing::KEY_FILE)),
            };
            if let Some(from) = from {
                let to = data.join(hitl_gate::signing::KEY_FILE);
                std::fs::copy(from, &to).unwrap();
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            r.procs
                .push(Some(ServeProcess::start_logged(&r.policy, &data, &[])));
        }
        r
    }

    fn data(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("r{i}"))
    }

    fn proc(&self, i: usize) -> &ServeProcess {
        self.procs[i].as_ref().expect("running")
    }

    fn url(&self, i: usize) -> String {
        self.procs[i].as_ref().expect("running").url.clone()
    }

    fn agent(&self, i: usize) -> Agent {
        Agent {
            url: self.url(i),
            token: TOKEN_A.into(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    fn approver(&self, i: usize) -> Approver {
        Approver {
            socket: self.data(i).join("admin.sock"),
        }
    }

    fn kill(&mut self, i: usize) {
        let p = self.procs[i].take().expect("running");
        p.signal(Signal::SIGKILL);
    }

    fn public_key(&self) -> String {
        let out = crate::support::run(
            Command::new(crate::support::bin())
                .args(["keys", "show", "--data-dir"])
                .arg(self.data(0)),
        );
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `hitl-gate audit verify` of the shared database.
    fn verify(&self) -> String {
        let out = crate::support::run(Command::new(crate::support::bin()).args([
            "audit",
            "verify",
            "--database-url",
            &self.db,
            "--public-key",
            &self.public_key(),
        ]));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Replica `i`'s `/metrics` text.
    async fn metrics(&self, i: usize) -> String {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{}/metrics", self.url(i)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Whether replica `i` says it runs the reaper.
    async fn leads(&self, i: usize) -> bool {
        self.metrics(i)
            .await
            .lines()
            .any(|l| l == "hitl_gate_reaper_leader 1")
    }
}

/// A long-poll of `secs` on request `id` by `agent`, started now: its status, answer and
/// how long it took.
fn wait_in_background(
    agent: Agent,
    id: &str,
    secs: u64,
) -> tokio::task::JoinHandle<(u16, serde_json::Value, Duration)> {
    let id = id.to_string();
    tokio::spawn(async move {
        let start = Instant::now();
        let (s, v) = agent.wait(&id, secs).await;
        (s, v, start.elapsed())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_one_replica_is_woken_by_a_decision_on_another() {
    let r = Replicas::start(3, "");
    let id = r.agent(0).create(&["delete", "pod", "a"]).await;
    let waiting = wait_in_background(r.agent(1), &id, 60);
    waiters_at_least(&r.url(1), 1).await;
    let (s, v) = r.approver(2).decide(&id, "approve", Some("ok")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v, took) = waiting.await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "approved", "{v}");
    assert!(
        took < Duration::from_secs(30),
        "woken by the decision, not by the end of the wait: {took:?}"
    );
    assert!(r.verify().starts_with("audit log ok: 2 rows"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_whose_replica_is_killed_goes_on_on_the_next_and_runs_what_was_approved() {
    let mut r = Replicas::start(2, "");
    // The shim's world, pointed at the replicas (a server of its own stays unused).
    let srv = TestServer::start(&policy_with("")).await;
    let w = KubeGated::around(crate::support::gate::Gated::with_server(srv, "")).await;
    w.fake.put_deployment("prod", "web");
    let text = std::fs::read_to_string(&w.agent_policy).unwrap();
    let text = text
        .replace(
            &format!("url = \"{}\"", w.srv.url),
            &format!("url = [\"{}\", \"{}\"]", r.url(0), r.url(1)),
        )
        .replace(&w.srv.public_key, &r.public_key());
    std::fs::write(&w.agent_policy, text).unwrap();
    let mut child = w.kubectl(&["delete", "deployment", "web", "-n", "prod"]);
    // Wait for its request on the shared database, then kill the replica it waits on.
    let start = Instant::now();
    let id = loop {
        let (_, v) = r
            .approver(1)
            .request("GET", "/api/v1/requests?state=pending", None)
            .await;
        if let Some(id) = v
            .as_array()
            .and_then(|a| a.first())
            .map(|x| x["id"].clone())
        {
            break id.as_str().unwrap().to_string();
        }
        assert!(child.try_wait().unwrap().is_none(), "the shim ended");
        assert!(start.elapsed() < Duration::from_secs(120), "no request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    r.kill(0);
    // The shim goes on waiting on the next replica; then it is decided there.
    waiters_at_least(&r.url(1), 1).await;
    let (s, v) = r.approver(1).decide(&id, "approve", Some("ok")).await;
    assert_eq!(s, 200, "{v}");
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_none());
    let (_, all) = r
        .approver(1)
        .request("GET", "/api/v1/requests?state=all", None)
        .await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_decisions_on_three_replicas_and_the_reaper_end_each_request_once() {
    // Short deadlines, so the reaper races the humans too.
    let r = Replicas::start(
        3,
        "[[rule]]\nname = \"short\"\ntools = [\"kubectl\"]\naction = \"gate\"\ntimeout = \"1s\"\n",
    );
    const ROUNDS: usize = 200;
    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        let id = r
            .agent(round % 3)
            .create(&["delete", "pod", &format!("p{round}")])
            .await;
        ids.push(id);
    }
    let mut tasks = Vec::new();
    for (round, id) in ids.iter().enumerate() {
        let (a, b, c) = (r.approver(0), r.approver(1), r.agent(2));
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let approve = a.decide(&id, "approve", Some("a"));
            let reject = b.decide(&id, "reject", Some("b"));
            let cancel = async {
                if round % 2 == 0 {
                    c.post(
                        &format!("/api/v1/requests/{id}/cancel"),
                        serde_json::json!({}),
                    )
                    .await
                } else {
                    (0, serde_json::Value::Null)
                }
            };
            let (x, y, z) = tokio::join!(approve, reject, cancel);
            [x.0, y.0, z.0].iter().filter(|s| **s == 200).count()
        }));
    }
    for (t, id) in tasks.into_iter().zip(&ids) {
        let won = t.await.unwrap();
        assert!(won <= 1, "request {id}: {won} decisions succeeded");
    }
    // The reaper expires whatever nobody won (as soon as the deadline passed and its holder
    // looked: however long that takes on a busy machine).
    let start = Instant::now();
    let all = loop {
        let (_, all) = r
            .approver(0)
            .request("GET", "/api/v1/requests?state=all&limit=1000", None)
            .await;
        let all = all.as_array().unwrap().clone();
        assert_eq!(all.len(), ROUNDS);
        if all.iter().all(|v| v["state"] != "pending") {
            break all;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "still pending: {}",
            all.iter().filter(|v| v["state"] == "pending").count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(all.iter().all(|v| v["state"] != "pending"), "all ended");
    let rows = crate::support::server::audit_rows_in(&r.db);
    for id in &ids {
        let ends = rows
            .iter()
            .filter(|row| row.request_id.as_deref() == Some(id))
            .filter(|row| {
                ["approved", "rejected", "expired", "cancelled"].contains(&row.kind.as_str())
            })
            .count();
        assert_eq!(ends, 1, "request {id} has {ends} terminal audit rows");
    }
    let report = r.verify();
    assert!(report.starts_with("audit log ok: "), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_moves_to_another_replica_when_its_holder_is_killed() {
    let mut r = Replicas::start(
        2,
        "[[rule]]\nname = \"hour\"\ntools = [\"kubectl\"]\naction = \"gate\"\ntimeout = \"1h\"\n",
    );
    // One of them leads (within a second or two).
    let start = Instant::now();
    let leader = loop {
        let mut leading = Vec::new();
        for i in 0..2 {
            if r.leads(i).await {
                leading.push(i);
            }
        }
        assert!(leading.len() <= 1, "two reapers: {leading:?}");
        if let [i] = leading[..] {
            break i;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no reaper");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let other = 1 - leader;
    r.kill(leader);
    let id = r.agent(other).create(&["delete", "pod", "x"]).await;
    // The other one takes the lock over.
    let start = Instant::now();
    while !r.leads(other).await {
        assert!(start.elapsed() < Duration::from_secs(60), "no new reaper");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, v) = r.agent(other).get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("pending")), "{v}");
    // Past the deadline (the replicas share the test clock): it expires it.
    r.procs[other]
        .as_ref()
        .unwrap()
        .clock
        .advance(Duration::from_secs(3601));
    let (s, v) = r.agent(other).wait(&id, 60).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "expired", "expired by the other replica: {v}");
    assert!(r.leads(other).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_signing_key_refuses_to_start() {
    let r = Replicas::start(1, "");
    let data = r.data(9);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = crate::support::run(
        Command::new(crate::support::bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("HITL_GATE_POLICY", &r.policy)
            .env("HITL_GATE_TEST_ROOT", r.dir.path()),
    );
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("same key file"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_fails_a_decision_cleanly_and_the_retry_succeeds() {
    // A cluster of its own: the restart must not cut the other tests' connections.
    let pg = postgres::TempPostgres::start();
    let r = Replicas::start_on(pg.create_db(), 1, "");
    let id = r.agent(0).create(&["delete", "pod", "r"]).await;
    // While the database is down the replica is alive but not ready.
    let probe = |path: &'static str| {
        let url = format!("{}{path}", r.url(0));
        async move {
            let resp = reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    assert_eq!(probe("/readyz").await.0, 200);
    pg.stop_server();
    assert_eq!(probe("/readyz").await.0, 503);
    assert_eq!(
        probe("/healthz").await,
        (200, "ok\ndatabase: unreachable\n".to_string())
    );
    pg.start_server();
    // The first decision after the restart may meet a dead connection: a 5xx, nothing written.
    let (s, v) = r.approver(0).decide(&id, "approve", Some("ok")).await;
    if s != 200 {
        assert!(s >= 500, "{s} {v}");
        let (_, now) = r
            .approver(0)
            .request("GET", &format!("/api/v1/requests/{id}"), None)
            .await;
        assert_eq!(now["state"], "pending", "{now}");
        let start = Instant::now();
        loop {
            let (s, v) = r.approver(0).decide(&id, "approve", Some("ok")).await;
            if s == 200 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{s} {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (_, now) = r
        .approver(0)
        .request("GET", &format!("/api/v1/requests/{id}"), None)
        .await;
    assert_eq!(now["state"], "approved", "{now}");
    assert!(r.verify().starts_with("audit log ok: 2 rows"));
}

/// `GET path` on replica `i`: its status and body.
async fn probe(r: &Replicas, i: usize, path: &str) -> (u16, String) {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}{path}", r.url(i)))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_database_restart_the_first_write_on_every_replica_succeeds() {
    // A cluster of its own: the restart must not cut the other tests' connections.
    let pg = postgres::TempPostgres::start();
    let r = Replicas::start_on(pg.create_db(), 2, "");
    let approved = r.agent(0).create(&["delete", "pod", "a"]).await;
    let cancelled = r.agent(0).create(&["delete", "pod", "b"]).await;
    pg.stop_server();
    // While it is down a write fails cleanly, and the log says why.
    let (s, v) = r.approver(0).decide(&approved, "approve", Some("ok")).await;
    assert!(s >= 500, "{s} {v}");
    r.proc(0)
        .log_line(&["request failed", "status=500", "store_failed"])
        .await;
    pg.start_server();
    // Right after the restart, the first write on each replica: the approver's approve on one,
    // the shim's cancel on the other. Both connections of the writers died with the database.
    let (s, v) = r.approver(0).decide(&approved, "approve", Some("ok")).await;
    assert_eq!(s, 200, "the first approve after the restart: {v}");
    let (s, v) = r
        .agent(1)
        .post(
            &format!("/api/v1/requests/{cancelled}/cancel"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, 200, "the first cancel after the restart: {v}");
    for i in 0..2 {
        assert_eq!(probe(&r, i, "/readyz").await.0, 200);
        r.proc(i)
            .log_line(&["the database writer's connection was lost and is made again"])
            .await;
    }
    let (_, v) = r
        .approver(1)
        .request("GET", &format!("/api/v1/requests/{approved}"), None)
        .await;
    assert_eq!(v["state"], "approved", "{v}");
    assert!(r.verify().starts_with("audit log ok: 4 rows"));
    // One of them runs the reaper, and said so.
    let took = |i: usize| r.proc(i).log_count(&["took the reaper's lock"]);
    assert!(took(0) + took(1) >= 1, "{}", r.proc(0).log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_not_ready_while_the_writers_connection_is_dead() {
    let pg = postgres::TempPostgres::start();
    let db = pg.create_db();
    let name = db.rsplit('/').next().unwrap().to_string();
    let admin = pg.url("postgres");
    let r = Replicas::start_on(db, 1, "");
    let a = r.agent(0);
    let id = a.create(&["delete", "pod", "r"]).await;
    assert_eq!(probe(&r, 0, "/readyz").await.0, 200);
    // No new connection to the database, and the writer's own cut: reads still work on the
    // connections the replica holds, but nothing could be written.
    postgres::try_sql(
        &admin,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
    )
    .await
    .unwrap();
    let cut = postgres::terminate_named(&admin, &name, "hitl-gate-writer").await;
    assert_eq!(cut, 1, "the writer's connection is named");
    assert_eq!(
        a.get(&format!("/api/v1/requests/{id}")).await.0,
        200,
        "reads work"
    );
    assert_eq!(
        probe(&r, 0, "/readyz").await,
        (503, "database unreachable\n".to_string())
    );
    // Alive, and its reads work: only readiness says the writer cannot write.
    assert_eq!(
        probe(&r, 0, "/healthz").await,
        (200, "ok\ndatabase: reachable\n".to_string())
    );
    r.proc(0).log_line(&["not ready"]).await;
    // Connections allowed again: ready (the writer's connection is made again), and the next
    // write succeeds at once.
    postgres::try_sql(
        &admin,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    )
    .await
    .unwrap();
    assert_eq!(probe(&r, 0, "/readyz").await.0, 200);
    r.proc(0).log_line(&["ready again"]).await;
    let (s, v) = r.approver(0).decide(&id, "approve", Some("ok")).await;
    assert_eq!(s, 200, "{v}");
}

/// The replicas' data dirs hold no database: everything is in PostgreSQL.
#[test]
fn replicas_keep_nothing_but_their_key_in_the_data_dir() {
    let r = Replicas::start(1, "");
    assert!(!Path::new(&r.data(0).join("hitl-gate.db")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_example_passes_a_client_dry_run() {
    let fake = crate::support::kube::FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path(), &[("test", "default")]);
    fake.put(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "hitl-gate"}}));
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/hitl-gate.yaml"
    );
    let out = crate::support::run(
        Command::new(crate::support::tools::kubectl())
            .args(["apply", "--dry-run=client", "-o", "name", "-f", manifest])
            .env("KUBECONFIG", &kubeconfig)
            .env("KUBERC", "off"),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let names = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "secret/hitl-gate",
        "configmap/hitl-gate-policy",
        "deployment.apps/hitl-gate",
        "service/hitl-gate",
    ] {
        assert!(names.lines().any(|l| l == want), "{want}: {names}");
    }
    // Three replicas, probed on /readyz and /healthz, and nothing written to the fake.
    let text = std::fs::read_to_string(manifest).unwrap();
    for want in ["replicas: 3", "path: /readyz", "path: /healthz"] {
        assert!(text.contains(want), "{want}");
    }
    assert!(fake.requests().iter().all(|r| !r.writes()));
    // The policy it carries loads.
    let policy = text
        .split("server.toml: |\n")
        .nth(1)
        .unwrap()
        .split("\n---")
        .next()
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    hitl_gate::policy::load::parse(&policy).unwrap_or_else(|e| panic!("{e}\n{policy}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_run_as_a_role_that_cannot_change_the_audit_log() {
    let owner_db = postgres::shared().create_db();
    // The owner's first start creates the schema.
    let mut first = Replicas::start_on(owner_db.clone(), 1, "");
    first.kill(0);
    let key = first.data(0).join(hitl_gate::signing::KEY_FILE);
    // The grants of docs/deploy.md, as written there (but the role and database creation).
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy.md")).unwrap();
    let block = doc
        .split("<!-- grants -->\n```sql\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let grants: String = block
        .lines()
        .filter(|l| l.starts_with("GRANT"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(grants.contains("ON audit"), "{block}");
    postgres::try_sql(&owner_db, "CREATE ROLE hitl_app LOGIN")
        .await
        .unwrap();
    postgres::try_sql(&owner_db, &grants).await.unwrap();
    let app_db = owner_db.replace("postgres://hitl@", "postgres://hitl_app@");
    let r = Replicas::start_keyed(app_db.clone(), 1, "", Some(&key));
    let id = r.agent(0).create(&["delete", "pod", "g"]).await;
    let (s, v) = r.approver(0).decide(&id, "approve", Some("ok")).await;
    assert_eq!(s, 200, "{v}");
    for sql in [
        "UPDATE audit SET kind = 'x'",
        "DELETE FROM audit",
        "DELETE FROM checkpoints",
        "ALTER TABLE audit DISABLE TRIGGER ALL",
    ] {
        let e = postgres::try_sql(&app_db, sql).await.unwrap_err();
        assert!(
            e.contains("permission denied") || e.contains("must be owner"),
            "{sql}: {e}"
        );
    }
    // The triggers refuse the owner too.
    let e = postgres::try_sql(&owner_db, "UPDATE audit SET kind = 'x'")
        .await
        .unwrap_err();
    assert!(e.contains("append-only"), "{e}");
    assert!(r.verify().starts_with("audit log ok: 2 rows"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_listener_connection_is_made_again_and_wakes_its_waiters() {
    let r = Replicas::start(2, "");
    let id = r.agent(0).create(&["delete", "pod", "l"]).await;
    let waiting = wait_in_background(r.agent(0), &id, 60);
    waiters_at_least(&r.url(0), 1).await;
    // Cut every replica's listening connection, then decide on B at once: the notification is
    // lost with the connection; the reconnect wakes the waiter, which reads the decision.
    let cut = postgres::cut_listeners(&r.db).await;
    assert_eq!(cut, 2, "one listener per replica");
    let (s, v) = r.approver(1).decide(&id, "approve", Some("ok")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v, took) = waiting.await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "approved", "{v}");
    assert!(
        took < Duration::from_secs(50),
        "woken after the reconnect, not at the end of the wait: {took:?}"
    );
    // (A waiter that came late read the decision at once: wait for the reconnect itself.)
    let start = Instant::now();
    loop {
        let metrics = r.metrics(0).await;
        let reconnects: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("hitl_gate_listener_reconnects_total "))
            .unwrap()
            .parse()
            .unwrap();
        if reconnects >= 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_changed_behind_the_triggers_is_found_and_located() {
    let r = Replicas::start(1, "");
    for i in 0..3 {
        let id = r
            .agent(0)
            .create(&["delete", "pod", &format!("t{i}")])
            .await;
        let (s, v) = r.approver(0).decide(&id, "approve", Some("ok")).await;
        assert_eq!(s, 200, "{v}");
    }
    assert!(r.verify().starts_with("audit log ok: 6 rows"));
    // The owner (here the superuser) turns the trigger off and edits row 4.
    postgres::try_sql(
        &r.db,
        "ALTER TABLE audit DISABLE TRIGGER audit_append_only; \
         UPDATE audit SET body = replace(body, 'ok', 'OK') WHERE seq = 4; \
         ALTER TABLE audit ENABLE TRIGGER audit_append_only;",
    )
    .await
    .unwrap();
    let out = crate::support::run(Command::new(crate::support::bin()).args([
        "audit",
        "verify",
        "--database-url",
        &r.db,
        "--public-key",
        &r.public_key(),
    ]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("audit log broken at seq 4:"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_sent_once_whatever_the_number_of_replicas() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    // A webhook receiver that counts what it is sent.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let got = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = got.clone();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            let counted = counted.clone();
            tokio::spawn(async move {
                crate::support::server::read_message(&mut c).await;
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = c
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "s3cret\n").unwrap();
    std::fs::set_permissions(secret.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = Replicas::start(
        3,
        &format!(
            "[[serve.notify]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret_file = \"{}\"\nevents = [\"created\"]\n",
            secret.path().display()
        ),
    );
    for i in 0..3 {
        r.agent(i)
            .create(&["delete", "pod", &format!("n{i}")])
            .await;
    }
    let start = Instant::now();
    while got.load(Ordering::SeqCst) < 3 {
        assert!(start.elapsed() < Duration::from_secs(60), "not delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One replica delivered all three, though each was created on another replica (once it
    // has recorded the third delivery).
    let start = Instant::now();
    let delivered = loop {
        let mut delivered = Vec::new();
        for i in 0..3 {
            let text = r.metrics(i).await;
            delivered.push(
                text.lines()
                    .find_map(|l| {
                        l.strip_prefix(
                            "hitl_gate_notify_deliveries_total{sink=\"ops\",outcome=\"delivered\"} ",
                        )
                    })
                    .map_or(0, |n| n.parse::<u64>().unwrap()),
            );
        }
        delivered.sort();
        if delivered.iter().sum::<u64>() >= 3 {
            break delivered;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{delivered:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivered, [0, 0, 3]);
    // No replica sends them again (a negative check: the pause gives a second sender time to
    // show itself; it cannot fail because the machine is slow).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(got.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_a_newer_schema_is_refused() {
    let mut r = Replicas::start(1, "");
    r.kill(0);
    postgres::try_sql(&r.db, "INSERT INTO hitl_gate_schema (version) VALUES (99)")
        .await
        .unwrap();
    let out = crate::support::run(
        Command::new(crate::support::bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(r.data(0))
            .env("HITL_GATE_POLICY", &r.policy)
            .env("HITL_GATE_TEST_ROOT", r.dir.path()),
    );
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("schema version 99, newer than this hitl-gate"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_signed_in_on_one_replica_decides_on_another() {
    use crate::support::oidc::{web_policy, Provider, WebClient, CLIENT_SECRET};
    // Two replicas behind one public URL (a load balancer's; here replica A's address), on one
    // database, with one key. The approver signs in through A; the balancer then sends the
    // same browser, with the same cookies, to B.
    let dir = tempfile::tempdir().unwrap();
    let (la, lb) = (
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let (url_a, url_b) = (
        format!("http://{}", la.local_addr().unwrap()),
        format!("http://{}", lb.local_addr().unwrap()),
    );
    let idp = Provider::start(dir.path(), &url_a);
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let db = postgres::shared().create_db();
    let policy = postgres::with_url(&web_policy(&url_a, &idp.issuer, &secret, "", ""), &db);
    let a = TestServer::start_on(
        la,
        tempfile::tempdir().unwrap(),
        dir.path().join("a"),
        &policy,
    )
    .await;
    let b_data = dir.path().join("b");
    std::fs::create_dir_all(&b_data).unwrap();
    std::fs::set_permissions(&b_data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = hitl_gate::signing::KEY_FILE;
    std::fs::copy(a.data.join(key), b_data.join(key)).unwrap();
    let b = TestServer::start_on(lb, tempfile::tempdir().unwrap(), b_data, &policy).await;

    let id = a.agent(TOKEN_A).create(&["delete", "pod", "s"]).await;
    let mut c = WebClient::new(&url_a);
    c.sign_in(&url_a, "alice").await;
    c.set_cookies(&url_b, c.cookies(&url_a));
    let r = c
        .decide(
            &url_b,
            &id,
            &[("decision", "approve"), ("comment", "from B")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, v) = a
        .agent(TOKEN_A)
        .get(&format!("/api/v1/requests/{id}"))
        .await;
    assert_eq!(v["state"], "approved", "{v}");
    assert_eq!(v["decision"]["comment"], "from B", "{v}");
    drop(b);
}
