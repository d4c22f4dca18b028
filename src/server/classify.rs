//! The server's own classification of a request: rule, environment, risk, timeout. It reads
//! the argv with the same readers as the shim and matches the reported target against the
//! server's policy; it never trusts the shim's verdict.

use std::ffi::OsString;

use super::app::App;
use crate::api::{Classification, CreateRequest};
use crate::policy::{Context, Facts, Risk, Verdict};
use crate::tool::Tool;

/// The server's own classification of a request: it never trusts the shim's verdict.
pub fn classify(app: &App, req: &CreateRequest, tool: Tool) -> Classification {
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
    let (verdict, rule, env) = match crate::argv::read(tool, &args, &|_| None) {
        Ok(inv) => {
            let v = app.policy.classify(tool, &inv, &ctx);
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
    Classification {
        verdict: verdict.into(),
        rule,
        environment: env.as_ref().map(|e| e.name.clone()),
        risk: risk.map(|r| format!("{r:?}").to_lowercase()),
        timeout_seconds: timeout.as_secs(),
        approvals_needed: 1,
    }
}
