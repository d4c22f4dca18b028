//! The outbox rows as the delivery worker (`notify.rs`) sees them: due rows oldest first, one
//! at a time per request and sink (so each receiver gets a request's events in order), marked
//! delivered or due again; the depth for the metrics; and queueing a pending request's
//! escalation, once.

use serde_json::json;
use sqlx::Row as _;

use super::db::Result;
use super::outbox::{insert, Subject};
use super::store::Store;
use crate::policy::notify::Event;

/// A row due for delivery.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    /// The idempotency key (the same on every attempt).
    pub key: String,
    pub sink: String,
    pub event: String,
    pub payload: String,
    pub attempts: i64,
}

impl Store {
    /// Rows for the sinks named in `sinks` due at `now`, oldest first; a row waits while an
    /// older one for the same request and sink is undelivered. (Rows of a sink no longer in the
    /// policy wait until it is back.)
    pub async fn outbox_due(&self, sinks: &[String], now: i64, limit: i64) -> Result<Vec<Due>> {
        let rows = sqlx::query(
            "SELECT id, key, sink, event, payload, attempts FROM outbox o \
             WHERE delivered_at IS NULL AND next_at <= $1 \
             AND sink IN (SELECT value FROM json_each($2)) AND NOT EXISTS ( \
               SELECT 1 FROM outbox p WHERE p.delivered_at IS NULL AND p.sink = o.sink \
               AND p.request_id = o.request_id AND p.id < o.id) \
             ORDER BY id LIMIT $3",
        )
        .bind(now)
        .bind(serde_json::to_string(sinks).unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let key: String = r.get(1);
                let sink: String = r.get(2);
                Due {
                    id: r.get(0),
                    key: key
                        .strip_suffix(&format!("@{sink}"))
                        .unwrap_or(&key)
                        .to_string(),
                    sink,
                    event: r.get(3),
                    payload: r.get(4),
                    attempts: r.get(5),
                }
            })
            .collect())
    }

    /// When the next undelivered row of the sinks named in `sinks` is due, if any.
    pub async fn outbox_next(&self, sinks: &[String]) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_at) FROM outbox WHERE delivered_at IS NULL \
             AND sink IN (SELECT value FROM json_each($1))",
        )
        .bind(serde_json::to_string(sinks).unwrap_or_default())
        .fetch_one(&self.read)
        .await?)
    }

    /// Undelivered rows and the creation time of the oldest, for the metrics.
    pub async fn outbox_depth(&self) -> Result<(i64, Option<i64>)> {
        let r =
            sqlx::query("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE delivered_at IS NULL")
                .fetch_one(&self.read)
                .await?;
        Ok((r.get(0), r.get(1)))
    }

    /// Marks a row delivered, or due again at `retry_at` with the error.
    pub async fn outbox_result(
        &self,
        id: i64,
        now: i64,
        failed: Option<(i64, String)>,
    ) -> Result<()> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    match failed {
                        None => {
                            sqlx::query(
                                "UPDATE outbox SET delivered_at = $1, attempts = attempts + 1 \
                                 WHERE id = $2",
                            )
                            .bind(now)
                            .bind(id)
                            .execute(&mut *c)
                            .await?;
                        }
                        Some((retry_at, e)) => {
                            sqlx::query(
                                "UPDATE outbox SET next_at = $1, attempts = attempts + 1, \
                                 last_error = $2 WHERE id = $3",
                            )
                            .bind(retry_at)
                            .bind(e)
                            .bind(id)
                            .execute(&mut *c)
                            .await?;
                        }
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Pending requests not yet escalated: id, creation, deadline.
    pub async fn unescalated(&self) -> Result<Vec<(String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT id, created_at, deadline FROM requests \
             WHERE state = 'pending' AND escalated_at IS NULL ORDER BY created_at LIMIT 1000",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Queues the escalation of a pending request, once (in one transaction with marking it);
    /// whether this call escalated it.
    pub async fn escalate(&self, id: &str, now: i64) -> Result<bool> {
        let Some(outbox) = self.outbox() else {
            return Ok(false);
        };
        let Some(view) = self.get(id).await? else {
            return Ok(false);
        };
        let request = view.request();
        let extra = json!({"approvals": &view.approvals});
        let rows = outbox.rows(
            Event::Escalation,
            &Subject::of(&view, &request),
            0,
            extra,
            now,
        );
        let id = id.to_string();
        let escalated = self
            .writer
            .write(move |c| {
                Box::pin(async move {
                    let r = sqlx::query(
                        "UPDATE requests SET escalated_at = $1 WHERE id = $2 AND state = 'pending' \
                         AND escalated_at IS NULL",
                    )
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *c)
                    .await?;
                    let escalated = r.rows_affected() > 0;
                    if escalated {
                        insert(c, &rows, now).await?;
                    }
                    Ok(escalated)
                })
            })
            .await?;
        outbox.wake.notify_one();
        Ok(escalated)
    }
}
