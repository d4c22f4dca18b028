//! The policy and the gated path agree on the terraform workspace: both honour `TF_DATA_DIR`,
//! so a rule chosen for one workspace cannot be passed while terraform works in another.

use crate::support::{code, run, stderr, stdout, Sandbox};

#[test]
fn a_workspace_rule_sees_the_workspace_terraform_will_use() {
    let sb = Sandbox::new();
    sb.fake_real("terraform");
    let policy = sb.policy(
        "ws.toml",
        "version = 1\n[[environment]]\nname = \"prod\"\nrisk = \"high\"\nterraform_workspaces = [\"prod\"]\n\n[[rule]]\nname = \"prod-plans-are-gated\"\ntools = [\"terraform\"]\nsubcommands = [\"plan\"]\nenvironments = [\"prod\"]\naction = \"gate\"\n",
    );
    std::fs::create_dir_all(sb.work.join(".terraform")).unwrap();
    std::fs::create_dir_all(sb.work.join("data")).unwrap();
    std::fs::write(sb.work.join(".terraform/environment"), "dev").unwrap();
    std::fs::write(sb.work.join("data/environment"), "prod").unwrap();
    let plan = |data_dir: Option<&str>| {
        let mut c = sb.shim("terraform");
        c.arg("plan").env("HITL_GATE_POLICY", &policy);
        if let Some(d) = data_dir {
            c.env("TF_DATA_DIR", d);
        }
        run(&mut c)
    };
    let out = plan(None);
    assert_eq!(code(&out), 0, "dev: passes: {}", stderr(&out));
    let out = plan(Some("data"));
    assert_eq!(
        code(&out),
        83,
        "prod through TF_DATA_DIR: gated: {}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("RAN"));
    assert!(
        stderr(&out).contains("prod-plans-are-gated"),
        "{}",
        stderr(&out)
    );
}
