//! The web UI in a real headless Chromium, end to end: a real `kubectl delete` through the shim
//! (against the test-only fake Kubernetes API) waits while an approver signs in at the real
//! OIDC provider, sees it arrive in the inbox without reloading, opens it (the summary and the
//! decision on the first screen, on a desktop and on a phone, with who else has it open),
//! types the environment's name and approves; a real `kubectl apply` of a new image reads field
//! by field; a real terraform apply is rejected with a reason; the approver's own queue counts
//! in the tab title and notifies; a request's countdown runs out and it leaves the inbox as
//! expired; and what an agent wrote renders inert. axe-core checks every page the tests visit.
//! The screenshots of the README come from here.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::json;

use crate::support::browser::Browser;
use crate::support::gate::{finish, Gated, KubeGated};
use crate::support::oidc::{agent_acting_for, WebServer};
use crate::support::server::{audit_rows, create_body, TOKEN_A, TOKEN_B};
use crate::support::{code, stderr, tools};

const ENVIRONMENTS: &str = "[[environment]]\nname = \"production\"\nrisk = \"high\"\nkube_contexts = [\"prod*\"]\nterraform_workspaces = [\"default\"]\n\n[[environment]]\nname = \"staging\"\nrisk = \"medium\"\nkube_contexts = [\"staging\"]\n";

/// The desktop window and the phone of the first-screen checks.
const DESKTOP: (u32, u32) = (1280, 1000);
const PHONE: (u32, u32) = (390, 844);
/// How far down the summary and the decision must be drawn.
const FIRST_SCREEN: u32 = 900;

/// Opens `url` and signs in as `user` when the provider asks; ends on `url`.
async fn sign_in(b: &Browser, url: &str, user: &str) {
    b.c.goto(url).await.unwrap();
    b.provider_login(user).await;
    b.wait_for("header.top .who", 15).await;
}

/// The summary line and the decision are on the first screen, and the decision stays in view
/// at the bottom of the page.
async fn decision_on_first_screen(b: &Browser) {
    b.in_first("h1.summary", FIRST_SCREEN).await;
    b.in_first("section.decide", FIRST_SCREEN).await;
    b.js("window.scrollTo(0, document.body.scrollHeight); return true")
        .await;
    b.in_first("section.decide", 10_000).await;
    b.js("window.scrollTo(0, 0); return true").await;
}

