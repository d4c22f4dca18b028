//! Lockdown mode, end to end, with four ids set for each process in `pre_exec` (no user is
//! added to the machine): the runner R, the writer W, the agent A, and a group G that may
//! execute the real tools (`root:G 0750`; R and W are in it). R holds the read credential (a
//! kubeconfig whose token an admission policy limits to reads and server-side dry runs), W the
//! write credential; each file is its owner's alone (0600 in a 0700 home). The system policy is
//! a root-owned file under a test root (`HITL_GATE_TEST_ROOT`, honoured by test builds only).
//! The fake API authorizes by token, like RBAC, and records which token each call carried.
//!
//! - `basics.rs`: what the agent holds, passthrough through the runner, signals, a gated
//!   delete run by W, refused flags, stopped daemons, doctor.
//! - `credentials.rs`: which token each call carries (passthrough, helpers, approved runs of
//!   kubectl, helm and terraform); the write token out of reach of everything the agent steers.
//! - `writer.rs`: W refuses a forged, foreign, replayed or expired decision and a swapped input.
//! - `terraform.rs`: denied providers and provisioners, the data directories.

mod basics;
mod credentials;
mod terraform;
mod writer;

use std::io::Read;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::kube::{FakeKube, DRY_RUN_TOKEN, WRITE_TOKEN};
use crate::support::server::{policy_with, TestServer, TOKEN_A};
use crate::support::{bin, tools};

/// The writer's own token, which the server knows as `[[serve.runner]] writer`.
pub const WRITER_TOKEN: &str = "writer-token-0123456789abcdef";

/// Each world has its own ids (R, A, W, G), so that killing what one left behind cannot touch
/// another test's processes.
fn ids() -> (u32, u32, u32, u32) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(64_100);
    let r = NEXT.fetch_add(4, std::sync::atomic::Ordering::SeqCst);
    (r, r + 1, r + 2, r + 3)
}

pub fn mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

pub fn own(p: &Path, uid: u32, gid: u32) {
    chown(p, Some(uid), Some(gid)).unwrap();
}

/// Runs `c` as `uid`/`gid` with the supplementary `groups` (std's `uid()` drops them all).
#[allow(unsafe_code)]
pub fn as_user(c: &mut Command, uid: u32, gid: u32, groups: &[u32]) {
    let groups: Vec<nix::unistd::Gid> = groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    // SAFETY: setgroups, setgid and setuid are async-signal-safe; the closure touches only
    // its own copy of `groups`.
    unsafe {
        c.pre_exec(move || {
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(uid))?;
            Ok(())
        });
    }
}

/// The lockdown world: directories, the system policy, the real tools, both credentials.
pub struct World {
    pub r: u32,
    pub a: u32,
    pub w: u32,
    pub g: u32,
    pub base: tempfile::TempDir,
    pub root: PathBuf,
    pub shims: PathBuf,
    pub real: PathBuf,
    pub work: PathBuf,
    pub runner_home: PathBuf,
    pub writer_home: PathBuf,
    /// R's kubeconfig (the dry-run token) and W's (the write token).
    pub read_kc: PathBuf,
    pub write_kc: PathBuf,
    pub writer_socket: PathBuf,
    pub srv: TestServer,
    pub fake: FakeKube,
    runner: Option<Child>,
    writer: Option<Child>,
}

impl World {
    pub async fn new() -> World {
        Self::with_server("").await
    }

