//! The pinned real tools, fetched by `scripts/fetch-test-tools` into `target/test-tools/`.
//! A missing tool is a test failure that names the fix, never a skip.

use std::path::PathBuf;

/// `target/test-tools`, or `HITL_TEST_TOOLS_DIR` when set (the fetch script honours it too).
pub fn dir() -> PathBuf {
    std::env::var_os("HITL_TEST_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-tools"))
}

fn need(rel: &str) -> PathBuf {
    let p = dir().join(rel);
    assert!(
        p.is_file(),
        "pinned test tool {} is missing: run scripts/fetch-test-tools (scripts/test does it)",
        p.display()
    );
    p
}

pub fn terraform_1_0() -> PathBuf {
    need("bin/terraform-1.0.3")
}

pub fn terraform_1_15() -> PathBuf {
    need("bin/terraform-1.15.5")
}

pub fn kubectl() -> PathBuf {
    need("bin/kubectl-1.35.2")
}

pub fn helm4() -> PathBuf {
    need("bin/helm-4.1.4")
}

pub fn helm3() -> PathBuf {
    need("bin/helm-3.17.2")
}

/// The provider mirror for `terraform init -plugin-dir`.
pub fn provider_dir() -> PathBuf {
    need("providers/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4");
    dir().join("providers")
}
