//! The exit-code contract of the shim (documented in docs/exit-codes.md; keep the two in step).
//!
//! The codes sit in 80..=91 so that none collides with what terraform, kubectl and helm commonly
//! return (0, 1, 2 for `plan -detailed-exitcode`), with the shell's 126/127, or with 128+N for
//! a death by signal. 127 is kept for "real binary not found" because that is what a shell says
//! for a missing command, and what an agent already understands.

/// A human rejected the request.
pub const REJECTED: u8 = 80;
/// Nobody decided before the request's deadline; the server rejected it.
pub const EXPIRED: u8 = 81;
/// The request was cancelled (by the agent, by Ctrl-C or SIGTERM on the waiting shim).
pub const CANCELLED: u8 = 82;
/// The command needs approval but no approval could be obtained (no server configured,
/// the server is unreachable, submitting failed).
pub const APPROVAL_UNAVAILABLE: u8 = 83;
/// A policy rule with `action = "deny"` matched.
pub const DENIED_BY_POLICY: u8 = 84;
/// The policy could not be loaded: missing, malformed, unknown key, unsafe permissions.
pub const POLICY_ERROR: u8 = 85;
/// The shim found itself again (shim-to-shim recursion); the depth guard stopped it.
pub const RECURSION: u8 = 86;
/// The gate refused the invocation itself: argv it cannot read safely, an unsafe environment
/// variable on the gated path, an input it cannot bind to an approval.
pub const REFUSED: u8 = 87;
/// The approval could not be verified: bad signature, expired decision, hash or target mismatch.
pub const VERIFICATION_FAILED: u8 = 88;
/// hitl-gate itself failed in a way not listed above (an I/O error, a bug).
pub const INTERNAL: u8 = 89;
/// Lockdown mode: the runner could not be reached, or went away before the command ended.
pub const RUNNER_UNAVAILABLE: u8 = 90;
/// Still pending: the wait ended (`max_wait`, `HITL_GATE_WAIT`, or a harness's SIGTERM) before a
/// decision. The request stays pending; running the same command again picks it up.
pub const PENDING: u8 = 91;
/// The real binary was found but could not be executed (permissions, bad interpreter).
pub const CANNOT_EXECUTE: u8 = 126;
/// The real tool was not found on PATH (or at the policy's `real_path`).
pub const NOT_FOUND: u8 = 127;
/// The binary was started under a name that is neither a tool nor `hitl-gate`.
pub const BAD_NAME: u8 = 64;
