//! Read-only queries the web UI needs beyond the API's: the inbox's pending requests (from their
//! small summaries), decided requests with filters and paging, who decided one (the identity
//! details kept with the decision), and the audit log's head, last signed checkpoint and events
//! (with filters and paging, without their bodies).

use sqlx::Row as _;

use super::db::Result;
use super::store::Store;
use super::views::view_from_row;
use crate::api::RequestView;
use crate::audit::Checkpoint;

/// Filters of the history page; every field is optional.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// One terminal state, or any of them.
    pub state: Option<String>,
    pub tool: Option<String>,
    /// The server's classification of the environment.
    pub environment: Option<String>,
    pub agent: Option<String>,
    /// A substring of the approver's identity or the email shown for them.
    pub approver: Option<String>,
    /// Created at or after / before (unix ms).
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// A decided request with who decided it, as the UI shows them.
pub struct Decided {
    pub view: RequestView,
    /// The identity details recorded with a web decision (`issuer`, `subject`, `email`, …).
    pub approver: Option<serde_json::Value>,
}

impl Store {
    /// Decided requests matching `f`, newest first: `limit` of them after skipping `offset`.
    pub async fn history(&self, f: &Filter, limit: i64, offset: i64) -> Result<Vec<Decided>> {
        let rows = sqlx::query(
            "SELECT id, agent, state, created_at, deadline, data, decision, outcome, approver, \
             approvals FROM requests WHERE state <> 'pending' \
             AND ($1 IS NULL OR state = $1) \
             AND ($2 IS NULL OR json_extract(data, '$.request.tool') = $2) \
             AND ($3 IS NULL OR json_extract(data, '$.classification.environment') = $3) \
             AND ($4 IS NULL OR agent = $4) \
             AND ($5 IS NULL OR instr(COALESCE(json_extract(decision, '$.approvers[0]'), '') \
                  || ' ' || COALESCE(json_extract(approver, '$.email'), ''), $5) > 0) \
             AND ($6 IS NULL OR created_at >= $6) AND ($7 IS NULL OR created_at <= $7) \
             ORDER BY created_at DESC, id LIMIT $8 OFFSET $9",
        )
        .bind(&f.state)
        .bind(&f.tool)
        .bind(&f.environment)
        .bind(&f.agent)
        .bind(&f.approver)
        .bind(f.since)
        .bind(f.until)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Decided {
                    view: view_from_row(r)?,
                    approver: r
                        .get::<Option<String>, _>(8)
                        .and_then(|t| serde_json::from_str(&t).ok()),
                })
            })
            .collect()
    }

    /// The pending requests, soonest deadline first, at most `limit`, as the inbox shows them:
    /// views built from each request's summary only (the first arguments, the reason cut
    /// short, the counts; no diff text), so a flood of large requests costs little to list.
    pub async fn pending_summaries(&self, limit: i64) -> Result<Vec<RequestView>> {
        let rows = sqlx::query(
            "SELECT id, agent, created_at, deadline, summary, approvals, agent_waiting_until FROM requests \
             WHERE state = 'pending' ORDER BY deadline, created_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let s: serde_json::Value =
                    serde_json::from_str(r.get::<Option<&str>, _>(4).unwrap_or("{}"))
                        .map_err(|e| super::db::StoreError(format!("stored summary: {e}")))?;
                let mut argv: Vec<String> =
                    serde_json::from_value(s["argv"].clone()).unwrap_or_default();
                // The last arguments (kept since the inbox cuts commands in the middle).
                let tail: Vec<String> =
                    serde_json::from_value(s["argv_tail"].clone()).unwrap_or_default();
                if s["argv_len"].as_u64().unwrap_or(0) > (argv.len() + tail.len()) as u64 {
                    argv.push("…".into());
                }
                argv.extend(tail);
                let classification = serde_json::from_value(s["classification"].clone())
                    .map_err(|e| super::db::StoreError(format!("stored summary: {e}")))?;
                Ok(RequestView {
                    id: r.get(0),
                    state: crate::api::State::Pending,
                    agent: r.get(1),
                    on_behalf_of: s["on_behalf_of"].as_str().map(Into::into),
                    tool: s["tool"].as_str().unwrap_or_default().to_string(),
                    argv,
                    cwd: String::new(),
                    host: String::new(),
                    environment: Default::default(),
                    diff: crate::api::Diff::default(),
                    artifact_sha256: Vec::new(),
                    reason: s["reason"].as_str().map(Into::into),
                    classification,
                    created_at: r.get(2),
                    deadline: r.get(3),
                    decision: None,
                    outcome: None,
                    outcome_reported_by: None,
                    outcome_verified: false,
                    nonce: String::new(),
                    run: None,
                    approvals: serde_json::from_str(r.get::<&str, _>(5)).unwrap_or_default(),
                    review_url: None,
                    agent_waiting_until: r.get(6),
                    run_claimed: false,
                    agent_waiting: false,
                    // The server's counts, made when the request was stored (older rows: unknown).
                    changes: serde_json::from_value(s["changes"].clone()).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Who decided request `id`, as recorded with a web decision.
    pub async fn approver_details(&self, id: &str) -> Result<Option<serde_json::Value>> {
        let t: Option<Option<String>> =
            sqlx::query_scalar("SELECT approver FROM requests WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
        Ok(t.flatten().and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// The newest audit row's seq and hash, and the newest signed checkpoint.
    pub async fn audit_head(&self) -> Result<(Option<(i64, String)>, Option<Checkpoint>)> {
        let head = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.read)
            .await?
            .map(|r| (r.get(0), r.get(1)));
        let cp = sqlx::query(
            "SELECT seq, head_hash, at, signature FROM checkpoints ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.read)
        .await?
        .map(|r| Checkpoint {
            seq: r.get(0),
            head_hash: r.get(1),
            at: r.get(2),
            signature: r.get(3),
            ..Checkpoint::default()
        });
        Ok((head, cp))
    }

    /// Whether the database answers reads (a `SELECT 1` on the read pool within 2 s).
    pub async fn reachable(&self) -> bool {
        let ping = sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(&self.read);
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), ping).await,
            Ok(Ok(1))
        )
    }

    /// Whether the writer's own connection answers (made again first if it was lost), within
    /// 3 s: a replica whose reads work but whose writer's connection is dead would fail its
    /// next write.
    pub async fn writable(&self) -> bool {
        let alive = self.writer.alive();
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(3), alive).await,
            Ok(true)
        )
    }

    /// A connection of the read pool, for paging through the audit log.
    pub async fn reader(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        Ok(self.read.acquire().await?)
    }
}

/// Filters of the audit page's event list; every field is optional.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// One kind of event (`request_created`, `approval`, `approved`, `outcome`, …).
    pub kind: Option<String>,
    /// A substring of the actor (`agent:agent-a`, `oidc:…#alice`, `local:…`).
    pub actor: Option<String>,
    /// One request's id.
    pub request_id: Option<String>,
    /// At or after / before (unix ms).
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// One audit event as the audit page lists it (its body is not read: it can be large).
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub request_id: Option<String>,
    pub actor: String,
}

