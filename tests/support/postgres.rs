//! A throwaway PostgreSQL 15 cluster for the tests: `initdb` and `pg_ctl` from the machine's
//! postgresql-15 (`scripts/fetch-test-tools` installs the pinned Debian package), run as the
//! `postgres` OS user when the tests run as root (PostgreSQL refuses root), listening on
//! 127.0.0.1 at a free port, with trust authentication for the role `hitl`. One cluster per test
//! process ([`shared`]), one database per server; a watchdog shell stops the cluster when the
//! test process is gone.
//!
//! `HITL_TEST_STORE=postgres` makes every [`super::server::TestServer`] use a database of it
//! (`scripts/test` runs the store tests once that way).

use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct TempPostgres {
    /// The cluster's directory (data, log, socket); the watchdog removes it.
    dir: PathBuf,
    pub port: u16,
    /// The OS user the cluster runs as (`postgres` when the tests run as root).
    owner: Option<(u32, u32)>,
    /// `fsync` on (the benchmarks), else off (the tests).
    durable: bool,
}

/// The server options of a cluster at `dir` on `port`.
fn server_options(dir: &Path, port: u16, durable: bool) -> String {
    format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=400",
        dir.display(),
        if durable { "on" } else { "off" }
    )
}

/// Whether the servers of this test run use PostgreSQL (`HITL_TEST_STORE=postgres`).
pub fn wanted() -> bool {
    std::env::var("HITL_TEST_STORE").as_deref() == Ok("postgres")
}

/// The cluster of this test process, started on first use.
pub fn shared() -> &'static TempPostgres {
    static PG: OnceLock<TempPostgres> = OnceLock::new();
    PG.get_or_init(TempPostgres::start)
}

fn postgres_user() -> Option<(u32, u32)> {
    if !nix::unistd::getuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("PostgreSQL refuses to run as root and there is no postgres user: install postgresql-15 (scripts/fetch-test-tools does)");
    let f: Vec<&str> = line.split(':').collect();
    Some((f[2].parse().unwrap(), f[3].parse().unwrap()))
}

