//! The approver's CLI against a real server (in-process, real SQLite, the admin socket), as the
//! built binary: `list`'s header row and TARGET column, `show`'s times in the local zone (TZ
//! respected), `list --json` and `show --json` as documented in docs/cli.md; and what the
//! binary says about itself: `--version` with the commit and build date, shell completions that
//! bash reads and completes with, and man pages groff reads without a warning.

use std::path::Path;
use std::process::{Command, Output};

use jiff::tz::TimeZone;
use serde_json::{json, Value};

use crate::support::server::{create_body, policy_with, TestServer, TOKEN_A};
use crate::support::{bin, code, run, stderr, stdout};

/// `hitl-gate ARGS --data-dir DATA` with `TZ=tz`; it must succeed.
fn cli(data: &Path, tz: &str, args: &[&str]) -> String {
    let out = run(Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("TZ", tz));
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Unix ms as `show` prints them in `tz`.
fn local(ms: i64, tz: &str) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap()
        .to_zoned(TimeZone::get(tz).unwrap())
        .strftime("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// A terraform request with no environment in the policy, and a kube one with its server.
fn bodies() -> (Value, Value) {
    let mut tf = create_body(&["apply"]);
    tf["tool"] = json!("terraform");
    tf["environment"] =
        json!({"terraform_workspace": "default", "dir": "/work/infra", "exact": true});
    tf["nonce"] = json!(hitl_gate::hex::sha256(b"tf"));
    let mut kube = create_body(&["delete", "deploy", "web"]);
    kube["environment"] = json!({
        "kube_context": "prod",
        "cluster_server": "https://k8s.example.com:6443",
        "namespace": "web",
        "exact": true
    });
    (tf, kube)
}

/// The character column where `cell` starts on the line that holds `id`.
fn column(text: &str, id: &str, cell: &str) -> usize {
    let line = text.lines().find(|l| l.starts_with(id)).expect(id);
    line.find(cell)
        .unwrap_or_else(|| panic!("no {cell:?} in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_has_a_header_and_a_target_column_and_show_prints_local_times() {
    let srv = TestServer::start(&policy_with("")).await;
    let a = srv.agent(TOKEN_A);
    let (tf, kube) = bodies();
    let (s, v) = a.post("/api/v1/requests", tf).await;
    assert_eq!(s, 201, "{v}");
    let tf_id = v["id"].as_str().unwrap().to_string();
    let (s, v) = a.post("/api/v1/requests", kube).await;
    assert_eq!(s, 201, "{v}");
    let kube_id = v["id"].as_str().unwrap().to_string();
    // The terraform agent stopped waiting.
    let (s, v) = a
        .post(&format!("/api/v1/requests/{tf_id}/detach"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");

    let text = cli(&srv.data, "UTC", &["list"]);
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("ID ") && header.contains(" TARGET ") && header.ends_with("COMMAND"),
        "{text}"
    );
    // Under the header, aligned: the terraform workspace and directory where no environment is
    // configured, the kube context and server.
    let target = header.find("TARGET").unwrap();
    assert_eq!(
        column(&text, &tf_id, "default (/work/infra)"),
        target,
        "{text}"
    );
    assert_eq!(
        column(&text, &kube_id, "prod (https://k8s.example.com:6443)"),
        target,
        "{text}"
    );
    let env = header.find("ENVIRONMENT").unwrap();
    assert_eq!(column(&text, &tf_id, "- "), env, "{text}");
    let tf_line = text.lines().find(|l| l.starts_with(&tf_id)).unwrap();
    assert!(
        tf_line.ends_with("terraform apply  [no agent waiting]"),
        "{text}"
    );
    let kube_line = text.lines().find(|l| l.starts_with(&kube_id)).unwrap();
    assert!(!kube_line.contains("no agent waiting"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");

    // show: created and deadline in the zone TZ names, with its offset.
    let view: Value =
        serde_json::from_str(&cli(&srv.data, "UTC", &["show", &kube_id, "--json"])).unwrap();
    let (created, deadline) = (
        view["created_at"].as_i64().unwrap(),
        view["deadline"].as_i64().unwrap(),
    );
    for tz in ["Asia/Kolkata", "America/New_York"] {
        let text = cli(&srv.data, tz, &["show", &kube_id]);
        assert!(
            text.contains(&format!("\ncreated     {}\n", local(created, tz))),
            "{tz}: {text}"
        );
        assert!(
            text.contains(&format!("\ndeadline    {}\n", local(deadline, tz))),
            "{tz}: {text}"
        );
        assert!(!text.contains("decided "), "{text}");
    }
    assert!(local(created, "Asia/Kolkata").ends_with(" +05:30"));

    // approve prints the decided time (and the approval's).
    let text = cli(
        &srv.data,
        "Asia/Kolkata",
        &["approve", &kube_id, "-m", "ok"],
    );
    let view: Value =
        serde_json::from_str(&cli(&srv.data, "UTC", &["show", &kube_id, "--json"])).unwrap();
    let decided = view["decision"]["decided_at"].as_i64().unwrap();
    let at = view["approvals"][0]["at"].as_i64().unwrap();
    assert!(
        text.contains(&format!(
            "\ndecided     {}\n",
            local(decided, "Asia/Kolkata")
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(" at {} (ok)\n", local(at, "Asia/Kolkata"))),
        "{text}"
    );
    assert!(text.contains("\ndecision    approved by local:"), "{text}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_print_the_documented_json() {
    let srv = TestServer::start(&policy_with("")).await;
    let a = srv.agent(TOKEN_A);
    let (tf, kube) = bodies();
    let mut ids = Vec::new();
    for body in [tf, kube] {
        let (s, v) = a.post("/api/v1/requests", body).await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    cli(&srv.data, "UTC", &["reject", &ids[0], "-m", "not now"]);

    // list --json: one line, an array of request views.
    let text = cli(&srv.data, "UTC", &["list", "--state", "all", "--json"]);
    assert_eq!(text.lines().count(), 1, "{text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 2, "{text}");
    // show --json: one request view, the same object as the list's.
    for id in &ids {
        let text = cli(&srv.data, "UTC", &["show", id, "--json"]);
        assert_eq!(text.lines().count(), 1, "{text}");
        let one: Value = serde_json::from_str(&text).unwrap();
        let in_list = list.iter().find(|v| v["id"] == one["id"]).expect(id);
        // The fields docs/cli.md names.
        for key in [
            "id",
            "state",
            "agent",
            "tool",
            "argv",
            "environment",
            "classification",
            "changes",
            "created_at",
            "deadline",
            "decision",
            "agent_waiting",
        ] {
            assert!(one.get(key).is_some(), "{key} missing: {one}");
            assert_eq!(one[key], in_list[key], "{key}");
        }
        serde_json::from_value::<hitl_gate::api::RequestView>(one).unwrap();
    }
    let rejected = list.iter().find(|v| v["id"] == ids[0].as_str()).unwrap();
    assert_eq!(rejected["state"], "rejected");
    assert_eq!(rejected["decision"]["comment"], "not now");
    assert_eq!(rejected["environment"]["terraform_workspace"], "default");
    // --limit: at most that many, newest first.
    let text = cli(
        &srv.data,
        "UTC",
        &["list", "--state", "all", "--limit", "1", "--json"],
    );
    let one: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{text}");
    // The empty list is an empty array.
    let text = cli(&srv.data, "UTC", &["list", "--json", "--state", "expired"]);
    assert_eq!(text, "[]\n");
    let text = cli(&srv.data, "UTC", &["list", "--state", "expired"]);
    assert_eq!(text, "no expired requests\n");
    // An unknown state is refused by the CLI itself, with the values it takes.
    let out = run(Command::new(bin())
        .args(["list", "--state", "decided", "--data-dir"])
        .arg(&srv.data));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("pending"), "{}", stderr(&out));
    let out = run(Command::new(bin())
        .args(["list", "--limit", "0", "--data-dir"])
        .arg(&srv.data));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    srv.stop().await;
}

#[test]
fn the_version_names_the_commit_and_the_build_date() {
    let out = run(Command::new(bin()).arg("--version"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let repo = env!("CARGO_MANIFEST_DIR");
    let head = Command::new("git")
        .args(["-C", repo, "rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let want = format!(
        "hitl-gate {} (commit {head}, built ",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        text.starts_with(&want),
        "{text:?} does not start with {want:?}"
    );
    let date = text[want.len()..].strip_suffix(")\n").expect(&text);
    jiff::civil::Date::strptime("%Y-%m-%d", date).expect(&text);
    // -V says the same.
    assert_eq!(stdout(&run(Command::new(bin()).arg("-V"))), text);
}

/// `hitl-gate completions bash`, sourced into bash, completing `hitl-gate WORDS…`.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let array = quoted.join(" ");
    let program = format!(
        r#"source "$1"
f=$(complete -p hitl-gate | sed 's/.*-F \([^ ]*\).*/\1/')
COMP_WORDS=({array})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="{line}"
COMP_POINT=${{#COMP_LINE}}
"$f" hitl-gate "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let out: Output = run(Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program, "bash"])
        .arg(script));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out).lines().map(|l| l.trim().to_string()).collect()
}

#[test]
fn completions_are_generated_and_bash_reads_and_completes_with_them() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = run(Command::new(bin()).args(["completions", shell]));
        assert_eq!(code(&out), 0, "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        for sub in ["list", "show", "approve", "reject", "completions", "man"] {
            assert!(text.contains(sub), "{shell}: no {sub}");
        }
        std::fs::write(dir.path().join(shell), text).unwrap();
    }
    let zsh = std::fs::read_to_string(dir.path().join("zsh")).unwrap();
    assert!(zsh.starts_with("#compdef hitl-gate"), "{zsh}");
    let fish = std::fs::read_to_string(dir.path().join("fish")).unwrap();
    assert!(fish.contains("complete -c hitl-gate"), "{fish}");

    let bash = dir.path().join("bash");
    let out = run(Command::new("bash").arg("-n").arg(&bash));
    assert_eq!(code(&out), 0, "bash -n: {}", stderr(&out));
    assert!(bash_completes(&bash, &["hitl-gate", "li"]).contains(&"list".to_string()));
    assert!(bash_completes(&bash, &["hitl-gate", "list", "--st"]).contains(&"--state".to_string()));
    // Below a subcommand too, hyphens and all (clap-rs/clap#6421, worked around).
    let token = bash_completes(&bash, &["hitl-gate", "keys", "agent-token", "--"]);
    assert!(token.contains(&"--on-behalf-of".to_string()), "{token:?}");
    let states = bash_completes(&bash, &["hitl-gate", "list", "--state", ""]);
    for s in ["pending", "approved", "all"] {
        assert!(states.contains(&s.to_string()), "{states:?}");
    }
    let out = run(Command::new(bin()).args(["completions", "tcsh"]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[test]
fn man_pages_are_generated_for_every_command_and_groff_reads_them_cleanly() {
    let out = run(Command::new(bin()).arg("man"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let main = stdout(&out);
    assert!(main.contains(".TH hitl-gate 1 "), "{main}");
    assert!(main.contains("hitl\\-gate\\-list(1)"), "{main}");

    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(bin()).args(["man", "--dir"]).arg(dir.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for want in [
        "hitl-gate.1",
        "hitl-gate-list.1",
        "hitl-gate-show.1",
        "hitl-gate-approve.1",
        "hitl-gate-reject.1",
        "hitl-gate-audit-verify.1",
        "hitl-gate-keys-agent-token.1",
        "hitl-gate-completions.1",
        "hitl-gate-man.1",
    ] {
        assert!(pages.contains(&want.to_string()), "no {want} in {pages:?}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("hitl-gate.1")).unwrap(),
        main,
        "man prints the same page it writes"
    );
    let list = std::fs::read_to_string(dir.path().join("hitl-gate-list.1")).unwrap();
    for option in ["\\-\\-state", "\\-\\-json", "\\-\\-data\\-dir"] {
        assert!(list.contains(option), "{option}: {list}");
    }
    for page in &pages {
        let path = dir.path().join(page);
        let text = std::fs::read(&path).unwrap();
        assert!(text.is_ascii(), "{page} is not ASCII");
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .expect("groff is needed (apt-get install groff-base; scripts/test installs it)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
