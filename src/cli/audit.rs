//! `hitl-gate audit verify`, `export` and `log-key`: check the hash chain, the Merkle tree, the
//! signed checkpoints and the witnesses' cosignatures of a server database or of an export
//! (`crate::audit::witnessed`), write evidence that verifies offline (the export ends with the
//! checkpoints, the last row's inclusion proof among them: `server::audit_evidence`), and print
//! the log's verifier key for a witness. The JSON-lines export escapes what `show` escapes
//! (`crate::escape::json_line`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::audit_db::DbReader;
use super::error::CliError;
use crate::audit::note::{VKey, ALG_COSIGNATURE_V1, ALG_ED25519};
use crate::audit::witnessed::{self, Options, TreeReport};
use crate::audit::{self, Checkpoint, ExportLine, Report, Row, VerifyError};
use crate::server::{self, audit_log};
use crate::signing::{Keys, KEY_FILE};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check the chain and the checkpoints; exit 1 naming the first bad seq.
    Verify(VerifyArgs),
    /// Write the log (and its checkpoints) as JSON lines or CSV to stdout.
    Export(ExportArgs),
    /// Print the log's verifier key (`origin+id+base64`), for a witness's --log.
    LogKey(LogKeyArgs),
}

#[derive(clap::Args)]
pub struct LogKeyArgs {
    /// The server's public key (hex) [default: the signing key in --data-dir].
    #[arg(long)]
    public_key: Option<String>,
    /// The log's origin, `[serve] log_origin` [default: hitl-gate/ and the key's first 16 hex].
    #[arg(long)]
    origin: Option<String>,
    /// The server's data dir [default: $XDG_DATA_HOME/hitl-gate].
    #[arg(long)]
    data_dir: Option<PathBuf>,
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
    /// A witness's cosigner key (`hitl-gate witness key`): every row must be included in a
    /// checkpoint it cosigned. Repeat for several witnesses.
    #[arg(long = "witness-key")]
    witness_keys: Vec<String>,
    /// A signed checkpoint kept elsewhere (from a witness's `GET /<sha256(origin)>/checkpoint`,
    /// or an earlier export): the log must be consistent with it. Repeat for several.
    #[arg(long = "checkpoint")]
    checkpoints: Vec<PathBuf>,
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
        Command::LogKey(a) => log_key(a),
    }
}

