//! The policy file's schema (TOML, serde). Every field here is documented, line by line, in
//! `policy.example.toml` and `docs/policy.md`; keep the three in step.
//!
//! Unknown keys are errors (`deny_unknown_fields`): a typo in a security policy must not be
//! silently ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Schema version. Only 1 exists.
    pub version: u32,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub tools: Tools,
    /// `[[environment]]` tables, matched in file order; the first match wins.
    #[serde(default, rename = "environment")]
    pub environments: Vec<Environment>,
    /// `[[rule]]` tables, matched in file order before the built-in rules; the first match wins.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    /// `[serve]`: the approval server's settings.
    #[serde(default)]
    pub serve: Serve,
    /// `[approval]`: where the shim asks for approval of gated commands.
    #[serde(default)]
    pub approval: Approval,
    /// `[[freeze]]`: change freezes (`freeze.rs`).
    #[serde(default, rename = "freeze")]
    pub freezes: Vec<super::freeze::Freeze>,
    /// `[lockdown]`: the real tools run by a runner as another user (`lockdown.rs`).
    #[serde(default)]
    pub lockdown: Option<super::lockdown::Lockdown>,
}

/// `[approval]`: the shim's side of the approval server. Read only from the policy in force, so
/// under a root-owned `/etc/hitl-gate/policy.toml` nothing the agent controls can change it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Base URL of the server (`https://gate.example.com`; plain `http://` only on loopback),
    /// or a list: the replicas of one server, tried in order when one cannot be reached or
    /// answers 503.
    #[serde(default)]
    pub url: Option<Urls>,
    /// Absolute path of the file holding this agent's bearer token (never taken from argv).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The server's Ed25519 public key, 64 hex characters (`hitl-gate keys show`). Every
    /// decision is verified against it before anything runs.
    #[serde(default)]
    pub public_key: Option<String>,
    /// A PEM bundle of extra CA certificates to trust for the server's TLS certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// An HTTP(S) proxy for the connection to the server. The agent's proxy variables
    /// (`HTTPS_PROXY`, `ALL_PROXY`, …) are never used.
    #[serde(default)]
    pub proxy: Option<String>,
    /// The longest a gated command waits for its decision before it exits "still pending"
    /// (the request stays pending; running the same command again picks it up). Default: until
    /// the request's deadline. `HITL_GATE_WAIT` may shorten it, never lengthen it.
    #[serde(default)]
    pub max_wait: Option<Duration>,
    /// What SIGTERM and SIGHUP (an agent harness's timeout) do to a waiting command: `detach`
    /// (default: the request stays pending, exit "still pending") or `cancel`. SIGINT (a
    /// person's Ctrl-C) and SIGQUIT always cancel.
    #[serde(default)]
    pub on_signal: OnSignal,
}

/// `[approval] on_signal`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSignal {
    #[default]
    Detach,
    Cancel,
}

/// `url = "https://a"` or `url = ["https://a", "https://b"]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged, expecting = "a URL, or a list of URLs")]
pub enum Urls {
    One(String),
    Many(Vec<String>),
}

impl Urls {
    /// The URLs, in order.
    pub fn list(&self) -> &[String] {
        match self {
            Urls::One(u) => std::slice::from_ref(u),
            Urls::Many(v) => v,
        }
    }
}

pub use super::duration::{parse_duration, Duration};

