//! Where the policy comes from, and the checks made before it is trusted.
//!
//! 1. `<root>/etc/hitl-gate/policy.toml` when it exists. It wins; `HITL_GATE_POLICY` is then
//!    ignored, so an agent cannot swap in its own policy.
//! 2. Otherwise `$HITL_GATE_POLICY` (development and tests).
//! 3. Otherwise the built-in rules. The `hitl-gate` commands of the server and its approvers
//!    (`serve`, `list`, `approve`, `audit`, `keys`; [`load_for_cli`]) look in one more place
//!    first: the user's `$XDG_CONFIG_HOME/hitl-gate/policy.toml`, which `hitl-gate init` writes.
//!    The shim never does.
//!
//! `<root>` is `/`. Builds with the `test-hooks` feature (which `scripts/test` enables and
//! release builds do not) read it from `HITL_GATE_TEST_ROOT`, so tests can exercise the `/etc`
//! precedence without root. A production binary has no such variable.
//!
//! A policy file (and, for the system policy, its directory) that group or others can write is
//! refused. The system policy and its directory must be owned by root: a system policy the
//! agent's user owns would be the agent's to rewrite. A `$HITL_GATE_POLICY` file must be owned
//! by root or the current user.

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
    /// The user's configuration (`hitl-gate init`), for the CLI's commands only (`serve`, the
    /// approvers' commands, `explain`, `doctor`); never for the shims.
    User(PathBuf),
    Builtin,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::System(p) => write!(f, "{} (system policy)", p.display()),
            Source::Env(p) => write!(f, "{} (from ${POLICY_ENV})", p.display()),
            Source::User(p) => write!(
                f,
                "{} (your configuration, from `hitl-gate init`; the shims read it only where \
                 ${POLICY_ENV} names it)",
                p.display()
            ),
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

/// Which parts of the policy file the caller reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sections {
    /// Everything (`serve`, `explain`, `doctor`).
    All,
    /// All but the `[serve]` tables, which are the server's: the shim never reads them, and
    /// skipping them keeps the passthrough cheap. `hitl-gate serve` checks them.
    Shim,
}

/// Locates, checks and parses the whole policy in force.
pub fn load() -> Result<(Policy, Source), PolicyError> {
    load_sections(Sections::All)
}

/// Locates, checks and parses the policy in force, reading only `sections`.
pub fn load_sections(sections: Sections) -> Result<(Policy, Source), PolicyError> {
    let source = locate();
    let policy = match &source {
        Source::System(p) => load_file(p, true, sections)?,
        Source::Env(p) | Source::User(p) => load_file(p, false, sections)?,
        Source::Builtin => Policy::builtin(),
    };
    Ok((policy, source))
}

/// The user's own policy file, `$XDG_CONFIG_HOME/hitl-gate/policy.toml` (what `hitl-gate init`
/// writes), if a configuration directory is known.
pub fn user_policy() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("hitl-gate").join("policy.toml"))
}

/// [`load`] for the server's and approvers' commands: when neither the system policy nor
/// `$HITL_GATE_POLICY` is there, the user's own policy ([`user_policy`]) if it exists.
pub fn load_for_cli() -> Result<(Policy, Source), PolicyError> {
    if locate() == Source::Builtin {
        if let Some(p) = user_policy().filter(|p| p.exists()) {
            return Ok((load_file(&p, false, Sections::All)?, Source::User(p)));
        }
    }
    load()
}

