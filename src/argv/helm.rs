//! The helm argv reader: cobra rules (see `cobra.rs`) over the table generated from the pinned
//! helm 3 and helm 4 help, plus helm's target facts, which helm also takes from `HELM_*`
//! environment variables.

use super::cobra;
use super::invocation::{Invocation, ReadError};
use super::kubectl::{all, last};

/// Root commands cobra adds at run time that `helm --help` does not list.
const RUNTIME_ROOT_COMMANDS: &[&str] = &["help"];

/// True when `flag` (with its dashes) is one of helm's global flags (`--kube-context`, `-n`, …).
pub fn is_global_flag(flag: &str) -> bool {
    cobra::is_root_flag(super::helm_flags::COMMANDS, flag)
}

pub(crate) fn read(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, ReadError> {
    let mut inv = cobra::read(super::helm_flags::COMMANDS, RUNTIME_ROOT_COMMANDS, args)?;
    let nonempty = |name: &str| env(name).filter(|v| !v.is_empty());
    let t = &mut inv.target;
    t.context = last(&inv.flags, &["--kube-context"]).or_else(|| nonempty("HELM_KUBECONTEXT"));
    t.namespace = last(&inv.flags, &["-n", "--namespace"]).or_else(|| nonempty("HELM_NAMESPACE"));
    t.kubeconfig = last(&inv.flags, &["--kubeconfig"]);
    t.server = last(&inv.flags, &["--kube-apiserver"]).or_else(|| nonempty("HELM_KUBEAPISERVER"));
    inv.files = all(&inv.flags, &["-f", "--values"]);
    inv.reads_stdin = inv.files.iter().any(|f| f == "-");
    Ok(inv)
}
