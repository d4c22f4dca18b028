//! `--raw` sends a raw HTTP request and ignores `--dry-run`: a rule's `--dry-run` condition
//! never matches a command with `--raw`, and the gated path refuses `--raw` (no helper can show
//! what a raw request does).

use crate::support::gate::{finish, KubeGated};
use crate::support::{code, stderr};

/// The example policy's rule that lets dry runs through.
const DRY_RUNS_PASS: &str = "[[rule]]\nname = \"dry-runs-pass\"\ntools = [\"kubectl\"]\nsubcommands = [\"apply\", \"create*\", \"delete\", \"patch\"]\nflags = { \"--dry-run\" = [\"client\", \"server\"] }\naction = \"pass\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_delete_with_dry_run_is_neither_passed_nor_run() {
    let k = KubeGated::with_policy("", DRY_RUNS_PASS).await;
    let web = super::act_before_approval::deployment("web", 1);
    std::fs::write(k.sb.work.join("web.yaml"), web).unwrap();
    let kc = k.kubeconfig.display().to_string();
    let mut seed = k.sb.direct("kubectl");
    seed.args(["apply", "-f", "web.yaml"])
        .current_dir(&k.sb.work)
        .env("KUBECONFIG", &kc);
    assert_eq!(code(&crate::support::run(&mut seed)), 0);
    for args in [
        &[
            "delete",
            "--raw",
            "/apis/apps/v1/namespaces/prod/deployments/web",
            "--dry-run=server",
        ][..],
        &[
            "delete",
            "--dry-run=client",
            "--raw=/apis/apps/v1/namespaces/prod/deployments/web",
        ],
        &[
            "--raw",
            "/apis/apps/v1/namespaces/prod/deployments/web",
            "delete",
            "--dry-run=server",
        ],
    ] {
        let child = k.spawn_with(
            "kubectl",
            &k.sb.work,
            args,
            &[("KUBECONFIG", &kc)],
            std::process::Stdio::null(),
        );
        let out = match k.pending_or_exit(child).await {
            Ok((req, child)) => {
                k.decide(req["id"].as_str().unwrap(), "approve", "see what happens")
                    .await;
                finish(child).await
            }
            Err(out) => out,
        };
        assert_eq!(code(&out), 87, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("--raw"), "{}", stderr(&out));
        assert!(
            k.fake
                .get("apps/v1", "deployments", "prod", "web")
                .is_some(),
            "{args:?} deleted web"
        );
    }
}
