//! Audit log tampering: each change made through raw SQLite (after dropping the protecting
//! triggers) makes `hitl-gate audit verify` fail and name the first bad seq. With the triggers in
//! place, UPDATE and DELETE fail. An export verifies offline, and fails after one edit. An audit
//! row that cannot be written (a failure injected with a trigger) fails the decision with it.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_fails_and_the_request_stays_pending_when_the_audit_cannot_be_written() {
    let srv = TestServer::start(&policy_with("")).await;
    let a = srv.agent(TOKEN_A);
    let id = a.create(&["delete", "pod", "x"]).await;
    // Make every audit append fail, from outside the server (as a full disk or an I/O error
    // would): a trigger that aborts inserts into the audit table.
    let mut db = raw_db(&srv.db()).await;
    sqlx::query("CREATE TRIGGER audit_broken BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END")
        .execute(&mut db)
        .await
        .unwrap();
    let (s, v) = srv.approver().decide(&id, "approve", None).await;
    assert_eq!((s, v["code"].as_str()), (500, Some("store_failed")), "{v}");
    let (_, v) = a.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(v["state"], "pending", "no decision without its audit row");
    assert!(v["decision"].is_null());
    // Once the audit can be written again, the decision goes through.
    sqlx::query("DROP TRIGGER audit_broken")
        .execute(&mut db)
        .await
        .unwrap();
    let (s, _) = srv.approver().decide(&id, "approve", None).await;
    assert_eq!(s, 200);
    srv.stop().await;
}
