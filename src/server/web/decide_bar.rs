//! The decision on the request page, offered only to whom it belongs (`rules::standing`): the
//! form (Approve and Reject, the comment, the environment's name to type for a risky delete)
//! for an approver who may decide; Reject alone, and why, for the person the agent acts for;
//! who may decide, for anyone else; and, when the sign-in is too old for a risky decision,
//! the real reason and a way to sign in again. Once decided: who decided, when, and how the run
//! ended.

use maud::{html, Markup};

use super::auth::login_url;
use super::html::{approver_name, shown, when};
use super::rules::Standing;
use crate::api::RequestView;
use crate::server::sessions::Session;

/// What the request page shows besides the request.
pub struct Ctx<'a> {
    pub s: &'a Session,
    pub v: &'a RequestView,
    /// Who decided it, as recorded with a web decision.
    pub approver: Option<&'a serde_json::Value>,
    /// Where the signed-in approver stands with it.
    pub standing: Standing,
    /// The environment's name, when approving needs it typed (a delete, destroy or replace in
    /// a `high` or `critical` environment).
    pub confirm: Option<String>,
    /// Why the approver must sign in again before deciding, if they must.
    pub reauth: Option<String>,
    /// Who else has the page open now.
    pub others: Vec<String>,
    pub now: i64,
}

/// The decision of a pending request, as far as the signed-in approver may make it.
pub fn bar(c: &Ctx<'_>) -> Markup {
    let v = c.v;
    html! {
        section.decide #decide aria-labelledby="decide-title" {
            h2 #decide-title { "Your decision" }
            @match &c.standing {
                Standing::Decides => (form_or_reauth(c, true)),
                Standing::RejectOnly(why) => {
                    p.notice.cannot { (why) }
                    (form_or_reauth(c, false))
                }
                Standing::Outsider(why) => {
                    p.notice.cannot { (why) " You can read it, not decide it." }
                }
                Standing::Approved(at) => {
                    p { "You approved this at " (when(*at)) ". It " (shown(&v.classification.needs())) "; "
                        (v.approvals.len()) " so far." }
                }
                Standing::Closed => p { "Nothing is left to decide." },
            }
        }
    }
}

/// The form, or, when the sign-in is too old for this request, why and a way to sign in again.
fn form_or_reauth(c: &Ctx<'_>, may_approve: bool) -> Markup {
    let v = c.v;
    if let Some(why) = &c.reauth {
        return html! {
            p.notice.reauth { "Sign in again to decide: " (why) "." }
            a.button href=(login_url(&format!("/ui/requests/{}", v.id), true)) { "Sign in again" }
        };
    }
    html! {
        form method="post" action={ "/ui/requests/" (v.id) "/decision" } {
            input type="hidden" name="csrf" value=(c.s.csrf);
            @if let (Some(env), true) = (&c.confirm, may_approve) {
                label.confirm for="confirm" {
                    "This deletes or replaces something in " strong { (shown(env)) }
                    ". Type the environment's name to approve:"
                }
                input #confirm type="text" name="confirm" autocomplete="off" data-confirm=(env);
            }
            label for="comment" {
                "Comment"
                span.hint { " (required to reject; the agent reads it)" }
            }
            textarea #comment name="comment" rows="2" {}
            div.buttons {
                @if may_approve {
                    button.approve type="submit" name="decision" value="approve" { "Approve" }
                }
                button.reject type="submit" name="decision" value="reject" { "Reject" }
            }
        }
    }
}

/// A decided request: the decision, who made it and when, and how the run ended.
pub fn decided(v: &RequestView, approver: Option<&serde_json::Value>) -> Markup {
    html! {
        section.decided {
            h2 { "Decision" }
            @if let Some(d) = &v.decision {
                p {
                    span class={ "state state-" (d.decision.as_str()) } { (d.decision.as_str()) }
                    " by " (approver_name(d.approvers.first(), approver)) " at " (when(d.decided_at))
                }
                @if let Some(c) = &d.comment { p.reason { "“" (shown(c)) "”" } }
            }
            @if let Some(o) = &v.outcome {
                p {
                    "The run "
                    @match (o.exit_code, o.signal) {
                        (Some(c), _) => { "exited " (c) }
                        (None, Some(sig)) => { "died of signal " (sig) }
                        _ => { "ended" }
                    }
                    " after " (super::fmt::duration(i64::try_from(o.duration_ms).unwrap_or(i64::MAX)))
                    @if v.outcome_verified { " (reported by the writer that ran it)." }
                    @else { " (as the agent reported it)." }
                }
            }
        }
    }
}
