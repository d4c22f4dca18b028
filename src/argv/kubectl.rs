//! The kubectl argv reader: cobra rules (see `cobra.rs`) over the table generated from the
//! pinned kubectl's help, plus kubectl's target facts.

use super::cobra;
use super::invocation::{Invocation, ReadError};

/// Root commands cobra adds at run time that `kubectl --help` does not list.
const RUNTIME_ROOT_COMMANDS: &[&str] = &["help", "options"];

pub(crate) fn read(
    args: &[String],
    _env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, ReadError> {
    let mut inv = cobra::read(super::kubectl_flags::COMMANDS, RUNTIME_ROOT_COMMANDS, args)?;
    let t = &mut inv.target;
    t.context = last(&inv.flags, &["--context"]);
    t.cluster = last(&inv.flags, &["--cluster"]);
    t.user = last(&inv.flags, &["--user"]);
    t.namespace = last(&inv.flags, &["-n", "--namespace"]);
    t.kubeconfig = last(&inv.flags, &["--kubeconfig"]);
    t.server = last(&inv.flags, &["-s", "--server"]);
    inv.files = all(&inv.flags, &["-f", "--filename", "-k", "--kustomize"]);
    inv.reads_stdin = all(&inv.flags, &["-f", "--filename"])
        .iter()
        .any(|f| f == "-");
    Ok(inv)
}

/// True when `flag` (with its dashes) is one of kubectl's global flags (its root command's),
/// which every subcommand accepts: `--context`, `-n`, `--kubeconfig`, …
pub fn is_global_flag(flag: &str) -> bool {
    cobra::is_root_flag(super::kubectl_flags::COMMANDS, flag)
}

/// True when the kubectl command at `path` (`"set image"`) takes the long flag `--flag`.
pub fn takes_flag(path: &str, flag: &str) -> bool {
    cobra::takes_long(
        super::kubectl_flags::COMMANDS,
        path,
        flag.trim_start_matches('-'),
    )
}

/// The last value of any of `names` (pflag: a repeated scalar flag keeps the last value).
pub(crate) fn last(flags: &[(String, Option<String>)], names: &[&str]) -> Option<String> {
    flags
        .iter()
        .rev()
        .find(|(n, v)| v.is_some() && names.contains(&n.as_str()))
        .and_then(|(_, v)| v.clone())
}

/// Every value of any of `names`, in order (slice flags such as `-f` accumulate).
pub(crate) fn all(flags: &[(String, Option<String>)], names: &[&str]) -> Vec<String> {
    flags
        .iter()
        .filter(|(n, _)| names.contains(&n.as_str()))
        .filter_map(|(_, v)| v.clone())
        .collect()
}
