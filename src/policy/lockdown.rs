//! `[lockdown]`: the agent's user holds neither the real tools nor their credentials; a runner
//! (`hitl-gate runner`, as another user) runs them for it. It belongs in the system policy: the
//! shim then forwards every command to `runner_socket` instead of exec'ing, unless it already
//! runs as `runner_user` (it is then the runner's child, and works as in exec mode).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `[lockdown]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockdown {
    /// The runner's Unix socket (`/run/hitl-gate/runner.sock`).
    pub runner_socket: PathBuf,
    /// The runner's user, by name or uid. The shim running as this user is the runner's child.
    pub runner_user: String,
    /// The agents' users the runner serves (uid → agent name). Any other uid is refused.
    #[serde(default, rename = "agent")]
    pub agents: Vec<LockdownAgent>,
    /// Variables passed from the agent to the tool besides the defaults (globs over names).
    /// Those in [`NEVER`] are never passed.
    #[serde(default)]
    pub env: Vec<String>,
    /// Flags that select credentials or the API server which the runner accepts from the agent
    /// nevertheless (`--kubeconfig`, `--as`, `--server`, `--token`, helm's `--kube-*`).
    /// Default: none.
    #[serde(default)]
    pub allow_flags: Vec<String>,
    /// The directories of the real tools, first on the runner's `PATH`
    /// (`/opt/hitl-gate/real`).
    #[serde(default)]
    pub path: Vec<PathBuf>,
    /// Terraform providers refused (`namespace/type`), because they run programs the
    /// configuration names. Default `["hashicorp/external"]`.
    #[serde(default = "default_denied_providers")]
    pub terraform_denied_providers: Vec<String>,
    /// Variables the runner sets for every tool it runs: its own credentials
    /// (`KUBECONFIG = "/var/lib/hitl-runner/kubeconfig"`, cloud credential files).
    #[serde(default)]
    pub tool_env: BTreeMap<String, String>,
    /// `[lockdown.credentials.<environment>]` (`default` for every other environment): the
    /// variables that select the credentials, a `read` set for the runner (passthrough
    /// commands, plans and diffs), and a `write` set for the writer's approved runs only.
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialSet>,
    /// `[lockdown.writer]`: the second identity, the only one that can read the write
    /// credentials.
    pub writer: Writer,
}

/// `[lockdown.writer]`: the writer (W). It holds the write credential sets and runs nothing but
/// approved runs, which the runner's children hand it over its socket; it verifies the signed
/// decision and the sealed inputs itself (`runner/writer.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Writer {
    /// W's user, by name or uid: not the runner's, not an agent's.
    pub user: String,
    /// W's socket (`/run/hitl-gate-writer/writer.sock`), in a directory only the runner's
    /// user can reach; W serves the runner's uid alone.
    pub socket: PathBuf,
    /// The token W reports outcomes with (the server's `[[serve.runner]]`), W's own file.
    pub token_file: PathBuf,
    /// Variables W sets for every approved run besides the write set (its terraform CLI
    /// configuration, say).
    #[serde(default)]
    pub tool_env: BTreeMap<String, String>,
    /// An unpacked filesystem mirror of the terraform providers an approved plan may use
    /// (`registry.terraform.io/<ns>/<type>/<version>/<os_arch>/…`), owned by root: the providers
    /// W runs come from here, never from a directory the runner or the agent writes.
    #[serde(default)]
    pub terraform_providers: Option<PathBuf>,
}

/// Two credential sets for one environment: the same variable names, different files (for
/// example two kubeconfigs bound to different RBAC roles, or two cloud credential files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSet {
    /// For the runner: passthrough commands, plans and diffs.
    pub read: BTreeMap<String, String>,
    /// For the writer's approved runs only.
    pub write: BTreeMap<String, String>,
}

/// The credential set name that applies to every environment without its own.
pub const DEFAULT_CREDENTIALS: &str = "default";

fn default_denied_providers() -> Vec<String> {
    vec!["hashicorp/external".into()]
}

/// `[[lockdown.agent]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockdownAgent {
    pub uid: u32,
    /// Shown in the runner's log.
    pub name: String,
}

/// Variables every tool gets from the agent.
const COMMON: &[&str] = &["TERM", "LANG", "LC_*", "TZ", "NO_COLOR", "COLUMNS"];

/// Variables the agent may pass to `tool` besides [`COMMON`] and `[lockdown] env`.
fn tool_env(tool: &str) -> &'static [&'static str] {
    match tool {
        "terraform" | "tofu" => &["TF_VAR_*", "TF_WORKSPACE", "TF_IN_AUTOMATION", "TF_INPUT"],
        "kubectl" => &["KUBECTL_*"],
        _ => &["HELM_NAMESPACE", "HELM_DEBUG"],
    }
}

