//! `install.sh`, run under `--root` (never against this machine's `/etc` or `/opt`), with dash
//! and with busybox sh (its PATH holding only busybox's applets): the files, owners and modes it
//! makes; a second run changes nothing; `--dry-run` changes nothing (a hash of the whole tree
//! before and after); `--uninstall` leaves only the policy, the token and the data; a wrong
//! `--sha256` aborts before anything is written; an existing policy is not overwritten. Also:
//! shellcheck finds nothing, and `scripts/build-static`'s binary is static.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{code, run, stderr, stdout};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The static binary `scripts/build-static` made (scripts/test builds it before the tests).
pub fn static_binary() -> PathBuf {
    let p = repo().join("target/x86_64-unknown-linux-gnu/release/hitl-gate");
    assert!(
        p.exists(),
        "{} is missing: run scripts/build-static (scripts/test does, before the tests)",
        p.display()
    );
    p
}

pub fn sha256_of(p: &Path) -> String {
    hitl_gate::hex::sha256(&std::fs::read(p).unwrap())
}

/// A shell to run install.sh with.
#[derive(Clone, Copy, Debug)]
pub enum Shell {
    Dash,
    /// busybox sh, with a PATH of busybox's applets only.
    Busybox,
}

pub const SHELLS: [Shell; 2] = [Shell::Dash, Shell::Busybox];

/// A directory of symlinks to busybox, one per applet, for a PATH with nothing else in it.
fn busybox_path(dir: &Path) -> PathBuf {
    let applets = dir.join("busybox-applets");
    if applets.exists() {
        return applets;
    }
    let out = Command::new("busybox")
        .arg("--list")
        .output()
        .expect("busybox is needed (apt-get install busybox-static; scripts/test installs it)");
    std::fs::create_dir_all(&applets).unwrap();
    for a in String::from_utf8_lossy(&out.stdout).lines() {
        let _ = std::os::unix::fs::symlink(which("busybox"), applets.join(a));
    }
    applets
}

fn which(tool: &str) -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{tool} is not on PATH"))
}

/// `install.sh ARGS` under `shell`.
pub fn install(shell: Shell, scratch: &Path, args: &[&str]) -> Output {
    let script = repo().join("install.sh");
    let mut c = match shell {
        Shell::Dash => {
            let mut c = Command::new("dash");
            c.env("PATH", "/usr/bin:/bin");
            c
        }
        Shell::Busybox => {
            let mut c = Command::new("busybox");
            c.arg("sh").env("PATH", busybox_path(scratch));
            c
        }
    };
    c.arg(script).args(args).env("TMPDIR", scratch);
    run(&mut c)
}

/// A root with `/etc/passwd` and `/etc/group` (group `agents` is 4242).
pub fn new_root(base: &Path) -> PathBuf {
    let root = base.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nagents:x:4242:\n").unwrap();
    root
}

/// Every path below `root` with its type, owner, mode, link target and content hash, sorted.
/// Runs the same install again: it succeeds, says "nothing to change", and the tree under
/// `root` is byte for byte what the first run left.
fn second_run_changes_nothing(shell: Shell, scratch: &Path, args: &[&str], root: &Path) {
    let installed = tree(root);
    let out = install(shell, scratch, args);
    assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing to change"),
        "{shell:?}: {}",
        stdout(&out)
    );
    assert_eq!(
        tree(root),
        installed,
        "{shell:?}: the second run changed the tree"
    );
}

/// `--dry-run` says what it would do and changes nothing; then the install itself, which must
/// succeed. Returns its output.
fn dry_run_then_install(shell: Shell, scratch: &Path, args: &[&str], root: &Path) -> Output {
    let before = tree(root);
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let out = install(shell, scratch, &dry);
    assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
    assert_eq!(tree(root), before, "{shell:?}: --dry-run changed the tree");
    let out = install(shell, scratch, args);
    assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
    out
}

