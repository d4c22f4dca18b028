//! `hitl-gate explain -- TOOL ARGS...`: how the shim would classify a command, without running
//! anything. Uses exactly the shim's reader, policy and resolver; also says who must approve a
//! gated command and which change freeze covers it (now, or `--at`).

use std::ffi::OsString;

use serde::Serialize;

use super::error::CliError;
use crate::argv::{self, Invocation};
use crate::exit;
use crate::policy::{self, Context, EnvMatch, Facts, Verdict};
use crate::shim::resolve::Resolver;
use crate::tool::Tool;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Explain the command as of this time (RFC 3339, `2026-12-24T10:00:00+01:00`) instead of
    /// now: which change freeze would cover it.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// The command as the agent would type it, after `--`: `kubectl --context prod delete ...`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

#[derive(Serialize)]
struct Explanation {
    tool: String,
    real_binary: Option<String>,
    real_binary_error: Option<String>,
    subcommand: String,
    known_subcommand: bool,
    uncertain: Vec<String>,
    argv_error: Option<String>,
    target: Option<crate::argv::Target>,
    facts: Option<Facts>,
    environment: Option<EnvMatch>,
    rule: String,
    verdict: &'static str,
    reason: String,
    /// Who must approve a gated command, by the rule's settings.
    approval: Option<String>,
    /// The change freeze in force (at `--at`, else now) for the environment, if any.
    freeze: Option<String>,
    /// kubectl and helm: the API server the command reaches, as the gate reads it.
    server: Option<Server>,
    policy: String,
}

/// The API server a kube command reaches: the URL, its parsed host and port, and whether the
/// target is exact (only an exact target can match a rule that loosens the gate).
#[derive(Serialize)]
struct Server {
    url: String,
    host: Option<String>,
    port: Option<u16>,
    exact: bool,
    inexact: Vec<String>,
}

impl Server {
    fn of(t: &crate::api::Target) -> Option<Server> {
        let url = t.cluster_server.clone()?;
        let parsed = policy::server_url::parse(&url).ok();
        Some(Server {
            host: parsed.as_ref().map(|u| u.host.clone()),
            port: parsed.as_ref().map(|u| u.port),
            exact: t.is_exact(),
            inexact: t.inexact.clone(),
            url,
        })
    }
}

pub fn run(args: Args) -> Result<i32, CliError> {
    let (first, rest) = args.command.split_first().expect("clap requires a command");
    let name = std::path::Path::new(first)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tool = Tool::from_name(&name).ok_or_else(|| {
        CliError::new(
            2,
            format!(
                "{name:?} is not a gated tool; explain knows terraform, tofu, kubectl and helm"
            ),
        )
    })?;
    let at = match &args.at {
        Some(t) => t
            .parse::<jiff::Timestamp>()
            .map_err(|e| CliError::new(2, format!("--at {t:?}: not an RFC 3339 time ({e})")))?
            .as_millisecond(),
        None => crate::api::now_ms(),
    };
    let (policy, source) = policy::load::load_for_cli()
        .map_err(|e| CliError::new(exit::POLICY_ERROR, e.to_string()))?;
    let env = |k: &str| std::env::var(k).ok();
    let read = argv::read(tool, rest, &env);
    let resolver = Resolver::for_exe(std::env::var_os("PATH"));
    let resolved_server = std::cell::RefCell::new(None);
    let kube_server = || {
        let inv = read.as_ref().ok()?;
        let r = crate::shim::resolve_kube_target(tool, &resolver, rest, inv, &policy)?;
        let server = r
            .target
            .is_exact()
            .then(|| r.target.cluster_server.clone())
            .flatten();
        *resolved_server.borrow_mut() = Some(server.clone());
        server
    };
    let ctx = Context {
        kube_server: &kube_server,
        ..Context::process()
    };
    // What a kube command reaches, when an environment is defined by it (resolving runs
    // `kubectl config view`, and nothing else).
    let server = read
        .as_ref()
        .ok()
        .filter(|_| policy.names_kube_servers())
        .and_then(|inv| {
            crate::shim::resolve_kube_target(tool, &resolver, rest, inv, &policy)
                .and_then(|r| Server::of(&r.target))
        });
    let verdict: Option<Verdict> = read
        .as_ref()
        .ok()
        .map(|inv| policy.classify(tool, inv, &ctx));
    let real = resolver.find(tool, policy.real_path(tool));
    let inv: Option<&Invocation> = read.as_ref().ok();
    let d = verdict.as_ref().map(|v| v.decision());
    let environment = d
        .and_then(|d| d.environment.clone())
        .or_else(|| inv.and_then(|i| policy.environment(tool, i, &ctx)));
    let gated = matches!(verdict, Some(Verdict::Gate(_)) | None);
    let approval = gated.then(|| approval_line(&policy, d.map(|d| d.rule.as_str())));
    let freeze = gated
        .then(|| policy.freeze_at(environment.as_ref().map(|e| e.name.as_str()), at))
        .flatten()
        .map(|f| f.describe());
    let ex = Explanation {
        tool: tool.name().into(),
        real_binary: real.as_ref().ok().map(|p| p.display().to_string()),
        real_binary_error: real.as_ref().err().map(|e| e.to_string()),
        subcommand: inv.map(|i| i.path_string()).unwrap_or_default(),
        known_subcommand: inv.is_some_and(|i| i.known_subcommand),
        uncertain: inv.map(|i| i.uncertain.clone()).unwrap_or_default(),
        argv_error: read.as_ref().err().map(|e| e.to_string()),
        target: inv.map(|i| i.target.clone()),
        facts: inv.map(|i| {
            let mut f = Facts::resolve(tool, i, &ctx);
            f.kube_server = resolved_server.borrow().clone().flatten();
            f
        }),
        environment,
        rule: d.map_or("argv".into(), |d| d.rule.clone()),
        verdict: verdict.as_ref().map_or("refuse", |v| v.action().as_str()),
        reason: d.map_or_else(
            || "the command line cannot be read safely; the shim refuses it".into(),
            |d| d.reason.clone(),
        ),
        approval,
        freeze,
        server,
        policy: source.to_string(),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&ex).expect("explanation serialises")
        );
    } else {
        print_text(&ex);
    }
    Ok(0)
}

