//! The request page's HTML. The first screen holds what a decision needs: the summary line
//! (`summary.rs`), the markers (environment, risk, counts, quorum progress), the notices that
//! change how to read it (target inexact, changes not fully known, a freeze), and the decision
//! (`decide_bar.rs`), which stays in view while the approver reads: a column that follows the
//! page on a wide screen, a bar at the bottom on a phone. Below come who else has the page
//! open, the command (shell-quoted and raw), the change per resource field by field
//! (`fields.rs`), the tool's own diff (collapsible per resource, with a notice when cut), the
//! request's facts, its target, what the approval binds and who approved so far.

use maud::{html, Markup};

use super::decide_bar::{self, Ctx};
use super::fields::{diff_lines, resource};
use super::fmt::duration;
use super::html::{command, count_badges, environment, frame, markers, raw_json, shown, when, Nav};
use super::rules::Standing;
use super::summary;
use crate::api::{RequestView, State};

pub fn page(c: &Ctx<'_>) -> Markup {
    let v = c.v;
    let resources = v.diff.summary["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let body = html! {
        (summary::line(v, c.now))
        div.reqhead {
            (markers(v, c.standing == Standing::Decides, c.now))
            (count_badges(v))
            (progress(v))
        }
        (notices(v))
        div.reqgrid.has-bar[v.state == State::Pending] {
            aside.decide-col {
                @if v.state == State::Pending { (decide_bar::bar(c)) } @else { (decide_bar::decided(v, c.approver)) }
            }
            div.content {
                (presence(v, &c.others))
                h2 { "Command" }
                pre.cmd { code { (command(v)) } }
                details.raw {
                    summary { "Raw argv (each argument as submitted, JSON)" }
                    pre { (raw_json(&serde_json::json!(v.argv))) }
                    @if let Some(run) = &v.run {
                        p { "Runs as: " code { (shown(&run.shown(&v.tool))) } }
                    }
                }
                h2 { "Change" }
                @if resources.is_empty() { p.empty { "The change model lists no resources." } }
                @for r in &resources { (resource(r)) }
                (tool_diff(v))
                (facts(v))
                (approvals(v))
            }
        }
    };
    frame("Request", Some(c.s), c.now, Nav::None, body)
}

/// Quorum progress: how many approvals so far, of how many, and by whom.
fn progress(v: &RequestView) -> Markup {
    let needed = v.classification.approvals_needed.max(1);
    let by: Vec<String> = v
        .approvals
        .iter()
        .map(|a| shown(a.display.as_deref().unwrap_or(&a.approver)))
        .collect();
    html! {
        @if v.classification.auto_approve.is_none() {
            span.progress {
                (v.approvals.len()) " of " (needed) " approval" @if needed > 1 { "s" }
                @if !by.is_empty() { ": " (by.join(", ")) }
            }
        }
    }
}

/// The notices that change how the request must be read.
fn notices(v: &RequestView) -> Markup {
    html! {
        @if let Some(why) = v.environment.inexact_line() {
            p.notice.inexact { (shown(&why)) }
        }
        @if !v.changes.complete {
            p.notice.unknown { "The changes are not fully known: the gate could not compute all of them. Read the command and the text below." }
        }
        @if let Some(f) = &v.classification.freeze {
            p.notice { "Change freeze " strong { (shown(&f.name)) } ": " (shown(&f.reason)) }
        }
    }
}

/// Who else has this request open, kept current by the page's script.
fn presence(v: &RequestView, others: &[String]) -> Markup {
    html! {
        p #presence aria-live="polite" data-watch=[(v.state == State::Pending).then_some(&v.id)] {
            @if others.is_empty() { "Nobody else has this request open." }
            @else { "Also open now by " (others.join(", ")) "." }
        }
        p #changed .notice hidden aria-live="polite" {
            "This request changed since the page was drawn (an approval or a decision). "
            a href={ "/ui/requests/" (v.id) } { "Reload it" }
        }
    }
}

/// The tool's own diff, one collapsible section per resource.
fn tool_diff(v: &RequestView) -> Markup {
    html! {
        h2 { "The tool's own diff" }
        @if v.diff.truncated {
            p.notice { "This diff was cut to fit the request: what is shown is not all of it. Look at the change itself before approving." }
        }
        div.diff {
            @for (title, body) in sections(&v.diff.text) {
                details open {
                    summary { code { (shown(&title)) } }
                    pre { (diff_lines(&body)) }
                }
            }
        }
    }
}

/// The request's facts, its target, and what the approval binds.
fn facts(v: &RequestView) -> Markup {
    let t = &v.environment;
    let target = [
        ("kube context", &t.kube_context),
        ("cluster server", &t.cluster_server),
        ("namespace", &t.namespace),
        ("kube user", &t.kube_user),
        ("terraform workspace", &t.terraform_workspace),
        ("terraform backend", &t.terraform_backend),
        ("directory", &t.dir),
    ];
    html! {
        h2 { "Request" }
        dl.facts {
            dt { "Agent" } dd { (shown(&v.agent)) @if let Some(h) = &v.on_behalf_of { " for " (shown(h)) } }
            dt { "Reason" } dd { @match &v.reason { Some(r) => (shown(r)), None => "none given" } }
            dt { "Host" } dd { (shown(&v.host)) }
            dt { "Working directory" } dd { code { (shown(&v.cwd)) } }
            dt { "Asked at" } dd { (when(v.created_at)) }
        }
        h2 { "Target" }
        dl.facts {
            @for (name, value) in target {
                @if let Some(value) = value { dt { (name) } dd { code { (shown(value)) } } }
            }
        }
        h2 { "What the approval binds" }
        dl.facts {
            dt { "Rule" } dd { (shown(&v.classification.rule)) }
            dt { "Environment" } dd { (environment(v)) }
            dt { "Timeout" } dd { (duration(i64::try_from(v.classification.timeout_seconds).unwrap_or(i64::MAX).saturating_mul(1000))) }
            dt { "Artifacts (SHA-256)" }
            dd { @for h in &v.artifact_sha256 { code { (shown(h)) } br; } @if v.artifact_sha256.is_empty() { "none" } }
        }
    }
}

/// Who may approve, how many must, and who has so far.
fn approvals(v: &RequestView) -> Markup {
    let c = &v.classification;
    html! {
        h2 { "Approvals" }
        @if let Some(rule) = &c.auto_approve {
            p { "Approved without a human by rule " code { (shown(rule)) } "." }
        } @else {
            p.needs {
                "It " (shown(&c.needs()))
                @if !c.allow_self_approval { "; not by the person the agent acts for" }
                "."
            }
            @if !v.approvals.is_empty() {
                ul.approvals {
                    @for a in &v.approvals {
                        li {
                            (shown(a.display.as_deref().unwrap_or(&a.approver)))
                            " at " (when(a.at))
                            @if let Some(c) = &a.comment { " — " (shown(c)) }
                        }
                    }
                }
            }
        }
    }
}

/// The diff text cut into one section per resource: a terraform `# ADDRESS will be …` line or
/// a unified diff's `--- before ADDRESS` line starts one; what comes before the first is the
/// summary.
pub fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![("Summary".into(), String::new())];
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        let starts = t.starts_with("--- before ")
            || (t.starts_with("# ")
                && [" will be ", " must be ", " has ", " has moved "]
                    .iter()
                    .any(|w| t.contains(w)));
        if starts {
            out.push((t.to_string(), String::new()));
        }
        if let Some(last) = out.last_mut() {
            last.1.push_str(line);
        }
    }
    out.retain(|(_, body)| !body.trim().is_empty());
    out
}
