//! The policy: which commands pass, which are gated and which are denied, in which
//! environments. Shared by the shim (its verdict) and the server (its classification).
//!
//! Classification is one straight pass: the file's rules in order, then the built-in rules,
//! then the fallbacks. The first match wins. The result is a [`Verdict`], a `#[must_use]` enum
//! that callers must destructure; there is no boolean "allowed" anywhere.

pub mod approvals;
pub mod builtin;
pub mod duration;
pub mod freeze;
pub mod glob;
pub mod load;
pub mod lockdown;
pub mod notify;
pub mod schema;

use std::path::{Path, PathBuf};

use crate::argv::Invocation;
use crate::tool::Tool;
pub use schema::{Action, Risk};
use schema::{Environment, PolicyFile, Rule, ToolName};

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    file: PolicyFile,
}

/// What to do with one invocation.
#[must_use = "a verdict decides whether a command runs; it must be acted on"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run the real tool now.
    Pass(Decision),
    /// Ask a human first.
    Gate(Decision),
    /// Never run it.
    Deny(Decision),
}

/// Why a verdict was reached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// The rule that matched (a `[[rule]]` name, or a `builtin:` / `defaults.` name).
    pub rule: String,
    /// The environment matched, if any rule needed one or `explain` asked.
    pub environment: Option<EnvMatch>,
    /// One line for the agent: what happened and why.
    pub reason: String,
}

/// An environment that matched, with its risk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnvMatch {
    pub name: String,
    pub risk: Risk,
}

impl Verdict {
    pub fn decision(&self) -> &Decision {
        match self {
            Verdict::Pass(d) | Verdict::Gate(d) | Verdict::Deny(d) => d,
        }
    }

    pub fn action(&self) -> Action {
        match self {
            Verdict::Pass(_) => Action::Pass,
            Verdict::Gate(_) => Action::Gate,
            Verdict::Deny(_) => Action::Deny,
        }
    }

    fn new(action: Action, decision: Decision) -> Verdict {
        match action {
            Action::Pass => Verdict::Pass(decision),
            Action::Gate => Verdict::Gate(decision),
            Action::Deny => Verdict::Deny(decision),
            // The shim gates it; only the server, with the whole request, may approve it.
            Action::AutoApprove => Verdict::Gate(decision),
        }
    }
}

/// The facts environments are matched on that are not in argv: the working directory and
/// what the tool would read from disk or the process environment. Resolved lazily: the
/// passthrough path only pays for what a rule actually asks.
pub struct Context<'a> {
    /// The working directory; `None` means this process's, looked up only when needed.
    pub cwd: Option<PathBuf>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Facts resolved elsewhere (the server uses the ones the shim reported) instead of being
    /// read from this machine.
    pub facts: Option<Facts>,
    /// Resolves the API server a kubectl or helm command reaches, the way the tool does (the
    /// shim runs the real kubectl); `None` when it cannot be resolved exactly. Called at most
    /// once, and only when a rule that loosens the gate needs it.
    pub kube_server: &'a dyn Fn() -> Option<String>,
}

impl Context<'_> {
    /// The real process context, without kube server resolution (rules that need it do not
    /// match).
    pub fn process() -> Context<'static> {
        Context {
            cwd: None,
            env: &|k| std::env::var(k).ok(),
            facts: None,
            kube_server: &|| None,
        }
    }
}

impl Policy {
    /// The built-in rules alone (no file).
    pub fn builtin() -> Policy {
        Policy {
            file: PolicyFile {
                version: 1,
                defaults: Default::default(),
                tools: Default::default(),
                environments: Vec::new(),
                rules: Vec::new(),
                serve: Default::default(),
                approval: Default::default(),
                freezes: Vec::new(),
                lockdown: None,
            },
        }
    }

