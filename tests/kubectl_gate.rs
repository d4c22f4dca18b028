//! Gated kubectl, end to end: the built binary under the name `kubectl`, the pinned real
//! kubectl 1.35.2 talking to the test-only fake Kubernetes API (`support::kube`), and a real
//! approval server whose approver decides over the admin socket. What ran is read back from the
//! fake API's store.

use std::path::PathBuf;
use std::process::{Child, Stdio};

use serde_json::{json, Value};

use crate::support::gate::{finish, KubeGated};
use crate::support::{code, stderr};

/// A Deployment `web` with `replicas` replicas.
fn deployment(replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n"
    )
}

/// The kube gate world with kubectl helpers.
struct Kube(KubeGated);

impl std::ops::Deref for Kube {
    type Target = KubeGated;
    fn deref(&self) -> &KubeGated {
        &self.0
    }
}

impl Kube {
    async fn new() -> Kube {
        Kube(KubeGated::new().await)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.sb.work.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("KUBECONFIG", self.kubeconfig.display().to_string())]
    }

    /// The shim as kubectl, with the kubeconfig, and `stdin`.
    fn spawn_stdin(&self, args: &[&str], extra: &[(&str, &str)], stdin: Stdio) -> Child {
        let kc = self.kubeconfig.display().to_string();
        let mut env: Vec<(&str, &str)> = vec![("KUBECONFIG", &kc)];
        env.extend_from_slice(extra);
        self.spawn_with("kubectl", &self.sb.work, args, &env, stdin)
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.spawn_stdin(args, &[], Stdio::null())
    }

    /// The real kubectl, directly (for seeding).
    fn direct(&self, args: &[&str]) {
        let mut c = self.sb.direct("kubectl");
        c.args(args).current_dir(&self.sb.work);
        for (k, v) in self.env() {
            c.env(k, v);
        }
        let out = crate::support::run(&mut c);
        assert_eq!(code(&out), 0, "kubectl {args:?}: {}", stderr(&out));
    }

    fn web(&self, ns: &str) -> Option<Value> {
        self.fake.get("apps/v1", "deployments", ns, "web")
    }

    fn replicas(&self, ns: &str) -> Option<u64> {
        self.web(ns).and_then(|d| d["spec"]["replicas"].as_u64())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_approved_creates_rejected_does_not_and_the_diff_names_the_fields() {
    let k = Kube::new().await;
    k.file("web.yaml", &deployment(2));
    let mut child = k.spawn(&["apply", "-f", "web.yaml"]);
    let req = k.pending(&mut child).await;
    let env = &req["environment"];
    assert_eq!(env["kube_context"], "prod", "{env}");
    assert_eq!(env["namespace"], "prod", "{env}");
    assert_eq!(env["cluster_server"], k.fake.url.as_str(), "{env}");
    assert!(k.web("prod").is_none(), "nothing before the approval");
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(text.contains("+  replicas: 2"), "{text}");
    assert!(text.contains("Deployment prod/web (create)"), "{text}");
    k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(k.replicas("prod"), Some(2));

    // A change, rejected: the diff names the field, and nothing changes.
    k.file("web.yaml", &deployment(5));
    let mut child = k.spawn(&["apply", "-f", "web.yaml"]);
    let req = k.pending(&mut child).await;
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(
        text.contains("-  replicas: 2") && text.contains("+  replicas: 5"),
        "{text}"
    );
    assert!(text.contains("replicas: 2 -> 5"), "change model: {text}");
    k.decide(req["id"].as_str().unwrap(), "reject", "too many")
        .await;
    let out = finish(child).await;
    assert_eq!(code(&out), 80, "{}", stderr(&out));
    assert_eq!(k.replicas("prod"), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_captured_once_and_the_approved_bytes_are_applied() {
    let k = Kube::new().await;
    let src = k.file("from-stdin.yaml", &deployment(4));
    let stdin = std::fs::File::open(&src).unwrap();
    let mut child = k.spawn_stdin(&["apply", "-f", "-"], &[], Stdio::from(stdin));
    let req = k.pending(&mut child).await;
    assert!(
        req["diff"]["text"]
            .as_str()
            .unwrap()
            .contains("+  replicas: 4"),
        "{}",
        req["diff"]["text"]
    );
    // The agent's source changes after the request was made: what runs is the capture.
    std::fs::write(&src, deployment(9)).unwrap();
    k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(k.replicas("prod"), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_manifests_are_refused() {
    let k = Kube::new().await;
    let out = finish(k.spawn(&["apply", "-f", "https://example.com/web.yaml"])).await;
    assert_eq!(code(&out), 87, "{}", stderr(&out));
    assert!(stderr(&out).contains("remote"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_shows_the_objects_and_removes_them_when_approved() {
    let k = Kube::new().await;
    k.file("web.yaml", &deployment(1));
    k.direct(&["apply", "-f", "web.yaml"]);
    let mut child = k.spawn(&["delete", "deploy", "web"]);
    let req = k.pending(&mut child).await;
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(text.contains("deployment.apps/web"), "{text}");
    assert!(text.contains("Summary: +0 ~0 -1"), "{text}");
    // The live object's key fields go with it, read from the cluster, not from the agent.
    let r = &req["diff"]["summary"]["resources"][0];
    assert_eq!(
        (&r["address"], &r["action"]),
        (&json!("deployment.apps/web"), &json!("delete")),
        "{r}"
    );
    let fields: Vec<(&str, &str)> = r["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["path"].as_str().unwrap(), a["before"].as_str().unwrap()))
        .collect();
    for want in [
        ("spec.replicas", "1"),
        (
            "spec.template.spec.containers[web].image",
            r#""nginx:1.25""#,
        ),
    ] {
        assert!(fields.contains(&want), "{want:?} not in {fields:?}");
    }
    assert!(k.web("prod").is_some(), "still there before the approval");
    k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(k.web("prod").is_none(), "deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_shows_replicas_before_and_after() {
    let k = Kube::new().await;
    k.file("web.yaml", &deployment(1));
    k.direct(&["apply", "-f", "web.yaml"]);
    let mut child = k.spawn(&["scale", "deploy", "web", "--replicas=3"]);
    let req = k.pending(&mut child).await;
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(text.contains("spec.replicas: 1 -> 3"), "{text}");
    assert_eq!(k.replicas("prod"), Some(1), "the dry run stored nothing");
    k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(k.replicas("prod"), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_never_reach_the_server() {
    let k = Kube::new().await;
    let secret = |version: u32, pw: &str, token: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  annotations:\n    version: \"{version}\"\ndata:\n  password: {}\nstringData:\n  token: {token}\n",
            crate::support::kube::b64(pw.as_bytes())
        )
    };
    // An existing Secret applied client-side: its last-applied annotation holds the values, and
    // the changed annotation next to it pulls it into the diff's context lines.
    k.file("s.yaml", &secret(1, "hunter2", "old-plain-token"));
    k.direct(&["apply", "-f", "s.yaml"]);
    k.file("s.yaml", &secret(2, "swordfish", "new-plain-token"));
    let mut child = k.spawn(&["apply", "-f", "s.yaml"]);
    let req = k.pending(&mut child).await;
    k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Neither the request nor any audit row holds a value, in clear or base64.
    let audit = serde_json::to_string(&k.audit().await).unwrap();
    let (_, all) = k
        .approver()
        .request("GET", "/api/v1/requests?state=all", None)
        .await;
    let stored = all.to_string();
    for needle in ["hunter2", "swordfish", "old-plain-token", "new-plain-token"] {
        for hay in [&audit, &stored] {
            assert!(!hay.contains(needle), "{needle} leaked: {hay}");
            let b = crate::support::kube::b64(needle.as_bytes());
            assert!(
                !hay.contains(b.trim_end_matches('=')),
                "{needle} (base64) leaked"
            );
        }
    }
    assert!(
        stored.contains(hitl_gate::diff::kube::MASKED),
        "the values are shown masked: {stored}"
    );
    // Its delete shows the key names, never a value.
    let mut child = k.spawn(&["delete", "secret", "creds"]);
    let req = k.pending(&mut child).await;
    let shown = req.to_string();
    assert!(
        shown.contains("password") && shown.contains("token"),
        "{shown}"
    );
    for needle in ["swordfish", "new-plain-token"] {
        assert!(!shown.contains(needle), "{needle} leaked: {shown}");
        let b = crate::support::kube::b64(needle.as_bytes());
        assert!(
            !shown.contains(b.trim_end_matches('=')),
            "{needle} (base64) leaked"
        );
    }
    k.decide(req["id"].as_str().unwrap(), "reject", "no").await;
    finish(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_follows_context_flags_kubeconfig_merges_and_pins_the_run() {
    let k = Kube::new().await;
    k.file("web.yaml", &deployment(1));
    // --context picks dev (and its namespace) over the current-context.
    let mut child = k.spawn(&["--context", "dev", "apply", "-f", "web.yaml"]);
    let req = k.pending(&mut child).await;
    assert_eq!(req["environment"]["kube_context"], "dev");
    assert_eq!(req["environment"]["namespace"], "dev");
    k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    assert_eq!(code(&finish(child).await), 0);
    assert_eq!(k.replicas("dev"), Some(1));

    // A multi-file KUBECONFIG: the first file that sets current-context wins (dev here).
    let first = k.file(
        "current-dev.yaml",
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\n",
    );
    let merged = format!("{}:{}", first.display(), k.kubeconfig.display());
    let mut child = k.spawn_stdin(
        &["-n", "other", "apply", "-f", "web.yaml"],
        &[("KUBECONFIG", &merged)],
        Stdio::null(),
    );
    let req = k.pending(&mut child).await;
    assert_eq!(req["environment"]["kube_context"], "dev");
    assert_eq!(
        req["environment"]["namespace"], "other",
        "-n wins over the context's"
    );
    k.decide(req["id"].as_str().unwrap(), "reject", "no").await;
    assert_eq!(code(&finish(child).await), 80);

    // The current-context switches between approval and run: refused, nothing applied.
    let mut child = k.spawn(&["apply", "-f", "web.yaml"]);
    let req = k.pending(&mut child).await;
    assert_eq!(req["environment"]["kube_context"], "prod");
    let text = std::fs::read_to_string(&k.kubeconfig).unwrap();
    let switched = text.replace("current-context: prod", "current-context: dev");
    assert_ne!(text, switched, "the kubeconfig names prod as current");
    std::fs::write(&k.kubeconfig, switched).unwrap();
    k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 88, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the kube context changed from prod to dev"),
        "{}",
        stderr(&out)
    );
    assert!(k.web("prod").is_none());
}

/// Reader cases from the classification table, now through the real gated path: each is
/// submitted with its argv exactly as typed, shown with its target, and rejected (exit 80,
/// nothing changes). The last column is a piece of text the approver must see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_corpus_goes_through_the_gated_path() {
    let k = Kube::new().await;
    k.file("web.yaml", &deployment(1));
    k.direct(&["apply", "-f", "web.yaml"]);
    k.file("web2.yaml", &deployment(2));
    let kc = k.kubeconfig.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--context", "prod", "delete", "deploy", "web"],
            "deployment.apps/web",
        ),
        (
            vec!["--context=prod", "delete", "deploy", "web"],
            "deployment.apps/web",
        ),
        (
            vec!["delete", "deploy", "web", "--context", "prod"],
            "deployment.apps/web",
        ),
        (
            vec!["-n", "prod", "delete", "deployment/web"],
            "deployment.apps/web",
        ),
        (
            vec!["-nprod", "delete", "deploy", "web"],
            "deployment.apps/web",
        ),
        (
            vec!["delete", "-n=prod", "deploy", "web"],
            "deployment.apps/web",
        ),
        (
            vec![
                "--namespace",
                "prod",
                "delete",
                "deploy",
                "web",
                "--wait=false",
            ],
            "deployment.apps/web",
        ),
        (
            vec!["--kubeconfig", &kc, "delete", "deploy", "web"],
            "deployment.apps/web",
        ),
        (
            vec!["-v=6", "delete", "deploy", "web"],
            "deployment.apps/web",
        ),
        (vec!["delete", "-f", "web.yaml"], "deployment.apps/web"),
        (vec!["apply", "-f", "web2.yaml"], "+  replicas: 2"),
        (vec!["apply", "--filename=web2.yaml"], "+  replicas: 2"),
        (
            vec![
                "-n",
                "prod",
                "apply",
                "--filename",
                "web2.yaml",
                "--server-side",
            ],
            "replicas",
        ),
        (vec!["replace", "-f", "web2.yaml"], "+  replicas: 2"),
        (
            vec!["scale", "--replicas=4", "deploy", "web"],
            "spec.replicas: 1 -> 4",
        ),
        (
            vec!["scale", "deploy/web", "--replicas", "5"],
            "spec.replicas: 1 -> 5",
        ),
        (
            vec!["label", "deploy", "web", "tier=front"],
            "metadata.labels.tier: (none) -> \"front\"",
        ),
        (
            vec!["annotate", "deploy", "web", "owner=alice"],
            "metadata.annotations.owner: (none) -> \"alice\"",
        ),
        (
            vec![
                "patch",
                "deploy",
                "web",
                "--type=merge",
                "-p",
                r#"{"spec":{"replicas":6}}"#,
            ],
            "spec.replicas: 1 -> 6",
        ),
        (
            vec!["set", "image", "deploy/web", "web=nginx:1.26"],
            "nginx:1.26",
        ),
        (
            vec!["rollout", "restart", "deploy", "web"],
            "no diff is possible",
        ),
        (vec!["cordon", "node-1"], "no diff is possible"),
        (
            vec!["exec", "web-pod", "--", "rm", "-rf", "/data"],
            "no diff is possible",
        ),
        (
            vec!["create", "configmap", "conf", "--from-literal=a=b"],
            "ConfigMap prod/conf (create)",
        ),
    ];
    assert!(cases.len() >= 20);
    for (args, needle) in &cases {
        let mut child = k.spawn(args);
        let req = k.pending(&mut child).await;
        let argv: Vec<&str> = req["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(&argv, args, "the argv is recorded exactly as typed");
        assert_eq!(req["classification"]["verdict"], "gate", "{args:?}");
        assert_eq!(req["environment"]["kube_context"], "prod", "{args:?}");
        let text = req["diff"]["text"].as_str().unwrap();
        assert!(text.contains(needle), "{args:?}: want {needle:?} in {text}");
        k.decide(req["id"].as_str().unwrap(), "reject", "corpus")
            .await;
        let out = finish(child).await;
        assert_eq!(code(&out), 80, "{args:?}: {}", stderr(&out));
    }
    // Nothing of it ran.
    assert_eq!(k.replicas("prod"), Some(1));
    let web = k.web("prod").unwrap();
    assert!(web["metadata"]["labels"].get("tier").is_none(), "{web}");
    assert!(k.fake.get("v1", "configmaps", "prod", "conf").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_external_diff_cannot_make_the_shown_diff_lie() {
    let k = Kube::new().await;
    k.file("web.yaml", &deployment(7));
    // An agent-set external diff that would show nothing at all.
    let mut child = k.spawn_stdin(
        &["apply", "-f", "web.yaml"],
        &[("KUBECTL_EXTERNAL_DIFF", "true")],
        Stdio::null(),
    );
    let req = k.pending(&mut child).await;
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(text.contains("+  replicas: 7"), "{text}");
    k.decide(req["id"].as_str().unwrap(), "reject", "no").await;
    assert_eq!(code(&finish(child).await), 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_token_is_refused_and_the_shim_names_its_token_file() {
    let k = Kube::new().await;
    k.file("web.yaml", &deployment(1));
    k.direct(&["apply", "-f", "web.yaml"]);
    let token = k.sb.path().join("agent.token");
    std::fs::write(&token, "a-token-nobody-registered").unwrap();
    let out = finish(k.spawn(&["delete", "deploy", "web"])).await;
    let err = stderr(&out);
    assert_ne!(code(&out), 0, "{err}");
    assert!(
        err.contains(&format!(
            "answered 401 Unauthorized: the server does not know the agent token in {}",
            token.display()
        )),
        "{err}"
    );
    assert!(!err.contains("a-token-nobody-registered"), "{err}");
    assert!(k.web("prod").is_some(), "nothing ran");
}
