//! Lockdown's two credential sets, on the runner's side: this binary running as the runner's
//! user, started by the runner with `[lockdown] tool_env` and the `default` set's `read`
//! variables. Once the policy has named the command's environment, [`select`] picks that
//! environment's set (else `default`). Passthrough commands, and plans and diffs unless the set
//! says `helpers = "write"`, run with its `read` variables ([`apply`]). Only the approved run
//! gets `write` ([`for_run`]): its variables on the run's command and, for kubectl and helm,
//! the run's pinned kubeconfig replaced by one resolved from the write set's `KUBECONFIG`,
//! which must reach the same context, cluster server and namespace, or nothing runs.

use std::collections::BTreeMap;

use super::prepared::{Prepared, Stop};
use crate::argv::Invocation;
use crate::policy::lockdown::{CredentialSet, Helpers};
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

/// The variables the gated path's helpers run with.
pub fn for_helpers(set: &CredentialSet) -> &BTreeMap<String, String> {
    match set.helpers {
        Helpers::Read => &set.read,
        Helpers::Write => &set.write,
    }
}

/// Prepares the approved run for the write set: re-pins a kube command's kubeconfig (the new
/// snapshot is kept with the others) and returns the variables the run's command gets.
pub fn for_run<'s>(
    p: &mut Prepared,
    set: Option<&'s CredentialSet>,
    id: &str,
) -> Result<Option<&'s BTreeMap<String, String>>, Stop> {
    let Some(set) = set else { return Ok(None) };
    if let (Some(pin), Some(kubeconfig)) = (&p.kube_pin, set.write.get("KUBECONFIG")) {
        let sealed = pin.repin(&mut p.args, kubeconfig).map_err(|e| {
            Stop::verification(format!(
                "request {id}: the write credential set cannot be applied ({e}); nothing ran"
            ))
        })?;
        p.snapshots.push(sealed);
    }
    Ok(Some(&set.write))
}