    /// Validates a parsed file: the things serde cannot check.
    pub fn from_file(file: PolicyFile) -> Result<Policy, String> {
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
        let mut env_names = std::collections::HashSet::new();
        for env in &file.environments {
            if !env_names.insert(env.name.as_str()) {
                return Err(format!("environment name {:?} is used twice", env.name));
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
        Ok(Policy { file })
    }

    /// The `[approval]` section (the shim's client settings).
    pub fn approval(&self) -> &schema::Approval {
        &self.file.approval
    }

    /// Whether a plan with no changes runs without asking under `rule` (file rules may turn it
    /// off; built-in rules keep the default, true).
    pub fn skip_when_no_changes(&self, rule: &str) -> bool {
        self.file
            .rules
            .iter()
            .find(|r| r.name == rule)
            .and_then(|r| r.skip_when_no_changes)
            .unwrap_or(true)
    }

    /// The `[lockdown]` section, if any.
    pub fn lockdown(&self) -> Option<&lockdown::Lockdown> {
        self.file.lockdown.as_ref()
    }

    /// The `[serve]` section.
    pub fn serve(&self) -> &schema::Serve {
        &self.file.serve
    }

    /// A file rule by name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.file.rules.iter().find(|r| r.name == name)
    }

    /// The `[[freeze]]` entries.
    pub fn freezes(&self) -> &[freeze::Freeze] {
        &self.file.freezes
    }

    /// The freeze in force at `now_ms` for a request in `environment`, if any (the first in
    /// file order).
    pub fn freeze_at(&self, environment: Option<&str>, now_ms: i64) -> Option<&freeze::Freeze> {
        self.file
            .freezes
            .iter()
            .find(|f| f.covers(environment) && f.active_at(now_ms))
    }

    /// The timeout a rule sets, if it is a file rule that sets one.
    pub fn rule_timeout(&self, rule: &str) -> Option<std::time::Duration> {
        self.file
            .rules
            .iter()
            .find(|r| r.name == rule)
            .and_then(|r| r.timeout.map(|d| d.0))
    }

    /// Whether gated helm commands may use `--post-renderer` (`tools.helm.allow_post_renderer`).
    pub fn allow_post_renderer(&self) -> bool {
        self.file
            .tools
            .helm
            .as_ref()
            .is_some_and(|h| h.allow_post_renderer)
    }

    /// The configured real binary for `tool`, if any.
    pub fn real_path(&self, tool: Tool) -> Option<&Path> {
        let t = &self.file.tools;
        let cfg = match tool {
            Tool::Terraform => &t.terraform,
            Tool::Tofu => &t.tofu,
            Tool::Kubectl => &t.kubectl,
            Tool::Helm => &t.helm,
        };
        cfg.as_ref().and_then(|c| c.real_path.as_deref())
    }

    /// Classifies one invocation.
    pub fn classify(&self, tool: Tool, inv: &Invocation, ctx: &Context<'_>) -> Verdict {
        let mut env = LazyEnv::new(&self.file.environments, tool, inv, ctx);
        let verdict = self.match_from(0, tool, inv, &mut env, None);
        escalate_for_environment(tool, verdict)
    }

    /// The server's classification: as [`Policy::classify`], except that an `auto_approve`
    /// rule matches only when its environment matches by what the command reaches and
    /// `conditions` (its own: agents, humans, changes) hold; otherwise the following rules
    /// decide. A `Gate` verdict naming an `auto_approve` rule means: approve without a human.
    pub fn classify_on_server(
        &self,
        tool: Tool,
        inv: &Invocation,
        ctx: &Context<'_>,
        conditions: &dyn Fn(&Rule) -> bool,
    ) -> Verdict {
        let mut env = LazyEnv::new(&self.file.environments, tool, inv, ctx);
        self.match_from(0, tool, inv, &mut env, Some(conditions))
    }

    /// The environment an invocation targets (for `explain` and the gated path).
    pub fn environment(&self, tool: Tool, inv: &Invocation, ctx: &Context<'_>) -> Option<EnvMatch> {
        LazyEnv::new(&self.file.environments, tool, inv, ctx).get()
    }

    /// The verdict of the file's rules from `start` on, then the built-in rules, then the
    /// fallbacks. The first match wins.
    fn match_from(
        &self,
        start: usize,
        tool: Tool,
        inv: &Invocation,
        env: &mut LazyEnv<'_>,
        auto: Option<&dyn Fn(&Rule) -> bool>,
    ) -> Verdict {
        let path = inv.path_string();
        // User rules may name a plugin explicitly (`subcommands = ["foo"]`), but only when the
        // reading is certain.
        if inv.uncertain.is_empty() {
            for (i, rule) in self.file.rules.iter().enumerate().skip(start) {
                if !rule_applies(rule, tool, inv, &path) {
                    continue;
                }
                if rule.action == Action::AutoApprove {
                    if let Some(conditions) = auto {
                        // Approving without a human loosens the gate: the environment counts
                        // only by what the command reaches, and every condition must hold.
                        let reached = if rule.environments.is_empty() {
                            Some(env.trusted())
                        } else {
                            env.trusted()
                                .filter(|e| rule.environments.contains(&e.name))
                                .map(Some)
                        };
                        match reached {
                            Some(e) if conditions(rule) => {
                                return Verdict::Gate(Decision {
                                    reason: format!(
                                        "`{tool} {path}` matched rule {:?} (auto-approval)",
                                        rule.name
                                    ),
                                    rule: rule.name.clone(),
                                    environment: e,
                                })
                            }
                            _ => continue,
                        }
                    }
                }
                let loosens = rule.action == Action::Pass
                    && (!rule.environments.is_empty() || !rule.flags.is_empty());
                if loosens && tool == Tool::Kubectl && kuberc_active(inv, env.ctx) {
                    // A kuberc can add flags (even --context, or --raw) that the reading
                    // cannot see: a rule that loosens the gate does not match.
                    continue;
                }
                let environment = if rule.environments.is_empty() {
                    None
                } else if rule.action == Action::Pass {
                    // Loosening: only what the command reaches counts. When resolving it costs
                    // a kubectl run and the rules after this one pass the command anyway, the
                    // verdict is theirs, without resolving.
                    if !env.trusted_known() {
                        let rest = self.match_from(i + 1, tool, inv, env, auto);
                        if matches!(rest, Verdict::Pass(_)) {
                            return rest;
                        }
                        return match env.trusted() {
                            Some(e) if rule.environments.contains(&e.name) => {
                                pass(rule, tool, &path, Some(e))
                            }
                            _ => rest,
                        };
                    }
                    match env.trusted() {
                        Some(e) if rule.environments.contains(&e.name) => Some(e),
                        _ => continue,
                    }
                } else {
                    match env.get() {
                        Some(e) if rule.environments.contains(&e.name) => Some(e),
                        _ => continue,
                    }
                };
                return Verdict::new(
                    rule.action,
                    Decision {
                        reason: format!("`{tool} {path}` matched rule {:?}", rule.name),
                        rule: rule.name.clone(),
                        environment,
                    },
                );
            }
        }
        if !inv.known_subcommand || !inv.uncertain.is_empty() {
            let why = if inv.uncertain.is_empty() {
                format!("`{tool} {path}` is not a subcommand hitl-gate knows (a plugin?)")
            } else {
                inv.uncertain.join("; ")
            };
            return Verdict::new(
                self.file.defaults.unknown_subcommand,
                Decision {
                    rule: builtin::UNKNOWN.into(),
                    environment: env.get(),
                    reason: why,
                },
            );
        }
        if self.file.defaults.builtin_rules {
            for rule in builtin::RULES {
                if rule.tools.contains(&tool)
                    && rule
                        .subcommands
                        .iter()
                        .any(|p| glob::matches(p, &path, None))
                {
                    return Verdict::new(
                        rule.action,
                        Decision {
                            rule: rule.name.into(),
                            environment: None,
                            reason: format!("`{tool} {path}` matched {}", rule.name),
                        },
                    );
                }
            }
        }
        Verdict::Gate(Decision {
            rule: builtin::UNLISTED.into(),
            environment: env.get(),
            reason: format!("`{tool} {path}` is on no rule's list; unlisted commands are gated"),
        })
    }
}

/// The pass verdict of a loosening rule that matched `env`.
fn pass(rule: &Rule, tool: Tool, path: &str, env: Option<EnvMatch>) -> Verdict {
    Verdict::Pass(Decision {
        reason: format!("`{tool} {path}` matched rule {:?}", rule.name),
        rule: rule.name.clone(),
        environment: env,
    })
}

/// Whether kubectl will read a kuberc for this command: `--kuberc`, `KUBERC` naming a file, or
/// `~/.kube/kuberc` existing, unless `KUBERC=off` or `KUBECTL_KUBERC=false`.
fn kuberc_active(inv: &Invocation, ctx: &Context<'_>) -> bool {
    if inv.has_flag(&["--kuberc"]) {
        return true;
    }
    if (ctx.env)("KUBECTL_KUBERC").as_deref() == Some("false") {
        return false;
    }
    match (ctx.env)("KUBERC") {
        Some(v) if v == "off" => false,
        Some(v) if !v.is_empty() => true,
        _ => (ctx.env)("HOME").is_some_and(|h| Path::new(&h).join(".kube/kuberc").exists()),
    }
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

fn rule_applies(rule: &Rule, tool: Tool, inv: &Invocation, path: &str) -> bool {
    let tool_ok = rule.tools.is_empty()
        || rule.tools.iter().any(|t| {
            matches!(
                (t, tool),
                (ToolName::Terraform, Tool::Terraform)
                    | (ToolName::Tofu, Tool::Tofu)
                    | (ToolName::Kubectl, Tool::Kubectl)
                    | (ToolName::Helm, Tool::Helm)
            )
        });
    let sub_ok = rule.subcommands.is_empty()
        || rule
            .subcommands
            .iter()
            .any(|p| glob::matches(p, path, None));
    // `--raw` sends a raw request and ignores --dry-run: a dry-run condition never matches it.
    if rule.flags.contains_key("--dry-run") && inv.has_flag(&["--raw"]) {
        return false;
    }
    let flags_ok = rule.flags.iter().all(|(flag, accepted)| {
        inv.flags
            .iter()
            .rev()
            .find(|(n, _)| n == flag)
            .is_some_and(|(_, v)| {
                accepted.iter().any(|a| match v {
                    Some(v) => glob::matches(a, v, None),
                    None => a == "*",
                })
            })
    });
    tool_ok && sub_ok && flags_ok
}

/// Environment variables that make the real tool run something other than what argv says.
/// Their presence can only make the verdict stricter: a `pass` becomes a `gate`.
fn escalate_for_environment(tool: Tool, verdict: Verdict) -> Verdict {
    let Verdict::Pass(d) = verdict else {
        return verdict;
    };
    // terraform inserts TF_CLI_ARGS after the subcommand, or in front of everything when argv
    // has none: `TF_CLI_ARGS="destroy -auto-approve" terraform` destroys.
    if tool.is_terraform_like() {
        if let Some(name) = crate::argv::terraform::cli_args_var(std::env::vars_os()) {
            return Verdict::Gate(Decision {
                rule: "environment:TF_CLI_ARGS".into(),
                environment: d.environment,
                reason: format!(
                    "{name} is set and can change what terraform runs; the command is gated"
                ),
            });
        }
    }
    Verdict::Pass(d)
}

/// The first environment that matches, computed once and only when asked; by every selector
/// ([`LazyEnv::get`]) or only by what the command reaches ([`LazyEnv::trusted`]).
struct LazyEnv<'a> {
    envs: &'a [Environment],
    tool: Tool,
    inv: &'a Invocation,
    ctx: &'a Context<'a>,
    cached: Option<Option<EnvMatch>>,
    trusted: Option<Option<EnvMatch>>,
    /// The API server, once resolved (`ctx.kube_server` runs the real kubectl).
    server: Option<Option<String>>,
}

impl<'a> LazyEnv<'a> {
    fn new(envs: &'a [Environment], tool: Tool, inv: &'a Invocation, ctx: &'a Context<'a>) -> Self {
        LazyEnv {
            envs,
            tool,
            inv,
            ctx,
            cached: None,
            trusted: None,
            server: None,
        }
    }

