//! The audit log in the database: appending a row (hash-chained to the one before it, and every
//! N rows a signed checkpoint) inside the writer's transaction, and reading rows and checkpoints
//! back, page by page, for `hitl-gate audit verify` and `export`.
//!
//! The row format, the hash and the verification are the pure code of `crate::audit`; this file
//! only moves rows in and out of SQLite.

use std::sync::Arc;

use sqlx::AnyConnection;

use super::db::Result;
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

/// The audit log: the server's key (for checkpoints) and how often to sign one.
#[derive(Clone)]
pub struct AuditLog {
    keys: Arc<Keys>,
    checkpoint_every: i64,
}

impl AuditLog {
    pub fn new(keys: Arc<Keys>, checkpoint_every: u64) -> AuditLog {
        AuditLog {
            keys,
            checkpoint_every: i64::try_from(checkpoint_every.max(1)).unwrap_or(i64::MAX),
        }
    }

    /// Appends one row on the writer's transaction (and, every N rows, a signed checkpoint).
    /// Returns the row's seq.
    pub async fn append(&self, c: &mut AnyConnection, e: Entry<'_>) -> Result<i64> {
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *c)
                .await?;
        let row = audit::next_row(
            head.as_ref().map(|(s, h)| (s, h.as_str())),
            e.at,
            e.kind,
            e.request_id,
            e.actor,
            e.body,
        );
        sqlx::query(
            "INSERT INTO audit (seq, at, kind, request_id, actor, body, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(row.seq)
        .bind(row.at)
        .bind(&row.kind)
        .bind(&row.request_id)
        .bind(&row.actor)
        .bind(&row.body)
        .bind(&row.prev_hash)
        .bind(&row.hash)
        .execute(&mut *c)
        .await?;
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
        sqlx::query(
            "INSERT INTO checkpoints (seq, head_hash, at, signature) VALUES ($1, $2, $3, $4)",
        )
        .bind(seq)
        .bind(hash)
        .bind(at)
        .bind(sig)
        .execute(&mut *c)
        .await?;
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

/// Every signed checkpoint, in seq order.
pub async fn checkpoints(c: PageConn<'_>) -> Result<Vec<Checkpoint>> {
    type T = (i64, String, i64, String);
    let sql = "SELECT seq, head_hash, at, signature FROM checkpoints ORDER BY seq";
    let mut c = c;
    let rows: Vec<T> = on_conn!(&mut c, sqlx::query_as(sql), fetch_all);
    Ok(rows
        .into_iter()
        .map(|(seq, head_hash, at, signature)| Checkpoint {
            seq,
            head_hash,
            at,
            signature,
        })
        .collect())
}
