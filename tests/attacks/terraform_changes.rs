//! Terraform's "no changes" shortcut: a plan runs without a human only when it changes nothing
//! at all. Moves, imports, output changes, refresh-only plans and drift written to the state are
//! changes (the parser's own tests cover imports and drift, which the null provider cannot
//! produce). And a command on the read-only list never writes state: `init -migrate-state`
//! waits for a human.

use crate::support::gate::{finish, Gated};
use crate::support::{code, stderr, tools};

const PROVIDER: &str = "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\", version = \"2.1.2\" }\n  }\n}\n";

/// Applies `before` directly, then writes `after` and runs a gated `terraform apply`: it must
/// wait for a human (and shows `needle`), where the shortcut would have applied it at once.
async fn must_wait(terraform: &std::path::Path, before: &str, after: &str, needle: &str) {
    let g = Gated::new("", "").await;
    let dir = g.terraform_dir(terraform, "tf", &format!("{PROVIDER}{before}"));
    let out = g.terraform(&dir, &["apply", "-auto-approve", "-input=false"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    std::fs::write(dir.join("main.tf"), format!("{PROVIDER}{after}")).unwrap();
    let child = g.spawn_in("terraform", &dir, &["apply"], &[]);
    let (req, child) = match g.pending_or_exit(child).await {
        Ok(p) => p,
        Err(out) => panic!(
            "{}: ran without a human (exit {}): {}",
            terraform.display(),
            code(&out),
            stderr(&out)
        ),
    };
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(text.contains(needle), "{needle} not in {text}");
    g.decide(req["id"].as_str().unwrap(), "reject", "looked")
        .await;
    assert_eq!(code(&finish(child).await), 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_change_waits_for_a_human() {
    for tf in [tools::terraform_1_0(), tools::terraform_1_15()] {
        must_wait(
            &tf,
            "output \"o\" {\n  value = \"one\"\n}\n",
            "output \"o\" {\n  value = \"two\"\n}\n",
            "output.o",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_block_waits_for_a_human() {
    must_wait(
        &tools::terraform_1_15(),
        "resource \"null_resource\" \"a\" {}\n",
        "resource \"null_resource\" \"b\" {}\nmoved {\n  from = null_resource.a\n  to   = null_resource.b\n}\n",
        "moved from null_resource.a",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_with_nothing_to_do_still_runs_without_asking() {
    // The shortcut itself still works: same config, no change at all.
    let g = Gated::new("", "").await;
    let tf = "resource \"null_resource\" \"a\" {}\noutput \"o\" {\n  value = \"same\"\n}\n";
    let dir = g.terraform_dir(&tools::terraform_1_15(), "tf", &format!("{PROVIDER}{tf}"));
    assert_eq!(
        code(&g.terraform(&dir, &["apply", "-auto-approve", "-input=false"])),
        0
    );
    let out = finish(g.spawn_in("terraform", &dir, &["apply"], &[])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("no changes"), "{}", stderr(&out));
}

/// `terraform init -migrate-state -force-copy` copies this configuration's state over whatever
/// the new backend holds: another configuration's state, here. It was on the read-only list;
/// now it waits for a human, and the other state is untouched until one approves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_that_copies_state_over_another_waits_for_a_human() {
    let g = Gated::new("", "").await;
    let backend = |path: &str| {
        format!(
            "terraform {{\n  backend \"local\" {{\n    path = \"{path}\"\n  }}\n}}\n{PROVIDER}resource \"null_resource\" \"a\" {{}}\n"
        )
    };
    let dir = g.terraform_dir(&tools::terraform_1_0(), "tf", &backend("mine.tfstate"));
    let out = g.terraform(&dir, &["apply", "-auto-approve", "-input=false"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let theirs = dir.join("theirs.tfstate");
    std::fs::write(&theirs, "another configuration's state\n").unwrap();
    std::fs::write(dir.join("main.tf"), backend("theirs.tfstate")).unwrap();
    let plugins = format!(
        "-plugin-dir={}",
        crate::support::tools::provider_dir().display()
    );
    let args = [
        "init",
        "-migrate-state",
        "-force-copy",
        "-input=false",
        &plugins,
    ];
    let (req, child) = match g
        .pending_or_exit(g.spawn_in("terraform", &dir, &args, &[]))
        .await
    {
        Ok(p) => p,
        Err(out) => panic!(
            "ran without a human (exit {}): {}",
            code(&out),
            stderr(&out)
        ),
    };
    assert_eq!(
        req["classification"]["rule"], "builtin:terraform-state-copy",
        "{req}"
    );
    assert_eq!(
        std::fs::read_to_string(&theirs).unwrap(),
        "another configuration's state\n"
    );
    g.decide(req["id"].as_str().unwrap(), "reject", "not that state")
        .await;
    assert_eq!(code(&finish(child).await), 80);
    assert_eq!(
        std::fs::read_to_string(&theirs).unwrap(),
        "another configuration's state\n"
    );
}
