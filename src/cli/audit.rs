//! `hitl-gate audit verify` and `hitl-gate audit export`: check the hash chain and the signed
//! checkpoints of a server database or of an export, and write evidence that verifies offline.
//! The JSON-lines export escapes what `show` escapes (`crate::escape::json_line`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::error::CliError;
use crate::audit::{self, Checkpoint, ExportLine, Row, VerifyError};
use crate::server::{self, audit_log};
use crate::signing::{Keys, KEY_FILE};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check the chain and the checkpoints; exit 1 naming the first bad seq.
    Verify(VerifyArgs),
    /// Write the log (and its checkpoints) as JSON lines or CSV to stdout.
    Export(ExportArgs),
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The server's database [default: DATA_DIR/hitl-gate.db].
    #[arg(long, conflicts_with = "file")]
    db: Option<PathBuf>,
    /// The server's PostgreSQL database (`postgres://user@host/db`; the password from
    /// PGPASSFILE or ~/.pgpass). Give --public-key with it.
    #[arg(long, conflicts_with_all = ["file", "db"])]
    database_url: Option<String>,
    /// An export written by `audit export --format jsonl`.
    #[arg(long)]
    file: Option<PathBuf>,
    /// The server's public key (hex), to check checkpoint signatures [default: from the
    /// signing key next to --db].
    #[arg(long)]
    public_key: Option<String>,
    /// The server's data dir [default: $XDG_DATA_HOME/hitl-gate].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// jsonl (verifiable with `audit verify --file`) or csv (for spreadsheets).
    #[arg(long, default_value = "jsonl")]
    format: String,
    /// Only rows at or after this time (unix ms, or YYYY-MM-DD).
    #[arg(long)]
    since: Option<String>,
    /// Only rows at or before this time (unix ms, or YYYY-MM-DD).
    #[arg(long)]
    until: Option<String>,
    /// The server's database [default: DATA_DIR/hitl-gate.db].
    #[arg(long)]
    db: Option<PathBuf>,
    /// The server's PostgreSQL database, as for `verify`.
    #[arg(long, conflicts_with = "db")]
    database_url: Option<String>,
    /// The server's data dir [default: the policy's [serve] data_dir, else
    /// $XDG_DATA_HOME/hitl-gate].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn run(cmd: Command) -> Result<i32, CliError> {
    match cmd {
        Command::Verify(a) => verify(a),
        Command::Export(a) => export(a),
    }
}

