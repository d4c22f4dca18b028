//! Lockdown's checks of a terraform or tofu configuration before anything runs, and its data
//! directory.
//!
//! - **Denied providers** (default `hashicorp/external`, which runs programs the configuration
//!   names) are refused. The providers of a configuration and of all its modules are the ones
//!   `terraform init` wrote to `.terraform.lock.hcl`, so that is read (in the working directory,
//!   with `-chdir` applied); without a lock file terraform itself refuses to load providers.
//! - **The data directory** (`TF_DATA_DIR`: installed providers and modules, the selected
//!   workspace, the backend settings) is the runner's own, one per configuration directory
//!   under its home ([`data_dir`]), not the agent-writable `.terraform/`: the agent cannot plant
//!   a provider binary that the runner's user would execute. Providers get there only by
//!   `terraform init` run by the runner, from where its CLI configuration allows.
//! - The lock file stays in the agent's directory and can be swapped after the check, so the
//!   providers **installed** in the data directory are checked too: a denied provider that a
//!   swapped lock file let `init` install is refused before any later command loads it. The
//!   runner serializes `init` against the other commands of one directory
//!   ([`DirLocks`]), so no command passes the check while an `init` is installing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Providers refused by default: they run programs the configuration names.
pub const DENIED: &[&str] = &["hashicorp/external"];

/// The denied providers `lock` (the text of `.terraform.lock.hcl`) names, as `namespace/type`.
pub fn denied_in(lock: &str, denied: &[String]) -> Vec<String> {
    lock.lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix("provider")?.trim_start();
            let quoted = rest.strip_prefix('"')?;
            let addr = &quoted[..quoted.find('"')?];
            // registry.terraform.io/hashicorp/external → hashicorp/external
            let short: Vec<&str> = addr.rsplitn(3, '/').collect();
            let short = match short.as_slice() {
                [t, ns, ..] => format!("{ns}/{t}"),
                _ => addr.to_string(),
            };
            denied
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&short) || d.eq_ignore_ascii_case(addr))
                .then_some(short)
        })
        .collect()
}

/// The runner's private data directory for the configuration in `dir`:
/// `<home>/.hitl-gate/tfdata/<sha256 of the canonical path>`, made 0700.
pub fn data_dir(home: &Path, dir: &Path) -> Result<PathBuf, String> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::DirBuilderExt;
    let canonical = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve the directory {}: {e}", dir.display()))?;
    let d = home
        .join(".hitl-gate/tfdata")
        .join(crate::hex::sha256(canonical.as_os_str().as_bytes()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&d)
        .map_err(|e| format!("cannot create the data directory {}: {e}", d.display()))?;
    Ok(d)
}

/// The denied providers installed in the data directory `data`
/// (`providers/<host>/<namespace>/<type>/…`).
pub fn installed_denied(data: &Path, denied: &[String]) -> Vec<String> {
    let list = |p: &Path| -> Vec<String> {
        std::fs::read_dir(p)
            .map(|r| {
                r.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let providers = data.join("providers");
    let mut found = Vec::new();
    for host in list(&providers) {
        for ns in list(&providers.join(&host)) {
            for ty in list(&providers.join(&host).join(&ns)) {
                let short = format!("{ns}/{ty}");
                if denied.iter().any(|d| d.eq_ignore_ascii_case(&short)) {
                    found.push(short);
                }
            }
        }
    }
    found
}

/// Per data directory: `init` (which installs providers) alone, other commands together.
#[derive(Default)]
pub struct DirLocks(Mutex<HashMap<PathBuf, Arc<RwLock<()>>>>);

/// Held while a terraform command runs in a directory.
pub enum DirGuard {
    Init(Arc<RwLock<()>>),
    Other(Arc<RwLock<()>>),
}

impl DirLocks {
    /// Takes the lock of `data` for `init` (alone) or another command (shared), or says why not.
    /// The guard is held by the caller until the command has ended.
    pub fn with<T>(&self, data: &Path, init: bool, run: impl FnOnce() -> T) -> Result<T, String> {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(data.to_path_buf())
            .or_default()
            .clone();
        let busy = |what: &str| {
            format!(
                "{what} in this directory; terraform commands of one directory run one `init` \
                 at a time, alone; try again when it is done"
            )
        };
        if init {
            let _g = lock
                .try_write()
                .map_err(|_| busy("another terraform command runs"))?;
            Ok(run())
        } else {
            let _g = lock.try_read().map_err(|_| busy("terraform init runs"))?;
            Ok(run())
        }
    }
}

/// Refuses a configuration in `dir` whose lock file names a denied provider, or whose data
/// directory `data` holds one.
pub fn check(dir: &Path, data: &Path, denied: &[String]) -> Result<(), String> {
    let installed = installed_denied(data, denied);
    if !installed.is_empty() {
        return Err(format!(
            "the runner's data directory for this configuration holds {}, which runs programs \
             of the configuration's choosing; it is refused in lockdown mode ([lockdown] \
             terraform_denied_providers); remove {} to start over",
            installed.join(", "),
            data.display()
        ));
    }
    let lock = match std::fs::read_to_string(dir.join(".terraform.lock.hcl")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(format!(
                "cannot read {}/.terraform.lock.hcl: {e}",
                dir.display()
            ))
        }
    };
    let found = denied_in(&lock, denied);
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the configuration uses {}, which runs programs of the configuration's choosing; it \
             is refused in lockdown mode ([lockdown] terraform_denied_providers)",
            found.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_providers_are_found_by_namespace_and_type() {
        let d = tempfile::tempdir().unwrap();
        let p = d
            .path()
            .join("providers/registry.terraform.io/hashicorp/external/2.3.0/linux_amd64");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::create_dir_all(
            d.path()
                .join("providers/registry.terraform.io/hashicorp/null"),
        )
        .unwrap();
        let denied: Vec<String> = DENIED.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            installed_denied(d.path(), &denied),
            vec!["hashicorp/external"]
        );
        assert!(installed_denied(&d.path().join("none"), &denied).is_empty());
    }

    #[test]
    fn init_runs_alone_in_a_directory() {
        let locks = DirLocks::default();
        let d = Path::new("/x");
        let inner = locks.with(d, false, || locks.with(d, true, || ()));
        assert!(inner
            .unwrap()
            .unwrap_err()
            .contains("another terraform command runs"));
        let inner = locks.with(d, true, || locks.with(d, false, || ()));
        assert!(inner.unwrap().unwrap_err().contains("terraform init runs"));
        assert!(locks
            .with(d, false, || locks.with(d, false, || ()))
            .unwrap()
            .is_ok());
        assert!(locks.with(Path::new("/y"), true, || ()).is_ok());
    }

    #[test]
    fn the_lock_file_names_the_providers_of_every_module() {
        let lock = "# This file is maintained automatically by \"terraform init\".\n\
            provider \"registry.terraform.io/hashicorp/null\" {\n  version = \"2.1.2\"\n}\n\
            provider \"registry.opentofu.org/hashicorp/external\" {\n  version = \"2.3.0\"\n}\n";
        let denied: Vec<String> = DENIED.iter().map(|d| d.to_string()).collect();
        assert_eq!(denied_in(lock, &denied), vec!["hashicorp/external"]);
        assert!(denied_in(
            "provider \"registry.terraform.io/hashicorp/null\" {}\n",
            &denied
        )
        .is_empty());
    }
}
