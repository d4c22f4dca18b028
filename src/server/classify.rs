//! The server's own classification of a request: rule, environment, risk, timeout, who may
//! approve and how many must, an auto-approval that applies, a change freeze that covers it.
//! It reads the argv with the same readers as the shim and matches the reported target against
//! the server's policy; it never trusts the shim's verdict.

use super::live::Agent;
use crate::api::{Classification, CreateRequest, FreezeInfo};
use crate::policy::on_server::{judge, ServerVerdict};
use crate::policy::schema::Action;
use crate::policy::{Policy, Risk};
use crate::tool::Tool;

/// The server's own classification by `policy` of a request made by `agent` at `now` (unix
/// ms): it never trusts the shim's verdict.
pub fn classify(
    policy: &Policy,
    req: &CreateRequest,
    tool: Tool,
    agent: &Agent,
    now: i64,
) -> Classification {
    let serve = policy.serve();
    let ServerVerdict {
        verdict,
        rule,
        environment: env,
    } = judge(
        policy,
        tool,
        req,
        &agent.name,
        agent.on_behalf_of.as_deref(),
    );
    let risk = env.as_ref().map(|e| e.risk);
    let timeout = policy.rule_timeout(&rule).unwrap_or_else(|| {
        if risk >= Some(Risk::High) {
            serve.high_risk_timeout.0
        } else {
            serve.default_timeout.0
        }
    });
    let file_rule = policy.rule(&rule);
    let gate_rule = file_rule.filter(|r| r.action == Action::Gate);
    let environment = env.as_ref().map(|e| e.name.clone());
    let freeze = policy
        .freeze_at(environment.as_deref(), now)
        .map(|f| FreezeInfo {
            name: f.name.clone(),
            reason: f.reason.clone(),
            approvals: f.freeze_approvals,
        });
    let rule_approvals = gate_rule.and_then(|r| r.approvals).unwrap_or(1);
    let auto = file_rule
        .filter(|r| r.action == Action::AutoApprove && verdict == "gate")
        // Nothing is approved by policy during a freeze.
        .filter(|_| freeze.is_none())
        .map(|r| r.name.clone());
    Classification {
        verdict: verdict.into(),
        rule,
        environment,
        risk: risk.map(|r| format!("{r:?}").to_lowercase()),
        timeout_seconds: timeout.as_secs(),
        approvals_needed: rule_approvals
            .max(freeze.as_ref().and_then(|f| f.approvals).unwrap_or(1)),
        approvers: gate_rule.map(|r| r.approvers.clone()).unwrap_or_default(),
        allow_self_approval: gate_rule.is_some_and(|r| r.allow_self_approval),
        auto_approve: auto,
        freeze,
    }
}
