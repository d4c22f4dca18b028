//! Gated helm, end to end: the built binary under the name `helm`, the pinned real helm 4.1.4
//! and 3.17.2 (with the pinned kubectl resolving the kube target) talking to the test-only fake
//! Kubernetes API, and a real approval server. What ran is read back from the fake's store
//! (helm keeps each release revision there as a Secret).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::support::gate::{finish, KubeGated};
use crate::support::{code, stderr, tools};

/// The kube gate world with helm and a tiny chart.
struct Helm {
    k: KubeGated,
    chart: PathBuf,
}

impl std::ops::Deref for Helm {
    type Target = KubeGated;
    fn deref(&self) -> &KubeGated {
        &self.k
    }
}

impl Helm {
    /// A world with `helm`, kubectl, contexts `prod` (current) and `dev`, and a tiny chart whose
    /// Deployment `<release>-web` takes its replicas from the values.
    async fn new(helm: &Path) -> Helm {
        let k = KubeGated::new().await;
        k.sb.add_real("helm", helm);
        let chart = k.sb.work.join("chart");
        let h = Helm { k, chart };
        h.template("nginx:1.27");
        h
    }

    /// (Re)writes the chart with `image` in its Deployment.
    fn template(&self, image: &str) {
        crate::support::kube::write_chart(&self.chart, image);
    }

    fn spawn(&self, args: &[&str]) -> Child {
        let kc = self.kubeconfig.display().to_string();
        self.spawn_with(
            "helm",
            &self.sb.work,
            args,
            &[("KUBECONFIG", &kc)],
            Stdio::null(),
        )
    }

    /// The real helm, directly.
    fn direct(&self, args: &[&str]) {
        let mut c = self.sb.direct("helm");
        c.args(args)
            .current_dir(&self.sb.work)
            .env("KUBECONFIG", &self.kubeconfig);
        let out = crate::support::run(&mut c);
        assert_eq!(code(&out), 0, "helm {args:?}: {}", stderr(&out));
    }

    /// The release revisions stored in namespace `ns` (helm's Secrets).
    fn revisions(&self, ns: &str) -> Vec<String> {
        self.fake
            .names("v1", "secrets", ns)
            .into_iter()
            .filter(|n| n.starts_with("sh.helm.release.v1.rel."))
            .collect()
    }

    fn replicas(&self, ns: &str) -> Option<u64> {
        self.fake
            .get("apps/v1", "deployments", ns, "rel-web")
            .and_then(|d| d["spec"]["replicas"].as_u64())
    }
}

fn both_helms() -> [PathBuf; 2] {
    [tools::helm4(), tools::helm3()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_shows_the_changed_value_and_only_an_approval_makes_a_revision() {
    for helm in both_helms() {
        let h = Helm::new(&helm).await;
        h.direct(&["install", "rel", "./chart"]);
        assert_eq!(h.revisions("prod").len(), 1, "{}", helm.display());

        // Rejected: no new revision.
        let mut child = h.spawn(&["upgrade", "rel", "./chart", "--set", "replicas=3"]);
        let req = h.pending(&mut child).await;
        let text = req["diff"]["text"].as_str().unwrap();
        assert!(text.contains("Deployment rel-web"), "{text}");
        assert!(
            text.contains("-  replicas: 1") && text.contains("+  replicas: 3"),
            "{text}"
        );
        assert!(
            text.contains("replicas: (none) -> 3"),
            "values diff: {text}"
        );
        assert_eq!(req["environment"]["kube_context"], "prod");
        // The rendered manifest and the sealed chart snapshot.
        assert_eq!(req["artifact_sha256"].as_array().unwrap().len(), 2);
        h.decide(req["id"].as_str().unwrap(), "reject", "not now")
            .await;
        let out = finish(child).await;
        assert_eq!(code(&out), 80, "{}", stderr(&out));
        assert_eq!(h.revisions("prod").len(), 1, "rejected: no new revision");
        assert_eq!(h.replicas("prod"), Some(1));

        // Approved: revision 2 with the new value.
        let mut child = h.spawn(&["upgrade", "rel", "./chart", "--set", "replicas=3"]);
        let req = h.pending(&mut child).await;
        h.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
        let out = finish(child).await;
        assert_eq!(code(&out), 0, "{}: {}", helm.display(), stderr(&out));
        assert_eq!(h.revisions("prod").len(), 2);
        assert_eq!(h.replicas("prod"), Some(3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_context_selects_the_target_and_installs_there() {
    let h = Helm::new(&tools::helm4()).await;
    let mut child = h.spawn(&[
        "--kube-context",
        "dev",
        "upgrade",
        "--install",
        "rel",
        "./chart",
    ]);
    let req = h.pending(&mut child).await;
    assert_eq!(req["environment"]["kube_context"], "dev");
    assert_eq!(req["environment"]["namespace"], "dev");
    assert!(
        req["diff"]["text"]
            .as_str()
            .unwrap()
            .contains("+ Deployment rel-web (create)"),
        "{}",
        req["diff"]["text"]
    );
    h.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(h.replicas("dev"), Some(1));
    assert!(h.revisions("prod").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_lists_the_removals_and_post_renderers_are_refused() {
    let h = Helm::new(&tools::helm3()).await;
    h.direct(&["install", "rel", "./chart"]);
    let out = finish(h.spawn(&["upgrade", "rel", "./chart", "--post-renderer", "/bin/cat"])).await;
    assert_eq!(code(&out), 87, "{}", stderr(&out));
    assert!(stderr(&out).contains("--post-renderer"), "{}", stderr(&out));
    let out = finish(h.spawn(&["install", "./chart", "--generate-name"])).await;
    assert_eq!(code(&out), 87, "{}", stderr(&out));
    assert!(stderr(&out).contains("--generate-name"), "{}", stderr(&out));

    let mut child = h.spawn(&["uninstall", "rel"]);
    let req = h.pending(&mut child).await;
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(
        text.contains("!!! Deployment rel-web will be deleted"),
        "{text}"
    );
    h.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(h.replicas("prod"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_shows_the_current_manifest_against_the_target_revision() {
    let h = Helm::new(&tools::helm4()).await;
    h.direct(&["install", "rel", "./chart"]);
    h.direct(&["upgrade", "rel", "./chart", "--set", "replicas=4"]);
    let mut child = h.spawn(&["rollback", "rel", "1"]);
    let req = h.pending(&mut child).await;
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(text.contains("Rollback to revision 1"), "{text}");
    assert!(
        text.contains("-  replicas: 4") && text.contains("+  replicas: 1"),
        "{text}"
    );
    h.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(h.replicas("prod"), Some(1));
}
