//! Policy loading errors fail closed, and the system policy wins over the environment.
//! The system policy lives at `$HITL_GATE_TEST_ROOT/etc/hitl-gate/policy.toml` here; only builds
//! with the `test-hooks` feature read that variable (see docs/policy.md).

use std::os::unix::fs::PermissionsExt;

use crate::support::{code, run, stderr, stdout, Sandbox};

fn ran(out: &std::process::Output) -> bool {
    stdout(out).starts_with("RAN ")
}

#[test]
fn malformed_toml_names_file_line_and_column_and_nothing_runs() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    let p = sb.policy(
        "bad.toml",
        "version = 1\n\n[[rule]]\nname = \"x\naction = \"pass\"\n",
    );
    let out = run(sb
        .shim("kubectl")
        .env("HITL_GATE_POLICY", &p)
        .arg("version"));
    assert_eq!(code(&out), 85);
    assert!(!ran(&out));
    let err = stderr(&out);
    assert!(err.contains(&p.display().to_string()), "{err}");
    assert!(err.contains("line 4, column"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn an_unknown_key_fails_closed() {
    let sb = Sandbox::new();
    sb.fake_real("helm");
    let p = sb.policy(
        "typo.toml",
        "version = 1\n[[rule]]\nname = \"r\"\ntools = [\"helm\"]\nsubcommand = [\"install\"]\naction = \"pass\"\n",
    );
    let out = run(sb.shim("helm").env("HITL_GATE_POLICY", &p).arg("version"));
    assert_eq!(code(&out), 85);
    assert!(!ran(&out));
    let err = stderr(&out);
    assert!(
        err.contains("line 5, column 1") && err.contains("subcommand"),
        "{err}"
    );
}

#[test]
fn a_missing_policy_file_named_by_the_environment_fails_closed() {
    let sb = Sandbox::new();
    sb.fake_real("helm");
    let out = run(sb
        .shim("helm")
        .env("HITL_GATE_POLICY", sb.path().join("nope.toml"))
        .arg("version"));
    assert_eq!(code(&out), 85);
    assert!(stderr(&out).contains("cannot open"), "{}", stderr(&out));
}

#[test]
fn a_group_writable_policy_is_refused() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    let p = sb.policy("gw.toml", "version = 1\n");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o620)).unwrap();
    let out = run(sb
        .shim("kubectl")
        .env("HITL_GATE_POLICY", &p)
        .arg("version"));
    assert_eq!(code(&out), 85);
    assert!(!ran(&out));
    assert!(
        stderr(&out).contains("writable by group or others"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_policy_owned_by_someone_else_is_refused() {
    assert!(
        nix::unistd::getuid().is_root(),
        "this test needs root (to chown a file to another user); CI runs as root"
    );
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    let p = sb.policy("other.toml", "version = 1\n");
    nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let out = run(sb
        .shim("kubectl")
        .env("HITL_GATE_POLICY", &p)
        .arg("version"));
    assert_eq!(code(&out), 85);
    assert!(
        stderr(&out).contains("owned by uid 65534"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_system_policy_wins_over_the_environment() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    let etc = sb.root.join("etc/hitl-gate");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let lenient = sb.policy(
        "lenient.toml",
        "version = 1\n[[rule]]\nname = \"let-it-all-through\"\naction = \"pass\"\n",
    );
    // Without a system policy the environment's policy is used: delete passes.
    let out = run(sb
        .shim("kubectl")
        .env("HITL_GATE_POLICY", &lenient)
        .args(["delete", "pod", "x"]));
    assert!(ran(&out), "{}", stderr(&out));

    std::fs::write(
        etc.join("policy.toml"),
        "version = 1\n[[rule]]\nname = \"no-deletes\"\ntools = [\"kubectl\"]\nsubcommands = [\"delete\"]\naction = \"deny\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        etc.join("policy.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = run(sb
        .shim("kubectl")
        .env("HITL_GATE_POLICY", &lenient)
        .args(["delete", "pod", "x"]));
    assert_eq!(
        code(&out),
        84,
        "denied by the system policy: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("no-deletes"), "{}", stderr(&out));

    // A system policy in a directory others can write is refused, not skipped.
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(sb
        .shim("kubectl")
        .env("HITL_GATE_POLICY", &lenient)
        .arg("version"));
    assert_eq!(code(&out), 85, "{}", stderr(&out));
    assert!(stderr(&out).contains("its directory"), "{}", stderr(&out));
}

#[test]
fn deny_rules_exit_with_their_own_code() {
    let sb = Sandbox::new();
    sb.fake_real("terraform");
    let p = sb.policy(
        "deny.toml",
        "version = 1\n[[rule]]\nname = \"never-destroy\"\ntools = [\"terraform\", \"tofu\"]\nsubcommands = [\"destroy\"]\naction = \"deny\"\n",
    );
    let out = run(sb
        .shim("terraform")
        .env("HITL_GATE_POLICY", &p)
        .args(["destroy", "-auto-approve"]));
    assert_eq!(code(&out), 84);
    assert!(stderr(&out).contains("never-destroy"), "{}", stderr(&out));
    assert!(!ran(&out));
}

#[test]
fn semantic_errors_name_the_rule() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    for (text, needle) in [
        ("version = 2\n", "version = 2"),
        (
            "version = 1\n[[rule]]\nname = \"a\"\nenvironments = [\"prod\"]\naction = \"gate\"\n",
            "names environment \"prod\"",
        ),
        (
            "version = 1\n[[rule]]\nname = \"a\"\naction = \"gate\"\n[[rule]]\nname = \"a\"\naction = \"pass\"\n",
            "used twice",
        ),
        ("version = 1\n[tools.kubectl]\nreal_path = \"bin/kubectl\"\n", "absolute"),
    ] {
        let p = sb.policy("sem.toml", text);
        let out = run(sb.shim("kubectl").env("HITL_GATE_POLICY", &p).arg("version"));
        assert_eq!(code(&out), 85, "{text}");
        assert!(stderr(&out).contains(needle), "{text}: {}", stderr(&out));
    }
}

#[test]
fn an_unreadable_system_policy_fails_closed_instead_of_falling_back() {
    // `etc/hitl-gate` is a file, so looking up the system policy fails with ENOTDIR, not
    // "not found": the system policy is in force but cannot be read, so nothing runs, and the
    // lenient $HITL_GATE_POLICY is not used in its place.
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    std::fs::create_dir_all(sb.root.join("etc")).unwrap();
    std::fs::write(sb.root.join("etc/hitl-gate"), "not a directory").unwrap();
    let lenient = sb.policy(
        "lenient.toml",
        "version = 1\n[[rule]]\nname = \"all\"\naction = \"pass\"\n",
    );
    let out = run(sb
        .shim("kubectl")
        .env("HITL_GATE_POLICY", &lenient)
        .args(["delete", "pod", "x"]));
    assert_eq!(code(&out), 85, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("etc/hitl-gate/policy.toml"),
        "{}",
        stderr(&out)
    );
    assert!(!ran(&out));
}

#[test]
fn approval_settings_are_checked() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    let key = "ab".repeat(32);
    for (text, needle) in [
        ("[approval]\nurl = \"http://127.0.0.1:1\"\n".to_string(), "needs all of"),
        (
            format!("[approval]\nurl = \"http://gate.example.com\"\ntoken_file = \"/t\"\npublic_key = \"{key}\"\n"),
            "only to loopback",
        ),
        (
            format!("[approval]\nurl = \"https://gate.example.com\"\ntoken_file = \"t\"\npublic_key = \"{key}\"\n"),
            "absolute",
        ),
        (
            "[approval]\nurl = \"https://gate.example.com\"\ntoken_file = \"/t\"\npublic_key = \"xyz\"\n".to_string(),
            "64 hex",
        ),
    ] {
        let p = sb.policy("appr.toml", &format!("version = 1\n{text}"));
        let out = run(sb.shim("kubectl").env("HITL_GATE_POLICY", &p).arg("version"));
        assert_eq!(code(&out), 85, "{text}");
        assert!(stderr(&out).contains(needle), "{text}: {}", stderr(&out));
    }
}
