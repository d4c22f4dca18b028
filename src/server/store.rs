//! The durable store: requests, the audit log and its signed checkpoints, in SQLite.
//!
//! Every state change and the audit row that records it are written together, inside one
//! SAVEPOINT of a `BEGIN IMMEDIATE` transaction on the single writer connection; if any statement
//! fails (an audit append that cannot be written: disk full, I/O error, a read-only file), the
//! savepoint rolls back and the request stays as it was.
//!
//! **Group commit.** One writer task owns the connection. Operations queue up while a commit
//! (an fsync) is under way; the next transaction takes all of them (up to 128), each in its own
//! savepoint, and commits once. A caller is answered only after the commit that contains its
//! change is durable, and only its own operation's failure is reported to it; if the COMMIT itself
//! fails, every operation of that batch fails and nothing of it is kept. "Exactly one terminal state" is enforced by a conditional update
//! (`… WHERE state = 'pending'`), not by a lock in memory, and triggers make the audit log
//! append-only and a decided request's decision immutable.
//!
//! Reads go through a small pool (WAL mode lets them run beside the writer). The database is
//! opened with `synchronous = FULL`: a decision is on disk when the API answers.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row as _, SqliteConnection, SqlitePool};

use crate::api::{Classification, CreateRequest, Outcome, RequestView, SignedDecision, State};
use crate::audit::{self, Checkpoint, Row};
use crate::signing::{self, Keys};

const SCHEMA: &str = r#"
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'cancelled')),
    created_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    data TEXT NOT NULL,
    decision TEXT,
    outcome TEXT
);
CREATE INDEX requests_by_state ON requests (state, deadline);
CREATE TRIGGER requests_decision_is_final BEFORE UPDATE ON requests
WHEN OLD.state <> 'pending' AND (NEW.state IS NOT OLD.state OR NEW.decision IS NOT OLD.decision
    OR NEW.data IS NOT OLD.data OR NEW.id IS NOT OLD.id OR NEW.deadline IS NOT OLD.deadline)
BEGIN SELECT RAISE(ABORT, 'a decided request cannot change'); END;
CREATE TRIGGER requests_outcome_once BEFORE UPDATE OF outcome ON requests
WHEN OLD.outcome IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'the outcome is already recorded'); END;
CREATE TRIGGER requests_are_kept BEFORE DELETE ON requests
BEGIN SELECT RAISE(ABORT, 'requests are never deleted'); END;

CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT,
    actor TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE checkpoints (
    seq INTEGER PRIMARY KEY,
    head_hash TEXT NOT NULL,
    at INTEGER NOT NULL,
    signature TEXT NOT NULL
);
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
"#;

/// A store failure, reported to the client as a 500 with a stable code.
#[derive(Debug)]
pub struct StoreError(pub String);

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// A request to insert.
pub struct NewRequest {
    pub id: String,
    pub agent: String,
    pub on_behalf_of: Option<String>,
    pub request: CreateRequest,
    pub classification: Classification,
    pub created_at: i64,
    pub deadline: i64,
}

/// A state change to apply.
pub struct Change<'a> {
    pub to: State,
    pub actor: &'a str,
    pub comment: Option<&'a str>,
    pub now: i64,
    /// How long an approval stays valid for the shim to start the run (ms).
    pub valid_for_ms: i64,
    /// Only this agent may make the change (cancel); None for approvers and the reaper.
    pub only_agent: Option<&'a str>,
}

/// The result of a state change.
pub enum Changed {
    Done(Box<RequestView>),
    /// The request is not pending any more (or, for an agent, not its own and so "not found").
    Conflict(State),
    NotFound,
}

/// One queued write: runs on the writer connection inside its own savepoint.
type WriteFn = Box<
    dyn for<'c> FnOnce(
            &'c mut SqliteConnection,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<bool>> + Send + 'c>,
        > + Send,
>;

struct WriteOp {
    run: WriteFn,
    reply: tokio::sync::oneshot::Sender<Result<bool>>,
}

/// Operations per transaction at most.
const MAX_BATCH: usize = 128;

pub struct Store {
    writer: tokio::sync::mpsc::UnboundedSender<WriteOp>,
    read: SqlitePool,
    keys: Arc<Keys>,
    checkpoint_every: i64,
}

fn options(path: &Path) -> Result<SqliteConnectOptions> {
    Ok(
        SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10)),
    )
}

