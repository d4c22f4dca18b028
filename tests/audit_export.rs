//! The JSON-lines audit export escapes what `show` escapes: an agent's argv, reason and diff
//! holding bidirectional controls, zero-width characters, line and paragraph separators and C1
//! controls come out as JSON `\uXXXX` escapes, never as the raw characters; the lines parse back
//! to exactly the strings the agent sent, and `audit verify --file` still checks the export.

use std::process::Command;

use serde_json::Value;

use crate::support::server::{create_body, policy_with, TestServer, TOKEN_A};
use crate::support::{bin, code, run, stderr, stdout};

/// Every character the export must not write raw: bidi embeddings, overrides and isolates,
/// zero-width characters and marks, the BOM, the line and paragraph separators, C1 controls.
fn hidden() -> Vec<char> {
    let ranges = [
        (0x202a, 0x202e),
        (0x2066, 0x2069),
        (0x200b, 0x200f),
        (0xfeff, 0xfeff),
        (0x2028, 0x2029),
        (0x0080, 0x009f),
    ];
    ranges
        .iter()
        .flat_map(|&(a, b)| (a..=b).map(|c| char::from_u32(c).unwrap()))
        .collect()
}

/// `hitl-gate audit export` (or `audit verify`) of the stopped server's database.
fn audit(args: &[&str], data: &std::path::Path, key: &str) -> Command {
    let mut c = Command::new(bin());
    c.arg("audit").args(args);
    match crate::support::postgres::url_of(data) {
        Some(url) => c.args(["--database-url", &url, "--public-key", key]),
        None => c.arg("--data-dir").arg(data),
    };
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jsonl_export_escapes_hidden_characters_and_still_verifies() {
    let srv = TestServer::start(&policy_with("")).await;
    let all: String = hidden().into_iter().collect();
    let argv = ["delete", "pod", &format!("web{all}x")];
    let reason = format!("clean up{all}, as asked");
    let mut body = create_body(&argv);
    body["reason"] = Value::from(reason.clone());
    body["diff"]["text"] = Value::from(format!("- pod web{all}\n"));
    let (s, v) = srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (s, v) = srv.approver().decide(&id, "approve", Some(&all)).await;
    assert_eq!(s, 200, "{v}");
    let (data, key) = (srv.data.clone(), srv.public_key.clone());
    let dir = srv.stop().await;

    let out = run(&mut audit(&["export", "--format", "jsonl"], &data, &key));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).expect("the export is UTF-8");
    for c in hidden() {
        assert!(
            !text.contains(c),
            "U+{:04X} is in the export raw",
            u32::from(c)
        );
    }
    assert!(
        text.contains(r"\u202e") && text.contains(r"\u0085"),
        "{text}"
    );

    // Parsed, the strings are the agent's, character for character.
    let created = text
        .lines()
        .find_map(|l| {
            let line: Value = serde_json::from_str(l).unwrap();
            (line["row"]["kind"] == "request_created").then(|| line["row"]["body"].clone())
        })
        .expect("a request_created row");
    let created: Value = serde_json::from_str(created.as_str().unwrap()).unwrap();
    assert_eq!(created["command"]["argv"], serde_json::json!(argv));
    assert_eq!(created["request"]["reason"], Value::from(reason));

    // And the export verifies offline: the hashes cover the parsed strings.
    let file = dir.path().join("evidence.jsonl");
    std::fs::write(&file, &out.stdout).unwrap();
    let ok = run(Command::new(bin())
        .args(["audit", "verify", "--public-key", &key, "--file"])
        .arg(&file));
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert!(stdout(&ok).contains("audit log ok"), "{}", stdout(&ok));
}
