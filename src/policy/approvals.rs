//! Who may approve, how many must agree, and when nobody needs to: the pure part of the
//! approval policy, shared by the server (which applies it) and `explain`.
//!
//! - An approver is named by `group:<oidc group>`, `oidc:<issuer>#<sub>`,
//!   `email:<verified email>` or `local:<user>` (the admin socket). A [`Person`] is who is
//!   deciding, as the server knows them.
//! - The human an agent acts for (`on_behalf_of`) is matched against a person's identity and
//!   verified email, without case ([`is_requester`]).
//! - An `auto_approve` rule's conditions are checked on the request as the server has it
//!   ([`auto_conditions`]); a condition that cannot be evaluated (no change model) fails.

use super::effects::Effects;
use super::schema::{Action, Environment, Risk, Rule};
use crate::diff::ChangeSet;

/// Someone deciding, as the server knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// `oidc:<issuer>#<sub>` or `local:<user>`.
    pub actor: String,
    /// Only when the provider verified it.
    pub email: Option<String>,
    /// OIDC groups (none for local users).
    pub groups: Vec<String>,
}

/// Whether `person` is one of `approvers` (empty: anyone who may decide at all).
pub fn is_listed(approvers: &[String], person: &Person) -> bool {
    approvers.is_empty()
        || approvers.iter().any(|a| {
            if let Some(g) = a.strip_prefix("group:") {
                person.groups.iter().any(|x| x == g)
            } else if let Some(e) = a.strip_prefix("email:") {
                person
                    .email
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(e))
            } else {
                a == &person.actor
            }
        })
}

/// Whether `person` is the human the agent acts for: `on_behalf_of` (an email, `email:…`,
/// `oidc:…` or `local:…`) equals their identity or verified email, without case.
pub fn is_requester(on_behalf_of: &str, person: &Person) -> bool {
    let who = on_behalf_of.trim();
    let bare = who.strip_prefix("email:").unwrap_or(who);
    who.eq_ignore_ascii_case(&person.actor)
        || person
            .email
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(bare))
}

/// What an `auto_approve` rule looks at besides argv and the environment.
pub struct AutoFacts<'a> {
    pub agent: &'a str,
    pub on_behalf_of: Option<&'a str>,
    /// The change model as the server read it from the request (`ChangeSet::from_wire`).
    pub changes: &'a ChangeSet,
    /// What the command can possibly do, from its argv (`effects::of`); `None` when argv
    /// cannot bound it.
    pub effects: Option<Effects>,
}

/// Checks an `auto_approve` rule's own conditions: `Err(why not)` when one fails or cannot be
/// evaluated. The change model must be complete, fit what the command can do, and hold only
/// changes the rule allows.
pub fn auto_conditions(rule: &Rule, f: &AutoFacts<'_>) -> Result<(), String> {
    if !rule.agents.is_empty() && !rule.agents.iter().any(|a| a == f.agent) {
        return Err(format!("agent {:?} is not one of its agents", f.agent));
    }
    if !rule.on_behalf_of.is_empty()
        && !f
            .on_behalf_of
            .is_some_and(|h| rule.on_behalf_of.iter().any(|x| x.eq_ignore_ascii_case(h)))
    {
        return Err("the agent does not act for one of its humans".into());
    }
    if !f.changes.is_complete() {
        return Err(format!(
            "its changes are unknown ({})",
            f.changes.unknown.join("; ")
        ));
    }
    let Some(effects) = f.effects else {
        return Err("the command can do more than any change model shows".into());
    };
    let mut changed = 0u64;
    for r in &f.changes.resources {
        let action = match r.action.as_str() {
            Some("no-op") => continue,
            Some(a) => a,
            None => return Err(format!("{} has an unknown action", r.address)),
        };
        if !effects.kinds.iter().any(|k| k.as_str() == action) {
            return Err(format!(
                "the change model has a {action} that the command cannot make, so it does not \
                 fit the command"
            ));
        }
        if !rule.changes.iter().any(|k| k.as_str() == action) {
            return Err(format!("it changes something by {action:?}, not allowed"));
        }
        changed += 1;
    }
    if effects.always_changes && changed == 0 {
        return Err(
            "the command always changes something, but its change model shows nothing".into(),
        );
    }
    if let Some(max) = rule.max_changes {
        if changed > u64::from(max) {
            return Err(format!(
                "{changed} changes, more than its max_changes {max}"
            ));
        }
    }
    Ok(())
}

