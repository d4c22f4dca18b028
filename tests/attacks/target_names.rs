//! Environments matched on names the agent chooses. A rule that loosens the gate for an
//! environment matches only on what the command reaches (the API server kubectl resolves, with
//! every flag and `KUBECONFIG` applied); context names, namespaces, workspaces and directories
//! can only make the gate stricter.

use std::process::Stdio;

use crate::support::gate::{finish, KubeGated};
use crate::support::kube::FakeKube;
use crate::support::{code, stderr};

use super::act_before_approval::deployment;

/// Two clusters: `prod` (the world's fake API) and `dev` (a second fake API). The kubeconfig
/// has contexts prod and dev; `dev-looking` is named like dev but points at prod.
struct TwoClusters {
    k: KubeGated,
    dev: FakeKube,
    kubeconfig: std::path::PathBuf,
}

async fn two_clusters() -> TwoClusters {
    // The policy is written after the dev API exists (its URL is a selector).
    let dev = FakeKube::start().await;
    let agent = format!(
        "[[environment]]\nname = \"dev\"\nrisk = \"low\"\nkube_contexts = [\"dev*\"]\nkube_servers = [\"{}\"]\n\n[[rule]]\nname = \"dev-is-free\"\ntools = [\"kubectl\", \"helm\"]\nenvironments = [\"dev\"]\naction = \"pass\"\n",
        dev.url
    );
    let k = KubeGated::with_policy("", &agent).await;
    let prod_url = k.fake.url.clone();
    let kubeconfig = k.sb.path().join("two.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: {prod_url}\n- name: dev\n  cluster:\n    server: {}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: prod\n  context: {{cluster: prod, user: u, namespace: default}}\n- name: dev\n  context: {{cluster: dev, user: u, namespace: default}}\n- name: dev-looking\n  context: {{cluster: prod, user: u, namespace: default}}\ncurrent-context: prod\n",
            dev.url
        ),
    )
    .unwrap();
    for fake in [&k.fake, &dev] {
        fake.put(serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 1}}));
    }
    let _ = deployment;
    TwoClusters { k, dev, kubeconfig }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_name_pointing_at_production_is_gated() {
    let t = two_clusters().await;
    let k = &t.k;
    let kc = t.kubeconfig.display().to_string();
    let prod = k.fake.url.clone();
    let attacks: Vec<Vec<&str>> = vec![
        vec![
            "--context",
            "dev",
            "--server",
            &prod,
            "delete",
            "deploy",
            "web",
        ],
        vec!["--context=dev", "-s", &prod, "delete", "deploy", "web"],
        vec!["--context", "dev-looking", "delete", "deploy", "web"],
        vec![
            "--context",
            "dev",
            "--cluster",
            "prod",
            "delete",
            "deploy",
            "web",
        ],
        vec![
            "--context",
            "dev",
            "--insecure-skip-tls-verify",
            "delete",
            "deploy",
            "web",
        ],
    ];
    for args in attacks {
        let child = k.spawn_with(
            "kubectl",
            &k.sb.work,
            &args,
            &[("KUBECONFIG", &kc)],
            Stdio::null(),
        );
        match k.pending_or_exit(child).await {
            Ok((req, child)) => {
                assert_eq!(req["classification"]["verdict"], "gate", "{args:?}");
                k.decide(req["id"].as_str().unwrap(), "reject", "no").await;
                assert_eq!(code(&finish(child).await), 80, "{args:?}");
            }
            Err(out) => panic!(
                "{args:?} was not gated: exit {} {}",
                code(&out),
                stderr(&out)
            ),
        }
        assert!(
            k.fake
                .get("apps/v1", "deployments", "default", "web")
                .is_some(),
            "{args:?} deleted prod's web"
        );
    }
    // A kubeconfig whose `dev` context the agent edited to point at production.
    let edited = std::fs::read_to_string(&t.kubeconfig)
        .unwrap()
        .replace("{cluster: dev,", "{cluster: prod,");
    let edited_path = k.sb.path().join("edited.kubeconfig");
    std::fs::write(&edited_path, edited).unwrap();
    let ekc = edited_path.display().to_string();
    let child = k.spawn_with(
        "kubectl",
        &k.sb.work,
        &["--context", "dev", "delete", "deploy", "web"],
        &[("KUBECONFIG", &ekc)],
        Stdio::null(),
    );
    let (req, child) = k.pending_or_exit(child).await.expect("gated");
    k.decide(req["id"].as_str().unwrap(), "reject", "no").await;
    assert_eq!(code(&finish(child).await), 80);
    assert!(k
        .fake
        .get("apps/v1", "deployments", "default", "web")
        .is_some());

    // The real dev cluster still passes, without a request, and the delete reaches dev only.
    let out = finish(k.spawn_with(
        "kubectl",
        &k.sb.work,
        &["--context", "dev", "delete", "deploy", "web"],
        &[("KUBECONFIG", &kc)],
        Stdio::null(),
    ))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        t.dev
            .get("apps/v1", "deployments", "default", "web")
            .is_none(),
        "dev's web is gone"
    );
    assert!(
        k.fake
            .get("apps/v1", "deployments", "default", "web")
            .is_some(),
        "prod's web stays"
    );
}

#[test]
fn a_pass_rule_on_an_environment_without_a_resolved_selector_is_refused_at_load() {
    let e = hitl_gate::policy::load::parse(
        "version = 1\n[[environment]]\nname = \"dev\"\nrisk = \"low\"\nkube_contexts = [\"dev-*\"]\n[[rule]]\nname = \"dev-is-free\"\ntools = [\"kubectl\"]\nenvironments = [\"dev\"]\naction = \"pass\"\n",
    )
    .unwrap_err();
    assert!(
        e.contains("dev-is-free") && e.contains("kube_servers"),
        "{e}"
    );
    // The same environment in a rule that makes the gate stricter is fine.
    hitl_gate::policy::load::parse(
        "version = 1\n[[environment]]\nname = \"prod\"\nrisk = \"high\"\nkube_contexts = [\"prod-*\"]\n[[rule]]\nname = \"no-drain\"\ntools = [\"kubectl\"]\nsubcommands = [\"drain\"]\nenvironments = [\"prod\"]\naction = \"deny\"\n",
    )
    .unwrap();
}
