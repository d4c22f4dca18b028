//! The rules of the decision page, shared by the pages that show it and the handler that
//! takes it: which requests are risky (`high_risk`), destructive (`destructive`), need the
//! environment's name typed (`needs_confirm`) or a recent sign-in (`reauth`, with the real
//! reason), and where a signed-in approver stands with a request (`standing`: may decide, may
//! only reject, may not decide, approved already), which is also what makes the "for me" queue.

use crate::api::{RequestView, State};
use crate::policy::approvals::Person;
use crate::server::app::App;
use crate::server::quorum::{eligibility, Eligibility};
use crate::server::sessions::Session;

use super::fmt::duration;
use super::html;

/// True for a request in a `high` or `critical` environment.
pub fn high_risk(v: &RequestView) -> bool {
    matches!(v.classification.risk.as_deref(), Some("high" | "critical"))
}

/// True when the command deletes or replaces something: by the change it showed (a reason to
/// ask, never one to skip), or by what the command is, read with the same argv readers as the
/// shim: kubectl `delete`, `drain` and `replace --force`; helm `uninstall` and its aliases;
/// terraform and tofu `destroy`, `apply -destroy` or `-replace`, `state rm`, `taint`,
/// `workspace delete`. A command the readers cannot read counts as destructive.
pub fn destructive(v: &RequestView) -> bool {
    let c = &v.changes.counts;
    if c.destroy > 0 || c.replace > 0 {
        return true;
    }
    let Some(tool) = crate::tool::Tool::from_name(&v.tool) else {
        return true;
    };
    let args: Vec<std::ffi::OsString> = v.argv.iter().map(Into::into).collect();
    let Ok(inv) = crate::argv::read(tool, &args, &|_| None) else {
        return true;
    };
    let path: Vec<&str> = inv.path.iter().map(String::as_str).collect();
    let flag = |names: &[&str]| {
        inv.flags
            .iter()
            .any(|(n, _)| names.contains(&n.trim_start_matches('-')))
    };
    match tool {
        crate::tool::Tool::Kubectl => match path.first() {
            Some(&"delete" | &"drain") => true,
            Some(&"replace") => flag(&["force"]),
            _ => false,
        },
        crate::tool::Tool::Helm => {
            matches!(
                path.first(),
                Some(&"uninstall" | &"delete" | &"del" | &"un")
            )
        }
        crate::tool::Tool::Terraform | crate::tool::Tool::Tofu => match path.as_slice() {
            ["destroy", ..] | ["taint", ..] => true,
            ["apply", ..] | ["plan", ..] => flag(&["destroy", "replace"]),
            ["state", "rm", ..] | ["workspace", "delete", ..] | ["env", "delete", ..] => true,
            _ => false,
        },
    }
}

/// The name an approver must type to approve: a delete, destroy or replace in a high-risk
/// environment.
pub fn needs_confirm(v: &RequestView) -> Option<String> {
    (high_risk(v) && destructive(v)).then(|| {
        v.classification
            .environment
            .clone()
            .unwrap_or_else(|| "production".into())
    })
}

/// Why `s` must sign in again before deciding `v`, or `None` when the sign-in is recent
/// enough: only a request in a `high` or `critical` environment asks, and only a sign-in the
/// provider dated (`auth_time`) within `reauth_after` counts.
pub fn reauth(app: &App, s: &Session, v: &RequestView) -> Option<String> {
    if !high_risk(v) {
        return None;
    }
    let Some(web) = &app.web else {
        return Some("the web UI is off".into());
    };
    let limit = i64::try_from(web.oidc.config().reauth_after.0.as_millis()).unwrap_or(i64::MAX);
    let within = format!(
        "a decision in {} needs a sign-in within the last {}",
        html::environment(v),
        duration(limit)
    );
    if s.who.auth_time <= 0 {
        return Some(format!(
            "your identity provider did not say when you signed in, so this sign-in cannot \
             count as recent, and {within}"
        ));
    }
    let ago = app.clock.now_ms() - s.who.auth_time;
    (ago > limit).then(|| format!("you signed in {} ago, and {within}", duration(ago)))
}

/// The person a session is, as the quorum rules see them.
pub fn person(s: &Session) -> Person {
    Person {
        actor: s.actor(),
        email: s.who.email.clone(),
        groups: s.who.groups.clone(),
    }
}

/// Where a signed-in approver stands with one request: what the page offers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// They may approve and reject.
    Decides,
    /// They may reject but not approve (the person the agent acts for); why, in a sentence.
    RejectOnly(String),
    /// They are not among the rule's approvers; who is, in a sentence.
    Outsider(String),
    /// They approved already (at this time); the quorum waits for others.
    Approved(i64),
    /// Nothing is left to decide.
    Closed,
}

/// Where `p` stands with `v`, by the same rules `decide` applies (`quorum::eligibility`).
pub fn standing(v: &RequestView, p: &Person) -> Standing {
    if v.state != State::Pending {
        return Standing::Closed;
    }
    if let Some(a) = v.approvals.iter().find(|a| a.approver == p.actor) {
        return Standing::Approved(a.at);
    }
    let c = &v.classification;
    if eligibility(v, p, State::Rejected) != Eligibility::May {
        return Standing::Outsider(format!(
            "Only {} may decide this request (rule {}).",
            c.approvers.join(" or "),
            c.rule
        ));
    }
    match eligibility(v, p, State::Approved) {
        Eligibility::May => Standing::Decides,
        Eligibility::MayNot(_) => Standing::RejectOnly(format!(
            "You cannot approve this: {} acts for you. Someone else must approve it; you may \
             still reject it.",
            v.agent
        )),
    }
}

