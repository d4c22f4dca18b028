//! The audit log in the database: appending a row (hash-chained to the one before it, added to
//! the Merkle tree (`audit_tree.rs`), and every N rows a signed checkpoint: the chain's head,
//! and the tree's root as a C2SP checkpoint under the log's origin) inside the writer's
//! transaction, and reading rows, checkpoints, cosignatures and tree hashes back for `hitl-gate
//! audit verify` and `export` and the proof endpoints.
//!
//! The row format, the hashes, the note formats and the verification are the pure code of
//! `crate::audit`; this file only moves them in and out of the database.

use std::sync::Arc;

use sqlx::AnyConnection;
use tokio::sync::Notify;

use super::audit_tree::{self, TreeCache};
use super::db::{Result, StoreError};
use crate::audit::note::SignedCheckpoint;
use crate::audit::tree::{Hash, Query};
use crate::audit::{self, Checkpoint, Row};
use crate::signing::{self, Keys};

/// The channel every audited change is announced on, on PostgreSQL (`replicas.rs` listens).
pub const CHANNEL: &str = "hitl_gate";
/// One event to record.
pub struct Entry<'a> {
    pub at: i64,
    pub kind: &'a str,
    pub request_id: Option<&'a str>,
    /// `agent:<name>`, `local:<user>`, `system:reaper`, `policy:<rule>`.
    pub actor: &'a str,
    pub body: &'a serde_json::Value,
}

/// The audit log: the server's key (for checkpoints), how often to sign one, the log's origin
/// (the first line of its C2SP checkpoints, and their key name), and the tree's cache.
#[derive(Clone)]
pub struct AuditLog {
    keys: Arc<Keys>,
    checkpoint_every: i64,
    pub(super) origin: Arc<str>,
    pub(super) tree: Arc<TreeCache>,
    /// Woken when a checkpoint is signed: the cosigner (`cosign.rs`) takes it to the witnesses.
    pub(super) signed: Arc<Notify>,
}

/// The origin of a log whose policy names none: `hitl-gate/` and the first 16 hex characters
/// of the server's public key.
pub fn default_origin(public_hex: &str) -> String {
    format!("hitl-gate/{}", public_hex.get(..16).unwrap_or(public_hex))
}

impl AuditLog {
    pub fn new(keys: Arc<Keys>, checkpoint_every: u64) -> AuditLog {
        AuditLog {
            origin: default_origin(&keys.public_hex()).into(),
            keys,
            checkpoint_every: i64::try_from(checkpoint_every.max(1)).unwrap_or(i64::MAX),
            tree: Arc::default(),
            signed: Arc::default(),
        }
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Appends one row on the writer's transaction (and, every N rows, a signed checkpoint).
    /// Returns the row's seq.
    pub async fn append(&self, c: &mut AnyConnection, e: Entry<'_>) -> Result<i64> {
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *c)
                .await?;
        let (row, entry) = audit::next_entry(
            head.as_ref().map(|(s, h)| (s, h.as_str())),
            e.at,
            e.kind,
            e.request_id,
            e.actor,
            e.body,
        );
        // The tree row is computed first, so that on SQLite both rows go in as one statement
        // (one trip to the connection's worker: the writer's transaction is the server's serial
        // path, and a second trip per row cost more than the hashing). PostgreSQL prepares one
        // statement at a time.
        let tree = if audit_tree::enabled() {
            let prev = head.as_ref().map(|(s, h)| (*s, h.as_str()));
            Some(self.tree.next(c, prev, &entry).await?)
        } else {
            None
        };
        let one_trip = tree.is_some() && c.backend_name() != "PostgreSQL";
        let sql = if one_trip {
            "INSERT INTO audit (seq, at, kind, request_id, actor, body, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8); \
             INSERT INTO audit_tree (seq, hashes) VALUES ($1, $9)"
        } else {
            "INSERT INTO audit (seq, at, kind, request_id, actor, body, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        };
        let mut q = sqlx::query(sql)
            .bind(row.seq)
            .bind(row.at)
            .bind(&row.kind)
            .bind(&row.request_id)
            .bind(&row.actor)
            .bind(&row.body)
            .bind(&row.prev_hash)
            .bind(&row.hash);
        if let (true, Some((_, packed))) = (one_trip, &tree) {
            q = q.bind(packed.clone());
        }
        q.execute(&mut *c).await?;
        if let Some((f, packed)) = tree {
            if !one_trip {
                sqlx::query("INSERT INTO audit_tree (seq, hashes) VALUES ($1, $2)")
                    .bind(row.seq)
                    .bind(packed)
                    .execute(&mut *c)
                    .await?;
            }
            self.tree.appended(row.seq, &row.hash, f);
        }
        if row.seq % self.checkpoint_every == 0 {
            self.insert_checkpoint(c, row.seq, &row.hash, e.at).await?;
        }
        // PostgreSQL: the other replicas hear of the change when, and only if, it commits
        // (`replicas.rs`).
        if let (Some(id), "PostgreSQL") = (e.request_id, c.backend_name()) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(format!("{} {id}", e.kind))
                .execute(&mut *c)
                .await?;
        }
        Ok(row.seq)
    }

