//! Audit log tampering: each change made through raw SQLite (after dropping the protecting
//! triggers) makes `hitl-gate audit verify` fail and name the first bad seq. With the triggers in
//! place, UPDATE and DELETE fail. An export verifies offline, and fails after one edit. An audit
//! row that cannot be written (a failure injected with a trigger) fails the decision with it.
//!
//! The transparency log's tampering cases are here too, for the same reason: a truncation, and a
//! rewrite re-signed with the server's own key, caught with a witness's cosignatures; and the
//! tree written in the decision's own transaction.
//!
//! These are the only tests that open the store's database directly, on purpose; every other
//! test reads through the API or the CLI (checked by tests/structure.rs).

use std::path::{Path, PathBuf};

use crate::support::server::{policy_with, raw_db, TestServer, TOKEN_A};
use crate::support::{bin, code, run, stderr, stdout};

/// A stopped server's data dir with 12 audit rows and a checkpoint every 3 rows.
async fn populated() -> (tempfile::TempDir, PathBuf, String) {
    let srv = TestServer::start(&policy_with("[serve]\ncheckpoint_every = 3\n")).await;
    let a = srv.agent(TOKEN_A);
    for i in 0..6 {
        let id = a.create(&["delete", "pod", &format!("p{i}")]).await;
        let verb = if i % 2 == 0 { "approve" } else { "reject" };
        let (s, _) = srv.approver().decide(&id, verb, Some("because")).await;
        assert_eq!(s, 200);
    }
    let (key, data) = (srv.public_key.clone(), srv.data.clone());
    let dir = srv.stop().await;
    (dir, data, key)
}

/// Copies the database (with its WAL files, if any) so each case tampers with its own copy.
fn copy_db(data: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = data.join(format!("hitl-gate.db{suffix}"));
        if from.exists() {
            std::fs::copy(&from, to.join(format!("hitl-gate.db{suffix}"))).unwrap();
        }
    }
    to.join("hitl-gate.db")
}

fn verify(db: &Path, key: &str) -> std::process::Output {
    run(std::process::Command::new(bin())
        .args(["audit", "verify", "--public-key", key, "--db"])
        .arg(db))
}

