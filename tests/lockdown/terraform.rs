//! Terraform in lockdown: providers that run programs and provisioners are refused; the
//! runner plans in a data directory of its own (never the agent's `.terraform/`), and the
//! writer applies the approved plan with providers from the mirror the policy names.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use super::{approve_and_finish, mode, out, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_in_lockdown_refuses_code_running_providers_and_provisioners() {
    let w = World::new().await;
    let dir = |name: &str, main_tf: &str| {
        let d = w.work.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("main.tf"), main_tf).unwrap();
        mode(&d, 0o777);
        d
    };
    let run = |d: &Path, args: &[&str]| {
        let mut c = w.agent("terraform", args);
        c.current_dir(d);
        out(c)
    };
    // A configuration whose lock file names hashicorp/external: refused before anything runs.
    let ext = dir(
        "external",
        "data \"external\" \"x\" {\n  program = [\"sh\", \"-c\", \"touch /tmp/pwned\"]\n}\n",
    );
    std::fs::write(
        ext.join(".terraform.lock.hcl"),
        "provider \"registry.terraform.io/hashicorp/external\" {\n  version = \"2.3.0\"\n}\n",
    )
    .unwrap();
    let o = run(&ext, &["plan"]);
    assert_eq!(o.status.code(), Some(87), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("hashicorp/external"),
        "{o:?}"
    );
    // -plugin-dir is the agent's way around the mirror: refused.
    let o = run(&ext, &["init", "-plugin-dir=/tmp"]);
    assert_eq!(o.status.code(), Some(87), "{o:?}");

    // A local-exec provisioner: init works (from the mirror), the gated apply is refused.
    let prov = dir(
        "provisioner",
        "resource \"null_resource\" \"a\" {\n  provisioner \"local-exec\" {\n    command = \"echo hi\"\n  }\n}\n",
    );
    let o = run(&prov, &["init", "-input=false"]);
    assert!(
        o.status.success(),
        "init: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&prov, &["apply", "-input=false"]);
    assert_eq!(o.status.code(), Some(87), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("local-exec"),
        "{o:?}"
    );

    // Without provisioners: planned by the runner into its private plan file, approved, applied.
    let ok = dir("plain", "resource \"null_resource\" \"a\" {}\n");
    let o = run(&ok, &["init", "-input=false"]);
    assert!(
        o.status.success(),
        "init: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut c = w.agent("terraform", &["apply", "-input=false"]);
    c.current_dir(&ok)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let o = approve_and_finish(&w, c.spawn().unwrap()).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 added"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The writer applied it, in the agent's directory (the state lands there), with a data
    // directory of its own whose providers come from the mirror the policy names.
    let state = std::fs::metadata(ok.join("terraform.tfstate")).unwrap();
    assert_eq!(
        state.uid(),
        w.w,
        "the writer wrote the state: it ran the apply"
    );
    let wdata = w
        .writer_home
        .join(".hitl-gate/tfdata")
        .join(hitl_gate::hex::sha256(
            ok.canonicalize().unwrap().as_os_str().as_encoded_bytes(),
        ));
    let meta = std::fs::metadata(&wdata).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (w.w, 0o700)
    );
    assert_eq!(
        std::fs::read_link(wdata.join("providers")).unwrap(),
        crate::support::tools::provider_dir()
    );

    // terraform's data directory (installed providers) is the runner's own, 0700, not the
    // agent-writable `.terraform/`, where the agent could plant a provider binary.
    assert!(!ok.join(".terraform").exists());
    let data = w
        .runner_home
        .join(".hitl-gate/tfdata")
        .join(hitl_gate::hex::sha256(
            ok.canonicalize().unwrap().as_os_str().as_encoded_bytes(),
        ));
    let meta = std::fs::metadata(&data).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (w.r, 0o700)
    );
    assert!(data
        .join("providers/registry.terraform.io/hashicorp/null")
        .is_dir());
    // A denied provider installed there (say, a lock file swapped after the check let init
    // install it) is refused before anything loads it.
    std::fs::create_dir_all(data.join("providers/registry.terraform.io/hashicorp/external/2.3.0"))
        .unwrap();
    let o = run(&ok, &["plan"]);
    assert_eq!(o.status.code(), Some(87), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("data directory") && err.contains("hashicorp/external"),
        "{err}"
    );
}
