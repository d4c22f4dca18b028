//! Who may decide one request, by the server's own classification of it: the rule's
//! `approvers` (or anyone who may decide at all), and never the human the agent acts for when
//! approving, unless the rule allows it. Web users must also be in `[serve.oidc]
//! approver_groups` (the web layer checks that at every request) and local users need
//! `[serve] allow_local_approvers` (checked by the admin route).

use crate::api::{RequestView, State};
use crate::policy::approvals::{is_listed, is_requester, Person};

/// Whether a person may make a decision on a request.
#[must_use = "an eligibility check decides whether a decision counts; it must be acted on"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    May,
    /// Why not, in a sentence for the person.
    MayNot(String),
}

/// Whether `who` may move `view` to `to` (an approval or a rejection).
pub fn eligibility(view: &RequestView, who: &Person, to: State) -> Eligibility {
    let c = &view.classification;
    if !is_listed(&c.approvers, who) {
        return Eligibility::MayNot(format!(
            "only {} may decide this request (rule {}); {} is not one of them",
            c.approvers.join(" or "),
            c.rule,
            who.actor
        ));
    }
    if to == State::Approved && !c.allow_self_approval {
        if let Some(h) = &view.on_behalf_of {
            if is_requester(h, who) {
                return Eligibility::MayNot(format!(
                    "you are the person agent {} acts for ({h}), so you cannot approve its \
                     request; someone else must",
                    view.agent
                ));
            }
        }
    }
    Eligibility::May
}
