//! The reader for cobra/pflag command lines (kubectl and helm), driven by the generated flag
//! tables in `kubectl_flags.rs` and `helm_flags.rs`.
//!
//! It follows cobra's own rules, so that the subcommand it finds is the one the real tool runs:
//! - the subcommand path is the run of words that name children of the command found so far,
//!   with flags allowed in between (`kubectl -n x rollout --context y restart`);
//! - a long flag without `=` that takes a value consumes the next argument, whatever it looks
//!   like (pflag does the same, even for `--context --namespace`);
//! - a short cluster is read character by character: boolean flags stack (`-it`), the first
//!   value flag takes the rest of the cluster (`-nprod`, `-n=prod`) or the next argument;
//! - `--` ends the flags.
//!
//! A flag the table does not know is read as boolean and recorded. While the path may still grow
//! (the current command has children), such a flag makes the reading *uncertain*: pflag could
//! treat it as taking a value and so see a different subcommand.

use super::invocation::{FlagAt, Invocation, ReadError};

/// How a flag is used on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Bool,
    Value,
}

/// One known command path, e.g. "rollout restart" ("" is the root).
pub struct CommandSpec {
    pub path: &'static str,
    /// Direct subcommand names of this path, sorted.
    pub children: &'static [&'static str],
    /// Long flags of this command without the leading "--", sorted by name. The root's flags
    /// (global ones, which every path inherits) are stored once, in the root's entry: a path
    /// lists only the flags it adds or redefines, and a lookup falls back to the root's.
    pub long: &'static [(&'static str, Arity)],
    /// Short flags (one character) of this command, sorted; the root's are stored the same way.
    pub short: &'static [(char, Arity)],
    /// Root short letters this path does not inherit, because it redefines their long flag
    /// without them (kubectl `config set-cluster --server` has no `-s`).
    pub hidden_root_short: &'static [char],
}

/// Finds a command path in a table sorted by path.
pub fn find<'t>(table: &'t [CommandSpec], path: &str) -> Option<&'t CommandSpec> {
    table
        .binary_search_by(|c| c.path.cmp(path))
        .ok()
        .map(|i| &table[i])
}

/// True when `flag` (with its dashes) is a flag of the root command of `table`: a global flag.
pub fn is_root_flag(table: &[CommandSpec], flag: &str) -> bool {
    let root = find(table, "").expect("generated table has a root entry");
    match flag.strip_prefix("--") {
        Some(long) => own_long(root, long).is_some(),
        None => {
            let mut chars = flag.chars().skip(1);
            match (chars.next(), chars.next()) {
                (Some(c), None) => own_short(root, c).is_some(),
                _ => false,
            }
        }
    }
}

/// True when the command at `path` takes the long flag `--flag` (its own or an inherited one).
pub fn takes_long(table: &[CommandSpec], path: &str, flag: &str) -> bool {
    long_flag(table, path, flag).is_some()
}

/// How the command at `path` reads the long flag `--name` (its own or an inherited one); `None`
/// for an unknown path or flag.
pub fn long_flag(table: &[CommandSpec], path: &str, name: &str) -> Option<Arity> {
    let root = find(table, "").expect("generated table has a root entry");
    long_arity(root, find(table, path)?, name)
}

/// How the command at `path` reads the short flag `-c`, like [`long_flag`].
pub fn short_flag(table: &[CommandSpec], path: &str, c: char) -> Option<Arity> {
    let root = find(table, "").expect("generated table has a root entry");
    short_arity(root, find(table, path)?, c)
}

/// How `--name` is used at `spec`: its own definition first, then the root's (which every
/// path inherits).
fn long_arity(root: &CommandSpec, spec: &CommandSpec, name: &str) -> Option<Arity> {
    own_long(spec, name).or_else(|| own_long(root, name))
}

/// How `-c` is used at `spec`, with the same fallback to the root.
fn short_arity(root: &CommandSpec, spec: &CommandSpec, c: char) -> Option<Arity> {
    own_short(spec, c).or_else(|| {
        if spec.hidden_root_short.contains(&c) {
            None
        } else {
            own_short(root, c)
        }
    })
}

fn own_long(spec: &CommandSpec, name: &str) -> Option<Arity> {
    spec.long
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| spec.long[i].1)
}

fn own_short(spec: &CommandSpec, c: char) -> Option<Arity> {
    spec.short
        .binary_search_by(|(n, _)| n.cmp(&c))
        .ok()
        .map(|i| spec.short[i].1)
}

