//! The HTML of the web UI's pages (maud: compile-time templates that escape every value), and
//! the helpers they share. Everything an agent supplied (argv, diff, reason, names, hostnames)
//! passes through [`shown`] first, so terminal escapes and bidi or invisible characters appear
//! as `\u{…}` instead of acting on the reader; maud then escapes it for HTML.

use maud::{html, Markup, DOCTYPE};

use crate::api::RequestView;
use crate::audit::Checkpoint;
use crate::escape::{shell_word, terminal};
use crate::server::history::{Decided, Filter};
use crate::server::sessions::Session;

/// Agent-supplied text of one line, made visible (control and bidi characters escaped).
pub fn shown(s: &str) -> String {
    terminal(s, false)
}

/// Agent-supplied text of many lines (a diff), made visible; newlines and tabs stay.
pub fn shown_lines(s: &str) -> String {
    terminal(s, true)
}

/// How a signed-in person is named on the page: the verified email; else the name, which the
/// user may have chosen, with the subject beside it; else the subject.
pub fn who(s: &Session) -> String {
    let w = &s.who;
    shown(&match (&w.email, &w.name) {
        (Some(e), _) => e.clone(),
        (None, Some(n)) => format!("{n} ({})", w.subject),
        (None, None) => w.subject.clone(),
    })
}

