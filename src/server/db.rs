//! The store's database: where it lives ([`Location`]: a SQLite file, or PostgreSQL with
//! `postgres.rs`), the SQLite schema (one migration per version, applied at start, in order),
//! how it is opened, and the error every store operation reports. The store's SQL is written
//! once, for sqlx's `Any` driver (`$N` parameters, which SQLite reads too).
//!
//! Every state change and the audit row that records it are written by the single writer
//! (`writer.rs`). Triggers make the audit log append-only, a decided request's decision
//! immutable, and an outcome recordable once. Reads go through a small read-only pool (WAL mode
//! lets them run beside the writer). The database is opened with `synchronous = FULL`: a
//! decision is on disk when the API answers.

use std::path::{Path, PathBuf};

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection};

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

/// Version 2: the web UI's sessions (only the SHA-256 of a session id is stored), its sign-ins
/// under way (the OIDC `state`, hashed, with the hash of the cookie that binds it to the browser
/// that started it, the PKCE verifier and the nonce), a small summary of each request for the
/// inbox (so listing never reads a request's whole diff), and who decided a
/// request as the UI shows them (`requests.approver`: the identity details of the audit row).
const SCHEMA_V2: &str = r#"
CREATE TABLE sessions (
    id_sha256 TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT,
    name TEXT,
    groups TEXT NOT NULL,
    auth_time INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    csrf TEXT NOT NULL
);
CREATE TABLE logins (
    state_sha256 TEXT PRIMARY KEY,
    browser_sha256 TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to TEXT NOT NULL,
    max_age INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX requests_by_created ON requests (created_at);
ALTER TABLE requests ADD COLUMN approver TEXT;
ALTER TABLE requests ADD COLUMN summary TEXT;
UPDATE requests SET summary = json_object(
    'tool', json_extract(data, '$.request.tool'),
    'argv', (SELECT json_group_array(substr(value, 1, 200)) FROM json_each(data, '$.request.argv')
             WHERE key < 16),
    'argv_len', json_array_length(data, '$.request.argv'),
    'reason', substr(json_extract(data, '$.request.reason'), 1, 300),
    'on_behalf_of', json_extract(data, '$.on_behalf_of'),
    'classification', json_extract(data, '$.classification'),
    'counts', json_extract(data, '$.request.diff.summary.counts'));
CREATE INDEX logins_by_age ON logins (created_at);
CREATE TRIGGER requests_approver_is_final BEFORE UPDATE OF approver ON requests
WHEN OLD.state <> 'pending' AND NEW.approver IS NOT OLD.approver
BEGIN SELECT RAISE(ABORT, 'a decided request cannot change'); END;
"#;

/// Version 3: the approvals of a request that needs several (a JSON array that only grows while
/// the request is pending), the notification outbox (one row per event and sink, written in the
/// event's own transaction, delivered at least once by `notify.rs`), and when a request's
/// escalation was queued.
const SCHEMA_V3: &str = r#"
ALTER TABLE requests ADD COLUMN approvals TEXT NOT NULL DEFAULT '[]';
ALTER TABLE requests ADD COLUMN escalated_at INTEGER;
CREATE TRIGGER requests_approvals_only_grow BEFORE UPDATE OF approvals ON requests
WHEN NEW.approvals IS NOT OLD.approvals AND (OLD.state <> 'pending'
    OR json_array_length(NEW.approvals) <= json_array_length(OLD.approvals))
BEGIN SELECT RAISE(ABORT, 'approvals are only added, and only while the request is pending'); END;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    sink TEXT NOT NULL,
    event TEXT NOT NULL,
    request_id TEXT,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    delivered_at INTEGER,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (delivered_at, next_at);
CREATE INDEX requests_to_escalate ON requests (state, escalated_at, created_at);
"#;

/// Version 4: the idempotency key of a create (the shim's `Idempotency-Key`, once per gated
/// command): a retried create after a lost answer finds the request it made.
const SCHEMA_V4: &str = r#"
ALTER TABLE requests ADD COLUMN idem_key TEXT;
CREATE UNIQUE INDEX requests_by_idem_key ON requests (agent, idem_key) WHERE idem_key IS NOT NULL;
"#;

/// Version 5: until when the agent's shim waits for a pending request (renewed by its
/// long-polls, cleared when it stops waiting: `max_wait`, a harness's SIGTERM); and the claim
/// of the one shim that runs an approval (set once).
const SCHEMA_V5: &str = r#"
ALTER TABLE requests ADD COLUMN agent_waiting_until INTEGER;
ALTER TABLE requests ADD COLUMN run_claim TEXT;
CREATE TRIGGER requests_run_claim_once BEFORE UPDATE OF run_claim ON requests
WHEN OLD.run_claim IS NOT NULL AND NEW.run_claim IS NOT OLD.run_claim
BEGIN SELECT RAISE(ABORT, 'the run is already claimed'); END;
"#;

/// Version 6: the audit log as a transparency log. `audit_tree` holds, for each audit row, the
/// Merkle tree hashes that appending it stores (its RFC 6962 leaf hash, then the roots of the
/// subtrees it completes; 32 bytes each, `audit/tree.rs`), written in the row's transaction;
/// rows from before this version are added at the next start. `checkpoints.note` is the C2SP
/// checkpoint the server signed over the tree at that seq; `cosignatures` holds each note as a
/// witness cosigned it. All three are append-only.
const SCHEMA_V6: &str = r#"
CREATE TABLE audit_tree (
    seq INTEGER PRIMARY KEY,
    hashes BLOB NOT NULL
);
CREATE TRIGGER audit_tree_no_update BEFORE UPDATE ON audit_tree
BEGIN SELECT RAISE(ABORT, 'the audit tree is append-only'); END;
CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree
BEGIN SELECT RAISE(ABORT, 'the audit tree is append-only'); END;
ALTER TABLE checkpoints ADD COLUMN note TEXT;
CREATE TABLE cosignatures (
    seq INTEGER NOT NULL,
    witness TEXT NOT NULL,
    note TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (seq, witness)
);
CREATE TRIGGER cosignatures_no_update BEFORE UPDATE ON cosignatures
BEGIN SELECT RAISE(ABORT, 'cosignatures are append-only'); END;
CREATE TRIGGER cosignatures_no_delete BEFORE DELETE ON cosignatures
BEGIN SELECT RAISE(ABORT, 'cosignatures are append-only'); END;
"#;

/// Every schema version's script, in order: version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[&str] = &[
    SCHEMA, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6,
];