async fn tamper(db: &Path, sql: &[&str]) {
    let mut c = raw_db(db).await;
    for s in [
        "DROP TRIGGER audit_no_update",
        "DROP TRIGGER audit_no_delete",
        "DROP TRIGGER checkpoints_no_update",
        "DROP TRIGGER checkpoints_no_delete",
    ]
    .iter()
    .chain(sql)
    {
        sqlx::query(s)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

fn assert_broken_at(out: &std::process::Output, seq: i64, why: &str) {
    assert_eq!(code(out), 1, "verify must fail: {}", stdout(out));
    let err = stderr(out);
    assert!(
        err.contains(&format!("audit log broken at seq {seq}:")),
        "{err}"
    );
    assert!(err.contains(why), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_detected_and_located() {
    let (dir, data, key) = populated().await;
    let out = verify(&data.join("hitl-gate.db"), &key);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("12 rows (seq 1..12), 4 signed checkpoints"),
        "{}",
        stdout(&out)
    );

    // One byte changed in a row.
    let db = copy_db(&data, &dir.path().join("byte"));
    tamper(
        &db,
        &["UPDATE audit SET body = replace(body, 'p3', 'p4') WHERE seq = 7"],
    )
    .await;
    assert_broken_at(&verify(&db, &key), 7, "edited");

    // A row deleted.
    let db = copy_db(&data, &dir.path().join("deleted"));
    tamper(&db, &["DELETE FROM audit WHERE seq = 5"]).await;
    assert_broken_at(&verify(&db, &key), 5, "missing");

    // Two rows swapped (their contents exchanged, seq numbers kept).
    let db = copy_db(&data, &dir.path().join("swapped"));
    tamper(
        &db,
        &[
            "UPDATE audit SET seq = -1 WHERE seq = 4",
            "UPDATE audit SET seq = 4 WHERE seq = 5",
            "UPDATE audit SET seq = 5 WHERE seq = -1",
        ],
    )
    .await;
    assert_broken_at(&verify(&db, &key), 4, "prev_hash");

    // The tail truncated: rows 8..12 gone. The checkpoints at 9 and 12 still name them.
    let db = copy_db(&data, &dir.path().join("truncated"));
    tamper(&db, &["DELETE FROM audit WHERE seq >= 8"]).await;
    assert_broken_at(&verify(&db, &key), 8, "truncated");

    // A forged checkpoint signature is caught too.
    let db = copy_db(&data, &dir.path().join("forged"));
    tamper(
        &db,
        &["UPDATE checkpoints SET signature = printf('%.128d', 0) WHERE seq = 6"],
    )
    .await;
    assert_broken_at(&verify(&db, &key), 6, "checkpoint signature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_triggers_refuse_update_and_delete() {
    let (_dir, data, _key) = populated().await;
    let mut c = raw_db(&data.join("hitl-gate.db")).await;
    for sql in [
        "UPDATE audit SET actor = 'local:mallory' WHERE seq = 2",
        "DELETE FROM audit WHERE seq = 12",
        "DELETE FROM checkpoints",
        "UPDATE requests SET state = 'approved' WHERE state = 'rejected'",
        "DELETE FROM requests",
    ] {
        let e = sqlx::query(sql).execute(&mut c).await.expect_err(sql);
        let msg = e.to_string();
        assert!(
            msg.contains("append-only")
                || msg.contains("cannot change")
                || msg.contains("never deleted"),
            "{sql}: {msg}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_verifies_offline_and_fails_after_one_edit() {
    let (dir, data, key) = populated().await;
    let out = run(std::process::Command::new(bin())
        .args(["audit", "export", "--format", "jsonl", "--data-dir"])
        .arg(&data));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let export = dir.path().join("evidence.jsonl");
    std::fs::write(&export, &out.stdout).unwrap();
    // Offline: only the file and the public key.
    let ok = run(std::process::Command::new(bin())
        .args(["audit", "verify", "--public-key", &key, "--file"])
        .arg(&export));
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert!(stdout(&ok).contains("12 rows"), "{}", stdout(&ok));

    let text = String::from_utf8(out.stdout).unwrap();
    let edited = text.replacen("because", "becausf", 1);
    assert_ne!(edited, text);
    std::fs::write(&export, edited).unwrap();
    let bad = run(std::process::Command::new(bin())
        .args(["audit", "verify", "--public-key", &key, "--file"])
        .arg(&export));
    assert_eq!(code(&bad), 1);
    assert!(
        stderr(&bad).contains("audit log broken at seq"),
        "{}",
        stderr(&bad)
    );

    // CSV for spreadsheets: a header and one line per row.
    let csv = run(std::process::Command::new(bin())
        .args(["audit", "export", "--format", "csv", "--data-dir"])
        .arg(&data));
    assert_eq!(stdout(&csv).lines().count(), 13);
    assert!(stdout(&csv).starts_with("seq,at,kind,request_id,actor,body,prev_hash,hash\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_wider_than_a_read_page_is_still_found() {
    // The verifier reads the log in pages of seq ranges; a hole wider than a page must not end
    // the scan early and make a gutted log look like a short, intact one.
    let (_dir, data, key) = populated().await;
    let db = data.join("hitl-gate.db");
    let mut c = raw_db(&db).await;
    let (mut seq, mut hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_one(&mut c)
            .await
            .unwrap();
    sqlx::query("BEGIN").execute(&mut c).await.unwrap();
    for i in 0..12_000 {
        let body = serde_json::json!({"i": i});
        let r =
            hitl_gate::audit::next_row(Some((&seq, &hash)), 1, "outcome", None, "agent:x", &body);
        sqlx::query("INSERT INTO audit (seq, at, kind, request_id, actor, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(r.seq).bind(r.at).bind(&r.kind).bind(&r.request_id).bind(&r.actor).bind(&r.body).bind(&r.prev_hash).bind(&r.hash)
            .execute(&mut c)
            .await
            .unwrap();
        (seq, hash) = (r.seq, r.hash);
    }
    sqlx::query("COMMIT").execute(&mut c).await.unwrap();
    let out = verify(&db, &key);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("12012 rows"), "{}", stdout(&out));

    tamper(&db, &["DELETE FROM audit WHERE seq BETWEEN 20 AND 9020"]).await;
    assert_broken_at(&verify(&db, &key), 20, "missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_export_verifies_offline_from_its_first_row() {
    let (dir, data, key) = populated().await;
    let mut c = raw_db(&data.join("hitl-gate.db")).await;
    let (since, until): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT at FROM audit WHERE seq = 5), (SELECT at FROM audit WHERE seq = 10)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    let out = run(std::process::Command::new(bin())
        .args(["audit", "export", "--format", "jsonl", "--since"])
        .arg(since.to_string())
        .arg("--until")
        .arg(until.to_string())
        .arg("--data-dir")
        .arg(&data));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let first_seq = first["row"]["seq"].as_i64().unwrap();
    assert!(first_seq > 1 && first_seq <= 5, "{first}");
    let export = dir.path().join("window.jsonl");
    std::fs::write(&export, &text).unwrap();
    let ok = run(std::process::Command::new(bin())
        .args(["audit", "verify", "--public-key", &key, "--file"])
        .arg(&export));
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains(&format!("(seq {first_seq}..")),
        "{}",
        stdout(&ok)
    );
    assert!(
        stderr(&ok).contains("rows before it are not in the file"),
        "{}",
        stderr(&ok)
    );

    // One edit inside the window is still caught.
    std::fs::write(&export, text.replacen("because", "becausf", 1)).unwrap();
    let bad = run(std::process::Command::new(bin())
        .args(["audit", "verify", "--public-key", &key, "--file"])
        .arg(&export));
    assert_eq!(code(&bad), 1, "{}", stdout(&bad));
}

/// A server with one pending request (its id), after which every insert into `table` fails,
/// made so from outside the server (as a full disk or an I/O error would) by the trigger
/// `broken_<table>` on the returned connection.
async fn a_request_then_failing_inserts_into(
    table: &str,
) -> (TestServer, String, sqlx::SqliteConnection) {
    let srv = TestServer::start(&policy_with("")).await;
    let id = srv.agent(TOKEN_A).create(&["delete", "pod", "x"]).await;
    let mut db = raw_db(&srv.db()).await;
    sqlx::query(&format!(
        "CREATE TRIGGER broken_{table} BEFORE INSERT ON {table} \
         BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END"
    ))
    .execute(&mut db)
    .await
    .unwrap();
    (srv, id, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_fails_and_the_request_stays_pending_when_the_audit_cannot_be_written() {
    let (srv, id, mut db) = a_request_then_failing_inserts_into("audit").await;
    let a = srv.agent(TOKEN_A);
    let (s, v) = srv.approver().decide(&id, "approve", None).await;
    assert_eq!((s, v["code"].as_str()), (500, Some("store_failed")), "{v}");
    let (_, v) = a.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(v["state"], "pending", "no decision without its audit row");
    assert!(v["decision"].is_null());
    // Once the audit can be written again, the decision goes through.
    sqlx::query("DROP TRIGGER broken_audit")
        .execute(&mut db)
        .await
        .unwrap();
    let (s, _) = srv.approver().decide(&id, "approve", None).await;
    assert_eq!(s, 200);
    srv.stop().await;
}

/// Rewrites row `seq` (`from` → `to` in its body) as the server's key holder could: every row
/// chained again, the tree rebuilt, every checkpoint signed again with the server's key (its
/// signature and its C2SP note). The witnesses' cosignatures stay, unless `drop_cosignatures`.
async fn rewrite_and_resign(
    data: &Path,
    db: &Path,
    seq: usize,
    from: &str,
    to: &str,
    drop_cosignatures: bool,
) {
    use hitl_gate::audit::note::SignedCheckpoint;
    use hitl_gate::audit::tree::{self, Frontier};
    let keys = hitl_gate::signing::Keys::load_or_create(data).unwrap();
    tamper(
        db,
        &[
            "DROP TRIGGER audit_tree_no_delete",
            "DROP TRIGGER cosignatures_no_delete",
        ],
    )
    .await;
    let mut c = raw_db(db).await;
    type T = (i64, i64, String, Option<String>, String, String);
    let mut rows: Vec<T> =
        sqlx::query_as("SELECT seq, at, kind, request_id, actor, body FROM audit ORDER BY seq")
            .fetch_all(&mut c)
            .await
            .unwrap();
    rows[seq - 1].5 = rows[seq - 1].5.replace(from, to);
    let note: String =
        sqlx::query_scalar("SELECT note FROM checkpoints WHERE note IS NOT NULL LIMIT 1")
            .fetch_one(&mut c)
            .await
            .unwrap();
    let origin = SignedCheckpoint::parse(&note).unwrap().origin;
    let mut prev = hitl_gate::audit::GENESIS.to_string();
    let mut f = Frontier::default();
    let mut heads = Vec::new();
    sqlx::query("DELETE FROM audit_tree")
        .execute(&mut c)
        .await
        .unwrap();
    for (s, at, kind, rid, actor, body) in &rows {
        let entry =
            hitl_gate::audit::entry_bytes(&prev, *s, *at, kind, rid.as_deref(), actor, body);
        let hash = hitl_gate::hex::sha256(&entry);
        sqlx::query("UPDATE audit SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?")
            .bind(body)
            .bind(&prev)
            .bind(&hash)
            .bind(s)
            .execute(&mut c)
            .await
            .unwrap();
        let stored = f.push(tree::leaf_hash(&entry));
        sqlx::query("INSERT INTO audit_tree (seq, hashes) VALUES (?, ?)")
            .bind(s)
            .bind(tree::pack(&stored))
            .execute(&mut c)
            .await
            .unwrap();
        heads.push((hash.clone(), f.root()));
        prev = hash;
    }
    let cps: Vec<i64> = sqlx::query_scalar("SELECT seq FROM checkpoints")
        .fetch_all(&mut c)
        .await
        .unwrap();
    for s in cps {
        let (hash, root) = &heads[s as usize - 1];
        let sig = keys.sign(&hitl_gate::signing::checkpoint_bytes(s, hash));
        let note = SignedCheckpoint::sign(&keys, &origin, s as u64, *root).unwrap();
        sqlx::query("UPDATE checkpoints SET head_hash = ?, signature = ?, note = ? WHERE seq = ?")
            .bind(hash)
            .bind(sig)
            .bind(note)
            .bind(s)
            .execute(&mut c)
            .await
            .unwrap();
    }
    if drop_cosignatures {
        sqlx::query("DELETE FROM cosignatures")
            .execute(&mut c)
            .await
            .unwrap();
    }
}

fn verify_with(db: &Path, key: &str, args: &[&str]) -> std::process::Output {
    run(std::process::Command::new(bin())
        .args(["audit", "verify", "--public-key", key])
        .args(args)
        .arg("--db")
        .arg(db))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncation_and_a_rewrite_re_signed_with_the_server_key_are_caught_with_a_witness() {
    use crate::transparency_log::{
        cosigned, cycles, keyed_data_dir, witnessed_policy, WitnessProc,
    };
    let dir = tempfile::tempdir().unwrap();
    let origin = "gate.example/tamper";
    let (data, log_key) = keyed_data_dir(dir.path(), origin);
    let port = crate::support::server::free_port();
    let w = WitnessProc::start(&dir.path().join("w"), "witness.example/t", port, &log_key);
    let policy = witnessed_policy(origin, &[&w]);
    let srv = TestServer::start_in(tempfile::tempdir().unwrap(), data.clone(), &policy).await;
    // 12 rows; checkpoints at 4, 8 and 12, each cosigned before the next is made (the server
    // sends the witness its newest checkpoint only, so a fast run could skip one).
    for size in [4, 8, 12] {
        cycles(&srv, &format!("t{size}-"), 2).await;
        cosigned(&srv, &w.key, size).await;
    }
    let key = srv.public_key.clone();
    srv.stop().await;
    // What an auditor keeps: the witness's newest view of the log.
    let kept = dir.path().join("kept.checkpoint");
    std::fs::write(&kept, w.checkpoint(origin).await).unwrap();
    let kept = kept.display().to_string();
    let wk = ["--witness-key", w.key.as_str()];
    assert_eq!(code(&verify_with(&data.join("hitl-gate.db"), &key, &wk)), 0);

    // Truncated after row 8, with everything that named the rows after it.
    let trunc = dir.path().join("trunc");
    let db = copy_db(&data, &trunc);
    std::fs::copy(data.join("signing.key"), trunc.join("signing.key")).unwrap();
    tamper(
        &db,
        &[
            "DROP TRIGGER audit_tree_no_delete",
            "DROP TRIGGER cosignatures_no_delete",
            "DELETE FROM audit WHERE seq > 8",
            "DELETE FROM audit_tree WHERE seq > 8",
            "DELETE FROM checkpoints WHERE seq > 8",
            "DELETE FROM cosignatures WHERE seq > 8",
        ],
    )
    .await;
    // The log and the witness's cosignature on 8 alone look intact...
    let out = verify_with(&db, &key, &wk);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // ...not beside what the witness saw.
    let out = verify_with(&db, &key, &["--witness-key", &w.key, "--checkpoint", &kept]);
    assert_broken_at(&out, 9, "the tail was truncated");
    assert!(
        stderr(&out).contains("cosigned by witness.example/t covers seq 12"),
        "{}",
        stderr(&out)
    );
    // A server started on it hears it from the witness at its next checkpoint, and records it.
    let srv = TestServer::start_in(tempfile::tempdir().unwrap(), trunc.clone(), &policy).await;
    crate::transparency_log::cycles(&srv, "u", 2).await;
    let start = std::time::Instant::now();
    loop {
        let alerts: Vec<_> = crate::support::server::audit_export(&trunc)
            .into_iter()
            .filter(|(k, _)| k == "witness_alert")
            .collect();
        if alerts
            .iter()
            .any(|(_, b)| b["why"].as_str().unwrap().contains("rewritten or forked"))
        {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "no alert: {alerts:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    srv.stop().await;

    // Row 2 rewritten, the chain, the tree and every checkpoint signed again with the server's
    // key. The witness's cosignatures, which the key holder cannot forge, still name the old
    // roots: the first one is at 4.
    let db = copy_db(&data, &dir.path().join("rewrite"));
    rewrite_and_resign(&data, &db, 2, "\"t4-0\"", "\"t4-7\"", false).await;
    assert_broken_at(
        &verify_with(&db, &key, &[]),
        4,
        "forked, or rewritten at or before seq 4",
    );
    // With the cosignatures deleted too, the server's key alone vouches for the rewritten log...
    let db = copy_db(&data, &dir.path().join("rewrite2"));
    rewrite_and_resign(&data, &db, 2, "\"t4-0\"", "\"t4-7\"", true).await;
    let out = verify_with(&db, &key, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // ...but no witness does, and the witness's own view says where.
    assert_broken_at(
        &verify_with(&db, &key, &wk),
        1,
        "not included in any checkpoint cosigned by witness",
    );
    let out = verify_with(&db, &key, &["--checkpoint", &kept]);
    assert_broken_at(&out, 12, "forked, or rewritten at or before seq 12");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_fails_with_its_audit_row_when_the_tree_cannot_be_written() {
    // The tree is appended in the decision's own transaction: if it cannot be, neither the
    // decision nor its audit row is kept.
    let (srv, id, mut db) = a_request_then_failing_inserts_into("audit_tree").await;
    let a = srv.agent(TOKEN_A);
    let (s, v) = srv.approver().decide(&id, "approve", None).await;
    assert_eq!((s, v["code"].as_str()), (500, Some("store_failed")), "{v}");
    let (_, v) = a.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(v["state"], "pending");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(rows, 1, "only request_created");
    sqlx::query("DROP TRIGGER broken_audit_tree")
        .execute(&mut db)
        .await
        .unwrap();
    let (s, _) = srv.approver().decide(&id, "approve", None).await;
    assert_eq!(s, 200);
    let trees: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_tree")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(trees, 2, "one tree row per audit row");
    let (key, path) = (srv.public_key.clone(), srv.db());
    let _dir = srv.stop().await;
    let out = verify(&path, &key);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}
