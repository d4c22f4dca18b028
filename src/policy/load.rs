//! Where the policy comes from, and the checks made before it is trusted.
//!
//! 1. `<root>/etc/hitl-gate/policy.toml` when it exists. It wins; `HITL_GATE_POLICY` is then
//!    ignored, so an agent cannot swap in its own policy.
//! 2. Otherwise `$HITL_GATE_POLICY` (development and tests).
//! 3. Otherwise the built-in rules.
//!
//! `<root>` is `/`. Builds with the `test-hooks` feature (which `scripts/test` enables and
//! release builds do not) read it from `HITL_GATE_TEST_ROOT`, so tests can exercise the `/etc`
//! precedence without root. A production binary has no such variable.
//!
//! A policy file (and, for the system policy, its directory) that group or others can write,
//! or that is owned by neither root nor the current user, is refused.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::schema::PolicyFile;
use super::Policy;

/// The system policy's path below the root.
pub const SYSTEM_POLICY: &str = "etc/hitl-gate/policy.toml";
/// The development override.
pub const POLICY_ENV: &str = "HITL_GATE_POLICY";

/// Where the policy in force came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    System(PathBuf),
    Env(PathBuf),
    Builtin,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::System(p) => write!(f, "{} (system policy)", p.display()),
            Source::Env(p) => write!(f, "{} (from ${POLICY_ENV})", p.display()),
            Source::Builtin => f.write_str("built-in rules (no policy file)"),
        }
    }
}

/// A policy that could not be loaded. The shim fails closed on it.
#[derive(Debug)]
pub struct PolicyError {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "policy {}: {}", self.path.display(), self.message)
    }
}

/// The filesystem root under which `etc/hitl-gate/policy.toml` is looked up.
pub fn root() -> PathBuf {
    #[cfg(feature = "test-hooks")]
    if let Some(r) = std::env::var_os("HITL_GATE_TEST_ROOT") {
        return PathBuf::from(r);
    }
    PathBuf::from("/")
}

/// Finds the policy in force, without reading it.
pub fn locate() -> Source {
    let system = root().join(SYSTEM_POLICY);
    // `metadata` follows a symlinked /etc file; the ownership checks run on the opened file
    // itself. Only "not found" falls through: any other error (EACCES, EIO) keeps the system
    // policy in force, so loading it fails closed instead of quietly using $HITL_GATE_POLICY.
    match std::fs::metadata(&system) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        _ => return Source::System(system),
    }
    match std::env::var_os(POLICY_ENV) {
        Some(p) if !p.is_empty() => Source::Env(PathBuf::from(p)),
        _ => Source::Builtin,
    }
}

/// Locates, checks and parses the policy in force.
pub fn load() -> Result<(Policy, Source), PolicyError> {
    let source = locate();
    let policy = match &source {
        Source::System(p) => load_file(p, true)?,
        Source::Env(p) => load_file(p, false)?,
        Source::Builtin => Policy::builtin(),
    };
    Ok((policy, source))
}

/// Reads and validates one policy file.
pub fn load_file(path: &Path, check_dir: bool) -> Result<Policy, PolicyError> {
    let err = |message: String| PolicyError {
        path: path.to_path_buf(),
        message,
    };
    let mut file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| err(format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(err("is not a regular file".into()));
    }
    check_owner_and_mode(&meta).map_err(&err)?;
    if check_dir {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let dmeta = std::fs::metadata(dir)
            .map_err(|e| err(format!("cannot stat its directory {}: {e}", dir.display())))?;
        check_owner_and_mode(&dmeta)
            .map_err(|m| err(format!("its directory {}: {m}", dir.display())))?;
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    parse(&text).map_err(err)
}

/// Parses and validates policy text. Errors carry line and column.
pub fn parse(text: &str) -> Result<Policy, String> {
    let fast = blank_comment_lines(text);
    let file: PolicyFile = toml::from_str(&fast).map_err(|e| one_line(&e, &fast))?;
    Policy::from_file(file)
}

/// Replaces whole-line comments with empty lines, keeping every line number and column. The
/// TOML parser validates comments character by character, which is a large share of the shim's
/// cost for a well-commented policy. Only done when the text has no multi-line string, the one
/// place where a line starting with `#` is not a comment.
fn blank_comment_lines(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains("\"\"\"") || text.contains("'''") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            // Keep the line ending ("\r\n", "\n" or none on the last line).
            out.push_str(&line[line.trim_end_matches(['\r', '\n']).len()..]);
        } else {
            out.push_str(line);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn one_line(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim_end_matches('.').to_string();
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("line {line}, column {col}: {msg}")
        }
        None => msg,
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn check_owner_and_mode(meta: &std::fs::Metadata) -> Result<(), String> {
    let mode = meta.mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "is writable by group or others (mode {:o}); refusing it (chmod go-w)",
            mode & 0o7777
        ));
    }
    let me = current_uid();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "is owned by uid {}, which is neither root nor the current user (uid {me}); refusing it",
            meta.uid()
        ));
    }
    Ok(())
}

/// The real uid of this process.
pub fn current_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_blanking_keeps_lines_and_leaves_strings_alone() {
        let text = "# a\nversion = 1 # trailing\n  # indented\n[defaults]\n";
        assert_eq!(
            blank_comment_lines(text),
            "\nversion = 1 # trailing\n\n[defaults]\n"
        );
        let ml = "x = \"\"\"\n# not a comment\n\"\"\"\n";
        assert_eq!(blank_comment_lines(ml), ml);
        let e = parse("# one\n# two\nversion = 1\nbogus = 2\n").unwrap_err();
        assert!(e.starts_with("line 4, column 1"), "{e}");
    }

    #[test]
    fn parse_errors_name_line_and_column() {
        let e = parse("version = 1\n[defaults]\nunknown_subcommand = \"maybe\"\n").unwrap_err();
        assert!(e.starts_with("line 3, column 22:"), "{e}");
        let e = parse("version = 1\nfrobnicate = true\n").unwrap_err();
        assert!(
            e.starts_with("line 2, column 1:") && e.contains("frobnicate"),
            "{e}"
        );
        let e = parse("version = 1\n[[rule]]\nname = \"x\"\naction = \"pass\"\nsubcommand = []\n")
            .unwrap_err();
        assert!(e.contains("line 5") && e.contains("subcommand"), "{e}");
    }
}
