//! What a reader makes of a command line: the [`Invocation`] (subcommand path, target, files,
//! flags, and where each sits in argv) and the [`ReadError`] of argv it refuses to read. The
//! readers (`cobra.rs`, `kubectl.rs`, `helm.rs`, `terraform.rs`) build it; the policy and the
//! gated path use it.

/// What the agent asked a tool to do, as far as the gate needs to know.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Invocation {
    /// The tool name as the shim was called (`tofu` stays `tofu`).
    pub tool: &'static str,
    /// The subcommand path, e.g. `["rollout", "restart"]`; empty for the bare tool, `-version`
    /// and `--help`.
    pub path: Vec<String>,
    /// False when the first word is not a subcommand the reader knows: a kubectl or helm plugin,
    /// a typo, a command newer than the reader.
    pub known_subcommand: bool,
    /// Why the reading may not match the real tool's (unknown flags in a position where they
    /// could hide a subcommand). Non-empty means "treat as unknown".
    pub uncertain: Vec<String>,
    /// Where the command points.
    pub target: Target,
    /// Manifests named with `-f/--filename` (kubectl) or `-f/--values` (helm), and `-k` dirs.
    pub files: Vec<String>,
    /// True when a manifest or values file is read from stdin (`-f -`).
    pub reads_stdin: bool,
    /// Arguments that are neither flags, flag values nor part of the subcommand path.
    pub positionals: Vec<String>,
    /// Every flag seen, in order, as (name with its dashes, value). Boolean flags have no value
    /// unless written as `--flag=value`.
    pub flags: Vec<(String, Option<String>)>,
    /// Where each flag of [`Invocation::flags`] sits in argv (same order), for the gated path,
    /// which edits the agent's argv instead of re-rendering it.
    #[serde(skip)]
    pub flag_at: Vec<FlagAt>,
    /// The argv index of each positional of [`Invocation::positionals`] (same order).
    #[serde(skip)]
    pub positional_at: Vec<usize>,
    /// The argv index of the first word of the subcommand path (terraform: flags before it are
    /// global flags).
    #[serde(skip)]
    pub path_at: Option<usize>,
    /// The argv index of the `--` that ended the flags, if any (a `--` taken as a flag's value
    /// does not count). Flags added after it would be read as positionals.
    #[serde(skip)]
    pub terminator: Option<usize>,
}

/// Where one flag sits in argv.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlagAt {
    /// The argv index of the word holding the flag.
    pub word: usize,
    /// The byte offset of the flag's letter in that word: 0 for a long flag (`--name`, whose
    /// word is the flag alone or `--name=value`), 1 for the first letter of a short cluster.
    pub offset: usize,
    /// The argv index of the word holding the value, when it is the next word.
    pub value_word: Option<usize>,
}

/// The target facts found in argv (and, where the tool itself reads them, the environment).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    /// terraform `-chdir=DIR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chdir: Option<String>,
    /// terraform workspace from `TF_WORKSPACE` (the selected one on disk is read lazily).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// kube context (`--context`, helm `--kube-context` or `HELM_KUBECONTEXT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// `-n/--namespace` (or `HELM_NAMESPACE` for helm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `--kubeconfig` (else `KUBECONFIG` is consulted when the context is resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// kubectl `--cluster`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// kubectl `--user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// kubectl `-s/--server`, helm `--kube-apiserver`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// argv a reader refuses to interpret. The shim fails closed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Invocation {
    /// The subcommand path joined with single spaces (`rollout restart`), as policy globs see it.
    pub fn path_string(&self) -> String {
        self.path.join(" ")
    }

    /// True when any of `names` was given (with or without a value).
    pub fn has_flag(&self, names: &[&str]) -> bool {
        self.flags.iter().any(|(n, _)| names.contains(&n.as_str()))
    }

    /// The last value given for any of `names` (repeated flags: the last one wins, as in the
    /// real tools).
    pub fn flag_value(&self, names: &[&str]) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| names.contains(&n.as_str()))
            .and_then(|(_, v)| v.as_deref())
    }
}
