//! Configuration the real tool reads behind the gate's back: kubectl's kuberc, a `diff` earlier
//! on PATH, `KUBECTL_EXTERNAL_DIFF`. Helpers and the approved run read none of it.

use crate::support::gate::{finish, KubeGated};
use crate::support::{code, stderr};

use super::act_before_approval::deployment;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kuberc_cannot_send_the_approved_apply_elsewhere() {
    let k = KubeGated::new().await;
    std::fs::write(k.sb.work.join("web.yaml"), deployment("web", 1)).unwrap();
    k.kubectl_direct(&["apply", "-f", "web.yaml"]);
    std::fs::write(k.sb.work.join("web.yaml"), deployment("web", 2)).unwrap();
    // kuberc defaults for `apply` that the approver never sees: another context.
    std::fs::create_dir_all(k.sb.home.join(".kube")).unwrap();
    std::fs::write(
        k.sb.home.join(".kube/kuberc"),
        "apiVersion: kubectl.config.k8s.io/v1beta1\nkind: Preference\ndefaults:\n- command: apply\n  options:\n  - name: context\n    default: dev\n",
    )
    .unwrap();
    let mut child = k.kubectl(&["apply", "-f", "web.yaml"]);
    let req = k.pending(&mut child).await;
    assert_eq!(req["environment"]["kube_context"], "prod");
    k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let replicas = |ns| {
        k.fake
            .get("apps/v1", "deployments", ns, "web")
            .and_then(|d| d["spec"]["replicas"].as_u64())
    };
    assert_eq!(
        replicas("prod"),
        Some(2),
        "the approved change landed in prod"
    );
    assert_eq!(replicas("dev"), None, "nothing went to dev");

    // --kuberc on the gated path is refused.
    let out = finish(k.kubectl(&["--kuberc", "/dev/null", "delete", "deploy", "web"])).await;
    assert_eq!(code(&out), 87, "{}", stderr(&out));
    assert!(stderr(&out).contains("--kuberc"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diff_on_path_or_an_external_diff_cannot_blank_the_shown_change() {
    let k = KubeGated::new().await;
    std::fs::write(k.sb.work.join("web.yaml"), deployment("web", 1)).unwrap();
    k.kubectl_direct(&["apply", "-f", "web.yaml"]);
    std::fs::write(k.sb.work.join("web.yaml"), deployment("web", 6)).unwrap();
    let evil = k.sb.path().join("evil-bin");
    k.sb.script(&evil, "diff", "#!/bin/sh\nexit 0\n");
    let path = format!(
        "{}:{}:{}:/usr/bin:/bin",
        evil.display(),
        k.sb.shims.display(),
        k.sb.real.display()
    );
    for extra in [
        vec![("PATH", path.as_str())],
        vec![("PATH", path.as_str()), ("KUBECTL_EXTERNAL_DIFF", "true")],
        vec![("KUBECTL_EXTERNAL_DIFF", "/bin/true")],
    ] {
        let mut child = k.kubectl_with(&["apply", "-f", "web.yaml"], &extra);
        let req = k.pending(&mut child).await;
        let text = req["diff"]["text"].as_str().unwrap();
        assert!(text.contains("replicas: 1 -> 6"), "{extra:?}: {text}");
        k.decide(req["id"].as_str().unwrap(), "reject", "no").await;
        assert_eq!(code(&finish(child).await), 80);
    }
}
