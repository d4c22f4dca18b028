//! `hitl-gate init` and the README's quick start, in a fresh HOME: init, `hitl-gate serve` (it
//! finds the policy init wrote), the agent's shell with the printed exports, a gated
//! `kubectl delete` against the test-only fake Kubernetes API, and `hitl-gate list` /
//! `hitl-gate approve` with no `--data-dir`: the delete runs. Also: init refuses to overwrite,
//! and the approver commands find the data dir the way `serve` does.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::kube::FakeKube;
use crate::support::server::free_port;
use crate::support::{bin, code, run, stderr, stdout, tools, Sandbox};

/// `hitl-gate ARGS` with only `HOME` (and PATH) from the outside.
fn cli(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin");
    c
}

/// The value after `export HITL_GATE_POLICY=` and `PATH=` in init's output.
fn exports(out: &str) -> (String, String) {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("export HITL_GATE_POLICY="))
        .unwrap_or_else(|| panic!("no export line in: {out}"));
    let mut policy = String::new();
    let mut path = String::new();
    for word in line.split_whitespace() {
        if let Some(p) = word.strip_prefix("HITL_GATE_POLICY=") {
            policy = p.to_string();
        }
        if let Some(p) = word.strip_prefix("PATH=") {
            path = p.trim_end_matches(":$PATH").to_string();
        }
    }
    (policy, path)
}

#[test]
fn init_then_the_readmes_commands_gate_and_approve_a_kubectl_delete() {
    let sb = Sandbox::new();
    sb.add_real("kubectl", &tools::kubectl());
    let home = sb.path().join("newcomer");
    std::fs::create_dir_all(&home).unwrap();
    let port = free_port();
    let out = run(&mut cli(
        &home,
        &["init", "--listen", &format!("127.0.0.1:{port}")],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("  hitl-gate serve\n"), "{printed}");
    let (policy, shims) = exports(&printed);
    let config = home.join(".config/hitl-gate");
    assert_eq!(Path::new(&policy), config.join("policy.toml"));
    for (file, mode) in [("policy.toml", 0o600), ("agent.token", 0o600)] {
        let m = std::fs::metadata(config.join(file)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
            mode,
            "{file}"
        );
    }
    assert!(home.join(".local/share/hitl-gate/signing.key").exists());

    // The server, as the README says: no flags, it finds the policy. (Marked as the sandbox's:
    // it is killed with the sandbox, also when the test fails.)
    let mut serve = sb
        .owner
        .mark(&mut cli(&home, &["serve"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(serve.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        banner.push_str(&l);
        banner.push('\n');
        if l.contains("decide:") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(banner.contains(&format!("127.0.0.1:{port}")), "{banner}");
    assert!(
        banner.contains("reject ID -m REASON\n"),
        "the decide line needs no --data-dir: {banner}"
    );

    // The agent's shell: the printed exports, a cluster.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(FakeKube::start());
    fake.put_deployment("prod", "web");
    let kubeconfig = fake.kubeconfig(sb.path(), &[("prod", "prod")]);
    let agent = sb
        .owner
        .mark(&mut Command::new("kubectl"))
        .args(["delete", "deployment", "web"])
        .env_clear()
        .env("HOME", &home)
        .env("HITL_GATE_POLICY", &policy)
        .env(
            "PATH",
            format!("{shims}:{}:/usr/bin:/bin", sb.real.display()),
        )
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl (the shim) runs from init's PATH");

    // The approver, in another shell: no --data-dir anywhere.
    let start = Instant::now();
    let id = loop {
        let out = run(&mut cli(&home, &["list"]));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        if let Some(id) = stdout(&out)
            .split_whitespace()
            .find(|w| w.len() == 32 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            break id.to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no request appeared: {}",
            stdout(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = run(&mut cli(&home, &["approve", &id, "-m", "ok for the test"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = crate::support::wait_within(agent, Duration::from_secs(60), "kubectl");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        fake.get("apps/v1", "deployments", "prod", "web").is_none(),
        "the approved delete ran"
    );
    // The audit commands find the data dir the same way.
    let out = run(&mut cli(&home, &["audit", "verify"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // explain and doctor in the approver's shell (no HITL_GATE_POLICY) find init's policy too,
    // and say that the shims read it only where HITL_GATE_POLICY names it.
    let told = format!(
        "{} (your configuration, from `hitl-gate init`; the shims read it only where \
         $HITL_GATE_POLICY names it)",
        config.join("policy.toml").display()
    );
    let out = run(&mut cli(
        &home,
        &["explain", "--", "kubectl", "delete", "deploy", "web"],
    ));
    assert!(
        stdout(&out).contains(&told),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = run(&mut cli(&home, &["doctor"]));
    assert!(
        stdout(&out).contains(&format!("ok   policy: {told}")),
        "{}",
        stdout(&out)
    );
    crate::support::procs::kill_group(&mut serve);
}

#[test]
fn init_refuses_to_overwrite_and_shows_what_it_would_write() {
    let sb = Sandbox::new();
    let home = sb.path().join("h");
    std::fs::create_dir_all(&home).unwrap();
    assert_eq!(code(&run(&mut cli(&home, &["init"]))), 0);
    let policy = home.join(".config/hitl-gate/policy.toml");
    let before = std::fs::read(&policy).unwrap();
    let out = run(&mut cli(&home, &["init"]));
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("nothing was written"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("[approval]"),
        "shows the policy: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(&policy).unwrap(),
        before,
        "the policy is untouched"
    );
    // --dir elsewhere: everything inside it, data included; serve needs the policy named.
    let dir = sb.path().join("gate");
    let out = run(&mut cli(&home, &["init", "--dir", dir.to_str().unwrap()]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(dir.join("data/signing.key").exists());
    assert!(
        stdout(&out).contains(&format!(
            "HITL_GATE_POLICY={} hitl-gate serve",
            dir.join("policy.toml").display()
        )),
        "{}",
        stdout(&out)
    );
    // The policy parses, and pins the key of the data dir it names.
    let p =
        hitl_gate::policy::load::parse(&std::fs::read_to_string(dir.join("policy.toml")).unwrap())
            .expect("init's policy parses");
    let key = hitl_gate::signing::Keys::load_or_create(&dir.join("data")).unwrap();
    assert_eq!(
        p.approval().public_key.as_deref(),
        Some(key.public_hex().as_str())
    );
}

#[test]
fn approver_commands_find_the_data_dir_in_the_policy_or_say_why_not() {
    let sb = Sandbox::new();
    let home = sb.path().join("h");
    std::fs::create_dir_all(&home).unwrap();
    let data = sb.path().join("elsewhere");
    let policy = sb.policy(
        "p.toml",
        &format!("version = 1\n[serve]\ndata_dir = \"{}\"\n", data.display()),
    );
    // keys show creates the key in the policy's data dir, not the default one.
    let out = run(cli(&home, &["keys", "show"]).env("HITL_GATE_POLICY", &policy));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(data.join("signing.key").exists());
    assert!(!home.join(".local/share/hitl-gate").exists());
    // list looks for the admin socket there (the server is not running: it says where).
    let out = run(cli(&home, &["list"]).env("HITL_GATE_POLICY", &policy));
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains(&data.display().to_string()),
        "{}",
        stderr(&out)
    );
}
