//! The load-time checks of a policy file that serde cannot make: versions, unique names,
//! environments that rules name, loosening rules that can match by what a command reaches,
//! `[approval]`, `[serve] database_url`, and each section's own checks.

use super::schema::{self, Action, Environment, PolicyFile, Rule, ToolName};
use super::{approvals, freeze, lockdown, notify};

/// Checks a parsed file.
pub(super) fn check(file: &PolicyFile) -> Result<(), String> {
    if file.version != 1 {
        return Err(format!(
            "version = {} is not supported; this hitl-gate reads version = 1",
            file.version
        ));
    }
    let mut names = std::collections::HashSet::new();
    for rule in &file.rules {
        if !names.insert(rule.name.as_str()) {
            return Err(format!("rule name {:?} is used twice", rule.name));
        }
        for env in &rule.environments {
            if !file.environments.iter().any(|e| &e.name == env) {
                return Err(format!(
                    "rule {:?} names environment {env:?}, which no [[environment]] defines",
                    rule.name
                ));
            }
        }
        approvals::validate_rule(rule, &file.environments)?;
        if matches!(rule.action, Action::Pass | Action::AutoApprove) {
            check_loosening_environments(rule, &file.environments)?;
        }
        for flag in rule.flags.keys() {
            if !flag.starts_with('-') {
                return Err(format!(
                    "rule {:?}: flag {flag:?} must be written with its dashes (\"--{flag}\")",
                    rule.name
                ));
            }
        }
    }
    let mut agents = std::collections::HashSet::new();
    for a in &file.serve.agents {
        if !agents.insert(a.name.as_str()) {
            return Err(format!("agent name {:?} is used twice", a.name));
        }
        if crate::hex::decode(&a.token_sha256).map(|b| b.len()) != Some(32) {
            return Err(format!(
                "agent {:?}: token_sha256 must be 64 hex characters (a SHA-256)",
                a.name
            ));
        }
    }
    for r in &file.serve.runners {
        if !agents.insert(r.name.as_str()) {
            return Err(format!(
                "[[serve.runner]] name {:?} is used twice (agents and runners share names)",
                r.name
            ));
        }
        if crate::hex::decode(&r.token_sha256).map(|b| b.len()) != Some(32) {
            return Err(format!(
                "runner {:?}: token_sha256 must be 64 hex characters (a SHA-256)",
                r.name
            ));
        }
        if let Some(a) = r
            .agents
            .iter()
            .find(|a| !file.serve.agents.iter().any(|x| &x.name == *a))
        {
            return Err(format!(
                "runner {:?} names agent {a:?}, which no [[serve.agent]] defines",
                r.name
            ));
        }
    }
    let mut env_names = std::collections::HashSet::new();
    for env in &file.environments {
        if !env_names.insert(env.name.as_str()) {
            return Err(format!("environment name {:?} is used twice", env.name));
        }
        for p in &env.kube_servers {
            super::server_url::ServerPattern::parse(p).map_err(|e| {
                format!(
                    "environment {:?}: kube_servers pattern {p:?}: {e}",
                    env.name
                )
            })?;
        }
    }
    for (tool, cfg) in [
        ("terraform", &file.tools.terraform),
        ("tofu", &file.tools.tofu),
        ("kubectl", &file.tools.kubectl),
        ("helm", &file.tools.helm),
    ] {
        if let Some(p) = cfg.as_ref().and_then(|c| c.real_path.as_ref()) {
            if !p.is_absolute() {
                return Err(format!(
                    "tools.{tool}.real_path = {:?} must be an absolute path",
                    p.display()
                ));
            }
        }
    }
    validate_approval(&file.approval)?;
    validate_database(&file.serve)?;
    validate_tls(&file.serve)?;
    if let Some(l) = &file.lockdown {
        lockdown::validate(l, &|n| file.environments.iter().any(|e| e.name == n))?;
    }
    freeze::validate(&file.freezes, &|n| {
        file.environments.iter().any(|e| e.name == n)
    })?;
    notify::validate(
        &file.serve.notify,
        file.serve.escalate_after.as_deref(),
        &|n| file.environments.iter().any(|e| e.name == n),
    )?;
    Ok(())
}

