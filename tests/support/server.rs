//! Server harness: a real `hitl-gate serve` in-process (through `launch_with_listener` on
//! `127.0.0.1:0`, real SQLite in a temp dir, or with `HITL_TEST_STORE=postgres` a database of
//! the throwaway PostgreSQL cluster, `postgres.rs`) or as a child process of the built binary, agent
//! clients (reqwest) and an approver client that speaks HTTP over the admin Unix socket.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::clock::TestClock;
use super::procs::{kill_group, Owner};

/// Agent tokens known to [`policy_with`] policies.
pub const TOKEN_A: &str = "token-of-agent-a";
pub const TOKEN_B: &str = "token-of-agent-b";

fn sha(s: &str) -> String {
    hitl_gate::hex::sha256(s.as_bytes())
}

/// A policy text with two agents (`agent-a` for alice, `agent-b`) plus `extra`.
pub fn policy_with(extra: &str) -> String {
    format!(
        "version = 1\n{extra}\n[[serve.agent]]\nname = \"agent-a\"\ntoken_sha256 = \"{}\"\non_behalf_of = \"alice\"\n\n[[serve.agent]]\nname = \"agent-b\"\ntoken_sha256 = \"{}\"\n",
        sha(TOKEN_A),
        sha(TOKEN_B)
    )
}

