//! The Slack message of an event (Block Kit, for an incoming webhook), built from the outbox
//! payload: a header, the command, the environment, risk, change counts, time left and who must
//! approve, and a button to the request's page. Slack is a pointer, never a decision path: the
//! message says so, and has no approve button.
//!
//! Everything the agent wrote is escaped for Slack's `mrkdwn` (`&`, `<`, `>`, so no mention or
//! link can be smuggled in) and cut to Block Kit's limits.

use serde_json::{json, Value};

/// Escapes text for `mrkdwn`, and cuts it to `max` characters.
fn esc(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// Plain text (headers, button labels): cut to `max` characters.
fn plain(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    if s.chars().count() >= max {
        out.push('…');
    }
    out
}

/// "14 min" or "2 h 5 min" until `deadline` (ms).
fn left(deadline: i64, now: i64) -> String {
    let m = (deadline - now).max(0) / 60_000;
    if m >= 60 {
        format!("{} h {} min", m / 60, m % 60)
    } else {
        format!("{m} min")
    }
}

/// The message for one outbox payload (see `outbox.rs`) at `now` (ms).
pub fn message(p: &Value, now: i64) -> Value {
    let r = &p["request"];
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let env = s(&r["environment"]);
    let risk = s(&r["risk"]);
    let command = s(&r["command"]).replace("```", "'''");
    let approvers: Vec<String> = p["approvals"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    s(if x["display"].is_string() {
                        &x["display"]
                    } else {
                        &x["approver"]
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let needed = r["approvals_needed"].as_u64().unwrap_or(1);
    let decision = s(&p["decision"]["decision"]);
    let head = match p["event"].as_str().unwrap_or("") {
        "created" => format!("Approval needed: {env} ({risk})"),
        "escalation" => format!("Still waiting for approval: {env} ({risk})"),
        "approval" => format!("Approval {} of {needed}: {env}", approvers.len()),
        "expired" => format!("Expired, nobody decided: {env}"),
        _ => {
            let mut d = decision.clone();
            if let Some(c) = d.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            format!("{d}: {env}")
        }
    };
    let who_must = match r["approvers"].as_array().filter(|a| !a.is_empty()) {
        Some(a) => a.iter().map(s).collect::<Vec<_>>().join(" or "),
        None => "any approver".into(),
    };
    let mut fields = vec![
        format!("*Environment*\n{}", esc(&env, 200)),
        format!("*Risk*\n{}", esc(&risk, 50)),
        format!(
            "*Changes*\n{}",
            esc(
                r["changes"]["summary"]
                    .as_str()
                    .unwrap_or("no change model"),
                200
            )
        ),
        format!("*Agent*\n{}", esc(&s(&r["agent"]), 200)),
    ];
    let pending = matches!(
        p["event"].as_str(),
        Some("created" | "escalation" | "approval")
    );
    if pending {
        fields.push(format!(
            "*Time left*\n{}",
            left(r["deadline"].as_i64().unwrap_or(now), now)
        ));
        fields.push(format!("*Needs*\n{needed} from {}", esc(&who_must, 300)));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": plain(&head, 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Command*\n```{}```", esc(&command, 2500))}}),
        json!({"type": "section", "fields": fields.iter().map(|f| json!({"type": "mrkdwn", "text": f})).collect::<Vec<_>>()}),
    ];
    if !approvers.is_empty() || p["decision"].is_object() {
        let mut text = String::new();
        if !approvers.is_empty() {
            text.push_str(&format!(
                "*Approved by* {}",
                esc(&approvers.join(", "), 1000)
            ));
        }
        if p["decision"].is_object() {
            let by = p["decision"]["approvers"]
                .as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            text.push_str(&format!(
                "\n*{}* by {}{}",
                esc(&decision, 50),
                esc(&by, 1000),
                p["decision"]["comment"]
                    .as_str()
                    .map(|c| format!(": {}", esc(c, 500)))
                    .unwrap_or_default()
            ));
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text.trim()}}));
    }
    if let Some(url) = r["url"].as_str() {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "action_id": "review",
            "text": {"type": "plain_text", "text": if pending { "Review and decide" } else { "Open the request" }},
            "url": url,
        }]}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
        "hitl-gate request {}. Decisions are made on the request's page, signed in; not in chat.",
        esc(&s(&r["id"]), 64)
    )}]}));
    json!({
        // The notification's fallback text is mrkdwn too: escaped like the rest.
        "text": esc(&plain(&format!("{head}: {command}"), 300), 400),
        "blocks": blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_agent_wrote_cannot_mention_or_link_or_close_the_code_block() {
        let p = json!({
            "event": "created",
            "request": {"id": "r1", "command": "kubectl delete ns <!channel> ``` *x* & <https://evil|click>",
                        "environment": "prod", "risk": "high", "agent": "a", "deadline": 0,
                        "changes": {"summary": "+0 ~0 -1"}},
        });
        let m = message(&p, 0).to_string();
        assert!(!m.contains("<!channel>"), "{m}");
        assert!(!m.contains("<https://evil"), "{m}");
        assert!(m.contains("&lt;!channel&gt;"), "{m}");
        assert_eq!(m.matches("```").count(), 2, "{m}");
    }
}
