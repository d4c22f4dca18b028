//! The PostgreSQL backend (`[serve] database_url = "postgres://…"`): its schema, migrated at
//! start under an advisory lock (several replicas may start at once), and the few functions
//! that let the store's SQL, written once, run on both backends.
//!
//! The same rules as SQLite's triggers hold, as PL/pgSQL triggers: the audit log and the
//! checkpoints are append-only, requests are never deleted, a decided request cannot change,
//! an outcome is recorded once, approvals only grow while pending. On PostgreSQL the owner of the
//! tables can still drop the triggers, so run the server as a role that owns nothing and may
//! only `SELECT, INSERT` on `audit`, `audit_tree`, `checkpoints` and `cosignatures`
//! (docs/deploy.md).
//!
//! Every write transaction first takes one transaction-scoped advisory lock (`CHAIN_LOCK`):
//! the writers of all replicas are serialized, so the audit chain never forks and each
//! conditional update sees the last committed state.

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection};

/// A failure, as the store reports it.
type Result<T> = std::result::Result<T, String>;

fn err(e: sqlx::Error) -> String {
    e.to_string()
}

/// The advisory lock every write transaction holds (the audit chain's head).
pub const CHAIN_LOCK: i64 = 0x6869_746c_0001;
/// The advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x6869_746c_0002;

/// SQLite's JSON and string functions the store's SQL uses, for PostgreSQL (on `text`, the
/// type the JSON columns have on both backends). `json_extract` takes SQLite's paths
/// (`$.a.b[0]`) and returns text.
const COMPAT: &str = r#"
CREATE OR REPLACE FUNCTION json_array_length(t text) RETURNS integer
    LANGUAGE sql IMMUTABLE AS $$ SELECT json_array_length(t::json) $$;
CREATE OR REPLACE FUNCTION json_extract(t text, path text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
    SELECT (t::jsonb) #>> string_to_array(
        regexp_replace(substr(path, 3), '\[(\d+)\]', '.\1', 'g'), '.')
$$;
CREATE OR REPLACE FUNCTION json_each(t text) RETURNS TABLE (key text, value text)
    LANGUAGE sql IMMUTABLE AS $$
    SELECT (ord - 1)::text, v FROM jsonb_array_elements_text(t::jsonb) WITH ORDINALITY AS e(v, ord)
$$;
CREATE OR REPLACE FUNCTION instr(haystack text, needle text) RETURNS integer
    LANGUAGE sql IMMUTABLE AS $$ SELECT strpos(haystack, needle) $$;
"#;

/// Version 1: the SQLite schema's versions 1 to 4 at once.
const SCHEMA_V1: &str = r#"
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'cancelled')),
    created_at BIGINT NOT NULL,
    deadline BIGINT NOT NULL,
    data TEXT NOT NULL,
    decision TEXT,
    outcome TEXT,
    approver TEXT,
    summary TEXT,
    approvals TEXT NOT NULL DEFAULT '[]',
    escalated_at BIGINT,
    idem_key TEXT
);
CREATE INDEX requests_by_state ON requests (state, deadline);
CREATE INDEX requests_by_created ON requests (created_at);
CREATE INDEX requests_to_escalate ON requests (state, escalated_at, created_at);
CREATE UNIQUE INDEX requests_by_idem_key ON requests (agent, idem_key) WHERE idem_key IS NOT NULL;

CREATE FUNCTION hitl_requests_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'requests are never deleted';
    END IF;
    IF OLD.state <> 'pending' AND (NEW.state IS DISTINCT FROM OLD.state
        OR NEW.decision IS DISTINCT FROM OLD.decision OR NEW.data IS DISTINCT FROM OLD.data
        OR NEW.id IS DISTINCT FROM OLD.id OR NEW.deadline IS DISTINCT FROM OLD.deadline
        OR NEW.approver IS DISTINCT FROM OLD.approver) THEN
        RAISE EXCEPTION 'a decided request cannot change';
    END IF;
    IF OLD.outcome IS NOT NULL AND NEW.outcome IS DISTINCT FROM OLD.outcome THEN
        RAISE EXCEPTION 'the outcome is already recorded';
    END IF;
    IF NEW.approvals IS DISTINCT FROM OLD.approvals AND (OLD.state <> 'pending'
        OR json_array_length(NEW.approvals::json) <= json_array_length(OLD.approvals::json)) THEN
        RAISE EXCEPTION 'approvals are only added, and only while the request is pending';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER requests_guard BEFORE UPDATE OR DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION hitl_requests_guard();

CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT,
    actor TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE checkpoints (
    seq BIGINT PRIMARY KEY,
    head_hash TEXT NOT NULL,
    at BIGINT NOT NULL,
    signature TEXT NOT NULL
);
CREATE FUNCTION hitl_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION hitl_append_only();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION hitl_append_only();