/// The command as shell words, made visible.
pub fn command(v: &RequestView) -> String {
    std::iter::once(v.tool.as_str())
        .chain(v.argv.iter().map(String::as_str))
        .map(shell_word)
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most `n` characters of `s`, with an ellipsis when cut.
pub fn short(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `14m 05s left`, or `expired`.
pub fn time_left(deadline: i64, now: i64) -> String {
    let ms = deadline - now;
    if ms <= 0 {
        return "expired".into();
    }
    let s = ms / 1000;
    let (h, m, x) = (s / 3600, s % 3600 / 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {x:02}s left")
    } else if m > 0 {
        format!("{m}m {x:02}s left")
    } else {
        format!("{x}s left")
    }
}

/// A unix-ms time as `2026-11-30 10:22:13 UTC`.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// The change counts, the server's own (`RequestView::changes`): (creates, updates, deletes,
/// replaces).
pub fn counts(v: &RequestView) -> (u64, u64, u64, u64) {
    let c = &v.changes.counts;
    let n = |x: usize| x as u64;
    (n(c.add), n(c.change), n(c.destroy), n(c.replace))
}

/// The risk badge's text and class.
pub fn risk(v: &RequestView) -> (String, &'static str) {
    match v.classification.risk.as_deref() {
        Some("critical") => ("critical".into(), "risk risk-critical"),
        Some("high") => ("high".into(), "risk risk-high"),
        Some("medium") => ("medium".into(), "risk risk-medium"),
        Some("low") => ("low".into(), "risk risk-low"),
        Some(other) => (shown(other), "risk"),
        None => ("no risk set".into(), "risk"),
    }
}

/// The environment's name as the server classified it.
pub fn environment(v: &RequestView) -> String {
    v.classification
        .environment
        .as_deref()
        .map_or_else(|| "no environment".into(), shown)
}

/// Every page: the header with navigation and the signed-in approver, then `body`.
pub fn layout(title: &str, s: Option<&Session>, now: i64, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hitl-gate" }
                link rel="stylesheet" href="/ui/static/app.css";
                script src="/ui/static/app.js" defer {}
            }
            body data-now=(now) {
                header.top {
                    a.brand href="/ui" { "hitl-gate" }
                    @if let Some(s) = s {
                        nav {
                            a href="/ui" { "Inbox" }
                            a href="/ui/history" { "History" }
                            a href="/ui/audit" { "Audit" }
                        }
                        form.signout method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            span.who { (who(s)) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page with a title and one message (errors, signed out).
pub fn message_page(title: &str, message: &str) -> Markup {
    message_page_for(None, title, message)
}

/// A message page for a signed-in person (with the sign-out form).
pub fn message_page_for(s: Option<&Session>, title: &str, message: &str) -> Markup {
    layout(
        title,
        s,
        crate::api::now_ms(),
        html! {
            section.message {
                h1 { (title) }
                p { (message) }
                p { a href="/ui" { "Back to the inbox" } }
            }
        },
    )
}

/// The inbox: pending requests, refreshed live by the script.
pub fn inbox(s: &Session, pending: &[RequestView], now: i64) -> Markup {
    layout(
        "Inbox",
        Some(s),
        now,
        html! {
            h1 { "Waiting for a decision" }
            ul #inbox-rows .cards { (inbox_rows(pending, now)) }
        },
    )
}

/// The inbox's list items (also served alone, for the live refresh).
pub fn inbox_rows(pending: &[RequestView], now: i64) -> Markup {
    html! {
        @if pending.is_empty() {
            li.empty { "Nothing is waiting." }
        }
        @for v in pending {
            @let (risk_text, risk_class) = risk(v);
            @let (add, change, destroy, replace) = counts(v);
            li.card {
                a.req href={ "/ui/requests/" (v.id) } {
                    div.line1 {
                        span.tool { (shown(&v.tool)) }
                        span.env { (environment(v)) }
                        span class=(risk_class) { (risk_text) }
                        span.left data-deadline=(v.deadline) { (time_left(v.deadline, now)) }
                    }
                    code.cmd { (short(&command(v), 120)) }
                    div.line3 {
                        span.counts {
                            span.add { "+" (add) } " "
                            span.chg { "~" (change) } " "
                            span.del { "-" (destroy) }
                            @if replace > 0 { " " span.rep { "±" (replace) " replace" } }
                        }
                        span.agent {
                            "agent " (shown(&v.agent))
                            @if let Some(h) = &v.on_behalf_of { " for " (shown(h)) }
                        }
                    }
                    @if let Some(r) = &v.reason {
                        div.reason { "“" (short(&shown(r), 200)) "”" }
                    }
                }
            }
        }
    }
}

/// The history page: decided requests with filters and paging.
pub fn history(
    s: &Session,
    rows: &[Decided],
    f: &Filter,
    page: i64,
    more: bool,
    query: &str,
    now: i64,
) -> Markup {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let date = |ms: Option<i64>| {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    layout(
        "History",
        Some(s),
        now,
        html! {
            h1 { "History" }
            form.filters method="get" action="/ui/history" {
                label { "State "
                    select name="state" {
                        @for st in ["", "approved", "rejected", "expired", "cancelled"] {
                            option value=(st) selected[f.state.as_deref() == Some(st)] {
                                @if st.is_empty() { "any" } @else { (st) }
                            }
                        }
                    }
                }
                label { "Tool " input name="tool" value=(opt(&f.tool)) size="9"; }
                label { "Environment " input name="environment" value=(opt(&f.environment)) size="10"; }
                label { "Agent " input name="agent" value=(opt(&f.agent)) size="10"; }
                label { "Approver " input name="approver" value=(opt(&f.approver)) size="14"; }
                label { "From " input type="date" name="since" value=(date(f.since)); }
                label { "To " input type="date" name="until" value=(date(f.until)); }
                button type="submit" { "Filter" }
            }
            @if rows.is_empty() { p.empty { "No decided requests match." } }
            ul.cards {
                @for d in rows {
                    @let v = &d.view;
                    li.card {
                        a.req href={ "/ui/requests/" (v.id) } {
                            div.line1 {
                                span class={ "state state-" (v.state.as_str()) } { (v.state.as_str()) }
                                span.tool { (shown(&v.tool)) }
                                span.env { (environment(v)) }
                                span.when { (time(v.created_at)) }
                            }
                            code.cmd { (short(&command(v), 120)) }
                            div.line3 {
                                span.agent { "agent " (shown(&v.agent)) }
                                @if let Some(dec) = &v.decision {
                                    span.by { "by " (approver_name(dec.approvers.first(), d.approver.as_ref())) " at " (time(dec.decided_at)) }
                                }
                                @if let Some(o) = &v.outcome {
                                    span.outcome {
                                        "run: "
                                        @match (o.exit_code, o.signal) {
                                            (Some(c), _) => { "exit " (c) }
                                            (None, Some(sig)) => { "signal " (sig) }
                                            _ => { "ended" }
                                        }
                                        ", " (o.duration_ms) " ms (reported by the agent)"
                                    }
                                }
                            }
                            @if let Some(c) = v.decision.as_ref().and_then(|d| d.comment.as_ref()) {
                                div.reason { "“" (short(&shown(c), 200)) "”" }
                            }
                        }
                    }
                }
            }
            nav.pages {
                @if page > 1 { a href={ "/ui/history?" (query) "&page=" (page - 1) } { "← newer" } }
                @if more { a href={ "/ui/history?" (query) "&page=" (page + 1) } { "older →" } }
            }
        },
    )
}

/// An approver as the page names them: the verified email recorded with a web decision; else
/// the name recorded with it beside the identity the decision carries (a name is the user's
/// own choice); else that identity (`local:<user>`, `system:reaper`, `oidc:…`).
pub fn approver_name(id: Option<&String>, details: Option<&serde_json::Value>) -> String {
    let id = id.map_or("nobody", String::as_str);
    let d = details.unwrap_or(&serde_json::Value::Null);
    shown(&match (d["email"].as_str(), d["name"].as_str()) {
        (Some(e), _) => e.to_string(),
        (None, Some(n)) => format!("{n} ({id})"),
        (None, None) => id.to_string(),
    })
}

/// The audit page: the head of the chain, the last signed checkpoint, the export.
pub fn audit(
    s: &Session,
    head: Option<&(i64, String)>,
    cp: Option<&Checkpoint>,
    public_key: &str,
    now: i64,
) -> Markup {
    layout(
        "Audit log",
        Some(s),
        now,
        html! {
            h1 { "Audit log" }
            dl.facts {
                dt { "Newest row" }
                dd { @match head { Some((seq, hash)) => { "seq " (seq) ", hash " code { (hash) } } None => { "none yet" } } }
                dt { "Last signed checkpoint" }
                dd { @match cp {
                    Some(c) => { "seq " (c.seq) " at " (time(c.at)) ", head " code { (c.head_hash) } }
                    None => { "none yet" }
                } }
                dt { "Server public key (ed25519)" }
                dd { code { (public_key) } }
            }
            h2 { "Export" }
            form.filters method="get" action="/ui/audit/export" {
                label { "From " input type="date" name="since"; }
                label { "To " input type="date" name="until"; }
                button type="submit" { "Download JSONL" }
            }
            p { "Check an export offline, on any machine, with the key above:" }
            pre.cmd { "hitl-gate audit verify --file hitl-gate-audit.jsonl --public-key " (public_key) }
        },
    )
}

/// Text with its lines coloured by their first character (`+` added, `-` removed, `~` or `!`
/// changed; `---`, `+++` and `@@` are headers), escaped and made visible.
pub fn diff_lines(text: &str) -> Markup {
    html! {
        @for line in shown_lines(text).split_inclusive('\n') {
            @let t = line.trim_start();
            @let class = if t.starts_with("---") || t.starts_with("+++") || t.starts_with("@@") {
                "hdr"
            } else if t.starts_with("-/+") || t.starts_with("+/-") || t.starts_with('~') || t.starts_with('!') {
                "chg"
            } else if t.starts_with('+') {
                "add"
            } else if t.starts_with('-') {
                "del"
            } else {
                "ctx"
            };
            span class=(class) { (line) }
        }
    }
}

/// Nothing but the text: for attributes of raw JSON.
pub fn raw_json(v: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    html! { (shown_lines(&text)) }
}
