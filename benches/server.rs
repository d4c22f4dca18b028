//! Benchmarks of the approval server (a benchmark, not a test): run with
//! `cargo bench --bench server -- [wakeup|waiters|throughput|verify|replicas|tree]` (all by
//! default). Results and the exact commands are recorded in docs/performance.md.
//!
//! - replicas: PostgreSQL beside SQLite in one run, on a throwaway cluster with `fsync = on`
//!   (tests/support/postgres.rs): create+decide cycles per second on each; the wake-up from a
//!   decision committed on replica B to the long-poll returned on replica A, p50/p99; 10,000
//!   waiters spread over three replicas, all woken;
//! - wakeup: from a decision to the waiting long-poll's return, over 1,000 requests;
//! - waiters: 10,000 concurrent long-polls on one server process, all woken; its RSS;
//! - throughput: create+decide cycles per second, audit fsync'd (WAL, synchronous=FULL);
//! - verify: `hitl-gate audit verify` rows per second on a 300,000-row log, the Merkle tree
//!   rebuilt and checked against the signed C2SP checkpoint;
//! - tree: what the audit log's Merkle tree costs: create+decide cycles per second with and
//!   without it, in alternating runs of one process (`audit_tree::WITHOUT_TREE`, a switch only
//!   benchmarks reach); inclusion and consistency proofs over HTTP on a 1,000,000-row log.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "bench-token";

fn policy_text(extra: &str) -> String {
    format!(
        "version = 1\n{extra}\n[[serve.agent]]\nname = \"bench\"\ntoken_sha256 = \"{}\"\n",
        hitl_gate::hex::sha256(TOKEN.as_bytes())
    )
}

fn body(i: usize) -> Value {
    json!({"tool": "kubectl", "argv": ["delete", "pod", format!("p{i}")], "cwd": "/w", "host": "bench",
           "environment": {"kube_context": "prod"}, "diff": {"text": "- pod\n"},
           "nonce": hitl_gate::hex::sha256(&i.to_le_bytes())})
}

async fn uds(socket: &Path, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .expect("admin socket");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    (
        head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        rest.to_string(),
    )
}

