//! Editing the agent's argv for the gated path and the pinned passthrough, from the positions
//! the cobra reader recorded (`Invocation::flag_at`, `positional_at`, `terminator`): input flags
//! are dropped (their word, or their letters in a short cluster, and their value word) and
//! added back naming the snapshots; positionals are replaced; and flags the gate adds go where
//! the agent's flags end, before its `--` (so they stay flags, not a container's arguments) and
//! after its own flags (so they win: pflag keeps the last value).

use std::collections::{BTreeMap, BTreeSet};

use crate::argv::Invocation;

/// The flags of `inv` that `keep` selects, rendered back as one word each (`--name=value`,
/// `-n=value`: pflag reads both, and a value can never be taken for a flag or a positional).
pub fn render_flags(inv: &Invocation, keep: impl Fn(&str) -> bool) -> Vec<String> {
    inv.flags
        .iter()
        .filter(|(name, _)| keep(name))
        .map(|(name, value)| match value {
            Some(v) => format!("{name}={v}"),
            None => name.clone(),
        })
        .collect()
}

/// The agent's argv, edited: flag occurrences dropped (their word, or their letters in a short
/// cluster, and their value word), positionals replaced, and flags inserted where the agent's
/// flags end (before its `--`, so they stay flags, and after its own flags, so they win).
pub struct ArgvEdit<'a> {
    args: &'a [String],
    inv: &'a Invocation,
    drop: BTreeSet<usize>,
    cut: BTreeMap<usize, usize>,
    replace: BTreeMap<usize, String>,
    insert: Vec<String>,
}

impl<'a> ArgvEdit<'a> {
    pub fn new(args: &'a [String], inv: &'a Invocation) -> Self {
        ArgvEdit {
            args,
            inv,
            drop: BTreeSet::new(),
            cut: BTreeMap::new(),
            replace: BTreeMap::new(),
            insert: Vec::new(),
        }
    }

    /// Drops the `i`-th flag of the invocation (and its value).
    pub fn drop_flag(&mut self, i: usize) {
        let Some(at) = self.inv.flag_at.get(i) else {
            return;
        };
        if at.offset <= 1 {
            self.drop.insert(at.word);
        } else {
            // `-Rf x`: keep `-R`.
            self.cut.insert(at.word, at.offset);
        }
        if let Some(v) = at.value_word {
            self.drop.insert(v);
        }
    }

    /// Replaces the `i`-th positional.
    pub fn replace_positional(&mut self, i: usize, with: String) {
        if let Some(&w) = self.inv.positional_at.get(i) {
            self.replace.insert(w, with);
        }
    }

    /// Adds a flag (one word) where the flags end.
    pub fn insert(&mut self, flag: String) {
        self.insert.push(flag);
    }

    pub fn finish(self) -> Edited {
        let end = self.inv.terminator.unwrap_or(self.args.len());
        let mut args = Vec::with_capacity(self.args.len() + self.insert.len());
        let mut flags_end = None;
        for (i, a) in self.args.iter().enumerate() {
            if i == end {
                flags_end = Some(args.len());
                args.extend(self.insert.iter().cloned());
            }
            if self.drop.contains(&i) {
                continue;
            }
            if let Some(s) = self.replace.get(&i) {
                args.push(s.clone());
            } else if let Some(&n) = self.cut.get(&i) {
                args.push(a[..n].to_string());
            } else {
                args.push(a.clone());
            }
        }
        let flags_end = flags_end.unwrap_or_else(|| {
            args.extend(self.insert.iter().cloned());
            args.len()
        });
        Edited { args, flags_end }
    }
}

/// An edited argv and where more flags can be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub args: Vec<String>,
    /// The index at which flags added later are still read as flags, and win.
    pub flags_end: usize,
}

impl Edited {
    /// The argv with `extra` flags added where the flags end.
    pub fn with(&self, extra: &[&str]) -> Vec<String> {
        let mut a = self.args.clone();
        a.splice(
            self.flags_end..self.flags_end,
            extra.iter().map(|s| s.to_string()),
        );
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool::Tool;

    fn read(tool: Tool, args: &[&str]) -> (Vec<String>, Invocation) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let os: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        let inv = crate::argv::read(tool, &os, &|_| None).unwrap();
        (args, inv)
    }

    #[test]
    fn added_flags_land_before_the_agents_terminator_and_after_its_flags() {
        let (args, inv) = read(
            Tool::Kubectl,
            &["run", "x", "--image=b", "--", "sh", "-c", "x"],
        );
        let e = ArgvEdit::new(&args, &inv).finish();
        assert_eq!(
            e.with(&["--dry-run=server", "-o", "json"]),
            [
                "run",
                "x",
                "--image=b",
                "--dry-run=server",
                "-o",
                "json",
                "--",
                "sh",
                "-c",
                "x"
            ]
        );
        // A `--` that is a flag's value is not the terminator.
        let (args, inv) = read(Tool::Kubectl, &["-n", "--", "scale", "deploy", "web"]);
        assert_eq!(inv.terminator, None);
        let e = ArgvEdit::new(&args, &inv).finish();
        assert_eq!(e.with(&["--x"]).last().map(String::as_str), Some("--x"));
    }

    #[test]
    fn source_flags_are_dropped_in_every_spelling() {
        for (argv, kept) in [
            (&["apply", "-f", "a.yaml"][..], &["apply"][..]),
            (&["apply", "-fa.yaml"], &["apply"]),
            (&["apply", "-f=a.yaml"], &["apply"]),
            (&["apply", "--filename", "a.yaml"], &["apply"]),
            (
                &["apply", "--filename=a.yaml", "--server-side"],
                &["apply", "--server-side"],
            ),
            (&["apply", "-Rf", "dir"], &["apply", "-R"]),
            (&["apply", "-Rfdir"], &["apply", "-R"]),
        ] {
            let (args, inv) = read(Tool::Kubectl, argv);
            let mut e = ArgvEdit::new(&args, &inv);
            for (i, (name, _)) in inv.flags.iter().enumerate() {
                if name == "-f" || name == "--filename" {
                    e.drop_flag(i);
                }
            }
            e.insert("--filename=/proc/self/fd/9".into());
            let mut want: Vec<&str> = kept.to_vec();
            want.push("--filename=/proc/self/fd/9");
            assert_eq!(e.finish().args, want, "{argv:?}");
        }
        let (args, inv) = read(Tool::Helm, &["upgrade", "--", "rel", "./chart"]);
        let mut e = ArgvEdit::new(&args, &inv);
        e.replace_positional(1, "/proc/self/fd/7".into());
        e.insert("--kube-context=prod".into());
        assert_eq!(
            e.finish().args,
            [
                "upgrade",
                "--kube-context=prod",
                "--",
                "rel",
                "/proc/self/fd/7"
            ]
        );
    }
}
