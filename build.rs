//! Build metadata for `hitl-gate --version`: the commit and the build date, as the
//! environment variables `HITL_GATE_COMMIT` and `HITL_GATE_BUILD_DATE` of the crate.
//!
//! The commit is `git rev-parse --short=12 HEAD` of the checkout, or `unknown` when there is no
//! git or no repository (a source tarball, a CI step without `.git`): the build never fails for
//! it. The date is `SOURCE_DATE_EPOCH` when that is set (reproducible builds), else today, in
//! UTC, as `YYYY-MM-DD`. The script runs again when HEAD moves (its branch's ref, or
//! `packed-refs`) or `SOURCE_DATE_EPOCH` changes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = git(&dir, &["rev-parse", "--short=12", "HEAD"]);
    if commit.is_some() {
        watch_head(&dir);
    }
    println!(
        "cargo:rustc-env=HITL_GATE_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rustc-env=HITL_GATE_BUILD_DATE={}", build_date());
}

/// The trimmed stdout of a successful `git -C DIR ARGS`, if it is one printable word.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let word = text.trim();
    let printable = !word.is_empty() && word.chars().all(|c| c.is_ascii_graphic());
    (out.status.success() && printable).then(|| word.to_string())
}

/// Asks cargo to run this script again when HEAD moves: the HEAD file of this worktree, the
/// branch's loose ref (or, while the branch is only in `packed-refs`, the directory its loose
/// ref will appear in) and `packed-refs`, those that exist (a path that does not exist would
/// make cargo run the script on every build).
fn watch_head(dir: &Path) {
    let path = |what: &str| git(dir, &["rev-parse", "--path-format=absolute", what]);
    let git_dir = path("--git-dir");
    let common = path("--git-common-dir");
    let mut files = Vec::new();
    if let Some(g) = &git_dir {
        files.push(Path::new(g).join("HEAD"));
    }
    if let (Some(c), Some(head)) = (&common, git(dir, &["symbolic-ref", "-q", "HEAD"])) {
        let loose = Path::new(c).join(head);
        match loose.parent().filter(|_| !loose.exists()) {
            Some(parent) => files.push(parent.to_path_buf()),
            None => files.push(loose),
        }
        files.push(Path::new(c).join("packed-refs"));
    }
    for f in files.iter().filter(|f| f.exists()) {
        println!("cargo:rerun-if-changed={}", f.display());
    }
}

/// `SOURCE_DATE_EPOCH` (seconds) as a UTC date, else today's.
fn build_date() -> String {
    let secs = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s
            .trim()
            .parse::<i64>()
            .unwrap_or_else(|_| panic!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
