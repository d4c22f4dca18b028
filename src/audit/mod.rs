//! The audit log's pure core: the row model, its canonical encoding, the SHA-256 chain, signed
//! checkpoints and verification. Shared by the server (which appends) and
//! `hitl-gate audit verify` (which checks a database or an export offline).
//!
//! `hash = SHA-256(prev_hash || canonical JSON of the row)`, where `prev_hash` is the previous
//! row's hash as 64 lowercase hex characters (64 zeros before the first row) and the canonical
//! JSON is `{"actor","at","body","kind","request_id","seq"}` with keys sorted, no whitespace, and
//! `body` itself canonical. Those bytes, `prev_hash || canonical JSON`, are the row's *entry
//! bytes*: the chain hashes them, and so does the Merkle tree (RFC 6962 leaf hash, `tree.rs`).
//! Checkpoints sign `(seq, hash of row seq)` with the server's key, so a truncated tail is
//! detectable; with the server feature each one is also a C2SP checkpoint over the tree's root
//! (`note.rs`), which witnesses cosign, and `witnessed.rs` checks all of it. docs/api.md and
//! docs/audit.md document the layouts.

use serde::{Deserialize, Serialize};

use crate::{hex, signing};

#[cfg(feature = "server")]
pub mod note;
#[cfg(feature = "server")]
pub mod tree;
#[cfg(feature = "server")]
pub mod witnessed;

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit row, as stored and as exported (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// `request_created`, `approved`, `rejected`, `expired`, `cancelled`, `outcome`, …
    pub kind: String,
    pub request_id: Option<String>,
    /// Who caused the event: `agent:<name>`, `local:<user>`, `system:reaper`, `policy:<rule>`.
    pub actor: String,
    /// The event's canonical JSON text: the full command, the environment, and for
    /// `request_created` the diff exactly as shown.
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

/// A signed checkpoint over the head of the chain at `seq`, and (since schema v5) over the
/// Merkle tree of rows `1..=seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub seq: i64,
    pub head_hash: String,
    pub at: i64,
    pub signature: String,
    /// The C2SP checkpoint (`origin`, `seq`, the tree's root) as a signed note: the server's
    /// signature, then the witnesses' cosignatures the server holds for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// In an export, on the checkpoint that covers its last row: that row's inclusion proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inclusion: Option<Proof>,
    /// In an export that starts after row 1, on each checkpoint inside it: the consistency
    /// proof from this checkpoint's tree to the tree of the checkpoint that carries `inclusion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Proof>,
}

/// A Merkle proof in an export: for `inclusion`, of row `seq` in this checkpoint's tree; for
/// `consistency`, from this checkpoint's tree to the tree of size `seq`. Hashes in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    pub seq: i64,
    pub hashes: Vec<String>,
}

/// One line of an export: a row or a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportLine {
    Row(Row),
    Checkpoint(Checkpoint),
}

/// Canonical JSON text of a value: keys sorted (serde_json's map is ordered), no whitespace.
pub fn canonical(v: &serde_json::Value) -> String {
    v.to_string()
}

/// The hash of a row: `SHA-256(prev_hash || canonical JSON of the row)` (its entry bytes,
/// [`entry_bytes`]), as 64 lowercase hex characters.
pub fn row_hash(
    prev_hash: &str,
    seq: i64,
    at: i64,
    kind: &str,
    request_id: Option<&str>,
    actor: &str,
    body: &str,
) -> String {
    hex::sha256(&entry_bytes(
        prev_hash, seq, at, kind, request_id, actor, body,
    ))
}

/// A row's entry bytes: `prev_hash || canonical JSON of the row`. `body` is the row's stored
/// body text, which is canonical JSON; the row's canonical JSON is built around it with the
/// keys in sorted order, exactly as serde_json would print the whole row as a value, so nothing
/// is parsed again and every stored byte of the body is covered.
pub fn entry_bytes(
    prev_hash: &str,
    seq: i64,
    at: i64,
    kind: &str,
    request_id: Option<&str>,
    actor: &str,
    body: &str,
) -> Vec<u8> {
    let s = |v: &str| serde_json::to_string(v).expect("strings serialise");
    let mut input = String::with_capacity(prev_hash.len() + body.len() + 160);
    input.push_str(prev_hash);
    input.push_str("{\"actor\":");
    input.push_str(&s(actor));
    input.push_str(",\"at\":");
    input.push_str(&at.to_string());
    input.push_str(",\"body\":");
    input.push_str(body);
    input.push_str(",\"kind\":");
    input.push_str(&s(kind));
    input.push_str(",\"request_id\":");
    input.push_str(&request_id.map_or("null".into(), s));
    input.push_str(",\"seq\":");
    input.push_str(&seq.to_string());
    input.push('}');
    input.into_bytes()
}

