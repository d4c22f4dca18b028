//! Matching environments: the facts a command's target is matched on (argv, the working
//! directory, what the tool reads, what the command reaches), resolved lazily so the
//! passthrough path pays only for what a rule asks.

use std::path::{Path, PathBuf};

use super::glob;
use super::schema::Environment;
use super::server_url::{self, ServerPattern};
use super::verdict::EnvMatch;
use crate::argv::Invocation;
use crate::tool::Tool;

/// Proxy variables: a proxy can carry a request for one server to another.
const PROXY_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The proxy variables set in `env`, each as a reason a target is inexact: what a command
/// reaches through a proxy is the proxy's choice.
pub fn proxy_variables(env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    PROXY_VARS
        .iter()
        .filter(|v| env(v).is_some_and(|x| !x.is_empty()))
        .map(|v| format!("{v} is set: a proxy can carry the requests elsewhere"))
        .collect()
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

/// The first environment that matches, computed once and only when asked; by every selector
/// ([`LazyEnv::get`]) or only by what the command reaches ([`LazyEnv::trusted`]).
pub(super) struct LazyEnv<'a> {
    envs: &'a [Environment],
    tool: Tool,
    inv: &'a Invocation,
    pub(super) ctx: &'a Context<'a>,
    cached: Option<Option<EnvMatch>>,
    trusted: Option<Option<EnvMatch>>,
    /// The API server, once resolved (`ctx.kube_server` runs the real kubectl).
    server: Option<Option<String>>,
}

impl<'a> LazyEnv<'a> {
    pub(super) fn new(
        envs: &'a [Environment],
        tool: Tool,
        inv: &'a Invocation,
        ctx: &'a Context<'a>,
    ) -> Self {
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
    pub(super) fn get(&mut self) -> Option<EnvMatch> {
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
    pub(super) fn trusted_known(&self) -> bool {
        self.trusted.is_some()
            || self.ctx.facts.is_some()
            || self.tool.is_terraform_like()
            || !self.envs.iter().any(|e| !e.kube_servers.is_empty())
    }

    /// The first environment that matches by what the command reaches: the API server resolved
    /// with the real tool, or the terraform backend.
    pub(super) fn trusted(&mut self) -> Option<EnvMatch> {
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
            let exact = proxy_variables(self.ctx.env).is_empty();
            if exact && self.envs.iter().any(|e| !e.terraform_backends.is_empty()) {
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
    /// The server or backend above is not exactly what the command reaches (a proxy, a TLS
    /// override): it can still make the gate stricter, never looser.
    #[serde(skip)]
    pub inexact: bool,
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
        // The server URL is parsed the way kubectl parses it, never matched as a string
        // (`server_url`); a URL that cannot be read exactly reaches no environment.
        let server = self
            .kube_server
            .as_deref()
            .and_then(|s| server_url::parse(s).ok());
        let by_server = server.as_ref().is_some_and(|u| {
            env.kube_servers
                .iter()
                .any(|p| ServerPattern::parse(p).is_ok_and(|p| p.matches(u)))
        });
        let reached = by_server || any(&env.terraform_backends, &self.terraform_backend, None);
        if self.trusted_only {
            return reached && !self.inexact;
        }
        // Only a stricter match is left: the raw string counts too.
        reached
            || any(&env.kube_servers, &self.kube_server, None)
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