    /// A world whose server policy has `server_extra` too.
    pub async fn with_server(server_extra: &str) -> World {
        assert_eq!(
            nix::unistd::getuid().as_raw(),
            0,
            "the lockdown tests switch uids: run them as root (CI does)"
        );
        let (r, a, w, g) = ids();
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
        let bindir = d("bin", 0o755, 0, 0);
        std::fs::copy(bin(), bindir.join("hitl-gate")).unwrap();
        mode(&bindir.join("hitl-gate"), 0o755);
        let shims = d("shims", 0o755, 0, 0);
        for t in crate::support::TOOL_NAMES {
            std::os::unix::fs::symlink("../bin/hitl-gate", shims.join(t)).unwrap();
        }
        // The real tools: root:G 0750, for R and W alone.
        let real = d("real", 0o750, 0, g);
        for (name, src) in [
            ("kubectl", tools::kubectl()),
            ("helm", tools::helm4()),
            ("terraform", tools::terraform_1_0()),
        ] {
            std::fs::copy(src, real.join(name)).unwrap();
            mode(&real.join(name), 0o755);
        }
        let runner_home = d("runner-home", 0o700, r, r);
        let writer_home = d("writer-home", 0o700, w, w);
        d("run", 0o755, r, r);
        // W's socket: in W's directory, which only R's group may enter.
        let writer_socket = d("run-writer", 0o750, w, r).join("writer.sock");
        let work = d("work", 0o777, a, a);
        d("agent-home", 0o755, a, a);
        let tls = d("tls", 0o755, 0, 0);

        let srv = TestServer::start(&policy_with(&format!(
            "{server_extra}\n[[serve.runner]]\nname = \"writer\"\ntoken_sha256 = \"{}\"\nagents = [\"agent-a\"]\n",
            hitl_gate::hex::sha256(WRITER_TOKEN.as_bytes())
        )))
        .await;
        let secret = |home: &Path, name: &str, text: &str, uid: u32| {
            let p = home.join(name);
            std::fs::write(&p, text).unwrap();
            own(&p, uid, uid);
            mode(&p, 0o600);
            p
        };
        let token = secret(&runner_home, "agent.token", &format!("{TOKEN_A}\n"), r);
        let writer_token = secret(
            &writer_home,
            "writer.token",
            &format!("{WRITER_TOKEN}\n"),
            w,
        );
        // https: kubectl sends its bearer token only over TLS.
        let fake = FakeKube::start_tls(&tls).await;
        fake.rbac();
        fake.put_deployment("prod", "web");
        let contexts = [("prod", "prod"), ("staging", "staging")];
        let kubeconfig = |home: &Path, token: &str, uid: u32| {
            let p = fake.kubeconfig_with_token(home, "kubeconfig", &contexts, token);
            own(&p, uid, uid);
            mode(&p, 0o600);
            p
        };
        let read_kc = kubeconfig(&runner_home, DRY_RUN_TOKEN, r);
        let write_kc = kubeconfig(&writer_home, WRITE_TOKEN, w);
        for p in std::fs::read_dir(&tls).unwrap().flatten() {
            mode(&p.path(), 0o644);
        }
        // Terraform's providers come only from a filesystem mirror, by a CLI config the
        // runner forces (the agent cannot pass TF_CLI_CONFIG_FILE or -plugin-dir); W's from
        // the same mirror, linked into its own data directories.
        let cli_config = etc.join("terraformrc");
        std::fs::write(
            &cli_config,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n  }}\n}}\n",
                tools::provider_dir().display()
            ),
        )
        .unwrap();
        mode(&cli_config, 0o644);
        let policy = format!(
            "version = 1\n\n[approval]\nurl = \"{url}\"\ntoken_file = \"{token}\"\npublic_key = \"{key}\"\n\n\
             [lockdown]\nrunner_socket = \"{socket}\"\nrunner_user = \"{r}\"\npath = [\"{real}\"]\n\n\
             [lockdown.tool_env]\nKUBECONFIG = \"{read}\"\nTF_CLI_CONFIG_FILE = \"{cli}\"\n\n\
             [[lockdown.agent]]\nuid = {a}\nname = \"agent-a\"\n\n\
             [lockdown.writer]\nuser = \"{w}\"\nsocket = \"{wsocket}\"\ntoken_file = \"{wtoken}\"\nterraform_providers = \"{providers}\"\n\n\
             [lockdown.writer.tool_env]\nKUBECONFIG = \"{write}\"\nTF_CLI_CONFIG_FILE = \"{cli}\"\n",
            url = srv.url,
            token = token.display(),
            key = srv.public_key,
            socket = base.path().join("run/runner.sock").display(),
            real = real.display(),
            read = read_kc.display(),
            cli = cli_config.display(),
            wsocket = writer_socket.display(),
            wtoken = writer_token.display(),
            providers = tools::provider_dir().display(),
            write = write_kc.display(),
        );
        std::fs::write(etc.join("policy.toml"), policy).unwrap();
        mode(&etc.join("policy.toml"), 0o644);
        let mut world = World {
            r,
            a,
            w,
            g,
            base,
            root,
            shims,
            real,
            work,
            runner_home,
            writer_home,
            read_kc,
            write_kc,
            writer_socket,
            srv,
            fake,
            runner: None,
            writer: None,
        };
        world.start_runner();
        world.start_writer();
        world
    }

    /// `hitl-gate runner [--writer]` as `uid`, with `home`; returns once it listens.
    fn daemon(&self, uid: u32, home: &Path, writer: bool) -> Child {
        let mut c = Command::new(self.base.path().join("bin/hitl-gate"));
        c.arg("runner")
            .args(writer.then_some("--writer"))
            .env_clear()
            .env("HITL_GATE_TEST_ROOT", &self.root)
            .env("HOME", home)
            .env("PATH", "/usr/bin:/bin")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        crate::support::procs::keep_marker(&mut c);
        as_user(&mut c, uid, uid, &[self.g]);
        let mut child = c.spawn().expect("start a lockdown daemon");
        // Its first line says it listens.
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
        child
    }

    pub fn start_runner(&mut self) {
        self.runner = Some(self.daemon(self.r, &self.runner_home, false));
    }

    pub fn start_writer(&mut self) {
        self.writer = Some(self.daemon(self.w, &self.writer_home, true));
    }

    pub fn stop_runner(&mut self) {
        stop(self.runner.take());
    }

    pub fn stop_writer(&mut self) {
        stop(self.writer.take());
    }

    /// Rewrites the system policy with `edit` and restarts both daemons (they read it once).
    pub fn edit_policy(&mut self, edit: impl Fn(String) -> String) {
        let p = self.root.join("etc/hitl-gate/policy.toml");
        let text = edit(std::fs::read_to_string(&p).unwrap());
        std::fs::write(&p, text).unwrap();
        self.stop_runner();
        self.stop_writer();
        self.start_runner();
        self.start_writer();
    }

    /// A command as the agent: uid A, the shims first on PATH, nothing else.
    pub fn agent(&self, program: &str, args: &[&str]) -> Command {
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
    pub fn as_runner(&self, tool: &str, args: &[&str]) -> Command {
        let mut c = Command::new(self.real.join(tool));
        c.args(args)
            .current_dir(&self.work)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.runner_home)
            .env("KUBECONFIG", &self.read_kc);
        as_user(&mut c, self.r, self.r, &[self.g]);
        c
    }

    /// The same command run directly by R with the real tool and R's credential.
    pub fn direct(&self, tool: &str, args: &[&str]) -> Output {
        self.as_runner(tool, args).output().unwrap()
    }

    /// What W's ledger recorded as refused (`refusals.log`).
    pub fn refusals(&self) -> String {
        std::fs::read_to_string(self.writer_home.join(".hitl-gate/refusals.log"))
            .unwrap_or_default()
    }
}

fn stop(child: Option<Child>) {
    if let Some(mut c) = child {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = c.wait();
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_runner();
        self.stop_writer();
        // The daemons' children live in their own sessions: end whatever is left of the ids.
        for uid in [self.r, self.a, self.w] {
            let _ = Command::new("pkill")
                .args(["-KILL", "-u", &uid.to_string()])
                .status();
        }
    }
}

pub fn out(mut c: Command) -> Output {
    c.stdin(Stdio::null()).output().unwrap()
}

/// Waits for a pending request on the server; panics if `child` ends first.
pub async fn pending(w: &World, child: &mut Child) -> serde_json::Value {
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
pub async fn approve_and_finish(w: &World, mut child: Child) -> Output {
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

/// A command as the agent, piped, started.
pub fn spawn_agent(w: &World, tool: &str, args: &[&str], dir: Option<&Path>) -> Child {
    let mut c = w.agent(tool, args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}
