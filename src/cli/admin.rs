//! `hitl-gate list | show ID | approve ID [-m COMMENT] | reject ID -m REASON`: the approver's
//! commands, sent over the server's admin Unix socket. The server identifies the caller with
//! SO_PEERCRED (`local:<user>`); nothing here can claim another identity.

use std::path::PathBuf;

use super::{uds_http, CliError};
use crate::api::{ErrorBody, RequestView};
use crate::server;

#[derive(clap::Args)]
pub struct Common {
    /// The server's data dir (where admin.sock is) [default: $XDG_DATA_HOME/hitl-gate].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// pending, approved, rejected, expired, cancelled or all.
    #[arg(long, default_value = "pending")]
    state: String,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    id: String,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
pub struct ApproveArgs {
    id: String,
    /// A comment, recorded with the decision.
    #[arg(short = 'm', long = "message")]
    message: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
pub struct RejectArgs {
    id: String,
    /// Why: required, and shown to the agent.
    #[arg(short = 'm', long = "message", required = true)]
    message: String,
    #[command(flatten)]
    common: Common,
}

fn call(
    common: &Common,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<String, CliError> {
    let dir = common
        .data_dir
        .clone()
        .unwrap_or_else(server::default_data_dir);
    let (status, text) = uds_http::request(
        &dir.join(server::SOCKET_FILE),
        method,
        path,
        body.as_deref(),
    )
    .map_err(|e| CliError::new(1, e))?;
    if (200..300).contains(&status) {
        return Ok(text);
    }
    let msg = serde_json::from_str::<ErrorBody>(&text)
        .map(|e| format!("{} ({})", e.message, e.code))
        .unwrap_or(text);
    Err(CliError::new(1, format!("server answered {status}: {msg}")))
}

fn print_one(v: &RequestView) {
    println!("request     {}", v.id);
    println!("state       {}", v.state.as_str());
    println!(
        "agent       {} (for {})",
        v.agent,
        v.on_behalf_of.as_deref().unwrap_or("-")
    );
    println!("command     {} {}", v.tool, v.argv.join(" "));
    println!("cwd         {} on {}", v.cwd, v.host);
    println!(
        "policy      {} by rule {} (environment {}, risk {})",
        v.classification.verdict,
        v.classification.rule,
        v.classification.environment.as_deref().unwrap_or("-"),
        v.classification.risk.as_deref().unwrap_or("-")
    );
    if let Some(r) = &v.reason {
        println!("reason      {r:?}");
    }
    if let Some(d) = &v.decision {
        println!(
            "decision    {} by {} {}",
            d.decision.as_str(),
            d.approvers.join(", "),
            d.comment
                .as_deref()
                .map(|c| format!("({c:?})"))
                .unwrap_or_default()
        );
    }
    if !v.diff.text.is_empty() {
        // The diff is untrusted text from the agent's side: escape control characters.
        println!(
            "diff:\n{}",
            v.diff.text.escape_debug().to_string().replace("\\n", "\n")
        );
    }
}

fn output(common: &Common, text: &str) -> Result<i32, CliError> {
    let v: RequestView =
        serde_json::from_str(text).map_err(|e| CliError::new(1, format!("bad answer: {e}")))?;
    if common.json {
        println!("{text}");
    } else {
        print_one(&v);
    }
    Ok(0)
}

pub fn list(a: ListArgs) -> Result<i32, CliError> {
    let text = call(
        &a.common,
        "GET",
        &format!("/api/v1/requests?state={}", a.state),
        None,
    )?;
    if a.common.json {
        println!("{text}");
        return Ok(0);
    }
    let list: Vec<RequestView> =
        serde_json::from_str(&text).map_err(|e| CliError::new(1, format!("bad answer: {e}")))?;
    for v in &list {
        println!(
            "{}  {:<9} {:<12} {} {}",
            v.id,
            v.state.as_str(),
            v.agent,
            v.tool,
            v.argv.join(" ").escape_debug()
        );
    }
    if list.is_empty() {
        println!("no {} requests", a.state);
    }
    Ok(0)
}

pub fn show(a: ShowArgs) -> Result<i32, CliError> {
    let text = call(
        &a.common,
        "GET",
        &format!("/api/v1/requests/{}", a.id),
        None,
    )?;
    output(&a.common, &text)
}

pub fn approve(a: ApproveArgs) -> Result<i32, CliError> {
    let body = serde_json::json!({"decision": "approve", "comment": a.message}).to_string();
    let text = call(
        &a.common,
        "POST",
        &format!("/api/v1/requests/{}/decision", a.id),
        Some(body),
    )?;
    output(&a.common, &text)
}

pub fn reject(a: RejectArgs) -> Result<i32, CliError> {
    let body = serde_json::json!({"decision": "reject", "comment": a.message}).to_string();
    let text = call(
        &a.common,
        "POST",
        &format!("/api/v1/requests/{}/decision", a.id),
        Some(body),
    )?;
    output(&a.common, &text)
}
