//! The shim's own lines start at column 0 with `hitl-gate:`, so an agent that looks for
//! `^hitl-gate:` finds them, even right after terraform's coloured plan.

use crate::support::gate::{finish, Gated};
use crate::support::{code, stderr, tools};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gate_line_starts_a_line_after_coloured_output() {
    let g = Gated::new("", "").await;
    let dir = g.terraform_dir(
        &tools::terraform_1_0(),
        "tf",
        "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\", version = \"2.1.2\" }\n  }\n}\nresource \"null_resource\" \"a\" {}\n",
    );
    // Colour on (the harness sets TF_IN_AUTOMATION, which does not turn it off).
    let mut child = g.spawn_in("terraform", &dir, &["apply"], &[]);
    let req = g.pending(&mut child).await;
    g.decide(req["id"].as_str().unwrap(), "reject", "not today")
        .await;
    let out = finish(child).await;
    assert_eq!(code(&out), 80);
    let err = stderr(&out);
    assert!(err.contains('\x1b'), "the plan was coloured: {err}");
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("hitl-gate:")).collect();
    assert!(ours.len() >= 3, "{err}");
    for l in ours {
        assert!(l.starts_with("hitl-gate:"), "not at column 0: {l:?}");
    }
}
