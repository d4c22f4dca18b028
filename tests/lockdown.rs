//! Lockdown mode, end to end, with two unprivileged uids (set for each process; no user is
//! added to the machine): the runner as R, the only uid that can execute the real tools
//! (`root:R 0750`) and read the cluster credential (R's 0600 kubeconfig); the agent as A, whose
//! PATH has only the shims. The system policy is a root-owned file under a test root
//! (`HITL_GATE_TEST_ROOT`, honoured by test builds only).
//!
//! - A cannot execute the real tools or read the credential (EACCES), and the fake API refuses
//!   a call without the token (401).
//! - Passthrough through the runner: stdout, stderr and the exit code as in a direct run (by R);
//!   stdin streamed; SIGPIPE and SIGINT end the command as they end the real tool.
//! - A gated `kubectl delete` runs the whole pipeline in the runner and is approved; the
//!   shim killed while waiting cancels the request; flags that pick credentials are refused;
//!   the agent's KUBECONFIG is ignored; a stopped runner is exit code 90 at once.
//! - Two credential sets against a fake API that authorizes by token like RBAC: passthrough
//!   commands and (by default) helpers have the read set, only the approved run the write set.
//! - A manifest edited while its request waits changes neither what runs nor what was shown.
//! - Terraform: denied providers and provisioners are refused; the data directory is R's own.

use std::io::{Read, Write};
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::kube::{FakeKube, READ_TOKEN, WRITE_TOKEN};
use crate::support::server::{policy_with, TestServer, TOKEN_A};
use crate::support::{bin, tools};

/// Each world has its own pair of uids (R, A), so that killing what one left behind cannot
/// touch another test's processes.
fn uids() -> (u32, u32) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(64_100);
    let r = NEXT.fetch_add(2, std::sync::atomic::Ordering::SeqCst);
    (r, r + 1)
}

fn mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

fn own(p: &Path, uid: u32, gid: u32) {
    chown(p, Some(uid), Some(gid)).unwrap();
}

/// The lockdown world: directories, the system policy, the real tools, the credential.
struct World {
    r: u32,
    a: u32,
    base: tempfile::TempDir,
    root: PathBuf,
    shims: PathBuf,
    real: PathBuf,
    work: PathBuf,
    socket: PathBuf,
    runner_home: PathBuf,
    srv: TestServer,
    fake: FakeKube,
    runner: Option<Child>,
}