/// The load-time checks of a rule's approval settings: approver names, counts, and which
/// settings each action takes. An `auto_approve` rule that can match a `high` or `critical`
/// environment (or any environment) needs `allow_high_risk = true`.
pub fn validate_rule(rule: &Rule, envs: &[Environment]) -> Result<(), String> {
    let name = &rule.name;
    for a in &rule.approvers {
        let ok = ["group:", "oidc:", "email:", "local:"]
            .iter()
            .any(|p| a.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
        if !ok {
            return Err(format!(
                "rule {name:?}: approver {a:?} must be group:<name>, oidc:<issuer>#<sub>, \
                 email:<address> or local:<user>"
            ));
        }
    }
    if rule.approvals.is_some_and(|n| !(1..=20).contains(&n)) {
        return Err(format!("rule {name:?}: approvals must be 1 to 20"));
    }
    let auto = rule.action == Action::AutoApprove;
    let human = !rule.approvers.is_empty() || rule.approvals.is_some() || rule.allow_self_approval;
    if human && rule.action != Action::Gate {
        return Err(format!(
            "rule {name:?}: approvers, approvals and allow_self_approval belong to gate rules \
             (an auto_approve rule that does not apply leaves the request to the next rule)"
        ));
    }
    let conditions = !rule.agents.is_empty()
        || !rule.on_behalf_of.is_empty()
        || !rule.changes.is_empty()
        || rule.max_changes.is_some()
        || rule.allow_high_risk;
    if conditions && !auto {
        return Err(format!(
            "rule {name:?}: agents, on_behalf_of, changes, max_changes and allow_high_risk \
             belong to auto_approve rules"
        ));
    }
    if !auto {
        return Ok(());
    }
    if rule.changes.is_empty() {
        return Err(format!(
            "rule {name:?}: an auto_approve rule must list the changes it allows (changes = \
             [\"create\", \"update\"])"
        ));
    }
    if !rule.allow_high_risk {
        if rule.environments.is_empty() {
            return Err(format!(
                "rule {name:?} auto-approves in any environment, production included: list its \
                 environments, or set allow_high_risk = true"
            ));
        }
        for e in envs.iter().filter(|e| rule.environments.contains(&e.name)) {
            if e.risk >= Risk::High {
                return Err(format!(
                    "rule {name:?} auto-approves in environment {:?}, whose risk is {}: set \
                     allow_high_risk = true if that is meant",
                    e.name,
                    format!("{:?}", e.risk).to_lowercase()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(actor: &str, email: Option<&str>, groups: &[&str]) -> Person {
        Person {
            actor: actor.into(),
            email: email.map(Into::into),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn approvers_match_by_group_identity_email_and_local_user() {
        let alice = person(
            "oidc:https://idp#alice",
            Some("Alice@Example.com"),
            &["sre"],
        );
        assert!(is_listed(&[], &alice));
        assert!(is_listed(&["group:sre".into()], &alice));
        assert!(!is_listed(&["group:dba".into()], &alice));
        assert!(is_listed(&["email:alice@example.com".into()], &alice));
        assert!(is_listed(&["oidc:https://idp#alice".into()], &alice));
        assert!(!is_listed(&["oidc:https://other#alice".into()], &alice));
        let unverified = person("oidc:https://idp#bob", None, &[]);
        assert!(!is_listed(&["email:bob@example.com".into()], &unverified));
        let root = person("local:root", None, &[]);
        assert!(is_listed(&["local:root".into()], &root));
        assert!(!is_listed(&["group:sre".into()], &root));
    }

    #[test]
    fn the_requester_is_known_by_email_or_identity_without_case() {
        let alice = person("oidc:https://idp#alice", Some("alice@example.com"), &[]);
        for who in [
            "alice@example.com",
            "ALICE@example.com",
            "email:Alice@Example.com",
            "oidc:https://idp#alice",
        ] {
            assert!(is_requester(who, &alice), "{who}");
        }
        for who in ["alice", "bob@example.com", "oidc:https://other#alice"] {
            assert!(!is_requester(who, &alice), "{who}");
        }
        // An unverified email proves nothing either way.
        let anon = person("oidc:https://idp#x", None, &[]);
        assert!(!is_requester("alice@example.com", &anon));
        assert!(is_requester("local:root", &person("local:root", None, &[])));
    }
}
