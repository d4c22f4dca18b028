//! `hitl-gate list | show ID | approve ID [-m COMMENT] | reject ID -m REASON | reload`: the
//! approver's commands, sent over the server's admin Unix socket. The server identifies the
//! caller with SO_PEERCRED (`local:<user>`); nothing here can claim another identity. The text
//! they print is made in `print.rs`; with `--json` they print the server's JSON as it came
//! (docs/cli.md).

use std::path::PathBuf;

use jiff::tz::TimeZone;

use super::error::CliError;
use super::print;
use super::uds_http;
use crate::api::{ErrorBody, RequestView};
use crate::server;

/// The values of `list --state`.
const STATES: [&str; 6] = [
    "pending",
    "approved",
    "rejected",
    "expired",
    "cancelled",
    "all",
];

#[derive(clap::Args)]
pub struct Common {
    /// The server's data dir, where admin.sock is [default: the policy's [serve] data_dir,
    /// else $XDG_DATA_HOME/hitl-gate].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Print the server's JSON instead of text: one request object, or for `list` an array of
    /// them (docs/cli.md).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Which requests to list, by state.
    #[arg(long, default_value = "pending", value_parser = STATES)]
    state: String,
    /// At most this many, newest first (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// The request's id, as `list` prints it.
    id: String,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
pub struct ApproveArgs {
    /// The request's id, as `list` prints it.
    id: String,
    /// A comment, recorded with the decision.
    #[arg(short = 'm', long = "message")]
    message: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
pub struct RejectArgs {
    /// The request's id, as `list` prints it.
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
    let (dir, _) = super::locate::data_dir(common.data_dir.clone())?;
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

fn bad_answer(e: serde_json::Error) -> CliError {
    CliError::new(1, format!("bad answer: {e}"))
}

/// One request: its page, or with `--json` the server's JSON (checked to be a request first).
fn output(common: &Common, text: &str) -> Result<i32, CliError> {
    let v: RequestView = serde_json::from_str(text).map_err(bad_answer)?;
    if common.json {
        println!("{}", text.trim_end());
    } else {
        print!("{}", print::request_text(&v, &TimeZone::system()));
    }
    Ok(0)
}

pub fn list(a: ListArgs) -> Result<i32, CliError> {
    let text = call(
        &a.common,
        "GET",
        &format!("/api/v1/requests?state={}&limit={}", a.state, a.limit),
        None,
    )?;
    let list: Vec<RequestView> = serde_json::from_str(&text).map_err(bad_answer)?;
    if a.common.json {
        println!("{}", text.trim_end());
    } else if list.is_empty() {
        println!("no {} requests", a.state);
    } else {
        print!("{}", print::list_text(&list));
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

#[derive(clap::Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    common: Common,
}

/// `hitl-gate reload`: the server loads its policy file again (as SIGHUP does); on failure it
/// keeps the old one, and this says why.
pub fn reload(a: ReloadArgs) -> Result<i32, CliError> {
    let text = call(&a.common, "POST", "/api/v1/reload", None)?;
    if a.common.json {
        println!("{text}");
        return Ok(0);
    }
    let r: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| CliError::new(1, format!("bad answer: {e}")))?;
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    println!(
        "policy reloaded from {}: {} agents, {} runners, {} rules, {} freezes, {} notification \
         sinks",
        print::line(r["source"].as_str().unwrap_or("?")),
        n("agents"),
        n("runners"),
        n("rules"),
        n("freezes"),
        n("sinks")
    );
    let later: Vec<&str> = r["restart_needed"]
        .as_array()
        .map(|a| a.iter().filter_map(|k| k.as_str()).collect())
        .unwrap_or_default();
    if !later.is_empty() {
        println!(
            "changed, but in force only after a restart: {}",
            print::line(&later.join(", "))
        );
    }
    Ok(0)
}