impl Store {
    /// Opens (and on first use creates) the database at `path`.
    pub async fn open(path: &Path, keys: Arc<Keys>, checkpoint_every: u64) -> Result<Store> {
        let mut writer = SqliteConnection::connect_with(&options(path)?).await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut writer)
            .await?;
        if version == 0 {
            // One script, one transaction: a crash half-way leaves version 0 and no tables.
            let script = format!("BEGIN IMMEDIATE;\n{SCHEMA}\nPRAGMA user_version = 1;\nCOMMIT;");
            sqlx::query(&script).execute(&mut writer).await?;
        } else if version != 1 {
            return Err(StoreError(format!(
                "{}: schema version {version} is newer than this hitl-gate (1)",
                path.display()
            )));
        }
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options(path)?.read_only(true))
            .await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(writer_task(writer, rx));
        Ok(Store {
            writer: tx,
            read,
            keys,
            checkpoint_every: i64::try_from(checkpoint_every.max(1)).unwrap_or(i64::MAX),
        })
    }

    /// Queues `f` for the writer task and waits until the transaction containing it is durable.
    /// `f`'s changes are kept only if it returns `Ok`.
    async fn write<F>(&self, f: F) -> Result<bool>
    where
        F: for<'c> FnOnce(
                &'c mut SqliteConnection,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<bool>> + Send + 'c>,
            > + Send
            + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer
            .send(WriteOp {
                run: Box::new(f),
                reply,
            })
            .map_err(|_| StoreError("the database writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError("the database writer has stopped".into()))?
    }

    /// Inserts a request and its `request_created` audit row.
    pub async fn create(&self, new: NewRequest) -> Result<RequestView> {
        let data = json!({
            "request": &new.request,
            "on_behalf_of": &new.on_behalf_of,
            "classification": &new.classification,
        });
        let body = json!({
            "command": {"tool": &new.request.tool, "argv": &new.request.argv},
            "environment": &new.request.environment,
            "request": &new.request,
            "agent": &new.agent,
            "on_behalf_of": &new.on_behalf_of,
            "classification": &new.classification,
            "deadline": new.deadline,
        });
        let keys = self.keys.clone();
        let every = self.checkpoint_every;
        let id = new.id.clone();
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO requests (id, agent, state, created_at, deadline, data) \
                     VALUES (?, ?, 'pending', ?, ?, ?)",
                )
                .bind(&new.id)
                .bind(&new.agent)
                .bind(new.created_at)
                .bind(new.deadline)
                .bind(data.to_string())
                .execute(&mut *c)
                .await?;
                let actor = format!("agent:{}", new.agent);
                append(
                    c,
                    &keys,
                    every,
                    new.created_at,
                    "request_created",
                    Some(&new.id),
                    &actor,
                    &body,
                )
                .await?;
                Ok(true)
            })
        })
        .await?;
        self.get(&id)
            .await?
            .ok_or_else(|| StoreError("the request vanished after insert".into()))
    }

    /// Records a plan with no changes that ran without asking: one `no_changes` audit row with
    /// the command, the environment and the diff as the agent's shim saw it. Returns its seq.
    pub async fn no_changes(
        &self,
        agent: &str,
        request: &CreateRequest,
        classification: &Classification,
        now: i64,
    ) -> Result<i64> {
        let body = json!({
            "command": {"tool": &request.tool, "argv": &request.argv},
            "environment": &request.environment,
            "request": request,
            "agent": agent,
            "classification": classification,
            // The server never saw the plan: this row is the agent's word.
            "reported_by": format!("agent:{agent}"),
            "verified": false,
        });
        let keys = self.keys.clone();
        let every = self.checkpoint_every;
        let actor = format!("agent:{agent}");
        self.write(move |c| {
            Box::pin(async move {
                append(c, &keys, every, now, "no_changes", None, &actor, &body).await?;
                Ok(true)
            })
        })
        .await?;
        Ok(
            sqlx::query_scalar("SELECT MAX(seq) FROM audit WHERE kind = 'no_changes'")
                .fetch_one(&self.read)
                .await?,
        )
    }

    /// Moves a pending request to a terminal state, signing the decision and appending the audit
    /// row in the same transaction.
    pub async fn change(&self, id: &str, ch: Change<'_>) -> Result<Changed> {
        let Some(view) = self.get(id).await? else {
            return Ok(Changed::NotFound);
        };
        if let Some(agent) = ch.only_agent {
            if view.agent != agent {
                return Ok(Changed::NotFound);
            }
        }
        if view.state != State::Pending {
            return Ok(Changed::Conflict(view.state));
        }
        if matches!(ch.to, State::Approved | State::Rejected) && ch.now >= view.deadline {
            return Ok(Changed::Conflict(State::Expired));
        }
        let valid_until = if ch.to == State::Approved {
            ch.now + ch.valid_for_ms
        } else {
            ch.now
        };
        let mut decision = SignedDecision {
            request_id: view.id.clone(),
            decision: ch.to,
            approvers: vec![ch.actor.to_string()],
            comment: ch.comment.map(Into::into),
            argv_sha256: signing::argv_sha256(&view.tool, &view.argv),
            artifact_sha256: view.artifact_sha256.clone(),
            environment_sha256: signing::environment_sha256(&view.environment),
            request_sha256: view.request().sha256(),
            nonce: view.nonce.clone(),
            decided_at: ch.now,
            valid_until,
            signature: String::new(),
        };
        decision.signature = self.keys.sign(&signing::decision_bytes(&decision));
        let body = json!({
            "command": {"tool": &view.tool, "argv": &view.argv},
            "environment": &view.environment,
            "diff_sha256": crate::hex::sha256(view.diff.text.as_bytes()),
            "decision": &decision,
        });
        let keys = self.keys.clone();
        let every = self.checkpoint_every;
        let (id_s, actor, kind, now) =
            (id.to_string(), ch.actor.to_string(), ch.to.as_str(), ch.now);
        let decision_json = serde_json::to_string(&decision).expect("decision serialises");
        // A human decision must land before the deadline; past it, only the reaper's expiry
        // (and the agent's cancel) may end the request. The database enforces both.
        let human = matches!(ch.to, State::Approved | State::Rejected);
        let updated = self
            .write(move |c| {
                Box::pin(async move {
                    let r = sqlx::query(
                        "UPDATE requests SET state = ?, decision = ? WHERE id = ? \
                         AND state = 'pending' AND (? = 0 OR deadline > ?)",
                    )
                    .bind(kind)
                    .bind(&decision_json)
                    .bind(&id_s)
                    .bind(human)
                    .bind(now)
                    .execute(&mut *c)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Ok(false);
                    }
                    append(c, &keys, every, now, kind, Some(&id_s), &actor, &body).await?;
                    Ok(true)
                })
            })
            .await?;
        if !updated {
            let state = match self.get(id).await? {
                // Still pending: the deadline passed; the reaper is about to expire it.
                Some(v) if v.state == State::Pending => State::Expired,
                v => v.map_or(State::Pending, |v| v.state),
            };
            return Ok(Changed::Conflict(state));
        }
        let view = self
            .get(id)
            .await?
            .ok_or_else(|| StoreError("the request vanished after its decision".into()))?;
        Ok(Changed::Done(Box::new(view)))
    }

    /// Records the outcome of an approved run, once, with its audit row. The outcome is the
    /// agent's word (the server cannot see the run), and both the row and the view say so. A
    /// second outcome is refused, and the attempt is itself recorded (`outcome_refused`).
    pub async fn outcome(
        &self,
        id: &str,
        agent: &str,
        outcome: &Outcome,
        now: i64,
    ) -> Result<Changed> {
        let Some(view) = self.get(id).await? else {
            return Ok(Changed::NotFound);
        };
        if view.agent != agent {
            return Ok(Changed::NotFound);
        }
        if view.state != State::Approved {
            return Ok(Changed::Conflict(view.state));
        }
        let reported_by = format!("agent:{agent}");
        if view.outcome.is_some() {
            let body = json!({
                "command": {"tool": &view.tool, "argv": &view.argv},
                "attempted_outcome": outcome,
                "reported_by": &reported_by,
                "why": "an outcome is already recorded for this request",
            });
            let keys = self.keys.clone();
            let every = self.checkpoint_every;
            let (id_s, actor) = (id.to_string(), reported_by.clone());
            self.write(move |c| {
                Box::pin(async move {
                    append(
                        c,
                        &keys,
                        every,
                        now,
                        "outcome_refused",
                        Some(&id_s),
                        &actor,
                        &body,
                    )
                    .await?;
                    Ok(true)
                })
            })
            .await?;
            return Ok(Changed::Conflict(view.state));
        }
        let body = json!({
            "command": {"tool": &view.tool, "argv": &view.argv},
            "environment": &view.environment,
            "outcome": outcome,
            "reported_by": &reported_by,
            "verified": false,
        });
        let keys = self.keys.clone();
        let every = self.checkpoint_every;
        let (id_s, actor) = (id.to_string(), format!("agent:{agent}"));
        let text = serde_json::to_string(outcome).expect("outcome serialises");
        let updated = self
            .write(move |c| {
                Box::pin(async move {
                    let r = sqlx::query(
                        "UPDATE requests SET outcome = ? WHERE id = ? AND state = 'approved' \
                         AND outcome IS NULL",
                    )
                    .bind(&text)
                    .bind(&id_s)
                    .execute(&mut *c)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Ok(false);
                    }
                    append(c, &keys, every, now, "outcome", Some(&id_s), &actor, &body).await?;
                    Ok(true)
                })
            })
            .await?;
        if !updated {
            return Ok(Changed::Conflict(State::Approved));
        }
        Ok(Changed::Done(Box::new(
            self.get(id).await?.expect("exists"),
        )))
    }

    pub async fn get(&self, id: &str) -> Result<Option<RequestView>> {
        let row = sqlx::query(
            "SELECT id, agent, state, created_at, deadline, data, decision, outcome \
             FROM requests WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| view_from_row(&r)).transpose()
    }

    /// Requests, newest first, optionally only those in `state`.
    pub async fn list(&self, state: Option<State>, limit: i64) -> Result<Vec<RequestView>> {
        let rows = sqlx::query(
            "SELECT id, agent, state, created_at, deadline, data, decision, outcome FROM requests \
             WHERE (?1 IS NULL OR state = ?1) ORDER BY created_at DESC, id LIMIT ?2",
        )
        .bind(state.map(State::as_str))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(view_from_row).collect()
    }

    /// Ids of pending requests whose deadline has passed.
    pub async fn overdue(&self, now: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM requests WHERE state = 'pending' AND deadline <= ? ORDER BY deadline",
        )
        .bind(now)
        .fetch_all(&self.read)
        .await?)
    }

    /// The earliest deadline among pending requests.
    pub async fn next_deadline(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(deadline) FROM requests WHERE state = 'pending'")
                .fetch_one(&self.read)
                .await?,
        )
    }

    pub async fn count(&self, state: State) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE state = ?")
                .bind(state.as_str())
                .fetch_one(&self.read)
                .await?,
        )
    }

    /// Signs a checkpoint over the current head if rows were added since the last one.
    pub async fn checkpoint(&self, now: i64) -> Result<()> {
        let keys = self.keys.clone();
        self.write(move |c| {
            Box::pin(async move {
                let head: Option<(i64, String)> =
                    sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                        .fetch_optional(&mut *c)
                        .await?;
                let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM checkpoints")
                    .fetch_one(&mut *c)
                    .await?;
                if let Some((seq, hash)) = head {
                    if last != Some(seq) {
                        insert_checkpoint(c, &keys, seq, &hash, now).await?;
                    }
                }
                Ok(true)
            })
        })
        .await
        .map(|_| ())
    }

    /// Every audit row in seq order, and every checkpoint.
    pub async fn audit(
        &self,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Result<(Vec<Row>, Vec<Checkpoint>)> {
        let rows = sqlx::query(
            "SELECT seq, at, kind, request_id, actor, body, prev_hash, hash FROM audit \
             WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at <= ?2) ORDER BY seq",
        )
        .bind(since)
        .bind(until)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| Row {
            seq: r.get(0),
            at: r.get(1),
            kind: r.get(2),
            request_id: r.get(3),
            actor: r.get(4),
            body: r.get(5),
            prev_hash: r.get(6),
            hash: r.get(7),
        })
        .collect();
        let cps = sqlx::query_as::<_, (i64, String, i64, String)>(
            "SELECT seq, head_hash, at, signature FROM checkpoints ORDER BY seq",
        )
        .fetch_all(&self.read)
        .await?
        .into_iter()
        .map(|(seq, head_hash, at, signature)| Checkpoint {
            seq,
            head_hash,
            at,
            signature,
        })
        .collect();
        Ok((rows, cps))
    }
}