/// Never passed, whatever the globs say (a prefix ending in `*` covers its family): they
/// change what runs, where it reads its configuration, or whose credentials it uses.
pub const NEVER: &[&str] = &[
    "KUBECTL_EXTERNAL_DIFF",
    "KUBECONFIG",
    "KUBERC",
    "KUBECTL_KUBERC",
    "KUBECACHEDIR",
    "TF_CLI_CONFIG_FILE",
    "TF_CLI_ARGS*",
    "TF_DATA_DIR",
    "TF_PLUGIN_CACHE_DIR",
    "HITL_GATE_*",
    "PATH",
    "HOME",
    "LD_*",
    "XDG_*",
];

/// Flags that select credentials or the API server: refused in lockdown unless allowed. The
/// context (`--context`, helm's `--kube-context`) stays the agent's to choose: it picks one of
/// the runner's own contexts.
pub const CREDENTIAL_FLAGS: &[&str] = &[
    "--kubeconfig",
    "--cluster",
    "--user",
    "--as",
    "--as-group",
    "--as-uid",
    "--server",
    "-s",
    "--token",
    "--username",
    "--password",
    "--client-certificate",
    "--client-key",
    "--certificate-authority",
    "--insecure-skip-tls-verify",
    "--tls-server-name",
    "--kube-apiserver",
    "--kube-token",
    "--kube-as-user",
    "--kube-as-group",
    "--kube-ca-file",
    "--kube-tls-server-name",
    "--kube-insecure-skip-tls-verify",
    "-plugin-dir",
];

fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl Lockdown {
    /// Whether the agent's variable `name` is passed to `tool`.
    pub fn passes_env(&self, tool: &str, name: &str) -> bool {
        // The agent's own words and a shorter wait: the only HITL_GATE_* that pass.
        if matches!(name, "HITL_GATE_REASON" | "HITL_GATE_WAIT") {
            return true;
        }
        if NEVER.iter().any(|p| glob_match(p, name)) {
            return false;
        }
        COMMON
            .iter()
            .chain(tool_env(tool))
            .any(|p| glob_match(p, name))
            || self.env.iter().any(|p| glob_match(p, name))
    }

    /// The runner's uid: `runner_user` as a number, else looked up in `<root>/etc/passwd`.
    pub fn runner_uid(&self, root: &std::path::Path) -> Option<u32> {
        uid_of(&self.runner_user, root)
    }

    /// The credential set of `environment` (its own, else `default`), if any.
    pub fn credentials_for(&self, environment: Option<&str>) -> Option<&CredentialSet> {
        environment
            .and_then(|e| self.credentials.get(e))
            .or_else(|| self.credentials.get(DEFAULT_CREDENTIALS))
    }

    /// The agent name of `uid`, if the runner serves it.
    pub fn agent(&self, uid: u32) -> Option<&str> {
        self.agents
            .iter()
            .find(|a| a.uid == uid)
            .map(|a| a.name.as_str())
    }
}

