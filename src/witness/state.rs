//! The witness's durable state, a SQLite file in its own data dir (`witness.db`, WAL,
//! `synchronous = FULL`): its name; per log origin the newest checkpoint it cosigned
//! (`latest`); and a journal of every checkpoint it cosigned and every piece of evidence it
//! refused (`journal`, append-only by trigger).
//!
//! At open the two are compared: a `latest` that is behind (or not) what the journal says was
//! cosigned means the state was rolled back or edited, and the witness refuses to start rather
//! than cosign from it. (A copy of the whole data dir put back from earlier cannot be told from
//! the inside; the logs that hold its cosignatures tell it instead: `cosign.rs`, and
//! `hitl-gate audit verify`, which checks every cosigned checkpoint against the others.)

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

/// The state file inside the data dir.
pub const DB_FILE: &str = "witness.db";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS config (name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS latest (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root TEXT NOT NULL,
    note TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    origin TEXT NOT NULL,
    size INTEGER NOT NULL,
    root TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('cosigned', 'refused')),
    detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
"#;

/// The newest checkpoint cosigned for one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    pub size: u64,
    /// Base64.
    pub root: String,
    /// The checkpoint as cosigned: the log's signature and this witness's.
    pub note: String,
}

/// One journal line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    pub at: i64,
    pub origin: String,
    pub size: i64,
    pub root: String,
    pub event: String,
    pub detail: String,
}

pub struct State {
    db: SqliteConnection,
}

fn err(e: sqlx::Error) -> String {
    e.to_string()
}

impl State {
    /// Opens (creating) the state in `dir`; its name is `name` (given the first time, and the
    /// same ever after). Refuses a state that was rolled back behind its journal.
    pub async fn open(dir: &Path, name: Option<&str>) -> Result<(State, String), String> {
        let db = SqliteConnectOptions::new()
            .filename(dir.join(DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .connect()
            .await
            .map_err(|e| format!("{}: {e}", dir.join(DB_FILE).display()))?;
        let mut s = State { db };
        sqlx::Executor::execute(&mut s.db, SCHEMA)
            .await
            .map_err(err)?;
        let name = s.name(name).await?;
        s.check().await?;
        Ok((s, name))
    }

    async fn name(&mut self, given: Option<&str>) -> Result<String, String> {
        let stored: Option<String> = sqlx::query_scalar("SELECT name FROM config")
            .fetch_optional(&mut self.db)
            .await
            .map_err(err)?;
        match (stored, given) {
            (Some(s), Some(g)) if s != g => Err(format!(
                "this witness is named {s:?}, not {g:?} (its key ID depends on the name)"
            )),
            (Some(s), _) => Ok(s),
            (None, Some(g)) => {
                sqlx::query("INSERT INTO config (name) VALUES ($1)")
                    .bind(g)
                    .execute(&mut self.db)
                    .await
                    .map_err(err)?;
                Ok(g.to_string())
            }
            (None, None) => Err("a new witness needs --name (e.g. witness.example.com/w1)".into()),
        }
    }

    /// The state must be where the journal says it is, for every origin.
    async fn check(&mut self) -> Result<(), String> {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT j.origin, MAX(j.size), (SELECT size FROM latest l WHERE l.origin = j.origin) \
             FROM journal j WHERE j.event = 'cosigned' GROUP BY j.origin",
        )
        .fetch_all(&mut self.db)
        .await
        .map_err(err)?;
        for (origin, journal, latest) in rows {
            if latest != Some(journal) {
                return Err(format!(
                    "the state for {origin:?} is at size {}, but the journal records cosigning \
                     size {journal}: the state was rolled back or edited; this witness will not \
                     cosign from it",
                    latest.map_or("none".into(), |l| l.to_string())
                ));
            }
        }
        Ok(())
    }

    /// The newest checkpoint cosigned for `origin`.
    pub async fn latest(&mut self, origin: &str) -> Result<Option<Latest>, String> {
        let r: Option<(i64, String, String)> =
            sqlx::query_as("SELECT size, root, note FROM latest WHERE origin = $1")
                .bind(origin)
                .fetch_optional(&mut self.db)
                .await
                .map_err(err)?;
        Ok(r.map(|(size, root, note)| Latest {
            size: u64::try_from(size).unwrap_or(0),
            root,
            note,
        }))
    }

    /// Newest cosigned checkpoint of the origin whose SHA-256 is `origin_hash` (hex).
    pub async fn latest_by_hash(&mut self, origin_hash: &str) -> Result<Option<String>, String> {
        let all: Vec<(String, String)> = sqlx::query_as("SELECT origin, note FROM latest")
            .fetch_all(&mut self.db)
            .await
            .map_err(err)?;
        Ok(all
            .into_iter()
            .find(|(o, _)| crate::hex::sha256(o.as_bytes()) == origin_hash)
            .map(|(_, n)| n))
    }

    /// Records a cosigned checkpoint, durably, before it is answered.
    pub async fn cosigned(&mut self, origin: &str, l: &Latest, at: i64) -> Result<(), String> {
        let mut tx = self.db.begin().await.map_err(err)?;
        let size = i64::try_from(l.size).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO latest (origin, size, root, note, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (origin) DO UPDATE SET size = $2, root = $3, note = $4, at = $5",
        )
        .bind(origin)
        .bind(size)
        .bind(&l.root)
        .bind(&l.note)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        journal(&mut tx, at, origin, size, &l.root, "cosigned", "").await?;
        tx.commit().await.map_err(err)
    }

    /// Records evidence the witness refused (a truncation, a fork, an inconsistent proof, a
    /// claim that it cosigned more than it holds).
    pub async fn refused(
        &mut self,
        origin: &str,
        size: u64,
        root: &str,
        why: &str,
        at: i64,
    ) -> Result<(), String> {
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        journal(&mut self.db, at, origin, size, root, "refused", why).await
    }

    /// The whole journal, oldest first.
    pub async fn journal(&mut self) -> Result<Vec<Event>, String> {
        let rows: Vec<(i64, String, i64, String, String, String)> =
            sqlx::query_as("SELECT at, origin, size, root, event, detail FROM journal ORDER BY id")
                .fetch_all(&mut self.db)
                .await
                .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(at, origin, size, root, event, detail)| Event {
                at,
                origin,
                size,
                root,
                event,
                detail,
            })
            .collect())
    }
}

