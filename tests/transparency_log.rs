//! The audit log as a transparency log (issue 25), driven through the API, the CLI and real
//! `hitl-gate witness` processes: inclusion and consistency proofs against the signed C2SP
//! checkpoint, on SQLite and on PostgreSQL; a witness cosigns, and an export verifies offline
//! with the witness's key; a witness restart keeps its state; a fork shown to two witnesses is
//! caught; a rollback of a witness's state is caught. (Truncation and a rewrite re-signed with
//! the server's key change the database directly, so they are in tests/audit.rs.)

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hitl_gate::audit::note::{SignedCheckpoint, VKey, ALG_ED25519};
use hitl_gate::audit::tree::{self, Frontier};

use crate::support::procs::{kill_group, Owner};
use crate::support::server::{audit_rows, free_port, policy_with, TestServer, TOKEN_A};
use crate::support::{bin, code, postgres, run, stderr, stdout};

/// A `hitl-gate witness serve` process, killed (SIGKILL, its group) when dropped.
pub struct WitnessProc {
    child: Child,
    pub url: String,
    /// Its cosigner key.
    pub key: String,
    _owner: Owner,
}

impl WitnessProc {
    /// Starts a witness with data dir `dir` on `port`, witnessing the log `log_key`.
    pub fn start(dir: &Path, name: &str, port: u16, log_key: &str) -> WitnessProc {
        let owner = Owner::new();
        let mut c = Command::new(bin());
        c.args(["witness", "serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--name", name])
            .args(["--log", log_key])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = owner.mark(&mut c).spawn().unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = || lines.next().expect("the witness printed nothing").unwrap();
        let url = next()
            .strip_prefix("hitl-gate witness: listening on ")
            .expect("a listening line")
            .to_string();
        let key = next()
            .strip_prefix("cosigner key: ")
            .expect("a key line")
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        WitnessProc {
            child,
            url,
            key,
            _owner: owner,
        }
    }

