//! A container root, not this machine's: a fresh directory holding only busybox (static) and
//! what `install.sh agent --root` put there, entered with `unshare --mount --pid --fork` and
//! `chroot`, so none of the host's libraries, tools or devices (no `/dev` at all) are visible. Inside it the static
//! `hitl-gate` keeps a passthrough's stdout, exit code and PID; a gated `kubectl delete` (the
//! real static kubectl, the test-only fake Kubernetes API on the host) reaches the approval
//! server over HTTPS by a name from the root's `/etc/hosts`, waits, and runs after an approval;
//! with the server stopped a gated command exits 83. And the `Dockerfile` builds with podman
//! (`--isolation=chroot`, storage in a temp dir) into an image holding only `/opt/hitl-gate`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::install::{install, new_root, sha256_of, static_binary, Shell};
use crate::support::kube::FakeKube;
use crate::support::procs::Owner;
use crate::support::server::{policy_with, TestServer, TOKEN_A};
use crate::support::{code, run, stderr, stdout, tools};

/// The root: busybox as `/bin/sh`, `/tmp`, `/proc` (mounted inside), `/root`, users, and
/// `gate.test` in `/etc/hosts`.
fn container_root(base: &Path) -> PathBuf {
    let root = new_root(base);
    for d in ["bin", "tmp", "proc", "root", "usr/bin", "usr/local/bin"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let busybox = Path::new("/bin/busybox");
    let out = run(Command::new("file").arg(busybox));
    assert!(
        stdout(&out).contains("statically linked"),
        "a static busybox is needed at /bin/busybox (apt-get install busybox-static; scripts/test \
         installs it): {}",
        stdout(&out)
    );
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n127.0.0.1 gate.test\n",
    )
    .unwrap();
    root
}

/// Runs `script` with busybox sh inside `root` (new mount and PID namespaces, `/proc` mounted),
/// with only `env` (and `owner`'s mark: the container is killed when `owner` is dropped, also
/// when the test fails); returns the child.
fn inside(owner: &Owner, root: &Path, script: &str, env: &[(&str, &str)]) -> std::process::Child {
    let mut c = Command::new("/usr/bin/unshare");
    c.args(["--mount", "--pid", "--fork", "/usr/sbin/chroot"])
        .arg(root)
        .args([
            "/bin/busybox",
            "sh",
            "-c",
            &format!("/bin/busybox mount -t proc proc /proc || exit 99\n{script}"),
        ])
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    owner
        .mark(&mut c)
        .spawn()
        .expect("unshare and chroot run (as root)")
}

fn finished(child: std::process::Child) -> Output {
    crate::support::wait_within(child, Duration::from_secs(120), "the container")
}

