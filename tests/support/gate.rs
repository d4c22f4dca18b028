//! The gate world shared by the end-to-end tests of gated tools: a sandbox, a real approval
//! server on `127.0.0.1:0`, the agent's token and policy pointing at it, and helpers to start
//! the shim, wait for its request, decide it and read the audit log. [`KubeGated`] adds the
//! test-only fake Kubernetes API, the real kubectl and a kubeconfig pointing at the fake.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::server::{policy_with, Approver, TestServer, TOKEN_A};
use super::{stderr, Sandbox};

pub struct Gated {
    pub sb: Sandbox,
    pub srv: TestServer,
    pub agent_policy: PathBuf,
    /// TMPDIR of the shim (its private run dirs live below).
    pub tmp: PathBuf,
}

impl Gated {
    /// `server_extra` goes into the server's policy, `agent_extra` into the shim's.
    pub async fn new(server_extra: &str, agent_extra: &str) -> Gated {
        let srv = TestServer::start(&policy_with(server_extra)).await;
        Self::with_server(srv, agent_extra)
    }

    /// The gate world around a server the caller started (the web UI's tests start it with
    /// OIDC sign-in).
    pub fn with_server(srv: TestServer, agent_extra: &str) -> Gated {
        let sb = Sandbox::new();
        let token = sb.path().join("agent.token");
        std::fs::write(&token, TOKEN_A).unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let agent_policy = sb.policy(
            "agent.toml",
            &format!(
                "version = 1\n{agent_extra}\n[approval]\nurl = \"{}\"\ntoken_file = \"{}\"\npublic_key = \"{}\"\n",
                srv.url,
                token.display(),
                srv.public_key
            ),
        );
        let tmp = sb.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        Gated {
            sb,
            srv,
            agent_policy,
            tmp,
        }
    }

    /// The shim as `tool`, in `dir`, with the agent's policy; started, not waited for. stdin is
    /// empty.
    pub fn spawn_in(&self, tool: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
        self.spawn_with(tool, dir, args, env, Stdio::null())
    }

    /// Like [`Gated::spawn_in`], with the given stdin.
    pub fn spawn_with(
        &self,
        tool: &str,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Stdio,
    ) -> Child {
        let mut c = self.sb.shim(tool);
        c.args(args)
            .current_dir(dir)
            .env("HITL_GATE_POLICY", &self.agent_policy)
            .env("TMPDIR", &self.tmp)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        c.spawn().expect("spawn the shim")
    }

    pub fn approver(&self) -> Approver {
        self.srv.approver()
    }

    /// Waits until the server holds a pending request; returns it. The shim must not end
    /// before it submits.
    pub async fn pending(&self, child: &mut Child) -> Value {
        match self.first_pending(child).await {
            Some(r) => r,
            None => {
                let out = finish_now(child);
                panic!(
                    "the shim ended ({}) before submitting: {}",
                    out.status,
                    stderr(&out)
                );
            }
        }
    }

    /// Waits until the shim either submits a request (returned) or ends without one (its
    /// output, a refusal).
    pub async fn pending_or_exit(&self, mut child: Child) -> Result<(Value, Child), Output> {
        match self.first_pending(&mut child).await {
            Some(r) => Ok((r, child)),
            None => Err(finish(child).await),
        }
    }

