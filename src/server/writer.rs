//! The single writer connection, with group commit.
//!
//! One task owns the connection. Operations queue up while a commit (an fsync) is under way;
//! the next transaction (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: `BEGIN` and the advisory lock
//! that serializes the writers of all replicas) takes all of them (up to 128), each in its own
//! savepoint, and commits once. A caller is answered only after the commit that contains its
//! change is durable, and only its own operation's failure is reported to it (its savepoint is
//! rolled back); if the COMMIT itself fails, every operation of that batch fails and nothing of
//! it is kept.
//!
//! On PostgreSQL the connection can be lost under the writer (the database restarted, a
//! failover). A transaction that cannot begin is retried once on a new connection: nothing of
//! its operations was sent, so no write is ever repeated. A failure after that (an operation, the
//! COMMIT, whose fate the writer cannot know) is reported, never retried; the connection is
//! then checked and made again for the next batch. `/readyz` asks the writer whether its
//! connection answers ([`Writer::alive`]), so a replica whose writer cannot reach the database
//! is not ready.

use std::future::Future;
use std::pin::Pin;

use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

use super::db::{Backend, Location, Result, StoreError};

/// A future borrowing the writer connection.
pub type ConnFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;

/// One queued write, its value already routed to its caller.
type Job = Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> ConnFuture<'c, ()> + Send>;

struct WriteOp {
    run: Job,
    reply: oneshot::Sender<Result<()>>,
}

/// Operations per transaction at most.
const MAX_BATCH: usize = 128;

/// The handle callers queue writes on.
pub struct Writer {
    tx: mpsc::UnboundedSender<WriteOp>,
    checks: mpsc::UnboundedSender<oneshot::Sender<bool>>,
}

impl Writer {
    /// Starts the writer task on `conn`, a connection to the store at `at`.
    pub fn start(conn: AnyConnection, at: &Location) -> Writer {
        let (tx, rx) = mpsc::unbounded_channel();
        let (checks, check_rx) = mpsc::unbounded_channel();
        let task = Task {
            conn,
            at: at.clone(),
            lost: false,
        };
        tokio::spawn(task.run(rx, check_rx));
        Writer { tx, checks }
    }

    /// Runs `f` on the writer connection inside its own savepoint, and returns its value once
    /// the transaction containing it is durable. `f`'s changes are kept only if it returns `Ok`.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> ConnFuture<'c, T> + Send + 'static,
    {
        let (value_tx, value_rx) = oneshot::channel::<T>();
        let run: Job = Box::new(move |c| {
            Box::pin(async move {
                let v = f(c).await?;
                let _ = value_tx.send(v);
                Ok(())
            })
        });
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError("the database writer has stopped".into());
        self.tx
            .send(WriteOp { run, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())??;
        value_rx.await.map_err(|_| stopped())
    }

    /// Whether the writer's connection answers (on PostgreSQL, made again first if it was
    /// lost). Checked between two transactions, before any write that waits.
    pub async fn alive(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.checks.send(tx).is_ok() && rx.await.unwrap_or(false)
    }
}

/// The writer task's connection and where it leads.
struct Task {
    conn: AnyConnection,
    at: Location,
    /// The connection is lost and could not be made again yet (logged once per outage).
    lost: bool,
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<WriteOp>,
        mut checks: mpsc::UnboundedReceiver<oneshot::Sender<bool>>,
    ) {
        loop {
            let first = tokio::select! {
                biased;
                Some(reply) = checks.recv() => {
                    let _ = reply.send(self.heal().await);
                    continue;
                }
                op = rx.recv() => match op {
                    Some(op) => op,
                    None => return,
                },
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let (runs, replies): (Vec<Job>, Vec<_>) =
                batch.into_iter().map(|op| (op.run, op.reply)).unzip();
            let (results, begun) = match self.begin().await {
                Ok(()) => (run_batch(&mut self.conn, runs).await, true),
                Err(e) => (
                    runs.iter().map(|_| Err(StoreError::from(&e))).collect(),
                    false,
                ),
            };
            let failed = results.iter().any(Result::is_err);
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
            // A connection lost during the batch (the server restarted, a failover) is made
            // again now, so the next write finds it; the failed writes were reported, nothing
            // of them kept. (A batch that could not begin has tried that already.)
            if failed && begun {
                self.heal().await;
            }
        }
    }

    /// Begins a transaction. On PostgreSQL, when that fails on a lost connection, the
    /// connection is made again and the transaction begun once more: nothing of the batch has
    /// been sent yet, so this retry can never repeat a write.
    async fn begin(&mut self) -> std::result::Result<(), sqlx::Error> {
        let first = begin(&mut self.conn, self.at.backend()).await;
        match (first, &self.at) {
            (Err(e), Location::Postgres(_)) => {
                if !self.heal().await {
                    return Err(e);
                }
                begin(&mut self.conn, Backend::Postgres).await
            }
            (r, _) => r,
        }
    }

    /// Whether the connection answers; a lost PostgreSQL connection is made again first.
    async fn heal(&mut self) -> bool {
        let ping = tokio::time::timeout(PING_TIMEOUT, sqlx::Connection::ping(&mut self.conn));
        if matches!(ping.await, Ok(Ok(()))) {
            return true;
        }
        let Location::Postgres(url) = &self.at else {
            return false;
        };
        let url = super::postgres::named(url, super::postgres::WRITER_NAME);
        let connect = <AnyConnection as sqlx::Connection>::connect(&url);
        let why = match tokio::time::timeout(PING_TIMEOUT, connect).await {
            Ok(Ok(c)) => {
                self.conn = c;
                self.lost = false;
                tracing::warn!("the database writer's connection was lost and is made again");
                return true;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        if !std::mem::replace(&mut self.lost, true) {
            tracing::error!(
                error = %why,
                "the database writer's connection is lost and cannot be made again yet; \
                 writes fail until it can"
            );
        }
        false
    }
}

/// How long a ping or a reconnection of the writer may take.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Begins a write transaction. SQLite: the write lock at once. PostgreSQL: `BEGIN` and the
/// advisory lock that takes the writers of every replica in turn.
async fn begin(conn: &mut AnyConnection, backend: Backend) -> std::result::Result<(), sqlx::Error> {
    match backend {
        Backend::Sqlite => sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?,
        Backend::Postgres => {
            sqlx::query("BEGIN").execute(&mut *conn).await?;
            let locked = sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(super::postgres::CHAIN_LOCK)
                .execute(&mut *conn)
                .await;
            if locked.is_err() {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            }
            locked?
        }
    };
    Ok(())
}

/// Runs a batch in the transaction begun, one savepoint per operation, and commits; returns
/// each operation's result.
async fn run_batch(conn: &mut AnyConnection, batch: Vec<Job>) -> Vec<Result<()>> {
    let mut results = Vec::with_capacity(batch.len());
    let n = batch.len();
    for run in batch {
        let r = match sqlx::query("SAVEPOINT op").execute(&mut *conn).await {
            Err(e) => Err(StoreError::from(e)),
            Ok(_) => match run(conn).await {
                Ok(()) => sqlx::query("RELEASE op")
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
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
        return (0..n).map(|_| Err(StoreError::from(&e))).collect();
    }
    results
}
