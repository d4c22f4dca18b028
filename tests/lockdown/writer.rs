//! The writer trusts nothing the runner's child hands it. Jobs are sent to its socket as the
//! runner's uid would send them (`send_job.py`, run as R), built from real requests the server
//! approved: a forged decision, another request's decision, an input that is not the approved
//! one, a replayed approval and an expired one are each refused and recorded in W's
//! `refusals.log`, and nothing reaches the cluster but the one valid run.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::World;
use crate::support::server::TOKEN_A;

/// Posts a request as the agent, with its run template, and approves it; returns the request
/// as sent and the approved view.
async fn approved(w: &World, argv: &[&str], run: &[&str], inputs: &[&[u8]]) -> (Value, Value) {
    let hashes: Vec<String> = inputs.iter().map(|b| hitl_gate::hex::sha256(b)).collect();
    let body = json!({
        "tool": "kubectl",
        "argv": argv,
        "cwd": w.work.display().to_string(),
        "host": "agent",
        "environment": {"kube_context": "prod", "cluster_server": w.fake.url, "namespace": "prod", "exact": true},
        "diff": {"text": "shown", "summary": {"complete": true, "resources": []}},
        "artifact_sha256": hashes,
        "nonce": hitl_gate::hex::sha256(format!("{argv:?}{run:?}").as_bytes()),
        "run": {"argv": run, "inputs": hashes},
    });
    let (s, v) = w
        .srv
        .agent(TOKEN_A)
        .post("/api/v1/requests", body.clone())
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = w
        .srv
        .approver()
        .decide(v["id"].as_str().unwrap(), "approve", None)
        .await;
    assert_eq!(s, 200, "{v}");
    (body, v)
}

fn job(request: &Value, view: &Value) -> Value {
    json!({"version": 1, "tool": "kubectl", "request_id": view["id"], "request": request, "decision": view["decision"]})
}

/// Sends `job` with `inputs` to the writer as the runner's uid; returns the writer's last line.
fn send(w: &World, job: &Value, inputs: &[&[u8]]) -> String {
    let dir = w.base.path().join(format!(
        "job-{}",
        hitl_gate::hex::sha256(job.to_string().as_bytes())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    super::mode(&dir, 0o755);
    let file = |name: &str, bytes: &[u8]| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        super::mode(&p, 0o644);
        p
    };
    let j = file("job.json", job.to_string().as_bytes());
    let mut c = Command::new("python3");
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lockdown/send_job.py"))
        .arg(&w.writer_socket)
        .arg(j)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin");
    for (i, b) in inputs.iter().enumerate() {
        c.arg(file(&format!("input-{i}"), b));
    }
    super::as_user(&mut c, w.r, w.r, &[w.g]);
    let o = super::out(c);
    assert!(o.status.success(), "send_job.py: {o:?}");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.lines().last().unwrap_or_default().to_string()
}

const PIN: [&str; 2] = ["--kubeconfig=\0kubeconfig\0", "--context=prod"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_refuses_what_it_cannot_verify_and_runs_an_approval_once() {
    let w = World::new().await;
    w.fake.put_deployment("prod", "api");
    let delete = |name: &'static str| {
        let argv = vec!["delete", "deployment", name, "-n", "prod"];
        let run = [argv.clone(), PIN.to_vec()].concat();
        (argv, run)
    };
    let (argv, run) = delete("web");
    let (a_req, a) = approved(&w, &argv, &run, &[]).await;
    let (argv, run) = delete("api");
    let (b_req, b) = approved(&w, &argv, &run, &[]).await;
    let cm = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: prod\ndata:\n  a: \"1\"\n";
    let run_c = [&["apply", "--filename=\0input:0\0"][..], &PIN[..]].concat();
    let (c_req, c) = approved(&w, &["apply", "-f", "cm.yaml"], &run_c, &[cm]).await;
    let writes = |w: &World| w.fake.requests().iter().filter(|r| r.writes()).count();

    // A forged decision: one byte of the signature changed.
    let mut forged = job(&a_req, &a);
    let sig = forged["decision"]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    );
    forged["decision"]["signature"] = json!(flipped);
    let mut refused = vec![(send(&w, &forged, &[]), "signature")];
    // Another request's decision.
    let mut foreign = job(&a_req, &a);
    foreign["decision"] = b["decision"].clone();
    refused.push((send(&w, &foreign, &[]), "request"));
    // The approved request, with its run template made wider than the approved argv.
    let mut wider = job(&b_req, &b);
    wider["request"]["run"]["argv"]
        .as_array_mut()
        .unwrap()
        .push(json!("--force"));
    refused.push((send(&w, &wider, &[]), "not the one this shim sent"));
    // An input that is not the approved one.
    refused.push((
        send(&w, &job(&c_req, &c), &[b"kind: Secret\n"]),
        "sealed input 0",
    ));
    // A template the server signed, wider than the argv it came with.
    let (argv, run) = delete("web");
    let (e_req, e) = approved(&w, &argv, &[run, vec!["--force"]].concat(), &[]).await;
    refused.push((send(&w, &job(&e_req, &e), &[]), "the run adds --force"));
    for (line, why) in &refused {
        assert!(
            line.starts_with("refused 88 the writer refused request"),
            "{line}"
        );
        assert!(line.contains(why), "{why}: {line}");
    }
    assert_eq!(writes(&w), 0, "nothing reached the cluster");

    // The valid job runs, once.
    let line = send(&w, &job(&a_req, &a), &[]);
    assert_eq!(line, "exit 0");
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "web")
        .is_none());
    let line = send(&w, &job(&a_req, &a), &[]);
    assert!(line.contains("already been used"), "{line}");
    assert_eq!(writes(&w), 1);

    // An approval past its validity window (the server's clock an hour behind the writer's).
    w.srv.clock.set_offset_ms(-3_600_000);
    let (argv, run) = delete("api");
    let (d_req, d) = approved(
        &w,
        &[argv.clone(), vec!["--wait=false"]].concat(),
        &[run, vec!["--wait=false"]].concat(),
        &[],
    )
    .await;
    w.srv.clock.set_offset_ms(0);
    let line = send(&w, &job(&d_req, &d), &[]);
    assert!(line.contains("expired"), "{line}");
    assert!(w
        .fake
        .get("apps/v1", "deployments", "prod", "api")
        .is_some());

    // Every refusal is in the writer's own record.
    let log = w.refusals();
    assert_eq!(log.lines().count(), 7, "{log}");
    for id in [&a["id"], &c["id"], &d["id"], &e["id"]] {
        assert!(log.contains(id.as_str().unwrap()), "{id}: {log}");
    }
}
