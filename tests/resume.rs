//! An approval outlives the agent's tool timeout, end to end with the real kubectl and helm
//! against the test-only fake Kubernetes API: a harness's SIGTERM (or `max_wait`) leaves the
//! request pending with "no agent waiting" and exit 91 with the pending line; the same command
//! run again picks its own request up and runs it once; other inputs make a new request and
//! supersede the old one; two re-runs at once run it once; SIGINT still cancels. (Terraform's
//! resume is in `terraform_gate.rs`, lockdown's in `lockdown/basics.rs`.)

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::gate::{finish, Gated, KubeGated};
use crate::support::{bin, code, stderr, stdout, tools};

/// A Deployment `web` with `image`.
fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: {image}\n"
    )
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// The request as an approver reads it.
async fn get(g: &Gated, id: &str) -> Value {
    let (s, v) = g
        .approver()
        .request("GET", &format!("/api/v1/requests/{id}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Every request the server holds.
async fn all(g: &Gated) -> Vec<Value> {
    let (s, v) = g
        .approver()
        .request("GET", "/api/v1/requests?state=all", None)
        .await;
    assert_eq!(s, 200, "{v}");
    v.as_array().unwrap().clone()
}

/// Waits until request `id` shows whether an agent waits for it as `waiting`.
async fn until_waiting(g: &Gated, id: &str, waiting: bool) {
    let start = Instant::now();
    loop {
        let v = get(g, id).await;
        if v["agent_waiting"] == waiting {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "request {id} never showed agent_waiting = {waiting}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A shim that stopped waiting: exit 91 with the one parseable pending line for `id`, whose
/// expiry is an RFC 3339 time.
fn assert_pending_line(out: &Output, id: &str) {
    assert_eq!(code(out), 91, "{}", stderr(out));
    let err = stderr(out);
    let head =
        format!("hitl-gate: pending {id}: run the same command again to keep waiting (expires ");
    let line = err
        .lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no pending line for {id}: {err}"));
    let expires = line[head.len()..].strip_suffix(')').expect("closed");
    expires
        .parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{expires:?} is not RFC 3339: {e}"));
}

/// `hitl-gate list` over the admin socket.
fn cli_list(g: &Gated) -> String {
    let out = crate::support::run(
        Command::new(bin())
            .args(["list", "--data-dir"])
            .arg(&g.srv.data),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out)
}

/// The non-dry-run writes the fake API received for `name`.
fn writes_of(k: &KubeGated, name: &str) -> usize {
    k.fake
        .requests()
        .iter()
        .filter(|r| r.writes() && !r.dry_run() && r.path.contains(name))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harness_sigterm_detaches_and_the_same_command_picks_its_request_up_and_runs_once() {
    let k = KubeGated::new().await;
    k.fake.put_deployment("prod", "api");
    let args = ["delete", "deployment", "api", "-n", "prod"];
    let mut child = k.kubectl(&args);
    let req = k.pending(&mut child).await;
    let id = req["id"].as_str().unwrap().to_string();
    until_waiting(&k, &id, true).await;
    assert!(
        !cli_list(&k).contains("no agent waiting"),
        "the shim waits: {}",
        cli_list(&k)
    );

    // The harness's timeout: SIGTERM. The request stays pending; nobody waits for it.
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let out = finish(child).await;
    assert_pending_line(&out, &id);
    // Without a web UI, the review line is the approvers' command (the API URL is 401 in a
    // browser).
    assert!(
        stderr(&out).contains(&format!("review: hitl-gate show {id}\n")),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("/api/v1/requests/"),
        "{}",
        stderr(&out)
    );
    let v = get(&k, &id).await;
    assert_eq!(v["state"], "pending", "{v}");
    assert_eq!(v["agent_waiting"], false, "{v}");
    let listed = cli_list(&k);
    let row = listed.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.ends_with("[no agent waiting]"), "{listed}");
    assert!(k
        .fake
        .get("apps/v1", "deployments", "prod", "api")
        .is_some());

    // The same command again: it attaches (no new request) and waits again.
    let child = k.kubectl(&args);
    until_waiting(&k, &id, true).await;
    assert_eq!(all(&k).await.len(), 1, "no new request");
    k.decide(&id, "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("resuming request {id}")),
        "{}",
        stderr(&out)
    );
    assert!(k
        .fake
        .get("apps/v1", "deployments", "prod", "api")
        .is_none());
    assert_eq!(writes_of(&k, "/deployments/api"), 1, "deleted once");

    // After the run, the same command is a new request; SIGINT (a person) cancels it.
    k.fake.put_deployment("prod", "api");
    let mut child = k.kubectl(&args);
    let start = Instant::now();
    let fresh = loop {
        let pending: Vec<Value> = all(&k)
            .await
            .into_iter()
            .filter(|r| r["state"] == "pending")
            .collect();
        if let Some(r) = pending.first() {
            break r.clone();
        }
        assert!(child.try_wait().unwrap().is_none(), "the shim ended");
        assert!(start.elapsed() < Duration::from_secs(120), "no new request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let fresh_id = fresh["id"].as_str().unwrap().to_string();
    assert_ne!(fresh_id, id, "the run's approval is not used again");
    until_waiting(&k, &fresh_id, true).await;
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = finish(child).await;
    assert_eq!(code(&out), 82, "{}", stderr(&out));
    assert_eq!(get(&k, &fresh_id).await["state"], "cancelled");
    assert!(k
        .fake
        .get("apps/v1", "deployments", "prod", "api")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_while_detached_runs_on_the_next_run_and_a_changed_manifest_supersedes() {
    let k = KubeGated::new().await;
    let manifest = k.sb.work.join("web.yaml");
    std::fs::write(&manifest, deployment("nginx:1.25")).unwrap();
    let args = ["apply", "-f", "web.yaml", "-n", "prod"];

    // SIGHUP detaches too; approved while nobody waits, the next run runs it at once.
    let mut child = k.kubectl(&args);
    let id = k.pending(&mut child).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    assert_pending_line(&finish(child).await, &id);
    k.decide(&id, "approve", "ok").await;
    let out = finish(k.kubectl(&args)).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("resuming request {id}")),
        "{}",
        stderr(&out)
    );
    let web = k
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .expect("applied");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    assert_eq!(all(&k).await.len(), 1, "ran without asking again");

    // A detached request, then the manifest changes: a new request, the old one superseded.
    std::fs::write(&manifest, deployment("nginx:1.26")).unwrap();
    let mut child = k.kubectl(&args);
    let old = k.pending(&mut child).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert_pending_line(&finish(child).await, &old);
    std::fs::write(&manifest, deployment("nginx:1.27")).unwrap();
    let mut child = k.kubectl(&args);
    let start = Instant::now();
    let new = loop {
        let v = get(&k, &old).await;
        if v["state"] != "pending" {
            assert_eq!(v["state"], "cancelled", "{v}");
            let comment = v["decision"]["comment"].as_str().unwrap();
            assert!(comment.starts_with("superseded: "), "{comment}");
            let new = all(&k)
                .await
                .into_iter()
                .find(|r| r["state"] == "pending")
                .expect("the new request");
            let new_id = new["id"].as_str().unwrap().to_string();
            assert!(comment.contains(&new_id), "{comment}");
            break new;
        }
        assert!(child.try_wait().unwrap().is_none(), "the shim ended");
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "never superseded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        new["diff"]["text"].as_str().unwrap().contains("nginx:1.27"),
        "{new}"
    );
    let audit = k.audit().await;
    assert!(
        audit
            .iter()
            .any(|(_, actor, body)| actor.starts_with("agent:")
                && body.to_string().contains(&old)
                && body.to_string().contains("superseded")),
        "the supersession is in the audit log"
    );
    // Approving the old one is refused: it is over.
    let (s, _) = k.approver().decide(&old, "approve", Some("late")).await;
    assert_eq!(s, 409);
    signal(&child, nix::sys::signal::Signal::SIGINT);
    assert_eq!(code(&finish(child).await), 82);
    let web = k.fake.get("apps/v1", "deployments", "prod", "web").unwrap();
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_the_same_helm_command_at_once_run_the_approval_once() {
    let k = KubeGated::new().await;
    k.sb.add_real("helm", &tools::helm4());
    let chart = k.sb.work.join("chart");
    crate::support::kube::write_chart(&chart, "nginx:1.27");
    let args = ["upgrade", "--install", "shop", "./chart", "-n", "prod"];
    let kc = k.kubeconfig.display().to_string();
    let spawn = || {
        k.spawn_with(
            "helm",
            &k.sb.work,
            &args,
            &[("KUBECONFIG", kc.as_str())],
            std::process::Stdio::null(),
        )
    };
    let mut child = spawn();
    let id = k.pending(&mut child).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert_pending_line(&finish(child).await, &id);
    k.decide(&id, "approve", "ok").await;

    // Both pick the approval up; one claims its run.
    let (a, b) = (spawn(), spawn());
    let mut outs = Vec::new();
    for mut child in [a, b] {
        // The loser either is refused the claim (87), or finds the approval used and asks
        // anew (a new pending request, cancelled here).
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            let fresh = all(&k)
                .await
                .into_iter()
                .find(|r| r["state"] == "pending" && r["id"] != id.as_str());
            if let Some(r) = fresh {
                until_waiting(&k, r["id"].as_str().unwrap(), true).await;
                signal(&child, nix::sys::signal::Signal::SIGINT);
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "never ended");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        outs.push(finish(child).await);
    }
    let codes: Vec<i32> = outs.iter().map(code).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == 0).count(),
        1,
        "{codes:?}: {}{}",
        stderr(&outs[0]),
        stderr(&outs[1])
    );
    let loser = outs.iter().find(|o| code(o) != 0).unwrap();
    assert!(
        code(loser) == 87 && stderr(loser).contains("another run of the same command")
            || code(loser) == 82,
        "{}",
        stderr(loser)
    );
    let revisions = k.fake.names("v1", "secrets", "prod");
    let releases: Vec<&String> = revisions
        .iter()
        .filter(|n| n.starts_with("sh.helm.release.v1.shop."))
        .collect();
    assert_eq!(releases.len(), 1, "one helm revision: {revisions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_wait_ends_the_wait_with_the_pending_line_and_the_agent_may_only_shorten_it() {
    let k = KubeGated::new().await;
    // The policy's bound: 1 s; the agent's 1 h does not lengthen it.
    let policy = std::fs::read_to_string(&k.agent_policy).unwrap();
    std::fs::write(&k.agent_policy, format!("{policy}max_wait = \"1s\"\n")).unwrap();
    k.fake.put_deployment("prod", "api");
    let args = ["delete", "deployment", "api", "-n", "prod"];
    let started = Instant::now();
    let out = finish(k.kubectl_with(&args, &[("HITL_GATE_WAIT", "1h")])).await;
    let id = all(&k).await[0]["id"].as_str().unwrap().to_string();
    assert_pending_line(&out, &id);
    assert!(
        started.elapsed() < Duration::from_secs(100),
        "the 1 h did not count"
    );
    let v = get(&k, &id).await;
    assert_eq!(
        (v["state"].as_str(), v["agent_waiting"].as_bool()),
        (Some("pending"), Some(false)),
        "{v}"
    );

    // Without the policy's bound, the agent's own one ends the wait; it attaches first.
    std::fs::write(&k.agent_policy, &policy).unwrap();
    let out = finish(k.kubectl_with(&args, &[("HITL_GATE_WAIT", "1s")])).await;
    assert_pending_line(&out, &id);
    assert!(
        stderr(&out).contains(&format!("resuming request {id}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(all(&k).await.len(), 1);

    // An unreadable bound refuses before anything is asked.
    let out = finish(k.kubectl_with(&args, &[("HITL_GATE_WAIT", "soon")])).await;
    assert_eq!(code(&out), 87, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("HITL_GATE_WAIT=soon"),
        "{}",
        stderr(&out)
    );
    assert!(k
        .fake
        .get("apps/v1", "deployments", "prod", "api")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_signal_cancel_makes_sigterm_cancel() {
    let k = KubeGated::with_policy("", "").await;
    let policy = std::fs::read_to_string(&k.agent_policy).unwrap();
    std::fs::write(&k.agent_policy, format!("{policy}on_signal = \"cancel\"\n")).unwrap();
    k.fake.put_deployment("prod", "api");
    let mut child = k.kubectl(&["delete", "deployment", "api", "-n", "prod"]);
    let id = k.pending(&mut child).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let out = finish(child).await;
    assert_eq!(code(&out), 82, "{}", stderr(&out));
    assert_eq!(get(&k, &id).await["state"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_that_lapsed_while_nobody_waited_asks_again() {
    let k = KubeGated::new().await;
    k.fake.put_deployment("prod", "api");
    let args = ["delete", "deployment", "api", "-n", "prod"];
    let mut child = k.kubectl(&args);
    let id = k.pending(&mut child).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert_pending_line(&finish(child).await, &id);
    // Approved ten minutes ago (by the server's clock): its five minutes of validity are over.
    k.srv.clock.set_offset_ms(-600_000);
    k.decide(&id, "approve", "ok").await;
    k.srv.clock.set_offset_ms(0);
    let mut child = k.kubectl(&args);
    let start = Instant::now();
    let fresh = loop {
        if let Some(r) = all(&k).await.into_iter().find(|r| r["state"] == "pending") {
            break r["id"].as_str().unwrap().to_string();
        }
        assert!(child.try_wait().unwrap().is_none(), "the shim ended");
        assert!(start.elapsed() < Duration::from_secs(120), "no new request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(fresh, id);
    until_waiting(&k, &fresh, true).await;
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = finish(child).await;
    assert_eq!(code(&out), 82, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the approval lapsed"),
        "{}",
        stderr(&out)
    );
    assert!(k
        .fake
        .get("apps/v1", "deployments", "prod", "api")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_record_edited_by_hand_at_most_makes_a_new_request() {
    let k = KubeGated::new().await;
    k.fake.put_deployment("prod", "api");
    k.fake.put_deployment("prod", "web");
    let detach = |args: &'static [&'static str]| {
        let k = &k;
        async move {
            let mut child = k.kubectl(args);
            let start = Instant::now();
            let before = all(k).await.len();
            let id = loop {
                let now = all(k).await;
                if now.len() > before {
                    break now[0]["id"].as_str().unwrap().to_string();
                }
                assert!(start.elapsed() < Duration::from_secs(120), "no request");
                assert!(child.try_wait().unwrap().is_none(), "the shim ended");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            signal(&child, nix::sys::signal::Signal::SIGTERM);
            assert_pending_line(&finish(child).await, &id);
            id
        }
    };
    let api_args: &[&str] = &["delete", "deployment", "api", "-n", "prod"];
    let web = detach(&["delete", "deployment", "web", "-n", "prod"]).await;
    let api = detach(api_args).await;
    // The api command's record now names the web request, approved.
    let dir = k.sb.home.join(".local/state/hitl-gate/pending");
    let mut edited = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let mut rec: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        if rec["id"] == api.as_str() {
            rec["id"] = Value::from(web.as_str());
            std::fs::write(&p, rec.to_string()).unwrap();
            edited += 1;
        }
    }
    assert_eq!(edited, 1);
    k.decide(&web, "approve", "ok").await;
    let mut child = k.kubectl(api_args);
    let start = Instant::now();
    let fresh = loop {
        let fresh = all(&k)
            .await
            .into_iter()
            .find(|r| r["state"] == "pending" && r["id"] != api.as_str());
        if let Some(r) = fresh {
            break r["id"].as_str().unwrap().to_string();
        }
        assert!(child.try_wait().unwrap().is_none(), "the shim ended");
        assert!(start.elapsed() < Duration::from_secs(120), "no new request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(fresh, web);
    signal(&child, nix::sys::signal::Signal::SIGINT);
    assert_eq!(code(&finish(child).await), 82);
    // Neither deployment was touched, and the web request's approval is still unclaimed.
    assert!(k
        .fake
        .get("apps/v1", "deployments", "prod", "api")
        .is_some());
    assert!(k
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_some());
    assert_eq!(get(&k, &web).await["run_claimed"], false);
    assert_eq!(
        get(&k, &api).await["state"],
        "pending",
        "not superseded by a record that is not its own"
    );
}