async fn journal(
    c: &mut SqliteConnection,
    at: i64,
    origin: &str,
    size: i64,
    root: &str,
    event: &str,
    detail: &str,
) -> Result<(), String> {
    sqlx::query(
        "INSERT INTO journal (at, origin, size, root, event, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(at)
    .bind(origin)
    .bind(size)
    .bind(root)
    .bind(event)
    .bind(detail)
    .execute(&mut *c)
    .await
    .map(|_| ())
    .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(size: u64) -> Latest {
        Latest {
            size,
            root: format!("root-{size}"),
            note: format!("note-{size}"),
        }
    }

    #[tokio::test]
    async fn a_state_behind_its_journal_is_refused_and_a_restart_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, name) = State::open(dir.path(), Some("w.example/1")).await.unwrap();
        assert_eq!(name, "w.example/1");
        s.cosigned("log", &at(4), 1).await.unwrap();
        s.cosigned("log", &at(8), 2).await.unwrap();
        drop(s);
        // A restart keeps the name and the state.
        let (mut s, name) = State::open(dir.path(), None).await.unwrap();
        assert_eq!(name, "w.example/1");
        assert_eq!(s.latest("log").await.unwrap(), Some(at(8)));
        assert!(
            State::open(dir.path(), Some("other")).await.is_err(),
            "renamed"
        );
        // The state put back to size 4 behind the journal's back.
        sqlx::query("UPDATE latest SET size = 4, root = 'root-4', note = 'note-4'")
            .execute(&mut s.db)
            .await
            .unwrap();
        drop(s);
        let e = State::open(dir.path(), None).await.err().unwrap();
        assert!(e.contains("rolled back or edited"), "{e}");
    }
}
