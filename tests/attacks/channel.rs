//! The channel between shim and server: the agent's proxy variables are ignored, and an approval
//! covers the request body the server stored and a nonce of this very command, so a replayed
//! approval of an identical earlier command does not run it again.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::support::gate::{finish, KubeGated};
use crate::support::{code, stderr};

use super::act_before_approval::deployment;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_of_the_agent_are_ignored() {
    let k = KubeGated::new().await;
    std::fs::write(k.sb.work.join("web.yaml"), deployment("web", 1)).unwrap();
    // A "proxy" that counts connections and answers nothing.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", proxy.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    std::thread::spawn(move || {
        for c in proxy.incoming() {
            s.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    let env = [
        ("HTTP_PROXY", url.as_str()),
        ("http_proxy", url.as_str()),
        ("HTTPS_PROXY", url.as_str()),
        ("ALL_PROXY", url.as_str()),
    ];
    let mut child = k.kubectl_with(&["apply", "-f", "web.yaml"], &env);
    let req = k.pending(&mut child).await;
    k.decide(req["id"].as_str().unwrap(), "reject", "no").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 80, "{}", stderr(&out));
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "the shim talked through the agent's proxy"
    );
}

/// A man in the middle that answers every create with a request an approver approved earlier.
async fn replaying_server(approved: Value) -> String {
    use axum::routing::{get, post};
    let view = Arc::new(approved);
    let (v1, v2, v3) = (view.clone(), view.clone(), view.clone());
    let app = axum::Router::new()
        .route(
            "/api/v1/requests",
            post(
                move || async move { (axum::http::StatusCode::CREATED, axum::Json((*v1).clone())) },
            ),
        )
        .route(
            "/api/v1/requests/{id}",
            get(move || async move { axum::Json((*v2).clone()) }),
        )
        .route(
            "/api/v1/requests/{id}/outcome",
            post(move || async move { axum::Json((*v3).clone()) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_approval_of_an_identical_command_does_not_run_it_again() {
    let k = KubeGated::new().await;
    std::fs::write(k.sb.work.join("web.yaml"), deployment("web", 2)).unwrap();
    let kc = k.kubeconfig.display().to_string();
    let mut child = k.kubectl(&["apply", "-f", "web.yaml"]);
    let req = k.pending(&mut child).await;
    let id = req["id"].as_str().unwrap().to_string();
    k.decide(&id, "approve", "once").await;
    assert_eq!(code(&finish(child).await), 0);
    let (_, approved) = k
        .approver()
        .request("GET", &format!("/api/v1/requests/{id}"), None)
        .await;
    assert_eq!(approved["state"], "approved");

    // Someone scales web back by hand; the agent replays the same apply through a proxy that
    // answers with the old approval.
    let mut c = k.sb.direct("kubectl");
    c.args(["scale", "deploy", "web", "--replicas=1"])
        .env("KUBECONFIG", &kc)
        .current_dir(&k.sb.work);
    assert_eq!(code(&crate::support::run(&mut c)), 0);
    let mitm = replaying_server(approved).await;
    let policy = std::fs::read_to_string(&k.agent_policy).unwrap();
    let evil = k.sb.policy("evil.toml", &policy.replace(&k.srv.url, &mitm));
    let evil_s = evil.display().to_string();
    let child = k.spawn_with(
        "kubectl",
        &k.sb.work,
        &["apply", "-f", "web.yaml"],
        &[("KUBECONFIG", &kc), ("HITL_GATE_POLICY", &evil_s)],
        Stdio::null(),
    );
    let out = finish(child).await;
    assert_eq!(code(&out), 88, "{}", stderr(&out));
    let replicas =
        k.fake.get("apps/v1", "deployments", "prod", "web").unwrap()["spec"]["replicas"].clone();
    assert_eq!(replicas, 1, "the replayed approval ran the apply again");
}
