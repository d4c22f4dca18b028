//! The integration tests: one crate, driving the built `hitl-gate` binary under its tool names
//! from temp dirs, against the pinned real tools (see `support::tools`).

mod support;

mod approval_policy;
mod approver_cli;
pub mod attacks;
mod audit;
mod audit_export;
mod browser;
mod classification;
mod cli;
mod container;
mod failover;
mod flag_tables;
mod helm_gate;
mod init;
mod install;
mod install_docs;
mod kube_fake;
mod kubectl_gate;
mod lockdown;
mod notify;
mod oidc_tokens;
mod policy_errors;
mod process;
mod replicas;
mod resolution;
mod resume;
mod serve_ops;
mod server;
mod server_urls;
mod terraform_gate;
mod transparency;
mod transparency_log;
mod web_ui;