/// `[serve]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serve {
    /// Address to listen on (`--listen` overrides). Default `127.0.0.1:8080`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Where the database, the signing key and the admin socket live (`--data-dir` overrides).
    /// Default `$XDG_DATA_HOME/hitl-gate`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain and private key for HTTPS (`--tls-cert`/`--tls-key` override);
    /// both or neither, absolute paths.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The PostgreSQL database shared by the server's replicas (`postgres://user@host/db`),
    /// instead of SQLite in the data dir. Never with a password: see `database_password_file`
    /// (or libpq's `PGPASSFILE`).
    #[serde(default)]
    pub database_url: Option<String>,
    /// A file (not readable by others) holding the database password, first line.
    #[serde(default)]
    pub database_password_file: Option<PathBuf>,
    /// Largest accepted request body, in bytes. Default 8 MiB.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// How long an approval stays valid for the shim to start the run. Default 5m.
    #[serde(default = "default_valid_for")]
    pub decision_valid_for: Duration,
    /// Timeout of a request whose rule sets none, outside high-risk environments. Default 1h.
    #[serde(default = "default_timeout")]
    pub default_timeout: Duration,
    /// Timeout in `high` and `critical` environments when the rule sets none. Default 15m.
    #[serde(default = "default_high_risk_timeout")]
    pub high_risk_timeout: Duration,
    /// Sign a checkpoint of the audit log every N rows. Default 100.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// …and at least this often while rows are being added. Default 60s.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: Duration,
    /// Most TCP connections open at once; more are closed at once. Default 16384 (and never
    /// more than the file-descriptor limit allows).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection that sends no complete request head within this time (also between two
    /// requests of a keep-alive connection) is closed. Default 10s.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Duration,
    /// Most long-polls (`GET /api/v1/requests/{id}?wait=N`) one agent token may hold at once;
    /// more are answered 429 with `Retry-After`, so one agent cannot take every connection.
    /// Default 16.
    #[serde(default = "default_max_waits_per_agent")]
    pub max_waits_per_agent: std::num::NonZeroUsize,
    /// `[[serve.agent]]`: the agents allowed to submit requests.
    #[serde(default, rename = "agent")]
    pub agents: Vec<Agent>,
    /// `[[serve.runner]]`: lockdown writers, which report the outcome of the approved runs of
    /// their agents (verified, by their own token); those agents' own reports are refused.
    #[serde(default, rename = "runner")]
    pub runners: Vec<RunnerToken>,
    /// The URL approvers open (`https://gate.example.com`): the origin every web form must come
    /// from and the base of the OIDC redirect URI. Required with `[serve.oidc]`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Whether local users on the admin socket (`hitl-gate approve`) may decide: the
    /// break-glass path, recorded as `local:<user>`. Default true.
    #[serde(default = "yes")]
    pub allow_local_approvers: bool,
    /// `[serve.oidc]`: sign-in for the web UI. Without it the web UI is off.
    #[serde(default)]
    pub oidc: Option<Oidc>,
    /// `[[serve.notify]]`: where events are sent (`notify.rs`).
    #[serde(default)]
    pub notify: Vec<super::notify::Sink>,
    /// When a request still pending is escalated to the sinks that want `escalation`: a
    /// duration (`10m`) or a share of its timeout (`50%`). Default: never.
    #[serde(default)]
    pub escalate_after: Option<String>,
    /// The server's log on stderr: `text` (one line per event, the default) or `json` (one
    /// object per line, for log pipelines). `--log-format` overrides; `HITL_GATE_LOG` filters.
    #[serde(default)]
    pub log_format: LogFormat,
    /// The audit log's origin: the first line of its C2SP checkpoints and their key name
    /// (`gate.example.com/audit`). Default `hitl-gate/` and the first 16 hex characters of the
    /// server's public key. Witnesses know the log by it: a new origin is a new log to them.
    #[serde(default)]
    pub log_origin: Option<String>,
    /// `[[serve.witness]]`: the witnesses each signed checkpoint is taken to for cosigning.
    #[serde(default, rename = "witness")]
    pub witnesses: Vec<Witness>,
}

/// `[serve] log_format`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[[serve.witness]]`: a witness that cosigns the audit log's checkpoints
/// (c2sp.org/tlog-witness; `hitl-gate witness`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Witness {
    /// The witness's URL prefix (`https://witness.example.com`): the server posts each new
    /// checkpoint to `URL/add-checkpoint`.
    pub url: String,
    /// Its cosigner verifier key, `name+id+base64` (`hitl-gate witness key`).
    pub key: String,
}

/// `[serve.oidc]`: the OpenID Connect provider approvers sign in with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oidc {
    /// The issuer URL, exactly as the provider's discovery document names it.
    pub issuer: String,
    pub client_id: String,
    /// Absolute path of the file holding the client secret (first line); mode 0600 or
    /// stricter, refused otherwise.
    pub client_secret_file: PathBuf,
    /// Scopes to ask for besides `openid`. Default `["email", "profile"]`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim that lists the user's groups. Default `groups`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Who may decide at all: members of any of these groups. Required, not empty.
    pub approver_groups: Vec<String>,
    /// A session unused for this long ends. Default 30m.
    #[serde(default = "default_session_idle")]
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not. Default 12h.
    #[serde(default = "default_session_max")]
    pub session_max: Duration,
    /// To decide a request in a `high` or `critical` environment, the approver must have signed
    /// in at the provider within this time; otherwise they are sent to sign in again.
    /// Default 15m.
    #[serde(default = "default_reauth_after")]
    pub reauth_after: Duration,
}

