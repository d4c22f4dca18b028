//! The approver commands' text: `hitl-gate list`'s table (a header row, then one row per
//! request, with the target each command points at) and the page `show`, `approve` and
//! `reject` print (times in the local zone with their UTC offset). Every agent-supplied string
//! is escaped for the terminal here; nothing in it is obeyed.

use std::fmt::Write;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::api::{RequestView, State, Target};
use crate::escape::{shell_word, terminal};

/// Agent-supplied text on one line, safe for the terminal.
pub(super) fn line(s: &str) -> String {
    terminal(s, false)
}

fn opt(o: &Option<String>) -> String {
    o.as_deref().map_or_else(|| "-".into(), line)
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

/// A pending request no agent waits for: approving it runs nothing until the agent runs the
/// same command again.
fn nobody_waits(v: &RequestView) -> bool {
    v.state == State::Pending && !v.agent_waiting
}

/// Unix milliseconds as `2026-05-04 10:00:00 +02:00`, in `tz`.
pub fn local_time(ms: i64, tz: &TimeZone) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
        Err(_) => format!("{ms} (unix ms, out of range)"),
    }
}

/// What a command points at, in one cell: the kube context and its API server, or the
/// terraform workspace and directory; `[inexact]` when the shim could not say that the command
/// reaches exactly that.
pub fn target_cell(t: &Target) -> String {
    let pair = |name: &Option<String>, place: &Option<String>| match (name, place) {
        (None, None) => None,
        (name, None) => Some(opt(name)),
        (name, Some(place)) => Some(format!("{} ({})", opt(name), line(place))),
    };
    let cell = pair(&t.kube_context, &t.cluster_server)
        .or_else(|| pair(&t.terraform_workspace, &t.dir))
        .unwrap_or_else(|| "-".into());
    if t.is_exact() || cell == "-" {
        cell
    } else {
        format!("{cell} [inexact]")
    }
}

const HEADER: [&str; 7] = [
    "ID",
    "STATE",
    "ENVIRONMENT",
    "TARGET",
    "CHANGES",
    "AGENT",
    "COMMAND",
];

/// One row of the list: the cells under [`HEADER`].
fn row(v: &RequestView) -> [String; 7] {
    let env = match (&v.classification.environment, &v.classification.risk) {
        (Some(e), Some(r)) => format!("{}({})", line(e), line(r)),
        (Some(e), None) => line(e),
        _ => "-".into(),
    };
    let absent = if nobody_waits(v) {
        "  [no agent waiting]"
    } else {
        ""
    };
    [
        v.id.clone(),
        v.state.as_str().to_string(),
        env,
        target_cell(&v.environment),
        counts(v),
        line(&v.agent),
        format!("{}{absent}", command(v)),
    ]
}

/// `hitl-gate list`: a header row, then one aligned row per request.
pub fn list_text(list: &[RequestView]) -> String {
    let rows: Vec<[String; 7]> = std::iter::once(HEADER.map(String::from))
        .chain(list.iter().map(row))
        .collect();
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut text = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// The page of one request (`show`, and the answer to `approve` and `reject`), with times in
/// `tz`.
pub fn request_text(v: &RequestView, tz: &TimeZone) -> String {
    let mut out = String::new();
    head(&mut out, v, tz);
    target(&mut out, &v.environment);
    policy(&mut out, v, tz);
    ending(&mut out, v);
    out
}

/// Who asked for what, when, and until when.
fn head(out: &mut String, v: &RequestView, tz: &TimeZone) {
    let waiting = if nobody_waits(v) {
        " (no agent waiting: approving runs nothing until the agent runs the command again)"
    } else {
        ""
    };
    let _ = writeln!(out, "request     {}", v.id);
    let _ = writeln!(out, "state       {}{waiting}", v.state.as_str());
    let _ = writeln!(out, "created     {}", local_time(v.created_at, tz));
    let _ = writeln!(out, "deadline    {}", local_time(v.deadline, tz));
    if let Some(d) = &v.decision {
        let _ = writeln!(out, "decided     {}", local_time(d.decided_at, tz));
    }
    let _ = writeln!(
        out,
        "agent       {} (for {})",
        line(&v.agent),
        opt(&v.on_behalf_of)
    );
    let _ = writeln!(out, "command     {}", command(v));
    if let Some(run) = &v.run {
        let _ = writeln!(out, "runs as     {}", line(&run.shown(&v.tool)));
    }
    let _ = writeln!(out, "cwd         {} on {}", line(&v.cwd), line(&v.host));
}

fn target(out: &mut String, t: &Target) {
    let _ = writeln!(out, "target      (what the approval covers)");
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
            let _ = writeln!(out, "  {what:<12} {}", line(value));
        }
    }
    if let Some(why) = t.inexact_line() {
        let _ = writeln!(out, "  !!! {}", line(&why));
    }
}

