//! Terminal safety: what an agent supplied (argv, cwd, reason, diff) is shown by `hitl-gate list`
//! and `show` with control characters, escape sequences and bidi overrides made visible, never
//! obeyed; printable text, quotes included, stays verbatim.

use serde_json::json;

use crate::support::server::{create_body, policy_with, TestServer, TOKEN_A};
use crate::support::{bin, code, run, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_escape_what_the_agent_wrote() {
    let srv = TestServer::start(&policy_with("")).await;
    let mut body = create_body(&["delete", "pod", "x\r\x1b[2Kget pods", "\u{202e}sdop"]);
    body["cwd"] = json!("/work\x1b]0;title\x07");
    body["reason"] = json!("routine\u{2066} cleanup\u{9b}31m");
    body["diff"]["text"] = json!(
        "  # null_resource.a will be \x1b[31mdestroyed\x1b[0m\n  - \"n\" = \"1\"\r\n+ fine\n"
    );
    let (s, v) = srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    for args in [vec!["list"], vec!["show", &id]] {
        let out = run(std::process::Command::new(bin())
            .args(&args)
            .arg("--data-dir")
            .arg(&srv.data));
        assert_eq!(code(&out), 0);
        let text = stdout(&out);
        for raw in ['\x1b', '\r', '\u{202e}', '\u{2066}', '\u{9b}', '\x07'] {
            assert!(
                !text.contains(raw),
                "{args:?} printed {raw:?} raw: {text:?}"
            );
        }
        assert!(text.contains("\\u{1b}[2K"), "{args:?}: {text}");
        assert!(text.contains("\\u{202e}sdop"), "{args:?}: {text}");
    }
    let out = run(std::process::Command::new(bin())
        .args(["show", &id, "--data-dir"])
        .arg(&srv.data));
    let text = stdout(&out);
    // Quotes stay as they are; the diff keeps its lines.
    assert!(text.contains("  - \"n\" = \"1\"\\u{d}\n+ fine"), "{text}");
    assert!(text.contains("\\u{1b}[31mdestroyed"), "{text}");
    assert!(text.contains("routine\\u{2066} cleanup"), "{text}");
    srv.stop().await;
}
