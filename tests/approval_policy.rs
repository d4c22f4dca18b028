//! Who may approve, how many, and when nobody needs to, end to end: the real shim and kubectl
//! (against the test-only fake Kubernetes API) or terraform, a real server with OIDC sign-in
//! at the real provider, and approvers deciding over the web UI's form.
//!
//! - A quorum of two: the first approval leaves the shim waiting (and is on the record), the
//!   same person approving again counts once, the second person releases it, and the decision
//!   and the shim name both.
//! - The human an agent acts for cannot approve its request; a rule's `approvers` admits only
//!   them, in the web UI and on the admin socket.
//! - Auto-approval: a staging apply that only creates runs without a human (recorded as
//!   `policy:<rule>`, counted in the metrics); a delete, and a terraform replace, wait; a rule
//!   that could auto-approve in production does not load.
//! - Change freezes: a window covering now rejects at once with its reason, or needs its
//!   `freeze_approvals`; a weekly window is checked at a given time with `explain --at`.

use std::time::Duration;

use serde_json::Value;

use crate::support::gate::{finish, Gated, KubeGated};
use crate::support::oidc::{WebClient, WebServer};
use crate::support::server::{audit_rows, create_body, TestServer, TOKEN_A, TOKEN_B};
use crate::support::{code, run, stderr, stdout, tools, Sandbox};

/// An agent that acts for carol (her email, written in another case).
const TOKEN_C: &str = "hgt_carols_agent_token_for_tests_0000000";

fn agent_c() -> String {
    format!(
        "[[serve.agent]]\nname = \"agent-c\"\ntoken_sha256 = \"{}\"\non_behalf_of = \"Carol@Example.com\"\n",
        hitl_gate::hex::sha256(TOKEN_C.as_bytes())
    )
}

const ENVIRONMENTS: &str = "[[environment]]\nname = \"production\"\nrisk = \"high\"\nkube_contexts = [\"prod\"]\n\n[[environment]]\nname = \"staging\"\nrisk = \"medium\"\nkube_servers = [\"http://127.0.0.1:*\"]\nterraform_backends = [\"local\"]\n";

/// Signs `user` in at the provider through the gate at `url`; returns their browser-less
/// client.
async fn signed_in(url: &str, user: &str) -> WebClient {
    let mut c = WebClient::new(url);
    c.sign_in(url, user).await;
    c
}

/// Posts the decision form of request `id` as `c` (with the environment's name typed, for a
/// destructive change in a high-risk environment); returns the status and the page.
async fn approve_in_ui(c: &mut WebClient, url: &str, id: &str, confirm: &str) -> (u16, String) {
    let r = c
        .decide(
            url,
            id,
            &[
                ("decision", "approve"),
                ("comment", "looks right"),
                ("confirm", confirm),
            ],
        )
        .await;
    (r.status, r.body)
}

