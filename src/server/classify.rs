//! The server's own classification of a request: rule, environment, risk, timeout, who may
//! approve and how many must, an auto-approval that applies, a change freeze that covers it.
//! It reads the argv with the same readers as the shim and matches the reported target against
//! the server's policy; it never trusts the shim's verdict.

use std::ffi::OsString;

use super::app::{Agent, App};
use crate::api::{Classification, CreateRequest, FreezeInfo};
use crate::policy::approvals::{auto_conditions, AutoFacts};
use crate::policy::schema::Action;
use crate::policy::{Context, Facts, Risk, Verdict};
use crate::tool::Tool;

/// The server's own classification of a request made by `agent` at `now` (unix ms): it never
/// trusts the shim's verdict.
pub fn classify(
    app: &App,
    req: &CreateRequest,
    tool: Tool,
    agent: &Agent,
    now: i64,
) -> Classification {
    let serve = app.policy.serve();
    let args: Vec<OsString> = req.argv.iter().map(OsString::from).collect();
    let facts = Facts {
        kube_context: req.environment.kube_context.clone(),
        namespace: req.environment.namespace.clone(),
        terraform_workspace: req.environment.terraform_workspace.clone(),
        dir: req
            .environment
            .dir
            .clone()
            .or_else(|| Some(req.cwd.clone())),
        // What the shim resolved with the real tool.
        kube_server: req.environment.cluster_server.clone(),
        terraform_backend: req.environment.terraform_backend.clone(),
        trusted_only: false,
    };
    let ctx = Context {
        cwd: Some(req.cwd.clone().into()),
        env: &|_| None,
        facts: Some(facts),
        kube_server: &|| None,
    };
    let facts = AutoFacts {
        agent: &agent.name,
        on_behalf_of: agent.on_behalf_of.as_deref(),
        summary: &req.diff.summary,
    };
    let conditions = |rule: &crate::policy::schema::Rule| auto_conditions(rule, &facts).is_ok();
    let (verdict, rule, env) = match crate::argv::read(tool, &args, &|_| None) {
        Ok(inv) => {
            let v = app.policy.classify_on_server(tool, &inv, &ctx, &conditions);
            let env = v
                .decision()
                .environment
                .clone()
                .or_else(|| app.policy.environment(tool, &inv, &ctx));
            let name = match &v {
                Verdict::Pass(_) => "pass",
                Verdict::Gate(_) => "gate",
                Verdict::Deny(_) => "deny",
            };
            (name, v.decision().rule.clone(), env)
        }
        Err(e) => ("gate", format!("argv ({e})"), None),
    };
    let risk = env.as_ref().map(|e| e.risk);
    let timeout = app.policy.rule_timeout(&rule).unwrap_or_else(|| {
        if risk >= Some(Risk::High) {
            serve.high_risk_timeout.0
        } else {
            serve.default_timeout.0
        }
    });
    let file_rule = app.policy.rule(&rule);
    let gate_rule = file_rule.filter(|r| r.action == Action::Gate);
    let environment = env.as_ref().map(|e| e.name.clone());
    let freeze = app
        .policy
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
