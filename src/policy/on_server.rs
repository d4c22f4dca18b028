//! The server's verdict on a request: its own policy applied to the request's argv (read with
//! the shim's readers), the target the shim reported (what the command reaches counts only when
//! the shim called the target exact), the change model the request carries (read back by the
//! server, `ChangeSet::from_wire`) and what the argv can possibly do (`effects`). The shim's own
//! verdict is never read. Pure: the server's classification and the property tests share it.

use std::ffi::OsString;

use super::approvals::{auto_conditions, AutoFacts};
use super::schema::Rule;
use super::{effects, Context, EnvMatch, Facts, Policy, Verdict};
use crate::api::CreateRequest;
use crate::diff::ChangeSet;
use crate::tool::Tool;

/// What the server's policy makes of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVerdict {
    /// `pass`, `gate` or `deny`. A `gate` naming an `auto_approve` rule means: approved
    /// without a human.
    pub verdict: &'static str,
    pub rule: String,
    pub environment: Option<EnvMatch>,
}

/// The verdict on `req`, made by `agent` (acting for `on_behalf_of`).
pub fn judge(
    policy: &Policy,
    tool: Tool,
    req: &CreateRequest,
    agent: &str,
    on_behalf_of: Option<&str>,
) -> ServerVerdict {
    let args: Vec<OsString> = req.argv.iter().map(OsString::from).collect();
    let facts = facts_of(tool, req);
    let ctx = Context {
        cwd: Some(req.cwd.clone().into()),
        env: &|_| None,
        facts: Some(facts),
        kube_server: &|| None,
    };
    let changes = ChangeSet::from_wire(&req.diff.summary);
    let inv = match crate::argv::read(tool, &args, &|_| None) {
        Ok(inv) => inv,
        Err(e) => {
            return ServerVerdict {
                verdict: "gate",
                rule: format!("argv ({e})"),
                environment: None,
            }
        }
    };
    let auto = AutoFacts {
        agent,
        on_behalf_of,
        changes: &changes,
        effects: effects::of(tool, &inv),
    };
    let conditions = |rule: &Rule| auto_conditions(rule, &auto).is_ok();
    let v = policy.classify_on_server(tool, &inv, &ctx, &conditions);
    let environment = v
        .decision()
        .environment
        .clone()
        .or_else(|| policy.environment(tool, &inv, &ctx));
    let verdict = match &v {
        Verdict::Pass(_) => "pass",
        Verdict::Gate(_) => "gate",
        Verdict::Deny(_) => "deny",
    };
    ServerVerdict {
        verdict,
        rule: v.decision().rule.clone(),
        environment,
    }
}

/// The facts a request reports, as the server (and the lockdown writer) match environments on
/// them: what the command reaches loosens the gate only when the shim called the target exact,
/// and each tool reaches its own kind of target (a terraform backend on a kubectl request says
/// nothing about where the command goes).
pub fn facts_of(tool: Tool, req: &CreateRequest) -> Facts {
    let t = &req.environment;
    Facts {
        kube_context: t.kube_context.clone(),
        namespace: t.namespace.clone(),
        terraform_workspace: t.terraform_workspace.clone(),
        dir: t.dir.clone().or_else(|| Some(req.cwd.clone())),
        kube_server: (!tool.is_terraform_like())
            .then(|| t.cluster_server.clone())
            .flatten(),
        terraform_backend: tool
            .is_terraform_like()
            .then(|| t.terraform_backend.clone())
            .flatten(),
        trusted_only: false,
        inexact: !t.is_exact(),
    }
}