CREATE TABLE sessions (
    id_sha256 TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT,
    name TEXT,
    groups TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    csrf TEXT NOT NULL
);
CREATE TABLE logins (
    state_sha256 TEXT PRIMARY KEY,
    browser_sha256 TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to TEXT NOT NULL,
    max_age BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX logins_by_age ON logins (created_at);

CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    sink TEXT NOT NULL,
    event TEXT NOT NULL,
    request_id TEXT,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (delivered_at, next_at);

CREATE TABLE signing_key (public_key TEXT NOT NULL);
CREATE UNIQUE INDEX signing_key_is_one ON signing_key ((true));
"#;

/// Version 2: until when the agent's shim waits for a pending request (renewed by its
/// long-polls, cleared when it stops waiting: `max_wait`, a harness's SIGTERM); and the claim
/// of the one shim that runs an approval (set once, by the conditional update).
const SCHEMA_V2: &str = r#"
ALTER TABLE requests ADD COLUMN agent_waiting_until BIGINT;
ALTER TABLE requests ADD COLUMN run_claim TEXT;
"#;

/// Version 3: SQLite's version 6, the audit log as a transparency log (`db.rs` says what each
/// table holds): the tree's stored hashes per row, the checkpoints' C2SP notes, the witnesses'
/// cosignatures; append-only like the log.
const SCHEMA_V3: &str = r#"
CREATE TABLE audit_tree (
    seq BIGINT PRIMARY KEY,
    hashes BYTEA NOT NULL
);
ALTER TABLE checkpoints ADD COLUMN note TEXT;
CREATE TABLE cosignatures (
    seq BIGINT NOT NULL,
    witness TEXT NOT NULL,
    note TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (seq, witness)
);
CREATE TRIGGER audit_tree_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_tree
    FOR EACH STATEMENT EXECUTE FUNCTION hitl_append_only();
CREATE TRIGGER cosignatures_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION hitl_append_only();
"#;

/// Every schema version's script, in order: version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, SCHEMA_V3];

/// The `application_name` of the writer's connection (`pg_stat_activity` shows it).
pub const WRITER_NAME: &str = "hitl-gate-writer";

/// `url` with the connection's `application_name` set to `name` (appended: a name the URL
/// already gives is overridden).
pub fn named(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={name}")
}

/// Connects to the database at `url`: the writer connection, with the schema migrated, and
/// the read pool.
pub async fn open(url: &str) -> Result<(AnyConnection, AnyPool)> {
    let mut writer = AnyConnection::connect(&named(url, WRITER_NAME))
        .await
        .map_err(|e| format!("cannot connect to the PostgreSQL database: {e}"))?;
    migrate(&mut writer).await?;
    let read = AnyPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .map_err(err)?;
    Ok((writer, read))
}

async fn migrate(c: &mut AnyConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *c)
        .await
        .map_err(err)?;
    let r = migrate_locked(c).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *c)
        .await;
    r
}

async fn migrate_locked(c: &mut AnyConnection) -> Result<()> {
    // A role that owns nothing (docs/deploy.md) may start a replica of an up-to-date database:
    // nothing is created or replaced unless a migration is due.
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('hitl_gate_schema')::text")
        .fetch_one(&mut *c)
        .await
        .map_err(err)?;
    if exists.is_none() {
        sqlx::Executor::execute(
            &mut *c,
            "CREATE TABLE hitl_gate_schema (version BIGINT NOT NULL)",
        )
        .await
        .map_err(err)?;
    }
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM hitl_gate_schema")
        .fetch_one(&mut *c)
        .await
        .map_err(err)?;
    let version = version.unwrap_or(0);
    let latest = MIGRATIONS.len() as i64;
    if version > latest {
        return Err(format!(
            "the PostgreSQL database has schema version {version}, newer than this hitl-gate \
             ({latest})"
        ));
    }
    for (v, script) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(version).unwrap_or(0))
    {
        // One version, one transaction: a failure half-way leaves the previous version intact.
        // Version 1 brings the compatibility functions too (a later version that changes
        // them replaces them in its own script).
        let compat = if v == 1 { COMPAT } else { "" };
        let script = format!(
            "BEGIN;\n{compat}\n{script}\nINSERT INTO hitl_gate_schema (version) VALUES ({v});\nCOMMIT;"
        );
        sqlx::Executor::execute(&mut *c, script.as_str())
            .await
            .map_err(err)?;
    }
    Ok(())
}

/// Refuses a replica whose signing key is not the one the database has recorded (the first
/// replica records its own; the table holds one row at most, so two first starts at once
/// cannot both record theirs): every replica signs with the same key, the one the shims pin.
pub async fn check_signing_key(url: &str, public_hex: &str) -> Result<()> {
    let mut c = AnyConnection::connect(url).await.map_err(err)?;
    sqlx::query("INSERT INTO signing_key (public_key) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(public_hex)
        .execute(&mut c)
        .await
        .map_err(err)?;
    let recorded: String = sqlx::query_scalar("SELECT public_key FROM signing_key LIMIT 1")
        .fetch_one(&mut c)
        .await
        .map_err(err)?;
    if recorded != public_hex {
        return Err(format!(
            "this replica's signing key ({public_hex}) is not the one of the database's other \
             replicas ({recorded}): give every replica the same key file"
        ));
    }
    Ok(())
}