    /// The first environment that matches by any selector.
    fn get(&mut self) -> Option<EnvMatch> {
        if self.envs.is_empty() {
            return None;
        }
        if let Some(c) = &self.cached {
            return c.clone();
        }
        let mut facts = match &self.ctx.facts {
            Some(f) => f.clone(),
            None => Facts::resolve(self.tool, self.inv, self.ctx),
        };
        self.reached(&mut facts);
        let found = self.first(&facts);
        self.cached = Some(found.clone());
        found
    }

    /// Whether [`LazyEnv::trusted`] is known without running anything.
    fn trusted_known(&self) -> bool {
        self.trusted.is_some()
            || self.ctx.facts.is_some()
            || self.tool.is_terraform_like()
            || !self.envs.iter().any(|e| !e.kube_servers.is_empty())
    }

    /// The first environment that matches by what the command reaches: the API server resolved
    /// with the real tool, or the terraform backend.
    fn trusted(&mut self) -> Option<EnvMatch> {
        if let Some(t) = &self.trusted {
            return t.clone();
        }
        let mut facts = match &self.ctx.facts {
            Some(f) => f.clone(),
            None => Facts::default(),
        };
        self.reached(&mut facts);
        facts.trusted_only = true;
        let found = self.first(&facts);
        self.trusted = Some(found.clone());
        found
    }