fn log_key(a: LogKeyArgs) -> Result<i32, CliError> {
    let pk = match a.public_key {
        Some(k) => k,
        None => {
            let (dir, _) = super::locate::data_dir(a.data_dir)?;
            if !dir.join(KEY_FILE).exists() {
                return Err(fail(format!(
                    "{}: no signing key; give --public-key",
                    dir.display()
                )));
            }
            Keys::load_or_create(&dir).map_err(fail)?.public_hex()
        }
    };
    let origin = a.origin.unwrap_or_else(|| audit_log::default_origin(&pk));
    println!(
        "{}",
        VKey::from_hex(&origin, ALG_ED25519, &pk).map_err(fail)?
    );
    Ok(0)
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

/// An export's rows and checkpoints.
fn read_export(file: &Path) -> Result<(Vec<Row>, Vec<Checkpoint>), CliError> {
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
    Ok((rows, cps))
}

/// The witnesses' keys of `--witness-key`, and the checkpoints of `--checkpoint`.
fn evidence_args(a: &VerifyArgs) -> Result<(Vec<VKey>, Vec<String>), CliError> {
    let mut keys = Vec::new();
    for k in &a.witness_keys {
        let v = VKey::parse(k).map_err(|e| CliError::new(2, format!("--witness-key: {e}")))?;
        if v.alg != ALG_COSIGNATURE_V1 {
            return Err(CliError::new(
                2,
                format!("--witness-key {k}: not a cosigner key"),
            ));
        }
        keys.push(v);
    }
    let mut kept = Vec::new();
    for f in &a.checkpoints {
        kept.push(std::fs::read_to_string(f).map_err(|e| fail(format!("{}: {e}", f.display())))?);
    }
    Ok((keys, kept))
}

/// The public key `--public-key` names, else the one beside the database (if any).
fn key_beside(a: &VerifyArgs, path: &Path) -> Result<Option<String>, CliError> {
    if let Some(k) = &a.public_key {
        return Ok(Some(k.clone()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    dir.join(KEY_FILE)
        .exists()
        .then(|| Keys::load_or_create(dir).map(|k| k.public_hex()))
        .transpose()
        .map_err(fail)
}

fn verify(a: VerifyArgs) -> Result<i32, CliError> {
    let (witnesses, mut extra) = evidence_args(&a)?;
    let unchecked = "checkpoint signatures are not checked";
    let check = |rows: Box<dyn Iterator<Item = Result<Row, VerifyError>>>,
                 cps: &[Checkpoint],
                 key: Option<&str>,
                 extra: &[String],
                 start: (i64, String)| {
        let opts = Options {
            public_key: key,
            witnesses: &witnesses,
            extra,
        };
        witnessed::verify(rows, cps, start, &opts)
    };
    let result = if let Some(file) = &a.file {
        let (rows, cps) = read_export(file)?;
        if a.public_key.is_none() {
            eprintln!("note: no --public-key: {unchecked}");
        }
        // An export made with --since starts after row 1: verify the window it holds, anchored
        // on its first row's prev_hash and its last row's inclusion proof, and say so.
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
        let rows = Box::new(rows.into_iter().map(Ok));
        check(rows, &cps, a.public_key.as_deref(), &extra, start)
    } else if let Some(url) = &a.database_url {
        let Some(key) = a.public_key.clone() else {
            return Err(CliError::new(
                2,
                "--database-url needs --public-key (the server's, hitl-gate keys show)",
            ));
        };
        let mut db = DbReader::open_url(url)?;
        let cps = db.checkpoints()?;
        extra.extend(db.cosigned()?);
        let rows = Box::new(db.rows(None, None));
        check(
            rows,
            &cps,
            Some(&key),
            &extra,
            (1, audit::GENESIS.to_string()),
        )
    } else {
        let path = db_path(a.db.clone(), a.data_dir.clone())?;
        let key = key_beside(&a, &path)?;
        if key.is_none() {
            eprintln!("note: no --public-key and no signing key beside the database: {unchecked}");
        }
        let mut db = DbReader::open(&path)?;
        let cps = db.checkpoints()?;
        extra.extend(db.cosigned()?);
        // Streamed page by page: a large log is never held in memory at once.
        let rows = Box::new(db.rows(None, None));
        check(
            rows,
            &cps,
            key.as_deref(),
            &extra,
            (1, audit::GENESIS.to_string()),
        )
    };
    match result {
        Ok((r, tree)) => {
            println!("{}", summary(&r, &tree));
            Ok(0)
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// The one line `verify` prints when everything checks.
fn summary(r: &Report, tree: &TreeReport) -> String {
    let mut s = format!(
        "audit log ok: {} rows (seq {}..{}), {} signed checkpoints, head {}",
        r.rows,
        r.last_seq + 1 - i64::try_from(r.rows).unwrap_or(0),
        r.last_seq,
        r.checkpoints,
        r.head_hash
    );
    if let (Some(origin), Some(root)) = (&tree.origin, &tree.root) {
        s.push_str(&format!(
            "; tree of {origin}: {} checkpoints checked, root {root} at size {}",
            tree.checked, tree.size
        ));
    }
    if tree.unchecked > 0 {
        s.push_str(&format!(
            " ({} outside this export not checked)",
            tree.unchecked
        ));
    }
    for (w, size) in &tree.cosigned {
        s.push_str(&format!("; cosigned by {w} up to seq {size}"));
    }
    s
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
    let (first, last) = db.bounds(since, until)?;
    let (cps, covered) = db.evidence(first, last)?;
    if !covered && last > 0 {
        eprintln!(
            "note: row {last} is not yet in a signed checkpoint (the server signs one every \
             [serve] checkpoint_every rows and checkpoint_interval): the export carries no \
             inclusion proof for it"
        );
    }
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let w = |e: std::io::Error| fail(format!("writing the export: {e}"));
    match a.format.as_str() {
        "jsonl" => {
            // Rows appended since `bounds` are left out: the evidence is for `first..=last`.
            for row in db.rows(since, until) {
                let row = row.map_err(|e| fail(e.to_string()))?;
                if row.seq > last {
                    break;
                }
                writeln!(out, "{}", export_line(&ExportLine::Row(row))).map_err(w)?;
            }
            for cp in cps {
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