/// A store failure, reported to the client as a 500 with a stable code.
#[derive(Debug)]
pub struct StoreError(pub String);

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl From<&sqlx::Error> for StoreError {
    fn from(e: &sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[cfg(test)]
fn options(path: &Path) -> Result<sqlx::sqlite::SqliteConnectOptions> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use std::str::FromStr;
    Ok(
        SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10)),
    )
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (the data dir's `hitl-gate.db`).
    Sqlite(PathBuf),
    /// A PostgreSQL database URL (`postgres://…`), shared by the server's replicas.
    Postgres(String),
}

/// The store `[serve]` names: `database_url` (with the password from `database_password_file`,
/// whose mode must not let others read it), else the SQLite file.
pub fn location(
    serve: &crate::policy::schema::Serve,
    sqlite_file: &Path,
) -> std::result::Result<Location, String> {
    let Some(url) = &serve.database_url else {
        return Ok(Location::Sqlite(sqlite_file.to_path_buf()));
    };
    let Some(file) = &serve.database_password_file else {
        return Ok(Location::Postgres(url.clone()));
    };
    let password = crate::client::read_token(file)
        .map_err(|e| format!("[serve] database_password_file: {e}"))?;
    // postgres://user@host/db → postgres://user:PASSWORD@host/db, the password percent-encoded.
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (user, host) = rest
        .split_once('@')
        .ok_or("[serve] database_url names no user (postgres://USER@HOST/DB)")?;
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(Location::Postgres(format!(
        "{scheme}://{user}:{encoded}@{host}"
    )))
}

/// Which database the store's connections talk to: the few statements that differ
/// (transactions, the writers' lock) are chosen by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Location {
    pub fn backend(&self) -> Backend {
        match self {
            Location::Sqlite(_) => Backend::Sqlite,
            Location::Postgres(_) => Backend::Postgres,
        }
    }
}