impl Row {
    /// This row's entry bytes ([`entry_bytes`]), from its stored `prev_hash`.
    pub fn entry_bytes(&self) -> Vec<u8> {
        entry_bytes(
            &self.prev_hash,
            self.seq,
            self.at,
            &self.kind,
            self.request_id.as_deref(),
            &self.actor,
            &self.body,
        )
    }
}

/// Builds the next row of the chain.
pub fn next_row(
    prev: Option<(&i64, &str)>,
    at: i64,
    kind: &str,
    request_id: Option<&str>,
    actor: &str,
    body: &serde_json::Value,
) -> Row {
    next_entry(prev, at, kind, request_id, actor, body).0
}

/// Builds the next row of the chain, and its entry bytes.
pub fn next_entry(
    prev: Option<(&i64, &str)>,
    at: i64,
    kind: &str,
    request_id: Option<&str>,
    actor: &str,
    body: &serde_json::Value,
) -> (Row, Vec<u8>) {
    let (seq, prev_hash) = match prev {
        Some((s, h)) => (s + 1, h.to_string()),
        None => (1, GENESIS.to_string()),
    };
    let body = canonical(body);
    let entry = entry_bytes(&prev_hash, seq, at, kind, request_id, actor, &body);
    let row = Row {
        seq,
        at,
        kind: kind.into(),
        request_id: request_id.map(Into::into),
        actor: actor.into(),
        body,
        prev_hash,
        hash: hex::sha256(&entry),
    };
    (row, entry)
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    pub seq: i64,
    pub why: String,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit log broken at seq {}: {}", self.seq, self.why)
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub rows: u64,
    pub last_seq: i64,
    pub head_hash: String,
    pub checkpoints: u64,
}

/// Verifies rows (in seq order) and checkpoints. With `public_key`, every checkpoint signature is
/// checked; the rows' chain is checked either way.
pub fn verify<I>(
    rows: I,
    checkpoints: &[Checkpoint],
    public_key: Option<&str>,
) -> Result<Report, VerifyError>
where
    I: IntoIterator<Item = Result<Row, VerifyError>>,
{
    verify_from(rows, checkpoints, public_key, (1, GENESIS.to_string()))
}

/// Like [`verify`], for a window of the log (an export with `--since`): the chain starts at
/// `start = (seq, prev_hash)` instead of row 1. Rows before the window are not covered; the
/// signed checkpoints inside it still anchor it to the server's key.
pub fn verify_from<I>(
    rows: I,
    checkpoints: &[Checkpoint],
    public_key: Option<&str>,
    start: (i64, String),
) -> Result<Report, VerifyError>
where
    I: IntoIterator<Item = Result<Row, VerifyError>>,
{
    verify_with(rows, checkpoints, public_key, start, None, &mut |_, _| {
        Ok(())
    })
}

/// Checks one row after its chain link and hash: given the row and its entry bytes.
pub type Observe<'a> = dyn FnMut(&Row, &[u8]) -> Result<(), VerifyError> + 'a;

/// [`verify_from`], calling `observe` with each row and its entry bytes once the chain vouches
/// for it (the Merkle tree's check, `witnessed.rs`). `anchor` is the seq of a checkpoint past
/// the last row that `observe`'s owner answers for (an export's last row's inclusion proof),
/// which is then not read as a sign of truncation.
pub fn verify_with<I>(
    rows: I,
    checkpoints: &[Checkpoint],
    public_key: Option<&str>,
    start: (i64, String),
    anchor: Option<i64>,
    observe: &mut Observe<'_>,
) -> Result<Report, VerifyError>
where
    I: IntoIterator<Item = Result<Row, VerifyError>>,
{
    let mut cps: Vec<&Checkpoint> = checkpoints.iter().collect();
    cps.sort_by_key(|c| c.seq);
    let mut cp_iter = cps.iter().peekable();
    let (mut expected, mut prev) = start;
    let mut n = 0u64;
    let mut checked = 0u64;
    for row in rows {
        let row = row?;
        let bad = |why: String| VerifyError {
            seq: row.seq.min(expected),
            why,
        };
        if row.seq != expected {
            return Err(if row.seq > expected {
                VerifyError {
                    seq: expected,
                    why: format!("row {expected} is missing (the next row is {})", row.seq),
                }
            } else {
                bad(format!(
                    "row {} appears where row {expected} should be",
                    row.seq
                ))
            });
        }
        if row.prev_hash != prev {
            return Err(bad(format!(
                "prev_hash {} does not match the hash of row {} ({prev}): rows were removed, \
                 reordered or edited",
                row.prev_hash,
                row.seq - 1
            )));
        }
        // `prev_hash` equals `prev` here, so these are the bytes the chain vouches for.
        let entry = row.entry_bytes();
        if hex::sha256(&entry) != row.hash {
            return Err(bad(
                "hash does not match the row's contents: the row was edited".into(),
            ));
        }
        observe(&row, &entry)?;
        while let Some(cp) = cp_iter.next_if(|c| c.seq <= row.seq) {
            check_checkpoint(cp, public_key)?;
            if cp.seq == row.seq && cp.head_hash != row.hash {
                return Err(VerifyError {
                    seq: cp.seq,
                    why: "the signed checkpoint for this row names another hash".into(),
                });
            }
            checked += 1;
        }
        prev = row.hash;
        expected += 1;
        n += 1;
    }
    for cp in cp_iter {
        check_checkpoint(cp, public_key)?;
        if Some(cp.seq) == anchor {
            checked += 1;
            continue;
        }
        return Err(VerifyError {
            seq: expected,
            why: format!(
                "the log ends at seq {} but a signed checkpoint covers seq {}: the tail was truncated",
                expected - 1,
                cp.seq
            ),
        });
    }
    Ok(Report {
        rows: n,
        last_seq: expected - 1,
        head_hash: prev,
        checkpoints: checked,
    })
}

