//! Who is calling: an agent (bearer token on TCP) or an approver (a local user on the admin Unix
//! socket, identified by SO_PEERCRED as `local:<user>`). Authentication is an axum extractor, so
//! a handler that takes [`Approver`] cannot run for an agent.

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::app::App;
use super::error::ApiError;
pub use super::live::{Agent, Runner};

/// An authenticated human who may decide. Its string is the identity recorded in decisions and
/// the audit log (`local:<user>`).
#[derive(Debug, Clone)]
pub struct Approver(pub String);

/// Either kind of caller.
#[derive(Debug, Clone)]
pub enum Caller {
    Agent(Agent),
    Approver(Approver),
}

/// The connection info of the admin socket: the peer's identity from SO_PEERCRED, if known.
#[derive(Debug, Clone)]
pub struct LocalPeer(pub Option<String>);

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        // Only the admin socket's listener sets this connection info; a TCP request cannot.
        if let Some(ConnectInfo(LocalPeer(peer))) = parts.extensions.get::<ConnectInfo<LocalPeer>>()
        {
            return peer
                .clone()
                .map(|id| Caller::Approver(Approver(id)))
                .ok_or_else(|| ApiError::unauthorized(NO_PEER));
        }
        let digest = bearer_digest(parts).ok_or_else(|| ApiError::unauthorized(NO_TOKEN))?;
        app.live()
            .agents
            .get(&digest)
            .cloned()
            .map(Caller::Agent)
            .ok_or_else(|| ApiError::unauthorized(UNKNOWN_TOKEN))
    }
}

/// Why a caller is not authenticated (the 401's message, and the log's reason).
const NO_TOKEN: &str = "no agent token (Authorization: Bearer TOKEN)";
const UNKNOWN_TOKEN: &str =
    "unknown agent token: no [[serve.agent]] of this server has its SHA-256 (token_sha256)";
const NO_PEER: &str = "the admin socket could not tell who is calling (SO_PEERCRED)";

/// The SHA-256 of the request's bearer token, if it has one.
fn bearer_digest(parts: &Parts) -> Option<String> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = header.strip_prefix("Bearer ")?;
    Some(crate::hex::sha256(token.trim().as_bytes()))
}

/// Who reports an outcome: an agent (its own word) or a lockdown writer (verified: it ran the
/// approved run itself).
#[derive(Debug, Clone)]
pub enum Reporter {
    Agent(Agent),
    Runner(Runner),
}

impl FromRequestParts<Arc<App>> for Reporter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let runner = bearer_digest(parts).and_then(|d| app.live().runners.get(&d).cloned());
        match runner {
            Some(r) => Ok(Reporter::Runner(r)),
            None => Agent::from_request_parts(parts, app)
                .await
                .map(Reporter::Agent),
        }
    }
}

/// Any authenticated caller, a lockdown writer's token included (`GET /api/v1/whoami`).
#[derive(Debug, Clone)]
pub enum Anyone {
    Caller(Caller),
    Runner(Runner),
}

impl FromRequestParts<Arc<App>> for Anyone {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        if parts.extensions.get::<ConnectInfo<LocalPeer>>().is_none() {
            let runner = bearer_digest(parts).and_then(|d| app.live().runners.get(&d).cloned());
            if let Some(r) = runner {
                return Ok(Anyone::Runner(r));
            }
        }
        Caller::from_request_parts(parts, app)
            .await
            .map(Anyone::Caller)
    }
}

impl FromRequestParts<Arc<App>> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, app).await? {
            Caller::Agent(a) => Ok(a),
            Caller::Approver(_) => Err(ApiError::forbidden("this endpoint is for agents")),
        }
    }
}

impl FromRequestParts<Arc<App>> for Approver {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, app).await? {
            Caller::Approver(a) => Ok(a),
            Caller::Agent(_) => Err(ApiError::forbidden("agents cannot decide or list requests")),
        }
    }
}

/// The user name for a uid, from `/etc/passwd` (read directly: no NSS in a static binary).
pub fn username(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let id: u32 = f.nth(1)?.parse().ok()?;
                (id == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid{uid}"))
}