/// `sqlite://PATH?mode=…` for sqlx, with the characters a URL gives meaning to escaped.
pub fn sqlite_url(path: &Path, mode: &str) -> String {
    let mut p = String::new();
    for ch in path.display().to_string().chars() {
        match ch {
            '%' => p.push_str("%25"),
            '?' => p.push_str("%3F"),
            '#' => p.push_str("%23"),
            ' ' => p.push_str("%20"),
            c => p.push(c),
        }
    }
    format!("sqlite://{p}?mode={mode}")
}

/// Opens (and on first use creates) the store at `at`: the writer connection, with the schema
/// applied, and the read pool.
pub async fn open(at: &Location) -> Result<(AnyConnection, AnyPool)> {
    sqlx::any::install_default_drivers();
    match at {
        Location::Sqlite(path) => open_sqlite(path).await,
        Location::Postgres(url) => super::postgres::open(url).await.map_err(StoreError),
    }
}

/// Opens the SQLite file at `path`: WAL, `synchronous = FULL` on the writer, a 10 s busy
/// timeout everywhere, and the migrations.
async fn open_sqlite(path: &Path) -> Result<(AnyConnection, AnyPool)> {
    let mut writer = AnyConnection::connect(&sqlite_url(path, "rwc")).await?;
    sqlx::Executor::execute(
        &mut writer,
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;",
    )
    .await?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut writer)
        .await?;
    let latest = MIGRATIONS.len() as i64;
    if version > latest {
        return Err(StoreError(format!(
            "{}: schema version {version} is newer than this hitl-gate ({latest})",
            path.display()
        )));
    }
    for (v, script) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(version).unwrap_or(0))
    {
        // One version, one transaction: a crash half-way leaves the previous version intact.
        let script = format!("BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {v};\nCOMMIT;");
        sqlx::Executor::execute(&mut writer, script.as_str()).await?;
    }
    let read = AnyPoolOptions::new()
        .max_connections(4)
        .after_connect(|c, _| {
            Box::pin(async move {
                sqlx::query("PRAGMA busy_timeout = 10000")
                    .execute(c)
                    .await?;
                Ok(())
            })
        })
        .connect(&sqlite_url(path, "ro"))
        .await?;
    Ok((writer, read))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_version_1_database_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // A database as version 1 left it, with one request.
        let mut c = sqlx::SqliteConnection::connect_with(&options(&path).unwrap())
            .await
            .unwrap();
        let script = format!("BEGIN;\n{SCHEMA}\nPRAGMA user_version = 1;\nCOMMIT;");
        sqlx::query(&script).execute(&mut c).await.unwrap();
        sqlx::query(
            "INSERT INTO requests (id, agent, state, created_at, deadline, data) \
             VALUES ('r1', 'a', 'pending', 1, 2, '{}')",
        )
        .execute(&mut c)
        .await
        .unwrap();
        drop(c);
        let at = Location::Sqlite(path.clone());
        let (mut w, _read) = open(&at).await.unwrap();
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut w)
            .await
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE id = 'r1'")
            .fetch_one(&mut w)
            .await
            .unwrap();
        assert_eq!(kept, 1);
        let summary: Option<String> =
            sqlx::query_scalar("SELECT summary FROM requests WHERE id = 'r1'")
                .fetch_one(&mut w)
                .await
                .unwrap();
        assert!(summary.is_some(), "the migration summarised the request");
        // The new tables and column exist; a decided request's approver cannot change.
        sqlx::query("SELECT id_sha256 FROM sessions")
            .fetch_all(&mut w)
            .await
            .unwrap();
        sqlx::query("UPDATE requests SET state = 'approved', approver = 'x' WHERE id = 'r1'")
            .execute(&mut w)
            .await
            .unwrap();
        let r = sqlx::query("UPDATE requests SET approver = 'y' WHERE id = 'r1'")
            .execute(&mut w)
            .await;
        assert!(r.is_err(), "the approver of a decided request changed");
        // Opening again changes nothing; a newer database is refused.
        drop(w);
        open(&at).await.unwrap();
        let (mut w, _) = open(&at).await.unwrap();
        sqlx::query("PRAGMA user_version = 99")
            .execute(&mut w)
            .await
            .unwrap();
        drop(w);
        let e = open(&at).await.err().unwrap();
        assert!(e.0.contains("newer than this hitl-gate"), "{e}");
    }
}
