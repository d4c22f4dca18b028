//! Verifying the audit log as a transparency log, beside the chain (`super::verify_with`): every
//! signed checkpoint's tree root, the witnesses' cosignatures, and that each witness named
//! vouches for every row.
//!
//! - A **full log** (from row 1: the database, or a whole export) rebuilds the tree as the rows
//!   stream by ([`super::tree::Frontier`]) and compares its root with every checkpoint of that
//!   size: the server's own, the cosigned ones the server kept, and those an auditor kept
//!   (`--checkpoint`). A root that differs is a rewrite (the message names the rows between the
//!   last checkpoint that still matches and this one); two checkpoints of one size with two
//!   roots, both signed with the server's key, are a fork or a rewrite; a checkpoint past the
//!   last row is a truncation.
//! - A **window** (an export made with `--since`) cannot rebuild the tree: its last row's
//!   inclusion proof ties it (and, through the chain, every row before it) to the checkpoint
//!   that carries the proof, and consistency proofs tie the checkpoints inside it to that one.
//! - **Witnesses** (`--witness-key`): each must have cosigned a checkpoint that covers the last
//!   row and was checked as above, so every row is included in a tree the witness saw as an
//!   append-only extension of everything it saw before.

use std::collections::{BTreeMap, BTreeSet};

use super::note::{SignedCheckpoint, VKey, ALG_ED25519};
use super::tree::{self, Frontier, Hash};
use super::{Checkpoint, Report, Row, VerifyError};

/// What to check besides the chain.
#[derive(Default)]
pub struct Options<'a> {
    /// The server's public key (hex): every checkpoint must carry its signature.
    pub public_key: Option<&'a str>,
    /// Witnesses that must each have cosigned a checkpoint covering every row.
    pub witnesses: &'a [VKey],
    /// Signed checkpoints kept elsewhere: the cosigned ones the server holds, an auditor's.
    pub extra: &'a [String],
}

/// What the tree's check covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeReport {
    pub origin: Option<String>,
    /// Checkpoints whose root was checked, and the largest one's size and root.
    pub checked: usize,
    pub size: u64,
    pub root: Option<String>,
    /// Checkpoints that could not be checked (before or inside a window, without a proof).
    pub unchecked: usize,
    /// Each witness named, with the largest checked size it cosigned.
    pub cosigned: Vec<(String, u64)>,
}

/// One tree head, and who signed it.
struct Head {
    root: Hash,
    signers: BTreeSet<String>,
    checked: bool,
}

fn fail(seq: u64, why: String) -> VerifyError {
    VerifyError {
        seq: i64::try_from(seq).unwrap_or(i64::MAX),
        why,
    }
}

fn signers(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        String::new()
    } else {
        let v: Vec<&str> = names.iter().map(String::as_str).collect();
        format!(", cosigned by {}", v.join(", "))
    }
}