/// The writer task: batches queued operations into one transaction each (see the module doc).
async fn writer_task(
    mut conn: SqliteConnection,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<WriteOp>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let (runs, replies): (Vec<WriteFn>, Vec<_>) =
            batch.into_iter().map(|op| (op.run, op.reply)).unzip();
        let results = run_batch(&mut conn, runs).await;
        for (reply, r) in replies.into_iter().zip(results) {
            let _ = reply.send(r);
        }
    }
}

/// Runs a batch in one transaction, one savepoint per operation; returns each operation's result.
async fn run_batch(conn: &mut SqliteConnection, batch: Vec<WriteFn>) -> Vec<Result<bool>> {
    let fail_all =
        |e: &sqlx::Error, n: usize| (0..n).map(|_| Err(StoreError(e.to_string()))).collect();
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        return fail_all(&e, batch.len());
    }
    let mut results = Vec::with_capacity(batch.len());
    let n = batch.len();
    for run in batch {
        let r = match sqlx::query("SAVEPOINT op").execute(&mut *conn).await {
            Err(e) => Err(StoreError::from(e)),
            Ok(_) => match run(conn).await {
                Ok(v) => sqlx::query("RELEASE op")
                    .execute(&mut *conn)
                    .await
                    .map(|_| v)
                    .map_err(Into::into),
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK TO op").execute(&mut *conn).await;
                    let _ = sqlx::query("RELEASE op").execute(&mut *conn).await;
                    Err(e)
                }
            },
        };
        results.push(r);
    }
    if let Err(e) = sqlx::query("COMMIT").execute(&mut *conn).await {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return fail_all(&e, n);
    }
    results
}