/// Where a page of audit events starts: from the newest, below a `seq` (older), or above one
/// (newer).
#[derive(Debug, Clone, Copy)]
pub enum AuditPage {
    Newest,
    Before(i64),
    After(i64),
}

impl Store {
    /// Up to `limit` audit events matching `f` on the page `at`, newest first.
    pub async fn audit_events(
        &self,
        f: &AuditFilter,
        at: AuditPage,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let (before, after) = match at {
            AuditPage::Newest => (None, None),
            AuditPage::Before(s) => (Some(s), None),
            AuditPage::After(s) => (None, Some(s)),
        };
        let order = if after.is_some() { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT seq, at, kind, request_id, actor FROM audit \
             WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR instr(actor, $2) > 0) \
             AND ($3 IS NULL OR request_id = $3) AND ($4 IS NULL OR at >= $4) \
             AND ($5 IS NULL OR at <= $5) AND ($6 IS NULL OR seq < $6) \
             AND ($7 IS NULL OR seq > $7) ORDER BY seq {order} LIMIT $8"
        );
        let rows = sqlx::query(&sql)
            .bind(&f.kind)
            .bind(&f.actor)
            .bind(&f.request_id)
            .bind(f.since)
            .bind(f.until)
            .bind(before)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        let mut events: Vec<AuditEvent> = rows
            .iter()
            .map(|r| AuditEvent {
                seq: r.get(0),
                at: r.get(1),
                kind: r.get(2),
                request_id: r.get(3),
                actor: r.get(4),
            })
            .collect();
        if after.is_some() {
            events.reverse();
        }
        Ok(events)
    }
}
