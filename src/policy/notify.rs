//! `[[serve.notify]]`: where the approval server sends its events (a generic webhook signed with
//! HMAC-SHA256, or a Slack incoming webhook), which events and environments each sink wants, and
//! `[serve] escalate_after`. The files holding secrets are read by the server at start
//! (`server/notify.rs`); this file is the schema and the checks that need no file.

use std::path::PathBuf;

use serde::Deserialize;

/// `[[serve.notify]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    /// Shown in the metrics and the logs. Unique.
    pub name: String,
    pub kind: SinkKind,
    /// `webhook`: the URL events are POSTed to (`https://`; plain `http://` only on loopback).
    #[serde(default)]
    pub url: Option<String>,
    /// `webhook`: the file holding the shared secret of the `X-Hitl-Signature` HMAC (first line;
    /// mode 0600 or stricter).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// `slack`: the file holding the incoming-webhook URL, itself a secret (first line; 0600).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// The environments whose requests it hears about. Empty: all (and requests with none).
    #[serde(default)]
    pub environments: Vec<String>,
    /// The events it wants. Default: all but `escalation`.
    #[serde(default = "default_events")]
    pub events: Vec<Event>,
}

/// What kind of receiver a sink is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Webhook,
    Slack,
}

/// The events a sink can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// A request is waiting for a human (or was decided at once by the policy).
    Created,
    /// A request that needs several approvals got one more.
    Approval,
    /// Approved, rejected or cancelled.
    Decided,
    /// Nobody decided before the deadline.
    Expired,
    /// Still pending after `[serve] escalate_after`.
    Escalation,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Created => "created",
            Event::Approval => "approval",
            Event::Decided => "decided",
            Event::Expired => "expired",
            Event::Escalation => "escalation",
        }
    }
}

fn default_events() -> Vec<Event> {
    vec![
        Event::Created,
        Event::Approval,
        Event::Decided,
        Event::Expired,
    ]
}

impl Sink {
    /// Whether it wants `event` about a request in `environment`.
    pub fn wants(&self, event: Event, environment: Option<&str>) -> bool {
        self.events.contains(&event)
            && (self.environments.is_empty()
                || environment.is_some_and(|e| self.environments.iter().any(|x| x == e)))
    }
}

/// `[serve] escalate_after`: a duration (`10m`) or a share of the request's timeout (`50%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EscalateAfter {
    After(std::time::Duration),
    /// Per mille of the time between creation and deadline.
    Share(u32),
}

impl EscalateAfter {
    pub fn parse(s: &str) -> Result<EscalateAfter, String> {
        if let Some(p) = s.strip_suffix('%') {
            let n: u32 = p
                .trim()
                .parse()
                .map_err(|_| format!("escalate_after = {s:?}: write 50% or a duration"))?;
            if !(1..=99).contains(&n) {
                return Err(format!("escalate_after = {s:?}: a share must be 1% to 99%"));
            }
            return Ok(EscalateAfter::Share(n * 10));
        }
        super::duration::parse_duration(s).map(EscalateAfter::After)
    }

    /// When a request made at `created` (ms) with `deadline` (ms) escalates.
    pub fn at(self, created: i64, deadline: i64) -> i64 {
        match self {
            EscalateAfter::After(d) => {
                created.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }
            EscalateAfter::Share(pm) => created + (deadline - created) * i64::from(pm) / 1000,
        }
    }
}

/// Checks the sinks: unique names, the settings each kind needs, no clear-text HTTP off the
/// machine, known environments; and `escalate_after` with a sink that wants escalations.
pub fn validate(
    sinks: &[Sink],
    escalate_after: Option<&str>,
    environment_exists: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for s in sinks {
        let n = &s.name;
        if !names.insert(n.as_str()) {
            return Err(format!("notify sink name {n:?} is used twice"));
        }
        match s.kind {
            SinkKind::Webhook => {
                let url = s
                    .url
                    .as_deref()
                    .ok_or_else(|| format!("notify sink {n:?}: a webhook needs url"))?;
                check_url(url).map_err(|e| format!("notify sink {n:?}: {e}"))?;
                if s.secret_file.is_none() {
                    return Err(format!(
                        "notify sink {n:?}: a webhook needs secret_file (the HMAC key)"
                    ));
                }
                if s.url_file.is_some() {
                    return Err(format!("notify sink {n:?}: url_file is for slack sinks"));
                }
            }
            SinkKind::Slack => {
                if s.url_file.is_none() {
                    return Err(format!(
                        "notify sink {n:?}: a slack sink needs url_file (the incoming-webhook \
                         URL is a secret, so it is not written in the policy)"
                    ));
                }
                if s.url.is_some() || s.secret_file.is_some() {
                    return Err(format!(
                        "notify sink {n:?}: url and secret_file are for webhook sinks"
                    ));
                }
            }
        }
        for f in [&s.secret_file, &s.url_file].into_iter().flatten() {
            if !f.is_absolute() {
                return Err(format!(
                    "notify sink {n:?}: {} must be an absolute path",
                    f.display()
                ));
            }
        }
        if let Some(e) = s.environments.iter().find(|e| !environment_exists(e)) {
            return Err(format!(
                "notify sink {n:?} names environment {e:?}, which no [[environment]] defines"
            ));
        }
    }
    if let Some(e) = escalate_after {
        EscalateAfter::parse(e).map_err(|e| format!("[serve] {e}"))?;
        if !sinks.iter().any(|s| s.events.contains(&Event::Escalation)) {
            return Err(
                "[serve] escalate_after is set, but no [[serve.notify]] sink wants \
                 \"escalation\" events"
                    .into(),
            );
        }
    }
    Ok(())
}

/// `https://…`, or `http://` to a loopback address only.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if ["127.0.0.1", "localhost", "[::1]"].contains(&host) {
        Ok(())
    } else {
        Err(format!(
            "{url:?}: plain http:// only to a loopback address; use https://"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_after_a_duration_or_a_share_of_the_timeout() {
        let d = EscalateAfter::parse("10m").unwrap();
        assert_eq!(d.at(1_000, 10_000_000), 601_000);
        let s = EscalateAfter::parse("50%").unwrap();
        assert_eq!(s.at(1_000, 11_000), 6_000);
        for bad in ["0%", "100%", "half", "10 minutes"] {
            assert!(EscalateAfter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_loopback_may_be_plain_http() {
        assert!(check_url("https://hooks.example.com/x").is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        assert!(check_url("http://hooks.example.com/x").is_err());
        assert!(check_url("http://127.0.0.1.evil.com/x").is_err());
        assert!(check_url("ftp://x").is_err());
    }
}