pub fn tree(root: &Path) -> String {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                "dir".into()
            } else {
                sha256_of(&p)
            };
            out.push(format!(
                "{rel} {}:{} {:o} {what}",
                m.uid(),
                m.gid(),
                m.mode() & 0o7777
            ));
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out.join("\n")
}

pub fn owner_mode(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

const KEY: &str = "abababababababababababababababababababababababababababababababab";

fn agent_args<'a>(bin: &'a str, sha: &'a str, token: &'a str) -> Vec<&'a str> {
    vec![
        "agent",
        "--binary",
        bin,
        "--sha256",
        sha,
        "--server",
        "https://gate.example.com",
        "--public-key",
        KEY,
        "--token-file",
        token,
        "--agent-group",
        "agents",
    ]
}

#[test]
fn the_agent_install_under_a_root_with_dash_and_busybox() {
    let bin = static_binary();
    let sha = sha256_of(&bin);
    for shell in SHELLS {
        let base = tempfile::tempdir().unwrap();
        let root = new_root(base.path());
        let token = base.path().join("token");
        std::fs::write(&token, "hgt_the-token\n").unwrap();
        let rootarg = root.display().to_string();
        let (b, t) = (bin.display().to_string(), token.display().to_string());
        let mut args: Vec<&str> = agent_args(&b, &sha, &t);
        args.extend(["--root", &rootarg]);

        // --dry-run: says what it would do, changes nothing.
        let before = tree(&root);
        let mut dry = args.clone();
        dry.push("--dry-run");
        let out = install(shell, base.path(), &dry);
        assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("would install"),
            "{shell:?}: {}",
            stdout(&out)
        );
        assert_eq!(tree(&root), before, "{shell:?}: --dry-run changed the tree");

        // The install.
        let out = install(shell, base.path(), &args);
        assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
        let p = |s: &str| root.join(s);
        assert_eq!(owner_mode(&p("opt/hitl-gate/bin/hitl-gate")), (0, 0, 0o755));
        assert_eq!(sha256_of(&p("opt/hitl-gate/bin/hitl-gate")), sha);
        for tool in ["terraform", "tofu", "kubectl", "helm"] {
            let link = p(&format!("opt/hitl-gate/shims/{tool}"));
            assert_eq!(
                std::fs::read_link(&link).unwrap(),
                Path::new("../bin/hitl-gate")
            );
        }
        assert_eq!(owner_mode(&p("etc/hitl-gate")), (0, 0, 0o755));
        assert_eq!(owner_mode(&p("etc/hitl-gate/policy.toml")), (0, 0, 0o644));
        assert_eq!(
            owner_mode(&p("etc/hitl-gate/agent.token")),
            (0, 4242, 0o640)
        );
        assert_eq!(owner_mode(&p("etc/profile.d/hitl-gate.sh")), (0, 0, 0o644));
        let policy = std::fs::read_to_string(p("etc/hitl-gate/policy.toml")).unwrap();
        let parsed = hitl_gate::policy::load::parse(&policy).expect("the policy parses");
        assert_eq!(
            parsed.approval().url.as_ref().map(|u| u.list()),
            Some(&["https://gate.example.com".to_string()][..])
        );
        assert_eq!(parsed.approval().public_key.as_deref(), Some(KEY));
        let profile = std::fs::read_to_string(p("etc/profile.d/hitl-gate.sh")).unwrap();
        assert!(profile.contains("/opt/hitl-gate/shims"), "{profile}");

        // A second run changes nothing, and says so.
        second_run_changes_nothing(shell, base.path(), &args, &root);

        // An edited policy is kept; the difference is printed.
        let edited = format!("{policy}\n[[rule]]\nname = \"mine\"\naction = \"deny\"\n");
        std::fs::write(p("etc/hitl-gate/policy.toml"), &edited).unwrap();
        let out = install(shell, base.path(), &args);
        assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("is kept"),
            "{shell:?}: {}",
            stdout(&out)
        );
        assert!(
            stdout(&out).contains("-name = \"mine\""),
            "{shell:?}: {}",
            stdout(&out)
        );
        assert_eq!(
            std::fs::read_to_string(p("etc/hitl-gate/policy.toml")).unwrap(),
            edited
        );

        // --uninstall leaves the policy and the token, nothing else it made.
        let mut un: Vec<&str> = vec!["agent", "--uninstall", "--root", &rootarg];
        let out = install(shell, base.path(), &un);
        assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
        let left = tree(&root);
        let names: Vec<&str> = left.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            names,
            [
                "etc",
                "etc/group",
                "etc/hitl-gate",
                "etc/hitl-gate/agent.token",
                "etc/hitl-gate/policy.toml",
                "etc/passwd"
            ],
            "{shell:?}: {left}"
        );
        // --purge removes those too.
        un.push("--purge");
        let out = install(shell, base.path(), &un);
        assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
        assert!(!p("etc/hitl-gate").exists());
    }
}

