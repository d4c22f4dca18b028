//! The standing attack suite: what an agent that wants its change through would try, one module
//! per class of attack (docs/security.md lists the classes and what closes each). Every case runs
//! the built binary under a tool's name against the pinned real tools, a real approval server
//! and, for kube, the test-only fake Kubernetes API that records every call.

pub mod act_before_approval;
mod auto_approval;
mod channel;
mod outcome;
mod raw;
mod secrets;
mod server_flood;
mod shim_output;
mod snapshot;
mod system_policy;
mod target_names;
mod terminal;
mod terraform_changes;
mod tool_config;
mod workspace;
