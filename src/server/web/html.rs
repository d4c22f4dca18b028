//! The frame of every page (maud: compile-time templates that escape every value) and the
//! helpers the pages share. Everything an agent supplied (argv, diff, reason, names,
//! hostnames) passes through [`shown`] first, so terminal escapes and bidi or invisible
//! characters appear as `\u{…}` instead of acting on the reader; maud then escapes it for HTML.

use maud::{html, Markup, DOCTYPE};

use super::fmt;
use crate::api::{RequestView, State};
use crate::escape::{shell_word, terminal};
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

/// A time: UTC in the page, which the script shows in the browser's time zone, keeping UTC in
/// the tooltip.
pub fn when(ms: i64) -> Markup {
    html! {
        time datetime=(fmt::iso(ms)) title=(fmt::utc(ms)) data-local { (fmt::utc(ms)) }
    }
}

/// The time left before a pending request's deadline, counted down by the script.
pub fn left(deadline: i64, now: i64) -> Markup {
    html! { span.left data-deadline=(deadline) { (fmt::time_left(deadline, now)) } }
}

/// The change counts, the server's own (`RequestView::changes`): (creates, updates, deletes,
/// replaces).
pub fn counts(v: &RequestView) -> (u64, u64, u64, u64) {
    let c = &v.changes.counts;
    let n = |x: usize| x as u64;
    (n(c.add), n(c.change), n(c.destroy), n(c.replace))
}

/// The counts as `+1 ~2 -0`, coloured, with replaces and an unknown change said in words.
pub fn count_badges(v: &RequestView) -> Markup {
    let (add, change, destroy, replace) = counts(v);
    html! {
        span.counts {
            span.add { "+" (add) } " "
            span.chg { "~" (change) } " "
            span.del { "-" (destroy) }
            @if replace > 0 { " " span.rep { "±" (replace) " replace" } }
            @if !v.changes.complete { " " span.unknown-count { "(changes not fully known)" } }
        }
    }
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

/// The markers of a request, the same in the inbox and on its page: the tool, the
/// environment, the risk, and whether it waits for the signed-in person. Another marker of a
/// request's state (that no agent waits for it any more, say) belongs here, so both places
/// show it.
pub fn markers(v: &RequestView, mine: bool, now: i64) -> Markup {
    let (risk_text, risk_class) = risk(v);
    html! {
        span.tool { (shown(&v.tool)) }
        span.env { (environment(v)) }
        span class=(risk_class) { (risk_text) " risk" }
        @if mine { span.mine { "for you" } }
        // A pending request whose shim stopped waiting (detached, timed out, killed): approving
        // it does nothing until the agent runs the same command again.
        @if v.state == State::Pending && !v.agent_waiting_at(now) {
            span.nowait title="No shim is waiting for this decision: approving it runs nothing until the agent runs the same command again" {
                "no agent waiting"
            }
        }
    }
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

/// Which page of the navigation is open (marked for screen readers and the eye).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Inbox,
    History,
    Audit,
    None,
}

/// Every page: a skip link, the header with the navigation and the signed-in approver (with
/// Sign out), then `body` in `main`. `title` may start with a count (`(2) Inbox`).
pub fn layout(title: &str, s: Option<&Session>, now: i64, body: Markup) -> Markup {
    frame(title, s, now, Nav::None, body)
}

/// [`layout`], with the navigation's current page marked.
pub fn frame(title: &str, s: Option<&Session>, now: i64, nav: Nav, body: Markup) -> Markup {
    let link = |href: &str, text: &str, me: Nav| {
        html! { a href=(href) aria-current=[(nav == me).then_some("page")] { (text) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hitl-gate" }
                link rel="icon" href="/favicon.ico";
                link rel="stylesheet" href="/ui/static/app.css";
                script src="/ui/static/app.js" defer {}
            }
            body data-now=(now) {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    a.brand href="/ui" { "hitl-gate" }
                    @if let Some(s) = s {
                        nav aria-label="Pages" {
                            (link("/ui", "Inbox", Nav::Inbox))
                            (link("/ui/history", "History", Nav::History))
                            (link("/ui/audit", "Audit", Nav::Audit))
                        }
                        form.signout method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            span.who { "Signed in as " (who(s)) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// A page with a title and one message (errors, signed out).
pub fn message_page(title: &str, message: &str) -> Markup {
    message_page_for(None, title, message)
}

/// A message page for a signed-in person (with the header, their name and Sign out).
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

/// Nothing but the text: for attributes of raw JSON.
pub fn raw_json(v: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    html! { (shown_lines(&text)) }
}