#[test]
fn a_wrong_checksum_aborts_before_anything_is_written() {
    let bin = static_binary();
    for shell in SHELLS {
        let base = tempfile::tempdir().unwrap();
        let root = new_root(base.path());
        let token = base.path().join("token");
        std::fs::write(&token, "t\n").unwrap();
        let before = tree(&root);
        let (b, t, r) = (
            bin.display().to_string(),
            token.display().to_string(),
            root.display().to_string(),
        );
        let wrong = "0".repeat(64);
        let mut args = agent_args(&b, &wrong, &t);
        args.extend(["--root", &r]);
        let out = install(shell, base.path(), &args);
        assert_ne!(code(&out), 0, "{shell:?}");
        assert!(
            stderr(&out).contains("nothing was installed"),
            "{shell:?}: {}",
            stderr(&out)
        );
        assert_eq!(tree(&root), before, "{shell:?}");
        // --binary without --sha256 is refused too.
        let out = install(shell, base.path(), &["agent", "--binary", &b, "--root", &r]);
        assert_ne!(code(&out), 0);
        assert!(stderr(&out).contains("--sha256"), "{}", stderr(&out));
        assert_eq!(tree(&root), before);
    }
}

#[test]
fn the_server_install_under_a_root() {
    let bin = static_binary();
    let sha = sha256_of(&bin);
    for shell in SHELLS {
        let base = tempfile::tempdir().unwrap();
        let root = new_root(base.path());
        let (cert, key, _) = crate::support::test_certificate(base.path());
        let (b, r) = (bin.display().to_string(), root.display().to_string());
        let (c, k) = (cert.display().to_string(), key.display().to_string());
        // A listener off loopback without TLS could never start: refused, nothing written.
        let plain = [
            "server",
            "--binary",
            &b,
            "--sha256",
            &sha,
            "--listen",
            "0.0.0.0:8443",
            "--root",
            &r,
        ];
        let before = tree(&root);
        let out = install(shell, base.path(), &plain);
        assert_eq!(code(&out), 1, "{shell:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("give --tls-cert FILE and --tls-key FILE"),
            "{shell:?}: {}",
            stderr(&out)
        );
        assert_eq!(tree(&root), before);
        let mut args = plain.to_vec();
        args.extend(["--tls-cert", &c, "--tls-key", &k]);
        let out = dry_run_then_install(shell, base.path(), &args, &root);
        assert!(
            stdout(&out).contains("server public key"),
            "{}",
            stdout(&out)
        );
        // The service user, in the root's own files.
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        let line = passwd
            .lines()
            .find(|l| l.starts_with("hitl-gate:"))
            .expect("the user");
        let uid: u32 = line.split(':').nth(2).unwrap().parse().unwrap();
        assert!((100..1000).contains(&uid), "{line}");
        let unit =
            std::fs::read_to_string(root.join("etc/systemd/system/hitl-gate.service")).unwrap();
        for want in [
            "User=hitl-gate",
            "StateDirectory=hitl-gate",
            "ProtectSystem=strict",
            "NoNewPrivileges=true",
            "PrivateTmp=true",
            "Restart=on-failure",
            "Environment=HITL_GATE_POLICY=/etc/hitl-gate/server.toml",
            "ExecReload=/bin/kill -HUP $MAINPID",
        ] {
            assert!(unit.contains(want), "{want}: {unit}");
        }
        let policy = std::fs::read_to_string(root.join("etc/hitl-gate/server.toml")).unwrap();
        let parsed = hitl_gate::policy::load::parse(&policy).expect("server.toml parses");
        assert_eq!(parsed.serve().listen.as_deref(), Some("0.0.0.0:8443"));
        assert_eq!(
            parsed.serve().tls_cert.as_deref(),
            Some(Path::new("/etc/hitl-gate/tls/cert.pem"))
        );
        assert_eq!(
            parsed.serve().tls_key.as_deref(),
            Some(Path::new("/etc/hitl-gate/tls/key.pem"))
        );
        assert_eq!(
            owner_mode(&root.join("etc/hitl-gate/tls/cert.pem")),
            (0, 0, 0o644)
        );
        assert_eq!(
            owner_mode(&root.join("etc/hitl-gate/tls/key.pem")),
            (0, uid, 0o640)
        );
        if matches!(shell, Shell::Dash) {
            serves_https_from(&root, &policy);
        }
        assert_eq!(
            owner_mode(&root.join("etc/hitl-gate/server.toml")),
            (0, uid, 0o640)
        );
        assert_eq!(
            owner_mode(&root.join("var/lib/hitl-gate")),
            (uid, uid, 0o700)
        );
        assert_eq!(
            owner_mode(&root.join("var/lib/hitl-gate/signing.key")),
            (uid, uid, 0o600)
        );
        second_run_changes_nothing(shell, base.path(), &args, &root);
        // --uninstall keeps the policy and the data (the signing key, the audit log).
        let out = install(shell, base.path(), &["server", "--uninstall", "--root", &r]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(root.join("var/lib/hitl-gate/signing.key").exists());
        assert!(root.join("etc/hitl-gate/server.toml").exists());
        assert!(!root.join("opt/hitl-gate").exists());
        assert!(!root.join("etc/systemd/system/hitl-gate.service").exists());
    }
}

/// The unit's command with the installed server.toml (its TLS paths moved below `root`, its
/// data dir to a scratch one, so the installed tree stays as install.sh left it): it starts on a
/// non-loopback address, with the certificate the policy names, and answers over HTTPS.
fn serves_https_from(root: &Path, policy: &str) {
    let port = crate::support::server::free_port();
    let scratch = tempfile::tempdir().unwrap();
    let moved = policy
        .replace(
            "/etc/hitl-gate/",
            &format!("{}/etc/hitl-gate/", root.display()),
        )
        .replace(
            "/var/lib/hitl-gate",
            &scratch.path().join("data").display().to_string(),
        )
        .replace("0.0.0.0:8443", &format!("0.0.0.0:{port}"));
    let file = scratch.path().join("server.toml");
    std::fs::write(&file, moved).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let sb = crate::support::Sandbox::new();
    let mut serve = sb
        .owner
        .mark(&mut Command::new(root.join("opt/hitl-gate/bin/hitl-gate")))
        .arg("serve")
        .env("HITL_GATE_POLICY", &file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ca = std::fs::read(root.parent().unwrap().join("ca.pem")).unwrap();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    let answered = loop {
        let got = client
            .get(format!("https://127.0.0.1:{port}/healthz"))
            .send()
            .and_then(|r| r.text());
        match got {
            Ok(text) => break text,
            Err(e) => {
                if let Ok(Some(_)) = serve.try_wait() {
                    let out = crate::support::gate::finish_now(&mut serve);
                    panic!("serve ended: {}", stderr(&out));
                }
                assert!(start.elapsed() < std::time::Duration::from_secs(60), "{e}");
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(answered.starts_with("ok"), "{answered}");
    crate::support::procs::kill_group(&mut serve);
}

#[test]
fn an_agent_image_with_only_some_tools() {
    let bin = static_binary();
    let sha = sha256_of(&bin);
    for shell in SHELLS {
        let base = tempfile::tempdir().unwrap();
        let root = new_root(base.path());
        let (b, r) = (bin.display().to_string(), root.display().to_string());
        let args = ["agent", "--binary", &b, "--sha256", &sha, "--root", &r];
        for bad in ["kubectl,vault", "kubectl,kubectl", ""] {
            let mut a = args.to_vec();
            a.extend(["--tools", bad]);
            let out = install(shell, base.path(), &a);
            assert_eq!(code(&out), 1, "{shell:?} {bad}: {}", stderr(&out));
            assert!(stderr(&out).contains("--tools"), "{}", stderr(&out));
        }
        let mut a = args.to_vec();
        a.extend(["--tools", "kubectl,helm"]);
        dry_run_then_install(shell, base.path(), &a, &root);
        let shims = root.join("opt/hitl-gate/shims");
        let mut names: Vec<String> = std::fs::read_dir(&shims)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["helm", "kubectl"], "{shell:?}");
        second_run_changes_nothing(shell, base.path(), &a, &root);
        // doctor: terraform is not installed here (a note); kubectl's shim without a real
        // kubectl is broken (a failure).
        let out = run(Command::new(root.join("opt/hitl-gate/bin/hitl-gate"))
            .arg("doctor")
            .env_clear()
            .env("HOME", base.path())
            .env("PATH", format!("{}:/nonexistent", shims.display())));
        let text = stdout(&out);
        assert!(
            text.contains("note terraform: not installed here"),
            "{text}"
        );
        assert!(text.contains("note tofu: not installed here"), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("FAIL kubectl:")),
            "{text}"
        );
        assert_eq!(code(&out), 1, "{text}");
    }
}

#[test]
fn shellcheck_finds_nothing_in_install_sh() {
    let out = Command::new("shellcheck")
        .args(["--shell=sh", "--severity=style"])
        .arg(repo().join("install.sh"))
        .output()
        .expect("shellcheck is needed (apt-get install shellcheck; scripts/test installs it)");
    assert_eq!(code(&out), 0, "{}", stdout(&out));
}

#[test]
fn the_static_build_is_a_static_executable() {
    // No dynamic loader, no dynamic section: it runs in a root with no libraries (the
    // container test runs it in one).
    let data = std::fs::read(static_binary()).unwrap();
    assert_eq!(&data[..4], b"\x7fELF");
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
    let phoff = u64::from_le_bytes(data[32..40].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(54) as usize, u16_at(56) as usize);
    let types: Vec<u32> = (0..count).map(|i| u32_at(phoff + i * size)).collect();
    assert!(!types.contains(&3), "PT_INTERP: it needs a dynamic loader");
    assert!(!types.contains(&2), "PT_DYNAMIC: it has a dynamic section");
    assert_eq!(u16_at(16), 2, "ET_EXEC: a fixed-address executable");
}

#[test]
fn the_lockdown_agent_install_under_a_root() {
    let bin = static_binary();
    let sha = sha256_of(&bin);
    for shell in SHELLS {
        let base = tempfile::tempdir().unwrap();
        let root = new_root(base.path());
        let p = |s: &str| root.join(s);
        let mut passwd = std::fs::read_to_string(p("etc/passwd")).unwrap();
        passwd += "agent:x:2001:4242::/home/agent:/bin/sh\n";
        std::fs::write(p("etc/passwd"), passwd).unwrap();
        std::fs::create_dir_all(p("srv/work/sub")).unwrap();
        let file = |name: &str, text: &str| {
            let f = base.path().join(name);
            std::fs::write(&f, text).unwrap();
            f.display().to_string()
        };
        let token = file("token", "hgt_the-token\n");
        let kubectl = file("kubectl", "#!/bin/sh\necho the real kubectl\n");
        let read = file("read.kubeconfig", "read\n");
        let write = file("write.kubeconfig", "write\n");
        let writer_token = file("writer.token", "hgt_the-writer\n");
        // busybox has no setfacl: the acl package's, on busybox's PATH.
        let applets = busybox_path(base.path());
        for t in ["setfacl", "getfacl"] {
            let _ = std::os::unix::fs::symlink(which(t), applets.join(t));
        }
        let (b, rootarg) = (bin.display().to_string(), root.display().to_string());
        let real = format!("kubectl={kubectl}");
        let mut args = agent_args(&b, &sha, &token);
        args.extend([
            "--lockdown",
            "--agent-user",
            "agent",
            "--real",
            &real,
            "--read-kubeconfig",
            &read,
            "--write-kubeconfig",
            &write,
            "--writer-token-file",
            &writer_token,
            "--terraform-providers",
            "/opt/providers",
            "--workspace",
            "/srv/work",
            "--root",
            &rootarg,
        ]);
        let out = dry_run_then_install(shell, base.path(), &args, &root);
        assert!(
            stdout(&out).contains("the agent can still run it"),
            "{shell:?}: {}",
            stdout(&out)
        );
        let passwd = std::fs::read_to_string(p("etc/passwd")).unwrap();
        let user = |name: &str| -> (u32, u32, String) {
            let line = passwd
                .lines()
                .find(|l| l.starts_with(&format!("{name}:")))
                .unwrap_or_else(|| panic!("{shell:?}: no user {name}: {passwd}"));
            let f: Vec<&str> = line.split(':').collect();
            (
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[5].to_string(),
            )
        };
        let (r, rg, rhome) = user("hitl-runner");
        let (w, wg, whome) = user("hitl-writer");
        assert_eq!(
            (rhome.as_str(), whome.as_str()),
            ("/var/lib/hitl-runner", "/var/lib/hitl-writer")
        );
        assert!(r != 2001 && w != 2001 && r != w, "{r} {w}");
        let groups = std::fs::read_to_string(p("etc/group")).unwrap();
        let tools: u32 = groups
            .lines()
            .find_map(|l| l.strip_prefix("hitl-tools:x:"))
            .and_then(|rest| rest.split(':').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{shell:?}: no group hitl-tools: {groups}"));
        assert_eq!(owner_mode(&p("opt/hitl-gate/real")), (0, tools, 0o750));
        assert_eq!(owner_mode(&p("opt/hitl-gate/real/kubectl")), (0, 0, 0o755));
        assert_eq!(owner_mode(&p("var/lib/hitl-runner")), (r, rg, 0o700));
        assert_eq!(owner_mode(&p("var/lib/hitl-writer")), (w, wg, 0o700));
        // The read credential is the runner's, the write credential and token the writer's.
        for (f, want, owner) in [
            ("var/lib/hitl-runner/read.kubeconfig", "read\n", (r, rg)),
            ("var/lib/hitl-writer/write.kubeconfig", "write\n", (w, wg)),
            (
                "var/lib/hitl-writer/writer.token",
                "hgt_the-writer\n",
                (w, wg),
            ),
        ] {
            assert_eq!(owner_mode(&p(f)), (owner.0, owner.1, 0o600), "{f}");
            assert_eq!(std::fs::read_to_string(p(f)).unwrap(), want);
        }
        assert!(!p("var/lib/hitl-runner/write.kubeconfig").exists());
        assert!(
            stdout(&out).contains("[[serve.runner]] name = \"hitl-writer\""),
            "{}",
            stdout(&out)
        );
        // The token is the runner's to read, not the agent's.
        assert_eq!(owner_mode(&p("etc/hitl-gate/agent.token")), (0, rg, 0o640));
        let policy = std::fs::read_to_string(p("etc/hitl-gate/policy.toml")).unwrap();
        let parsed = hitl_gate::policy::load::parse(&policy)
            .unwrap_or_else(|e| panic!("{shell:?}: {e}\n{policy}"));
        let l = parsed.lockdown().expect("[lockdown]");
        assert_eq!(l.runner_user, "hitl-runner");
        assert_eq!(l.agent(2001), Some("agent"));
        assert_eq!(l.path, [PathBuf::from("/opt/hitl-gate/real")]);
        let set = l.credentials_for(None).expect("the default credential set");
        assert_eq!(
            set.read["KUBECONFIG"],
            "/var/lib/hitl-runner/read.kubeconfig"
        );
        assert_eq!(
            set.write["KUBECONFIG"],
            "/var/lib/hitl-writer/write.kubeconfig"
        );
        assert_eq!(l.writer.user, "hitl-writer");
        assert_eq!(
            l.writer.token_file,
            PathBuf::from("/var/lib/hitl-writer/writer.token")
        );
        assert_eq!(
            l.writer.terraform_providers,
            Some(PathBuf::from("/opt/providers"))
        );
        for (unit, lines) in [
            (
                "runner",
                [
                    "User=hitl-runner",
                    "ExecStart=/opt/hitl-gate/bin/hitl-gate runner",
                    "ExecStartPre=+/bin/chgrp agents /run/hitl-gate",
                ],
            ),
            (
                "writer",
                [
                    "User=hitl-writer",
                    "ExecStart=/opt/hitl-gate/bin/hitl-gate runner --writer",
                    "ExecStartPre=+/bin/chgrp hitl-runner /run/hitl-gate-writer",
                ],
            ),
        ] {
            let text =
                std::fs::read_to_string(p(&format!("etc/systemd/system/hitl-gate-{unit}.service")))
                    .unwrap();
            for line in lines.into_iter().chain([
                "RuntimeDirectoryMode=0750",
                "SupplementaryGroups=hitl-tools",
            ]) {
                assert!(text.lines().any(|l| l == line), "{shell:?}: {line}\n{text}");
            }
        }
        // The workspace: the runner may write there, in what exists and what is made later.
        for d in ["srv/work", "srv/work/sub"] {
            let acl = Command::new("getfacl")
                .args(["-n", "-p"])
                .arg(p(d))
                .output()
                .unwrap();
            let acl = String::from_utf8_lossy(&acl.stdout);
            for want in [r, w]
                .iter()
                .flat_map(|u| [format!("user:{u}:rwx"), format!("default:user:{u}:rwx")])
            {
                assert!(acl.lines().any(|l| l == want), "{shell:?}: {want}\n{acl}");
            }
        }

        second_run_changes_nothing(shell, base.path(), &args, &root);

        // --uninstall keeps the policy, the token and the runner's home (its credentials).
        let mut un: Vec<&str> = vec!["agent", "--uninstall", "--root", &rootarg];
        let out = install(shell, base.path(), &un);
        assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
        assert!(!p("opt/hitl-gate/real").exists());
        assert!(!p("etc/systemd/system/hitl-gate-runner.service").exists());
        assert!(!p("etc/systemd/system/hitl-gate-writer.service").exists());
        assert!(p("var/lib/hitl-writer/write.kubeconfig").exists());
        assert!(p("var/lib/hitl-runner/read.kubeconfig").exists());
        un.push("--purge");
        let out = install(shell, base.path(), &un);
        assert_eq!(code(&out), 0, "{shell:?}: {}", stderr(&out));
        assert!(!p("var/lib/hitl-runner").exists());
        assert!(!p("var/lib/hitl-writer").exists());
        assert!(!p("etc/hitl-gate").exists());
    }
}