/// True when `v` waits for `p`: they may approve it and have not yet.
pub fn for_me(v: &RequestView, p: &Person) -> bool {
    standing(v, p) == Standing::Decides
}

#[cfg(test)]
mod tests {
    use super::destructive;
    use crate::api::{RequestView, State};

    /// A pending request in production (from JSON, so fields added to the view later, with
    /// their defaults, need no change here).
    fn view(tool: &str, argv: &[&str], counts: serde_json::Value) -> RequestView {
        let mut v: RequestView = serde_json::from_value(serde_json::json!({
            "id": "x", "state": "pending", "agent": "a", "on_behalf_of": null,
            "tool": tool, "argv": argv, "cwd": "", "host": "", "environment": {},
            "diff": {}, "artifact_sha256": [], "reason": null,
            "classification": {"verdict": "gate", "rule": "r", "environment": "production",
                "risk": "high", "timeout_seconds": 900, "approvals_needed": 1},
            "created_at": 0, "deadline": 0, "decision": null, "outcome": null,
            "outcome_reported_by": null, "nonce": ""
        }))
        .expect("a request view");
        v.changes.counts = serde_json::from_value(counts).unwrap_or_default();
        v
    }

    #[test]
    fn deletes_and_replaces_are_known_by_the_command_and_by_the_change() {
        let none = serde_json::json!({});
        for (tool, argv, want) in [
            ("kubectl", &["delete", "deploy", "web"][..], true),
            ("kubectl", &["-n", "prod", "delete", "pod", "x"][..], true),
            ("kubectl", &["drain", "node-1"][..], true),
            ("kubectl", &["replace", "--force", "-f", "x.yaml"][..], true),
            ("kubectl", &["replace", "-f", "x.yaml"][..], false),
            (
                "kubectl",
                &["scale", "deploy", "web", "--replicas=2"][..],
                false,
            ),
            ("helm", &["uninstall", "rel"][..], true),
            ("helm", &["un", "rel"][..], true),
            ("helm", &["del", "rel"][..], true),
            ("helm", &["upgrade", "rel", "chart"][..], false),
            ("terraform", &["destroy"][..], true),
            ("terraform", &["apply", "-destroy"][..], true),
            ("terraform", &["apply", "--destroy"][..], true),
            ("terraform", &["apply", "-replace=aws_instance.a"][..], true),
            ("terraform", &["state", "rm", "aws_instance.a"][..], true),
            ("terraform", &["taint", "aws_instance.a"][..], true),
            ("tofu", &["workspace", "delete", "old"][..], true),
            ("terraform", &["apply"][..], false),
            ("nonsense", &["apply"][..], true),
        ] {
            assert_eq!(
                destructive(&view(tool, argv, none.clone())),
                want,
                "{tool} {argv:?}"
            );
        }
        // The change counts can make a command destructive, never the other way round.
        assert!(destructive(&view(
            "terraform",
            &["apply"],
            serde_json::json!({"destroy": 1})
        )));
        assert!(destructive(&view(
            "terraform",
            &["apply"],
            serde_json::json!({"replace": 2})
        )));
        assert!(destructive(&view(
            "kubectl",
            &["delete", "pod", "x"],
            serde_json::json!({"destroy": "zero"})
        )));
    }

    #[test]
    fn the_page_offers_each_person_what_they_may_do() {
        use super::{for_me, standing, Person, Standing};
        let person = |actor: &str, email: &str, groups: &[&str]| Person {
            actor: actor.into(),
            email: Some(email.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        let mut v = view(
            "kubectl",
            &["scale", "deploy", "web"],
            serde_json::json!({}),
        );
        v.classification.approvers = vec!["group:sre".into()];
        v.on_behalf_of = Some("oscar@example.com".into());
        let carol = person("oidc:i#carol", "carol@example.com", &["sre"]);
        let oscar = person("oidc:i#oscar", "oscar@example.com", &["sre"]);
        let bob = person("oidc:i#bob", "bob@example.com", &["dev"]);
        assert_eq!(standing(&v, &carol), Standing::Decides);
        assert!(for_me(&v, &carol));
        match standing(&v, &oscar) {
            Standing::RejectOnly(why) => assert!(why.contains("a acts for you"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(!for_me(&v, &oscar));
        match standing(&v, &bob) {
            Standing::Outsider(why) => assert!(why.contains("Only group:sre"), "{why}"),
            other => panic!("{other:?}"),
        }
        v.approvals.push(crate::api::Approval {
            approver: "oidc:i#carol".into(),
            display: None,
            at: 5,
            comment: None,
        });
        assert_eq!(standing(&v, &carol), Standing::Approved(5));
        assert!(!for_me(&v, &carol));
        v.state = State::Approved;
        assert_eq!(standing(&v, &oscar), Standing::Closed);
    }
}