    /// Fills in what the command reaches, when an environment has a selector for it and the
    /// facts did not come with it.
    fn reached(&mut self, facts: &mut Facts) {
        if self.ctx.facts.is_some() {
            return;
        }
        if self.tool.is_terraform_like() {
            if self.envs.iter().any(|e| !e.terraform_backends.is_empty()) {
                facts.terraform_backend = Facts::dir(self.inv, self.ctx)
                    .map(|d| crate::argv::terraform::backend(&d, self.ctx.env));
            }
        } else if self.envs.iter().any(|e| !e.kube_servers.is_empty()) {
            let ctx = self.ctx;
            facts.kube_server = self
                .server
                .get_or_insert_with(|| (ctx.kube_server)())
                .clone();
        }
    }

    fn first(&self, facts: &Facts) -> Option<EnvMatch> {
        self.envs
            .iter()
            .find(|e| facts.matches(e))
            .map(|e| EnvMatch {
                name: e.name.clone(),
                risk: e.risk,
            })
    }
}

/// The facts an environment is matched against.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Facts {
    pub kube_context: Option<String>,
    pub namespace: Option<String>,
    pub terraform_workspace: Option<String>,
    pub dir: Option<String>,
    /// The API server the command reaches, resolved with the real tool (only when known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kube_server: Option<String>,
    /// The terraform backend (`TYPE key=value …`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terraform_backend: Option<String>,
    /// Match only by what the command reaches (`kube_servers`, `terraform_backends`).
    #[serde(skip)]
    pub trusted_only: bool,
}

