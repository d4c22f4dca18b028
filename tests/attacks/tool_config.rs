//! Configuration the real tool reads behind the gate's back: kubectl's kuberc, a `diff` earlier
//! on PATH, `KUBECTL_EXTERNAL_DIFF`. Helpers and the approved run read none of it.

use crate::support::gate::{finish, KubeGated};
use crate::support::kube::{FakeKube, TOKEN};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_plugin_in_a_directory_the_agent_can_write_is_not_run() {
    // kubectl finds a kubeconfig's exec credential plugin on PATH. A program of the agent's
    // could answer the helpers one way and the approved run another, so kube children get a
    // PATH of root-owned directories nobody else can write; the plugin is found only there.
    // (kubectl runs exec plugins only for https servers, hence the https fake.)
    let k = KubeGated::new().await;
    let fake = FakeKube::start_tls(&k.sb.path().join("tls")).await;
    fake.put_deployment("prod", "web");
    let kubeconfig = std::fs::read_to_string(fake.kubeconfig(&k.sb.path().join("tls"), &[("prod", "prod")]))
        .unwrap()
        .replace(
            &format!("    token: {TOKEN}\n"),
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: hitl-test-cred\n      interactiveMode: Never\n",
        );
    let kc = k.sb.path().join("exec-kubeconfig");
    std::fs::write(&kc, kubeconfig).unwrap();
    let marker = k.sb.path().join("plugin-ran");
    let plugin = format!(
        "#!/bin/sh\necho ran >> {}\nprintf '%s' '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{TOKEN}\"}}}}'\n",
        marker.display(),
    );
    let dir = |name: &str, mode: u32| {
        let d = k.sb.path().join(name);
        k.sb.script(&d, "hitl-test-cred", &plugin);
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        d
    };
    let path = |d: &std::path::Path| {
        format!(
            "{}:{}:{}:/usr/bin:/bin",
            d.display(),
            k.sb.shims.display(),
            k.sb.real.display()
        )
    };
    let kc = kc.display().to_string();
    let all_requests = || async {
        k.approver()
            .request("GET", "/api/v1/requests?state=all", None)
            .await
            .1
    };

    // In a directory anyone can write: the helpers do not find it, nothing is submitted.
    let open = dir("open-bin", 0o777);
    let child = k.kubectl_with(
        &["delete", "deploy", "web"],
        &[("KUBECONFIG", &kc), ("PATH", &path(&open))],
    );
    let out = match k.pending_or_exit(child).await {
        Err(out) => out,
        Ok((req, _)) => panic!("submitted with the agent's plugin: {req}"),
    };
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("hitl-test-cred"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{}", open.display())),
        "the message names the directory left out: {}",
        stderr(&out)
    );
    assert!(!marker.exists(), "the agent-writable plugin ran");
    assert_eq!(
        all_requests().await,
        serde_json::json!([]),
        "a request was submitted"
    );

    // The same plugin in a root-owned directory nobody else can write: found, and it waits.
    let trusted = dir("trusted-bin", 0o755);
    let mut child = k.kubectl_with(
        &["delete", "deploy", "web"],
        &[("KUBECONFIG", &kc), ("PATH", &path(&trusted))],
    );
    let req = k.pending(&mut child).await;
    assert!(marker.exists(), "the trusted plugin did not run");
    assert!(
        req["diff"]["text"].as_str().unwrap().contains("web"),
        "{req}"
    );
    k.decide(req["id"].as_str().unwrap(), "reject", "no").await;
    assert_eq!(code(&finish(child).await), 80);
    assert!(
        fake.get("apps/v1", "deployments", "prod", "web").is_some(),
        "nothing was deleted"
    );
}
