//! No secret byte leaves the shim: a Secret's values (plain and base64) never reach the request,
//! the database or the audit log, wherever they would fall in a diff.

use std::process::Stdio;

use crate::support::gate::{finish, KubeGated};
use crate::support::kube::b64;
use crate::support::{code, stderr};

/// A Secret with its last-applied annotation followed by `extra` annotations and labels, so
/// that a label change puts the annotation's JSON line first in the diff's context.
fn secret(pw: &str, token: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  annotations:\n    zz-note: \"x\"\n  labels:\n    app: web\n{labels}data:\n  password: {}\nstringData:\n  token: {token}\n",
        b64(pw.as_bytes())
    )
}

async fn assert_absent(k: &KubeGated, secrets: &[&str]) {
    let audit = serde_json::to_string(&k.audit().await).unwrap();
    let (_, all) = k
        .approver()
        .request("GET", "/api/v1/requests?state=all", None)
        .await;
    let stored = all.to_string();
    for s in secrets {
        for hay in [&audit, &stored] {
            assert!(!hay.contains(s), "{s} leaked: {hay}");
            let b = b64(s.as_bytes());
            assert!(
                !hay.contains(b.trim_end_matches('=')),
                "{s} (base64) leaked: {hay}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_change_on_an_applied_secret_leaks_nothing() {
    let k = KubeGated::new().await;
    let kc = k.kubeconfig.display().to_string();
    std::fs::write(
        k.sb.work.join("s.yaml"),
        secret("hunter22", "plain-token-1", ""),
    )
    .unwrap();
    let mut c = k.sb.direct("kubectl");
    c.args(["apply", "-f", "s.yaml"])
        .current_dir(&k.sb.work)
        .env("KUBECONFIG", &kc);
    assert_eq!(code(&crate::support::run(&mut c)), 0);
    // Only a label changes.
    std::fs::write(
        k.sb.work.join("s.yaml"),
        secret("hunter22", "plain-token-1", "    tier: back\n"),
    )
    .unwrap();
    let mut child = k.kubectl(&["apply", "-f", "s.yaml"]);
    let req = k.pending(&mut child).await;
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(text.contains("tier"), "the label change is shown: {text}");
    k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_absent(&k, &["hunter22", "plain-token-1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_on_every_kube_path_stay_in_the_shim() {
    let k = KubeGated::new().await;
    k.sb.add_real("helm", &crate::support::tools::helm4());
    let kc = k.kubeconfig.display().to_string();
    let chart = k.sb.work.join("chart");
    crate::support::kube::write_chart(&chart, "nginx:1.27");
    // A chart Secret in flow style, its value from the values.
    std::fs::write(
        chart.join("templates/secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: chart-creds}\ndata: {password: {{ .Values.pw | b64enc }}}\nstringData: {api: \"{{ .Values.api }}\"}\n",
    )
    .unwrap();
    std::fs::write(
        k.sb.work.join("values.yaml"),
        "pw: chart-secret-1\napi: chart-secret-2\n",
    )
    .unwrap();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "kubectl",
            vec![
                "create",
                "secret",
                "generic",
                "lit",
                "--from-file=key=secret.txt",
            ],
        ),
        ("kubectl", vec!["apply", "-f", "two.yaml"]),
        (
            "helm",
            vec![
                "upgrade",
                "--install",
                "rel",
                "./chart",
                "-f",
                "values.yaml",
            ],
        ),
    ];
    std::fs::write(k.sb.work.join("secret.txt"), "file-secret-1").unwrap();
    // A JSON Secret in a stream after a ConfigMap.
    std::fs::write(
        k.sb.work.join("two.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm}}\ndata: {{a: b}}\n---\n{{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{{\"name\":\"in-stream\"}},\"data\":{{\"k\":\"{}\"}}}}\n",
            b64(b"list-secret-1")
        ),
    )
    .unwrap();
    for (tool, args) in cases {
        let mut child = k.spawn_with(
            tool,
            &k.sb.work,
            &args,
            &[("KUBECONFIG", &kc)],
            Stdio::null(),
        );
        let req = k.pending(&mut child).await;
        k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
        let out = finish(child).await;
        assert_eq!(code(&out), 0, "{tool} {args:?}: {}", stderr(&out));
    }
    assert_absent(
        &k,
        &[
            "file-secret-1",
            "list-secret-1",
            "chart-secret-1",
            "chart-secret-2",
        ],
    )
    .await;
}
