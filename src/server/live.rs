//! The part of a running server that a reload replaces ([`Live`]): the policy and what is
//! derived from it, the agents and lockdown writers by token digest, the notification sinks
//! with their secrets read, and `escalate_after`. It is built whole (at start, and by
//! `reload.rs`) and swapped whole: whoever reads it holds one `Arc<Live>`, one whole policy,
//! for as long as it needs it.

use std::collections::HashMap;

use super::sinks::{self, Loaded};
use crate::policy::notify::EscalateAfter;
use crate::policy::Policy;

/// An authenticated agent.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub on_behalf_of: Option<String>,
}

/// An authenticated lockdown writer (`[[serve.runner]]`): it reports the outcomes of its
/// agents' approved runs.
#[derive(Debug, Clone)]
pub struct Runner {
    pub name: String,
    pub agents: Vec<String>,
}

/// One loaded policy and everything the server derives from it.
pub struct Live {
    pub policy: Policy,
    /// Agents by the SHA-256 of their token.
    pub agents: HashMap<String, Agent>,
    /// Lockdown writers by the SHA-256 of their token.
    pub runners: HashMap<String, Runner>,
    /// The notification sinks, their secret files read.
    pub sinks: Vec<Loaded>,
    pub escalate: Option<EscalateAfter>,
}

impl Live {
    /// Derives everything from `policy`: fails when a sink's secret file cannot be read or
    /// `escalate_after` is not valid.
    pub fn build(policy: Policy) -> Result<Live, String> {
        let serve = policy.serve();
        let sinks = sinks::load(&serve.notify)?;
        let escalate = serve
            .escalate_after
            .as_deref()
            .map(EscalateAfter::parse)
            .transpose()?;
        let agents = serve
            .agents
            .iter()
            .map(|a| {
                let agent = Agent {
                    name: a.name.clone(),
                    on_behalf_of: a.on_behalf_of.clone(),
                };
                (a.token_sha256.to_ascii_lowercase(), agent)
            })
            .collect();
        let runners = serve
            .runners
            .iter()
            .map(|r| {
                let runner = Runner {
                    name: r.name.clone(),
                    agents: r.agents.clone(),
                };
                (r.token_sha256.to_ascii_lowercase(), runner)
            })
            .collect();
        Ok(Live {
            policy,
            agents,
            runners,
            sinks,
            escalate,
        })
    }

    /// The notification sinks' outbox settings for the store.
    pub fn outbox(
        &self,
        wake: std::sync::Arc<tokio::sync::Notify>,
        with_web: bool,
    ) -> super::outbox::Outbox {
        let serve = self.policy.serve();
        super::outbox::Outbox {
            sinks: serve.notify.clone(),
            public_url: serve.public_url.clone().filter(|_| with_web),
            wake,
        }
    }
}