impl World {
    async fn new() -> World {
        assert_eq!(
            nix::unistd::getuid().as_raw(),
            0,
            "the lockdown tests switch uids: run them as root (CI does)"
        );
        let (r, a) = uids();
        let base = tempfile::tempdir().unwrap();
        mode(base.path(), 0o755);
        let d = |name: &str, m: u32, uid: u32, gid: u32| {
            let p = base.path().join(name);
            std::fs::create_dir_all(&p).unwrap();
            own(&p, uid, gid);
            mode(&p, m);
            p
        };
        let root = d("root", 0o755, 0, 0);
        let etc = root.join("etc/hitl-gate");
        std::fs::create_dir_all(&etc).unwrap();
        mode(&root.join("etc"), 0o755);
        mode(&etc, 0o755);
        // The binary and the shims, executable by everyone.
        let bindir = d("bin", 0o755, 0, 0);
        std::fs::copy(bin(), bindir.join("hitl-gate")).unwrap();
        mode(&bindir.join("hitl-gate"), 0o755);
        let shims = d("shims", 0o755, 0, 0);
        for t in crate::support::TOOL_NAMES {
            std::os::unix::fs::symlink("../bin/hitl-gate", shims.join(t)).unwrap();
        }
        // The real tools: root:r 0750.
        let real = d("real", 0o750, 0, r);
        for (name, src) in [
            ("kubectl", tools::kubectl()),
            ("helm", tools::helm4()),
            ("terraform", tools::terraform_1_0()),
        ] {
            std::fs::copy(src, real.join(name)).unwrap();
            mode(&real.join(name), 0o755);
        }
        let runner_home = d("runner-home", 0o700, r, r);
        let run = d("run", 0o755, r, r);
        let work = d("work", 0o777, a, a);
        d("agent-home", 0o755, a, a);

        // The approval server; the runner's token file, r's alone.
        let srv = TestServer::start(&policy_with("")).await;
        let token = runner_home.join("agent.token");
        std::fs::write(&token, format!("{TOKEN_A}\n")).unwrap();
        own(&token, r, r);
        mode(&token, 0o600);
        // The cluster and r's credential.
        // https: kubectl sends its bearer token only over TLS.
        let fake = FakeKube::start_tls(&runner_home.join("tls")).await;
        fake.require_token();
        fake.put_deployment("prod", "web");
        let kc = fake.kubeconfig(&runner_home, &[("prod", "prod")]);
        for p in [&runner_home.join("tls"), &kc] {
            own(p, r, r);
        }
        mode(&kc, 0o600);

        // Terraform's providers come only from a filesystem mirror, by a CLI config the
        // runner forces (the agent cannot pass TF_CLI_CONFIG_FILE or -plugin-dir).
        let cli_config = root.join("etc/hitl-gate/terraformrc");
        std::fs::write(
            &cli_config,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n  }}\n}}\n",
                tools::provider_dir().display()
            ),
        )
        .unwrap();
        mode(&cli_config, 0o644);
        let socket = run.join("runner.sock");
        let policy = format!(
            "version = 1\n\n[approval]\nurl = \"{}\"\ntoken_file = \"{}\"\npublic_key = \"{}\"\n\n[lockdown]\nrunner_socket = \"{}\"\nrunner_user = \"{r}\"\npath = [\"{}\"]\n\n[lockdown.tool_env]\nKUBECONFIG = \"{}\"\nTF_CLI_CONFIG_FILE = \"{}\"\n\n[[lockdown.agent]]\nuid = {a}\nname = \"agent-a\"\n",
            srv.url,
            token.display(),
            srv.public_key,
            socket.display(),
            real.display(),
            kc.display(),
            cli_config.display()
        );
        std::fs::write(etc.join("policy.toml"), policy).unwrap();
        mode(&etc.join("policy.toml"), 0o644);
        let mut w = World {
            r,
            a,
            base,
            root,
            shims,
            real,
            work,
            socket,
            runner_home,
            srv,
            fake,
            runner: None,
        };
        w.start_runner();
        w
    }

    fn start_runner(&mut self) {
        let mut c = Command::new(self.base.path().join("bin/hitl-gate"));
        c.arg("runner")
            .env_clear()
            .env("HITL_GATE_TEST_ROOT", &self.root)
            .env("HOME", &self.runner_home)
            .env("PATH", "/usr/bin:/bin")
            .uid(self.r)
            .gid(self.r)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().expect("start the runner");
        let mut first = [0u8; 1];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        let mut rest = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = rest.read_to_end(&mut sink);
        });
        self.runner = Some(child);
    }

    fn stop_runner(&mut self) {
        if let Some(mut r) = self.runner.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
    }

    /// Rewrites the system policy with `edit` and restarts the runner (it reads the policy once).
    fn edit_policy(&mut self, edit: impl Fn(String) -> String) {
        let p = self.root.join("etc/hitl-gate/policy.toml");
        let text = edit(std::fs::read_to_string(&p).unwrap());
        std::fs::write(&p, text).unwrap();
        self.stop_runner();
        self.start_runner();
    }

    /// A command as the agent: uid A, the shims first on PATH, nothing else.
    fn agent(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(&self.work)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", self.shims.display()))
            .env("HOME", self.base.path().join("agent-home"))
            .env("HITL_GATE_TEST_ROOT", &self.root)
            .uid(self.a)
            .gid(self.a);
        c
    }

    /// The real tool run directly by R, with R's credential, in the work dir; not started.
    fn as_runner(&self, tool: &str, args: &[&str]) -> Command {
        let mut c = Command::new(self.real.join(tool));
        c.args(args)
            .current_dir(&self.work)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.runner_home)
            .env("KUBECONFIG", self.runner_home.join("kubeconfig"))
            .uid(self.r)
            .gid(self.r);
        c
    }

    /// The same command run directly by R with the real tool and R's credential.
    fn direct(&self, tool: &str, args: &[&str]) -> Output {
        self.as_runner(tool, args).output().unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_runner();
        // The runner's children live in their own sessions: end whatever is left of both uids.
        for uid in [self.r, self.a] {
            let _ = Command::new("pkill")
                .args(["-KILL", "-u", &uid.to_string()])
                .status();
        }
    }
}

