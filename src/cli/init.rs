//! `hitl-gate init`: from nothing to a working local gate, in one command. It writes, into a
//! configuration dir (`--dir`, default `$XDG_CONFIG_HOME/hitl-gate`):
//!
//! - `agent.token` (0600): a new agent token;
//! - `policy.toml` (0600): `[approval]` pointing at the local server with that token and the
//!   server's public key pinned, `[serve]` with the listen address and the data dir, one
//!   `[[serve.agent]]`, and the rest of the settings commented;
//! - `shims/`: `terraform`, `tofu`, `kubectl` and `helm` as symlinks to this binary;
//!
//! and creates the server's data dir and signing key (an existing key is kept: the policy pins
//! it). It writes nothing if any of its files exists: it says which, and prints what it would
//! have written.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::CliError;
use super::locate;
use crate::server;
use crate::signing::Keys;

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the policy, the token and the shims [default: $XDG_CONFIG_HOME/hitl-gate].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The server's data dir (database, signing key, admin socket) [default: DIR/data with
    /// --dir, else $XDG_DATA_HOME/hitl-gate].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The address the server will listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The agent's name, as approvers and the audit log see it.
    #[arg(long, default_value = "local-agent")]
    agent: String,
}

fn fail(m: impl Into<String>) -> CliError {
    CliError::new(1, m)
}

pub fn run(args: Args) -> Result<i32, CliError> {
    let default_dir = args.dir.is_none();
    let dir = match &args.dir {
        Some(d) => absolute(d)?,
        None => locate::default_config_dir()?,
    };
    let data = match (&args.data_dir, default_dir) {
        (Some(d), _) => absolute(d)?,
        (None, false) => dir.join("data"),
        (None, true) => locate::default_data_dir()?,
    };
    let host_port = args.listen.clone();
    let url = format!("http://{host_port}");
    if !host_port.starts_with("127.")
        && !host_port.starts_with("localhost:")
        && !host_port.starts_with("[::1]:")
    {
        return Err(fail(format!(
            "--listen {host_port}: init sets up a local gate over plain HTTP, so only a loopback \
             address (127.0.0.1:PORT, localhost:PORT, [::1]:PORT); for a server others reach, \
             see docs/install.md"
        )));
    }
    let policy_path = dir.join("policy.toml");
    let token_path = dir.join("agent.token");
    let shims = dir.join("shims");
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| fail(format!("cannot find this binary: {e}")))?;

    let token = {
        let mut b = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .map_err(|_| fail("the system's random source failed"))?;
        format!("hgt_{}", crate::hex::encode(&b))
    };
    let existing_key = data.join(crate::signing::KEY_FILE).exists();
    let exists: Vec<&Path> = [policy_path.as_path(), token_path.as_path(), shims.as_path()]
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    if !exists.is_empty() {
        let key = if existing_key {
            Keys::load_or_create(&data)
                .map(|k| k.public_hex())
                .unwrap_or_else(|_| "<the server's public key>".into())
        } else {
            "<the server's public key, made on the first run>".into()
        };
        let text = policy_text(
            &url,
            &host_port,
            &token_path,
            &key,
            &data,
            &args.agent,
            "<sha256 of a new token>",
        );
        return Err(fail(format!(
            "nothing was written: {} already exist{}. Remove {} or choose another --dir. This \
             is the policy it would have written to {}:\n\n{text}",
            exists
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if exists.len() == 1 { "s" } else { "" },
            if exists.len() == 1 { "it" } else { "them" },
            policy_path.display()
        )));
    }

    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fail(format!("cannot chmod {}: {e}", dir.display())))?;
    server::prepare_data_dir(&data).map_err(fail)?;
    let keys = Keys::load_or_create(&data).map_err(fail)?;
    write_new(&token_path, &format!("{token}\n"))?;
    let text = policy_text(
        &url,
        &host_port,
        &token_path,
        &keys.public_hex(),
        &data,
        &args.agent,
        &crate::hex::sha256(token.as_bytes()),
    );
    write_new(&policy_path, &text)?;
    std::fs::create_dir(&shims)
        .map_err(|e| fail(format!("cannot create {}: {e}", shims.display())))?;
    for tool in ["terraform", "tofu", "kubectl", "helm"] {
        std::os::unix::fs::symlink(&exe, shims.join(tool))
            .map_err(|e| fail(format!("cannot link {}: {e}", shims.join(tool).display())))?;
    }

    let serve = if default_dir {
        "hitl-gate serve".to_string()
    } else {
        format!("HITL_GATE_POLICY={} hitl-gate serve", policy_path.display())
    };
    println!("hitl-gate init: a local gate in {}", dir.display());
    println!("  policy:      {} (0600)", policy_path.display());
    println!("  agent token: {} (0600)", token_path.display());
    println!(
        "  shims:       {}/{{terraform,tofu,kubectl,helm}}",
        shims.display()
    );
    println!(
        "  server data: {} (public key {}{})",
        data.display(),
        keys.public_hex(),
        if existing_key { ", kept" } else { "" }
    );
    println!();
    println!("Start the server:");
    println!("  {serve}");
    println!("In the agent's shell:");
    println!(
        "  export HITL_GATE_POLICY={} PATH={}:$PATH",
        policy_path.display(),
        shims.display()
    );
    println!("Decide (in another shell):");
    println!("  hitl-gate list");
    println!("  hitl-gate approve ID   (or: hitl-gate reject ID -m REASON)");
    Ok(0)
}

/// `p` made absolute against the current directory (the policy names files by absolute path).
fn absolute(p: &Path) -> Result<PathBuf, CliError> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .map_err(|e| fail(format!("cannot find the current directory: {e}")))
    }
}

/// Writes a new file with mode 0600; an existing one is an error (never overwritten).
fn write_new(path: &Path, text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))
}

/// The policy of a local gate.
fn policy_text(
    url: &str,
    listen: &str,
    token_file: &Path,
    public_key: &str,
    data: &Path,
    agent: &str,
    token_sha256: &str,
) -> String {
    let q = |s: &str| toml_string(s);
    format!(
        r#"# hitl-gate policy, written by `hitl-gate init`. Every setting is explained in
# docs/policy.md; policy.example.toml shows them all. Without rules of its own the built-in
# rules apply: read-only commands pass, everything that changes infrastructure waits for a
# human, nothing is denied.
version = 1

# Where the shims ask for approval. The public key is the server's (its data dir below); every
# decision is checked against it before anything runs.
[approval]
url = {url}
token_file = {token}
public_key = {key}

# Environments give requests a risk and a timeout. For example:
# [[environment]]
# name = "production"
# risk = "high"
# kube_contexts = ["prod*"]
# terraform_workspaces = ["prod"]

# Rules come before the built-in ones; the first match wins. For example:
# [[rule]]
# name = "never-drain-production"
# tools = ["kubectl"]
# subcommands = ["drain"]
# environments = ["production"]
# action = "deny"

# The approval server (`hitl-gate serve`).
[serve]
listen = {listen}
data_dir = {data}
# decision_valid_for = "5m"
# default_timeout = "1h"
# high_risk_timeout = "15m"

# The agent the shims speak for; only its token's SHA-256 is kept here.
[[serve.agent]]
name = {agent}
token_sha256 = {sha}
"#,
        url = q(url),
        token = q(&token_file.display().to_string()),
        key = q(public_key),
        listen = q(listen),
        data = q(&data.display().to_string()),
        agent = q(agent),
        sha = q(token_sha256),
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
