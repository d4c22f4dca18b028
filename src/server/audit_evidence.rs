//! What an audit export writes after its rows, so that it verifies offline against the server's
//! key and the witnesses' keys: every checkpoint up to its last row, each C2SP note with the
//! cosignatures held for it; the checkpoint that covers the last row (the smallest one with the
//! most cosignatures, past the last row if need be), carrying that row's inclusion proof; and,
//! for an export that starts after row 1, a consistency proof from each checkpoint inside it to
//! that one (`crate::audit::witnessed` checks them).

use super::audit_log::{self, PageConn};
use super::db::Result;
use crate::audit::note::merge_cosigned;
use crate::audit::tree::{self, Query};
use crate::audit::{Checkpoint, Proof};

/// Cosignature lines in a note (its signature lines but the first, the server's).
fn cosignatures(c: &Checkpoint) -> usize {
    c.note.as_deref().map_or(0, |n| {
        n.lines()
            .filter(|l| l.starts_with('\u{2014}'))
            .count()
            .saturating_sub(1)
    })
}

/// Every checkpoint, each note with the cosignatures held for it. A cosigned note whose text is
/// not the checkpoint's own (it was re-signed after the witness cosigned it) comes as one more
/// checkpoint line of that seq, so the verifier sees both.
pub async fn checkpoints(mut c: PageConn<'_>) -> Result<Vec<Checkpoint>> {
    let cps = audit_log::checkpoints(c.again()).await?;
    let cosigned = audit_log::cosigned(c).await?;
    let mut out = Vec::with_capacity(cps.len());
    for mut cp in cps {
        let theirs: Vec<&str> = cosigned
            .iter()
            .filter(|(s, _)| *s == cp.seq)
            .map(|(_, n)| n.as_str())
            .collect();
        let mut others = Vec::new();
        if let Some(note) = &cp.note {
            let (merged, other) = merge_cosigned(note, &theirs);
            cp.note = Some(merged);
            others = other;
        }
        for o in others {
            out.push(Checkpoint {
                note: Some(o),
                ..cp.clone()
            });
        }
        out.push(cp);
    }
    Ok(out)
}

/// The checkpoints an export of rows `first..=last` ends with (see the module doc); and
/// whether its last row is covered by one.
pub async fn for_export(
    mut c: PageConn<'_>,
    first: i64,
    last: i64,
) -> Result<(Vec<Checkpoint>, bool)> {
    let all = checkpoints(c.again()).await?;
    let anchor_seq = all
        .iter()
        .filter(|cp| cp.seq >= last && cp.note.is_some())
        .max_by_key(|cp| (cosignatures(cp), -cp.seq))
        .map(|cp| cp.seq);
    let mut out: Vec<Checkpoint> = all
        .into_iter()
        .filter(|cp| cp.seq <= last || Some(cp.seq) == anchor_seq)
        .collect();
    let Some(anchor) = anchor_seq.filter(|_| last >= 1) else {
        return Ok((out, false));
    };
    let size = |n: i64| u64::try_from(n).unwrap_or(0);
    let q = Query::Inclusion {
        size: size(anchor),
        index: size(last - 1),
    };
    let hashes = audit_log::tree_query(c.again(), q).await?;
    let inclusion = Proof {
        seq: last,
        hashes: hashes.iter().map(tree::b64).collect(),
    };
    let mut set = false;
    for cp in out
        .iter_mut()
        .filter(|cp| cp.seq == anchor && cp.note.is_some())
    {
        if !set {
            cp.inclusion = Some(inclusion.clone());
            set = true;
        }
    }
    if first > 1 {
        for cp in out.iter_mut() {
            if cp.note.is_none() || cp.seq < first || cp.seq >= anchor {
                continue;
            }
            let q = Query::Consistency {
                old: size(cp.seq),
                new: size(anchor),
            };
            let hashes = audit_log::tree_query(c.again(), q).await?;
            cp.consistency = Some(Proof {
                seq: anchor,
                hashes: hashes.iter().map(tree::b64).collect(),
            });
        }
    }
    Ok((out, true))
}