    /// The newest checkpoint it cosigned for `origin` (its monitoring endpoint).
    pub async fn checkpoint(&self, origin: &str) -> String {
        let hash = hitl_gate::hex::sha256(origin.as_bytes());
        let r = http()
            .get(format!("{}/{hash}/checkpoint", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }
}

impl Drop for WitnessProc {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A witness's journal, one JSON object per event.
pub fn journal(dir: &Path) -> Vec<serde_json::Value> {
    let out = run(Command::new(bin())
        .args(["witness", "journal", "--data-dir"])
        .arg(dir));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A data dir with the server's key made, its log's origin and verifier key.
pub fn keyed_data_dir(dir: &Path, origin: &str) -> (PathBuf, String) {
    let data = dir.join("data");
    let out = run(Command::new(bin())
        .args(["keys", "show", "--data-dir"])
        .arg(&data));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = run(Command::new(bin())
        .args(["audit", "log-key", "--origin", origin, "--data-dir"])
        .arg(&data));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    (data, stdout(&out).trim().to_string())
}

/// A policy with the log's origin, a checkpoint every 4 rows and these witnesses.
pub fn witnessed_policy(origin: &str, witnesses: &[&WitnessProc]) -> String {
    let mut extra = format!("[serve]\nlog_origin = \"{origin}\"\ncheckpoint_every = 4\n");
    for w in witnesses {
        extra.push_str(&format!(
            "\n[[serve.witness]]\nurl = \"{}\"\nkey = \"{}\"\n",
            w.url, w.key
        ));
    }
    policy_with(&extra)
}

/// `n` create+decide cycles (2 audit rows each).
pub async fn cycles(srv: &TestServer, tag: &str, n: usize) {
    let a = srv.agent(TOKEN_A);
    for i in 0..n {
        let id = a.create(&["delete", "pod", &format!("{tag}{i}")]).await;
        let (s, v) = srv.approver().decide(&id, "approve", Some("ok")).await;
        assert_eq!(s, 200, "{v}");
    }
}

/// The served checkpoint, once it is cosigned by `witness` and covers at least `size` rows
/// (60 s at most).
pub async fn cosigned(srv: &TestServer, witness: &str, size: u64) -> SignedCheckpoint {
    let key = VKey::parse(witness).unwrap();
    let start = Instant::now();
    loop {
        let r = http()
            .get(format!("{}/api/v1/audit/checkpoint", srv.url))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let cp = SignedCheckpoint::parse(&r.text().await.unwrap()).unwrap();
            let by = cp.signed_by(std::slice::from_ref(&key)).unwrap();
            if cp.size >= size && by.contains(&key.name) {
                return cp;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never cosigned up to {size}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CLI's arguments for the store of the server with data dir `data`: its PostgreSQL
/// database (given, or the harness's with `HITL_TEST_STORE=postgres`), else the data dir.
fn store_args(data: &Path, url: Option<&str>) -> Vec<String> {
    match url.map(str::to_string).or_else(|| postgres::url_of(data)) {
        Some(u) => vec!["--database-url".into(), u],
        None => vec!["--data-dir".into(), data.display().to_string()],
    }
}

fn verify(args: &[&str], more: &[&Path]) -> std::process::Output {
    let mut c = Command::new(bin());
    c.args(["audit", "verify"]).args(args);
    for p in more {
        c.arg(p);
    }
    run(&mut c)
}

async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = http().get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

fn hashes(v: &serde_json::Value) -> Vec<tree::Hash> {
    v["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| tree::parse_b64(h.as_str().unwrap()).unwrap())
        .collect()
}

async fn proofs_verify_against_the_signed_checkpoint(policy: &str, url: Option<&str>) {
    let srv = TestServer::start(policy).await;
    if let Some(u) = url {
        postgres::register(&srv.data, u);
    }
    cycles(&srv, "p", 5).await;
    let text = http()
        .get(format!("{}/api/v1/audit/checkpoint", srv.url))
        .send()
        .await
        .unwrap();
    let cp = SignedCheckpoint::parse(&text.text().await.unwrap()).unwrap();
    assert_eq!(
        cp.size, 8,
        "checkpoints every 4 rows: the newest of 10 rows is at 8"
    );
    let origin = format!("hitl-gate/{}", &srv.public_key[..16]);
    assert_eq!(cp.origin, origin);
    let log = VKey::from_hex(&origin, ALG_ED25519, &srv.public_key).unwrap();
    assert_eq!(cp.signed_by(&[log]).unwrap(), vec![origin.as_str()]);
    // Every row of the export is in the signed tree, and the tree is the one its rows make.
    let rows = audit_rows(&srv.data);
    assert_eq!(rows.len(), 10);
    let leaves: Vec<tree::Hash> = rows
        .iter()
        .map(|r| tree::leaf_hash(&r.entry_bytes()))
        .collect();
    let mut f = Frontier::default();
    let mut root4 = None;
    for l in &leaves[..8] {
        f.push(*l);
        if f.size() == 4 {
            root4 = Some(f.root());
        }
    }
    assert_eq!(f.root(), cp.root);
    for seq in 1..=8u64 {
        let (s, v) = get_json(&format!("{}/api/v1/audit/proof?seq={seq}&size=8", srv.url)).await;
        assert_eq!(s, 200, "{v}");
        tree::check_inclusion(&hashes(&v), 8, cp.root, seq - 1, leaves[seq as usize - 1]).unwrap();
    }
    let (s, v) = get_json(&format!("{}/api/v1/audit/proof?seq=10", srv.url)).await;
    assert_eq!((s, v["size"].as_i64()), (200, Some(10)), "{v}");
    let (s, v) = get_json(&format!("{}/api/v1/audit/consistency?old=4&new=8", srv.url)).await;
    assert_eq!(s, 200, "{v}");
    tree::check_consistency(&hashes(&v), 4, root4.unwrap(), 8, cp.root).unwrap();
    for bad in [
        "proof?seq=0",
        "proof?seq=11",
        "proof?seq=1&size=99",
        "proof?seq=1&other=2",
        "consistency?old=9&new=4",
        "consistency?old=0&new=4",
    ] {
        let (s, v) = get_json(&format!("{}/api/v1/audit/{bad}", srv.url)).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("invalid_query")),
            "{bad}: {v}"
        );
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inclusion_and_consistency_proofs_verify_against_the_signed_checkpoint() {
    let policy = policy_with("[serve]\ncheckpoint_every = 4\n");
    proofs_verify_against_the_signed_checkpoint(&policy, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inclusion_and_consistency_proofs_verify_on_postgres_too() {
    let (policy, url) = postgres::with_database(&policy_with("[serve]\ncheckpoint_every = 4\n"));
    proofs_verify_against_the_signed_checkpoint(&policy, Some(&url)).await;
}

/// Runs a server witnessed by one witness; returns the export and the verify arguments.
async fn witnessed_export(postgres_db: bool) {
    let dir = tempfile::tempdir().unwrap();
    let origin = "gate.example/audit";
    let (data, log_key) = keyed_data_dir(dir.path(), origin);
    let w = WitnessProc::start(
        &dir.path().join("w1"),
        "witness.example/w1",
        free_port(),
        &log_key,
    );
    let mut policy = witnessed_policy(origin, &[&w]);
    let mut url = None;
    if postgres_db {
        let (p, u) = postgres::with_database(&policy);
        (policy, url) = (p, Some(u));
    }
    let srv = TestServer::start_in(tempfile::tempdir().unwrap(), data.clone(), &policy).await;
    cycles(&srv, "w", 4).await;
    let cp = cosigned(&srv, &w.key, 8).await;
    assert_eq!(cp.origin, origin);
    let pk = srv.public_key.clone();
    srv.stop().await; // the last checkpoint (none: 8 is one) is taken to the witness

    let db = store_args(&data, url.as_deref());
    let out = run(Command::new(bin()).args(["audit", "export"]).args(&db));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let export = dir.path().join("evidence.jsonl");
    std::fs::write(&export, &out.stdout).unwrap();
    let last = stdout(&out).lines().last().unwrap().to_string();
    assert!(
        last.contains("\"inclusion\""),
        "the last line carries the proof: {last}"
    );
    assert!(
        last.contains("witness.example/w1"),
        "and the cosignature: {last}"
    );

    // Offline: the file, the server's public key and the witness's key.
    let args = ["--public-key", &pk, "--witness-key", &w.key, "--file"];
    let ok = verify(&args, &[&export]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains("cosigned by witness.example/w1 up to seq 8"),
        "{}",
        stdout(&ok)
    );
    // The live database, with the same key.
    let mut live: Vec<&str> = db.iter().map(String::as_str).collect();
    live.extend(["--public-key", &pk, "--witness-key", &w.key]);
    let ok = verify(&live, &[]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));

    // One byte of one row changed: the chain says where.
    let text = std::fs::read_to_string(&export).unwrap();
    std::fs::write(&export, text.replacen(r#"\"w1\""#, r#"\"w9\""#, 1)).unwrap();
    let bad = verify(&args, &[&export]);
    assert_eq!(code(&bad), 1, "{}", stdout(&bad));
    assert!(
        stderr(&bad).contains("audit log broken at seq"),
        "{}",
        stderr(&bad)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_cosigns_and_an_export_verifies_offline_with_its_key() {
    witnessed_export(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_cosigns_and_an_export_verifies_offline_with_its_key_on_postgres() {
    witnessed_export(true).await;
}

/// An add-checkpoint body with `old` and no proof, for `checkpoint`.
fn add_body(old: u64, checkpoint: &str) -> String {
    format!("old {old}\n\n{checkpoint}")
}

async fn post_add(w: &WitnessProc, body: String) -> (u16, String) {
    let r = http()
        .post(format!("{}/add-checkpoint", w.url))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_restart_keeps_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "gate.example/restart";
    let (data, log_key) = keyed_data_dir(dir.path(), origin);
    let (wdir, port) = (dir.path().join("w"), free_port());
    let w = WitnessProc::start(&wdir, "witness.example/r", port, &log_key);
    let srv = TestServer::start_in(
        tempfile::tempdir().unwrap(),
        data,
        &witnessed_policy(origin, &[&w]),
    )
    .await;
    cycles(&srv, "a", 2).await;
    let first = cosigned(&srv, &w.key, 4).await;
    // Killed (no clean shutdown) and started again on the same data dir and port.
    let key = w.key.clone();
    drop(w);
    let w = WitnessProc::start(&wdir, "witness.example/r", port, &log_key);
    assert_eq!(w.key, key, "the same key");
    // It still knows size 4: a request from the empty tree is a conflict naming it.
    let (s, body) = post_add(&w, add_body(0, &first.to_text())).await;
    assert_eq!((s, body.as_str()), (409, "4\n"));
    // And it goes on from there.
    cycles(&srv, "b", 2).await;
    cosigned(&srv, &w.key, 8).await;
    let sizes: Vec<i64> = journal(&wdir)
        .iter()
        .filter(|e| e["event"] == "cosigned")
        .map(|e| e["size"].as_i64().unwrap())
        .collect();
    assert_eq!(sizes, [4, 8]);
    srv.stop().await;
}

/// A copy of a stopped server's data dir (its key and database).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700);
    std::fs::set_permissions(to, mode).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_shown_to_two_witnesses_is_caught() {
    if postgres::wanted() {
        // The fork is made by copying the SQLite file; PostgreSQL's tree and cosignatures are
        // covered by the *_on_postgres tests.
        return eprintln!("skipped with HITL_TEST_STORE=postgres: it forks a SQLite file");
    }
    // The server's key holder keeps two copies of the log from row 8 on and shows each to its
    // own witness: two checkpoints of size 16 with different roots, each cosigned.
    let dir = tempfile::tempdir().unwrap();
    let origin = "gate.example/fork";
    let (data_a, log_key) = keyed_data_dir(dir.path(), origin);
    let w1 = WitnessProc::start(
        &dir.path().join("w1"),
        "witness.example/w1",
        free_port(),
        &log_key,
    );
    let w2 = WitnessProc::start(
        &dir.path().join("w2"),
        "witness.example/w2",
        free_port(),
        &log_key,
    );
    let srv = TestServer::start_in(
        tempfile::tempdir().unwrap(),
        data_a.clone(),
        &witnessed_policy(origin, &[&w1]),
    )
    .await;
    cycles(&srv, "common", 4).await;
    cosigned(&srv, &w1.key, 8).await;
    srv.stop().await;
    let data_b = dir.path().join("data-b");
    copy_dir(&data_a, &data_b);
    for (data, w, tag) in [(&data_a, &w1, "left"), (&data_b, &w2, "right")] {
        let srv = TestServer::start_in(
            tempfile::tempdir().unwrap(),
            data.clone(),
            &witnessed_policy(origin, &[w]),
        )
        .await;
        cycles(&srv, tag, 4).await;
        cosigned(&srv, &w.key, 16).await;
        srv.stop().await;
    }
    let out = run(Command::new(bin())
        .args(["audit", "export", "--data-dir"])
        .arg(&data_a));
    let export = dir.path().join("a.jsonl");
    std::fs::write(&export, &out.stdout).unwrap();
    let key = {
        let o = run(Command::new(bin())
            .args(["keys", "show", "--data-dir"])
            .arg(&data_a));
        stdout(&o).trim().to_string()
    };
    // Each copy verifies with its own witness alone...
    let ok = verify(
        &["--public-key", &key, "--witness-key", &w1.key, "--file"],
        &[&export],
    );
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    // ...but not with both: the other witness never saw this log.
    let both = [
        "--public-key",
        &key,
        "--witness-key",
        &w1.key,
        "--witness-key",
        &w2.key,
        "--file",
    ];
    let bad = verify(&both, &[&export]);
    assert_eq!(code(&bad), 1);
    assert!(
        stderr(&bad)
            .contains("not included in any checkpoint cosigned by witness witness.example/w2"),
        "{}",
        stderr(&bad)
    );
    // The other witness's view, given to the verifier, is a fork at size 16.
    let theirs = dir.path().join("w2.checkpoint");
    std::fs::write(&theirs, w2.checkpoint(origin).await).unwrap();
    let mut args = vec!["--public-key", key.as_str(), "--checkpoint"];
    let theirs_s = theirs.display().to_string();
    args.push(&theirs_s);
    args.push("--file");
    let bad = verify(&args, &[&export]);
    assert_eq!(code(&bad), 1);
    assert!(
        stderr(&bad).contains("audit log broken at seq 16: two checkpoints of size 16"),
        "{}",
        stderr(&bad)
    );
    assert!(
        stderr(&bad).contains("the log was forked"),
        "{}",
        stderr(&bad)
    );
    // Shown the other copy's checkpoint of the same size, the first witness refuses and
    // records the fork.
    let (s, why) = post_add(&w1, add_body(16, &w2.checkpoint(origin).await)).await;
    assert_eq!(s, 422, "{why}");
    let refused: Vec<String> = journal(&dir.path().join("w1"))
        .iter()
        .filter(|e| e["event"] == "refused")
        .map(|e| e["detail"].as_str().unwrap().to_string())
        .collect();
    assert!(
        refused
            .iter()
            .any(|r| r.starts_with("fork: a checkpoint of size 16")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_of_the_witness_state_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "gate.example/rollback";
    let (data, log_key) = keyed_data_dir(dir.path(), origin);
    let (wdir, port) = (dir.path().join("w"), free_port());
    let w = WitnessProc::start(&wdir, "witness.example/rb", port, &log_key);
    let srv = TestServer::start_in(
        tempfile::tempdir().unwrap(),
        data.clone(),
        &witnessed_policy(origin, &[&w]),
    )
    .await;
    cycles(&srv, "a", 2).await;
    cosigned(&srv, &w.key, 4).await;
    // The witness's whole data dir, as a backup taken at size 4...
    drop(w);
    let backup = dir.path().join("w-backup");
    copy_dir(&wdir, &backup);
    let w = WitnessProc::start(&wdir, "witness.example/rb", port, &log_key);
    cycles(&srv, "b", 2).await;
    cosigned(&srv, &w.key, 8).await;
    // ...put back: the witness forgot that it cosigned size 8.
    drop(w);
    std::fs::remove_dir_all(&wdir).unwrap();
    copy_dir(&backup, &wdir);
    let w = WitnessProc::start(&wdir, "witness.example/rb", port, &log_key);
    cycles(&srv, "c", 2).await;
    cosigned(&srv, &w.key, 12).await;
    srv.stop().await;
    // The server noticed: the witness answered that its newest was 4, and it holds the
    // witness's cosignature on 8. Recorded in the audit log itself.
    let alerts: Vec<(String, serde_json::Value)> = crate::support::server::audit_export(&data)
        .into_iter()
        .filter(|(k, _)| k == "witness_alert")
        .collect();
    assert!(
        alerts.iter().any(|(_, b)| b["why"]
            .as_str()
            .unwrap()
            .contains("its state was rolled back")),
        "{alerts:?}"
    );
    // So did the witness: the log said it had cosigned 8.
    let refused: Vec<String> = journal(&wdir)
        .iter()
        .filter(|e| e["event"] == "refused")
        .map(|e| e["detail"].as_str().unwrap().to_string())
        .collect();
    assert!(
        refused
            .iter()
            .any(|r| r.contains("its state may have been rolled back")),
        "{refused:?}"
    );
    // The log itself stayed consistent, and verifies with the witness's key.
    let key = stdout(&run(Command::new(bin())
        .args(["keys", "show", "--data-dir"])
        .arg(&data)))
    .trim()
    .to_string();
    let mut args: Vec<&str> = vec!["--public-key", &key, "--witness-key", &w.key];
    let db = store_args(&data, None);
    args.extend(db.iter().map(String::as_str));
    let ok = verify(&args, &[]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
}