async fn approve(socket: &Path, id: &str) {
    let (s, b) = uds(
        socket,
        "POST",
        &format!("/api/v1/requests/{id}/decision"),
        Some(json!({"decision": "approve"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

struct InProcess {
    url: String,
    socket: PathBuf,
    _dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

async fn in_process(extra: &str) -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    in_process_at(dir, data, &policy_text(extra)).await
}

/// A server in this process on data dir `data` (which may already hold a signing key) with the
/// policy `text`.
async fn in_process_at(dir: tempfile::TempDir, data: PathBuf, text: &str) -> InProcess {
    let policy = hitl_gate::policy::load::parse(text).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (stx, srx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(hitl_gate::server::launch_with_listener(
        hitl_gate::server::Config {
            data_dir: data.clone(),
            policy,
            tls: None,
            clock: hitl_gate::server::Clock::system(),
            reload: None,
        },
        listener,
        async move {
            let _ = rx.await;
        },
        move |_| {
            let _ = stx.send(());
        },
    ));
    srx.await.unwrap();
    InProcess {
        url,
        socket: data.join("admin.sock"),
        _dir: dir,
        stop: tx,
        task,
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn create(http: &reqwest::Client, url: &str, i: usize) -> String {
    let v: Value = http
        .post(format!("{url}/api/v1/requests"))
        .bearer_auth(TOKEN)
        .json(&body(i))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["id"].as_str().expect("created").to_string()
}

/// `n` rounds of: create on `poll_on`, long-poll it there, approve it on `decide_on`'s admin
/// socket. Returns (decision sent -> poll returned, decision answered -> poll returned) in ms;
/// a poll that returns before the decider reads its own answer counts as 0.
async fn wake_rounds(poll_on: &str, decide_on: &Path, n: usize) -> (Vec<f64>, Vec<f64>) {
    let http = reqwest::Client::new();
    let (mut after_send, mut after_answer) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let id = create(&http, poll_on, i).await;
        let (h, u, id2) = (http.clone(), poll_on.to_string(), id.clone());
        let poll = tokio::spawn(async move {
            let r = h
                .get(format!("{u}/api/v1/requests/{id2}?wait=30"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let t = Instant::now();
            let v: Value = r.json().await.unwrap();
            (t, v["state"].as_str().unwrap().to_string())
        });
        tokio::time::sleep(Duration::from_millis(3)).await; // let the poll park
        let t0 = Instant::now();
        approve(decide_on, &id).await;
        let t_answer = Instant::now();
        let (t_poll, state) = poll.await.unwrap();
        assert_eq!(state, "approved");
        after_send.push(t_poll.duration_since(t0).as_secs_f64() * 1e3);
        after_answer.push(t_poll.saturating_duration_since(t_answer).as_secs_f64() * 1e3);
    }
    (after_send, after_answer)
}

async fn wakeup() {
    let srv = in_process("").await;
    let n = 1000;
    let (mut after_send, mut after_answer) = wake_rounds(&srv.url, &srv.socket, n).await;
    println!("wakeup over {n} requests (ms):");
    println!(
        "  decision sent -> poll returned (upper bound, includes the decision's fsync'd commit): p50 {:.3} p99 {:.3}",
        pct(&mut after_send, 0.5),
        pct(&mut after_send, 0.99)
    );
    println!(
        "  decision answered (commit done) -> poll returned: p50 {:.3} p99 {:.3}",
        pct(&mut after_answer, 0.5),
        pct(&mut after_answer, 0.99)
    );
    let _ = srv.stop.send(());
    srv.task.await.unwrap().unwrap();
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap())
        })
        .unwrap()
}

async fn waiters() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, policy_text("")).unwrap();
    std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hitl-gate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("HITL_GATE_POLICY", &policy)
        .env("HITL_GATE_TEST_ROOT", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    let url = first.trim().rsplit(' ').next().unwrap().to_string();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let pid = child.id();
    let idle_rss = rss_kb(pid);

    let (requests, per_request) = (100, 100);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..requests {
        ids.push(create(&http, &url, i).await);
    }
    let mut polls = Vec::new();
    for id in &ids {
        for _ in 0..per_request {
            let (h, u, id) = (http.clone(), url.clone(), id.clone());
            polls.push(tokio::spawn(async move {
                let r = h
                    .get(format!("{u}/api/v1/requests/{id}?wait=60"))
                    .bearer_auth(TOKEN)
                    .send()
                    .await;
                match r {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .map(|v| v["state"].as_str().unwrap_or("?").to_string())
                        .unwrap_or_else(|e| e.to_string()),
                    Err(e) => e.to_string(),
                }
            }));
        }
    }
    let total = requests * per_request;
    let t = Instant::now();
    loop {
        let m = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let w: i64 = m
            .lines()
            .find_map(|l| l.strip_prefix("hitl_gate_waiters "))
            .unwrap()
            .parse()
            .unwrap();
        if w as usize >= total || t.elapsed() > Duration::from_secs(50) {
            println!(
                "waiters: {w} long-polls held after {:.1}s",
                t.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let held_rss = rss_kb(pid);
    let socket = data.join("admin.sock");
    let t = Instant::now();
    for id in &ids {
        approve(&socket, id).await;
    }
    let mut approved = 0;
    for p in polls {
        if p.await.unwrap() == "approved" {
            approved += 1;
        }
    }
    println!(
        "waiters: {approved}/{total} woken with \"approved\" in {:.2}s after the first decision; server RSS idle {} MB, holding {total} waiters {} MB",
        t.elapsed().as_secs_f64(),
        idle_rss / 1024,
        held_rss / 1024
    );
    let _ = child.kill();
    let _ = child.wait();
}

async fn throughput() {
    throughput_of(Arc::new(in_process("").await), "SQLite").await;
}

/// Create+decide cycles per second against `srv`; returns them.
async fn throughput_of(srv: Arc<InProcess>, what: &str) -> f64 {
    let http = reqwest::Client::new();
    let (workers, per_worker) = (16, 150);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (srv, http) = (srv.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per_worker {
                let id = create(&http, &srv.url, w * per_worker + i).await;
                approve(&srv.socket, &id).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let cycles = workers * per_worker;
    println!(
        "throughput ({what}): {cycles} create+decide cycles in {secs:.2}s = {:.0} cycles/s ({workers} concurrent clients; each create and each decision is durable (fsync'd, group commit) before its answer)",
        cycles as f64 / secs
    );
    cycles as f64 / secs
}

/// `n` servers in this process on one fresh database of `pg`, sharing one signing key.
async fn replicas_on(pg: &support::postgres::TempPostgres, n: usize) -> Vec<InProcess> {
    let db = pg.create_db();
    let text = support::postgres::with_url(&policy_text(""), &db);
    let mut out: Vec<InProcess> = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if let Some(first) = out.first() {
            std::fs::create_dir_all(&data).unwrap();
            std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
            let key = hitl_gate::signing::KEY_FILE;
            let from = first.socket.parent().unwrap().join(key);
            std::fs::copy(from, data.join(key)).unwrap();
        }
        out.push(in_process_at(dir, data, &text).await);
    }
    out
}

async fn replicas() {
    let pg = support::postgres::TempPostgres::start_durable();
    // Throughput, side by side.
    let sqlite = throughput_of(Arc::new(in_process("").await), "SQLite").await;
    let one = replicas_on(&pg, 1).await.pop().unwrap();
    let postgres = throughput_of(Arc::new(one), "PostgreSQL, one replica").await;
    println!(
        "throughput ratio PostgreSQL / SQLite: {:.2}",
        postgres / sqlite
    );
    // Wake-up across replicas: poll on A, decide on B.
    let rs = replicas_on(&pg, 2).await;
    let n = 500;
    let (mut across_sent, mut across) = wake_rounds(&rs[0].url, &rs[1].socket, n).await;
    println!("wake-up across replicas over {n} requests, long-poll on A, decision on B (ms):");
    println!(
        "  decision sent to B -> poll returned on A (includes B's durable commit): p50 {:.3} p99 {:.3}",
        pct(&mut across_sent, 0.5),
        pct(&mut across_sent, 0.99)
    );
    println!(
        "  decision answered by B (commit done) -> poll returned on A: p50 {:.3} p99 {:.3}",
        pct(&mut across, 0.5),
        pct(&mut across, 0.99)
    );
    drop(rs);
    // 10,000 waiters over three replicas, each its own `hitl-gate serve` process (the
    // connections of both ends would not fit one process's descriptors).
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    let db = pg.create_db();
    std::fs::write(&policy, support::postgres::with_url(&policy_text(""), &db)).unwrap();
    std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut procs = Vec::new();
    for i in 0..3 {
        let data = dir.path().join(format!("r{i}"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        if i > 0 {
            let key = hitl_gate::signing::KEY_FILE;
            std::fs::copy(dir.path().join("r0").join(key), data.join(key)).unwrap();
        }
        procs.push((
            support::server::ServeProcess::start(&policy, &data),
            data.join("admin.sock"),
        ));
    }
    struct Replica {
        url: String,
        socket: PathBuf,
    }
    let rs: Vec<Replica> = procs
        .iter()
        .map(|(p, s)| Replica {
            url: p.url.clone(),
            socket: s.clone(),
        })
        .collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let (requests, per_request) = (100, 100);
    let mut ids = Vec::new();
    for i in 0..requests {
        ids.push(create(&http, &rs[i % 3].url, i).await);
    }
    let mut polls = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        for j in 0..per_request {
            let (h, u, id) = (http.clone(), rs[(k + j) % 3].url.clone(), id.clone());
            polls.push(tokio::spawn(async move {
                h.get(format!("{u}/api/v1/requests/{id}?wait=60"))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .ok()?
                    .json::<Value>()
                    .await
                    .ok()
                    .map(|v| v["state"] == "approved")
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t = Instant::now();
    for (k, id) in ids.iter().enumerate() {
        approve(&rs[k % 3].socket, id).await;
    }
    let mut woken = 0;
    for p in polls {
        if p.await.unwrap() == Some(true) {
            woken += 1;
        }
    }
    println!(
        "waiters over three replicas: {woken}/{} woken with \"approved\" in {:.2}s after the first decision",
        requests * per_request,
        t.elapsed().as_secs_f64()
    );
    drop(procs);
}

/// A data dir whose log holds `n` rows appended in bulk, exactly as the server would chain
/// them (the server made the schema and the key first), and then the server started once more:
/// its start adds the rows to the Merkle tree, its stop signs a checkpoint over them. Returns
/// the data dir and how long that start took.
async fn bulk_log(n: i64, body: impl Fn(i64) -> Value) -> (tempfile::TempDir, PathBuf, f64) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    once(&data).await;
    let db = data.join("hitl-gate.db");
    {
        use sqlx::ConnectOptions;
        use std::str::FromStr;
        let mut c =
            sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))
                .unwrap()
                .connect()
                .await
                .unwrap();
        sqlx::query("BEGIN").execute(&mut c).await.unwrap();
        let mut prev: Option<(i64, String)> = None;
        for i in 0..n {
            let r = hitl_gate::audit::next_row(
                prev.as_ref().map(|(s, h)| (s, h.as_str())),
                1_700_000_000_000 + i,
                "approved",
                Some("0123456789abcdef0123456789abcdef"),
                "local:bench",
                &body(i),
            );
            sqlx::query("INSERT INTO audit (seq, at, kind, request_id, actor, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(r.seq).bind(r.at).bind(&r.kind).bind(&r.request_id).bind(&r.actor).bind(&r.body).bind(&r.prev_hash).bind(&r.hash)
                .execute(&mut c).await.unwrap();
            prev = Some((r.seq, r.hash));
        }
        sqlx::query("COMMIT").execute(&mut c).await.unwrap();
    }
    let t = Instant::now();
    once(&data).await;
    (dir, data, t.elapsed().as_secs_f64())
}

/// Starts a server on `data` and stops it as soon as it listens.
async fn once(data: &Path) {
    let policy = hitl_gate::policy::load::parse(&policy_text("")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let task = tokio::spawn(hitl_gate::server::launch_with_listener(
        hitl_gate::server::Config {
            data_dir: data.to_path_buf(),
            policy,
            tls: None,
            clock: hitl_gate::server::Clock::system(),
            reload: None,
        },
        listener,
        async {},
        |_| {},
    ));
    task.await.unwrap().unwrap();
}

async fn verify() {
    let n: i64 = 300_000;
    let text = "~ deployment web: replicas 3 -> 5\n".repeat(8);
    let (_dir, data, _) = bulk_log(n, |i| {
        json!({"command": {"tool": "kubectl", "argv": ["scale", "deploy", "web", "--replicas=5"]},
               "environment": {"kube_context": "prod", "namespace": "web"},
               "diff": {"text": &text}, "i": i})
    })
    .await;
    let db = data.join("hitl-gate.db");
    let size = std::fs::metadata(&db).unwrap().len();
    if let Some(keep) = std::env::var_os("BENCH_KEEP_DB") {
        std::fs::copy(&db, keep).unwrap();
    }
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hitl-gate"))
        .args(["audit", "verify", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("1 checkpoints checked"), "{said}");
    println!(
        "verify: {n} rows ({} MB) in {secs:.2}s = {:.0} rows/s ({})",
        size / 1_000_000,
        n as f64 / secs,
        said.trim()
    );
    verify_in_memory(&db).await;
}

/// The verifier's own work on rows already in memory, in one process: the chain alone (as
/// before the tree) against the chain, the tree and the checkpoint's root, alternately.
async fn verify_in_memory(db: &Path) {
    use hitl_gate::audit::{self, witnessed};
    use hitl_gate::server::audit_log::{self, PageConn};
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let mut c = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut rows = Vec::new();
    let t = Instant::now();
    loop {
        let after = rows.last().map_or(0, |r: &audit::Row| r.seq);
        let page = audit_log::page(PageConn::Sqlite(&mut c), after, None, None)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        rows.extend(page);
    }
    let n = rows.len() as f64;
    println!(
        "verify: reading the rows alone, page by page as `audit verify` does: {:.0} rows/s",
        n / t.elapsed().as_secs_f64()
    );
    let cps = audit_log::checkpoints(PageConn::Sqlite(&mut c))
        .await
        .unwrap();
    let (mut chain, mut tree) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        audit::verify(rows.iter().cloned().map(Ok), &cps, None).unwrap();
        chain.push(n / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let start = (1, audit::GENESIS.to_string());
        let opts = witnessed::Options::default();
        let (_, r) = witnessed::verify(rows.iter().cloned().map(Ok), &cps, start, &opts).unwrap();
        assert_eq!(r.checked, 1);
        tree.push(n / t.elapsed().as_secs_f64());
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    println!(
        "verify in memory, best of 3: the chain alone {:.0} rows/s; the chain, the tree and the checkpoint's root {:.0} rows/s ({:.0}% of the chain alone)",
        best(&chain),
        best(&tree),
        100.0 * best(&tree) / best(&chain)
    );
}

/// Stops a server [`throughput_of`] measured.
async fn stop(srv: Arc<InProcess>) {
    let srv = Arc::try_unwrap(srv).ok().expect("the clients are done");
    let _ = srv.stop.send(());
    srv.task.await.unwrap().unwrap();
}

/// Create+decide cycles per second with the tree and without it, in `pairs` alternating pairs,
/// each run on a fresh server whose data dir is made under `base` (the system's temp dir when
/// `None`). Prints and returns the median of the pairs' costs (1 − with / without), in percent.
async fn tree_ab(base: Option<&Path>, pairs: usize, place: &str) -> f64 {
    use std::sync::atomic::Ordering;
    let off = &hitl_gate::server::audit_tree::WITHOUT_TREE;
    // Alternating order, each run on a fresh server, so drift on a busy machine hits both alike.
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for pair in 0..pairs {
        let order = if pair % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for tree_on in order {
            off.store(!tree_on, Ordering::SeqCst);
            let dir = match base {
                Some(b) => tempfile::tempdir_in(b).unwrap(),
                None => tempfile::tempdir().unwrap(),
            };
            let data = dir.path().join("data");
            let srv = Arc::new(in_process_at(dir, data, &policy_text("")).await);
            let what = format!(
                "{place}, {} the tree",
                if tree_on { "with" } else { "without" }
            );
            let r = throughput_of(srv.clone(), &what).await;
            stop(srv).await;
            if tree_on {
                with.push(r)
            } else {
                without.push(r)
            }
        }
    }
    off.store(false, Ordering::SeqCst);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut costs: Vec<f64> = with
        .iter()
        .zip(&without)
        .map(|(w, o)| 100.0 * (1.0 - w / o))
        .collect();
    costs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = costs.len();
    let median = (costs[(n - 1) / 2] + costs[n / 2]) / 2.0;
    println!(
        "tree ({place}): create+decide {:.0} cycles/s with the tree, {:.0} without (means of {pairs} runs each: \
         the tree costs {:.1}%); the tree's cost per pair: median {median:.1}%, from {:.1}% to {:.1}%",
        mean(&with),
        mean(&without),
        100.0 * (1.0 - mean(&with) / mean(&without)),
        costs[0],
        costs[n - 1],
    );
    median
}

async fn tree() {
    // On disk the cycle waits for fsync, whose time varies from run to run by more than the
    // tree's cost. On tmpfs the same durable path (synchronous=FULL) finds fsync nearly free,
    // so the cycle is bound by CPU, where the tree's share is largest: an upper bound on its
    // share on disk, measured with far less noise.
    tree_ab(None, 8, "disk").await;
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tree_ab(Some(shm), 8, "tmpfs").await;
    } else {
        println!("tree (tmpfs): skipped, /dev/shm is not a directory here");
    }

    let n: i64 = 1_000_000;
    let (_dir, data, built) = bulk_log(n, |i| json!({"outcome": {"exit_code": 0}, "i": i})).await;
    println!("tree: a {n}-row log's tree built at start in {built:.2}s");
    let data_dir = data.clone();
    let t = in_process_at(tempfile::tempdir().unwrap(), data, &policy_text("")).await;
    let http = reqwest::Client::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |m: i64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        1 + (x % m as u64) as i64
    };
    for (what, count) in [("proof", 2000), ("consistency", 500)] {
        let mut ms = Vec::new();
        for _ in 0..count {
            let q = match what {
                "proof" => format!("proof?seq={}&size={n}", next(n)),
                _ => format!("consistency?old={}&new={n}", next(n)),
            };
            let t0 = Instant::now();
            let r = http
                .get(format!("{}/api/v1/audit/{q}", t.url))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
            assert!(v["proof"].as_array().unwrap().len() <= 40);
        }
        println!(
            "tree: {what} on a {n}-row log over HTTP, {count} random requests: p50 {:.3} ms, p99 {:.3} ms",
            pct(&mut ms, 0.5),
            pct(&mut ms, 0.99)
        );
    }
    let _ = t.stop.send(());
    t.task.await.unwrap().unwrap();
    // The proof itself, without HTTP: the store's call, on the same database.
    let at = hitl_gate::server::Location::Sqlite(data_dir.join("hitl-gate.db"));
    let keys = Arc::new(hitl_gate::signing::Keys::load_or_create(&data_dir).unwrap());
    let store = hitl_gate::server::store::Store::open(&at, keys, 100)
        .await
        .unwrap();
    let mut ms = Vec::new();
    for _ in 0..2000 {
        let seq = next(n);
        let t0 = Instant::now();
        let p = store.inclusion(seq, n).await.unwrap();
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        assert!(!p.is_empty());
    }
    println!(
        "tree: proof on a {n}-row log, the store's call alone, 2000 random rows: p50 {:.3} ms, p99 {:.3} ms",
        pct(&mut ms, 0.5),
        pct(&mut ms, 0.99)
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if all || which.iter().any(|w| w == "wakeup") {
            wakeup().await;
        }
        if all || which.iter().any(|w| w == "throughput") {
            throughput().await;
        }
        if all || which.iter().any(|w| w == "verify") {
            verify().await;
        }
        if all || which.iter().any(|w| w == "waiters") {
            waiters().await;
        }
        if all || which.iter().any(|w| w == "replicas") {
            replicas().await;
        }
        if all || which.iter().any(|w| w == "tree") {
            tree().await;
        }
    });
}
