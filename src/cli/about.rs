//! What `hitl-gate` says about itself: the `--version` line (with the commit and build date
//! that `build.rs` records), `hitl-gate completions SHELL` (clap_complete) and `hitl-gate man`
//! (clap_mangen: `hitl-gate.1` and one page per subcommand, `hitl-gate-list.1`, …). All three
//! are made from the same clap definition as `--help` (`mod.rs` hands it over), so they
//! cannot drift from it.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::CliError;

/// `0.1.0 (commit 1a2b3c4d5e6f, built 2026-05-04)`; the commit is `unknown` for a build
/// without git metadata.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HITL_GATE_COMMIT"),
    ", built ",
    env!("HITL_GATE_BUILD_DATE"),
    ")"
);

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Write every page into this directory (hitl-gate.1, hitl-gate-list.1 and so on) instead
    /// of printing hitl-gate.1 to stdout.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

fn fail(m: impl Into<String>) -> CliError {
    CliError::new(1, m)
}

/// The clap command, built (subcommands know their full names), without the `help`
/// subcommand (it has no page of its own).
fn built(cmd: clap::Command) -> clap::Command {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// `hitl-gate completions SHELL`, for the CLI `cmd`.
pub fn completions(a: CompletionsArgs, cmd: clap::Command) -> Result<i32, CliError> {
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut built(cmd), "hitl-gate", &mut out);
    if a.shell == clap_complete::Shell::Bash {
        out = bash_fix(&out).into_bytes();
    }
    write_stdout(&out)
}

/// clap_complete 4.6's bash script, for a name with a hyphen, spells each subcommand's state
/// `hitl__subcmd__gate__subcmd__list` in its case arms but `hitl__gate__subcmd__list` where it
/// walks the words, so nothing after a subcommand completed (clap-rs/clap#6421, open). The
/// arms are spelt as the walk spells them; once clap_complete spells them so, this changes
/// nothing.
fn bash_fix(script: &[u8]) -> String {
    String::from_utf8_lossy(script).replace("hitl__subcmd__gate__subcmd__", "hitl__gate__subcmd__")
}

/// `hitl-gate man [--dir DIR]`, for the CLI `cmd`.
pub fn man(a: ManArgs, cmd: clap::Command) -> Result<i32, CliError> {
    let cmd = built(cmd);
    match a.dir {
        None => write_stdout(&render(&cmd)?),
        Some(dir) => {
            let mut written = Vec::new();
            write_pages(&cmd, &dir, &mut written)?;
            for p in written {
                println!("{}", p.display());
            }
            Ok(0)
        }
    }
}

/// One command's page, in roff.
fn render(cmd: &clap::Command) -> Result<Vec<u8>, CliError> {
    let mut out = Vec::new();
    page(cmd)
        .render(&mut out)
        .map_err(|e| fail(format!("cannot render the man page: {e}")))?;
    Ok(out)
}

fn page(cmd: &clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd.clone())
        .date(env!("HITL_GATE_BUILD_DATE"))
        .source(format!("hitl-gate {}", env!("CARGO_PKG_VERSION")))
        .manual("hitl-gate manual")
}

/// `cmd`'s page and its subcommands' (not hidden ones), into `dir`; the paths are added to
/// `written`, parents first.
fn write_pages(
    cmd: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), CliError> {
    let path = dir.join(page(cmd).get_filename());
    std::fs::write(&path, render(cmd)?)
        .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

fn write_stdout(bytes: &[u8]) -> Result<i32, CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| fail(format!("cannot write to stdout: {e}")))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument and every command of `cmd` and below that `--help` shows, without a
    /// description.
    fn undescribed(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if a.get_help().is_none() && a.get_long_help().is_none() {
                out.push(format!("{path} <{}>", a.get_id()));
            }
        }
        for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let path = format!("{path} {}", s.get_name());
            if s.get_about().is_none() && s.get_long_about().is_none() {
                out.push(path.clone());
            }
            undescribed(s, &path, out);
        }
    }

    #[test]
    fn every_argument_and_subcommand_has_a_description() {
        let mut missing = Vec::new();
        let cmd = built(<crate::cli::Cli as clap::CommandFactory>::command());
        undescribed(&cmd, "hitl-gate", &mut missing);
        assert!(
            cmd.get_subcommands().count() > 10,
            "the walk saw too little"
        );
        assert!(missing.is_empty(), "no description in --help: {missing:?}");
    }

    #[test]
    fn the_version_names_the_commit_and_the_build_date() {
        let (_, rest) = VERSION.split_once(" (commit ").expect(VERSION);
        let (commit, date) = rest.split_once(", built ").expect(VERSION);
        assert!(
            commit == "unknown"
                || (commit.len() >= 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
            "{VERSION}"
        );
        let date = date.strip_suffix(')').expect(VERSION);
        assert!(
            jiff::civil::Date::strptime("%Y-%m-%d", date).is_ok(),
            "{VERSION}"
        );
    }
}