impl Facts {
    /// Resolves the name facts for one invocation: argv first, then what the tool would read.
    pub fn resolve(tool: Tool, inv: &Invocation, ctx: &Context<'_>) -> Facts {
        let mut facts = Facts {
            namespace: inv.target.namespace.clone(),
            ..Facts::default()
        };
        let dir = Self::dir(inv, ctx);
        if tool.is_terraform_like() {
            facts.terraform_workspace = inv
                .target
                .workspace
                .clone()
                .or_else(|| Some(crate::argv::terraform::workspace(dir.as_ref()?, ctx.env)));
        } else {
            facts.kube_context = inv
                .target
                .context
                .clone()
                .or_else(|| current_context(inv, ctx));
        }
        facts.dir = dir.map(|d| d.to_string_lossy().into_owned());
        facts
    }

    /// The working directory with terraform's `-chdir` applied.
    fn dir(inv: &Invocation, ctx: &Context<'_>) -> Option<PathBuf> {
        let cwd = ctx.cwd.clone().or_else(|| std::env::current_dir().ok());
        match (&cwd, &inv.target.chdir) {
            (Some(cwd), Some(ch)) => Some(cwd.join(ch)),
            (Some(cwd), None) => Some(cwd.clone()),
            (None, Some(ch)) if Path::new(ch).is_absolute() => Some(PathBuf::from(ch)),
            _ => None,
        }
    }

    fn matches(&self, env: &Environment) -> bool {
        let any = |globs: &[String], fact: &Option<String>, sep| {
            fact.as_deref()
                .is_some_and(|f| globs.iter().any(|g| glob::matches(g, f, sep)))
        };
        let reached = any(&env.kube_servers, &self.kube_server, None)
            || any(&env.terraform_backends, &self.terraform_backend, None);
        if self.trusted_only {
            return reached;
        }
        reached
            || any(&env.kube_contexts, &self.kube_context, None)
            || any(&env.namespaces, &self.namespace, None)
            || any(&env.terraform_workspaces, &self.terraform_workspace, None)
            || any(&env.paths, &self.dir, Some('/'))
    }
}

/// The current-context of the effective kubeconfig: `--kubeconfig`, else each file of
/// `KUBECONFIG` in order (the first that sets it wins, as in kubectl's merge), else
/// `~/.kube/config`. Only the top-level `current-context:` line is read here.
fn current_context(inv: &Invocation, ctx: &Context<'_>) -> Option<String> {
    let files: Vec<PathBuf> = match (&inv.target.kubeconfig, (ctx.env)("KUBECONFIG")) {
        (Some(k), _) => vec![PathBuf::from(k)],
        (None, Some(list)) if !list.is_empty() => list
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect(),
        _ => vec![PathBuf::from((ctx.env)("HOME")?).join(".kube/config")],
    };
    files.iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        text.lines().find_map(|l| {
            let v = l.strip_prefix("current-context:")?.trim();
            let v = v.trim_matches(|c| c == '"' || c == '\'');
            (!v.is_empty()).then(|| v.to_string())
        })
    })
}
