//! The database `hitl-gate audit verify` and `export` read (`audit.rs`): a SQLite file read
//! natively and read-only, or PostgreSQL through `Any`, page by page (`server::audit_log`), as
//! a blocking iterator of rows; its checkpoints, the witnesses' cosignatures, and the evidence
//! an export ends with (`server::audit_evidence`).

use std::path::Path;

use super::error::CliError;
use crate::audit::{Checkpoint, Row, VerifyError};
use crate::server::{self, audit_evidence, audit_log};

fn fail(m: impl Into<String>) -> CliError {
    CliError::new(1, m)
}

/// Reads the database page by page (read-only), as a blocking iterator of rows.
pub struct DbReader {
    rt: tokio::runtime::Runtime,
    conn: Conn,
}

/// A SQLite file is read natively (faster than through `Any`); PostgreSQL through `Any`.
enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Any(sqlx::AnyConnection),
}

impl Conn {
    fn as_page(&mut self) -> audit_log::PageConn<'_> {
        match self {
            Conn::Sqlite(c) => audit_log::PageConn::Sqlite(c),
            Conn::Any(c) => audit_log::PageConn::Any(c),
        }
    }
}

impl DbReader {
    pub fn open(path: &Path) -> Result<DbReader, CliError> {
        use sqlx::ConnectOptions;
        if !path.exists() {
            return Err(fail(format!("{}: no such database", path.display())));
        }
        let url = server::sqlite_url(path, "ro");
        let opts: sqlx::sqlite::SqliteConnectOptions =
            url.parse().map_err(|e: sqlx::Error| fail(e.to_string()))?;
        Self::connect(&path.display().to_string(), |rt| {
            rt.block_on(opts.connect()).map(Conn::Sqlite)
        })
    }

    pub fn open_url(url: &str) -> Result<DbReader, CliError> {
        sqlx::any::install_default_drivers();
        Self::connect("the PostgreSQL database", |rt| {
            rt.block_on(<sqlx::AnyConnection as sqlx::Connection>::connect(url))
                .map(Conn::Any)
        })
    }

    fn connect(
        what: &str,
        f: impl FnOnce(&tokio::runtime::Runtime) -> sqlx::Result<Conn>,
    ) -> Result<DbReader, CliError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let conn = f(&rt).map_err(|e| fail(format!("{what}: {e}")))?;
        Ok(DbReader { rt, conn })
    }

    /// The next page of rows after `after` (see `server::audit_log::page`).
    fn page(
        &mut self,
        after: i64,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Result<Vec<Row>, String> {
        self.rt
            .block_on(audit_log::page(self.conn.as_page(), after, since, until))
            .map_err(|e| e.to_string())
    }

    pub fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, CliError> {
        self.rt
            .block_on(audit_log::checkpoints(self.conn.as_page()))
            .map_err(|e| fail(e.to_string()))
    }

    /// Every checkpoint as a witness cosigned it.
    pub fn cosigned(&mut self) -> Result<Vec<String>, CliError> {
        let all = self
            .rt
            .block_on(audit_log::cosigned(self.conn.as_page()))
            .map_err(|e| fail(e.to_string()))?;
        Ok(all.into_iter().map(|(_, n)| n).collect())
    }

    /// The first and last seq of the rows in `since..=until`.
    pub fn bounds(
        &mut self,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Result<(i64, i64), CliError> {
        self.rt
            .block_on(audit_log::bounds(self.conn.as_page(), since, until))
            .map_err(|e| fail(e.to_string()))
    }

    /// The checkpoints an export of rows `first..=last` ends with.
    pub fn evidence(&mut self, first: i64, last: i64) -> Result<(Vec<Checkpoint>, bool), CliError> {
        self.rt
            .block_on(audit_evidence::for_export(self.conn.as_page(), first, last))
            .map_err(|e| fail(e.to_string()))
    }

    /// All rows, as an iterator for `audit::verify`. A reader thread fetches the next page while
    /// the caller checks the current one (two pages in flight at most).
    pub fn rows(
        self,
        since: Option<i64>,
        until: Option<i64>,
    ) -> impl Iterator<Item = Result<Row, VerifyError>> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Row>, (i64, String)>>(2);
        std::thread::spawn(move || {
            let mut db = self;
            let mut after = 0i64;
            loop {
                match db.page(after, since, until) {
                    Ok(p) if p.is_empty() => return,
                    Ok(p) => {
                        after = p.last().map_or(after, |r| r.seq);
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err((after + 1, e)));
                        return;
                    }
                }
            }
        });
        rx.into_iter()
            .flat_map(|page| -> Vec<Result<Row, VerifyError>> {
                match page {
                    Ok(rows) => rows.into_iter().map(Ok).collect(),
                    Err((seq, e)) => vec![Err(VerifyError {
                        seq,
                        why: format!("cannot read the database: {e}"),
                    })],
                }
            })
    }
}