/// A `pass` or `auto_approve` rule with environments must be able to match them by what the
/// command reaches:
/// each environment needs `kube_servers` (for kubectl and helm) or `terraform_backends` (for
/// terraform and tofu) for one of the rule's tools.
fn check_loosening_environments(rule: &Rule, envs: &[Environment]) -> Result<(), String> {
    let applies = |t: ToolName| rule.tools.is_empty() || rule.tools.contains(&t);
    let kube = applies(ToolName::Kubectl) || applies(ToolName::Helm);
    let tf = applies(ToolName::Terraform) || applies(ToolName::Tofu);
    for name in &rule.environments {
        let Some(env) = envs.iter().find(|e| &e.name == name) else {
            continue;
        };
        let ok =
            (kube && !env.kube_servers.is_empty()) || (tf && !env.terraform_backends.is_empty());
        if !ok {
            return Err(format!(
                "rule {:?} {} commands in environment {name:?}, which has no {}: a rule \
                 that loosens the gate matches an environment only by what the command \
                 reaches (kube_servers for kubectl and helm, terraform_backends for terraform \
                 and tofu); kube_contexts, namespaces, terraform_workspaces and paths are names \
                 the agent chooses, and can only make the gate stricter",
                rule.name,
                if rule.action == Action::AutoApprove {
                    "auto-approves"
                } else {
                    "passes"
                },
                match (kube, tf) {
                    (true, false) => "kube_servers",
                    (false, true) => "terraform_backends",
                    _ => "kube_servers or terraform_backends",
                }
            ));
        }
    }
    Ok(())
}

/// The `[approval]` checks serde cannot make: all or nothing, an absolute token path, a real
/// key, and no clear-text HTTP off the machine.
fn validate_approval(a: &schema::Approval) -> Result<(), String> {
    let set = [
        a.url.is_some(),
        a.token_file.is_some(),
        a.public_key.is_some(),
    ];
    if set.iter().all(|s| !s) {
        return Ok(());
    }
    let (Some(urls), Some(token_file), Some(key)) = (&a.url, &a.token_file, &a.public_key) else {
        return Err("[approval] needs all of url, token_file and public_key".into());
    };
    if urls.list().is_empty() {
        return Err("[approval] url is an empty list".into());
    }
    for url in urls.list() {
        validate_url(url)?;
    }
    if !token_file.is_absolute() {
        return Err(format!(
            "[approval] token_file {:?} must be an absolute path",
            token_file.display()
        ));
    }
    if crate::hex::decode(key).map(|k| k.len()) != Some(32) {
        return Err("[approval] public_key must be 64 hex characters (hitl-gate keys show)".into());
    }
    Ok(())
}

/// `[serve] tls_cert` and `tls_key`: both or neither, absolute.
fn validate_tls(s: &schema::Serve) -> Result<(), String> {
    match (&s.tls_cert, &s.tls_key) {
        (Some(c), Some(k)) if c.is_absolute() && k.is_absolute() => Ok(()),
        (None, None) => Ok(()),
        (Some(_), Some(_)) => Err("[serve] tls_cert and tls_key must be absolute paths".into()),
        _ => Err("[serve] tls_cert and tls_key go together: set both or neither".into()),
    }
}

/// `[serve] database_url`: a PostgreSQL URL without a password.
fn validate_database(s: &schema::Serve) -> Result<(), String> {
    let Some(url) = &s.database_url else {
        if s.database_password_file.is_some() {
            return Err("[serve] database_password_file needs database_url".into());
        }
        return Ok(());
    };
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or("[serve] database_url must be a postgres:// URL")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
        || url.contains("password=")
    {
        return Err(
            "[serve] database_url must not hold the password: put it in \
             database_password_file (or PGPASSFILE)"
                .into(),
        );
    }
    if s.database_password_file
        .as_ref()
        .is_some_and(|p| !p.is_absolute())
    {
        return Err("[serve] database_password_file must be an absolute path".into());
    }
    Ok(())
}

/// An `[approval] url`: https, or plain http to loopback only.
fn validate_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("[approval] url {url:?} must start with https:// or http://"))?;
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    if url.starts_with("http://") && !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return Err(format!(
            "[approval] url {url:?}: plain http is allowed only to loopback; use https://"
        ));
    }
    Ok(())
}
