//! Gated terraform, end to end: the built binary under the name `terraform` (and `tofu`), the
//! pinned real terraform 1.0.3 and 1.15.5 (and the machine's 1.11.4 when present) with the null
//! provider offline, and a real server on `127.0.0.1:0` whose approver decides over the admin
//! socket. Each test checks what ran by reading terraform's own state afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::gate::{finish, Gated};
use crate::support::server::{policy_with, TestServer};
use crate::support::{bin, code, stderr, tools};

/// A config with `n` null_resources whose trigger is `var.n`.
fn config(n: usize) -> String {
    let mut s = String::from(
        "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\", version = \"2.1.2\" }\n  }\n}\nvariable \"n\" {\n  default = \"1\"\n}\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "resource \"null_resource\" \"r{i}\" {{\n  triggers = {{ n = var.n }}\n}}\n"
        ));
    }
    s
}

/// One test's world: the generic gate world (sandbox, server, agent policy) with terraform and
/// an initialised config in `work/infra`.
struct World {
    g: Gated,
    infra: PathBuf,
}

impl std::ops::Deref for World {
    type Target = Gated;
    fn deref(&self) -> &Gated {
        &self.g
    }
}

impl World {
    /// `server_extra` goes into the server's policy, `agent_extra` into the shim's.
    async fn new(terraform: &Path, server_extra: &str, agent_extra: &str) -> World {
        let g = Gated::new(server_extra, agent_extra).await;
        g.sb.add_real("terraform", terraform);
        g.sb.add_real("tofu", terraform);
        let infra = g.sb.work.join("infra");
        std::fs::create_dir_all(&infra).unwrap();
        std::fs::write(infra.join("main.tf"), config(2)).unwrap();
        let w = World { g, infra };
        let out = w.direct(&[
            "init",
            "-input=false",
            &format!("-plugin-dir={}", tools::provider_dir().display()),
        ]);
        assert_eq!(code(&out), 0, "init: {}", stderr(&out));
        w
    }

    /// The real terraform, directly, in `infra`.
    fn direct(&self, args: &[&str]) -> Output {
        let mut c = self.sb.direct("terraform");
        c.args(args).current_dir(&self.infra);
        crate::support::run(&mut c)
    }

