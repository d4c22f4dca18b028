//! `install.sh` and the shell completions and man pages, with dash and with busybox sh, under
//! `--root` (never this machine's `/opt` or `/usr`): they are made by running the binary being
//! installed and land under the prefix (`share/bash-completion`, `share/zsh`, `share/fish`,
//! `share/man/man1`), bash reads the installed script, a second run changes nothing and
//! `--uninstall` removes them. `--dry-run` into an empty root prints each action once, and as
//! many as the install then makes. A binary that cannot run here still installs, without them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::install::{install, owner_mode, sha256_of, static_binary, tree, SHELLS};
use crate::support::{code, run, stderr, stdout};

/// The `N` of `install.sh: <prefix> N <suffix>` in `text`.
fn count(text: &str, prefix: &str, suffix: &str) -> usize {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix) && l.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{text}"));
    line[prefix.len()..line.len() - suffix.len()]
        .trim()
        .parse()
        .unwrap()
}

const SHARE: [(&str, &str); 4] = [
    (
        "bash",
        "opt/hitl-gate/share/bash-completion/completions/hitl-gate",
    ),
    ("zsh", "opt/hitl-gate/share/zsh/site-functions/_hitl-gate"),
    (
        "fish",
        "opt/hitl-gate/share/fish/vendor_completions.d/hitl-gate.fish",
    ),
    ("man", "opt/hitl-gate/share/man/man1/hitl-gate.1"),
];

/// What the installed binary prints for `SHARE`'s entry `what`.
fn generated(root: &Path, what: &str) -> String {
    let bin = root.join("opt/hitl-gate/bin/hitl-gate");
    let args: &[&str] = if what == "man" {
        &["man"]
    } else {
        &["completions", what]
    };
    let out = run(Command::new(bin).args(args));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn completions_and_man_pages_are_installed_under_the_prefix_once() {
    let bin = static_binary();
    let sha = sha256_of(&bin);
    for shell in SHELLS {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let (b, r) = (bin.display().to_string(), root.display().to_string());
        let args = ["agent", "--binary", &b, "--sha256", &sha, "--root", &r];

        // --dry-run into an empty root: every line once, as many actions as the install makes.
        let mut dry = args.to_vec();
        dry.push("--dry-run");
        let out = install(shell, base.path(), &dry);
        assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        let unique: BTreeSet<&str> = lines.iter().copied().collect();
        assert_eq!(
            unique.len(),
            lines.len(),
            "{shell:?}: a line twice:\n{text}"
        );
        let would: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("install.sh: would "))
            .collect();
        let n = count(
            &text,
            "install.sh: dry run:",
            "changes would be made, none was",
        );
        assert_eq!(n, would.len(), "{shell:?}:\n{text}");
        for (_, path) in SHARE {
            let want = format!("install {r}/{path}");
            assert!(
                would.contains(&want.as_str()),
                "{shell:?}: no {want}:\n{text}"
            );
        }
        assert!(
            would.contains(&format!("create {r}/opt/hitl-gate/").as_str()),
            "{text}"
        );
        assert_eq!(tree(&root), "", "{shell:?}: --dry-run changed the root");

        // The install does what the dry run said, no more.
        let out = install(shell, base.path(), &args);
        assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
        let done = stdout(&out);
        assert_eq!(count(&done, "install.sh: done:", "changes"), n, "{done}");
        for w in &would {
            assert!(
                done.lines().any(|l| l == format!("install.sh: {w}")),
                "{shell:?}: {w} was not done:\n{done}"
            );
        }
        for (what, path) in SHARE {
            let p = root.join(path);
            assert_eq!(owner_mode(&p), (0, 0, 0o644), "{path}");
            assert_eq!(
                std::fs::read_to_string(&p).unwrap(),
                generated(&root, what),
                "{path} is not what the installed binary prints"
            );
        }
        let man1 = root.join("opt/hitl-gate/share/man/man1");
        assert_eq!(owner_mode(&man1), (0, 0, 0o755));
        for page in [
            "hitl-gate-list.1",
            "hitl-gate-show.1",
            "hitl-gate-completions.1",
        ] {
            assert_eq!(owner_mode(&man1.join(page)), (0, 0, 0o644), "{page}");
        }
        let out = run(Command::new("bash").arg("-n").arg(root.join(SHARE[0].1)));
        assert_eq!(code(&out), 0, "bash -n: {}", stderr(&out));

        // A second run changes nothing; --uninstall leaves the root as empty as it was.
        let installed = tree(&root);
        let out = install(shell, base.path(), &args);
        assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("nothing to change"),
            "{}",
            stdout(&out)
        );
        assert_eq!(
            tree(&root),
            installed,
            "{shell:?}: the second run changed the tree"
        );
        let out = install(shell, base.path(), &["agent", "--uninstall", "--root", &r]);
        assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
        assert_eq!(tree(&root), "", "{shell:?}: --uninstall left files");
    }
}

#[test]
fn a_binary_that_cannot_run_here_is_installed_without_completions() {
    for shell in SHELLS {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // Not executable here (as a binary for another architecture would not be).
        let bin = base.path().join("hitl-gate-other-arch");
        std::fs::write(&bin, b"\x7fELF another machine's program").unwrap();
        let sha = sha256_of(&bin);
        let (b, r) = (bin.display().to_string(), root.display().to_string());
        let args = ["agent", "--binary", &b, "--sha256", &sha, "--root", &r];
        let out = install(shell, base.path(), &args);
        assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("no shell completions or man pages"),
            "{shell:?}: {}",
            stdout(&out)
        );
        assert!(!stdout(&out).contains("/share/"), "{}", stdout(&out));
        assert!(root.join("opt/hitl-gate/bin/hitl-gate").exists());
        assert!(root.join("opt/hitl-gate/shims/kubectl").exists());
        assert!(!root.join("opt/hitl-gate/share").exists());
    }
}
