//! The single writer connection, with group commit.
//!
//! One task owns the connection. Operations queue up while a commit (an fsync) is under way;
//! the next transaction (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: `BEGIN` and the advisory lock
//! that serializes the writers of all replicas) takes all of them (up to 128), each in its own
//! savepoint, and commits once. A caller is answered only after the commit that contains its
//! change is durable, and only its own operation's failure is reported to it (its savepoint is
//! rolled back); if the COMMIT itself fails, every operation of that batch fails and nothing of
//! it is kept.

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
}

impl Writer {
    /// Starts the writer task on `conn`, a connection to the store at `at`.
    pub fn start(conn: AnyConnection, at: &Location) -> Writer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer_task(conn, at.clone(), rx));
        Writer { tx }
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
}

async fn writer_task(
    mut conn: AnyConnection,
    at: Location,
    mut rx: mpsc::UnboundedReceiver<WriteOp>,
) {
    let backend = at.backend();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let (runs, replies): (Vec<Job>, Vec<_>) =
            batch.into_iter().map(|op| (op.run, op.reply)).unzip();
        let results = run_batch(&mut conn, backend, runs).await;
        let failed = results.iter().any(Result::is_err);
        for (reply, r) in replies.into_iter().zip(results) {
            let _ = reply.send(r);
        }
        // PostgreSQL: a connection lost (the server restarted, a failover) is made again, so
        // the next write can succeed; the failed ones were reported, nothing of them kept.
        if let (true, Location::Postgres(url)) = (failed, &at) {
            if sqlx::Connection::ping(&mut conn).await.is_err() {
                if let Ok(c) = <AnyConnection as sqlx::Connection>::connect(url).await {
                    conn = c;
                }
            }
        }
    }
}

/// Runs a batch in one transaction, one savepoint per operation; returns each operation's result.
async fn run_batch(conn: &mut AnyConnection, backend: Backend, batch: Vec<Job>) -> Vec<Result<()>> {
    let fail_all =
        |e: &sqlx::Error, n: usize| (0..n).map(|_| Err(StoreError(e.to_string()))).collect();
    // SQLite: the write lock at once. PostgreSQL: the writers of every replica in turn.
    let begun = match backend {
        Backend::Sqlite => sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await,
        Backend::Postgres => match sqlx::query("BEGIN").execute(&mut *conn).await {
            Ok(_) => {
                let locked = sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(super::postgres::CHAIN_LOCK)
                    .execute(&mut *conn)
                    .await;
                if locked.is_err() {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                }
                locked
            }
            e => e,
        },
    };
    if let Err(e) = begun {
        return fail_all(&e, batch.len());
    }
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
        return fail_all(&e, n);
    }
    results
}
