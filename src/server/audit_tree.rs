//! The audit log's Merkle tree in the database: table `audit_tree` holds, for each audit row,
//! the tree hashes that appending it stores (`crate::audit::tree`), written by
//! `audit_log::append` on the writer's transaction, beside the row (on SQLite in the same
//! statement as the row).
//!
//! Appending needs the tree's right edge (its frontier: at most one hash per level), which
//! [`TreeCache`] keeps between appends, tagged with the head it belongs to (the last row's seq
//! and chain hash). When the tag does not match the head the append reads (another replica
//! wrote since, a savepoint or transaction was rolled back, the server restarted), the frontier
//! is read again from the table, after appending to the tree any rows the log holds without it
//! (rows written before schema v6, or by a replica that predates it). So the append costs two
//! hashes and one more row to insert, and never reads, in the common case.
//!
//! The SQL that reads stored hashes by index is here too ([`hashes_sql`], [`pick`]); each
//! connection kind runs it (`audit_log::tree_query`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use sqlx::{AnyConnection, Row as _};

use super::db::{Result, StoreError};
use crate::audit::tree::{self, Frontier, Hash, Query};

/// Benchmarks only (`benches/server.rs`, which measures what the tree costs): no tree rows and
/// no C2SP notes are written while this is set. Nothing in the server, its configuration or
/// its environment sets it.
#[doc(hidden)]
pub static WITHOUT_TREE: AtomicBool = AtomicBool::new(false);

/// Whether appends write the tree.
pub fn enabled() -> bool {
    !WITHOUT_TREE.load(Ordering::Relaxed)
}

/// The tree's frontier after the row `(seq, chain hash)`, kept between appends.
#[derive(Default)]
pub struct TreeCache(Mutex<Option<(i64, String, Frontier)>>);

/// The last row: its seq and chain hash.
pub type Head<'a> = Option<(i64, &'a str)>;

impl TreeCache {
    /// The tree row for the row after `head` (its entry bytes `entry`): the frontier after it,
    /// and the hashes to store for it (packed). Nothing is written or cached: the caller inserts
    /// the packed hashes with the row, then hands the frontier to [`TreeCache::appended`].
    pub async fn next(
        &self,
        c: &mut AnyConnection,
        head: Head<'_>,
        entry: &[u8],
    ) -> Result<(Frontier, Vec<u8>)> {
        let mut f = self.frontier(c, head).await?;
        let stored = f.push(tree::leaf_hash(entry));
        Ok((f, tree::pack(&stored)))
    }

    /// Records that row `seq` (chain hash `hash`) and its tree row were written: `f` is the
    /// frontier [`TreeCache::next`] returned for it.
    pub fn appended(&self, seq: i64, hash: &str, f: Frontier) {
        *self.0.lock().expect("tree cache") = Some((seq, hash.to_string(), f));
    }

    /// The tree's root after `head`.
    pub async fn root(&self, c: &mut AnyConnection, head: Head<'_>) -> Result<Hash> {
        let f = self.frontier(c, head).await?;
        let root = f.root();
        if let Some((seq, hash)) = head {
            *self.0.lock().expect("tree cache") = Some((seq, hash.to_string(), f));
        }
        Ok(root)
    }

    /// The frontier after `head`: the cached one when it is that head's, else read again.
    async fn frontier(&self, c: &mut AnyConnection, head: Head<'_>) -> Result<Frontier> {
        let Some((seq, hash)) = head else {
            return Ok(Frontier::default());
        };
        let cached = self.0.lock().expect("tree cache").take();
        if let Some((s, h, f)) = cached {
            if s == seq && h == hash {
                return Ok(f);
            }
        }
        catch_up(c, seq).await?;
        read_frontier(c, seq).await
    }
}

