//! The terraform / tofu argv reader.
//!
//! terraform does not use cobra. Its rules, which this reader follows:
//! - `-chdir=DIR` is taken from the leading flags, before the subcommand, and only in the `=`
//!   form (`-chdir DIR` is an error in terraform, and a read error here). The last one wins.
//! - The subcommand is the first argument that does not start with `-` (mitchellh/cli). `--`
//!   before it means there is none.
//! - Nested subcommands (`state rm`, `workspace delete`) are the longest run of *consecutive*
//!   words that names a known command: `state -lock=false rm` is `state` (terraform prints the
//!   state help).
//! - After the subcommand, Go's flag package: flags until the first non-flag or `--`; `-x` and
//!   `--x` are the same; a value flag without `=` takes the next argument.

use super::{Invocation, ReadError};

/// Every subcommand path terraform 1.0 to 1.15 (and tofu) know, sorted.
pub const COMMANDS: &[&str] = &[
    "apply",
    "console",
    "destroy",
    "env",
    "env delete",
    "env list",
    "env new",
    "env select",
    "fmt",
    "force-unlock",
    "get",
    "graph",
    "import",
    "init",
    "login",
    "logout",
    "metadata",
    "metadata functions",
    "modules",
    "output",
    "plan",
    "providers",
    "providers lock",
    "providers mirror",
    "providers schema",
    "query",
    "refresh",
    "show",
    "state",
    "state identities",
    "state list",
    "state mv",
    "state pull",
    "state push",
    "state replace-provider",
    "state rm",
    "state show",
    "taint",
    "test",
    "untaint",
    "validate",
    "version",
    "workspace",
    "workspace delete",
    "workspace list",
    "workspace new",
    "workspace select",
    "workspace show",
];

/// Flags of any terraform subcommand that take a value (Go `flag` string/int/duration flags).
/// Boolean flags (`-auto-approve`, `-input=false`, `-refresh=false`) are everything else.
const VALUE_FLAGS: &[&str] = &[
    "backend-config",
    "backup",
    "config",
    "filter",
    "from-module",
    "fs-mirror",
    "generate-config-out",
    "lock-timeout",
    "lockfile",
    "net-mirror",
    "out",
    "parallelism",
    "platform",
    "plugin-dir",
    "provider",
    "replace",
    "state",
    "state-out",
    "target",
    "test-directory",
    "var",
    "var-file",
];

pub(crate) fn read(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, ReadError> {
    let mut inv = Invocation {
        known_subcommand: true,
        ..Invocation::default()
    };
    inv.target.workspace = env("TF_WORKSPACE").filter(|v| !v.is_empty());

    // Leading flags: -chdir and the global -help/-version style flags.
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        let arg = &args[i];
        if arg == "--" {
            // mitchellh/cli stops looking for a subcommand at `--`.
            inv.positionals.extend(args[i + 1..].iter().cloned());
            return Ok(inv);
        }
        if arg == "-chdir" || arg == "-chdir=" {
            return Err(ReadError(
                "terraform -chdir must be written -chdir=DIR (terraform itself refuses other forms)"
                    .into(),
            ));
        }
        if let Some(dir) = arg.strip_prefix("-chdir=") {
            inv.target.chdir = Some(dir.to_string());
        }
        inv.flags.push(split_flag(arg));
        i += 1;
    }
    if i == args.len() {
        return Ok(inv);
    }

    // The subcommand: longest run of consecutive words naming a known command (a word with a
    // space ends the run, as in mitchellh/cli).
    let mut end = i;
    let mut known = 0;
    let mut key = String::new();
    while end < args.len() && !args[end].contains(' ') {
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(&args[end]);
        end += 1;
        if COMMANDS.binary_search(&key.as_str()).is_ok() {
            known = end;
        }
    }
    if known == 0 {
        inv.path.push(args[i].clone());
        inv.known_subcommand = false;
        i += 1;
    } else {
        inv.path.extend(args[i..known].iter().cloned());
        i = known;
    }

    // Go flag parsing of the subcommand's arguments.
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            inv.positionals.extend(args[i..].iter().cloned());
            break;
        }
        if arg.len() < 2 || !arg.starts_with('-') {
            inv.positionals.push(arg.clone());
            inv.positionals.extend(args[i..].iter().cloned());
            break;
        }
        let (name, value) = split_flag(arg);
        let bare = name.trim_start_matches('-');
        let value = match value {
            None if VALUE_FLAGS.binary_search(&bare).is_ok() => {
                let v = args.get(i).cloned().ok_or_else(|| {
                    ReadError(format!("flag {arg} needs a value and none was given"))
                })?;
                i += 1;
                Some(v)
            }
            v => v,
        };
        inv.flags.push((format!("-{bare}"), value));
    }
    Ok(inv)
}

/// `-name=value` → (`-name`, Some(value)); `-name` → (`-name`, None). `--name` is read as
/// `-name`, as Go's flag package does.
fn split_flag(arg: &str) -> (String, Option<String>) {
    let body = arg.trim_start_matches('-');
    match body.split_once('=') {
        Some((n, v)) => (format!("-{n}"), Some(v.to_string())),
        None => (format!("-{body}"), None),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(super::COMMANDS.windows(2).all(|w| w[0] < w[1]));
        assert!(super::VALUE_FLAGS.windows(2).all(|w| w[0] < w[1]));
    }
}