    /// Signs a checkpoint over the current head, on the writer's transaction, if rows were added
    /// since the last one.
    pub async fn checkpoint(&self, c: &mut AnyConnection, now: i64) -> Result<()> {
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *c)
                .await?;
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM checkpoints")
            .fetch_one(&mut *c)
            .await?;
        if let Some((seq, hash)) = head {
            if last != Some(seq) {
                self.insert_checkpoint(c, seq, &hash, now).await?;
            }
        }
        Ok(())
    }

    async fn insert_checkpoint(
        &self,
        c: &mut AnyConnection,
        seq: i64,
        hash: &str,
        at: i64,
    ) -> Result<()> {
        let sig = self.keys.sign(&signing::checkpoint_bytes(seq, hash));
        let note = if audit_tree::enabled() {
            let root = self.tree.root(c, Some((seq, hash))).await?;
            let size = u64::try_from(seq).unwrap_or(0);
            Some(SignedCheckpoint::sign(&self.keys, &self.origin, size, root).map_err(StoreError)?)
        } else {
            None
        };
        sqlx::query(
            "INSERT INTO checkpoints (seq, head_hash, at, signature, note) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(seq)
        .bind(hash)
        .bind(at)
        .bind(sig)
        .bind(note)
        .execute(&mut *c)
        .await?;
        self.signed.notify_one();
        Ok(())
    }
}

/// Rows per page when reading the log back.
const PAGE: i64 = 5000;

/// A connection [`page`] reads from: the store's (`Any`), or a SQLite file opened directly (the
/// CLI's `audit verify`, which skips the copies of the `Any` layer: about 1.7× the rows per
/// second).
pub enum PageConn<'a> {
    Any(&'a mut AnyConnection),
    Sqlite(&'a mut sqlx::SqliteConnection),
}

impl PageConn<'_> {
    /// The same connection, borrowed again.
    pub fn again(&mut self) -> PageConn<'_> {
        match self {
            PageConn::Any(c) => PageConn::Any(c),
            PageConn::Sqlite(c) => PageConn::Sqlite(c),
        }
    }
}

/// Runs the query `q` builds with `method` on either connection of a [`PageConn`] (sqlx's
/// builders are typed per driver, so the expression is written once and built for each).
macro_rules! on_conn {
    ($c:expr, $q:expr, $method:ident) => {
        match $c {
            PageConn::Any(c) => $q.$method(&mut **c).await?,
            PageConn::Sqlite(c) => $q.$method(&mut **c).await?,
        }
    };
}

