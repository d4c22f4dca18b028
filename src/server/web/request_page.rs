//! The request page's HTML: the full command (shell-quoted and raw), where it runs, the change
//! per resource, the tool's own diff (coloured, collapsible per resource, with a notice when
//! cut), the hashes the approval binds, the classification, and the decision form.

use maud::{html, Markup};

use super::html::{
    approver_name, command, counts, diff_lines, environment, layout, raw_json, risk, shown, time,
    time_left,
};
use crate::api::{RequestView, State};
use crate::server::sessions::Session;

/// What the decision form needs to know.
pub struct Form<'a> {
    /// The environment's name, when approving needs it typed (a delete, destroy or replace in
    /// a `high` or `critical` environment).
    pub confirm: Option<&'a str>,
    /// The approver signed in too long ago to decide here: they must sign in again first.
    pub reauth: bool,
}

pub fn page(
    s: &Session,
    v: &RequestView,
    approver: Option<&serde_json::Value>,
    form: &Form<'_>,
    now: i64,
) -> Markup {
    let (risk_text, risk_class) = risk(v);
    let (add, change, destroy, replace) = counts(v);
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
    let resources = v.diff.summary["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    layout(
        "Request",
        Some(s),
        now,
        html! {
            div.reqhead {
                span class={ "state state-" (v.state.as_str()) } { (v.state.as_str()) }
                span.tool { (shown(&v.tool)) }
                span.env { (environment(v)) }
                span class=(risk_class) { (risk_text) }
                @if v.state == State::Pending {
                    span.left data-deadline=(v.deadline) { (time_left(v.deadline, now)) }
                }
            }
            h1.cmd { code { (command(v)) } }
            details.raw {
                summary { "Raw argv (each argument as submitted, JSON)" }
                pre { (raw_json(&serde_json::json!(v.argv))) }
                @if let Some(run) = &v.run {
                    p { "Runs as: " code { (shown(&run.shown(&v.tool))) } }
                }
            }
            dl.facts {
                dt { "Agent" } dd { (shown(&v.agent)) @if let Some(h) = &v.on_behalf_of { " for " (shown(h)) } }
                dt { "Reason" } dd { @match &v.reason { Some(r) => (shown(r)), None => "none given" } }
                dt { "Host" } dd { (shown(&v.host)) }
                dt { "Working directory" } dd { code { (shown(&v.cwd)) } }
                dt { "Asked at" } dd { (time(v.created_at)) }
            }
            h2 { "Target" }
            dl.facts {
                @for (name, value) in target {
                    @if let Some(value) = value { dt { (name) } dd { code { (shown(value)) } } }
                }
            }
            @if let Some(why) = t.inexact_line() {
                p.notice.inexact { (shown(&why)) }
            }
            h2 { "Change" }
            p.counts {
                span.add { (add) " to create" } ", "
                span.chg { (change) " to update" } ", "
                span.del { (destroy) " to delete" }
                @if replace > 0 { ", " span.rep { (replace) " to replace" } }
            }
            @if !v.changes.complete {
                p.notice.unknown { "The changes are not fully known: the gate could not compute all of them. Read the command and the text below." }
            }
            @for r in &resources {
                @let action = r["action"].as_str().map_or_else(|| r["action"].to_string(), String::from);
                details.resource open {
                    summary {
                        span class={ "action action-" (shown(&action)) } { (shown(&action)) }
                        " " code { (shown(r["address"].as_str().unwrap_or("?"))) }
                        @if let Some(why) = r["action_reason"].as_str() { " " span.why { "(" (shown(why)) ")" } }
                    }
                    @let attrs = r["attributes"].as_array().cloned().unwrap_or_default();
                    @if !attrs.is_empty() {
                        table.attrs {
                            thead { tr { th { "attribute" } th { "before" } th { "after" } } }
                            tbody {
                                @for a in &attrs {
                                    tr {
                                        td { code { (shown(a["path"].as_str().unwrap_or(""))) } }
                                        td.del { (shown(a["before"].as_str().unwrap_or("—"))) }
                                        td.add { (shown(a["after"].as_str().unwrap_or("—"))) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
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
            h2 { "What the approval binds" }
            dl.facts {
                dt { "Rule" } dd { (shown(&v.classification.rule)) }
                dt { "Environment" } dd { (environment(v)) }
                dt { "Risk" } dd { (risk_text) }
                dt { "Timeout" } dd { (v.classification.timeout_seconds) " s" }
                dt { "Artifacts (SHA-256)" }
                dd { @for h in &v.artifact_sha256 { code { (shown(h)) } br; } @if v.artifact_sha256.is_empty() { "none" } }
            }
            (approvals(v))
            @if v.state == State::Pending {
                (decision_form(s, v, form))
            } @else {
                (decided(v, approver))
            }
        },
    )
}

/// Who may approve, how many must, who has so far, and a freeze in force.
fn approvals(v: &RequestView) -> Markup {
    let c = &v.classification;
    let needed = c.approvals_needed.max(1);
    html! {
        h2 { "Approvals" }
        @if let Some(f) = &c.freeze {
            p.notice { "Change freeze " strong { (shown(&f.name)) } ": " (shown(&f.reason)) }
        }
        @if let Some(rule) = &c.auto_approve {
            p { "Approved without a human by rule " code { (shown(rule)) } "." }
        } @else {
            p.needs {
                (shown(&c.needs()))
                @if !c.allow_self_approval { "; not by the person the agent acts for" }
                "."
            }
            @if needed > 1 || !v.approvals.is_empty() {
                p.progress { (v.approvals.len()) " of " (needed) " so far" }
                ul.approvals {
                    @for a in &v.approvals {
                        li {
                            (shown(a.display.as_deref().unwrap_or(&a.approver)))
                            " " span.when { (time(a.at)) }
                            @if let Some(c) = &a.comment { " — " (shown(c)) }
                        }
                    }
                }
            }
        }
    }
}

fn decision_form(s: &Session, v: &RequestView, form: &Form<'_>) -> Markup {
    html! {
        section.decide {
            h2 { "Decide" }
            @if form.reauth {
                p.notice { "This request is in a high-risk environment. Sign in again (you signed in too long ago) to decide it." }
                a.button href=(super::auth::login_url(&format!("/ui/requests/{}", v.id), true)) { "Sign in again" }
            } @else {
                form method="post" action={ "/ui/requests/" (v.id) "/decision" } {
                    input type="hidden" name="csrf" value=(s.csrf);
                    @if let Some(env) = form.confirm {
                        label.confirm {
                            "This deletes or replaces something in " strong { (shown(env)) } ". Type the environment's name to approve: "
                            input type="text" name="confirm" autocomplete="off" data-confirm=(env);
                        }
                    }
                    label { "Comment (required to reject; the agent reads it)"
                        textarea name="comment" rows="2" {}
                    }
                    div.buttons {
                        button.approve type="submit" name="decision" value="approve" { "Approve" }
                        button.reject type="submit" name="decision" value="reject" { "Reject" }
                    }
                }
            }
        }
    }
}

fn decided(v: &RequestView, approver: Option<&serde_json::Value>) -> Markup {
    html! {
        section.decided {
            h2 { "Decision" }
            @if let Some(d) = &v.decision {
                p {
                    span class={ "state state-" (d.decision.as_str()) } { (d.decision.as_str()) }
                    " by " (approver_name(d.approvers.first(), approver)) " at " (time(d.decided_at))
                }
                @if let Some(c) = &d.comment { p.reason { "“" (shown(c)) "”" } }
            }
            @if let Some(o) = &v.outcome {
                p {
                    "The run "
                    @match (o.exit_code, o.signal) {
                        (Some(c), _) => { "exited " (c) }
                        (None, Some(sig)) => { "died of signal " (sig) }
                        _ => { "ended" }
                    }
                    " after " (o.duration_ms) " ms (as the agent reported it)."
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