/// Parses and checks the signatures of every signed checkpoint, by size. Two of one size with
/// two roots, or two origins, are refused here.
fn collect(
    checkpoints: &[Checkpoint],
    opts: &Options<'_>,
) -> Result<(BTreeMap<u64, Head>, Option<String>), VerifyError> {
    let notes = checkpoints
        .iter()
        .filter_map(|c| c.note.as_deref().map(|n| (Some(c.seq), n)))
        .chain(opts.extra.iter().map(|n| (None, n.as_str())));
    let mut heads: BTreeMap<u64, Head> = BTreeMap::new();
    let mut origin: Option<String> = None;
    for (seq, text) in notes {
        let at = seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        let cp = SignedCheckpoint::parse(text)
            .map_err(|e| fail(at, format!("a signed checkpoint does not parse: {e}")))?;
        if seq.is_some_and(|s| u64::try_from(s).ok() != Some(cp.size)) {
            return Err(fail(
                at,
                format!("the checkpoint of seq {at} names tree size {}", cp.size),
            ));
        }
        let size = cp.size;
        if let Some(o) = origin.as_ref().filter(|o| **o != cp.origin) {
            return Err(fail(
                size,
                format!("the log's origin changed from {o:?} to {:?}", cp.origin),
            ));
        }
        origin = Some(cp.origin.clone());
        let mut keys: Vec<VKey> = opts.witnesses.to_vec();
        if let Some(pk) = opts.public_key {
            let log = VKey::from_hex(&cp.origin, ALG_ED25519, pk).map_err(|e| fail(size, e))?;
            keys.push(log);
        }
        let names: BTreeSet<String> = cp
            .signed_by(&keys)
            .map_err(|e| {
                fail(
                    size,
                    format!(
                        "the checkpoint of size {size}: {e}: it was changed after it was signed"
                    ),
                )
            })?
            .into_iter()
            .collect();
        if opts.public_key.is_some() && !names.contains(&cp.origin) {
            return Err(fail(
                size,
                format!("the checkpoint of size {size} is not signed with the server's key"),
            ));
        }
        let cosigners: BTreeSet<String> = names.into_iter().filter(|n| *n != cp.origin).collect();
        if let Some(h) = heads.get_mut(&size) {
            if h.root != cp.root {
                return Err(fail(
                    size,
                    format!(
                    "two checkpoints of size {size} signed with the server's key name two roots \
                     ({} and {}): the log was forked, or rewritten at or before seq {size}",
                    tree::b64(&h.root),
                    tree::b64(&cp.root)
                ),
                ));
            }
            h.signers.extend(cosigners);
        } else {
            let head = Head {
                root: cp.root,
                signers: cosigners,
                checked: false,
            };
            heads.insert(size, head);
        }
    }
    Ok((heads, origin))
}

/// The rows' chain (`super::verify_with`) and the tree: see the module doc.
pub fn verify<I>(
    rows: I,
    checkpoints: &[Checkpoint],
    start: (i64, String),
    opts: &Options<'_>,
) -> Result<(Report, TreeReport), VerifyError>
where
    I: IntoIterator<Item = Result<Row, VerifyError>>,
{
    let (mut heads, origin) = collect(checkpoints, opts)?;
    let full = start.0 == 1;
    let anchor = checkpoints.iter().find(|c| c.inclusion.is_some());
    let mut frontier = Frontier::default();
    let mut last_leaf: Option<Hash> = None;
    let mut matched = 0u64;
    let mut observe = |_: &Row, entry: &[u8]| -> Result<(), VerifyError> {
        let leaf = tree::leaf_hash(entry);
        last_leaf = Some(leaf);
        if !full {
            return Ok(());
        }
        frontier.push(leaf);
        let size = frontier.size();
        if let Some(h) = heads.get_mut(&size) {
            let root = frontier.root();
            if root != h.root {
                return Err(fail(
                    size,
                    format!(
                    "the checkpoint of size {size}{} names root {}, but rows 1..{size} hash to \
                     {}: a row in seq {}..{size} was changed after it was signed",
                    signers(&h.signers),
                    tree::b64(&h.root),
                    tree::b64(&root),
                    matched + 1
                ),
                ));
            }
            h.checked = true;
            matched = size;
        }
        Ok(())
    };
    let report = super::verify_with(
        rows,
        checkpoints,
        opts.public_key,
        start,
        anchor.map(|a| a.seq),
        &mut observe,
    )?;
    let last = u64::try_from(report.last_seq).unwrap_or(0);
    if let Some(a) = anchor {
        check_anchor(a, &mut heads, last, last_leaf)?;
        if !full {
            check_window(checkpoints, &mut heads, a)?;
        }
    }
    if let Some((size, h)) = heads.iter().find(|(s, h)| **s > last && !h.checked) {
        return Err(fail(
            last + 1,
            format!(
            "the log ends at seq {last} but a checkpoint signed with the server's key{} covers \
             seq {size}: the tail was truncated (or the export was cut before it)",
            signers(&h.signers)
        ),
        ));
    }
    let tree = summary(&heads, origin, opts.witnesses, last)?;
    Ok((report, tree))
}

