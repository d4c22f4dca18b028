//! The web UI's pages (GET): the inbox (and its rows alone, for the live refresh), a request,
//! the history with its filters, and the audit log. Each needs an approver's session; the rules
//! for risky decisions (`high_risk`, `needs_confirm`, `needs_reauth`) live here and the decision
//! handler applies the same ones.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth;
use super::html;
use super::page::{web_of, Page};
use super::request_page;
use crate::api::RequestView;
use crate::server::app::App;
use crate::server::history::Filter;
use crate::server::sessions::Session;

/// Pending requests shown in the inbox at most.
const INBOX_MAX: i64 = 1000;
/// Decided requests per history page.
const PER_PAGE: i64 = 50;
/// The last history page that can be asked for.
const MAX_PAGE: i64 = 100_000;

/// The end of a time range given as `value`: a date (YYYY-MM-DD) means the whole day, unix
/// milliseconds mean that instant.
pub fn until(value: &Option<String>, start: Option<i64>) -> Option<i64> {
    let date = value.as_deref().is_some_and(|v| v.contains('-'));
    start.map(|t| {
        if date {
            t.saturating_add(86_400_000 - 1)
        } else {
            t
        }
    })
}

/// `GET /ui`
pub async fn inbox(AxState(app): AxState<Arc<App>>, headers: HeaderMap) -> Result<Response, Page> {
    let web = web_of(&app)?;
    let s = auth::approver(&app, web, &headers, "/ui").await?;
    let pending = pending(&app).await?;
    Ok(html::inbox(&s, &pending, app.clock.now_ms()).into_response())
}

/// `GET /ui/inbox-rows`: the inbox's rows alone, which the script fetches when the event
/// stream says something changed. Without a session: 401 (the script then reloads the page,
/// which signs in again).
pub async fn inbox_rows(
    AxState(app): AxState<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    match auth::approver_with(&app, web, &headers, "/ui", false).await {
        Ok(_) => {}
        Err(Page::Redirect(_)) => {
            return Err(Page::new(
                StatusCode::UNAUTHORIZED,
                "Signed out",
                "Your session ended; reload the page to sign in again.",
            ))
        }
        Err(e) => return Err(e),
    }
    let pending = pending(&app).await?;
    Ok(html::inbox_rows(&pending, app.clock.now_ms()).into_response())
}

/// Pending requests, the soonest deadline first, from their summaries.
async fn pending(app: &App) -> Result<Vec<RequestView>, Page> {
    Ok(app.store.pending_summaries(INBOX_MAX).await?)
}

/// True for a request in a `high` or `critical` environment.
pub fn high_risk(v: &RequestView) -> bool {
    matches!(v.classification.risk.as_deref(), Some("high" | "critical"))
}

/// True when the command deletes or replaces something: by the change it showed (a reason to
/// ask, never one to skip), or by what the command is, read with the same argv readers as the
/// shim: kubectl `delete`, `drain` and `replace --force`; helm `uninstall` and its aliases;
/// terraform and tofu `destroy`, `apply -destroy` or `-replace`, `state rm`, `taint`,
/// `workspace delete`. A command the readers cannot read counts as destructive.
pub fn destructive(v: &RequestView) -> bool {
    let (_, _, destroy, replace) = html::counts(v);
    if destroy > 0 || replace > 0 {
        return true;
    }
    let Some(tool) = crate::tool::Tool::from_name(&v.tool) else {
        return true;
    };
    let args: Vec<std::ffi::OsString> = v.argv.iter().map(Into::into).collect();
    let Ok(inv) = crate::argv::read(tool, &args, &|_| None) else {
        return true;
    };
    let path: Vec<&str> = inv.path.iter().map(String::as_str).collect();
    let flag = |names: &[&str]| {
        inv.flags
            .iter()
            .any(|(n, _)| names.contains(&n.trim_start_matches('-')))
    };
    match tool {
        crate::tool::Tool::Kubectl => match path.first() {
            Some(&"delete" | &"drain") => true,
            Some(&"replace") => flag(&["force"]),
            _ => false,
        },
        crate::tool::Tool::Helm => {
            matches!(
                path.first(),
                Some(&"uninstall" | &"delete" | &"del" | &"un")
            )
        }
        crate::tool::Tool::Terraform | crate::tool::Tool::Tofu => match path.as_slice() {
            ["destroy", ..] | ["taint", ..] => true,
            ["apply", ..] | ["plan", ..] => flag(&["destroy", "replace"]),
            ["state", "rm", ..] | ["workspace", "delete", ..] | ["env", "delete", ..] => true,
            _ => false,
        },
    }
}