fn out(mut c: Command) -> Output {
    c.stdin(Stdio::null()).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_holds_neither_the_tools_nor_the_credential() {
    let w = World::new().await;
    // EACCES on the real binaries and on the credential.
    let mut c = w.agent("/bin/cat", &[]);
    c.arg(w.runner_home.join("kubeconfig"));
    let o = out(c);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{o:?}"
    );
    let e = std::process::Command::new(w.real.join("kubectl"))
        .uid(w.a)
        .gid(w.a)
        .spawn()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    // The API itself wants the token the agent cannot read.
    let r = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .get(format!("{}/api/v1/namespaces", w.fake.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_through_the_runner_is_the_real_tool_byte_for_byte() {
    let w = World::new().await;
    for args in [
        &["get", "deployment", "web", "-n", "prod", "-o", "yaml"][..],
        &["get", "deployment", "nope", "-n", "prod"][..],
        &["version", "--client", "-o", "json"][..],
    ] {
        let through = tokio::task::spawn_blocking({
            let c = w.agent("kubectl", args);
            move || out(c)
        })
        .await
        .unwrap();
        let direct = w.direct("kubectl", args);
        assert_eq!(through.status.code(), direct.status.code(), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&through.stdout),
            String::from_utf8_lossy(&direct.stdout),
            "{args:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&through.stderr),
            String::from_utf8_lossy(&direct.stderr),
            "{args:?}"
        );
    }
    // stdin streams through: the tool reads the agent's pipe (`terraform fmt -`).
    let mut c = w.agent("terraform", &["fmt", "-"]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"variable \"x\" {\ndefault=1\n}\n")
        .unwrap();
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "variable \"x\" {\n  default = 1\n}\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigpipe_and_sigint_end_the_command_as_they_end_the_real_tool() {
    let w = World::new().await;
    // A chart that renders a long output; the reader goes away after one line.
    let chart = w.work.join("big");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: big\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "{{- range $i := until 20000 }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{{ $i }}\ndata:\n  v: \"{{ $i }}\"\n{{- end }}\n",
    )
    .unwrap();
    for p in [&chart, &chart.join("templates")] {
        mode(p, 0o755);
    }
    let mut c = w.agent("helm", &["template", "big", "./big"]);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(13),
        "died of SIGPIPE, as helm does: {status:?}"
    );

    // SIGINT to a long-running command: `terraform console` waits on its (open) stdin.
    let direct = w.as_runner("terraform", &["console"]);
    let through = w.agent("terraform", &["console"]);
    let (d, t) =
        tokio::task::spawn_blocking(move || (ends_on_sigint(direct), ends_on_sigint(through)))
            .await
            .unwrap();
    assert_eq!(t, d, "ends on SIGINT as the real tool does");
}

/// Starts `c` with an open stdin, sends it SIGINT after 2 s, and returns how it ended.
fn ends_on_sigint(mut c: Command) -> (Option<i32>, Option<i32>) {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "still running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(20));
    (status.code(), status.signal())
}