    /// The first pending request, or `None` once the shim has ended without one.
    async fn first_pending(&self, child: &mut Child) -> Option<Value> {
        let ap = self.approver();
        let start = Instant::now();
        loop {
            let (s, v) = ap
                .request("GET", "/api/v1/requests?state=pending", None)
                .await;
            assert_eq!(s, 200, "{v}");
            if let Some(r) = v.as_array().and_then(|a| a.first()) {
                return Some(r.clone());
            }
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no pending request appeared"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn decide(&self, id: &str, verb: &str, comment: &str) {
        let (s, v) = self.approver().decide(id, verb, Some(comment)).await;
        assert_eq!(s, 200, "{v}");
    }

    /// A terraform configuration `main_tf` in `work/<name>`, initialised with the pinned null
    /// provider by the real `terraform` (which this adds to the real-tools dir under `terraform`
    /// and `tofu`). Returns its directory.
    pub fn terraform_dir(&self, terraform: &Path, name: &str, main_tf: &str) -> PathBuf {
        if !self.sb.real.join("terraform").exists() {
            self.sb.add_real("terraform", terraform);
            self.sb.add_real("tofu", terraform);
        }
        let dir = self.sb.work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.tf"), main_tf).unwrap();
        let mut init = self.sb.direct("terraform");
        init.args(["init", "-input=false"])
            .arg(format!(
                "-plugin-dir={}",
                super::tools::provider_dir().display()
            ))
            .current_dir(&dir);
        let out = super::run(&mut init);
        assert_eq!(super::code(&out), 0, "init: {}", stderr(&out));
        dir
    }

    /// The real terraform, directly, in `dir`.
    pub fn terraform(&self, dir: &Path, args: &[&str]) -> Output {
        let mut c = self.sb.direct("terraform");
        c.args(args).current_dir(dir);
        super::run(&mut c)
    }

    /// Every audit row's kind, actor and body, in order (through `hitl-gate audit export`).
    pub async fn audit(&self) -> Vec<(String, String, Value)> {
        super::server::audit_rows(&self.srv.data)
            .into_iter()
            .map(|r| (r.kind, r.actor, serde_json::from_str(&r.body).unwrap()))
            .collect()
    }
}

/// The gate world with a cluster: the test-only fake Kubernetes API, the pinned real kubectl in
/// the real-tools dir, and a kubeconfig with contexts `prod` (namespace prod, current) and `dev`
/// (namespace dev).
pub struct KubeGated {
    pub g: Gated,
    pub fake: super::kube::FakeKube,
    pub kubeconfig: PathBuf,
}

impl std::ops::Deref for KubeGated {
    type Target = Gated;
    fn deref(&self) -> &Gated {
        &self.g
    }
}

impl KubeGated {
    pub async fn new() -> KubeGated {
        Self::with_policy("", "").await
    }

    /// Like [`KubeGated::new`], with `server_extra` in the server's policy and `agent_extra` in
    /// the shim's.
    pub async fn with_policy(server_extra: &str, agent_extra: &str) -> KubeGated {
        let g = Gated::new(server_extra, agent_extra).await;
        Self::around(g).await
    }

    /// The kube world around a gate world the caller made.
    pub async fn around(g: Gated) -> KubeGated {
        let fake = super::kube::FakeKube::start().await;
        Self::around_fake(g, fake)
    }

    /// Like [`KubeGated::with_policy`], for policies that name the fake's URL: each is made
    /// from it (`kube_servers` with the exact port).
    pub async fn naming_the_fake(
        server_extra: impl Fn(&str) -> String,
        agent_extra: impl Fn(&str) -> String,
    ) -> KubeGated {
        let fake = super::kube::FakeKube::start().await;
        let g = Gated::new(&server_extra(&fake.url), &agent_extra(&fake.url)).await;
        Self::around_fake(g, fake)
    }

    fn around_fake(g: Gated, fake: super::kube::FakeKube) -> KubeGated {
        g.sb.add_real("kubectl", &super::tools::kubectl());
        let kubeconfig = fake.kubeconfig(g.sb.path(), &[("prod", "prod"), ("dev", "dev")]);
        KubeGated {
            g,
            fake,
            kubeconfig,
        }
    }
}

impl KubeGated {
    /// The shim as kubectl in the work dir, with the world's kubeconfig; empty stdin.
    pub fn kubectl(&self, args: &[&str]) -> Child {
        self.kubectl_with(args, &[])
    }

    /// [`KubeGated::kubectl`] with more environment (set after the kubeconfig, so it can
    /// replace it).
    pub fn kubectl_with(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        let kc = self.kubeconfig.display().to_string();
        let mut all = vec![("KUBECONFIG", kc.as_str())];
        all.extend_from_slice(env);
        self.spawn_with("kubectl", &self.sb.work, args, &all, Stdio::null())
    }

    /// The real kubectl, directly, in the work dir with the world's kubeconfig (to seed the
    /// fake API); it must succeed.
    pub fn kubectl_direct(&self, args: &[&str]) {
        let mut c = self.sb.direct("kubectl");
        c.args(args)
            .current_dir(&self.sb.work)
            .env("KUBECONFIG", &self.kubeconfig);
        let out = super::run(&mut c);
        assert_eq!(super::code(&out), 0, "kubectl {args:?}: {}", stderr(&out));
    }
}

/// Collects a finished (or finishing) child's output, with a 120 s limit. The pipes are read
/// while the child runs, so a shim that writes more than a pipe holds (64 KiB) does not stall.
pub async fn finish(child: Child) -> Output {
    tokio::task::spawn_blocking(move || {
        super::wait_within(child, Duration::from_secs(120), "the shim")
    })
    .await
    .unwrap()
}

/// The output of a child that has already ended (its stderr; stdout is dropped).
pub fn finish_now(child: &mut Child) -> Output {
    let mut out = Output {
        status: child.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    if let Some(mut s) = child.stderr.take() {
        s.read_to_end(&mut out.stderr).unwrap();
    }
    out
}