impl Default for Serve {
    fn default() -> Self {
        Serve {
            listen: None,
            data_dir: None,
            tls_cert: None,
            tls_key: None,
            database_url: None,
            database_password_file: None,
            body_limit_bytes: default_body_limit(),
            decision_valid_for: default_valid_for(),
            default_timeout: default_timeout(),
            high_risk_timeout: default_high_risk_timeout(),
            checkpoint_every: default_checkpoint_every(),
            checkpoint_interval: default_checkpoint_interval(),
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
            max_waits_per_agent: default_max_waits_per_agent(),
            agents: Vec::new(),
            runners: Vec::new(),
            public_url: None,
            allow_local_approvers: true,
            oidc: None,
            notify: Vec::new(),
            escalate_after: None,
            log_format: LogFormat::Text,
            log_origin: None,
            witnesses: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_session_idle() -> Duration {
    Duration(std::time::Duration::from_secs(30 * 60))
}
fn default_session_max() -> Duration {
    Duration(std::time::Duration::from_secs(12 * 3600))
}
fn default_reauth_after() -> Duration {
    Duration(std::time::Duration::from_secs(15 * 60))
}

fn default_body_limit() -> usize {
    8 * 1024 * 1024
}
fn default_valid_for() -> Duration {
    Duration(std::time::Duration::from_secs(300))
}
fn default_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(3600))
}
fn default_high_risk_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(900))
}
fn default_checkpoint_every() -> u64 {
    100
}
fn default_max_connections() -> usize {
    16384
}
fn default_header_read_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(10))
}
fn default_max_waits_per_agent() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(16).expect("16 is not zero")
}
fn default_checkpoint_interval() -> Duration {
    Duration(std::time::Duration::from_secs(60))
}

/// `[[serve.agent]]`: one agent's bearer token (only its SHA-256 is stored).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Shown to approvers and in the audit log as `agent:<name>`.
    pub name: String,
    /// SHA-256 of the token, lowercase hex (`hitl-gate keys agent-token` makes both).
    pub token_sha256: String,
    /// The human this agent acts for.
    #[serde(default)]
    pub on_behalf_of: Option<String>,
}

/// `[[serve.runner]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerToken {
    /// Recorded as `runner:<name>` with the outcomes it reports.
    pub name: String,
    /// SHA-256 of its token, lowercase hex.
    pub token_sha256: String,
    /// The `[[serve.agent]]` names whose approved runs it runs.
    pub agents: Vec<String>,
}

/// `[defaults]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// What to do with a subcommand the reader does not know (kubectl/helm plugins, typos,
    /// commands newer than hitl-gate) or cannot read with certainty.
    #[serde(default = "Action::gate")]
    pub unknown_subcommand: Action,
    /// Whether the built-in rules (docs/policy.md lists them) follow the file's rules.
    #[serde(default = "yes")]
    pub builtin_rules: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            unknown_subcommand: Action::Gate,
            builtin_rules: true,
        }
    }
}

/// `[tools.<name>]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tools {
    pub terraform: Option<ToolConfig>,
    pub tofu: Option<ToolConfig>,
    pub kubectl: Option<ToolConfig>,
    pub helm: Option<ToolConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// Absolute path of the real binary. When unset, PATH is searched (skipping the shims).
    pub real_path: Option<PathBuf>,
    /// helm only: let gated commands use `--post-renderer` (a program that rewrites the
    /// manifest after it was shown, so the approval covers only its input). Default false.
    #[serde(default)]
    pub allow_post_renderer: bool,
}

/// What a rule does with a matching command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Run the real tool at once, untouched.
    Pass,
    /// Ask a human first.
    Gate,
    /// Never run it.
    Deny,
    /// Gated, but the server approves it without a human when every condition of the rule
    /// holds (recorded as `policy:<rule>`); otherwise the following rules decide. The shim
    /// treats it as `gate`.
    #[serde(rename = "auto_approve")]
    AutoApprove,
}

impl Action {
    fn gate() -> Action {
        Action::Gate
    }

    /// The spelling used in policy files and `explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Gate => "gate",
            Action::Deny => "deny",
            Action::AutoApprove => "auto_approve",
        }
    }
}

/// How much damage a mistake in an environment can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

/// A tool name as written in a rule's `tools` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolName {
    Terraform,
    Tofu,
    Kubectl,
    Helm,
}