/// A user's uid: `user` as a number, else looked up in `<root>/etc/passwd`.
pub fn uid_of(user: &str, root: &std::path::Path) -> Option<u32> {
    if let Ok(n) = user.parse() {
        return Some(n);
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == user).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// The load-time checks: an absolute socket path and tool paths, a known runner user, no agent
/// uid that is the runner's, and credential sets for known environments whose `read` and
/// `write` name the same variables.
pub fn validate(l: &Lockdown, environment_exists: &dyn Fn(&str) -> bool) -> Result<(), String> {
    for (name, set) in &l.credentials {
        if name != DEFAULT_CREDENTIALS && !environment_exists(name) {
            return Err(format!(
                "[lockdown.credentials.{name}]: no [[environment]] is named {name:?} (use \
                 \"{DEFAULT_CREDENTIALS}\" for every environment)"
            ));
        }
        let (r, w): (Vec<_>, Vec<_>) = (set.read.keys().collect(), set.write.keys().collect());
        if r != w || r.is_empty() {
            return Err(format!(
                "[lockdown.credentials.{name}]: read and write must set the same variables \
                 (read sets {r:?}, write sets {w:?}); a variable only one set names would \
                 leak the other's value into it"
            ));
        }
        let both = |env: &BTreeMap<String, String>| {
            r.iter().find(|k| env.contains_key(k.as_str())).cloned()
        };
        if let Some(k) = both(&l.tool_env).or_else(|| both(&l.writer.tool_env)) {
            return Err(format!(
                "[lockdown.credentials.{name}] and a tool_env ([lockdown] or [lockdown.writer]) \
                 both set {k}: set credentials in one place"
            ));
        }
    }
    if !l.runner_socket.is_absolute() {
        return Err("[lockdown] runner_socket must be an absolute path".into());
    }
    if let Some(p) = l.path.iter().find(|p| !p.is_absolute()) {
        return Err(format!(
            "[lockdown] path {} must be an absolute path",
            p.display()
        ));
    }
    if l.runner_user.trim().is_empty() {
        return Err("[lockdown] runner_user is empty".into());
    }
    let w = &l.writer;
    if w.user.trim().is_empty() || w.user == l.runner_user {
        return Err(
            "[lockdown.writer] user must be its own user, not the runner's: the runner runs \
             what the agent steers, and must not be able to read the write credentials"
                .into(),
        );
    }
    for (what, p) in [
        ("socket", Some(&w.socket)),
        ("token_file", Some(&w.token_file)),
    ]
    .into_iter()
    .chain([("terraform_providers", w.terraform_providers.as_ref())])
    {
        if p.is_some_and(|p| !p.is_absolute()) {
            return Err(format!("[lockdown.writer] {what} must be an absolute path"));
        }
    }

    if let Ok(r) = l.runner_user.parse::<u32>() {
        if let Some(a) = l.agents.iter().find(|a| a.uid == r) {
            return Err(format!(
                "[lockdown] agent {:?} has the runner's uid {r}: the agent would hold the tools \
                 and credentials",
                a.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_sets_must_pair_up_and_name_known_environments() {
        let set = |r: &[&str], w: &[&str]| CredentialSet {
            read: r.iter().map(|k| (k.to_string(), "/r".into())).collect(),
            write: w.iter().map(|k| (k.to_string(), "/w".into())).collect(),
        };
        let known = |n: &str| n == "prod";
        let mut x = l(&[]);
        x.credentials
            .insert("prod".into(), set(&["KUBECONFIG"], &["KUBECONFIG"]));
        x.credentials.insert("default".into(), set(&["A"], &["A"]));
        assert!(validate(&x, &known).is_ok());
        assert_eq!(
            x.credentials_for(Some("prod")).unwrap().read["KUBECONFIG"],
            "/r"
        );
        assert!(x
            .credentials_for(Some("staging"))
            .unwrap()
            .read
            .contains_key("A"));
        assert!(x.credentials_for(None).unwrap().read.contains_key("A"));
        x.credentials.insert("nope".into(), set(&["A"], &["A"]));
        assert!(validate(&x, &known)
            .unwrap_err()
            .contains("no [[environment]]"));
        x.credentials.remove("nope");
        x.credentials
            .insert("prod".into(), set(&["KUBECONFIG"], &["AWS_PROFILE"]));
        assert!(validate(&x, &known).unwrap_err().contains("same variables"));
        x.credentials.insert("prod".into(), set(&["A"], &["A"]));
        x.tool_env.insert("A".into(), "/x".into());
        assert!(validate(&x, &known).unwrap_err().contains("one place"));
    }

    fn l(env: &[&str]) -> Lockdown {
        Lockdown {
            runner_socket: "/run/x".into(),
            runner_user: "1".into(),
            agents: vec![],
            env: env.iter().map(|e| e.to_string()).collect(),
            allow_flags: vec![],
            terraform_denied_providers: vec![],
            path: vec![],
            tool_env: Default::default(),
            credentials: Default::default(),
            writer: Writer {
                user: "2".into(),
                socket: "/run/w".into(),
                token_file: "/w/token".into(),
                tool_env: Default::default(),
                terraform_providers: None,
            },
        }
    }

    #[test]
    fn the_agent_passes_only_harmless_variables() {
        let x = l(&["MY_*", "KUBECONFIG", "PATH"]);
        for (tool, name) in [
            ("terraform", "TF_VAR_region"),
            ("terraform", "TF_WORKSPACE"),
            ("kubectl", "KUBECTL_COMMAND_HEADERS"),
            ("helm", "HELM_NAMESPACE"),
            ("kubectl", "LC_ALL"),
            ("kubectl", "MY_FLAG"),
            ("helm", "HITL_GATE_REASON"),
            ("terraform", "HITL_GATE_WAIT"),
        ] {
            assert!(x.passes_env(tool, name), "{tool} {name}");
        }
        for (tool, name) in [
            ("kubectl", "KUBECTL_EXTERNAL_DIFF"),
            ("kubectl", "KUBECONFIG"),
            ("kubectl", "PATH"),
            ("terraform", "TF_CLI_ARGS_apply"),
            ("terraform", "TF_CLI_CONFIG_FILE"),
            ("kubectl", "TF_VAR_x"),
            ("helm", "HELM_PLUGINS"),
            ("kubectl", "HITL_GATE_POLICY"),
            ("kubectl", "LD_PRELOAD"),
            ("kubectl", "AWS_PROFILE"),
        ] {
            assert!(!x.passes_env(tool, name), "{tool} {name}");
        }
    }
}
