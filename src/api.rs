//! Wire types of the `/api/v1` HTTP API, shared by the server, the admin CLI and the shim's
//! client. docs/api.md documents every field; keep the two in step.
//!
//! Every type that the server reads from a client rejects unknown fields, so a typo is a 400
//! with the field path rather than a silently ignored setting.

use serde::{Deserialize, Serialize};

mod target;
pub use target::Target;

/// The longest a single long-poll (`GET /requests/{id}?wait=N`) waits, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 60;

/// How long past a long-poll's end (or its submission) an agent still counts as waiting for its
/// request (`RequestView::agent_waiting`): its shim's next long-poll starts within it, retries
/// included.
pub const WAITING_GRACE_MS: i64 = (MAX_WAIT_SECONDS as i64 + 15) * 1000;

/// Unix milliseconds now: the unit of every time on the wire.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The header of a create that makes retrying it safe: a retried create with the same key (the
/// shim sends its nonce, once per gated command) returns the request the first one made.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// `POST /api/v1/requests`: what an agent (its shim) asks to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// `terraform`, `tofu`, `kubectl` or `helm`.
    pub tool: String,
    /// The full argv after the tool name, exactly as the agent gave it.
    pub argv: Vec<String>,
    /// The working directory of the command.
    pub cwd: String,
    /// The host the shim runs on.
    pub host: String,
    /// Where the command points (kube context, namespace, workspace, …).
    #[serde(default)]
    pub environment: Target,
    /// The change the approver will see.
    #[serde(default)]
    pub diff: Diff,
    /// SHA-256 (lowercase hex) of each artifact the run is bound to: the terraform plan file,
    /// the exact manifest bytes, the rendered helm manifest.
    #[serde(default)]
    pub artifact_sha256: Vec<String>,
    /// Why the agent wants to run this, in its own words (shown to approvers, never trusted).
    #[serde(default)]
    pub reason: Option<String>,
    /// 32 random bytes (64 lowercase hex) the shim made for this one command. The signed
    /// decision repeats it, so an approval of an identical earlier command cannot be replayed.
    pub nonce: String,
    /// The argv the approved run uses (signed with the request): in lockdown mode the writer
    /// runs exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunTemplate>,
}

/// The argv an approved run uses: the agent's argv with every input the tool would read
/// replaced by a sealed snapshot, and the kube target pinned. A snapshot is named by a
/// placeholder, [`RunTemplate::input`] (the N-th of `inputs`) or [`RunTemplate::KUBECONFIG`];
/// both hold a NUL, which no real argument can, so a placeholder never stands for the agent's
/// own text.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RunTemplate {
    pub argv: Vec<String>,
    /// SHA-256 (lowercase hex) of each sealed input, in placeholder order.
    pub inputs: Vec<String>,
}

impl RunTemplate {
    /// The placeholder of the pinned kubeconfig (the runner that runs it supplies its own).
    pub const KUBECONFIG: &'static str = "\0kubeconfig\0";

    /// The placeholder of the `n`-th sealed input.
    pub fn input(n: usize) -> String {
        format!("\0input:{n}\0")
    }

    /// The run as one line for people: `kubectl apply --filename=<sealed input 0> …`.
    pub fn shown(&self, tool: &str) -> String {
        let mut out = tool.to_string();
        for a in &self.argv {
            out.push(' ');
            let mut parts = a.split('\0');
            out.push_str(parts.next().unwrap_or_default());
            while let (Some(name), Some(rest)) = (parts.next(), parts.next()) {
                match name.strip_prefix("input:") {
                    Some(n) => out.push_str(&format!("<sealed input {n}>")),
                    None => out.push_str(&format!("<pinned {name}>")),
                }
                out.push_str(rest);
            }
        }
        out
    }
}

impl CreateRequest {
    /// SHA-256 of the request as canonical JSON (field order fixed by this type, object keys
    /// sorted). The shim hashes what it sent, the server what it stored; the signed decision
    /// carries the server's, so a changed diff or target on the way shows as a mismatch.
    pub fn sha256(&self) -> String {
        crate::hex::sha256(&serde_json::to_vec(self).expect("a request serialises"))
    }
}

