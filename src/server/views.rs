//! Stored request rows as the API's views, and the small summary kept beside each request for
//! the inbox (so listing never reads a whole request body).

use serde_json::json;
use sqlx::Row as _;

use super::db::{Result, StoreError};
use crate::api::{Classification, CreateRequest, Outcome, RequestView, State};

/// What the inbox shows of a request, kept beside it so listing never reads its whole body:
/// the tool, the first 16 arguments and the last 4 after them (200 characters each at most; the
/// tail of a long command is what tells two apart), the reason (300), who it acts for, the
/// server's classification and the change counts (the server's, from the model).
pub(super) fn summary(
    request: &CreateRequest,
    on_behalf_of: Option<&str>,
    classification: &Classification,
) -> serde_json::Value {
    let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    json!({
        "tool": &request.tool,
        "argv": request.argv.iter().take(16).map(|a| cut(a, 200)).collect::<Vec<_>>(),
        "argv_len": request.argv.len(),
        "argv_tail": request
            .argv
            .iter()
            .skip(16)
            .rev()
            .take(4)
            .rev()
            .map(|a| cut(a, 200))
            .collect::<Vec<_>>(),
        "reason": request.reason.as_deref().map(|r| cut(r, 300)),
        "on_behalf_of": on_behalf_of,
        "classification": classification,
        "changes": crate::api::Changes::of(&request.diff.summary),
    })
}

/// A request row (`id, agent, state, created_at, deadline, data, decision, outcome, …,
/// approvals`) as the API's view.
pub(super) fn view_from_row(r: &sqlx::any::AnyRow) -> Result<RequestView> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        StoreError(format!("stored {what} is unreadable: {e}"))
    };
    let data: serde_json::Value =
        serde_json::from_str(r.get::<&str, _>(5)).map_err(|e| bad("request", &e))?;
    let request: CreateRequest =
        serde_json::from_value(data["request"].clone()).map_err(|e| bad("request", &e))?;
    let classification: Classification = serde_json::from_value(data["classification"].clone())
        .map_err(|e| bad("classification", &e))?;
    let state_s: String = r.get(2);
    let decision: Option<String> = r.get(6);
    let outcome: Option<String> = r.get(7);
    let agent: String = r.get(1);
    let reported = outcome
        .map(|o| stored_outcome(&o, &agent))
        .transpose()
        .map_err(|e| bad("outcome", &e))?;
    Ok(RequestView {
        id: r.get(0),
        agent,
        state: State::parse(&state_s)
            .ok_or_else(|| StoreError(format!("unknown state {state_s}")))?,
        on_behalf_of: data["on_behalf_of"].as_str().map(Into::into),
        tool: request.tool,
        argv: request.argv,
        cwd: request.cwd,
        host: request.host,
        environment: request.environment,
        changes: crate::api::Changes::of(&request.diff.summary),
        diff: request.diff,
        artifact_sha256: request.artifact_sha256,
        reason: request.reason,
        nonce: request.nonce,
        run: request.run,
        classification,
        created_at: r.get(3),
        deadline: r.get(4),
        decision: decision
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(|e| bad("decision", &e))?,
        outcome_verified: reported.as_ref().is_some_and(|r| r.2),
        outcome_reported_by: reported.as_ref().map(|r| r.1.clone()),
        outcome: reported.map(|r| r.0),
        approvals: serde_json::from_str(r.get::<&str, _>("approvals"))
            .map_err(|e| bad("approvals", &e))?,
        review_url: None,
        agent_waiting: false,
        run_claimed: r
            .try_get::<Option<String>, _>("run_claim")
            .ok()
            .flatten()
            .is_some(),
        // Not every query reads it (decided requests have none).
        agent_waiting_until: r
            .try_get::<Option<i64>, _>("agent_waiting_until")
            .ok()
            .flatten(),
    })
}

/// A stored outcome: the outcome, who reported it (older rows: the agent) and whether that was
/// a lockdown writer that ran it (verified).
fn stored_outcome(text: &str, agent: &str) -> serde_json::Result<(Outcome, String, bool)> {
    let mut v: serde_json::Value = serde_json::from_str(text)?;
    let by = v
        .as_object_mut()
        .and_then(|m| m.remove("reported_by"))
        .and_then(|b| b.as_str().map(String::from))
        .unwrap_or_else(|| format!("agent:{agent}"));
    let verified = v
        .as_object_mut()
        .and_then(|m| m.remove("verified"))
        .is_some_and(|b| b == serde_json::Value::Bool(true));
    Ok((serde_json::from_value(v)?, by, verified))
}
