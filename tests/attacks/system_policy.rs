//! The system policy must be root's: one the agent's user owns would be the agent's to rewrite.
//! And `hitl-gate doctor`, run as the agent's user, fails loudly when that user can reach the
//! approval server's admin socket or read its signing key.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use crate::support::server::{policy_with, TestServer};
use crate::support::{bin, code, run, stderr, stdout, Sandbox};

const NOBODY: u32 = 65534;

fn as_nobody(c: &mut std::process::Command) {
    c.uid(NOBODY).gid(NOBODY);
}

fn needs_root() {
    assert!(
        nix::unistd::getuid().is_root(),
        "this test needs root (to own files as another user); CI runs as root"
    );
}

#[test]
fn a_system_policy_owned_by_the_agents_user_is_refused() {
    needs_root();
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    // The agent (nobody) must be able to walk the sandbox.
    for d in [sb.path(), &sb.root, &sb.work, &sb.shims, &sb.real, &sb.home] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let etc = sb.root.join("etc/hitl-gate");
    std::fs::create_dir_all(&etc).unwrap();
    let policy = etc.join("policy.toml");
    std::fs::write(
        &policy,
        "version = 1\n[[rule]]\nname = \"all-pass\"\naction = \"pass\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let kubectl = || {
        let mut c = sb.shim("kubectl");
        c.args(["delete", "pod", "x"]);
        as_nobody(&mut c);
        run(&mut c)
    };
    // Root's: its rules hold (everything passes).
    let out = kubectl();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The agent's own: refused, nothing runs.
    nix::unistd::chown(&policy, Some(nix::unistd::Uid::from_raw(NOBODY)), None).unwrap();
    let out = kubectl();
    assert_eq!(code(&out), 85, "{}", stderr(&out));
    assert!(stderr(&out).contains("not root"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("RAN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_loudly_when_this_user_can_approve_or_sign() {
    needs_root();
    let srv = TestServer::start(&policy_with("")).await;
    // Run as the server's own user: it can reach both.
    let out = run(std::process::Command::new(bin())
        .args(["doctor", "--data-dir"])
        .arg(&srv.data)
        .env("HITL_GATE_TEST_ROOT", srv.dir.path()));
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("FAIL") && text.contains("admin socket"),
        "{text}"
    );
    assert!(text.contains("signing key"), "{text}");
    // As another user (the agent): neither is reachable, and doctor says nothing of them.
    let mut c = std::process::Command::new(bin());
    c.args(["doctor", "--data-dir"])
        .arg(&srv.data)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .current_dir("/");
    as_nobody(&mut c);
    let out = run(&mut c);
    assert!(!stdout(&out).contains("can connect"), "{}", stdout(&out));
    assert!(
        !stdout(&out).contains("can read the approval"),
        "{}",
        stdout(&out)
    );
    srv.stop().await;
}
