//! Lockdown's checks of a terraform or tofu configuration before anything runs: providers that
//! run arbitrary code (default `hashicorp/external`) are refused. The providers of a configuration
//! and of all its modules are the ones `terraform init` wrote to `.terraform.lock.hcl`, so that
//! is what is read (in the working directory, with `-chdir` applied). Without a lock file,
//! terraform itself refuses to load providers.

use std::path::Path;

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

/// Refuses a configuration in `dir` whose lock file names a denied provider.
pub fn check(dir: &Path, denied: &[String]) -> Result<(), String> {
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