fn db_path(db: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<PathBuf, CliError> {
    match db {
        Some(db) => Ok(db),
        None => Ok(super::locate::data_dir(data_dir)?.0.join(server::DB_FILE)),
    }
}

/// The database to read: `--database-url`, else the SQLite file.
fn open_db(
    url: Option<&str>,
    db: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<DbReader, CliError> {
    match url {
        Some(u) => DbReader::open_url(u),
        None => DbReader::open(&db_path(db, data_dir)?),
    }
}

fn fail(m: impl Into<String>) -> CliError {
    CliError::new(1, m)
}

/// Reads the database page by page (read-only), as a blocking iterator of rows.
struct DbReader {
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
    fn open(path: &Path) -> Result<DbReader, CliError> {
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

    fn open_url(url: &str) -> Result<DbReader, CliError> {
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

    fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, CliError> {
        self.rt
            .block_on(audit_log::checkpoints(self.conn.as_page()))
            .map_err(|e| fail(e.to_string()))
    }

    /// All rows, as an iterator for `audit::verify`. A reader thread fetches the next page while
    /// the caller checks the current one (two pages in flight at most).
    fn rows(
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

fn verify(a: VerifyArgs) -> Result<i32, CliError> {
    let report = if let Some(file) = &a.file {
        let f = std::fs::File::open(file).map_err(|e| fail(format!("{}: {e}", file.display())))?;
        let mut rows = Vec::new();
        let mut cps = Vec::new();
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| fail(format!("{}: {e}", file.display())))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<ExportLine>(&line) {
                Ok(ExportLine::Row(r)) => rows.push(r),
                Ok(ExportLine::Checkpoint(c)) => cps.push(c),
                Err(e) => {
                    return Err(fail(format!(
                        "{} line {}: not an export line ({e}): the file was edited",
                        file.display(),
                        i + 1
                    )))
                }
            }
        }
        let key = a.public_key.clone();
        if key.is_none() {
            eprintln!("note: no --public-key: checkpoint signatures are not checked");
        }
        // An export made with --since starts after row 1: verify the window it holds, anchored
        // on its first row's prev_hash, and say so.
        let start = match rows.first() {
            Some(r) if r.seq > 1 => {
                eprintln!(
                    "note: the export starts at seq {}; rows before it are not in the file and \
                     not covered",
                    r.seq
                );
                (r.seq, r.prev_hash.clone())
            }
            _ => (1, audit::GENESIS.to_string()),
        };
        audit::verify_from(rows.into_iter().map(Ok), &cps, key.as_deref(), start)
    } else if let Some(url) = &a.database_url {
        let Some(key) = a.public_key.clone() else {
            return Err(CliError::new(
                2,
                "--database-url needs --public-key (the server's, hitl-gate keys show)",
            ));
        };
        let mut db = DbReader::open_url(url)?;
        let cps = db.checkpoints()?;
        audit::verify(db.rows(None, None), &cps, Some(&key))
    } else {
        let path = db_path(a.db.clone(), a.data_dir.clone())?;
        let key = match &a.public_key {
            Some(k) => Some(k.clone()),
            None => {
                let dir = path.parent().unwrap_or(Path::new("."));
                dir.join(KEY_FILE)
                    .exists()
                    .then(|| Keys::load_or_create(dir).map(|k| k.public_hex()))
                    .transpose()
                    .map_err(fail)?
            }
        };
        if key.is_none() {
            eprintln!("note: no --public-key and no signing key beside the database: checkpoint signatures are not checked");
        }
        let mut db = DbReader::open(&path)?;
        let cps = db.checkpoints()?;
        // Streamed page by page: a large log is never held in memory at once.
        audit::verify(db.rows(None, None), &cps, key.as_deref())
    };
    match report {
        Ok(r) => {
            println!(
                "audit log ok: {} rows (seq {}..{}), {} signed checkpoints, head {}",
                r.rows,
                r.last_seq + 1 - i64::try_from(r.rows).unwrap_or(0),
                r.last_seq,
                r.checkpoints,
                r.head_hash
            );
            Ok(0)
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// One JSON line of the export. The agent's strings in it (argv, reason, diff, inside `body`)
/// hold no character `show` would escape (bidi controls, zero-width characters, line and
/// paragraph separators, C1 controls): each is a JSON `\uXXXX` escape, so the line parses back
/// to the very strings that were hashed and `audit verify --file` still checks it.
fn export_line(line: &ExportLine) -> String {
    crate::escape::json_line(line).expect("an export line serialises")
}

/// `1732406400000` (unix ms) or `2026-11-24` (UTC midnight).
fn parse_time(s: &str) -> Result<i64, CliError> {
    crate::audit::parse_time(s).map_err(fail)
}

fn export(a: ExportArgs) -> Result<i32, CliError> {
    let since = a.since.as_deref().map(parse_time).transpose()?;
    let until = a.until.as_deref().map(parse_time).transpose()?;
    let mut db = open_db(a.database_url.as_deref(), a.db, a.data_dir)?;
    let cps = db.checkpoints()?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let w = |e: std::io::Error| fail(format!("writing the export: {e}"));
    match a.format.as_str() {
        "jsonl" => {
            let mut last = 0;
            for row in db.rows(since, until) {
                let row = row.map_err(|e| fail(e.to_string()))?;
                last = row.seq;
                writeln!(out, "{}", export_line(&ExportLine::Row(row))).map_err(w)?;
            }
            for cp in cps.into_iter().filter(|c| c.seq <= last) {
                writeln!(out, "{}", export_line(&ExportLine::Checkpoint(cp))).map_err(w)?;
            }
        }
        "csv" => {
            writeln!(out, "seq,at,kind,request_id,actor,body,prev_hash,hash").map_err(w)?;
            let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            for row in db.rows(since, until) {
                let r = row.map_err(|e| fail(e.to_string()))?;
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{}",
                    r.seq,
                    r.at,
                    q(&r.kind),
                    q(r.request_id.as_deref().unwrap_or("")),
                    q(&r.actor),
                    q(&r.body),
                    r.prev_hash,
                    r.hash
                )
                .map_err(w)?;
            }
        }
        f => {
            return Err(CliError::new(
                2,
                format!("--format {f:?}: use jsonl or csv"),
            ))
        }
    }
    out.flush().map_err(w)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_parse_to_utc_midnight() {
        assert_eq!(super::parse_time("1970-01-01").unwrap(), 0);
        assert_eq!(super::parse_time("2026-11-24").unwrap(), 1_795_478_400_000);
        assert_eq!(super::parse_time("42").unwrap(), 42);
        for bad in [
            "-1",
            "9223372036854775807",
            "1969-12-31",
            "10000-01-01",
            "2026-13-01",
        ] {
            assert!(super::parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(
            super::parse_time("9999-12-31").unwrap(),
            253_402_300_799_999 - 86_400_000 + 1
        );
        assert!(super::parse_time("2026-13-01").is_err());
    }
}