/// Reads a cobra command line. `extra_children` names root commands cobra adds at run time
/// (`help`, `completion`) that the help text may not list.
pub fn read(
    table: &'static [CommandSpec],
    extra_root_children: &[&str],
    args: &[String],
) -> Result<Invocation, ReadError> {
    let root = find(table, "").expect("generated table has a root entry");
    let mut inv = Invocation {
        known_subcommand: true,
        ..Invocation::default()
    };
    let mut spec = root;
    // Whether the next plain word may still be a subcommand.
    let mut path_open = true;
    let mut i = 0;
    while i < args.len() {
        let word = i;
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            inv.terminator = Some(word);
            inv.positionals.extend(args[i..].iter().cloned());
            inv.positional_at.extend(i..args.len());
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let mut at = FlagAt {
                word,
                ..FlagAt::default()
            };
            let value = match long_arity(root, spec, name) {
                Some(Arity::Value) => match inline {
                    Some(v) => Some(v),
                    None => {
                        at.value_word = Some(i);
                        Some(take_value(args, &mut i, arg)?)
                    }
                },
                Some(Arity::Bool) => inline,
                None => {
                    note_unknown(&mut inv, spec, path_open, arg);
                    inline
                }
            };
            inv.flags.push((format!("--{name}"), value));
            inv.flag_at.push(at);
            continue;
        }
        if arg.len() > 1 && arg.starts_with('-') {
            read_short_cluster((root, spec), path_open, &mut inv, args, &mut i, word)?;
            continue;
        }
        // A plain word (or "-" alone).
        if path_open {
            let child = spec
                .children
                .binary_search(&arg.as_str())
                .is_ok()
                .then(|| {
                    let path = if spec.path.is_empty() {
                        arg.clone()
                    } else {
                        format!("{} {}", spec.path, arg)
                    };
                    find(table, &path)
                })
                .flatten();
            if let Some(child) = child {
                inv.path_at.get_or_insert(word);
                inv.path.push(arg.clone());
                spec = child;
                path_open = !child.children.is_empty();
                continue;
            }
            if inv.path.is_empty() {
                inv.path_at = Some(word);
                inv.path.push(arg.clone());
                inv.known_subcommand = extra_root_children.contains(&arg.as_str());
                path_open = false;
                continue;
            }
            path_open = false;
        }
        inv.positionals.push(arg.clone());
        inv.positional_at.push(word);
    }
    Ok(inv)
}

fn read_short_cluster(
    (root, spec): (&CommandSpec, &CommandSpec),
    path_open: bool,
    inv: &mut Invocation,
    args: &[String],
    i: &mut usize,
    word: usize,
) -> Result<(), ReadError> {
    let arg = &args[word];
    let body = &arg[1..];
    for (pos, c) in body.char_indices() {
        let rest = &body[pos + c.len_utf8()..];
        let mut at = FlagAt {
            word,
            offset: pos + 1,
            value_word: None,
        };
        match short_arity(root, spec, c) {
            Some(Arity::Value) => {
                let value = if let Some(v) = rest.strip_prefix('=') {
                    v.to_string()
                } else if !rest.is_empty() {
                    rest.to_string()
                } else {
                    at.value_word = Some(*i);
                    take_value(args, i, arg)?
                };
                inv.flags.push((format!("-{c}"), Some(value)));
                inv.flag_at.push(at);
                return Ok(());
            }
            known => {
                if known.is_none() {
                    note_unknown(inv, spec, path_open, arg);
                }
                if let Some(v) = rest.strip_prefix('=') {
                    inv.flags.push((format!("-{c}"), Some(v.to_string())));
                    inv.flag_at.push(at);
                    return Ok(());
                }
                inv.flags.push((format!("-{c}"), None));
                inv.flag_at.push(at);
            }
        }
    }
    Ok(())
}

fn take_value(args: &[String], i: &mut usize, flag: &str) -> Result<String, ReadError> {
    let v = args
        .get(*i)
        .cloned()
        .ok_or_else(|| ReadError(format!("flag {flag} needs a value and none was given")))?;
    *i += 1;
    Ok(v)
}

fn note_unknown(inv: &mut Invocation, spec: &CommandSpec, path_open: bool, arg: &str) {
    if path_open && !spec.children.is_empty() {
        inv.uncertain.push(format!(
            "unknown flag {arg} before the subcommand is complete: the real tool may read it \
             as taking a value and run a different subcommand"
        ));
    }
}