/// Request `id` through the agent API (as agent `token`).
async fn view(srv: &TestServer, token: &str, id: &str) -> Value {
    let (s, v) = srv
        .agent(token)
        .get(&format!("/api/v1/requests/{id}"))
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// `user` at the test provider `issuer`, as the server names approvers.
fn oidc_id(issuer: &str, user: &str) -> String {
    format!("oidc:{issuer}#{user}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_of_two_waits_for_two_different_people() {
    let rules = "[[rule]]\nname = \"prod-two\"\ntools = [\"kubectl\"]\nenvironments = [\"production\"]\naction = \"gate\"\napprovals = 2\napprovers = [\"group:approvers\"]\n";
    let WebServer { srv, idp, url } =
        WebServer::start(&format!("{ENVIRONMENTS}\n{rules}"), "").await;
    let k = KubeGated::around(Gated::with_server(srv, "")).await;
    k.fake.put_deployment("prod", "web");
    let srv = &k.srv;
    let mut child = k.kubectl(&["--context", "prod", "delete", "deployment", "web"]);
    let req = k.pending(&mut child).await;
    let id = req["id"].as_str().unwrap().to_string();
    assert_eq!(req["classification"]["approvals_needed"], 2, "{req}");
    assert_eq!(req["review_url"], format!("{url}/ui/requests/{id}"));

    let mut alice = signed_in(&url, "alice").await;
    let (s, body) = approve_in_ui(&mut alice, &url, &id, "production").await;
    assert_eq!(s, 303, "{body}");
    // One approval of two: still pending, the shim still waiting, nothing deleted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = view(srv, TOKEN_A, &id).await;
    assert_eq!(v["state"], "pending", "{v}");
    assert_eq!(v["approvals"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["approvals"][0]["approver"], oidc_id(&idp.issuer, "alice"));
    assert!(child.try_wait().unwrap().is_none(), "the shim went on");
    assert!(k
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_some());
    let page = alice.get(&format!("{url}/ui/requests/{id}")).await;
    assert!(
        page.body.contains("1 of 2 approvals: alice@example.com"),
        "{}",
        page.body
    );
    // The same person again: counted once.
    let (s, body) = approve_in_ui(&mut alice, &url, &id, "production").await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("approved this request already"), "{body}");
    assert_eq!(
        view(srv, TOKEN_A, &id).await["approvals"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A second person releases it.
    let mut carol = signed_in(&url, "carol").await;
    let (s, body) = approve_in_ui(&mut carol, &url, &id, "production").await;
    assert_eq!(s, 303, "{body}");
    let out = finish(child).await;
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(k
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_none());
    assert!(
        err.contains("needs 2 approvals from group:approvers"),
        "the shim says who must approve: {err}"
    );
    assert!(err.contains(&format!("{url}/ui/requests/{id}")), "{err}");
    assert!(
        err.contains("1 of 2 approvals (alice@example.com)"),
        "the progress line: {err}"
    );
    let alice_id = oidc_id(&idp.issuer, "alice");
    let carol_id = oidc_id(&idp.issuer, "carol");
    assert!(
        err.contains(&format!("approved by {alice_id}, {carol_id}")),
        "{err}"
    );
    let v = view(srv, TOKEN_A, &id).await;
    assert_eq!(
        v["decision"]["approvers"],
        serde_json::json!([alice_id, carol_id])
    );

    // The record: alice's approval alone, then the decision with both.
    let rows: Vec<_> = audit_rows(&srv.data)
        .into_iter()
        .filter(|r| r.request_id.as_deref() == Some(id.as_str()))
        .map(|r| (r.kind, r.actor))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("request_created".to_string(), "agent:agent-a".to_string()),
            ("approval".to_string(), alice_id.clone()),
            ("approved".to_string(), carol_id.clone()),
            ("outcome".to_string(), "agent:agent-a".to_string()),
        ]
    );
    // `hitl-gate show` lists who approved.
    let out = run(std::process::Command::new(crate::support::bin())
        .args(["show", &id, "--data-dir"])
        .arg(&srv.data));
    let shown = stdout(&out);
    assert!(
        shown.contains(&format!("approved  by {alice_id}")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("approved  by {carol_id}")),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_human_an_agent_acts_for_cannot_approve_it_and_approvers_are_who_the_rule_says() {
    let rules = "[[rule]]\nname = \"sre-only\"\ntools = [\"kubectl\"]\nsubcommands = [\"scale\"]\naction = \"gate\"\napprovers = [\"group:sre\"]\n";
    let w = WebServer::start(&format!("{ENVIRONMENTS}\n{rules}\n{}", agent_c()), "").await;
    let (url, srv) = (w.url.as_str(), &w.srv);
    // agent-c acts for carol: she may not approve its requests; alice may.
    let mut body = create_body(&["delete", "pod", "x"]);
    body["environment"] = serde_json::json!({"kube_context": "dev", "namespace": "web"});
    let (s, v) = w.srv.agent(TOKEN_C).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let mut carol = signed_in(url, "carol").await;
    let (s, page) = approve_in_ui(&mut carol, url, &id, "").await;
    assert_eq!(s, 403, "{page}");
    assert!(
        page.contains("you are the person agent agent-c acts for"),
        "a clear message: {page}"
    );
    assert_eq!(view(srv, TOKEN_C, &id).await["state"], "pending");
    // She may still reject it (stricter is always allowed to an approver).
    let mut alice = signed_in(url, "alice").await;
    let (s, page) = approve_in_ui(&mut alice, url, &id, "").await;
    assert_eq!(s, 303, "{page}");
    assert_eq!(view(srv, TOKEN_C, &id).await["state"], "approved");

    // A rule that names group:sre: alice (not in it) is refused, carol decides.
    let mut body = create_body(&["scale", "deploy", "web", "--replicas=2"]);
    body["environment"] = serde_json::json!({"kube_context": "dev", "namespace": "web"});
    let (s, v) = w.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        v["classification"]["approvers"],
        serde_json::json!(["group:sre"])
    );
    let (s, page) = approve_in_ui(&mut alice, url, &id, "").await;
    assert_eq!(s, 403, "{page}");
    assert!(page.contains("only group:sre may decide"), "{page}");
    // The admin socket's local user is not in group:sre either.
    let (s, v) = w.srv.approver().decide(&id, "approve", None).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("only group:sre"),
        "{v}"
    );
    let (s, v) = w.srv.approver().decide(&id, "reject", Some("no")).await;
    assert_eq!(s, 403, "a rejection needs an eligible person too: {v}");
    assert_eq!(view(srv, TOKEN_A, &id).await["state"], "pending");
    let (s, page) = approve_in_ui(&mut carol, url, &id, "").await;
    assert_eq!(s, 303, "{page}");
    let v = view(srv, TOKEN_A, &id).await;
    assert_eq!(v["state"], "approved");
    assert_eq!(
        v["decision"]["approvers"],
        serde_json::json!([oidc_id(&w.idp.issuer, "carol")])
    );
}

const AUTO: &str = "[[rule]]\nname = \"staging-creates\"\ntools = [\"kubectl\", \"terraform\"]\nenvironments = [\"staging\"]\naction = \"auto_approve\"\nagents = [\"agent-a\"]\nchanges = [\"create\", \"update\"]\nmax_changes = 5\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_apply_that_only_creates_runs_without_a_human_and_a_delete_waits() {
    let k = KubeGated::with_policy(&format!("{ENVIRONMENTS}\n{AUTO}"), "").await;
    std::fs::write(
        k.sb.work.join("api.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: dev\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: api\n  template:\n    metadata:\n      labels:\n        app: api\n    spec:\n      containers:\n      - name: api\n        image: nginx:1.27\n",
    )
    .unwrap();
    k.fake.put(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}),
    );
    let child = k.kubectl(&["--context", "dev", "apply", "-f", "api.yaml"]);
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        k.fake.get("apps/v1", "deployments", "dev", "api").is_some(),
        "created without a human"
    );
    let err = stderr(&out);
    assert!(err.contains("approved by policy:staging-creates"), "{err}");
    let rows = k.audit().await;
    let approved: Vec<_> = rows
        .iter()
        .filter(|(kind, _, _)| kind == "approved")
        .collect();
    assert_eq!(approved.len(), 1, "{rows:?}");
    assert_eq!(approved[0].1, "policy:staging-creates");
    assert_eq!(
        approved[0].2["decision"]["approvers"],
        serde_json::json!(["policy:staging-creates"])
    );
    let metrics = reqwest::get(format!("{}/metrics", k.srv.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hitl_gate_auto_approvals_total 1"),
        "{metrics}"
    );

    // A delete in the same place waits for a human.
    let mut child = k.kubectl(&["--context", "dev", "delete", "deployment", "api"]);
    let req = k.pending(&mut child).await;
    assert!(req["classification"].get("auto_approve").is_none(), "{req}");
    assert_eq!(req["classification"]["environment"], "staging");
    let id = req["id"].as_str().unwrap();
    k.decide(id, "reject", "not today").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 80, "{}", stderr(&out));
    assert!(k.fake.get("apps/v1", "deployments", "dev", "api").is_some());

    // Another agent's create is not covered by the rule (agents = ["agent-a"]).
    let mut body = create_body(&["apply", "-f", "x.yaml"]);
    body["environment"] = serde_json::json!({"kube_context": "dev", "cluster_server": k.fake.url, "namespace": "dev", "exact": true});
    body["diff"]["summary"] = serde_json::json!({"complete": true, "resources": [{"address": "configmap/x", "action": "create"}]});
    let (s, v) = k
        .srv
        .agent(TOKEN_B)
        .post("/api/v1/requests", body.clone())
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state"], "pending", "{v}");
    // The same body from agent-a is approved: the agent was the only difference.
    body["nonce"] = serde_json::json!(hitl_gate::hex::sha256(b"another"));
    let (s, v) = k.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state"], "approved", "{v}");

    // A request the server cannot judge (no change model) is never auto-approved.
    let mut body = create_body(&["apply", "-f", "x.yaml"]);
    body["environment"] = serde_json::json!({"kube_context": "dev", "cluster_server": k.fake.url, "namespace": "dev", "exact": true});
    body["diff"] = serde_json::json!({"text": "", "summary": Value::Null, "truncated": false});
    let (s, v) = k.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state"], "pending", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terraform_replace_in_staging_waits_while_a_create_goes_through() {
    let g = Gated::new(&format!("{ENVIRONMENTS}\n{AUTO}"), "").await;
    let dir = g.terraform_dir(
        &tools::terraform_1_0(),
        "app",
        "resource \"null_resource\" \"a\" {\n  triggers = { v = \"1\" }\n}\n",
    );
    // A create: approved by the policy, applied.
    let out = finish(g.spawn_in("terraform", &dir, &["apply", "-input=false"], &[])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("approved by policy:staging-creates"),
        "{}",
        stderr(&out)
    );
    // Changing a trigger replaces the resource: a human must decide.
    std::fs::write(
        dir.join("main.tf"),
        "resource \"null_resource\" \"a\" {\n  triggers = { v = \"2\" }\n}\n",
    )
    .unwrap();
    let mut child = g.spawn_in("terraform", &dir, &["apply", "-input=false"], &[]);
    let req = g.pending(&mut child).await;
    assert!(req["classification"].get("auto_approve").is_none(), "{req}");
    g.decide(req["id"].as_str().unwrap(), "reject", "keep it")
        .await;
    let out = finish(child).await;
    assert_eq!(code(&out), 80, "{}", stderr(&out));
}