/// Reads and validates one policy file.
pub fn load_file(path: &Path, check_dir: bool, sections: Sections) -> Result<Policy, PolicyError> {
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
    // `check_dir` is set for the system policy, which must be root's, directory included.
    check_owner_and_mode(&meta, check_dir).map_err(&err)?;
    if check_dir {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let dmeta = std::fs::metadata(dir)
            .map_err(|e| err(format!("cannot stat its directory {}: {e}", dir.display())))?;
        check_owner_and_mode(&dmeta, true)
            .map_err(|m| err(format!("its directory {}: {m}", dir.display())))?;
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    parse_sections(&text, sections).map_err(err)
}

/// Parses and validates policy text. Errors carry line and column.
pub fn parse(text: &str) -> Result<Policy, String> {
    parse_sections(text, Sections::All)
}

/// Parses and validates the `sections` of policy text.
pub fn parse_sections(text: &str, sections: Sections) -> Result<Policy, String> {
    let fast = prepass(text, sections == Sections::Shim);
    let file: PolicyFile =
        toml::from_str(&fast.text).map_err(|e| one_line(&e, &fast.text, &fast.lines))?;
    Policy::from_file(file)
}

/// The text the TOML parser sees, and for each of its lines the line of the file it came from
/// (empty when the text is the file's, unchanged).
struct Prepassed<'a> {
    text: std::borrow::Cow<'a, str>,
    lines: Vec<u32>,
}

/// One pass over the lines that makes the TOML parse cheaper without changing its meaning:
/// blank lines and whole-line comments are left out (the parser validates comments character
/// by character and walks every line, a large share of the shim's cost for a well-commented
/// policy), and with `skip_serve` so are the `[serve]` and `[serve.*]` / `[[serve.*]]` tables.
/// The lines kept are whole and in order, so an error's column is unchanged and its line is
/// mapped back through `lines`.
///
/// A multi-line string (`"""`, `'\'\'`) is the one place where a line starting with `#` or `[`
/// (or a blank line) is not what it looks like, so text with one on a line that is read is
/// returned unchanged. A line misread inside a skipped table can only cut the skip short, which
/// leaves lines for the parser: a syntax error, never a silently different policy.
fn prepass(text: &str, skip_serve: bool) -> Prepassed<'_> {
    let mut out = String::with_capacity(text.len());
    let mut lines = Vec::new();
    let mut in_serve = false;
    // Lines found with SIMD memchr: a commented policy is mostly text the parser never sees, and
    // finding its line ends was the largest single cost of a passthrough.
    // One iterator over every newline (memchr_iter keeps its SIMD state across lines; a call
    // per line paid its set-up each time), and the first byte of each line tested as a byte.
    let bytes = text.as_bytes();
    let ends = memchr::memchr_iter(b'\n', bytes)
        .map(|i| i + 1)
        .chain((!bytes.ends_with(b"\n") && !bytes.is_empty()).then_some(bytes.len()));
    let mut pos = 0;
    for (n, end) in ends.enumerate() {
        let line = &text[pos..end];
        pos = end;
        let lead = line
            .bytes()
            .position(|b| !matches!(b, b' ' | b'\t'))
            .unwrap_or(line.len());
        let first = line.as_bytes().get(lead).copied();
        let skip = if matches!(first, None | Some(b'#' | b'\n' | b'\r')) {
            true
        } else if let Some(header) = line[lead..].strip_prefix('[') {
            let name = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("");
            let name = name.trim();
            in_serve = skip_serve && (name == "serve" || name.starts_with("serve."));
            in_serve
        } else {
            in_serve
        };
        if skip {
            continue;
        }
        if opens_multiline_string(line) {
            return Prepassed {
                text: std::borrow::Cow::Borrowed(text),
                lines: Vec::new(),
            };
        }
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push('\n');
        }
        lines.push(u32::try_from(n + 1).unwrap_or(u32::MAX));
    }
    Prepassed {
        text: std::borrow::Cow::Owned(out),
        lines,
    }
}

/// True when `line` has `"""` or `'''` (a byte scan: `str::contains` would set up a substring
/// searcher for every line, a measurable share of the shim's start-up).
fn opens_multiline_string(line: &str) -> bool {
    line.as_bytes()
        .windows(3)
        .any(|w| (w[0] == b'"' || w[0] == b'\'') && w[0] == w[1] && w[1] == w[2])
}