const ENV: [(&str, &str); 5] = [
    ("PATH", "/opt/hitl-gate/shims:/usr/local/bin:/usr/bin:/bin"),
    ("HOME", "/root"),
    ("TMPDIR", "/tmp"),
    ("KUBECONFIG", "/root/kubeconfig"),
    ("USER", "root"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_shim_works_in_a_root_with_nothing_but_busybox() {
    let base = tempfile::tempdir().unwrap();
    let root = container_root(base.path());
    let owner = Owner::new();

    // The approval server on the host, HTTPS with a certificate for gate.test.
    let certs = base.path().join("certs");
    let (cert, key, ca) = crate::support::test_certificate_for(&certs, "DNS:gate.test");
    let tls = hitl_gate::server::tls::load(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = TestServer::start_with_tls(listener, dir, data, &policy_with(""), Some(tls)).await;

    // install.sh puts the shim, the system policy (pinned key, CA) and the token in the root.
    let token = base.path().join("token");
    std::fs::write(&token, format!("{TOKEN_A}\n")).unwrap();
    let bin = static_binary();
    let sha = sha256_of(&bin);
    let url = format!("https://gate.test:{port}");
    let (b, t, c, r) = (
        bin.display().to_string(),
        token.display().to_string(),
        ca.display().to_string(),
        root.display().to_string(),
    );
    let out = install(
        Shell::Busybox,
        base.path(),
        &[
            "agent",
            "--binary",
            &b,
            "--sha256",
            &sha,
            "--server",
            &url,
            "--public-key",
            &srv.public_key,
            "--token-file",
            &t,
            "--ca-file",
            &c,
            "--agent-group",
            "agents",
            "--root",
            &r,
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // A passthrough: a stub terraform prints its PID and exits 7.
    std::fs::write(
        root.join("usr/bin/terraform"),
        "#!/bin/sh\necho \"tool pid $$ args $*\"\nexit 7\n",
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("usr/bin/terraform"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = finished(inside(
        &owner,
        &root,
        "sh -c 'echo \"shell pid $$\"; exec terraform version -json'\necho \"rc=$?\"",
        &ENV,
    ));
    let text = stdout(&out);
    let pid = |what: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(what))
            .map(|rest| rest.split_whitespace().next().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {what:?} in {text}; stderr {}", stderr(&out)))
    };
    assert_eq!(
        pid("shell pid "),
        pid("tool pid "),
        "the same process: {text}"
    );
    assert!(text.contains("args version -json"), "{text}");
    assert!(text.contains("rc=7"), "{text}");

    // A gated kubectl delete: the real (static) kubectl against the fake API on the host.
    std::fs::copy(tools::kubectl(), root.join("usr/local/bin/kubectl")).unwrap();
    let fake = FakeKube::start().await;
    fake.put_deployment("prod", "web");
    fake.kubeconfig(&root.join("root"), &[("prod", "prod")]);
    let child = inside(
        &owner,
        &root,
        "kubectl delete deployment web\necho \"rc=$?\"",
        &ENV,
    );
    let ap = srv.approver();
    let start = Instant::now();
    let mut child = Some(child);
    let id = loop {
        let (_, v) = ap
            .request("GET", "/api/v1/requests?state=pending", None)
            .await;
        if let Some(id) = v[0]["id"].as_str() {
            break id.to_string();
        }
        if let Some(c) = child.as_mut() {
            if c.try_wait().unwrap().is_some() {
                let out = finished(child.take().unwrap());
                panic!(
                    "the gated kubectl ended without asking: {} {}",
                    stdout(&out),
                    stderr(&out)
                );
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no request arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        fake.get("apps/v1", "deployments", "prod", "web").is_some(),
        "nothing ran yet"
    );
    let (s, v) = ap
        .decide(&id, "approve", Some("from the container test"))
        .await;
    assert_eq!(s, 200, "{v}");
    let out = tokio::task::spawn_blocking(move || finished(child.unwrap()))
        .await
        .unwrap();
    assert!(
        stdout(&out).contains("rc=0"),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        fake.get("apps/v1", "deployments", "prod", "web").is_none(),
        "the approved delete ran"
    );

    // With the server stopped: a gated command exits 83, and nothing runs.
    fake.put(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "prod"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}}},
    }));
    srv.stop().await;
    let out = tokio::task::spawn_blocking({
        let root = root.clone();
        let owner = Owner::new();
        move || {
            finished(inside(
                &owner,
                &root,
                "kubectl delete deployment api\necho \"rc=$?\"",
                &ENV,
            ))
        }
    })
    .await
    .unwrap();
    assert!(
        stdout(&out).contains("rc=83"),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(fake.get("apps/v1", "deployments", "prod", "api").is_some());
}

#[test]
fn the_dockerfile_builds_an_image_of_only_opt_hitl_gate() {
    let base = tempfile::tempdir().unwrap();
    let ctx = base.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let bin = static_binary();
    let (b, sha, c) = (
        bin.display().to_string(),
        sha256_of(&bin),
        ctx.display().to_string(),
    );
    let out = install(
        Shell::Dash,
        base.path(),
        &["agent", "--binary", &b, "--sha256", &sha, "--root", &c],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"),
        ctx.join("Dockerfile"),
    )
    .unwrap();
    let store = base.path().join("podman");
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(store.join("storage"))
            .arg("--runroot")
            .arg(store.join("run"))
            .args(args);
        c
    };
    let out = run(
        podman(&["build", "--isolation=chroot", "-t", "hitl-gate-test", &c])
            .env("TMPDIR", base.path()),
    );
    assert!(
        out.status.success(),
        "podman build (apt-get install podman; scripts/test installs it): {} {}",
        stdout(&out),
        stderr(&out)
    );
    let tar = base.path().join("image.tar");
    let out = run(&mut podman(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        tar.to_str().unwrap(),
        "hitl-gate-test",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    // The image's one layer: /opt/hitl-gate and nothing else.
    let unpacked = base.path().join("image");
    std::fs::create_dir_all(&unpacked).unwrap();
    assert!(run(Command::new("tar")
        .arg("xf")
        .arg(&tar)
        .arg("-C")
        .arg(&unpacked))
    .status
    .success());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(unpacked.join("manifest.json")).unwrap())
            .unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let out = run(Command::new("tar")
        .arg("tvf")
        .arg(unpacked.join(layers[0].as_str().unwrap())));
    let listing = stdout(&out);
    let paths: Vec<&str> = listing
        .lines()
        .map(|l| l.split_whitespace().nth(5).unwrap_or(""))
        .collect();
    assert!(paths.iter().all(|p| p.starts_with("opt/")), "{listing}");
    assert!(listing.contains("opt/hitl-gate/bin/hitl-gate"), "{listing}");
    for tool in ["terraform", "tofu", "kubectl", "helm"] {
        assert!(
            listing.contains(&format!("opt/hitl-gate/shims/{tool} -> ../bin/hitl-gate")),
            "{listing}"
        );
    }
}
