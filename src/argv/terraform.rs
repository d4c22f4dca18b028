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

use std::path::{Path, PathBuf};

use super::invocation::{FlagAt, Invocation, ReadError};

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
        inv.flag_at.push(FlagAt {
            word: i,
            ..FlagAt::default()
        });
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
    inv.path_at = Some(i);
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
        let word = i;
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
        let mut at = FlagAt {
            word,
            ..FlagAt::default()
        };
        let value = match value {
            None if VALUE_FLAGS.binary_search(&bare).is_ok() => {
                let v = args.get(i).cloned().ok_or_else(|| {
                    ReadError(format!("flag {arg} needs a value and none was given"))
                })?;
                at.value_word = Some(i);
                i += 1;
                Some(v)
            }
            v => v,
        };
        inv.flags.push((format!("-{bare}"), value));
        inv.flag_at.push(at);
    }
    Ok(inv)
}

/// The name of the first non-empty `TF_CLI_ARGS` or `TF_CLI_ARGS_<command>` variable among
/// `vars`: terraform splices them into the command line, so the policy gates a command that
/// would pass with them set and the gated path refuses to run with them.
pub fn cli_args_var(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Option<String> {
    vars.into_iter().find_map(|(k, v)| {
        let k = k.to_str()?;
        (k.starts_with("TF_CLI_ARGS") && !v.to_string_lossy().trim().is_empty())
            .then(|| k.to_string())
    })
}

/// terraform's data directory for a working directory: `TF_DATA_DIR` (relative to the
/// directory), else `.terraform`.
pub fn data_dir(dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("TF_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| dir.join(".terraform"), |d| dir.join(d))
}

/// The workspace terraform selects in `dir`: `TF_WORKSPACE`, else the data directory's
/// `environment` file, else `default`. The policy and the gated path both use this, so a rule
/// chosen for a workspace and the approved target name the same one.
pub fn workspace(dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> String {
    env("TF_WORKSPACE")
        .filter(|w| !w.is_empty())
        .or_else(|| {
            std::fs::read_to_string(data_dir(dir, env).join("environment"))
                .ok()
                .map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty())
        })
        .unwrap_or_else(|| "default".into())
}

/// Backend settings that say where the state lives; credentials are never among them.
const BACKEND_KEYS: &[&str] = &[
    "address",
    "bucket",
    "container_name",
    "endpoint",
    "hostname",
    "key",
    "namespace",
    "organization",
    "path",
    "prefix",
    "project",
    "region",
    "resource_group_name",
    "schema_name",
    "secret_suffix",
    "storage_account_name",
    "workspace_dir",
    "workspace_key_prefix",
];

/// The backend terraform uses in `dir`, as `TYPE key=value …` (the settings that say where the
/// state lives, sorted; never credentials), read from the data directory where `terraform init`
/// recorded it; `local` when none is recorded.
pub fn backend(dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> String {
    let Some(v) = std::fs::read(data_dir(dir, env).join("terraform.tfstate"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return "local".into();
    };
    let b = &v["backend"];
    let mut out = b["type"].as_str().unwrap_or("local").to_string();
    let mut pairs = Vec::new();
    if let Some(cfg) = b["config"].as_object() {
        for k in BACKEND_KEYS {
            let text = match cfg.get(*k) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => continue,
            };
            pairs.push(format!("{k}={text}"));
        }
        if let Some(ws) = cfg
            .get("workspaces")
            .and_then(|w| w.as_object().or_else(|| w.get(0)?.as_object()))
        {
            for k in ["name", "prefix"] {
                if let Some(v) = ws.get(k).and_then(serde_json::Value::as_str) {
                    pairs.push(format!("workspaces.{k}={v}"));
                }
            }
        }
    }
    for p in pairs {
        out.push(' ');
        out.push_str(&p);
    }
    out
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
    fn workspace_and_backend_follow_tf_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join(".terraform")).unwrap();
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::write(d.join(".terraform/environment"), "dev\n").unwrap();
        std::fs::write(d.join("data/environment"), "prod\n").unwrap();
        std::fs::write(
            d.join("data/terraform.tfstate"),
            r#"{"backend":{"type":"s3","config":{"bucket":"tf-prod","key":"app","access_key":"AKIASECRET","region":null}}}"#,
        )
        .unwrap();
        let none = |_: &str| None;
        let tf_data = |k: &str| (k == "TF_DATA_DIR").then(|| "data".to_string());
        let ws = |k: &str| (k == "TF_WORKSPACE").then(|| "stage".to_string());
        assert_eq!(super::workspace(d, &none), "dev");
        assert_eq!(super::workspace(d, &tf_data), "prod");
        assert_eq!(super::workspace(d, &ws), "stage");
        assert_eq!(super::backend(d, &none), "local");
        let b = super::backend(d, &tf_data);
        assert_eq!(b, "s3 bucket=tf-prod key=app");
        assert!(!b.contains("AKIA"));
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(super::COMMANDS.windows(2).all(|w| w[0] < w[1]));
        assert!(super::VALUE_FLAGS.windows(2).all(|w| w[0] < w[1]));
    }
}