/// The parser's error in one line, with the line and column in the file (`lines` maps the
/// parsed text's lines back to the file's; empty means they are the same).
fn one_line(e: &toml::de::Error, text: &str, lines: &[u32]) -> String {
    let msg = e.message().trim_end_matches('.').to_string();
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            let line = match lines.get(line - 1) {
                Some(&l) => l as usize,
                // Past the last kept line (the end of the text): the line after it.
                None => lines.last().map_or(line, |&l| l as usize + 1),
            };
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

fn check_owner_and_mode(meta: &std::fs::Metadata, root_only: bool) -> Result<(), String> {
    let mode = meta.mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "is writable by group or others (mode {:o}); refusing it (chmod go-w)",
            mode & 0o7777
        ));
    }
    if root_only && meta.uid() != 0 {
        return Err(format!(
            "is owned by uid {}, not root; the system policy must be root's, or its owner \
             could rewrite the rules (chown root)",
            meta.uid()
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
        let text = "# a\nversion = 1 # trailing\n  # indented\n\n[defaults]";
        let p = prepass(text, false);
        assert_eq!(p.text, "version = 1 # trailing\n[defaults]\n");
        assert_eq!(p.lines, [2, 5]);
        let ml = "x = \"\"\"\n# not a comment\n\"\"\"\n";
        assert_eq!(prepass(ml, false).text, ml);
        // A """ inside a comment opens nothing.
        assert_eq!(
            prepass("# say \"\"\"\nversion = 1\n", false).text,
            "version = 1\n"
        );
        // Errors name the file's lines, also at the end of the text.
        let e = parse("version = 1\n\n# c\n[defaults\n").unwrap_err();
        assert!(e.starts_with("line 4, column"), "{e}");
        let e = parse("version = 1\n# c\n\nx = [\n").unwrap_err();
        assert!(e.starts_with("line 4") || e.starts_with("line 5"), "{e}");
        let e = parse("# one\n# two\nversion = 1\nbogus = 2\n").unwrap_err();
        assert!(e.starts_with("line 4, column 1"), "{e}");
    }

    #[test]
    fn the_shim_skips_the_serve_tables_and_nothing_else() {
        let text = "version = 1\n[serve]\nlisten = 42\n[[serve.agent]]\nname = \"a\"\n\
                    [ approval ]\nurl = \"x\"\n[[rule]]\nname = \"r\"\n";
        let p = prepass(text, true);
        assert_eq!(
            p.text,
            "version = 1\n[ approval ]\nurl = \"x\"\n[[rule]]\nname = \"r\"\n"
        );
        assert_eq!(p.lines, [1, 6, 7, 8, 9]);
        // The server reads [serve] and finds its errors; the shim does not read it at all.
        let bad_serve = "version = 1\n[serve]\nlisten = 42\n";
        assert!(parse(bad_serve).unwrap_err().contains("line 3"));
        assert!(parse_sections(bad_serve, Sections::Shim).is_ok());
        // Everything else is still checked for the shim.
        let bad_rule = "version = 1\n[serve]\nlisten = \"x\"\n[[rule]]\nname = 1\n";
        assert!(parse_sections(bad_rule, Sections::Shim)
            .unwrap_err()
            .contains("line 5"));
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

    #[test]
    fn tls_files_go_together_and_are_absolute() {
        let serve = |lines: &str| parse(&format!("version = 1\n[serve]\n{lines}"));
        let both = serve("tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n").unwrap();
        assert_eq!(both.serve().tls_key.as_deref(), Some(Path::new("/k.pem")));
        let e = serve("tls_cert = \"/c.pem\"\n").unwrap_err();
        assert!(e.contains("tls_cert and tls_key go together"), "{e}");
        let e = serve("tls_cert = \"c.pem\"\ntls_key = \"/k.pem\"\n").unwrap_err();
        assert!(e.contains("absolute"), "{e}");
    }
}
