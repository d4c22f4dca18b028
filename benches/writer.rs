//! Benchmark of what lockdown's writer adds to an approved run (a benchmark, not a test): run
//! with `cargo bench --bench writer`. Results and the exact command are in
//! docs/performance.md.
//!
//! - verify: the writer's whole check of a job (`runner::verify::verify`: the Ed25519 signature
//!   over the decision, the request's SHA-256, each sealed input read back and hashed, the run
//!   template against the approved argv), for a `kubectl apply` with one 256 KiB manifest;
//!   against, in the same run, its two unavoidable parts alone: the signature check and the
//!   SHA-256 of the input;
//! - target: the writer's check that its own write kubeconfig reaches the approved target
//!   (`shim::kube::resolve_with`: one run of the real kubectl), against `kubectl version
//!   --client` alone.

#[path = "../tests/support/mod.rs"]
mod support;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use hitl_gate::api::{CreateRequest, SignedDecision, State};
use hitl_gate::shim::sealed::Sealed;
use hitl_gate::signing;

/// The median of `n` timed runs of `f`.
fn median(n: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[n / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[allow(unsafe_code)]
fn dup(s: &Sealed) -> OwnedFd {
    // SAFETY: the snapshot's descriptor stays open for as long as `s` lives, which outlives the
    // borrow.
    unsafe { BorrowedFd::borrow_raw(s.raw_fd()) }
        .try_clone_to_owned()
        .unwrap()
}

fn verify_bench() {
    let dir = tempfile::tempdir().unwrap();
    let keys = signing::Keys::load_or_create(dir.path()).unwrap();
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  x: \"{}\"\n",
        "a".repeat(256 * 1024)
    );
    let input = Sealed::new("manifest", manifest.as_bytes()).unwrap();
    let hash = input.sha256().to_string();
    let request: CreateRequest = serde_json::from_value(serde_json::json!({
        "tool": "kubectl", "argv": ["apply", "-f", "big.yaml"], "cwd": "/w", "host": "h",
        "environment": {"kube_context": "prod", "cluster_server": "https://k:6443", "namespace": "prod", "exact": true},
        "diff": {"text": "shown", "summary": {"complete": true, "resources": []}},
        "artifact_sha256": [hash], "nonce": "n1",
        "run": {"argv": ["apply", "--filename=\u{0}input:0\u{0}", "--kubeconfig=\u{0}kubeconfig\u{0}", "--context=prod"], "inputs": [hash]},
    }))
    .unwrap();
    let mut decision = SignedDecision {
        request_id: "r1".into(),
        decision: State::Approved,
        approvers: vec!["local:root".into()],
        comment: None,
        argv_sha256: signing::argv_sha256("kubectl", &request.argv),
        artifact_sha256: request.artifact_sha256.clone(),
        environment_sha256: signing::environment_sha256(&request.environment),
        request_sha256: request.sha256(),
        nonce: "n1".into(),
        decided_at: 0,
        valid_until: i64::MAX,
        signature: String::new(),
    };
    decision.signature = keys.sign(&signing::decision_bytes(&decision));
    let public = keys.public_hex();
    let job = || hitl_gate::runner::wire::Job {
        version: 1,
        tool: "kubectl".into(),
        request_id: "r1".into(),
        request: request.clone(),
        decision: decision.clone(),
    };
    let n = 200;
    let whole = median(n, || {
        hitl_gate::runner::verify::verify(&public, job(), vec![dup(&input)], 1).unwrap();
    });
    let signature = median(n, || signing::verify_decision(&public, &decision).unwrap());
    let hashing = median(n, || {
        std::hint::black_box(hitl_gate::hex::sha256(manifest.as_bytes()));
    });
    let floor = signature + hashing;
    println!(
        "verify  the writer's check of a job (one 256 KiB input): median {:.3} ms",
        ms(whole)
    );
    println!(
        "        baseline, the signature check and the input's SHA-256 alone: {:.3} ms; ratio {:.2}",
        ms(floor),
        whole.as_secs_f64() / floor.as_secs_f64()
    );
}

fn target_bench() {
    let dir = tempfile::tempdir().unwrap();
    let kubectl = support::tools::kubectl();
    let kc = dir.path().join("kc");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://k:6443\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: prod\n  context: {cluster: c, user: u, namespace: prod}\ncurrent-context: prod\n",
    )
    .unwrap();
    let args: Vec<std::ffi::OsString> =
        ["delete", "deploy", "web"].iter().map(Into::into).collect();
    let inv = hitl_gate::argv::read(hitl_gate::tool::Tool::Kubectl, &args, &|_| None).unwrap();
    let n = 30;
    let resolve = median(n, || {
        hitl_gate::shim::kube::resolve_with(
            &kubectl,
            hitl_gate::tool::Tool::Kubectl,
            &inv,
            None,
            kc.to_str(),
        )
        .unwrap();
    });
    let bare = median(n, || {
        let o = std::process::Command::new(&kubectl)
            .args(["version", "--client"])
            .output()
            .unwrap();
        assert!(o.status.success());
    });
    println!(
        "target  the writer's check of its write kubeconfig: median {:.3} ms",
        ms(resolve)
    );
    println!(
        "        baseline, kubectl version --client alone: {:.3} ms; ratio {:.2}",
        ms(bare),
        resolve.as_secs_f64() / bare.as_secs_f64()
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let on = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if on("verify") {
        verify_bench();
    }
    if on("target") {
        target_bench();
    }
}
