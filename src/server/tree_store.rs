//! More `impl Store`: the audit log as a transparency log, as the proof endpoints
//! (`transparency.rs`) and the cosigner (`cosign.rs`) read and extend it: the tree's size,
//! inclusion and consistency proofs from the stored tree hashes, the newest signed checkpoint,
//! the checkpoint to serve with the cosignatures held for it, and storing a cosignature.

use super::audit_log::{self, PageConn};
use super::audit_tree;
use super::db::Result;
use super::store::Store;
use crate::audit::note;
use crate::audit::tree::{Hash, Query};

/// Rows as tree sizes.
fn size(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    /// Appends to the tree the rows the log holds without it (at start: a log from before
    /// schema v6, or rows a replica that predates it wrote).
    pub(super) async fn catch_up_tree(&self) -> Result<()> {
        if !audit_tree::enabled() {
            return Ok(());
        }
        self.writer
            .write(|c| {
                Box::pin(async move {
                    let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit")
                        .fetch_one(&mut *c)
                        .await?;
                    audit_tree::catch_up(c, head.unwrap_or(0)).await
                })
            })
            .await
    }

    /// Rows in the tree.
    pub async fn tree_size(&self) -> Result<i64> {
        let n: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_tree")
            .fetch_one(&self.read)
            .await?;
        Ok(n.unwrap_or(0))
    }

    async fn tree(&self, q: Query) -> Result<Vec<Hash>> {
        let mut conn = self.read.acquire().await?;
        audit_log::tree_query(PageConn::Any(&mut conn), q).await
    }

    /// The inclusion proof of row `seq` in the tree of the first `size` rows.
    pub async fn inclusion(&self, seq: i64, size_: i64) -> Result<Vec<Hash>> {
        let q = Query::Inclusion {
            size: size(size_),
            index: size(seq - 1),
        };
        self.tree(q).await
    }

    /// The consistency proof from the tree of `old` rows to the tree of `new` rows.
    pub async fn consistency(&self, old: i64, new: i64) -> Result<Vec<Hash>> {
        if old == new {
            return Ok(Vec::new());
        }
        let q = Query::Consistency {
            old: size(old),
            new: size(new),
        };
        self.tree(q).await
    }

    /// The newest checkpoint with a C2SP note: its seq and the note as the server signed it.
    pub async fn latest_note(&self) -> Result<Option<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT seq, note FROM checkpoints WHERE note IS NOT NULL ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.read)
        .await?)
    }

    /// The note of the checkpoint at `seq` with every cosignature held for it.
    pub async fn cosigned_note(&self, seq: i64) -> Result<Option<String>> {
        let own: Option<Option<String>> =
            sqlx::query_scalar("SELECT note FROM checkpoints WHERE seq = $1")
                .bind(seq)
                .fetch_optional(&self.read)
                .await?;
        let Some(own) = own.flatten() else {
            return Ok(None);
        };
        let theirs: Vec<String> =
            sqlx::query_scalar("SELECT note FROM cosignatures WHERE seq = $1")
                .bind(seq)
                .fetch_all(&self.read)
                .await?;
        let refs: Vec<&str> = theirs.iter().map(String::as_str).collect();
        Ok(Some(note::merge_cosigned(&own, &refs).0))
    }

    /// The checkpoint to serve: the newest one that every witness of `names` cosigned, or, if
    /// none was (or `names` is empty), the newest one; with the cosignatures held for it.
    pub async fn served_checkpoint(&self, names: &[String]) -> Result<Option<String>> {
        let mut seq = None;
        if !names.is_empty() {
            let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT seq FROM cosignatures WHERE witness IN ({}) GROUP BY seq \
                 HAVING COUNT(DISTINCT witness) = {} ORDER BY seq DESC LIMIT 1",
                marks.join(", "),
                names.len()
            );
            let mut q = sqlx::query_scalar::<_, i64>(&sql);
            for n in names {
                q = q.bind(n);
            }
            seq = q.fetch_optional(&self.read).await?;
        }
        let seq = match seq {
            Some(s) => Some(s),
            None => self.latest_note().await?.map(|(s, _)| s),
        };
        match seq {
            Some(s) => self.cosigned_note(s).await,
            None => Ok(None),
        }
    }

    /// The largest checkpoint size witness `name` cosigned, as stored (0 if none).
    pub async fn cosigned_size(&self, name: &str) -> Result<i64> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM cosignatures WHERE witness = $1")
                .bind(name)
                .fetch_one(&self.read)
                .await?;
        Ok(n.unwrap_or(0))
    }

    /// Keeps witness `name`'s cosigned `note` of the checkpoint at `seq` (once).
    pub async fn add_cosignature(&self, seq: i64, name: &str, note: String, at: i64) -> Result<()> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO cosignatures (seq, witness, note, at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(seq)
                    .bind(&name)
                    .bind(&note)
                    .bind(at)
                    .execute(&mut *c)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Records what a witness's answer revealed (a rollback of its state, a log it saw grow
    /// further than this one, a refusal): one `witness_alert` audit row.
    pub async fn witness_alert(&self, now: i64, witness: &str, why: &str) -> Result<i64> {
        let body = serde_json::json!({"witness": witness, "why": why});
        self.append_alone(now, "witness_alert", None, "system:cosigner".into(), body)
            .await
    }
}
