//! The web UI in a real headless Chromium, end to end: a real `kubectl delete` through the shim
//! (against the test-only fake Kubernetes API) waits while an approver signs in at the real
//! OIDC provider, sees it arrive in the inbox without reloading, opens it, types the
//! environment's name and approves; a real terraform apply is rejected with a reason; a
//! request's countdown runs out and it leaves the inbox as expired; and what an agent wrote
//! renders inert. The screenshots of the README come from here.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::json;

use crate::support::browser::Browser;
use crate::support::gate::{finish, Gated, KubeGated};
use crate::support::oidc::WebServer;
use crate::support::server::{audit_rows, create_body, TOKEN_A};
use crate::support::{code, stderr, tools};

const ENVIRONMENTS: &str = "[[environment]]\nname = \"production\"\nrisk = \"high\"\nkube_contexts = [\"prod*\"]\nterraform_workspaces = [\"default\"]\n\n[[environment]]\nname = \"staging\"\nrisk = \"medium\"\nkube_contexts = [\"staging\"]\n";

/// Opens `url` and signs in as `user` when the provider asks; ends on `url`.
async fn sign_in(b: &Browser, url: &str, user: &str) {
    b.c.goto(url).await.unwrap();
    b.provider_login(user).await;
    b.wait_for("header.top .who", 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubectl_delete_waits_until_an_approver_approves_it_in_the_browser() {
    let WebServer { srv, idp, url } = WebServer::start(ENVIRONMENTS, "").await;
    let k = KubeGated::around(Gated::with_server(srv, "")).await;
    std::fs::write(
        k.sb.work.join("web.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n",
    )
    .unwrap();
    k.kubectl_direct(&["--context", "prod", "apply", "-f", "web.yaml"]);
    let b = Browser::start(1280, 1650).await;
    sign_in(&b, &format!("{url}/ui"), "alice").await;
    assert!(b.text().await.contains("Nothing is waiting"));
    // A marker that a reload would wipe: the row must arrive without one.
    b.js("window.__still_here = true; return true").await;

    let mut child = k.kubectl(&["--context", "prod", "delete", "deployment", "web"]);
    let row = b.wait_for("#inbox-rows a.req", 15).await;
    assert_eq!(
        b.js("return window.__still_here === true").await,
        json!(true)
    );
    let row_text = row.text().await.unwrap();
    assert!(
        row_text.contains("production") && row_text.contains("high"),
        "{row_text}"
    );
    assert!(row_text.contains("delete deployment web"), "{row_text}");
    b.screenshot("inbox").await;
    let phone = Browser::phone(390, 844).await;
    sign_in(&phone, &format!("{url}/ui"), "carol").await;
    phone.wait_for("#inbox-rows a.req", 15).await;
    phone.screenshot("inbox-phone").await;

    row.click().await.unwrap();
    b.wait_for("section.decide", 15).await;
    let page = b.text().await;
    assert!(
        page.contains("deployment.apps/web"),
        "the objects to delete: {page}"
    );
    // Approve waits for the environment's name.
    let approve = b.c.find(Locator::Css("button.approve")).await.unwrap();
    assert!(!approve.is_enabled().await.unwrap());
    let confirm = b.c.find(Locator::Css("input[name=confirm]")).await.unwrap();
    confirm.send_keys("productio").await.unwrap();
    assert!(!approve.is_enabled().await.unwrap());
    confirm.send_keys("n").await.unwrap();
    assert!(approve.is_enabled().await.unwrap());
    b.screenshot("request-kubectl").await;
    let req = k.pending(&mut child).await;
    approve.click().await.unwrap();

    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        k.fake
            .get("apps/v1", "deployments", "prod", "web")
            .is_none(),
        "the approved delete ran"
    );
    let id = req["id"].as_str().unwrap();
    let row = audit_rows(&k.srv.data)
        .into_iter()
        .find(|r| r.kind == "approved" && r.request_id.as_deref() == Some(id))
        .expect("the approval's audit row");
    assert_eq!(row.actor, format!("oidc:{}#alice", idp.issuer));
    b.wait_for("section.decided", 15).await;
    assert!(b.text().await.contains("approved by alice@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terraform_apply_rejected_in_the_browser_exits_with_the_reason() {
    let WebServer {
        srv,
        url,
        idp: _idp,
    } = WebServer::start(ENVIRONMENTS, "").await;
    let g = Gated::with_server(srv, "");
    let tf = "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\", version = \"2.1.2\" }\n  }\n}\nresource \"null_resource\" \"db_migration\" {\n  triggers = { version = \"42\" }\n}\nresource \"null_resource\" \"cache\" {\n  triggers = { size = \"large\" }\n}\n";
    let dir = g.terraform_dir(&tools::terraform_1_15(), "infra", tf);
    let mut child = g.spawn_in("terraform", &dir, &["apply"], &[]);
    let req = g.pending(&mut child).await;
    let id = req["id"].as_str().unwrap();
    let b = Browser::start(1280, 1400).await;
    sign_in(&b, &format!("{url}/ui/requests/{id}"), "alice").await;
    b.wait_for("section.decide", 15).await;
    let page = b.text().await;
    assert!(page.contains("null_resource.db_migration"), "{page}");
    b.screenshot("request-terraform").await;
    b.c.find(Locator::Css("textarea[name=comment]"))
        .await
        .unwrap()
        .send_keys("the migration window is tonight, not now")
        .await
        .unwrap();
    b.c.find(Locator::Css("button.reject"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let out = finish(child).await;
    assert_eq!(code(&out), 80, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the migration window is tonight, not now"),
        "{}",
        stderr(&out)
    );
    assert!(
        g.terraform(&dir, &["state", "list"]).stdout.is_empty(),
        "nothing applied"
    );
    // Two more decided requests, so the history has something to filter.
    for (argv, ctx, verb) in [
        (
            ["scale", "deploy", "api", "--replicas=4"],
            "staging",
            "approve",
        ),
        (
            ["delete", "pod", "api-7f9c-x2", "--now"],
            "prod-eu",
            "reject",
        ),
    ] {
        let mut body = create_body(&argv);
        body["environment"] = json!({"kube_context": ctx});
        let (s, v) = g.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
        assert_eq!(s, 201, "{v}");
        g.decide(v["id"].as_str().unwrap(), verb, "checked with the on-call")
            .await;
    }
    b.c.goto(&format!("{url}/ui/history")).await.unwrap();
    b.wait_for("ul.cards a.req", 15).await;
    assert!(b.text().await.contains("rejected"));
    b.screenshot("history").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_countdown_runs_out_leaves_the_inbox_as_expired() {
    let rules = format!(
        "{ENVIRONMENTS}\n[[rule]]\nname = \"twenty\"\ntools = [\"kubectl\"]\nsubcommands = [\"scale\"]\naction = \"gate\"\ntimeout = \"20m\"\n"
    );
    let w = WebServer::start(&rules, "").await;
    let b = Browser::start(1280, 900).await;
    sign_in(&b, &format!("{}/ui", w.url), "alice").await;
    b.js("window.__still_here = true; return true").await;
    let mut body = create_body(&["scale", "deploy", "web", "--replicas=5"]);
    body["environment"] = json!({"kube_context": "staging"});
    let (s, v) = w.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let left = b.wait_for("#inbox-rows .left", 30).await;
    // "59m 58s left": in seconds.
    let secs = |t: &str| -> i64 {
        assert!(t.ends_with("s left"), "{t}");
        t.trim_end_matches(" left")
            .split_whitespace()
            .map(|p| {
                let (n, unit) = p.split_at(p.len() - 1);
                n.parse::<i64>().unwrap()
                    * [("h", 3600), ("m", 60), ("s", 1)]
                        .iter()
                        .find(|u| u.0 == unit)
                        .unwrap()
                        .1
            })
            .sum()
    };
    let first = left.text().await.unwrap();
    assert!((1000..=1200).contains(&secs(&first)), "{first}");
    // It counts down (the page's own clock): wait for the next tick, however late it comes.
    let start = std::time::Instant::now();
    loop {
        let later = left.text().await.unwrap();
        if secs(&later) < secs(&first) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "it never counted down from {first}: {later}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the deadline (the server's clock moved, not waited for; the session, idle for less
    // than its 30 minutes, stays): the reaper expires it and the inbox drops it, in place.
    w.srv.clock.advance(Duration::from_secs(21 * 60));
    b.wait_gone("#inbox-rows a.req", 60).await;
    assert_eq!(
        b.js("return window.__still_here === true").await,
        json!(true)
    );
    let (_, v) = w
        .srv
        .agent(TOKEN_A)
        .get(&format!("/api/v1/requests/{id}"))
        .await;
    assert_eq!(v["state"], "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_agent_wrote_renders_inert_and_visible() {
    let w = WebServer::start(ENVIRONMENTS, "").await;
    let mut body = create_body(&[
        "apply",
        "-f",
        "<script>window.__pwned=1</script>",
        "\"><img src=x onerror=\"window.__pwned=2\">",
        "\u{1b}[2K\u{1b}[31mred",
        "\u{202e}gpj.exe",
    ]);
    body["environment"] = json!({"kube_context": "staging"});
    body["diff"]["text"] =
        json!("+ <script>window.__pwned=3</script>\n+ <img src=x onerror=\"window.__pwned=4\">\n");
    body["reason"] = json!("<b onmouseover=\"window.__pwned=5\">trust me</b>");
    let (s, v) = w.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let b = Browser::start(1280, 900).await;
    sign_in(&b, &format!("{}/ui", w.url), "alice").await;
    b.wait_for("#inbox-rows a.req", 10).await;
    b.c.goto(&format!("{}/ui/requests/{id}", w.url))
        .await
        .unwrap();
    b.wait_for("section.decide", 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.js("return typeof window.__pwned").await,
        json!("undefined"),
        "no agent-supplied script ran"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('main img, main b[onmouseover]').length")
            .await,
        json!(0)
    );
    let text = b.text().await;
    for shown in [
        "<script>window.__pwned=1</script>",
        "<img src=x onerror=",
        "\\u{1b}[2K",
        "\\u{202e}gpj.exe",
        "<b onmouseover=",
    ] {
        assert!(text.contains(shown), "{shown:?} is shown as text: {text}");
    }
}