/// The diff shown to approvers. Stored exactly as received; rendered escaped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Diff {
    #[serde(default)]
    pub text: String,
    /// A structured per-resource summary (free-form JSON from the shim's change model).
    #[serde(default)]
    pub summary: serde_json::Value,
    /// True when the shim cut the text to fit the body limit.
    #[serde(default)]
    pub truncated: bool,
}

/// The states of a request. Exactly one terminal state is ever reached.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Approved,
    Rejected,
    Expired,
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Expired => "expired",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "pending" => State::Pending,
            "approved" => State::Approved,
            "rejected" => State::Rejected,
            "expired" => State::Expired,
            "cancelled" => State::Cancelled,
            _ => return None,
        })
    }
}

/// A request as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestView {
    pub id: String,
    pub state: State,
    pub agent: String,
    pub on_behalf_of: Option<String>,
    pub tool: String,
    pub argv: Vec<String>,
    pub cwd: String,
    pub host: String,
    pub environment: Target,
    pub diff: Diff,
    pub artifact_sha256: Vec<String>,
    pub reason: Option<String>,
    /// What the *server's* policy made of the request.
    pub classification: Classification,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When the request expires if nobody decides (unix ms).
    pub deadline: i64,
    pub decision: Option<SignedDecision>,
    /// How the approved run ended: the agent's word (`agent:<name>`), or, in lockdown mode,
    /// reported by the writer that ran it (`runner:<name>`, verified).
    pub outcome: Option<Outcome>,
    /// Who reported the outcome: `agent:<name>` or `runner:<name>`.
    pub outcome_reported_by: Option<String>,
    /// True when a lockdown writer reported it: it ran the approved run itself.
    #[serde(default)]
    pub outcome_verified: bool,
    /// The shim's nonce for this command (see [`CreateRequest::nonce`]).
    pub nonce: String,
    /// The argv the approved run uses (see [`CreateRequest::run`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunTemplate>,
    /// The approvals given so far, oldest first. A request that needs several stays pending
    /// until it has enough; the decision then lists every approver.
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// The request's page in the web UI (`[serve] public_url`), when the server has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_url: Option<String>,
    /// The change counts, computed by the server from the change model in `diff.summary`
    /// ([`Changes::of`]); what the client wrote beside the model is never shown.
    #[serde(default)]
    pub changes: Changes,
    /// Until when (unix ms) the agent's shim is known to wait for this pending request: its
    /// open long-poll, or its submission, renews it; a shim that stops waiting (`max_wait`, a
    /// harness's SIGTERM) clears it. Past it, or `None`, no agent waits: approving runs nothing
    /// until the agent runs the same command again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_waiting_until: Option<i64>,
    /// Pending, and the agent's shim waits for it now (by the server's clock when it
    /// answered; [`RequestView::agent_waiting_at`]). False for a decided request.
    #[serde(default)]
    pub agent_waiting: bool,
    /// A shim has claimed the approval's one run (`POST /requests/{id}/claim`); no other
    /// shim runs it.
    #[serde(default)]
    pub run_claimed: bool,
}

/// The change counts of a request, computed by the server from its change model.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Changes {
    /// False when the change is not fully known (absent is not empty).
    pub complete: bool,
    /// `+1 ~2 -0`, in terraform's terms, with `(changes unknown)` when incomplete.
    pub summary: String,
    pub counts: crate::diff::Counts,
}

impl Changes {
    /// The counts of the change model a request reports (`ChangeSet::from_wire`).
    pub fn of(summary: &serde_json::Value) -> Changes {
        let set = crate::diff::ChangeSet::from_wire(summary);
        Changes {
            complete: set.is_complete(),
            summary: set.summary_line(),
            counts: set.counts(),
        }
    }
}

/// One approval of a request that needs several.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Approval {
    /// `oidc:<issuer>#<sub>` or `local:<user>`.
    pub approver: String,
    /// The verified email or name to show, if known.
    #[serde(default)]
    pub display: Option<String>,
    /// Unix milliseconds.
    pub at: i64,
    #[serde(default)]
    pub comment: Option<String>,
}

impl RequestView {
    /// Whether an agent's shim waits for this pending request at `now` (unix ms): approving a
    /// request no agent waits for runs nothing until the agent runs the same command again.
    pub fn agent_waiting_at(&self, now: i64) -> bool {
        self.state == State::Pending && self.agent_waiting_until.is_some_and(|u| u > now)
    }

