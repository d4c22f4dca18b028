//! Lockdown basics: what the agent (and the runner) hold, passthrough through the runner
//! byte for byte, signals, a gated delete run by the writer with a verified outcome, refused
//! flags, stopped daemons, and doctor.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{approve_and_finish, mode, out, pending, spawn_agent, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_holds_neither_the_tools_nor_a_credential_and_the_runner_not_the_write_one() {
    let w = World::new().await;
    // EACCES on the real binaries and on both credentials, for the agent.
    for kc in [&w.read_kc, &w.write_kc] {
        let mut c = w.agent("/bin/cat", &[]);
        c.arg(kc);
        let o = out(c);
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
            "{o:?}"
        );
    }
    let e = Command::new(w.real.join("kubectl"))
        .uid(w.a)
        .gid(w.a)
        .spawn()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    // The runner reads its own credential, never the writer's.
    let mut c = Command::new("/bin/cat");
    c.arg(&w.write_kc);
    super::as_user(&mut c, w.r, w.r, &[w.g]);
    let o = out(c);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{o:?}"
    );
    // The API itself wants a token the agent cannot read.
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

/// Starts `c` with an open stdin, sends it SIGINT once it has had 2 s to start (terraform's
/// console shows no sign of being ready when its input is a pipe), and returns how it ended.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_delete_runs_by_the_writer_after_approval_and_a_harness_kill_detaches() {
    let w = World::new().await;
    // The agent's own KUBECONFIG is ignored: the runner's credential is used.
    let mut c = w.agent("kubectl", &["delete", "deployment", "web", "-n", "prod"]);
    c.env("KUBECONFIG", "/nonexistent/kubeconfig")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let req = pending(&w, &mut child).await;
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
    // The writer ran it and reported the outcome itself: verified.
    let id = req["id"].as_str().unwrap();
    let (_, v) = w
        .srv
        .approver()
        .request("GET", &format!("/api/v1/requests/{id}"), None)
        .await;
    assert_eq!(v["outcome_reported_by"], "runner:writer", "{v}");
    assert_eq!(v["outcome_verified"], true, "{v}");
    assert_eq!(v["outcome"]["exit_code"], 0, "{v}");
    let shown = crate::support::run(
        std::process::Command::new(crate::support::bin())
            .args(["show", id, "--data-dir"])
            .arg(&w.srv.data),
    );
    assert!(
        crate::support::stdout(&shown).contains(
            "(reported by runner:writer; verified: the lockdown writer that ran it reported it)"
        ),
        "{}",
        crate::support::stdout(&shown)
    );
    // An outcome posted with the agent's token for it is refused, not recorded as verified.
    let (s, body) = w
        .srv
        .agent(crate::support::server::TOKEN_A)
        .post(
            &format!("/api/v1/requests/{id}/outcome"),
            serde_json::json!({"exit_code": 1, "duration_ms": 1}),
        )
        .await;
    assert_eq!(s, 409, "{body}");
    let rows = crate::support::server::audit_rows(&w.srv.data);
    let refused = rows
        .iter()
        .find(|r| r.kind == "outcome_refused")
        .expect("recorded");
    assert!(
        refused.body.contains("reports the outcomes of agent"),
        "{}",
        refused.body
    );

    // A harness's SIGTERM while it waits: the request stays pending, nobody waits for it, and
    // the resume record is the runner's (in its home, per agent), not the agent's.
    w.fake.put_deployment("prod", "api");
    let args = ["delete", "deployment", "api", "-n", "prod"];
    let mut child = spawn_agent(&w, "kubectl", &args, None);
    let req = pending(&w, &mut child).await;
    let id = req["id"].as_str().unwrap().to_string();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(91), "{err}");
    assert!(
        err.contains(&format!(
            "hitl-gate: pending {id}: run the same command again"
        )),
        "{err}"
    );
    let view = |w: &World, id: String| {
        let ap = w.srv.approver();
        async move {
            ap.request("GET", &format!("/api/v1/requests/{id}"), None)
                .await
                .1
        }
    };
    let v = view(&w, id.clone()).await;
    assert_eq!(
        (v["state"].as_str(), v["agent_waiting"].as_bool()),
        (Some("pending"), Some(false)),
        "{v}"
    );
    let records = w
        .runner_home
        .join(".local/state/hitl-gate/pending")
        .join(hitl_gate::hex::sha256(w.a.to_string().as_bytes()));
    assert_eq!(
        std::fs::read_dir(&records).map(|d| d.count()).unwrap_or(0),
        1,
        "{}",
        records.display()
    );
    assert!(!w
        .runner_home
        .parent()
        .unwrap()
        .join("agent-home/.local")
        .exists());

    // The same command again: it attaches (no new request); approved, the writer runs it once.
    let child = spawn_agent(&w, "kubectl", &args, None);
    let start = Instant::now();
    while view(&w, id.clone()).await["agent_waiting"] != true {
        assert!(start.elapsed() < Duration::from_secs(60), "never attached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let o = approve_and_finish(&w, child).await;
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("resuming request {id}")),
        "{o:?}"
    );
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "api")
        .is_none());
    let (_, all) = w
        .srv
        .approver()
        .request("GET", "/api/v1/requests?state=all", None)
        .await;
    assert_eq!(
        all.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["argv"][1] == "deployment" && r["argv"][2] == "api")
            .count(),
        1
    );
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
    assert!(
        !text.contains(crate::support::kube::DRY_RUN_TOKEN),
        "{text}"
    );
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
    w.start_runner();

    // The writer stopped: an approved run finds no one to run it, says so, and nothing ran.
    w.stop_writer();
    let child = spawn_agent(
        &w,
        "kubectl",
        &["delete", "deployment", "web", "-n", "prod"],
        None,
    );
    let mut child = child;
    let req = pending(&w, &mut child).await;
    let (s, v) = w
        .srv
        .approver()
        .decide(req["id"].as_str().unwrap(), "approve", None)
        .await;
    assert_eq!(s, 200, "{v}");
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(90), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the writer at"),
        "{o:?}"
    );
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_some());
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
    mode(&w.read_kc, 0o644);
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
async fn doctor_as_the_runner_weighs_the_read_credential_and_the_separation() {
    let w = World::new().await;
    let doctor = |w: &World| {
        let mut c = Command::new(w.base.path().join("bin/hitl-gate"));
        c.arg("doctor")
            .env_clear()
            .env("HITL_GATE_TEST_ROOT", &w.root)
            .env("HOME", &w.runner_home)
            .env("PATH", "/usr/bin:/bin");
        super::as_user(&mut c, w.r, w.r, &[w.g]);
        let o = out(c);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    // The runner's token may write (only dry runs take effect, which can-i cannot tell): warned.
    let (code, text) = doctor(&w);
    assert!(
        text.contains("ok   the writer's files: the runner can read none"),
        "{text}"
    );
    assert!(
        text.contains("warn the read credential") && text.contains("may create, patch, delete"),
        "{text}"
    );
    assert!(!text.contains("get secrets"), "{text}");
    assert_eq!(code, Some(0), "{text}");
    // A read-only role: no warning.
    std::fs::write(
        &w.read_kc,
        std::fs::read_to_string(&w.read_kc).unwrap().replace(
            crate::support::kube::DRY_RUN_TOKEN,
            crate::support::kube::READ_TOKEN,
        ),
    )
    .unwrap();
    let (_, text) = doctor(&w);
    assert!(!text.contains("warn"), "{text}");
    // The writer's credential readable by the runner: a failure.
    mode(&w.writer_home, 0o755);
    mode(&w.write_kc, 0o644);
    let (code, text) = doctor(&w);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAIL the runner can read") && text.contains("not separated"),
        "{text}"
    );
}