/// The inclusion proof of the last row in the checkpoint that carries it.
fn check_anchor(
    a: &Checkpoint,
    heads: &mut BTreeMap<u64, Head>,
    last: u64,
    leaf: Option<Hash>,
) -> Result<(), VerifyError> {
    let proof = a.inclusion.as_ref().expect("the anchor has a proof");
    let size = u64::try_from(a.seq).unwrap_or(0);
    let bad = |why: String| fail(last, why);
    let (Some(h), Some(leaf)) = (heads.get_mut(&size), leaf) else {
        return Err(bad(format!(
            "the inclusion proof names a checkpoint of size {size} that has no tree head"
        )));
    };
    if u64::try_from(proof.seq).ok() != Some(last) || last == 0 || size < last {
        return Err(bad(format!(
            "the inclusion proof is for seq {}, not for the last row, {last}",
            proof.seq
        )));
    }
    let hashes = proof
        .hashes
        .iter()
        .map(|s| tree::parse_b64(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    tree::check_inclusion(&hashes, size, h.root, last - 1, leaf)
        .map_err(|e| bad(format!("row {last} in the checkpoint of size {size}: {e}")))?;
    h.checked = true;
    Ok(())
}

/// In a window, each checkpoint with a consistency proof to the anchor.
fn check_window(
    checkpoints: &[Checkpoint],
    heads: &mut BTreeMap<u64, Head>,
    anchor: &Checkpoint,
) -> Result<(), VerifyError> {
    let new = u64::try_from(anchor.seq).unwrap_or(0);
    let new_root = heads.get(&new).map(|h| h.root).unwrap_or_default();
    for c in checkpoints {
        let (Some(p), Ok(old)) = (&c.consistency, u64::try_from(c.seq)) else {
            continue;
        };
        let bad = |why: String| fail(old, format!("the checkpoint of size {old}: {why}"));
        if u64::try_from(p.seq).ok() != Some(new) {
            return Err(bad(format!(
                "its consistency proof is to size {}, not {new}",
                p.seq
            )));
        }
        let hashes = p
            .hashes
            .iter()
            .map(|s| tree::parse_b64(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let Some(h) = heads.get_mut(&old) else {
            continue;
        };
        tree::check_consistency(&hashes, old, h.root, new, new_root).map_err(bad)?;
        h.checked = true;
    }
    Ok(())
}

/// What was checked, and each witness's coverage (an error if one does not cover every row).
fn summary(
    heads: &BTreeMap<u64, Head>,
    origin: Option<String>,
    witnesses: &[VKey],
    last: u64,
) -> Result<TreeReport, VerifyError> {
    let checked: Vec<(&u64, &Head)> = heads.iter().filter(|(_, h)| h.checked).collect();
    let mut cosigned = Vec::new();
    for w in witnesses {
        let covered = checked
            .iter()
            .filter(|(_, h)| h.signers.contains(&w.name))
            .map(|(s, _)| **s)
            .max()
            .unwrap_or(0);
        if covered < last {
            return Err(fail(
                covered + 1,
                format!(
                "rows {}..{last} are not included in any checkpoint cosigned by witness {} (the \
                 newest it cosigned that checks covers seq {covered}); if the server is running, \
                 its next checkpoint may cover them",
                covered + 1,
                w.name
            ),
            ));
        }
        cosigned.push((w.name.clone(), covered));
    }
    let top = checked.last();
    Ok(TreeReport {
        origin,
        checked: checked.len(),
        size: top.map_or(0, |(s, _)| **s),
        root: top.map(|(_, h)| tree::b64(&h.root)),
        unchecked: heads.len() - checked.len(),
        cosigned,
    })
}
