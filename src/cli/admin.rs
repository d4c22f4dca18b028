//! `hitl-gate list | show ID | approve ID [-m COMMENT] | reject ID -m REASON | reload`: the
//! approver's commands, sent over the server's admin Unix socket. The server identifies the caller with
//! SO_PEERCRED (`local:<user>`); nothing here can claim another identity.

use std::path::PathBuf;

use super::error::CliError;
use super::uds_http;
use crate::api::{ErrorBody, RequestView};
use crate::escape::{shell_word, terminal};
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

/// Agent-supplied text on one line, safe for the terminal.
fn line(s: &str) -> String {
    terminal(s, false)
}

/// The command as shell words, safe for the terminal.
fn command(v: &RequestView) -> String {
    std::iter::once(v.tool.as_str())
        .chain(v.argv.iter().map(String::as_str))
        .map(shell_word)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `+1 ~2 -0`, as the server counted the change model.
fn counts(v: &RequestView) -> String {
    line(&v.changes.summary)
}

/// A pending request no agent waits for, marked: approving it runs nothing until the agent
/// runs the same command again.
fn waiting(v: &RequestView) -> &'static str {
    if v.state == crate::api::State::Pending && !v.agent_waiting {
        " (no agent waiting: approving runs nothing until the agent runs the command again)"
    } else {
        ""
    }
}

fn print_one(v: &RequestView) {
    let opt = |o: &Option<String>| o.as_deref().map_or_else(|| "-".into(), line);
    println!("request     {}", v.id);
    println!("state       {}{}", v.state.as_str(), waiting(v));
    println!(
        "agent       {} (for {})",
        line(&v.agent),
        opt(&v.on_behalf_of)
    );
    println!("command     {}", command(v));
    if let Some(run) = &v.run {
        println!("runs as     {}", line(&run.shown(&v.tool)));
    }
    println!("cwd         {} on {}", line(&v.cwd), line(&v.host));
    println!("target      (what the approval covers)");
    let t = &v.environment;
    for (what, value) in [
        ("kube context", &t.kube_context),
        ("cluster", &t.cluster_server),
        ("kube user", &t.kube_user),
        ("namespace", &t.namespace),
        ("workspace", &t.terraform_workspace),
        ("backend", &t.terraform_backend),
        ("directory", &t.dir),
    ] {
        if let Some(value) = value {
            println!("  {what:<12} {}", line(value));
        }
    }
    if let Some(why) = t.inexact_line() {
        println!("  !!! {}", line(&why));
    }
    println!(
        "policy      {} by rule {} (environment {}, risk {})",
        v.classification.verdict,
        line(&v.classification.rule),
        opt(&v.classification.environment),
        opt(&v.classification.risk)
    );
    let c = &v.classification;
    if let Some(f) = &c.freeze {
        println!("freeze      {} ({})", line(&f.name), line(&f.reason));
    }
    if let Some(rule) = &c.auto_approve {
        println!(
            "approval    approved without a human by rule {}",
            line(rule)
        );
    } else {
        println!(
            "approval    {}{}",
            line(&c.needs()),
            if c.allow_self_approval {
                ""
            } else {
                "; not by the person the agent acts for"
            }
        );
    }
    for a in &v.approvals {
        println!(
            "  approved  by {}{} {}",
            line(&a.approver),
            a.display
                .as_deref()
                .map(|d| format!(" ({})", line(d)))
                .unwrap_or_default(),
            a.comment
                .as_deref()
                .map(|c| format!("({})", line(c)))
                .unwrap_or_default()
        );
    }
    if v.state == crate::api::State::Pending && v.approvals.len() < c.approvals_needed as usize {
        println!(
            "  so far    {} of {}",
            v.approvals.len(),
            c.approvals_needed.max(1)
        );
    }
    println!("changes     {}", counts(v));
    if let Some(r) = &v.reason {
        println!("reason      {} (the agent's words)", line(r));
    }
    if let Some(d) = &v.decision {
        println!(
            "decision    {} by {} {}",
            d.decision.as_str(),
            line(&d.approvers.join(", ")),
            d.comment
                .as_deref()
                .map(|c| format!("({})", line(c)))
                .unwrap_or_default()
        );
    }
    if let Some(o) = &v.outcome {
        let how = match (o.exit_code, o.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown".into(),
        };
        println!(
            "outcome     {how} after {:.1}s (reported by {}; not verified by the server)",
            o.duration_ms as f64 / 1000.0,
            opt(&v.outcome_reported_by)
        );
    }
    if !v.diff.text.is_empty() {
        // Untrusted text from the agent's side: shown, never obeyed.
        println!("diff:\n{}", terminal(&v.diff.text, true));
        if v.diff.truncated {
            println!("(the diff was cut to fit; the rest was not sent)");
        }
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
        let env = match (&v.classification.environment, &v.classification.risk) {
            (Some(e), Some(r)) => format!("{}({})", line(e), r),
            (Some(e), None) => line(e),
            _ => "-".into(),
        };
        let absent = if v.state == crate::api::State::Pending && !v.agent_waiting {
            "  [no agent waiting]"
        } else {
            ""
        };
        println!(
            "{}  {:<9} {:<16} {:<14} {:<12} {}{absent}",
            v.id,
            v.state.as_str(),
            env,
            counts(v),
            line(&v.agent),
            command(v)
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
        line(r["source"].as_str().unwrap_or("?")),
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
            line(&later.join(", "))
        );
    }
    Ok(0)
}