/// The name an approver must type to approve: a delete, destroy or replace in a high-risk
/// environment.
pub fn needs_confirm(v: &RequestView) -> Option<String> {
    (high_risk(v) && destructive(v)).then(|| {
        v.classification
            .environment
            .clone()
            .unwrap_or_else(|| "production".into())
    })
}

/// True when `s` signed in at the provider too long ago to decide `v` (high risk only).
pub fn needs_reauth(app: &App, s: &Session, v: &RequestView) -> bool {
    let Some(web) = &app.web else { return true };
    let limit = i64::try_from(web.oidc.config().reauth_after.0.as_millis()).unwrap_or(i64::MAX);
    high_risk(v) && app.clock.now_ms() - s.who.auth_time > limit
}

/// A request id as the API accepts it, or the 404 page.
pub fn request_id(id: &str) -> Result<(), Page> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(not_found())
    }
}

pub fn not_found() -> Page {
    Page::new(
        StatusCode::NOT_FOUND,
        "No such request",
        "There is no request with this id.",
    )
}

/// `GET /ui/requests/{id}`
pub async fn request(
    AxState(app): AxState<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    request_id(&id)?;
    let s = auth::approver(&app, web, &headers, &format!("/ui/requests/{id}")).await?;
    let v = app.store.get(&id).await?.ok_or_else(not_found)?;
    let approver = app.store.approver_details(&id).await?;
    let confirm = needs_confirm(&v);
    let form = request_page::Form {
        confirm: confirm.as_deref(),
        reauth: needs_reauth(&app, &s, &v),
    };
    Ok(request_page::page(&s, &v, approver.as_ref(), &form, app.clock.now_ms()).into_response())
}

/// `GET /ui/history?state=&tool=&environment=&agent=&approver=&since=&until=&page=`
pub async fn history(
    AxState(app): AxState<Arc<App>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Page> {
    let web = web_of(&app)?;
    let q = q.unwrap_or_default();
    let s = auth::approver(&app, web, &headers, &format!("/ui/history?{q}")).await?;
    let mut f = Filter::default();
    let mut page = 1;
    let mut kept = Vec::new();
    for (k, v) in reqwest::Url::parse(&format!("http://x/?{q}"))
        .map(|u| u.query_pairs().into_owned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let value = Some(v.trim().to_string()).filter(|v| !v.is_empty());
        let day = |v: &Option<String>| -> Result<Option<i64>, Page> {
            v.as_deref()
                .map(crate::audit::parse_time)
                .transpose()
                .map_err(Page::bad_request)
        };
        match k.as_str() {
            "state" => f.state = value.clone(),
            "tool" => f.tool = value.clone(),
            "environment" => f.environment = value.clone(),
            "agent" => f.agent = value.clone(),
            "approver" => f.approver = value.clone(),
            "since" => f.since = day(&value)?,
            "until" => f.until = until(&value, day(&value)?),
            "page" => page = v.parse::<i64>().unwrap_or(1).clamp(1, MAX_PAGE),
            _ => return Err(Page::bad_request(format!("Unknown filter {k:?}."))),
        }
        if k != "page" {
            if let Some(value) = value {
                kept.push((k, value));
            }
        }
    }
    let mut rows = app
        .store
        .history(&f, PER_PAGE + 1, (page - 1) * PER_PAGE)
        .await?;
    let more = rows.len() > usize::try_from(PER_PAGE).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(PER_PAGE).unwrap_or(usize::MAX));
    let query = {
        let mut u = reqwest::Url::parse("http://x/").expect("static URL");
        u.query_pairs_mut().extend_pairs(&kept);
        u.query().unwrap_or_default().to_string()
    };
    Ok(html::history(&s, &rows, &f, page, more, &query, app.clock.now_ms()).into_response())
}

