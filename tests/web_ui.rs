//! The web UI over HTTP, without a browser: sign-in through a real OIDC provider's login form,
//! sessions, the decision form and every check that guards it (approver groups, CSRF, Origin,
//! state, replayed codes, logout, fresh sign-in for risky decisions, confirmation of
//! destructive ones), the audit row of a web decision, and the security headers.

use serde_json::json;

use crate::support::oidc::{WebClient, WebServer};
use crate::support::server::{audit_rows, create_body, TOKEN_A};

/// A request in `environment` (the server's classification), made through the agent API.
async fn request(w: &WebServer, argv: &[&str], kube_context: &str) -> String {
    let mut body = create_body(argv);
    body["environment"] = json!({"kube_context": kube_context, "namespace": "web"});
    let (s, v) = w.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

const PROD: &str = "[[environment]]\nname = \"production\"\nrisk = \"high\"\nkube_contexts = [\"prod*\"]\n\n[[environment]]\nname = \"staging\"\nrisk = \"medium\"\nkube_contexts = [\"staging\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_signs_in_decides_and_the_audit_row_names_them() {
    let w = WebServer::start(PROD, "").await;
    let id = request(&w, &["scale", "deploy", "web", "--replicas=3"], "staging").await;
    let mut c = WebClient::new(&w.url);
    // Not signed in: sent to sign in, coming back to the page.
    let r = c.get(&format!("{}/ui/requests/{id}", w.url)).await;
    assert_eq!(r.status, 303);
    assert!(
        r.location
            .as_deref()
            .unwrap()
            .contains("/ui/login?return_to="),
        "{r:?}"
    );
    c.sign_in(&w.url, "alice").await;
    let inbox = c.get(&format!("{}/ui", w.url)).await;
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    assert!(inbox.body.contains(&id), "the inbox lists the request");
    assert!(
        inbox.body.contains("alice@example.com"),
        "signed in as alice"
    );
    let page = c.get(&format!("{}/ui/requests/{id}", w.url)).await;
    assert_eq!(page.status, 200);
    let csrf = WebClient::csrf(&page.body);
    let r = c
        .post(
            &format!("{}/ui/requests/{id}/decision", w.url),
            &[("csrf", &csrf), ("decision", "approve"), ("comment", "ok")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, v) = w
        .srv
        .agent(TOKEN_A)
        .get(&format!("/api/v1/requests/{id}"))
        .await;
    assert_eq!(v["state"], "approved");
    let actor = format!("oidc:{}#alice", w.idp.issuer);
    assert_eq!(v["decision"]["approvers"], json!([actor]));
    let row = audit_rows(&w.srv.data)
        .into_iter()
        .find(|r| r.kind == "approved")
        .expect("an approved row");
    assert_eq!(row.actor, actor);
    let body: serde_json::Value = serde_json::from_str(&row.body).unwrap();
    let who = &body["approver"];
    assert_eq!(who["via"], "web");
    assert_eq!(who["issuer"], w.idp.issuer.as_str());
    assert_eq!(who["subject"], "alice");
    assert_eq!(who["email"], "alice@example.com");
    assert!(who["auth_time"].as_i64().unwrap() > 0, "{who}");
    assert_eq!(who["session_sha256"].as_str().unwrap().len(), 64, "{who}");
    assert_eq!(who["source_ip"], "127.0.0.1");
    assert!(who["user_agent"].is_string() || who["user_agent"].is_null());
}