pub struct TestServer {
    pub url: String,
    /// The server's clock (`clock.rs`): move it instead of sleeping.
    pub clock: TestClock,
    pub data: PathBuf,
    pub public_key: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with `policy` (TOML text) on a fresh data dir.
    pub async fn start(policy: &str) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Self::start_in(dir, data, policy).await
    }

    pub async fn start_in(dir: tempfile::TempDir, data: PathBuf, policy: &str) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, dir, data, policy).await
    }

    /// Starts a server on a listener the caller bound (so the address is known before the
    /// policy is written, as the web UI's `public_url` needs).
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        dir: tempfile::TempDir,
        data: PathBuf,
        policy: &str,
    ) -> TestServer {
        Self::start_with_tls(listener, dir, data, policy, None).await
    }

    /// [`TestServer::start_on`], serving HTTPS with `tls` when given.
    pub async fn start_with_tls(
        listener: tokio::net::TcpListener,
        dir: tempfile::TempDir,
        data: PathBuf,
        policy: &str,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> TestServer {
        let policy = if super::postgres::wanted() && !policy.contains("database_url") {
            let (policy, url) = super::postgres::with_database(policy);
            super::postgres::register(&data, &url);
            policy
        } else {
            policy.to_string()
        };
        let policy = hitl_gate::policy::load::parse(&policy).expect("test policy parses");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ktx, krx) = std::sync::mpsc::channel();
        let clock = TestClock::in_dir(dir.path());
        let config = hitl_gate::server::Config {
            data_dir: data.clone(),
            policy,
            tls,
            clock: clock.server_clock(),
            reload: None,
        };
        let task = tokio::spawn(hitl_gate::server::launch_with_listener(
            config,
            listener,
            async move {
                let _ = rx.await;
            },
            move |s| ktx.send(s.public_key.clone()).unwrap(),
        ));
        let public_key = tokio::task::spawn_blocking(move || {
            krx.recv_timeout(std::time::Duration::from_secs(20))
        })
        .await
        .unwrap()
        .expect("server started");
        TestServer {
            url,
            clock,
            data,
            public_key,
            stop: Some(tx),
            task: Some(task),
            dir,
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.task
            .take()
            .unwrap()
            .await
            .unwrap()
            .expect("clean shutdown");
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn db(&self) -> PathBuf {
        self.data.join("hitl-gate.db")
    }

    pub fn agent(&self, token: &str) -> Agent {
        Agent {
            url: self.url.clone(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub fn approver(&self) -> Approver {
        Approver {
            socket: self.data.join("admin.sock"),
        }
    }
}

/// An agent's HTTP client.
#[derive(Clone)]
pub struct Agent {
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
}

/// A minimal create body.
pub fn create_body(argv: &[&str]) -> Value {
    serde_json::json!({
        "tool": "kubectl",
        "argv": argv,
        "cwd": "/work",
        "host": "agent-host",
        "environment": {"kube_context": "prod", "namespace": "web"},
        "diff": {"text": "- deployment web (3 replicas)\n", "summary": {"delete": 1}, "truncated": false},
        "artifact_sha256": [hitl_gate::hex::sha256(b"manifest")],
        "reason": "clean up",
        "nonce": hitl_gate::hex::sha256(format!("{argv:?}").as_bytes())
    })
}

impl Agent {
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates a request; returns its id.
    pub async fn create(&self, argv: &[&str]) -> String {
        let (s, v) = self.post("/api/v1/requests", create_body(argv)).await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn wait(&self, id: &str, secs: u64) -> (u16, Value) {
        self.get(&format!("/api/v1/requests/{id}?wait={secs}"))
            .await
    }
}

/// An approver on the admin socket (identity from SO_PEERCRED).
pub struct Approver {
    pub socket: PathBuf,
}

impl Approver {
    pub async fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        uds_request(&self.socket, method, path, body).await
    }

    pub async fn decide(&self, id: &str, decision: &str, comment: Option<&str>) -> (u16, Value) {
        self.request(
            "POST",
            &format!("/api/v1/requests/{id}/decision"),
            Some(serde_json::json!({"decision": decision, "comment": comment})),
        )
        .await
    }
}

/// One HTTP/1.1 request over a Unix socket.
pub async fn uds_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(rest).unwrap_or(Value::Null))
}

/// `hitl-gate serve` as a child process of the built binary, in a process group of its own that
/// is killed when this is dropped. Its clock is the file beside its data dir.
pub struct ServeProcess {
    pub child: Child,
    pub url: String,
    pub clock: TestClock,
    /// Where its stderr (the log) goes, when started with [`ServeProcess::start_logged`]; the
    /// log is printed if the test panics.
    pub log: Option<PathBuf>,
    owner: Owner,
}

impl ServeProcess {
    pub fn start(policy_file: &Path, data: &Path) -> ServeProcess {
        Self::start_on(policy_file, data, "127.0.0.1:0")
    }

    /// Starts `serve` listening on `listen` (a fixed port lets a restarted server keep its URL).
    pub fn start_on(policy_file: &Path, data: &Path, listen: &str) -> ServeProcess {
        Self::start_with(policy_file, data, listen, &[], None)
    }

    /// Starts `serve` with `args` added, its log (stderr) written to `DATA.log` beside the data
    /// dir, for the test to read ([`ServeProcess::log_text`], [`ServeProcess::log_line`]).
    pub fn start_logged(policy_file: &Path, data: &Path, args: &[&str]) -> ServeProcess {
        let log = data.with_extension("log");
        Self::start_with(policy_file, data, "127.0.0.1:0", args, Some(log))
    }

    fn start_with(
        policy_file: &Path,
        data: &Path,
        listen: &str,
        args: &[&str],
        log: Option<PathBuf>,
    ) -> ServeProcess {
        let clock = TestClock::in_dir(data.parent().unwrap());
        let owner = Owner::new();
        let mut c = Command::new(super::bin());
        c.args(["serve", "--listen", listen, "--data-dir"])
            .arg(data)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HITL_GATE_POLICY", policy_file)
            .env("HITL_GATE_TEST_ROOT", data.parent().unwrap())
            .env("HITL_GATE_TEST_CLOCK", clock.path())
            .stdout(Stdio::piped())
            .stderr(match &log {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::inherit(),
            });
        let mut child = owner.mark(&mut c).spawn().unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("serve printed nothing").unwrap();
        let url = first
            .strip_prefix("hitl-gate serve: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServeProcess {
            child,
            url,
            clock,
            log,
            owner,
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Everything the server logged so far (started with [`ServeProcess::start_logged`]).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.as_ref().expect("started with a log")).unwrap()
    }

    /// The first log line that contains every one of `words`, once the server has written it
    /// (at most 60 s).
    pub async fn log_line(&self, words: &[&str]) -> String {
        let start = std::time::Instant::now();
        loop {
            let text = self.log_text();
            if let Some(l) = text.lines().find(|l| words.iter().all(|w| l.contains(w))) {
                return l.to_string();
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "no log line with {words:?} in:\n{text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// How many log lines contain every one of `words`.
    pub fn log_count(&self, words: &[&str]) -> usize {
        self.log_text()
            .lines()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .count()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        self.owner.kill_all();
        if let (true, Some(log)) = (std::thread::panicking(), &self.log) {
            eprintln!(
                "--- the log of serve ({}):\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// Raw SQLite access for tampering tests (a second connection to the same file).
pub async fn raw_db(path: &Path) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The audit log's rows as `hitl-gate audit export` writes them, in order (read through the CLI,
/// not the store's tables).
pub fn audit_rows(data: &Path) -> Vec<hitl_gate::audit::Row> {
    match super::postgres::url_of(data) {
        Some(url) => audit_rows_in(&url),
        None => export_rows(
            Command::new(super::bin())
                .args(["audit", "export", "--data-dir"])
                .arg(data),
        ),
    }
}

/// [`audit_rows`] of the PostgreSQL database at `url`.
pub fn audit_rows_in(url: &str) -> Vec<hitl_gate::audit::Row> {
    export_rows(Command::new(super::bin()).args(["audit", "export", "--database-url", url]))
}

fn export_rows(c: &mut Command) -> Vec<hitl_gate::audit::Row> {
    let out = super::run(c);
    assert_eq!(super::code(&out), 0, "{}", super::stderr(&out));
    super::stdout(&out)
        .lines()
        .filter_map(|l| match serde_json::from_str(l).unwrap() {
            hitl_gate::audit::ExportLine::Row(r) => Some(r),
            hitl_gate::audit::ExportLine::Checkpoint(_) => None,
        })
        .collect()
}

/// Each exported audit row's kind and body, in order.
pub fn audit_export(data: &Path) -> Vec<(String, Value)> {
    audit_rows(data)
        .into_iter()
        .map(|r| (r.kind, serde_json::from_str(&r.body).unwrap()))
        .collect()
}

/// Waits (at most 60 s) until the server at `url` holds at least `n` long-polls in their wait
/// (its `hitl_gate_waiters` gauge): from then on, a decision or a shutdown is what answers
/// them. What tests do instead of sleeping "long enough for the long-poll to start".
pub async fn waiters_at_least(url: &str, n: i64) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let start = std::time::Instant::now();
    loop {
        let text = match http.get(format!("{url}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let held = text
            .lines()
            .find_map(|l| l.strip_prefix("hitl_gate_waiters "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if held >= n {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{url} never held {n} long-polls: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads one HTTP message (head and a `Content-Length` body) from `s`; returns its bytes.
pub async fn read_message(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed inside a message");
        buf.extend_from_slice(&chunk[..n]);
    }
}