const WEB_YAML: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25.3\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubectl_delete_waits_until_an_approver_approves_it_in_the_browser() {
    let WebServer { srv, idp, url } = WebServer::start(ENVIRONMENTS, "").await;
    let k = KubeGated::around(Gated::with_server(srv, "")).await;
    std::fs::write(k.sb.work.join("web.yaml"), WEB_YAML).unwrap();
    k.kubectl_direct(&["--context", "prod", "apply", "-f", "web.yaml"]);
    let b = Browser::start(DESKTOP.0, DESKTOP.1).await;
    sign_in(&b, &format!("{url}/ui"), "alice").await;
    assert!(b.text().await.contains("Nothing is waiting"));
    b.axe("the empty inbox").await;
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
    b.axe("the inbox").await;
    b.screenshot("inbox").await;
    let phone = Browser::phone(PHONE.0, PHONE.1).await;
    sign_in(&phone, &format!("{url}/ui"), "carol").await;
    phone.wait_for("#inbox-rows a.req", 15).await;
    phone.axe("the inbox on a phone").await;
    phone.screenshot("inbox-phone").await;

    row.click().await.unwrap();
    b.wait_for("section.decide", 15).await;
    let summary = b.wait_for("h1.summary", 5).await.text().await.unwrap();
    assert!(
        summary.starts_with(
            "DELETE deployment.apps/web (3 replicas, image nginx:1.25.3) in production / prod, \
             for agent-a acting for alice, "
        ),
        "{summary}"
    );
    assert!(summary.ends_with(" min left"), "{summary}");
    let page = b.text().await;
    assert!(
        page.contains("deployment.apps/web"),
        "the objects to delete: {page}"
    );
    decision_on_first_screen(&b).await;
    b.axe("a request with its decision form").await;
    // Another approver opens it on a phone: both see each other there, and the phone has the
    // summary and the decision bar on its first screen too.
    phone
        .c
        .goto(b.c.current_url().await.unwrap().as_ref())
        .await
        .unwrap();
    phone.wait_for("section.decide", 15).await;
    decision_on_first_screen(&phone).await;
    phone.axe("a request on a phone").await;
    b.wait_text("#presence", "carol@example.com", 15).await;
    phone.wait_text("#presence", "alice@example.com", 15).await;
    // Gone once the phone's page is (its stream ends; the server notices at the latest at the
    // stream's next keep-alive).
    phone.c.goto(&format!("{url}/ui/history")).await.unwrap();
    b.wait_text("#presence", "Nobody else", 60).await;
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
    b.axe("a decided request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_image_change_reads_field_by_field() {
    let WebServer {
        srv,
        idp: _idp,
        url,
    } = WebServer::start(ENVIRONMENTS, "").await;
    let k = KubeGated::around(Gated::with_server(srv, "")).await;
    std::fs::write(k.sb.work.join("web.yaml"), WEB_YAML).unwrap();
    k.kubectl_direct(&["--context", "prod", "apply", "-f", "web.yaml"]);
    let newer = WEB_YAML.replace("nginx:1.25.3", "nginx:1.26.0");
    std::fs::write(k.sb.work.join("web.yaml"), newer).unwrap();
    let mut child = k.kubectl(&["--context", "prod", "apply", "-f", "web.yaml"]);
    let req = k.pending(&mut child).await;
    let id = req["id"].as_str().unwrap();
    let b = Browser::start(DESKTOP.0, DESKTOP.1).await;
    sign_in(&b, &format!("{url}/ui/requests/{id}"), "alice").await;
    b.wait_for("section.decide", 15).await;
    let summary = b.wait_for("h1.summary", 5).await.text().await.unwrap();
    assert!(
        summary.starts_with(
            "UPDATE Deployment prod/web (image nginx:1.25.3 → nginx:1.26.0) in production / prod"
        ),
        "{summary}"
    );
    // One row for the changed field, named by the container, its changed words marked.
    let row = b
        .wait_for("table.attrs tbody tr", 5)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        row.contains("spec.template.spec.containers[web].image"),
        "{row}"
    );
    let marked = b
        .js("return Array.from(document.querySelectorAll('table.attrs ins, table.attrs del')).map(function (e) { return e.tagName + ':' + e.textContent; })")
        .await;
    assert_eq!(
        marked,
        json!(["DEL:25", "DEL:3", "INS:26", "INS:0"]),
        "only the changed words are marked"
    );
    // The tool's own diff marks them too (in the image's line, and in the last-applied
    // annotation's copy of the object).
    let diff = b
        .js("return Array.from(document.querySelectorAll('.diff ins')).map(function (e) { return e.textContent; })")
        .await;
    let diff: Vec<String> = serde_json::from_value(diff).unwrap();
    assert!(
        diff.starts_with(&["26".to_string(), "0".to_string()])
            || diff.ends_with(&["26".to_string(), "0".to_string()]),
        "{diff:?}"
    );
    assert!(diff.iter().all(|w| w == "26" || w == "0"), "{diff:?}");
    decision_on_first_screen(&b).await;
    b.axe("a kubernetes update").await;
    b.screenshot("request-kube-image").await;
    // An update needs no typed name: approve, and the new image runs.
    b.wait_for("button.approve", 5).await.click().await.unwrap();
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let live = k.fake.get("apps/v1", "deployments", "prod", "web").unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26.0"
    );
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
    let b = Browser::start(DESKTOP.0, DESKTOP.1).await;
    sign_in(&b, &format!("{url}/ui/requests/{id}"), "alice").await;
    b.wait_for("section.decide", 15).await;
    let page = b.text().await;
    assert!(page.contains("null_resource.db_migration"), "{page}");
    let summary = b.wait_for("h1.summary", 5).await.text().await.unwrap();
    assert!(
        summary.starts_with(
            "CREATE null_resource.cache and null_resource.db_migration in production / default"
        ),
        "{summary}"
    );
    decision_on_first_screen(&b).await;
    b.axe("a terraform apply").await;
    b.screenshot("request-terraform").await;
    let comment = b.wait_for("textarea[name=comment]", 5).await;
    comment
        .send_keys("the migration window is tonight, not now")
        .await
        .unwrap();
    b.wait_for("button.reject", 5).await.click().await.unwrap();
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
    b.axe("the history").await;
    b.screenshot("history").await;
    b.c.goto(&format!("{url}/ui/audit")).await.unwrap();
    b.wait_text("#chain", "verifies", 15).await;
    assert!(b.text().await.contains("request_created"));
    b.axe("the audit log").await;
    b.c.goto(&format!("{url}/ui/signed-out")).await.unwrap();
    b.wait_for("section.message", 15).await;
    b.axe("the signed-out page").await;
}

