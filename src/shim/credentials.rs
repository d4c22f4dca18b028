//! Lockdown's credential sets, on the runner's side: this binary running as the runner's user
//! (R), started by the runner with `[lockdown] tool_env` and the `default` set's `read`
//! variables. Once the policy has named the command's environment, [`select`] picks that
//! environment's set (else `default`), and everything R runs (passthrough commands, plans,
//! diffs, renders) gets its `read` variables ([`apply`]). R never holds the `write` set: the
//! writer (W), another user, picks it for an approved run itself (`runner/writer.rs`).

use std::collections::BTreeMap;

use crate::argv::Invocation;
use crate::policy::lockdown::CredentialSet;
use crate::policy::{Context, Policy};
use crate::tool::Tool;

/// The credential set of the command's environment, when the policy defines any.
pub fn select<'p>(
    policy: &'p Policy,
    tool: Tool,
    inv: &Invocation,
    ctx: &Context<'_>,
) -> Option<&'p CredentialSet> {
    let l = policy.lockdown()?;
    if l.credentials.is_empty() {
        return None;
    }
    let env = policy.environment(tool, inv, ctx);
    l.credentials_for(env.as_ref().map(|e| e.name.as_str()))
}

/// Puts `vars` in this process's environment, for what it runs from now on. Called before the
/// gated path starts any thread.
pub fn apply(vars: &BTreeMap<String, String>) {
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
}