/// The next page of rows after seq `after`: those with `seq` in `(after, after + PAGE]`, or,
/// when that range is empty, from the next row that exists (a gap must not end a scan: the rows
/// behind it are what `verify` reports as missing). `since`/`until` bound `at` (unix ms). A page
/// comes back as one JSON array built by the database, because reading row by row through sqlx
/// costs more than verifying. This is transport only: the hashes cover the exact stored bytes,
/// so an encoding mistake could only make a good row look bad, never the reverse.
pub async fn page(
    mut c: PageConn<'_>,
    mut after: i64,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<Row>> {
    type Tuple = (
        i64,
        i64,
        String,
        Option<String>,
        String,
        String,
        String,
        String,
    );
    let pg = matches!(&c, PageConn::Any(a) if a.backend_name() == "PostgreSQL");
    // The rows of the page as one JSON array, built by the database.
    let sql = if pg {
        "SELECT json_agg(json_build_array(seq, at, kind, request_id, actor, body, prev_hash, \
         hash) ORDER BY seq)::text FROM audit WHERE seq > $1 AND seq <= $1 + $4 \
         AND ($2::bigint IS NULL OR at >= $2) AND ($3::bigint IS NULL OR at <= $3)"
    } else {
        "SELECT json_group_array(json_array(seq, at, kind, request_id, actor, body, \
         prev_hash, hash)) FROM audit WHERE seq > $1 AND seq <= $1 + $4 \
         AND ($2 IS NULL OR at >= $2) AND ($3 IS NULL OR at <= $3)"
    };
    let next_sql = "SELECT MIN(seq) FROM audit WHERE seq > $1 AND ($2 IS NULL OR at >= $2) \
                    AND ($3 IS NULL OR at <= $3)";
    loop {
        let text: Option<String> = on_conn!(
            &mut c,
            sqlx::query_scalar(sql)
                .bind(after)
                .bind(since)
                .bind(until)
                .bind(PAGE),
            fetch_one
        );
        let tuples: Vec<Tuple> = serde_json::from_str(text.as_deref().unwrap_or("[]"))
            .map_err(|e| super::db::StoreError(e.to_string()))?;
        if !tuples.is_empty() {
            return Ok(tuples
                .into_iter()
                .map(
                    |(seq, at, kind, request_id, actor, body, prev_hash, hash)| Row {
                        seq,
                        at,
                        kind,
                        request_id,
                        actor,
                        body,
                        prev_hash,
                        hash,
                    },
                )
                .collect());
        }
        let next: Option<i64> = on_conn!(
            &mut c,
            sqlx::query_scalar(next_sql)
                .bind(after)
                .bind(since)
                .bind(until),
            fetch_one
        );
        match next {
            Some(n) => after = n - 1,
            None => return Ok(Vec::new()),
        }
    }
}

/// The first and last seq of the rows with `at` in `since..=until` (0 when there are none).
pub async fn bounds(c: PageConn<'_>, since: Option<i64>, until: Option<i64>) -> Result<(i64, i64)> {
    let pg = matches!(&c, PageConn::Any(a) if a.backend_name() == "PostgreSQL");
    let sql = if pg {
        "SELECT MIN(seq), MAX(seq) FROM audit WHERE ($1::bigint IS NULL OR at >= $1) \
         AND ($2::bigint IS NULL OR at <= $2)"
    } else {
        "SELECT MIN(seq), MAX(seq) FROM audit WHERE ($1 IS NULL OR at >= $1) \
         AND ($2 IS NULL OR at <= $2)"
    };
    let mut c = c;
    let (a, b): (Option<i64>, Option<i64>) = on_conn!(
        &mut c,
        sqlx::query_as(sql).bind(since).bind(until),
        fetch_one
    );
    Ok((a.unwrap_or(0), b.unwrap_or(0)))
}

/// Every signed checkpoint, in seq order, each with its C2SP note as the server signed it.
pub async fn checkpoints(c: PageConn<'_>) -> Result<Vec<Checkpoint>> {
    type T = (i64, String, i64, String, Option<String>);
    let sql = "SELECT seq, head_hash, at, signature, note FROM checkpoints ORDER BY seq";
    let mut c = c;
    let rows: Vec<T> = on_conn!(&mut c, sqlx::query_as(sql), fetch_all);
    Ok(rows
        .into_iter()
        .map(|(seq, head_hash, at, signature, note)| Checkpoint {
            seq,
            head_hash,
            at,
            signature,
            note,
            ..Checkpoint::default()
        })
        .collect())
}

/// Every checkpoint as a witness cosigned it (the note with the server's signature and the
/// witness's), in seq order.
pub async fn cosigned(c: PageConn<'_>) -> Result<Vec<(i64, String)>> {
    let sql = "SELECT seq, note FROM cosignatures ORDER BY seq, witness";
    let mut c = c;
    Ok(on_conn!(&mut c, sqlx::query_as(sql), fetch_all))
}

/// Answers a tree query (a proof, a root) from the stored tree hashes.
pub async fn tree_query(c: PageConn<'_>, q: Query) -> Result<Vec<Hash>> {
    let idx = q.indexes();
    let seqs = audit_tree::seqs_of(&idx);
    let rows: Vec<(i64, Vec<u8>)> = if seqs.is_empty() {
        Vec::new()
    } else {
        let sql = audit_tree::hashes_sql(seqs.len());
        let mut c = c;
        match &mut c {
            PageConn::Any(c) => {
                let mut query = sqlx::query_as(&sql);
                for s in &seqs {
                    query = query.bind(*s);
                }
                query.fetch_all(&mut **c).await?
            }
            PageConn::Sqlite(c) => {
                let mut query = sqlx::query_as(&sql);
                for s in &seqs {
                    query = query.bind(*s);
                }
                query.fetch_all(&mut **c).await?
            }
        }
    };
    let hashes = audit_tree::pick(&idx, rows)?;
    q.answer(&idx, &hashes).map_err(StoreError)
}