/// Appends one audit row (and, every N rows, a signed checkpoint) on the writer's transaction.
#[allow(clippy::too_many_arguments)]
async fn append(
    c: &mut SqliteConnection,
    keys: &Keys,
    checkpoint_every: i64,
    at: i64,
    kind: &str,
    request_id: Option<&str>,
    actor: &str,
    body: &serde_json::Value,
) -> Result<()> {
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *c)
            .await?;
    let row = audit::next_row(
        head.as_ref().map(|(s, h)| (s, h.as_str())),
        at,
        kind,
        request_id,
        actor,
        body,
    );
    sqlx::query(
        "INSERT INTO audit (seq, at, kind, request_id, actor, body, prev_hash, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
    if row.seq % checkpoint_every == 0 {
        insert_checkpoint(c, keys, row.seq, &row.hash, at).await?;
    }
    Ok(())
}

async fn insert_checkpoint(
    c: &mut SqliteConnection,
    keys: &Keys,
    seq: i64,
    hash: &str,
    at: i64,
) -> Result<()> {
    let sig = keys.sign(&signing::checkpoint_bytes(seq, hash));
    sqlx::query("INSERT INTO checkpoints (seq, head_hash, at, signature) VALUES (?, ?, ?, ?)")
        .bind(seq)
        .bind(hash)
        .bind(at)
        .bind(sig)
        .execute(&mut *c)
        .await?;
    Ok(())
}

