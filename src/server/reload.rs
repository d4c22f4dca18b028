//! Loading the policy again while the server runs: on SIGHUP and on `POST /api/v1/reload`
//! (`hitl-gate reload`, over the admin socket). The file is read and checked as at start
//! (agents, runners, rules, environments, approvers, freezes, sinks with their secret files,
//! `escalate_after`); only when all of it loads is the new [`Live`] put in force, whole. A file
//! that fails leaves the old policy in force, and the log and the answer say why.
//!
//! What the server set up once at start keeps its old value until a restart: the listen
//! address, the data dir, the database, TLS, the web UI's OIDC settings and `public_url`, the
//! connection and body limits, the checkpoint settings and the log format. The log line and the
//! answer name every such key that changed.

use std::fmt::Debug;
use std::sync::Arc;

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::app::App;
use super::auth::Approver;
use super::error::ApiError;
use super::live::Live;
use crate::policy::schema::Serve;

/// What a reload put in force.
#[derive(Debug, Serialize)]
pub struct Reloaded {
    /// Where the policy was read from.
    pub source: String,
    pub agents: usize,
    pub runners: usize,
    pub rules: usize,
    pub freezes: usize,
    pub sinks: usize,
    /// Settings that changed in the file but keep their old value until a restart.
    pub restart_needed: Vec<&'static str>,
}

/// Loads the policy again and puts it in force, or keeps the old one and says why. Logged
/// either way; `by` says what asked (`SIGHUP`, `local:<user>`).
pub async fn reload(app: &App, by: &str) -> Result<Reloaded, String> {
    let result = load(app).await;
    match &result {
        Ok(r) => tracing::info!(
            by = %by,
            source = %r.source,
            agents = r.agents,
            runners = r.runners,
            rules = r.rules,
            freezes = r.freezes,
            sinks = r.sinks,
            restart_needed = %r.restart_needed.join(", "),
            "policy reloaded"
        ),
        Err(why) => {
            tracing::warn!(
                by = %by,
                error = %super::logging::one_line(why),
                "policy reload failed; the old policy stays in force"
            )
        }
    }
    result
}

async fn load(app: &App) -> Result<Reloaded, String> {
    let loader = app
        .loader
        .clone()
        .ok_or("this server was started without a policy file; there is nothing to reload")?;
    // Reading the file and the sinks' secret files blocks.
    let (live, source) = tokio::task::spawn_blocking(move || {
        let (policy, source) = loader()?;
        Live::build(policy).map(|l| (l, source))
    })
    .await
    .map_err(|e| format!("the reload stopped: {e}"))??;
    let serve = live.policy.serve();
    if !serve.allow_local_approvers && app.web.is_none() {
        return Err(
            "[serve] allow_local_approvers = false and the web UI is off: nobody could decide"
                .into(),
        );
    }
    let old = app.live();
    let reloaded = Reloaded {
        source,
        agents: live.agents.len(),
        runners: live.runners.len(),
        rules: live.policy.rules().len(),
        freezes: live.policy.freezes().len(),
        sinks: live.sinks.len(),
        restart_needed: restart_needed(old.policy.serve(), serve),
    };
    app.replace_live(live);
    Ok(reloaded)
}

/// The settings read once at start that differ between `old` and `new`.
pub fn restart_needed(old: &Serve, new: &Serve) -> Vec<&'static str> {
    fn differs<T: Debug>(a: &T, b: &T) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    let mut keys = Vec::new();
    let mut check = |changed: bool, key: &'static str| {
        if changed {
            keys.push(key);
        }
    };
    check(differs(&old.listen, &new.listen), "[serve] listen");
    check(differs(&old.data_dir, &new.data_dir), "[serve] data_dir");
    check(
        differs(&old.database_url, &new.database_url)
            || differs(&old.database_password_file, &new.database_password_file),
        "[serve] database_url",
    );
    check(
        differs(&old.public_url, &new.public_url),
        "[serve] public_url",
    );
    check(differs(&old.oidc, &new.oidc), "[serve.oidc]");
    check(
        old.body_limit_bytes != new.body_limit_bytes,
        "[serve] body_limit_bytes",
    );
    check(
        old.max_connections != new.max_connections,
        "[serve] max_connections",
    );
    check(
        differs(&old.header_read_timeout, &new.header_read_timeout),
        "[serve] header_read_timeout",
    );
    check(
        old.checkpoint_every != new.checkpoint_every
            || differs(&old.checkpoint_interval, &new.checkpoint_interval),
        "[serve] checkpoint_every/checkpoint_interval",
    );
    check(
        differs(&old.log_format, &new.log_format),
        "[serve] log_format",
    );
    check(
        differs(&old.tls_cert, &new.tls_cert) || differs(&old.tls_key, &new.tls_key),
        "[serve] tls_cert/tls_key",
    );
    check(
        differs(&old.log_origin, &new.log_origin),
        "[serve] log_origin",
    );
    check(differs(&old.witnesses, &new.witnesses), "[[serve.witness]]");
    keys
}

/// `POST /api/v1/reload` (approvers on the admin socket only).
pub(super) async fn route(
    AxState(app): AxState<Arc<App>>,
    who: Approver,
) -> Result<Json<Reloaded>, ApiError> {
    reload(&app, &who.0).await.map(Json).map_err(|why| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reload_failed",
            format!("the old policy stays in force: {why}"),
        )
    })
}

/// Reloads on every signal `hangup` delivers (SIGHUP), until the server stops.
pub async fn on_signal(app: Arc<App>, mut hangup: tokio::signal::unix::Signal) {
    while hangup.recv().await.is_some() {
        let _ = reload(&app, "SIGHUP").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_read_at_start_are_named_when_they_change() {
        let old = Serve::default();
        assert!(restart_needed(&old, &Serve::default()).is_empty());
        let new = Serve {
            listen: Some("0.0.0.0:9".into()),
            database_url: Some("postgres://x@y/z".into()),
            max_waits_per_agent: std::num::NonZeroUsize::new(3).unwrap(),
            allow_local_approvers: false,
            ..Serve::default()
        };
        // Reloadable settings (waits per agent, local approvers) are not named.
        assert_eq!(
            restart_needed(&old, &new),
            ["[serve] listen", "[serve] database_url"]
        );
    }
}
