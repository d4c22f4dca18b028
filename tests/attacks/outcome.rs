//! The outcome is the agent's word: the server cannot see the run. The agent's token can post an
//! outcome (even before its shim does) and record `no_changes`; both are labelled as reported by
//! the agent, in the API, in `show` and in the audit log, and a second outcome is refused and
//! itself recorded.

use serde_json::json;

use crate::support::server::{create_body, policy_with, TestServer, TOKEN_A};
use crate::support::{bin, run, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_labelled_as_the_agents_and_recorded_once() {
    let srv = TestServer::start(&policy_with("")).await;
    let agent = srv.agent(TOKEN_A);
    let id = agent.create(&["delete", "pod", "x"]).await;
    let (s, _) = srv.approver().decide(&id, "approve", Some("ok")).await;
    assert_eq!(s, 200);
    let out = json!({"exit_code": 0, "duration_ms": 1200});
    let (s, v) = agent
        .post(&format!("/api/v1/requests/{id}/outcome"), out.clone())
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["outcome_reported_by"], "agent:agent-a");
    // A second outcome (a "better" one) is refused, and the attempt is on the record.
    let (s, v) = agent
        .post(
            &format!("/api/v1/requests/{id}/outcome"),
            json!({"exit_code": 1, "duration_ms": 5}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    let (_, v) = agent.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(v["outcome"]["exit_code"], 0, "the first outcome stands");
    // no_changes is the agent's word too.
    let (s, _) = agent
        .post("/api/v1/no-changes", create_body(&["apply"]))
        .await;
    assert_eq!(s, 201);

    let rows = crate::support::server::audit_export(&srv.data);
    let kinds: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    assert!(kinds.contains(&"outcome_refused"), "{kinds:?}");
    for (kind, body) in &rows {
        if matches!(kind.as_str(), "outcome" | "no_changes") {
            assert_eq!(body["reported_by"], "agent:agent-a", "{kind}: {body}");
            assert_eq!(body["verified"], false, "{kind}: {body}");
        }
    }
    let shown = stdout(&run(std::process::Command::new(bin())
        .args(["show", &id, "--data-dir"])
        .arg(&srv.data)));
    assert!(
        shown.contains("reported by agent:agent-a; not verified by the server"),
        "{shown}"
    );
    srv.stop().await;
}