/// `GET /ui/audit`
pub async fn audit(AxState(app): AxState<Arc<App>>, headers: HeaderMap) -> Result<Response, Page> {
    let web = web_of(&app)?;
    let s = auth::approver(&app, web, &headers, "/ui/audit").await?;
    let (head, cp) = app.store.audit_head().await?;
    Ok(html::audit(
        &s,
        head.as_ref(),
        cp.as_ref(),
        &app.keys.public_hex(),
        app.clock.now_ms(),
    )
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::destructive;
    use crate::api::{Changes, Classification, Diff, RequestView, State};

    fn view(tool: &str, argv: &[&str], counts: serde_json::Value) -> RequestView {
        RequestView {
            id: "x".into(),
            state: State::Pending,
            agent: "a".into(),
            on_behalf_of: None,
            tool: tool.into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            cwd: String::new(),
            host: String::new(),
            environment: Default::default(),
            diff: Diff::default(),
            artifact_sha256: Vec::new(),
            reason: None,
            classification: Classification {
                verdict: "gate".into(),
                rule: "r".into(),
                environment: Some("production".into()),
                risk: Some("high".into()),
                timeout_seconds: 900,
                approvals_needed: 1,
                ..Default::default()
            },
            created_at: 0,
            deadline: 0,
            decision: None,
            outcome: None,
            outcome_reported_by: None,
            outcome_verified: false,
            nonce: String::new(),
            run: None,
            approvals: Vec::new(),
            review_url: None,
            agent_waiting_until: None,
            run_claimed: false,
            agent_waiting: false,
            changes: Changes {
                counts: serde_json::from_value(counts).unwrap_or_default(),
                ..Changes::default()
            },
        }
    }

    #[test]
    fn deletes_and_replaces_are_known_by_the_command_and_by_the_change() {
        let none = serde_json::json!({});
        for (tool, argv, want) in [
            ("kubectl", &["delete", "deploy", "web"][..], true),
            ("kubectl", &["-n", "prod", "delete", "pod", "x"][..], true),
            ("kubectl", &["drain", "node-1"][..], true),
            ("kubectl", &["replace", "--force", "-f", "x.yaml"][..], true),
            ("kubectl", &["replace", "-f", "x.yaml"][..], false),
            (
                "kubectl",
                &["scale", "deploy", "web", "--replicas=2"][..],
                false,
            ),
            ("helm", &["uninstall", "rel"][..], true),
            ("helm", &["un", "rel"][..], true),
            ("helm", &["del", "rel"][..], true),
            ("helm", &["upgrade", "rel", "chart"][..], false),
            ("terraform", &["destroy"][..], true),
            ("terraform", &["apply", "-destroy"][..], true),
            ("terraform", &["apply", "--destroy"][..], true),
            ("terraform", &["apply", "-replace=aws_instance.a"][..], true),
            ("terraform", &["state", "rm", "aws_instance.a"][..], true),
            ("terraform", &["taint", "aws_instance.a"][..], true),
            ("tofu", &["workspace", "delete", "old"][..], true),
            ("terraform", &["apply"][..], false),
            ("nonsense", &["apply"][..], true),
        ] {
            assert_eq!(
                destructive(&view(tool, argv, none.clone())),
                want,
                "{tool} {argv:?}"
            );
        }
        // The change counts can make a command destructive, never the other way round.
        assert!(destructive(&view(
            "terraform",
            &["apply"],
            serde_json::json!({"destroy": 1})
        )));
        assert!(destructive(&view(
            "terraform",
            &["apply"],
            serde_json::json!({"replace": 2})
        )));
        assert!(destructive(&view(
            "kubectl",
            &["delete", "pod", "x"],
            serde_json::json!({"destroy": "zero"})
        )));
    }
}