    /// The request as the agent's shim submitted it (and the server stored it).
    pub fn request(&self) -> CreateRequest {
        CreateRequest {
            tool: self.tool.clone(),
            argv: self.argv.clone(),
            cwd: self.cwd.clone(),
            host: self.host.clone(),
            environment: self.environment.clone(),
            diff: self.diff.clone(),
            artifact_sha256: self.artifact_sha256.clone(),
            reason: self.reason.clone(),
            nonce: self.nonce.clone(),
            run: self.run.clone(),
        }
    }
}

/// The server's own classification of a request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Classification {
    /// `pass`, `gate` or `deny` by the server's policy. A request the server would not gate is
    /// still decided by a human.
    pub verdict: String,
    pub rule: String,
    pub environment: Option<String>,
    pub risk: Option<String>,
    pub timeout_seconds: u64,
    /// How many distinct people must approve (the rule's `approvals`, or a freeze's
    /// `freeze_approvals` when higher).
    pub approvals_needed: u32,
    /// Who may decide (`group:…`, `oidc:…`, `email:…`, `local:…`); empty: anyone who may
    /// decide at all.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Whether the human the agent acts for may approve.
    #[serde(default)]
    pub allow_self_approval: bool,
    /// The `auto_approve` rule that approves it without a human, when one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<String>,
    /// The change freeze that covered it when it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<FreezeInfo>,
}

/// A change freeze as a request records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FreezeInfo {
    pub name: String,
    pub reason: String,
    /// Break-glass: the approvers it needs; `None` means requests are rejected.
    #[serde(default)]
    pub approvals: Option<u32>,
}

impl Classification {
    /// "needs 2 approvals from group:sre" (or "from an approver").
    pub fn needs(&self) -> String {
        let n = self.approvals_needed.max(1);
        let who = if self.approvers.is_empty() {
            "any approver".to_string()
        } else {
            self.approvers.join(" or ")
        };
        let plural = if n == 1 { "approval" } else { "approvals" };
        format!("needs {n} {plural} from {who}")
    }
}

/// A decision with the server's signature over its canonical bytes (see `signing.rs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SignedDecision {
    pub request_id: String,
    /// `approved`, `rejected`, `expired` or `cancelled`.
    pub decision: State,
    pub approvers: Vec<String>,
    pub comment: Option<String>,
    pub argv_sha256: String,
    pub artifact_sha256: Vec<String>,
    pub environment_sha256: String,
    /// SHA-256 of the request as the server stored it ([`CreateRequest::sha256`]): the diff the
    /// approver saw is part of it.
    pub request_sha256: String,
    /// The shim's nonce for this command.
    pub nonce: String,
    /// Unix milliseconds.
    pub decided_at: i64,
    /// The shim must start the run before this time (unix ms).
    pub valid_until: i64,
    /// Ed25519 signature, lowercase hex.
    pub signature: String,
}

/// `POST /api/v1/requests/{id}/decision`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub decision: Verb,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Approve,
    Reject,
}

/// `POST /api/v1/requests/{id}/claim`: the shim about to run an approval claims its one run;
/// `claim` is the shim's own random value, so a retried call is the same claim.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    pub claim: String,
}

/// `POST /api/v1/requests/{id}/supersede`: why the request is replaced by a new one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupersedeBody {
    pub reason: String,
}

/// `POST /api/v1/requests/{id}/outcome`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// The tool's exit code, or None when it died of a signal.
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    pub duration_ms: u64,
}

/// Every error body: a stable machine code and a human message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// `GET /api/v1/public-key`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicKey {
    pub algorithm: String,
    /// 32 bytes, lowercase hex.
    pub public_key: String,
}

/// `GET /api/v1/whoami`: who the server takes the caller for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// `agent`, `runner` (a lockdown writer's token) or `approver` (the admin socket's user).
    pub kind: String,
    /// The agent's or runner's name, or the approver's identity (`local:<user>`).
    pub name: String,
    /// The human an agent acts for (`[[serve.agent]] on_behalf_of`), if any.
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    /// The agents whose outcomes a runner reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
}