/// The frontier of the tree of the first `size` rows, read from the table.
async fn read_frontier(c: &mut AnyConnection, size: i64) -> Result<Frontier> {
    let size = u64::try_from(size).unwrap_or(0);
    let hashes = answer(c, Query::Frontier { size }).await?;
    Ok(Frontier::from_hashes(size, &hashes))
}

/// Answers a query from the table, on the writer's connection.
async fn answer(c: &mut AnyConnection, q: Query) -> Result<Vec<Hash>> {
    let idx = q.indexes();
    let seqs = seqs_of(&idx);
    let sql = hashes_sql(seqs.len());
    let mut query = sqlx::query_as::<_, (i64, Vec<u8>)>(&sql);
    for s in &seqs {
        query = query.bind(*s);
    }
    let rows = if seqs.is_empty() {
        Vec::new()
    } else {
        query.fetch_all(&mut *c).await?
    };
    let hashes = pick(&idx, rows)?;
    q.answer(&idx, &hashes).map_err(StoreError)
}

/// The rows (seqs) whose stored hashes hold `indexes`, each once.
pub fn seqs_of(indexes: &[u64]) -> Vec<i64> {
    let mut seqs: Vec<i64> = indexes.iter().map(|i| tree::locate(*i).0).collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}

/// `SELECT seq, hashes FROM audit_tree WHERE seq IN ($1, …, $n)`.
pub fn hashes_sql(n: usize) -> String {
    let marks: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!(
        "SELECT seq, hashes FROM audit_tree WHERE seq IN ({})",
        marks.join(", ")
    )
}

/// The hashes at `indexes`, from the rows [`hashes_sql`] read.
pub fn pick(indexes: &[u64], rows: Vec<(i64, Vec<u8>)>) -> Result<Vec<Hash>> {
    let by_seq: HashMap<i64, Vec<u8>> = rows.into_iter().collect();
    indexes
        .iter()
        .map(|i| {
            let (seq, at) = tree::locate(*i);
            by_seq
                .get(&seq)
                .and_then(|b| tree::unpack(b, at))
                .ok_or_else(|| {
                    StoreError(format!(
                        "the audit tree has no hash {at} for row {seq}: the tree table is \
                         incomplete or was changed"
                    ))
                })
        })
        .collect()
}

/// Rows read per page while catching the tree up.
const PAGE: i64 = 2000;

/// Appends to the tree every row up to `upto` it does not hold yet, in seq order. A missing
/// row stops it: the log was tampered with (`hitl-gate audit verify` says where).
pub async fn catch_up(c: &mut AnyConnection, upto: i64) -> Result<()> {
    let have: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_tree")
        .fetch_one(&mut *c)
        .await?;
    let mut have = have.unwrap_or(0);
    if have >= upto {
        return Ok(());
    }
    let mut f = read_frontier(c, have).await?;
    while have < upto {
        let rows = sqlx::query(
            "SELECT seq, at, kind, request_id, actor, body, prev_hash FROM audit \
             WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        )
        .bind(have)
        .bind(upto)
        .bind(PAGE)
        .fetch_all(&mut *c)
        .await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            let seq: i64 = r.try_get(0)?;
            if seq != have + 1 {
                return Err(StoreError(format!(
                    "audit row {} is missing: the log was changed; run hitl-gate audit verify",
                    have + 1
                )));
            }
            let request_id: Option<String> = r.try_get(3)?;
            let entry = crate::audit::entry_bytes(
                &r.try_get::<String, _>(6)?,
                seq,
                r.try_get(1)?,
                &r.try_get::<String, _>(2)?,
                request_id.as_deref(),
                &r.try_get::<String, _>(4)?,
                &r.try_get::<String, _>(5)?,
            );
            let stored = f.push(tree::leaf_hash(&entry));
            sqlx::query("INSERT INTO audit_tree (seq, hashes) VALUES ($1, $2)")
                .bind(seq)
                .bind(tree::pack(&stored))
                .execute(&mut *c)
                .await?;
            have = seq;
        }
    }
    Ok(())
}