/// `[[environment]]`: a named target, matched when *any* of its selectors matches.
///
/// Two kinds of selector: `kube_servers` and `terraform_backends` match what the command
/// actually reaches, resolved the way the tool resolves it; the others (`kube_contexts`,
/// `namespaces`, `terraform_workspaces`, `paths`) match names the agent chooses. A rule that
/// loosens the gate (`action = "pass"`) matches an environment only by the first kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub name: String,
    pub risk: Risk,
    /// Globs over the API server URL kubectl or helm will reach, resolved with the real
    /// kubectl (`--kubeconfig`, `KUBECONFIG`, the context, `--cluster`, `--server` and helm's
    /// equivalents applied). The only kube selector a `pass` rule matches on.
    #[serde(default)]
    pub kube_servers: Vec<String>,
    /// Globs over the backend terraform uses, as `TYPE key=value …` (the settings that say
    /// where the state lives, sorted: `s3 bucket=tf-dev key=app region=eu-west-1`), read from
    /// the data directory `terraform init` wrote. The only terraform selector a `pass` rule
    /// matches on.
    #[serde(default)]
    pub terraform_backends: Vec<String>,
    /// Globs over the kube context (kubectl `--context`, helm `--kube-context`, else the
    /// kubeconfig's current-context). A name: only rules that make the gate stricter use it.
    #[serde(default)]
    pub kube_contexts: Vec<String>,
    /// Globs over the namespace given on the command line (or `HELM_NAMESPACE`). A name.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Globs over the terraform workspace (`TF_WORKSPACE`, else `<data dir>/environment`,
    /// else `default`; the data dir is `TF_DATA_DIR` or `.terraform`). A name.
    #[serde(default)]
    pub terraform_workspaces: Vec<String>,
    /// Globs over the working directory (with terraform's `-chdir` applied). `*` stays within
    /// one path segment, `**` crosses segments. A name.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// `[[rule]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Shown in messages, `explain` and the audit log (the request's classification). Unique.
    pub name: String,
    /// Tools this rule applies to. Empty means all four.
    #[serde(default)]
    pub tools: Vec<ToolName>,
    /// Globs over the subcommand path joined by spaces (`rollout restart`); `*` matches any
    /// run of characters, spaces included. Empty means any subcommand.
    #[serde(default)]
    pub subcommands: Vec<String>,
    /// Flag conditions, all of which must hold: flag spelling (with its dashes) → accepted
    /// values (globs). `["*"]` accepts any value and a bare boolean flag.
    #[serde(default)]
    pub flags: BTreeMap<String, Vec<String>>,
    /// Environment names this rule is limited to. Empty means any environment, or none.
    #[serde(default)]
    pub environments: Vec<String>,
    pub action: Action,
    /// How long a gated request waits for a human before it is rejected as `expired`. Default:
    /// `[serve] high_risk_timeout` in high/critical environments, else `default_timeout`.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// What happens at the timeout. Only `"reject"` exists (recorded as `expired`).
    #[serde(default)]
    pub on_timeout: Option<OnTimeout>,
    /// A terraform plan with no changes runs without asking (still recorded in the audit log as
    /// `no_changes`). Default true.
    #[serde(default)]
    pub skip_when_no_changes: Option<bool>,
    /// `gate` rules: who may decide (`group:<oidc group>`, `oidc:<issuer>#<sub>`,
    /// `email:<verified email>`, `local:<user>`). Empty: anyone who may decide at all
    /// (`[serve.oidc] approver_groups`, and local users unless `allow_local_approvers = false`).
    #[serde(default)]
    pub approvers: Vec<String>,
    /// `gate` rules: how many distinct eligible people must approve. Default 1.
    #[serde(default)]
    pub approvals: Option<u32>,
    /// `gate` rules: whether the human the agent acts for (`on_behalf_of`) may approve its
    /// requests. Default false.
    #[serde(default)]
    pub allow_self_approval: bool,
    /// `auto_approve` rules: the agents (`[[serve.agent]] name`) it covers. Empty: any agent.
    #[serde(default)]
    pub agents: Vec<String>,
    /// `auto_approve` rules: the humans the agents act for (`on_behalf_of`, compared without
    /// case). Empty: any, or none.
    #[serde(default)]
    pub on_behalf_of: Vec<String>,
    /// `auto_approve` rules: the change model's actions allowed (`create`, `update`, `delete`,
    /// `replace`, `read`, `import`, `move`, `drift`, `output`). Required; every changed resource
    /// must have one of them.
    #[serde(default)]
    pub changes: Vec<ChangeKind>,
    /// `auto_approve` rules: the most changed resources. Default: no limit.
    #[serde(default)]
    pub max_changes: Option<u32>,
    /// `auto_approve` rules: allow the rule to match `high` and `critical` environments (or any
    /// environment, when it names none). Default false: such a policy does not load.
    #[serde(default)]
    pub allow_high_risk: bool,
}

/// An action of the change model, as an `auto_approve` rule's `changes` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
    Replace,
    Read,
    Import,
    Move,
    Drift,
    Output,
}

impl ChangeKind {
    /// The change model's (kebab-case) name of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
            ChangeKind::Replace => "replace",
            ChangeKind::Read => "read",
            ChangeKind::Import => "import",
            ChangeKind::Move => "move",
            ChangeKind::Drift => "drift",
            ChangeKind::Output => "output",
        }
    }
}

/// `on_timeout`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    Reject,
}