fn print_text(ex: &Explanation) {
    let or_none = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    println!("tool:         {}", ex.tool);
    match (&ex.real_binary, &ex.real_binary_error) {
        (Some(p), _) => println!("real binary:  {p}"),
        (None, Some(e)) => println!("real binary:  NOT FOUND ({e})"),
        _ => {}
    }
    if let Some(e) = &ex.argv_error {
        println!("argv:         unreadable: {e}");
    }
    let known = if ex.known_subcommand {
        ""
    } else {
        " (unknown)"
    };
    println!("subcommand:   {}{known}", ex.subcommand);
    for u in &ex.uncertain {
        println!("uncertain:    {u}");
    }
    if let Some(f) = &ex.facts {
        println!(
            "target:       context={} namespace={} workspace={} dir={}",
            or_none(&f.kube_context),
            or_none(&f.namespace),
            or_none(&f.terraform_workspace),
            or_none(&f.dir)
        );
    }
    if let Some(s) = &ex.server {
        let at = match (&s.host, s.port) {
            (Some(h), Some(p)) => format!("host {h}, port {p}"),
            _ => "cannot be read exactly".into(),
        };
        let exact = if s.exact {
            "exact".to_string()
        } else {
            format!("INEXACT: {}", s.inexact.join("; "))
        };
        println!("server:       {} ({at}; {exact})", s.url);
    }
    match &ex.environment {
        Some(e) => println!("environment:  {} (risk {:?})", e.name, e.risk),
        None => println!("environment:  none matched"),
    }
    println!("rule:         {}", ex.rule);
    println!(
        "verdict:      {}",
        serde_json::to_value(ex.verdict)
            .expect("action serialises")
            .as_str()
            .unwrap_or("?")
    );
    println!("reason:       {}", ex.reason);
    if let Some(a) = &ex.approval {
        println!("approval:     {a}");
    }
    if let Some(f) = &ex.freeze {
        println!("freeze:       {f}");
    }
    println!("policy:       {}", ex.policy);
}

/// Who must approve a gated command under `rule`, as the server's policy would say (when the
/// server reads the same policy).
fn approval_line(policy: &policy::Policy, rule: Option<&str>) -> String {
    use crate::policy::schema::Action;
    match rule.and_then(|r| policy.rule(r)) {
        Some(r) if r.action == Action::AutoApprove => format!(
            "the server approves it without a human when rule {:?}'s conditions hold \
             (agents, humans, changes); otherwise the following rules decide",
            r.name
        ),
        Some(r) => {
            let c = crate::api::Classification {
                approvals_needed: r.approvals.unwrap_or(1),
                approvers: r.approvers.clone(),
                ..Default::default()
            };
            let who = if r.allow_self_approval {
                ""
            } else {
                "; not by the person the agent acts for"
            };
            format!("{}{who}", c.needs())
        }
        None => "needs 1 approval from any approver; not by the person the agent acts for".into(),
    }
}