#[test]
fn a_rule_that_could_auto_approve_in_production_does_not_load() {
    let sb = Sandbox::new();
    for (rule, want) in [
        (
            "[[rule]]\nname = \"x\"\nenvironments = [\"production\"]\naction = \"auto_approve\"\nchanges = [\"create\"]\n",
            "auto-approves in environment \"production\", whose risk is high",
        ),
        (
            "[[rule]]\nname = \"x\"\naction = \"auto_approve\"\nchanges = [\"create\"]\n",
            "auto-approves in any environment",
        ),
        (
            "[[rule]]\nname = \"x\"\nenvironments = [\"staging\"]\naction = \"auto_approve\"\n",
            "must list the changes it allows",
        ),
        (
            "[[environment]]\nname = \"qa\"\nrisk = \"low\"\nkube_contexts = [\"qa\"]\n\n[[rule]]\nname = \"x\"\nenvironments = [\"qa\"]\naction = \"auto_approve\"\nchanges = [\"create\"]\n",
            "auto-approves commands in environment \"qa\", which has no kube_servers",
        ),
        (
            "[[rule]]\nname = \"x\"\naction = \"gate\"\napprovers = [\"sre\"]\n",
            "must be group:<name>",
        ),
        (
            "[[rule]]\nname = \"x\"\naction = \"pass\"\napprovals = 2\n",
            "belong to gate rules",
        ),
    ] {
        let policy = sb.policy("p.toml", &format!("version = 1\n{ENVIRONMENTS}\n{rule}"));
        let out = run(std::process::Command::new(crate::support::bin())
            .args(["explain", "--", "kubectl", "get", "pods"])
            .env("HITL_GATE_POLICY", &policy));
        assert_eq!(code(&out), 85, "{rule}: {}", stdout(&out));
        assert!(stderr(&out).contains(want), "{rule}: {}", stderr(&out));
    }
    // With allow_high_risk it loads.
    let policy = sb.policy(
        "p.toml",
        "version = 1\n[[environment]]\nname = \"production\"\nrisk = \"critical\"\nkube_servers = [\"https://prod.example.com\"]\n\n[[rule]]\nname = \"x\"\nenvironments = [\"production\"]\naction = \"auto_approve\"\nchanges = [\"create\"]\nallow_high_risk = true\n",
    );
    let out = run(std::process::Command::new(crate::support::bin())
        .args(["explain", "--", "kubectl", "get", "pods"])
        .env("HITL_GATE_POLICY", &policy));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_rejects_at_once_with_its_reason_or_needs_its_approvers() {
    let now = jiff::Timestamp::now();
    let start = (now - jiff::SignedDuration::from_hours(1)).to_string();
    let end = (now + jiff::SignedDuration::from_hours(1)).to_string();
    let freezes = format!(
        "[[freeze]]\nname = \"year-end\"\nreason = \"Year-end freeze: nothing changes in production.\"\nenvironments = [\"production\"]\nstart = \"{start}\"\nend = \"{end}\"\n\n[[freeze]]\nname = \"staging-quiet\"\nreason = \"Load test running.\"\nenvironments = [\"staging\"]\nstart = \"{start}\"\nend = \"{end}\"\nfreeze_approvals = 2\n"
    );
    let k = KubeGated::with_policy(&format!("{ENVIRONMENTS}\n{AUTO}\n{freezes}"), "").await;
    k.fake.put_deployment("prod", "web");
    let out = finish(k.kubectl(&["--context", "prod", "delete", "deployment", "web"])).await;
    let err = stderr(&out);
    assert_eq!(code(&out), 80, "{err}");
    assert!(
        err.contains("Year-end freeze: nothing changes in production."),
        "{err}"
    );
    assert!(err.contains("policy:freeze:year-end"), "{err}");
    assert!(k
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_some());

    // In staging the freeze needs two approvers, and the auto-approval does not apply.
    k.fake.put(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}),
    );
    std::fs::write(
        k.sb.work.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: dev\ndata:\n  a: b\n",
    )
    .unwrap();
    let mut child = k.kubectl(&["--context", "dev", "apply", "-f", "cm.yaml"]);
    let req = k.pending(&mut child).await;
    assert_eq!(req["classification"]["approvals_needed"], 2, "{req}");
    assert_eq!(req["classification"]["freeze"]["name"], "staging-quiet");
    assert!(req["classification"].get("auto_approve").is_none(), "{req}");
    k.decide(req["id"].as_str().unwrap(), "reject", "later")
        .await;
    let out = finish(child).await;
    assert_eq!(code(&out), 80);
    assert!(
        stderr(&out).contains("change freeze \"staging-quiet\" in force"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn explain_shows_a_weekly_freeze_at_a_given_time() {
    let sb = Sandbox::new();
    let policy = sb.policy(
        "p.toml",
        &format!("version = 1\n{ENVIRONMENTS}\n[[freeze]]\nname = \"weekend\"\nreason = \"No changes at the weekend.\"\nenvironments = [\"production\"]\nweekly = {{ from = \"fri 18:00\", to = \"mon 08:00\", zone = \"Europe/Berlin\" }}\n"),
    );
    let explain = |at: &str| {
        let out = run(std::process::Command::new(crate::support::bin())
            .args([
                "explain",
                "--at",
                at,
                "--",
                "kubectl",
                "--context",
                "prod",
                "delete",
                "pod",
                "x",
            ])
            .env("HITL_GATE_POLICY", &policy));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        stdout(&out)
    };
    // Saturday noon in Berlin: frozen. Wednesday: not. Friday 17:30 Berlin (16:30 UTC): not yet.
    let sat = explain("2026-12-05T12:00:00+01:00");
    assert!(
        sat.contains("freeze:       change freeze \"weekend\""),
        "{sat}"
    );
    assert!(sat.contains("No changes at the weekend."), "{sat}");
    for at in ["2026-12-09T12:00:00+01:00", "2026-12-04T16:30:00Z"] {
        let text = explain(at);
        assert!(!text.contains("freeze:"), "{at}: {text}");
    }
    assert!(
        explain("2026-12-04T17:00:00Z").contains("freeze:"),
        "Fri 18:00 Berlin"
    );
    // A bad time is a clear error.
    let out = run(std::process::Command::new(crate::support::bin())
        .args([
            "explain", "--at", "saturday", "--", "kubectl", "get", "pods",
        ])
        .env("HITL_GATE_POLICY", &policy));
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("not an RFC 3339 time"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_that_begins_while_a_request_waits_holds_its_approval() {
    // Five minutes from now: the server's clock is moved past it, however slow the machine is
    // (production requests wait 15 minutes, so they are still pending then).
    let now = jiff::Timestamp::now();
    let start = (now + jiff::SignedDuration::from_mins(5)).to_string();
    let end = (now + jiff::SignedDuration::from_hours(1)).to_string();
    let freezes = format!(
        "[[freeze]]\nname = \"prod-stop\"\nreason = \"Incident in progress.\"\nenvironments = [\"production\"]\nstart = \"{start}\"\nend = \"{end}\"\n\n[[freeze]]\nname = \"staging-two\"\nreason = \"Careful.\"\nenvironments = [\"staging\"]\nstart = \"{start}\"\nend = \"{end}\"\nfreeze_approvals = 2\n"
    );
    let srv = TestServer::start(&crate::support::server::policy_with(&format!(
        "{ENVIRONMENTS}\n{freezes}"
    )))
    .await;
    let make = |ctx: &str, server: Option<&str>| {
        let mut body = create_body(&["delete", "pod", ctx]);
        body["environment"] =
            serde_json::json!({"kube_context": ctx, "cluster_server": server, "namespace": "x"});
        body
    };
    let (s, prod) = srv
        .agent(TOKEN_A)
        .post("/api/v1/requests", make("prod", None))
        .await;
    assert_eq!(s, 201, "{prod}");
    let (s, staging) = srv
        .agent(TOKEN_A)
        .post(
            "/api/v1/requests",
            make("dev", Some("http://127.0.0.1:6443")),
        )
        .await;
    assert_eq!(s, 201, "{staging}");
    assert_eq!(staging["classification"]["environment"], "staging");
    assert!(
        prod["classification"].get("freeze").is_none(),
        "not yet: {prod}"
    );
    srv.clock.advance(Duration::from_secs(6 * 60));
    // Now frozen: production approves nothing; staging needs two approvers.
    let ap = srv.approver();
    let (s, v) = ap
        .decide(prod["id"].as_str().unwrap(), "approve", None)
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("Incident in progress."),
        "{v}"
    );
    let sid = staging["id"].as_str().unwrap();
    let (s, v) = ap.decide(sid, "approve", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "pending", "one of two: {v}");
    assert_eq!(v["approvals"].as_array().unwrap().len(), 1);
    // A rejection is still possible.
    let (s, v) = ap
        .decide(prod["id"].as_str().unwrap(), "reject", Some("frozen"))
        .await;
    assert_eq!(s, 200, "{v}");
}