impl TempPostgres {
    /// Runs `bin` of PostgreSQL as the cluster's owner; panics with its output on failure.
    fn run(&self, bin: &str, args: &[&str]) {
        let mut c = Command::new(Path::new(BIN).join(bin));
        c.args(args).env("LC_ALL", "C.UTF-8").stdin(Stdio::null());
        if let Some((u, g)) = self.owner {
            c.uid(u).gid(g);
        }
        let out = c.output().unwrap_or_else(|e| {
            panic!("{BIN}/{bin}: {e}: install postgresql-15 (scripts/fetch-test-tools does)")
        });
        assert!(
            out.status.success(),
            "{bin} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a cluster of its own (most tests use [`shared`]'s).
    pub fn start() -> TempPostgres {
        Self::start_with(false)
    }

    /// A cluster whose commits are on disk (`fsync = on`), for the benchmarks.
    pub fn start_durable() -> TempPostgres {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> TempPostgres {
        assert!(
            Path::new(BIN).join("initdb").exists(),
            "{BIN}/initdb is missing: install postgresql-15 (scripts/fetch-test-tools does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("hitl-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let owner = postgres_user();
        if let Some((u, g)) = owner {
            chown(&dir, Some(u), Some(g)).unwrap();
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let pg = TempPostgres {
            dir: dir.clone(),
            port: super::server::free_port(),
            owner,
            durable,
        };
        let data = dir.join("data");
        let (data_s, dir_s) = (data.display().to_string(), dir.display().to_string());
        pg.run(
            "initdb",
            &[
                "-D",
                &data_s,
                "-U",
                "hitl",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start_server();
        // The watchdog: when this process is gone, an immediate shutdown (SIGQUIT to the
        // postmaster, which a root shell may send).
        let me = std::process::id();
        let pidfile = data.join("postmaster.pid").display().to_string();
        // Backgrounded by an outer shell that ends at once (waited for here).
        let status = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "(while kill -0 {me} 2>/dev/null; do sleep 1; done; \
                 kill -QUIT $(head -1 {pidfile}) 2>/dev/null; sleep 3; rm -rf {dir_s}) \
                 </dev/null >/dev/null 2>&1 &"
            ))
            .status()
            .unwrap();
        assert!(status.success());
        pg
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://hitl@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a fresh database and returns its URL.
    pub fn create_db(&self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}", N.fetch_add(1, Ordering::SeqCst));
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "hitl", &name],
        );
        self.url(&name)
    }

    /// Starts the cluster's server (again).
    pub fn start_server(&self) {
        let data = self.dir.join("data").display().to_string();
        let log = self.dir.join("log").display().to_string();
        let opts = server_options(&self.dir, self.port, self.durable);
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &opts, "-w", "start"],
        );
    }

    /// Stops the cluster's server (fast shutdown): connections are cut, new ones refused.
    pub fn stop_server(&self) {
        let data = self.dir.join("data").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for TempPostgres {
    /// A cluster of a test's own ([`TempPostgres::start`]) stops with it: an immediate
    /// shutdown, and its directory goes. (The shared cluster is a static, never dropped: its
    /// watchdog stops it once the test process is gone.)
    fn drop(&mut self) {
        let mut c = Command::new(Path::new(BIN).join("pg_ctl"));
        c.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((u, g)) = self.owner {
            c.uid(u).gid(g);
        }
        let _ = c.status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `policy` (TOML) with `[serve] database_url` set to a fresh database of the shared cluster;
/// and that URL.
pub fn with_database(policy: &str) -> (String, String) {
    let url = shared().create_db();
    (with_url(policy, &url), url)
}

/// `policy` (TOML) with `[serve] database_url = url`.
pub fn with_url(policy: &str, url: &str) -> String {
    let line = format!("database_url = \"{url}\"\n");
    match policy.find("[serve]\n") {
        Some(i) => {
            let at = i + "[serve]\n".len();
            format!("{}{line}{}", &policy[..at], &policy[at..])
        }
        None => format!("{policy}\n[serve]\n{line}"),
    }
}

/// The database URL of the server whose data dir is `data`, when it uses PostgreSQL.
pub fn url_of(data: &Path) -> Option<String> {
    registry().lock().unwrap().get(data).cloned()
}

/// Records that the server with data dir `data` uses the database at `url`.
pub fn register(data: &Path, url: &str) {
    registry()
        .lock()
        .unwrap()
        .insert(data.to_path_buf(), url.to_string());
}

fn registry() -> &'static std::sync::Mutex<std::collections::HashMap<PathBuf, String>> {
    static R: OnceLock<std::sync::Mutex<std::collections::HashMap<PathBuf, String>>> =
        OnceLock::new();
    R.get_or_init(Default::default)
}

/// Runs `sql` (one or more statements) on the database at `url`; the error's text if it fails.
/// For administering the cluster in tests (roles, grants) and for trying what a role may not.
pub async fn try_sql(url: &str, sql: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut c = sqlx::postgres::PgConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::Executor::execute(&mut c, sql)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Cuts the connections of the database at `url` that LISTEN (the replicas' listeners);
/// returns how many.
pub async fn cut_listeners(url: &str) -> usize {
    use sqlx::Connection;
    let mut c = sqlx::postgres::PgConnection::connect(url).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    cut.len()
}

/// Ends the connections to database `db` whose `application_name` is `name` (the server's
/// writer is `hitl-gate-writer`), from a connection to `admin` (another database of the
/// cluster); returns how many.
pub async fn terminate_named(admin: &str, db: &str, name: &str) -> usize {
    use sqlx::Connection;
    let mut c = sqlx::postgres::PgConnection::connect(admin).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND application_name = $2",
    )
    .bind(db)
    .bind(name)
    .fetch_all(&mut c)
    .await
    .unwrap();
    cut.len()
}