/// The server's verdict, who must approve, and the approvals so far.
fn policy(out: &mut String, v: &RequestView, tz: &TimeZone) {
    let c = &v.classification;
    let _ = writeln!(
        out,
        "policy      {} by rule {} (environment {}, risk {})",
        line(&c.verdict),
        line(&c.rule),
        opt(&c.environment),
        opt(&c.risk)
    );
    if let Some(f) = &c.freeze {
        let _ = writeln!(out, "freeze      {} ({})", line(&f.name), line(&f.reason));
    }
    if let Some(rule) = &c.auto_approve {
        let _ = writeln!(
            out,
            "approval    approved without a human by rule {}",
            line(rule)
        );
    } else {
        let others = if c.allow_self_approval {
            ""
        } else {
            "; not by the person the agent acts for"
        };
        let _ = writeln!(out, "approval    {}{others}", line(&c.needs()));
    }
    for a in &v.approvals {
        let display = a.display.as_deref().map(|d| format!(" ({})", line(d)));
        let comment = a.comment.as_deref().map(|c| format!(" ({})", line(c)));
        let _ = writeln!(
            out,
            "  approved  by {}{} at {}{}",
            line(&a.approver),
            display.unwrap_or_default(),
            local_time(a.at, tz),
            comment.unwrap_or_default()
        );
    }
    if v.state == State::Pending && v.approvals.len() < c.approvals_needed as usize {
        let _ = writeln!(
            out,
            "  so far    {} of {}",
            v.approvals.len(),
            c.approvals_needed.max(1)
        );
    }
}

/// The changes, the agent's reason, the decision, the outcome and the diff.
fn ending(out: &mut String, v: &RequestView) {
    let _ = writeln!(out, "changes     {}", counts(v));
    if let Some(r) = &v.reason {
        let _ = writeln!(out, "reason      {} (the agent's words)", line(r));
    }
    if let Some(d) = &v.decision {
        let comment = d.comment.as_deref().map(|c| format!(" ({})", line(c)));
        let _ = writeln!(
            out,
            "decision    {} by {}{}",
            d.decision.as_str(),
            line(&d.approvers.join(", ")),
            comment.unwrap_or_default()
        );
    }
    if let Some(o) = &v.outcome {
        let how = match (o.exit_code, o.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown".into(),
        };
        // A lockdown writer ran it and reported it with its own token; otherwise it is the
        // agent's word.
        let trust = if v.outcome_verified {
            "verified: the lockdown writer that ran it reported it"
        } else {
            "not verified by the server"
        };
        let _ = writeln!(
            out,
            "outcome     {how} after {:.1}s (reported by {}; {trust})",
            o.duration_ms as f64 / 1000.0,
            opt(&v.outcome_reported_by)
        );
    }
    if !v.diff.text.is_empty() {
        // Untrusted text from the agent's side: shown, never obeyed.
        let _ = writeln!(out, "diff:\n{}", terminal(&v.diff.text, true));
        if v.diff.truncated {
            let _ = writeln!(out, "(the diff was cut to fit; the rest was not sent)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_local_with_their_offset() {
        let ms = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let zone = |name: &str| TimeZone::get(name).unwrap();
        assert_eq!(local_time(ms, &TimeZone::UTC), "2026-01-01 00:00:00 +00:00");
        assert_eq!(
            local_time(ms, &zone("Asia/Kolkata")),
            "2026-01-01 05:30:00 +05:30"
        );
        assert_eq!(
            local_time(ms, &zone("America/New_York")),
            "2025-12-31 19:00:00 -05:00"
        );
        // Summer time moves the offset with it.
        assert_eq!(
            local_time(ms + 181 * 86_400_000, &zone("Europe/Berlin")),
            "2026-07-01 02:00:00 +02:00"
        );
        assert!(local_time(i64::MAX, &TimeZone::UTC).contains("out of range"));
    }

    #[test]
    fn the_target_cell_names_the_kube_context_or_the_terraform_workspace() {
        let s = |v: &str| Some(v.to_string());
        let exact = |mut t: Target| {
            t.set_inexact(Vec::new());
            t
        };
        let kube = exact(Target {
            kube_context: s("prod"),
            cluster_server: s("https://k8s.example.com:6443"),
            namespace: s("web"),
            ..Target::default()
        });
        assert_eq!(target_cell(&kube), "prod (https://k8s.example.com:6443)");
        let tf = exact(Target {
            terraform_workspace: s("default"),
            dir: s("/work/infra"),
            ..Target::default()
        });
        assert_eq!(target_cell(&tf), "default (/work/infra)");
        let server_only = exact(Target {
            cluster_server: s("https://k8s"),
            ..Target::default()
        });
        assert_eq!(target_cell(&server_only), "- (https://k8s)");
        assert_eq!(target_cell(&exact(Target::default())), "-");
        let mut proxied = kube.clone();
        proxied.set_inexact(vec!["proxy-url".into()]);
        assert_eq!(
            target_cell(&proxied),
            "prod (https://k8s.example.com:6443) [inexact]"
        );
        let hidden = exact(Target {
            kube_context: s("pr\u{1b}[2Jod"),
            ..Target::default()
        });
        assert!(!target_cell(&hidden).contains('\u{1b}'));
    }
}