    /// The resources in terraform's state.
    fn state(&self) -> Vec<String> {
        let out = self.direct(&["state", "list"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.spawn_in("terraform", &self.infra, args, &[])
    }

    /// Approves `req`, then expects the shim to refuse the run (exit 88, `needle` in its
    /// message) with nothing applied.
    async fn approve_expecting_refusal(&self, child: Child, req: &Value, needle: &str) {
        self.decide(req["id"].as_str().unwrap(), "approve", "ok")
            .await;
        let out = finish(child).await;
        assert_eq!(code(&out), 88, "{}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
        assert!(self.state().is_empty(), "nothing applied");
    }
}

/// The terraform versions every core test runs against: the pinned 1.0.3 and 1.15.5, and the
/// machine's /usr/local/bin/terraform (1.11.4 on these machines) when it exists.
fn versions() -> Vec<PathBuf> {
    let mut v = vec![tools::terraform_1_0(), tools::terraform_1_15()];
    let local = PathBuf::from("/usr/local/bin/terraform");
    if local.is_file() {
        v.push(local);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_apply_creates_exactly_the_planned_resources_on_every_version() {
    for tf in versions() {
        let w = World::new(&tf, "", "").await;
        let mut child = w.spawn(&["apply", "-auto-approve"]);
        let req = w.pending(&mut child).await;
        let text = req["diff"]["text"].as_str().unwrap();
        assert!(
            text.contains("Summary: +2 ~0 -0"),
            "{}: {text}",
            tf.display()
        );
        assert!(text.contains("+ null_resource.r0 (create)"), "{text}");
        assert!(text.contains("--- terraform's own text ---"), "{text}");
        assert!(
            text.contains("Plan: 2 to add, 0 to change, 0 to destroy."),
            "{text}"
        );
        assert!(
            !text.contains('\x1b'),
            "no colour codes for approvers: {text}"
        );
        assert_eq!(req["artifact_sha256"].as_array().unwrap().len(), 1);
        assert!(w.state().is_empty(), "nothing applied before the approval");
        w.decide(req["id"].as_str().unwrap(), "approve", "fine")
            .await;
        let out = finish(child).await;
        assert_eq!(code(&out), 0, "{}: {}", tf.display(), stderr(&out));
        assert_eq!(w.state(), ["null_resource.r0", "null_resource.r1"]);
        let err = stderr(&out);
        assert!(err.contains("approved by local:"), "{err}");
        // Planned once, by the shim; the apply used the plan file (terraform says so when it
        // applies a saved plan: no "Plan:" line on stdout, only the apply).
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("Apply complete! Resources: 2 added"),
            "{stdout}"
        );
        assert!(!stdout.contains("Plan: 2 to add"), "re-planned? {stdout}");
        let _ = w.g.srv.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tofu_takes_the_same_path() {
    let w = World::new(&tools::terraform_1_0(), "", "").await;
    // A run dir left by a process that no longer exists (pid 2^22 + 1 is above Linux's limit).
    let uid = nix::unistd::getuid().as_raw();
    let private = w.tmp.join(format!("hitl-gate-{uid}"));
    let stale = private.join("run-4194305-dead");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut child = w.spawn_in("tofu", &w.infra, &["apply"], &[]);
    let req = w.pending(&mut child).await;
    assert_eq!(req["tool"], "tofu");
    assert!(!stale.exists(), "stale run dirs are cleaned up");
    w.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(w.state().len(), 2);
    let left: Vec<_> = std::fs::read_dir(&private).unwrap().collect();
    assert!(
        left.is_empty(),
        "the plan file and its dir are removed: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_apply_changes_nothing_and_says_who_and_why() {
    for tf in [tools::terraform_1_0(), tools::terraform_1_15()] {
        let w = World::new(&tf, "", "").await;
        let mut child = w.spawn(&["apply", "-auto-approve"]);
        let req = w.pending(&mut child).await;
        let id = req["id"].as_str().unwrap().to_string();
        w.decide(&id, "reject", "not during the freeze").await;
        let out = finish(child).await;
        assert_eq!(code(&out), 80, "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("REJECTED by local:"), "{err}");
        assert!(err.contains("not during the freeze"), "{err}");
        assert!(err.contains(&id), "{err}");
        assert!(w.state().is_empty(), "nothing applied");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_request_applies_nothing() {
    let w = World::new(
        &tools::terraform_1_0(),
        "[[rule]]\nname = \"quick\"\ntools = [\"terraform\"]\nsubcommands = [\"apply\"]\naction = \"gate\"\ntimeout = \"1500ms\"\n",
        "",
    )
    .await;
    let child = w.spawn(&["apply"]);
    let out = finish(child).await;
    assert_eq!(code(&out), 81, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("EXPIRED: nobody decided"),
        "{}",
        stderr(&out)
    );
    assert!(w.state().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_replace_and_no_changes_are_classified_and_shown() {
    let w = World::new(&tools::terraform_1_15(), "", "").await;
    let out = w.direct(&["apply", "-auto-approve"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // No changes: runs without asking, recorded as no_changes.
    let out = finish(w.spawn(&["apply"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("no changes"), "{}", stderr(&out));
    let audit = w.audit().await;
    let (kind, actor, body) = audit.last().unwrap();
    assert_eq!(
        (kind.as_str(), actor.as_str()),
        ("no_changes", "agent:agent-a")
    );
    assert!(body["request"]["diff"]["text"]
        .as_str()
        .unwrap()
        .contains("Summary: +0 ~0 -0"));

    // A trigger change: both resources are replaced, flagged as such.
    let mut child = w.spawn(&["apply", "-var", "n=2"]);
    let req = w.pending(&mut child).await;
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(text.contains("Summary: +2 ~0 -2 (2 replace)"), "{text}");
    assert!(
        text.contains("!!! null_resource.r0 will be replaced"),
        "{text}"
    );
    assert!(text.contains("triggers.n: \"1\" -> \"2\""), "{text}");
    assert_eq!(req["diff"]["summary"]["counts"]["replace"], 2);
    w.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    assert_eq!(code(&finish(child).await), 0);

    // Destroy: every resource is a removal, flagged.
    let mut child = w.spawn(&["destroy", "-auto-approve"]);
    let req = w.pending(&mut child).await;
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(text.contains("Summary: +0 ~0 -2"), "{text}");
    assert!(
        text.contains("!!! null_resource.r1 will be deleted"),
        "{text}"
    );
    w.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(w.state().is_empty(), "destroyed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chdir_var_file_and_target_hold_in_plan_and_apply() {
    let w = World::new(&tools::terraform_1_0(), "", "").await;
    std::fs::write(w.infra.join("prod.tfvars"), "n = \"42\"\n").unwrap();
    let mut child = w.spawn_in(
        "terraform",
        &w.sb.work,
        &[
            "-chdir=infra",
            "apply",
            "-var-file=prod.tfvars",
            "-target",
            "null_resource.r1",
            "-auto-approve",
        ],
        &[],
    );
    let req = w.pending(&mut child).await;
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(text.contains("Summary: +1 ~0 -0"), "{text}");
    assert!(text.contains("null_resource.r1"), "{text}");
    assert!(!text.contains("+ null_resource.r0"), "{text}");
    assert!(text.contains("\"42\""), "{text}");
    assert!(
        req["environment"]["dir"]
            .as_str()
            .unwrap()
            .ends_with("/work/infra"),
        "{}",
        req["environment"]
    );
    w.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(w.state(), ["null_resource.r1"]);
    let shown = w.direct(&["state", "show", "null_resource.r1"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("\"42\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switched_workspace_after_approval_does_not_run() {
    let w = World::new(&tools::terraform_1_0(), "", "").await;
    let mut child = w.spawn(&["apply"]);
    let req = w.pending(&mut child).await;
    assert_eq!(req["environment"]["terraform_workspace"], "default");
    assert_eq!(req["environment"]["terraform_backend"], "local");
    std::fs::write(w.infra.join(".terraform/environment"), "other").unwrap();
    w.approve_expecting_refusal(
        child,
        &req,
        "the terraform workspace changed from default to other",
    )
    .await;
    // Nothing in the approved workspace either.
    std::fs::remove_file(w.infra.join(".terraform/environment")).unwrap();
    assert!(w.state().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_signed_by_another_key_does_not_run() {
    let w = World::new(&tools::terraform_1_0(), "", "").await;
    // The shim pins a different server's key; this server's "approved" must not be trusted.
    let other = TestServer::start(&policy_with("")).await;
    let policy = std::fs::read_to_string(&w.agent_policy)
        .unwrap()
        .replace(&w.srv.public_key, &other.public_key);
    std::fs::write(&w.agent_policy, policy).unwrap();
    let mut child = w.spawn(&["apply"]);
    let req = w.pending(&mut child).await;
    w.approve_expecting_refusal(child, &req, "signature").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_past_its_valid_until_does_not_run() {
    let w = World::new(
        &tools::terraform_1_0(),
        "[serve]\ndecision_valid_for = \"0ms\"\n",
        "",
    )
    .await;
    let mut child = w.spawn(&["apply"]);
    let req = w.pending(&mut child).await;
    w.approve_expecting_refusal(child, &req, "approval expired")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_fails_closed() {
    let w = World::new(&tools::terraform_1_0(), "", "").await;
    // Point the shim at a port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let policy = std::fs::read_to_string(&w.agent_policy)
        .unwrap()
        .replace(&w.srv.url, &url);
    std::fs::write(&w.agent_policy, policy).unwrap();
    let out = finish(w.spawn(&["apply", "-auto-approve"])).await;
    assert_eq!(code(&out), 83, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("submitting the request failed"),
        "{}",
        stderr(&out)
    );
    // What to do, on a line of its own.
    assert!(
        stderr(&out).lines().any(|l| l
            == "hitl-gate: check the approval server with `hitl-gate doctor` (run as this user, \
                it says what is wrong), or start it (`hitl-gate serve`)"),
        "{}",
        stderr(&out)
    );
    assert!(w.state().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tf_cli_args_are_refused_on_the_gated_path() {
    let w = World::new(&tools::terraform_1_0(), "", "").await;
    for var in ["TF_CLI_ARGS_apply", "TF_CLI_ARGS", "TF_CLI_ARGS_plan"] {
        let child = w.spawn_in("terraform", &w.infra, &["apply"], &[(var, "-auto-approve")]);
        let out = finish(child).await;
        assert_eq!(code(&out), 87, "{var}: {}", stderr(&out));
        assert!(stderr(&out).contains(var), "{}", stderr(&out));
    }
    assert!(w.state().is_empty());
    let (s, v) = w
        .approver()
        .request("GET", "/api/v1/requests?state=all", None)
        .await;
    assert_eq!(
        (s, v.as_array().unwrap().len()),
        (200, 0),
        "nothing submitted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_cancels_the_request_on_the_server() {
    let w = World::new(&tools::terraform_1_0(), "", "").await;
    let mut child = w.spawn(&["apply"]);
    let req = w.pending(&mut child).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = finish(child).await;
    assert_eq!(code(&out), 82, "{}", stderr(&out));
    assert!(stderr(&out).contains("SIGINT"), "{}", stderr(&out));
    let id = req["id"].as_str().unwrap();
    let (_, v) = w
        .approver()
        .request("GET", &format!("/api/v1/requests/{id}"), None)
        .await;
    assert_eq!(v["state"], "cancelled");
    let audit = w.audit().await;
    assert_eq!(audit.last().unwrap().0, "cancelled");
    assert!(w.state().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_holds_the_diff_the_approver_and_the_outcome_and_verifies() {
    let w = World::new(&tools::terraform_1_0(), "", "").await;
    let mut child = w.spawn(&["apply", "-auto-approve"]);
    let req = w.pending(&mut child).await;
    let shown = req["diff"]["text"].as_str().unwrap().to_string();
    w.decide(req["id"].as_str().unwrap(), "approve", "ship it")
        .await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let audit = w.audit().await;
    let kinds: Vec<&str> = audit.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(kinds, ["request_created", "approved", "outcome"]);
    assert_eq!(audit[0].2["request"]["diff"]["text"], shown.as_str());
    assert!(audit[1].1.starts_with("local:"), "{}", audit[1].1);
    assert_eq!(audit[1].2["decision"]["approvers"][0], audit[1].1.as_str());
    assert_eq!(
        audit[1].2["diff_sha256"],
        hitl_gate::hex::sha256(shown.as_bytes())
    );
    assert_eq!(audit[2].2["outcome"]["exit_code"], 0);
    let verify = Command::new(bin())
        .args(["audit", "verify", "--db"])
        .arg(w.srv.db())
        .output()
        .unwrap();
    assert_eq!(code(&verify), 0, "{}", stderr(&verify));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_token_file_the_server_and_the_pinned_key() {
    let w = World::new(&tools::terraform_1_0(), "", "").await;
    w.sb.fake_real("kubectl");
    w.sb.fake_real("helm");
    let doctor = |policy: &Path| {
        let mut c = w.g.sb.cli();
        c.env("HITL_GATE_POLICY", policy).arg("doctor");
        crate::support::run(&mut c)
    };
    let out = doctor(&w.agent_policy);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.contains("ok   token file"), "{text}");
    assert!(
        text.contains(&format!("ok   approval server {} answers", w.srv.url)),
        "{text}"
    );
    assert!(
        text.contains("ok   the server's public key is the pinned one"),
        "{text}"
    );
    let token = w.sb.path().join("agent.token");
    assert!(
        text.contains(&format!(
            "ok   the server knows the token in {} as agent agent-a (for alice)",
            token.display()
        )),
        "{text}"
    );

    // A token the server does not know: doctor says which file, and what the server needs.
    std::fs::write(&token, "a-token-nobody-registered").unwrap();
    let out = doctor(&w.agent_policy);
    assert_eq!(code(&out), 1);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let digest = hitl_gate::hex::sha256(b"a-token-nobody-registered");
    assert!(
        text.contains(&format!(
            "FAIL {} answered 401 Unauthorized: the server does not know the agent token in {}",
            w.srv.url,
            token.display()
        )) && text.contains(&format!("token_sha256 = \"{digest}\"")),
        "{text}"
    );
    assert!(!text.contains("a-token-nobody-registered"), "{text}");
    std::fs::write(&token, crate::support::server::TOKEN_A).unwrap();

    // Another key pinned.
    let other = "cd".repeat(32);
    let text = std::fs::read_to_string(&w.agent_policy).unwrap();
    let wrong =
        w.sb.policy("wrong-key.toml", &text.replace(&w.srv.public_key, &other));
    let out = doctor(&wrong);
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains("is not the pinned"));

    // A token file others can read.
    let token = w.sb.path().join("agent.token");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = doctor(&w.agent_policy);
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains("readable by others"));
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    // The server is gone.
    let url = w.srv.url.clone();
    let _ = w.g.srv.stop().await;
    let out = doctor(&w.g.agent_policy);
    assert_eq!(code(&out), 1);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!("FAIL approval server: cannot reach {url}")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_retried_until_the_server_is_back() {
    use crate::support::server::{free_port, uds_request, ServeProcess};
    let w = World::new(&tools::terraform_1_0(), "", "").await;
    // A server process on a fixed port, so the restarted one has the same URL.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = w.sb.policy("serve.toml", &policy_with(""));
    let listen = format!("127.0.0.1:{}", free_port());
    let first = ServeProcess::start_on(&policy, &data, &listen);
    let key = hitl_gate::signing::Keys::load_or_create(&data)
        .unwrap()
        .public_hex();
    let text = std::fs::read_to_string(&w.agent_policy)
        .unwrap()
        .replace(&w.srv.url, &first.url)
        .replace(&w.srv.public_key, &key);
    std::fs::write(&w.agent_policy, text).unwrap();

    let mut child = w.spawn(&["apply", "-auto-approve"]);
    let socket = data.join("admin.sock");
    let pending = || async {
        let start = Instant::now();
        loop {
            let (_, v) = uds_request(&socket, "GET", "/api/v1/requests?state=pending", None).await;
            if let Some(r) = v.as_array().and_then(|a| a.first()) {
                return r["id"].as_str().unwrap().to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "nothing pending"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let id = pending().await;
    // The shim's stderr, read as it comes: it says when it lost the server.
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let mut pipe = child.stderr.take().unwrap();
        let said = said.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut pipe, &mut buf) {
                said.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let said_text = || String::from_utf8_lossy(&said.lock().unwrap()).into_owned();
    first.signal(nix::sys::signal::Signal::SIGKILL);
    drop(first);
    // Only once the shim has noticed (and while it keeps waiting) does the server come back.
    let start = Instant::now();
    while !said_text().contains("retrying") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the shim never said it lost the server: {}",
            said_text()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the shim keeps waiting: {}",
            said_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = ServeProcess::start_on(&policy, &data, &listen);
    assert_eq!(pending().await, id, "the same request, still pending");
    let (s, v) = uds_request(
        &socket,
        "POST",
        &format!("/api/v1/requests/{id}/decision"),
        Some(serde_json::json!({"decision": "approve"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let out = finish(child).await;
    reader.join().unwrap();
    assert_eq!(code(&out), 0, "{}", said_text());
    assert_eq!(w.state().len(), 2);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_of_a_saved_plan_shows_and_applies_a_private_copy() {
    let w = World::new(&tools::terraform_1_15(), "", "").await;
    let out = w.direct(&["plan", "-out=agent.tfplan"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut child = w.spawn(&["apply", "agent.tfplan"]);
    let req = w.pending(&mut child).await;
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(text.contains("Summary: +2 ~0 -0"), "{text}");
    assert!(
        text.contains("Plan: 2 to add"),
        "terraform show text: {text}"
    );
    // The agent's own file is no longer what runs: the approved copy is.
    std::fs::write(w.infra.join("agent.tfplan"), b"garbage").unwrap();
    w.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(w.state().len(), 2);
}

/// A shim that stopped waiting: exit 91 and the pending line for `id`.
fn assert_pending(out: &Output, id: &str) {
    assert_eq!(code(out), 91, "{}", stderr(out));
    assert!(
        stderr(out).contains(&format!(
            "hitl-gate: pending {id}: run the same command again"
        )),
        "{}",
        stderr(out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_with_an_unchanged_plan_applies_the_detached_plan_and_a_changed_plan_asks_again() {
    let w = World::new(&tools::terraform_1_0(), "", "").await;
    let term = |c: &Child| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap()
    };
    let mut child = w.spawn(&["apply", "-auto-approve"]);
    let req = w.pending(&mut child).await;
    let id = req["id"].as_str().unwrap().to_string();
    let plan_hash = req["artifact_sha256"][0].as_str().unwrap().to_string();
    term(&child);
    assert_pending(&finish(child).await, &id);

    // The same plan: it attaches, and applies the plan file the approver saw.
    let child = w.spawn(&["apply", "-auto-approve"]);
    let start = Instant::now();
    loop {
        let (_, v) = w
            .approver()
            .request("GET", &format!("/api/v1/requests/{id}"), None)
            .await;
        if v["agent_waiting"] == true {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "never attached: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.decide(&id, "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("resuming request {id}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.state().len(), 2);
    let (_, all) = w
        .approver()
        .request("GET", "/api/v1/requests?state=all", None)
        .await;
    assert_eq!(all.as_array().unwrap().len(), 1, "no second request");
    let (_, v) = w
        .approver()
        .request("GET", &format!("/api/v1/requests/{id}"), None)
        .await;
    assert_eq!(v["artifact_sha256"][0], plan_hash.as_str());
    assert_eq!(v["outcome"]["exit_code"], 0, "{v}");

    // Detached again, then the configuration changes: its plan differs, so it asks anew.
    std::fs::write(w.infra.join("main.tf"), config(3)).unwrap();
    let mut child = w.spawn(&["apply", "-auto-approve"]);
    let old = w.pending(&mut child).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    term(&child);
    assert_pending(&finish(child).await, &old);
    std::fs::write(w.infra.join("main.tf"), config(4)).unwrap();
    let mut child = w.spawn(&["apply", "-auto-approve"]);
    let start = Instant::now();
    let new = loop {
        let (_, all) = w
            .approver()
            .request("GET", "/api/v1/requests?state=pending", None)
            .await;
        if let Some(r) = all
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] != old.as_str())
        {
            break r.clone();
        }
        assert!(child.try_wait().unwrap().is_none(), "the shim ended");
        assert!(start.elapsed() < Duration::from_secs(120), "no new request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        new["diff"]["text"]
            .as_str()
            .unwrap()
            .contains("+ null_resource.r3"),
        "{new}"
    );
    // The shim supersedes the old request once the new one is made: wait for it.
    let start = Instant::now();
    let v = loop {
        let (_, v) = w
            .approver()
            .request("GET", &format!("/api/v1/requests/{old}"), None)
            .await;
        if v["state"] != "pending" {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never superseded: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(v["state"], "cancelled", "{v}");
    assert!(
        v["decision"]["comment"]
            .as_str()
            .unwrap()
            .starts_with("superseded: "),
        "{v}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(code(&finish(child).await), 82);
    assert_eq!(w.state().len(), 2, "nothing more applied");
}