/// Waits for a pending request on the server; panics if `child` ends first.
async fn pending(w: &World, child: &mut Child) -> serde_json::Value {
    let ap = w.srv.approver();
    let start = Instant::now();
    loop {
        let (_, v) = ap
            .request("GET", "/api/v1/requests?state=pending", None)
            .await;
        if let Some(r) = v.as_array().and_then(|a| a.first()) {
            return r.clone();
        }
        if let Some(s) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the shim ended ({s}) without a request: {err}");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Approves the request `child` waits for and returns its output once it ends.
async fn approve_and_finish(w: &World, mut child: Child) -> Output {
    let req = pending(w, &mut child).await;
    let (s, v) = w
        .srv
        .approver()
        .decide(req["id"].as_str().unwrap(), "approve", Some("ok"))
        .await;
    assert_eq!(s, 200, "{v}");
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_delete_runs_in_the_runner_after_approval_and_a_dead_shim_cancels() {
    let w = World::new().await;
    // The agent's own KUBECONFIG is ignored: the runner's credential is used.
    let mut c = w.agent("kubectl", &["delete", "deployment", "web", "-n", "prod"]);
    c.env("KUBECONFIG", "/nonexistent/kubeconfig")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_some());
    let o = approve_and_finish(&w, child).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("deleted"),
        "{o:?}"
    );
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_none());

    // The shim killed while waiting: the runner's child cancels the request; nothing runs.
    w.fake.put_deployment("prod", "api");
    let mut c = w.agent("kubectl", &["delete", "deployment", "api", "-n", "prod"]);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let req = pending(&w, &mut child).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let id = req["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let (_, v) = w
            .srv
            .approver()
            .request("GET", &format!("/api/v1/requests/{id}"), None)
            .await;
        if v["state"] == "cancelled" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the request stayed {}",
            v["state"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "api")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_flags_are_refused_and_a_stopped_runner_is_exit_90_at_once() {
    let mut w = World::new().await;
    let own = w.work.join("mine.kubeconfig");
    std::fs::write(&own, "apiVersion: v1\nkind: Config\n").unwrap();
    for args in [
        vec![
            "--kubeconfig",
            own.to_str().unwrap(),
            "delete",
            "deployment",
            "web",
            "-n",
            "prod",
        ],
        vec!["--server", "https://elsewhere.example.com", "get", "pods"],
        vec!["--token", "stolen", "get", "pods"],
        vec!["--as", "system:admin", "get", "pods"],
    ] {
        let o = out(w.agent("kubectl", &args));
        assert_eq!(o.status.code(), Some(87), "{args:?}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("refused in lockdown mode"), "{err}");
    }
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_some());
    // Commands that would show or change the runner's credentials.
    for args in [
        vec!["config", "view", "--raw"],
        vec!["config", "set-credentials", "x", "--token=mine"],
        vec!["config", "set-context", "prod", "--user=x"],
    ] {
        let o = out(w.agent("kubectl", &args));
        assert_eq!(o.status.code(), Some(87), "{args:?}: {o:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("runner's own credentials"),
            "{o:?}"
        );
    }
    // `config view` redacts: the token is not shown.
    let o = out(w.agent("kubectl", &["config", "view"]));
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains(crate::support::kube::TOKEN), "{text}");
    // A uid the runner does not serve.
    let mut c = w.agent("kubectl", &["get", "pods"]);
    c.uid(65_000).gid(65_000);
    let o = out(c);
    assert_eq!(o.status.code(), Some(87), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an agent this runner serves"));

    w.stop_runner();
    let start = Instant::now();
    let o = out(w.agent("kubectl", &["get", "pods"]));
    assert!(start.elapsed() < Duration::from_secs(1), "at once");
    assert_eq!(o.status.code(), Some(90), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("hitl-gate: lockdown mode: the runner at"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let _ = &w.socket;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_as_the_agent_checks_tools_and_credentials() {
    let mut w = World::new().await;
    // The agent's PATH holds the shims alone (this machine's /usr/bin is not the test's).
    let doctor = |w: &World| {
        let mut c = w.agent(
            &w.shims.join("../bin/hitl-gate").display().to_string(),
            &["doctor"],
        );
        c.env("PATH", &w.shims);
        out(c)
    };
    let o = doctor(&w);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("answers"), "{text}");
    assert!(text.contains("can read none it can find"), "{text}");
    // A credential the agent can read, and a real tool it can run: both are failures.
    mode(&w.runner_home, 0o755);
    mode(&w.runner_home.join("kubeconfig"), 0o644);
    mode(&w.real, 0o755);
    let o = doctor(&w);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("can read") && text.contains("kubeconfig"),
        "{text}"
    );
    assert!(text.contains("can execute the real"), "{text}");
    w.stop_runner();
    let o = doctor(&w);
    assert!(String::from_utf8_lossy(&o.stdout).contains("cannot be reached"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_in_lockdown_refuses_code_running_providers_and_provisioners() {
    let w = World::new().await;
    let dir = |name: &str, main_tf: &str| {
        let d = w.work.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("main.tf"), main_tf).unwrap();
        mode(&d, 0o777);
        d
    };
    let run = |d: &Path, args: &[&str]| {
        let mut c = w.agent("terraform", args);
        c.current_dir(d);
        out(c)
    };
    // A configuration whose lock file names hashicorp/external: refused before anything runs.
    let ext = dir(
        "external",
        "data \"external\" \"x\" {\n  program = [\"sh\", \"-c\", \"touch /tmp/pwned\"]\n}\n",
    );
    std::fs::write(
        ext.join(".terraform.lock.hcl"),
        "provider \"registry.terraform.io/hashicorp/external\" {\n  version = \"2.3.0\"\n}\n",
    )
    .unwrap();
    let o = run(&ext, &["plan"]);
    assert_eq!(o.status.code(), Some(87), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("hashicorp/external"),
        "{o:?}"
    );
    // -plugin-dir is the agent's way around the mirror: refused.
    let o = run(&ext, &["init", "-plugin-dir=/tmp"]);
    assert_eq!(o.status.code(), Some(87), "{o:?}");

    // A local-exec provisioner: init works (from the mirror), the gated apply is refused.
    let prov = dir(
        "provisioner",
        "resource \"null_resource\" \"a\" {\n  provisioner \"local-exec\" {\n    command = \"echo hi\"\n  }\n}\n",
    );
    let o = run(&prov, &["init", "-input=false"]);
    assert!(
        o.status.success(),
        "init: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&prov, &["apply", "-input=false"]);
    assert_eq!(o.status.code(), Some(87), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("local-exec"),
        "{o:?}"
    );

    // Without provisioners: planned by the runner into its private plan file, approved, applied.
    let ok = dir("plain", "resource \"null_resource\" \"a\" {}\n");
    let o = run(&ok, &["init", "-input=false"]);
    assert!(
        o.status.success(),
        "init: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut c = w.agent("terraform", &["apply", "-input=false"]);
    c.current_dir(&ok)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let o = approve_and_finish(&w, c.spawn().unwrap()).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 added"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The state is the runner's work, in the agent's directory.
    assert!(ok.join("terraform.tfstate").exists());

    // terraform's data directory (installed providers) is the runner's own, 0700, not the
    // agent-writable `.terraform/`, where the agent could plant a provider binary.
    assert!(!ok.join(".terraform").exists());
    let data = w
        .runner_home
        .join(".hitl-gate/tfdata")
        .join(hitl_gate::hex::sha256(
            ok.canonicalize().unwrap().as_os_str().as_encoded_bytes(),
        ));
    let meta = std::fs::metadata(&data).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            meta.permissions().mode() & 0o777
        ),
        (w.r, 0o700)
    );
    assert!(data
        .join("providers/registry.terraform.io/hashicorp/null")
        .is_dir());
    // A denied provider installed there (say, a lock file swapped after the check let init
    // install it) is refused before anything loads it.
    std::fs::create_dir_all(data.join("providers/registry.terraform.io/hashicorp/external/2.3.0"))
        .unwrap();
    let o = run(&ok, &["plan"]);
    assert_eq!(o.status.code(), Some(87), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("data directory") && err.contains("hashicorp/external"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_credentials_for_passthrough_and_diffs_write_credentials_for_the_approved_run() {
    let mut w = World::new().await;
    // The cluster authorizes like RBAC: the read role lists, the write role may delete.
    w.fake.rbac();
    w.fake.put_deployment("staging", "web");
    let contexts = [("prod", "prod"), ("staging", "staging")];
    let read =
        w.fake
            .kubeconfig_with_token(&w.runner_home, "read.kubeconfig", &contexts, READ_TOKEN);
    let write =
        w.fake
            .kubeconfig_with_token(&w.runner_home, "write.kubeconfig", &contexts, WRITE_TOKEN);
    for p in [&read, &write] {
        own(p, w.r, w.r);
        mode(p, 0o600);
    }
    // production's helpers may use the write set (a kube diff is a server-side dry run, which
    // RBAC authorizes like the change); every other environment diffs with the read set.
    let sets = format!(
        "read = {{ KUBECONFIG = \"{}\" }}\nwrite = {{ KUBECONFIG = \"{}\" }}\n",
        read.display(),
        write.display()
    );
    let first = format!(
        "KUBECONFIG = \"{}\"\n",
        w.runner_home.join("kubeconfig").display()
    );
    w.edit_policy(|p| {
        let p = p.replace(&first, "");
        format!(
            "{p}\n[lockdown.credentials.default]\n{sets}\n[lockdown.credentials.production]\n\
             {sets}helpers = \"write\"\n\n[[environment]]\nname = \"production\"\nrisk = \"high\"\n\
             kube_contexts = [\"prod\"]\n\n[[rule]]\nname = \"labels-pass\"\ntools = [\"kubectl\"]\n\
             subcommands = [\"label\"]\naction = \"pass\"\n"
        )
    });
    let tokens_since = |from: usize| -> Vec<Seen> {
        w.fake.requests()[from..]
            .iter()
            .map(|r| (r.method.clone(), r.dry_run(), r.token.clone()))
            .collect()
    };

    // Passthrough reads with the read set.
    let o = out(w.agent("kubectl", &["get", "deployment", "web", "-n", "prod"]));
    assert!(o.status.success(), "{o:?}");
    assert!(tokens_since(0)
        .iter()
        .all(|(_, _, t)| t.as_deref() == Some(READ_TOKEN)));
    // A passthrough that writes (the policy passes `label`) has the read set only: 403.
    let before = w.fake.requests().len();
    let o = out(w.agent(
        "kubectl",
        &["label", "deployment", "web", "-n", "prod", "x=y"],
    ));
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("forbidden"),
        "{o:?}"
    );
    assert!(tokens_since(before)
        .iter()
        .all(|(_, _, t)| t.as_deref() == Some(READ_TOKEN)));

    let real_delete_by_write = |log: &[Seen]| {
        let real: Vec<_> = log
            .iter()
            .filter(|(m, dry, _)| m == "DELETE" && !dry)
            .collect();
        assert_eq!(real.len(), 1, "{log:?}");
        assert_eq!(real[0].2.as_deref(), Some(WRITE_TOKEN), "{log:?}");
        // Before the approved run, only the helpers' set was used.
        let at = log
            .iter()
            .position(|(m, dry, _)| m == "DELETE" && !dry)
            .unwrap();
        log[..at]
            .iter()
            .map(|(_, _, t)| t.clone())
            .collect::<Vec<_>>()
    };

    // staging's helpers have the read set (a delete is shown from reads), production's the
    // write set; the approved run has the write set in both.
    for (ctx, helpers_token) in [("staging", READ_TOKEN), ("prod", WRITE_TOKEN)] {
        let (log, diff) = approved_delete(&w, ctx).await;
        assert!(
            diff.contains("deployment.apps/web will be DELETE"),
            "{diff}"
        );
        let helpers = real_delete_by_write(&log);
        assert!(!helpers.is_empty());
        assert!(
            helpers.iter().all(|t| t.as_deref() == Some(helpers_token)),
            "{ctx}: {log:?}"
        );
    }
}

/// A request the fake API received: method, dry run, bearer token.
type Seen = (String, bool, Option<String>);

/// Approves a gated delete of deployment web in context and namespace `ctx`; returns the
/// requests it made to the cluster and the diff text the approver saw.
async fn approved_delete(w: &World, ctx: &str) -> (Vec<Seen>, String) {
    let before = w.fake.requests().len();
    let mut c = w.agent(
        "kubectl",
        &["--context", ctx, "delete", "deployment", "web", "-n", ctx],
    );
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let req = pending(w, &mut child).await;
    let o = approve_and_finish(w, child).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("deleted"),
        "{o:?}"
    );
    assert!(w.fake.get("apps/v1", "deployments", ctx, "web").is_none());
    let seen = w.fake.requests()[before..]
        .iter()
        .map(|r| (r.method.clone(), r.dry_run(), r.token.clone()))
        .collect();
    (seen, req["diff"]["text"].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_edited_while_pending_does_not_change_what_runs() {
    let w = World::new().await;
    let manifest = w.work.join("cm.yaml");
    let cm = |v: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: prod\ndata:\n  level: {v}\n")
    };
    std::fs::write(&manifest, cm("shown")).unwrap();
    own(&manifest, w.a, w.a);
    mode(&manifest, 0o644);
    let mut c = w.agent("kubectl", &["apply", "-f", "cm.yaml"]);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let req = pending(&w, &mut child).await;
    // The agent rewrites its manifest while the request waits.
    std::fs::write(&manifest, cm("edited")).unwrap();
    let o = approve_and_finish(&w, child).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("created"),
        "{o:?}"
    );
    let stored = w
        .fake
        .get("v1", "configmaps", "prod", "settings")
        .expect("the approved ConfigMap");
    assert_eq!(stored["data"]["level"], "shown", "{stored}");
    // What the approver was shown is what ran.
    let id = req["id"].as_str().unwrap();
    let (_, shown) = w
        .srv
        .approver()
        .request("GET", &format!("/api/v1/requests/{id}"), None)
        .await;
    let text = shown["diff"]["text"].as_str().unwrap_or_default();
    assert!(text.contains("shown") && !text.contains("edited"), "{text}");
}
