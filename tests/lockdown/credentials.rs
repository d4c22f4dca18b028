//! Which credential each call carries in lockdown: the runner's (reads and server-side dry
//! runs) for passthrough commands and every helper, the writer's (writes) for approved runs
//! only, for kubectl, helm and terraform; and the write credential out of reach of everything
//! the agent steers (values files, kustomize generators, terraform functions), which the
//! read credential, honestly, is not.

use std::process::Stdio;

use super::{approve_and_finish, mode, out, pending, spawn_agent, World};
use crate::support::kube::{DRY_RUN_TOKEN, WRITE_TOKEN};

/// A request the fake API received: method, dry run, bearer token.
type Seen = (String, bool, Option<String>);

fn seen_since(w: &World, from: usize) -> Vec<Seen> {
    w.fake.requests()[from..]
        .iter()
        .map(|r| (r.method.clone(), r.dry_run(), r.token.clone()))
        .collect()
}

/// Every call before the approved run carries the runner's token, every call of the run (the
/// writer's) the write token, in that order; returns how many real writes the run made.
fn writes_by_the_writer_alone(log: &[Seen]) -> usize {
    let first = log
        .iter()
        .position(|(_, _, t)| t.as_deref() == Some(WRITE_TOKEN))
        .expect("the writer's run");
    assert!(
        log[..first]
            .iter()
            .all(|(_, _, t)| t.as_deref() == Some(DRY_RUN_TOKEN)),
        "before the approved run, only the runner's token: {log:?}"
    );
    assert!(
        log[first..]
            .iter()
            .all(|(_, _, t)| t.as_deref() == Some(WRITE_TOKEN)),
        "the approved run, the writer's token alone: {log:?}"
    );
    log.iter().filter(|(m, dry, _)| m != "GET" && !dry).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_helpers_carry_the_runner_token_and_approved_runs_the_writer_token() {
    let mut w = World::new().await;
    // Credential sets instead of tool_env: W picks the write set of the environment itself.
    let (read, write) = (
        w.read_kc.display().to_string(),
        w.write_kc.display().to_string(),
    );
    w.edit_policy(|p| {
        let p = p
            .replace(&format!("KUBECONFIG = \"{read}\"\n"), "")
            .replace(&format!("KUBECONFIG = \"{write}\"\n"), "");
        format!(
            "{p}\n[lockdown.credentials.default]\nread = {{ KUBECONFIG = \"{read}\" }}\nwrite = {{ KUBECONFIG = \"{write}\" }}\n\n\
             [[rule]]\nname = \"labels-pass\"\ntools = [\"kubectl\"]\nsubcommands = [\"label\"]\naction = \"pass\"\n"
        )
    });
    // Passthrough reads with the runner's token.
    let o = out(w.agent("kubectl", &["get", "deployment", "web", "-n", "prod"]));
    assert!(o.status.success(), "{o:?}");
    assert!(seen_since(&w, 0)
        .iter()
        .all(|(_, _, t)| t.as_deref() == Some(DRY_RUN_TOKEN)));
    // A passthrough that writes (the policy passes `label`) cannot: the runner's token is
    // limited to dry runs.
    let before = w.fake.requests().len();
    let o = out(w.agent(
        "kubectl",
        &["label", "deployment", "web", "-n", "prod", "x=y"],
    ));
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("dry runs"),
        "{o:?}"
    );
    assert!(seen_since(&w, before)
        .iter()
        .all(|(_, _, t)| t.as_deref() == Some(DRY_RUN_TOKEN)));

    // kubectl delete and apply: diffed by the runner, run by the writer.
    let before = w.fake.requests().len();
    let o = approve_and_finish(
        &w,
        spawn_agent(
            &w,
            "kubectl",
            &["delete", "deployment", "web", "-n", "prod"],
            None,
        ),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("deleted"),
        "{o:?}"
    );
    assert_eq!(writes_by_the_writer_alone(&seen_since(&w, before)), 1);
    std::fs::write(
        w.work.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: prod\ndata:\n  a: \"1\"\n",
    )
    .unwrap();
    let before = w.fake.requests().len();
    let mut child = spawn_agent(&w, "kubectl", &["apply", "-f", "cm.yaml"], None);
    let req = pending(&w, &mut child).await;
    assert_eq!(
        req["changes"]["complete"], true,
        "the runner's dry run showed it: {req}"
    );
    let o = approve_and_finish(&w, child).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("created"),
        "{o:?}"
    );
    assert!(writes_by_the_writer_alone(&seen_since(&w, before)) >= 1);

    // helm install: rendered by the runner (and again by the writer), installed by the writer.
    crate::support::kube::write_chart(&w.work.join("chart"), "nginx:1.27");
    for d in ["chart", "chart/templates"] {
        mode(&w.work.join(d), 0o755);
    }
    let before = w.fake.requests().len();
    let child = spawn_agent(
        &w,
        "helm",
        &["install", "rel", "./chart", "-n", "prod"],
        None,
    );
    let o = approve_and_finish(&w, child).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("STATUS: deployed"),
        "{o:?}"
    );
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "rel-web")
        .is_some());
    assert!(writes_by_the_writer_alone(&seen_since(&w, before)) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_credential_is_out_of_reach_of_everything_the_agent_steers() {
    let w = World::new().await;
    let write_kc = w.write_kc.display().to_string();
    let read_kc = w.read_kc.display().to_string();
    let mut outputs = Vec::new();
    let mut run = |tool: &str, args: &[&str], dir: &str| {
        let mut c = w.agent(tool, args);
        c.current_dir(w.work.join(dir));
        let o = out(c);
        outputs.push(format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
        o
    };
    // helm: a values file that is the write kubeconfig.
    crate::support::kube::write_chart(&w.work.join("chart"), "nginx:1.27");
    std::fs::write(
        w.work.join("chart/templates/leak.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leak\ndata:\n  x: {{ .Values.x | quote }}\n",
    )
    .unwrap();
    for d in ["chart", "chart/templates"] {
        mode(&w.work.join(d), 0o755);
    }
    let leak = format!("x={write_kc}");
    let o = run("helm", &["template", "./chart", "--set-file", &leak], ".");
    assert!(!o.status.success(), "{o:?}");
    // kustomize: a generator that reads it.
    let kz = w.work.join("kz");
    std::fs::create_dir_all(&kz).unwrap();
    std::fs::write(
        kz.join("kustomization.yaml"),
        format!("configMapGenerator:\n- name: leak\n  files:\n  - {write_kc}\n"),
    )
    .unwrap();
    let o = run(
        "kubectl",
        &[
            "kustomize",
            "--load-restrictor",
            "LoadRestrictionsNone",
            "./kz",
        ],
        ".",
    );
    assert!(!o.status.success(), "{o:?}");
    // terraform: file() in a passthrough plan's output, and in the console.
    let tf = w.work.join("tf");
    std::fs::create_dir_all(&tf).unwrap();
    std::fs::write(
        tf.join("main.tf"),
        format!("output \"leak\" {{\n  value = file(\"{write_kc}\")\n}}\n"),
    )
    .unwrap();
    mode(&tf, 0o777);
    run("terraform", &["init", "-input=false"], "tf");
    let o = run("terraform", &["plan", "-input=false"], "tf");
    assert!(!o.status.success(), "{o:?}");
    let mut c = w.agent("terraform", &["console"]);
    c.current_dir(&tf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("file(\"{write_kc}\")\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    outputs.push(format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    ));
    for text in &outputs {
        assert!(
            !text.contains(WRITE_TOKEN),
            "the write token leaked: {text}"
        );
    }
    assert!(
        outputs
            .iter()
            .any(|t| t.contains("permission denied") || t.contains("Permission denied")),
        "{outputs:?}"
    );

    // What the agent can obtain (the runner's own credential, which a chart can print) changes
    // nothing: its token is limited to reads and dry runs.
    let mut c = w.agent(
        "helm",
        &["template", "./chart", "--set-file", &format!("x={read_kc}")],
    );
    c.current_dir(&w.work);
    let printed = String::from_utf8_lossy(&out(c).stdout).into_owned();
    assert!(
        printed.contains(DRY_RUN_TOKEN),
        "the read credential is readable, as docs/security.md says"
    );
    let r = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .delete(format!(
            "{}/apis/apps/v1/namespaces/prod/deployments/web",
            w.fake.url
        ))
        .bearer_auth(DRY_RUN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_edited_while_pending_does_not_change_what_runs() {
    let w = World::new().await;
    let manifest = w.work.join("cm.yaml");
    let cm = |v: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: prod\ndata:\n  level: {v}\n")
    };
    std::fs::write(&manifest, cm("shown")).unwrap();
    super::own(&manifest, w.a, w.a);
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