/// `(1) Inbox · hitl-gate`'s count, or 0 without one.
fn title_count(title: &str) -> u64 {
    title
        .strip_prefix('(')
        .and_then(|t| t.split_once(')'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approvers_own_queue_counts_in_the_title_and_notifies() {
    const TOKEN_C: &str = "token-of-agent-c";
    let rules = format!(
        "{ENVIRONMENTS}\n[[rule]]\nname = \"sre-only\"\ntools = [\"kubectl\"]\nsubcommands = [\"drain\"]\naction = \"gate\"\napprovers = [\"group:sre\"]\n"
    );
    let w = WebServer::start(
        &rules,
        &agent_acting_for("agent-c", TOKEN_C, "alice@example.com"),
    )
    .await;
    let create = |token: &'static str, argv: &'static [&'static str], ctx: &'static str| {
        let agent = w.srv.agent(token);
        async move {
            let mut body = create_body(argv);
            body["environment"] = json!({"kube_context": ctx, "namespace": "web"});
            let (s, v) = agent.post("/api/v1/requests", body).await;
            assert_eq!(s, 201, "{v}");
            v["id"].as_str().unwrap().to_string()
        }
    };
    create(
        TOKEN_B,
        &["scale", "deploy", "api", "--replicas=4"],
        "staging",
    )
    .await;
    let hers = create(
        TOKEN_C,
        &["scale", "deploy", "web", "--replicas=2"],
        "staging",
    )
    .await;
    let sre = create(TOKEN_B, &["drain", "node-7"], "prod-eu").await;
    let b = Browser::start(DESKTOP.0, DESKTOP.1).await;
    sign_in(&b, &format!("{}/ui?for=me", w.url), "alice").await;
    // Only the first is for alice: she is the human agent-c acts for, and not in sre.
    assert_eq!(b.c.title().await.unwrap(), "(1) Inbox · hitl-gate");
    assert_eq!(b.wait_text("#count-mine", "1", 5).await, "1");
    assert_eq!(b.wait_text("#count-all", "3", 5).await, "3");
    let rows = b
        .js("return document.querySelectorAll('#inbox-rows li.card').length")
        .await;
    assert_eq!(rows, json!(1));
    // Notifications, asked for (the browser's own permission prompt is stood in for).
    b.js("window.__notes = [];
         window.Notification = function (title, o) { window.__notes.push(title + ' | ' + o.body); };
         window.Notification.permission = 'granted';
         window.Notification.requestPermission = function () { return Promise.resolve('granted'); };
         return true")
        .await;
    let button = b.wait_for("#notify", 5).await;
    button.click().await.unwrap();
    b.wait_text("#notify", "Notifications on", 5).await;
    let newer = create(
        TOKEN_B,
        &[
            "set",
            "image",
            "deploy/api",
            "api=registry.example.com/api:2.4.1",
        ],
        "staging",
    )
    .await;
    b.wait_for(&format!("li[data-id='{newer}']"), 15).await;
    let notes = b.js("return window.__notes").await;
    let notes: Vec<String> = serde_json::from_value(notes).unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("hitl-gate: a request for you | staging: kubectl set image")
            && notes[0].contains("api:2.4.1"),
        "{notes:?}"
    );
    // The tab title follows (set a moment after the rows).
    let start = std::time::Instant::now();
    while title_count(&b.c.title().await.unwrap()) != 2 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the title stayed {:?}",
            b.c.title().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One that is not for her changes the counts, and raises nothing.
    create(
        TOKEN_C,
        &["scale", "deploy", "web", "--replicas=5"],
        "staging",
    )
    .await;
    b.wait_text("#count-all", "5", 15).await;
    assert_eq!(b.js("return window.__notes.length").await, json!(1));
    b.axe("the for-me queue").await;
    b.screenshot("inbox-for-me").await;
    // Her own agent's request: she may reject it, not approve it.
    b.c.goto(&format!("{}/ui/requests/{hers}", w.url))
        .await
        .unwrap();
    let bar = b
        .wait_text(
            "section.decide",
            "You cannot approve this: agent-c acts for you",
            15,
        )
        .await;
    assert!(bar.contains("Reject"), "{bar}");
    assert!(b.c.find(Locator::Css("button.approve")).await.is_err());
    b.axe("a request the approver may only reject").await;
    // The sre's request: who may decide, and no form.
    b.c.goto(&format!("{}/ui/requests/{sre}", w.url))
        .await
        .unwrap();
    b.wait_text(
        "section.decide",
        "Only group:sre may decide this request (rule sre-only).",
        15,
    )
    .await;
    assert!(b.c.find(Locator::Css("section.decide form")).await.is_err());
    // Times are the browser's own, with UTC in the tooltip.
    let (shown, tooltip) = {
        let t = b.wait_for("time[data-local]", 5).await;
        (
            t.text().await.unwrap(),
            t.attr("title").await.unwrap().unwrap(),
        )
    };
    assert!(tooltip.ends_with(" UTC"), "{tooltip}");
    assert!(
        !shown.ends_with("UTC") && shown != tooltip,
        "{shown} / {tooltip}"
    );
    b.axe("a request the approver may not decide").await;
    // A refusal keeps the header, who is signed in and Sign out.
    b.c.goto(&format!("{}/ui/requests/{}", w.url, "f".repeat(32)))
        .await
        .unwrap();
    b.wait_text("section.message", "No such request", 15).await;
    let header = b.wait_for("header.top", 5).await.text().await.unwrap();
    assert!(
        header.contains("alice@example.com") && header.contains("Sign out"),
        "{header}"
    );
    b.axe("a refusal").await;
    // The check itself works: an unlabelled field and unreadable text are found (the styles set
    // through the CSSOM, which the page's CSP allows, unlike a style attribute).
    b.js("var i = document.createElement('input'); i.type = 'text';
         var p = document.createElement('p'); p.textContent = 'faint'; p.className = 'x';
         p.style.color = '#eee'; p.style.background = '#fff';
         document.querySelector('main').append(i, p); return true")
        .await;
    let found = b.axe_findings().await.to_string();
    assert!(
        found.contains("label") && found.contains("color-contrast"),
        "{found}"
    );
}

/// "4 min 58 s left", "14 min left" or "1 h 5 min left", in seconds.
fn secs_left(t: &str) -> i64 {
    let words: Vec<&str> = t.trim_end_matches(" left").split_whitespace().collect();
    words
        .chunks(2)
        .map(|p| {
            let n: i64 = p[0].parse().unwrap_or_else(|_| panic!("{t}"));
            n * match p[1] {
                "h" => 3600,
                "min" => 60,
                "s" => 1,
                other => panic!("{other} in {t}"),
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_countdown_runs_out_leaves_the_inbox_as_expired() {
    let rules = format!(
        "{ENVIRONMENTS}\n[[rule]]\nname = \"five\"\ntools = [\"kubectl\"]\nsubcommands = [\"scale\"]\naction = \"gate\"\ntimeout = \"5m\"\n"
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
    let first = left.text().await.unwrap();
    assert!((200..=300).contains(&secs_left(&first)), "{first}");
    // It counts down (the page's own clock): wait for the next tick, however late it comes.
    let start = std::time::Instant::now();
    loop {
        let later = left.text().await.unwrap();
        if secs_left(&later) < secs_left(&first) {
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
    w.srv.clock.advance(Duration::from_secs(6 * 60));
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