fn view_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<RequestView> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        StoreError(format!("stored {what} is unreadable: {e}"))
    };
    let data: serde_json::Value =
        serde_json::from_str(r.get::<&str, _>(5)).map_err(|e| bad("request", &e))?;
    let request: CreateRequest =
        serde_json::from_value(data["request"].clone()).map_err(|e| bad("request", &e))?;
    let classification: Classification = serde_json::from_value(data["classification"].clone())
        .map_err(|e| bad("classification", &e))?;
    let state_s: String = r.get(2);
    let decision: Option<String> = r.get(6);
    let outcome: Option<String> = r.get(7);
    Ok(RequestView {
        id: r.get(0),
        agent: r.get(1),
        state: State::parse(&state_s)
            .ok_or_else(|| StoreError(format!("unknown state {state_s}")))?,
        on_behalf_of: data["on_behalf_of"].as_str().map(Into::into),
        tool: request.tool,
        argv: request.argv,
        cwd: request.cwd,
        host: request.host,
        environment: request.environment,
        diff: request.diff,
        artifact_sha256: request.artifact_sha256,
        reason: request.reason,
        nonce: request.nonce,
        classification,
        created_at: r.get(3),
        deadline: r.get(4),
        decision: decision
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(|e| bad("decision", &e))?,
        outcome_reported_by: outcome
            .as_ref()
            .map(|_| format!("agent:{}", r.get::<&str, _>(1))),
        outcome: outcome
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|e| bad("outcome", &e))?,
    })
}