fn check_checkpoint(cp: &Checkpoint, public_key: Option<&str>) -> Result<(), VerifyError> {
    if let Some(key) = public_key {
        signing::verify(
            key,
            &signing::checkpoint_bytes(cp.seq, &cp.head_hash),
            &cp.signature,
        )
        .map_err(|e| VerifyError {
            seq: cp.seq,
            why: format!("checkpoint signature: {e}"),
        })?;
    }
    Ok(())
}

/// `1732406400000` (unix ms) or `2026-11-24` (UTC midnight).
pub fn parse_time(s: &str) -> Result<i64, String> {
    // Up to the end of 9999-12-31, as dates are read; nothing overflows downstream.
    const LAST: i64 = 253_402_300_799_999;
    if let Ok(ms) = s.parse::<i64>() {
        return if (0..=LAST).contains(&ms) {
            Ok(ms)
        } else {
            Err(format!("{s} is out of range (0 to {LAST} unix ms)"))
        };
    }
    let bad = || format!("{s:?} is not a time (unix ms or YYYY-MM-DD)");
    let mut parts = s.split('-').map(|p| p.parse::<i64>());
    let (y, m, d) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Ok(y)), Some(Ok(m)), Some(Ok(d)), None)
            if (1970..=9999).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d) =>
        {
            (y, m, d)
        }
        _ => return Err(bad()),
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok((era * 146_097 + doe - 719_468) * 86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Row> {
        let mut rows: Vec<Row> = Vec::new();
        for i in 0..n {
            let body = serde_json::json!({"i": i, "argv": ["delete", "pod"]});
            let prev = rows.last().map(|r| (&r.seq, r.hash.as_str()));
            let r = next_row(prev, 1000 + i, "approved", Some("r"), "local:alice", &body);
            rows.push(r);
        }
        rows
    }

    fn check(rows: Vec<Row>, cps: &[Checkpoint]) -> Result<Report, VerifyError> {
        verify(rows.into_iter().map(Ok), cps, None)
    }

    #[test]
    fn the_hash_input_is_the_rows_canonical_json() {
        let body = serde_json::json!({"b": [1, "x\"y"], "a": null});
        let row = next_row(None, 5, "approved", Some("r\n1"), "local:a\u{e9}", &body);
        let whole = serde_json::json!({
            "seq": 1, "request_id": "r\n1", "kind": "approved", "body": body, "at": 5, "actor": "local:a\u{e9}"
        });
        let want = hex::sha256(format!("{GENESIS}{}", canonical(&whole)).as_bytes());
        assert_eq!(row.hash, want);
    }

    #[test]
    fn an_intact_chain_verifies() {
        let r = check(chain(5), &[]).unwrap();
        assert_eq!((r.rows, r.last_seq), (5, 5));
    }

    #[test]
    fn each_tampering_names_the_first_bad_seq() {
        let mut rows = chain(5);
        rows[2].body = rows[2].body.replace("delete", "delcte");
        assert_eq!(check(rows, &[]).unwrap_err().seq, 3);

        let mut rows = chain(5);
        rows.remove(1);
        assert_eq!(check(rows, &[]).unwrap_err().seq, 2);

        let mut rows = chain(5);
        rows.swap(2, 3);
        let (a, b) = (rows[2].seq, rows[3].seq);
        rows[2].seq = b;
        rows[3].seq = a;
        assert_eq!(check(rows, &[]).unwrap_err().seq, 3);

        let rows = chain(5);
        let cp = Checkpoint {
            seq: 5,
            head_hash: rows[4].hash.clone(),
            at: 0,
            signature: String::new(),
            ..Checkpoint::default()
        };
        let e = check(rows[..3].to_vec(), &[cp]).unwrap_err();
        assert_eq!(e.seq, 4);
        assert!(e.why.contains("truncated"), "{e}");
    }
}
