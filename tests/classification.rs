//! Table-driven classification: argv → verdict, observed end to end through the shim (the real
//! tool is a fake that prints `RAN`, so "pass" means it really ran and "gate"/"deny" mean it
//! really did not). Cases cover flags before and after the subcommand, `=` forms, short
//! clusters, `--`, plugins, odd spacing, and the kubesafe bypass `kubectl --context prod
//! delete`.

use std::path::Path;

use crate::support::{run, stderr, stdout, Sandbox};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Ran the real tool (exit 0, `RAN` printed).
    P,
    /// Gated: approval unavailable (83), did not run.
    G,
    /// Denied by policy (84), did not run.
    D,
    /// Refused: argv unreadable (87), did not run.
    R,
}
use Want::*;

/// Splits a case line into argv: whitespace separates, '...' groups (and '' is an empty arg).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// A case: tool, argv line, extra environment ("K=V" pairs separated by `;`), expectation.
type Case = (&'static str, &'static str, &'static str, Want);

fn check(sb: &Sandbox, policy: Option<&Path>, cases: &[Case]) {
    let mut failures = Vec::new();
    for &(tool, line, env, want) in cases {
        let mut cmd = sb.shim(tool);
        cmd.args(words(line));
        if let Some(p) = policy {
            cmd.env("HITL_GATE_POLICY", p);
        }
        for kv in env.split(';').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap();
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        let got = match out.status.code() {
            Some(0) if stdout(&out).starts_with("RAN ") => Some(P),
            Some(83) => Some(G),
            Some(84) => Some(D),
            Some(87) => Some(R),
            _ => None,
        };
        if got != Some(want) {
            failures.push(format!(
                "{tool} {line:?} [{env}]: want {want:?}, got {got:?} (exit {:?}) stderr: {}",
                out.status.code(),
                stderr(&out).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    for t in ["terraform", "tofu", "kubectl", "helm"] {
        sb.fake_real(t);
    }
    sb
}

const KUBECTL: &[Case] = &[
    ("kubectl", "", "", P),
    ("kubectl", "get pods", "", P),
    ("kubectl", "get", "", P),
    ("kubectl", "get pods -n kube-system", "", P),
    ("kubectl", "-n kube-system get pods", "", P),
    ("kubectl", "--namespace=prod get pods", "", P),
    ("kubectl", "--namespace prod get pods", "", P),
    ("kubectl", "-nprod get pods", "", P),
    ("kubectl", "-n=prod get pods", "", P),
    ("kubectl", "--context prod delete deploy web", "", G),
    ("kubectl", "--context=prod delete deploy web", "", G),
    ("kubectl", "delete --context prod deploy web", "", G),
    ("kubectl", "delete deploy web --context prod", "", G),
    ("kubectl", "--context prod -n web delete deploy api", "", G),
    ("kubectl", "-n delete get pods", "", P),
    ("kubectl", "--context delete get pods", "", P),
    ("kubectl", "--context get delete pods", "", G),
    ("kubectl", "get -- delete", "", P),
    ("kubectl", "-- delete pod x", "", P),
    ("kubectl", "--kubeconfig /tmp/k get pods", "", P),
    ("kubectl", "--kubeconfig=/tmp/k delete pods x", "", G),
    ("kubectl", "--request-timeout 5s get pods", "", P),
    ("kubectl", "-v 9 get pods", "", P),
    ("kubectl", "-v=9 get pods", "", P),
    ("kubectl", "--v 9 delete pod x", "", G),
    ("kubectl", "--insecure-skip-tls-verify get pods", "", P),
    ("kubectl", "--insecure-skip-tls-verify delete pod x", "", G),
    ("kubectl", "--as admin delete pod x", "", G),
    ("kubectl", "--as admin get pods", "", P),
    ("kubectl", "--as-group system:masters get pods", "", P),
    ("kubectl", "--as-uid 1 get pods", "", P),
    ("kubectl", "--token abc get pods", "", P),
    ("kubectl", "-s https://x get pods", "", P),
    ("kubectl", "--server https://x delete pods x", "", G),
    ("kubectl", "--cluster c --user u get pods", "", P),
    ("kubectl", "--cache-dir /tmp get pods", "", P),
    (
        "kubectl",
        "--certificate-authority /ca --client-certificate /c --client-key /k get pods",
        "",
        P,
    ),
    ("kubectl", "--tls-server-name x get pods", "", P),
    (
        "kubectl",
        "--profile cpu --profile-output /tmp/p get pods",
        "",
        P,
    ),
    ("kubectl", "--match-server-version get pods", "", P),
    ("kubectl", "--warnings-as-errors get pods", "", P),
    ("kubectl", "--unknown-flag get pods", "", G),
    ("kubectl", "--unknown-flag=1 get pods", "", G),
    ("kubectl", "-X get pods", "", G),
    ("kubectl", "get pods --unknown-flag", "", P),
    ("kubectl", "apply -f x.yaml", "", G),
    ("kubectl", "apply -f -", "", G),
    ("kubectl", "apply -k dir", "", G),
    ("kubectl", "apply --filename=x.yaml", "", G),
    ("kubectl", "apply -Rf dir", "", G),
    ("kubectl", "apply view-last-applied deploy/x", "", P),
    ("kubectl", "apply edit-last-applied deploy/x", "", G),
    ("kubectl", "apply set-last-applied -f x", "", G),
    ("kubectl", "apply --server-side -f x", "", G),
    ("kubectl", "create deployment web --image=nginx", "", G),
    ("kubectl", "create -f x", "", G),
    (
        "kubectl",
        "create secret generic s --from-literal=a=b",
        "",
        G,
    ),
    ("kubectl", "replace -f x", "", G),
    ("kubectl", "replace --force -f x", "", G),
    ("kubectl", "patch deploy x -p '{}'", "", G),
    (
        "kubectl",
        "patch deploy x --type merge -p '{\"a\":1}'",
        "",
        G,
    ),
    ("kubectl", "edit deploy x", "", G),
    ("kubectl", "scale deploy x --replicas=3", "", G),
    ("kubectl", "scale --replicas 3 deploy x", "", G),
    ("kubectl", "autoscale deploy x --max=3", "", G),
    ("kubectl", "rollout restart deploy/x", "", G),
    ("kubectl", "rollout undo deploy/x", "", G),
    ("kubectl", "rollout pause deploy/x", "", G),
    ("kubectl", "rollout resume deploy/x", "", G),
    ("kubectl", "rollout status deploy/x", "", P),
    ("kubectl", "rollout history deploy/x", "", P),
    ("kubectl", "rollout -n prod restart deploy/x", "", G),
    ("kubectl", "rollout --context prod status deploy/x", "", P),
    (
        "kubectl",
        "-n prod rollout --context=x restart deploy/x",
        "",
        G,
    ),
    ("kubectl", "rollout", "", P),
    ("kubectl", "set image deploy/x c=nginx", "", G),
    ("kubectl", "set env deploy/x A=1", "", G),
    ("kubectl", "label pod x a=b", "", G),
    ("kubectl", "label --overwrite pod x a=b", "", G),
    ("kubectl", "annotate pod x a=b", "", G),
    ("kubectl", "taint node n k=v:NoSchedule", "", G),
    ("kubectl", "drain node1", "", G),
    ("kubectl", "drain --ignore-daemonsets node1", "", G),
    ("kubectl", "cordon node1", "", G),
    ("kubectl", "uncordon node1", "", G),
    ("kubectl", "expose deploy x --port 80", "", G),
    ("kubectl", "run nginx --image nginx", "", G),
    ("kubectl", "exec -it pod -- sh", "", G),
    ("kubectl", "exec pod -c c -- ls", "", G),
    ("kubectl", "cp a pod:/b", "", G),
    ("kubectl", "attach pod", "", G),
    ("kubectl", "port-forward pod 8080:80", "", G),
    ("kubectl", "debug pod -it --image busybox", "", G),
    ("kubectl", "certificate approve csr", "", G),
    ("kubectl", "certificate deny csr", "", G),
    ("kubectl", "proxy", "", G),
    ("kubectl", "auth reconcile -f x", "", G),
    ("kubectl", "auth can-i delete pods", "", P),
    ("kubectl", "auth whoami", "", P),
    ("kubectl", "config view", "", P),
    ("kubectl", "config use-context prod", "", P),
    ("kubectl", "config get-contexts", "", P),
    ("kubectl", "config current-context", "", P),
    (
        "kubectl",
        "config set-context --current --namespace=x",
        "",
        P,
    ),
    ("kubectl", "version", "", P),
    ("kubectl", "version --client", "", P),
    ("kubectl", "--context prod version", "", P),
    ("kubectl", "help", "", P),
    ("kubectl", "help delete", "", P),
    ("kubectl", "api-resources", "", P),
    ("kubectl", "api-versions", "", P),
    ("kubectl", "cluster-info", "", P),
    ("kubectl", "cluster-info dump", "", P),
    ("kubectl", "describe pod x", "", P),
    ("kubectl", "diff -f x", "", P),
    ("kubectl", "events", "", P),
    ("kubectl", "explain pods", "", P),
    ("kubectl", "logs pod -f", "", P),
    ("kubectl", "logs -f pod", "", P),
    ("kubectl", "logs -p pod", "", P),
    ("kubectl", "logs pod -c main", "", P),
    ("kubectl", "top pod", "", P),
    ("kubectl", "top node", "", P),
    ("kubectl", "wait --for=condition=Ready pod/x", "", P),
    ("kubectl", "kustomize dir", "", P),
    ("kubectl", "completion bash", "", P),
    ("kubectl", "options", "", P),
    ("kubectl", "plugin list", "", P),
    ("kubectl", "get pods -owide", "", P),
    ("kubectl", "get pods -o=wide", "", P),
    ("kubectl", "get -Aowide pods", "", P),
    ("kubectl", "get pods -lapp=x", "", P),
    ("kubectl", "delete -Rf dir", "", G),
    ("kubectl", "delete pod 'x y'", "", G),
    ("kubectl", "get 'pods '", "", P),
    ("kubectl", "'get' pods", "", P),
    ("kubectl", "' get' pods", "", G),
    ("kubectl", "'' get pods", "", G),
    ("kubectl", "delete", "", G),
    ("kubectl", "--context prod", "", P),
    ("kubectl", "foo", "", G),
    ("kubectl", "foo bar", "", G),
    ("kubectl", "ctx prod", "", G),
    ("kubectl", "ns kube-system", "", G),
    ("kubectl", "neat get pods", "", G),
    ("kubectl", "Delete pod x", "", G),
    ("kubectl", "--namespace", "", R),
    ("kubectl", "get pods -n", "", R),
    ("kubectl", "--context", "", R),
];

const TERRAFORM: &[Case] = &[
    ("terraform", "", "", P),
    ("terraform", "version", "", P),
    ("terraform", "-version", "", P),
    ("terraform", "-v", "", P),
    ("terraform", "--version", "", P),
    ("terraform", "-help", "", P),
    ("terraform", "init", "", P),
    ("terraform", "init -input=false -plugin-dir /x", "", P),
    // Copying state over another backend's state writes state: gated.
    ("terraform", "init -migrate-state", "", G),
    ("terraform", "init -migrate-state -force-copy", "", G),
    ("terraform", "init --migrate-state -input=false", "", G),
    ("terraform", "init -force-copy", "", G),
    ("terraform", "init -migrate-state=false", "", P),
    ("terraform", "workspace new -state=old.tfstate x", "", G),
    ("terraform", "env new -state=old.tfstate x", "", G),
    ("terraform", "plan", "", P),
    ("terraform", "plan -out=tfplan", "", P),
    ("terraform", "plan -out tfplan", "", P),
    ("terraform", "plan -var 'a=b'", "", P),
    ("terraform", "plan -destroy", "", P),
    ("terraform", "validate", "", P),
    ("terraform", "fmt -check", "", P),
    ("terraform", "fmt -", "", P),
    ("terraform", "show", "", P),
    ("terraform", "show -json tfplan", "", P),
    ("terraform", "output", "", P),
    ("terraform", "output -json", "", P),
    ("terraform", "graph", "", P),
    ("terraform", "providers", "", P),
    ("terraform", "providers schema -json", "", P),
    ("terraform", "providers lock", "", P),
    ("terraform", "get", "", P),
    ("terraform", "console", "", P),
    ("terraform", "state list", "", P),
    ("terraform", "state show null_resource.x", "", P),
    ("terraform", "state pull", "", P),
    ("terraform", "state", "", P),
    ("terraform", "state -lock=false rm x", "", P),
    ("terraform", "workspace list", "", P),
    ("terraform", "workspace show", "", P),
    ("terraform", "workspace select prod", "", P),
    ("terraform", "workspace new x", "", P),
    ("terraform", "login", "", P),
    ("terraform", "metadata functions -json", "", P),
    ("terraform", "-chdir=infra plan", "", P),
    ("terraform", "-chdir=infra", "", P),
    ("terraform", "-- apply", "", P),
    ("terraform", "apply", "", G),
    ("terraform", "apply -auto-approve", "", G),
    ("terraform", "apply tfplan", "", G),
    ("terraform", "apply -var a=b -auto-approve", "", G),
    ("terraform", "apply -- x", "", G),
    ("terraform", "-chdir=infra apply", "", G),
    ("terraform", "-chdir=a -chdir=b apply", "", G),
    ("terraform", "destroy", "", G),
    ("terraform", "destroy -auto-approve", "", G),
    ("terraform", "import a.b id", "", G),
    ("terraform", "refresh", "", G),
    ("terraform", "test", "", G),
    ("terraform", "taint x", "", G),
    ("terraform", "untaint x", "", G),
    ("terraform", "force-unlock id", "", G),
    ("terraform", "state rm x", "", G),
    ("terraform", "state mv a b", "", G),
    ("terraform", "state push f", "", G),
    ("terraform", "state replace-provider a b", "", G),
    ("terraform", "workspace delete x", "", G),
    ("terraform", "env delete x", "", G),
    ("terraform", "-var=x apply", "", G),
    ("terraform", "'apply -auto-approve'", "", G),
    ("terraform", "'state rm' x", "", G),
    ("terraform", "Apply", "", G),
    ("terraform", "frobnicate", "", G),
    ("terraform", "-chdir infra apply", "", R),
    ("terraform", "-chdir= plan", "", R),
    ("terraform", "plan -var", "", R),
    ("terraform", "", "TF_CLI_ARGS=destroy -auto-approve", G),
    ("terraform", "plan", "TF_CLI_ARGS_plan=-out=x", G),
    ("terraform", "version", "TF_CLI_ARGS=", P),
    ("tofu", "version", "", P),
    ("tofu", "plan", "", P),
    ("tofu", "apply -auto-approve", "", G),
    ("tofu", "destroy", "", G),
    ("tofu", "state rm x", "", G),
    ("tofu", "-chdir=x apply", "", G),
    ("tofu", "", "TF_CLI_ARGS=apply", G),
];

const HELM: &[Case] = &[
    ("helm", "", "", P),
    ("helm", "version", "", P),
    ("helm", "version --short", "", P),
    ("helm", "help", "", P),
    ("helm", "help install", "", P),
    ("helm", "list", "", P),
    ("helm", "ls", "", P),
    ("helm", "list -A", "", P),
    ("helm", "list --all-namespaces", "", P),
    ("helm", "status rel", "", P),
    ("helm", "history rel", "", P),
    ("helm", "get values rel", "", P),
    ("helm", "get manifest rel", "", P),
    ("helm", "get all rel", "", P),
    ("helm", "show chart ./c", "", P),
    ("helm", "show values ./c", "", P),
    ("helm", "template rel ./c", "", P),
    ("helm", "template ./c -f v.yaml", "", P),
    ("helm", "lint ./c", "", P),
    ("helm", "package ./c", "", P),
    ("helm", "create c", "", P),
    ("helm", "repo add x https://x", "", P),
    ("helm", "repo list", "", P),
    ("helm", "repo update", "", P),
    ("helm", "search repo x", "", P),
    ("helm", "dependency update ./c", "", P),
    ("helm", "dep build ./c", "", P),
    ("helm", "env", "", P),
    ("helm", "pull x/y", "", P),
    ("helm", "plugin list", "", P),
    ("helm", "registry login x", "", P),
    ("helm", "completion bash", "", P),
    ("helm", "install rel ./c", "", G),
    ("helm", "upgrade rel ./c", "", G),
    ("helm", "upgrade --install rel ./c", "", G),
    ("helm", "upgrade -i rel ./c", "", G),
    ("helm", "upgrade rel ./c -f - ", "", G),
    ("helm", "upgrade rel ./c --post-renderer ./x", "", G),
    ("helm", "uninstall rel", "", G),
    ("helm", "delete rel", "", G),
    ("helm", "del rel", "", G),
    ("helm", "un rel", "", G),
    ("helm", "rollback rel 1", "", G),
    ("helm", "test rel", "", G),
    ("helm", "plugin install x", "", G),
    ("helm", "plugin uninstall x", "", G),
    ("helm", "plugin update x", "", G),
    ("helm", "push c.tgz oci://x", "", G),
    ("helm", "install", "", G),
    ("helm", "--kube-context prod install rel ./c", "", G),
    ("helm", "--kube-context=prod list", "", P),
    ("helm", "-n prod upgrade rel ./c", "", G),
    ("helm", "--namespace prod list", "", P),
    ("helm", "--debug list", "", P),
    ("helm", "--debug upgrade rel c", "", G),
    ("helm", "--kubeconfig /k list", "", P),
    ("helm", "--kube-apiserver https://x list", "", P),
    ("helm", "--burst-limit 100 list", "", P),
    ("helm", "--qps 5 list", "", P),
    ("helm", "--registry-config /r list", "", P),
    ("helm", "--repository-config /r repo list", "", P),
    ("helm", "--repository-cache /r list", "", P),
    ("helm", "--kube-as-user u list", "", P),
    ("helm", "--kube-as-group g list", "", P),
    ("helm", "--kube-ca-file /ca list", "", P),
    ("helm", "--kube-insecure-skip-tls-verify list", "", P),
    ("helm", "--kube-token t list", "", P),
    ("helm", "--kube-tls-server-name x list", "", P),
    ("helm", "-n install list", "", P),
    ("helm", "--kube-context install upgrade x c", "", G),
    ("helm", "diff upgrade rel c", "", G),
    ("helm", "secrets view x", "", G),
    ("helm", "--frob list", "", G),
    ("helm", "list --frob", "", P),
    ("helm", "-n", "", R),
];

#[test]
fn kubectl_with_the_builtin_rules() {
    check(&sandbox(), None, KUBECTL);
}

#[test]
fn terraform_and_tofu_with_the_builtin_rules() {
    check(&sandbox(), None, TERRAFORM);
}

#[test]
fn helm_with_the_builtin_rules() {
    check(&sandbox(), None, HELM);
}

const CUSTOM_POLICY: &str = r#"
version = 1

[[environment]]
name = "production"
risk = "high"
kube_contexts = ["prod*"]
namespaces = ["kube-system"]
terraform_workspaces = ["prod*"]

[[environment]]
name = "dev"
risk = "low"
# dev-is-free loosens the gate, so it matches dev only by the API server the command reaches
# (resolved with the real kubectl; the fake tools here cannot resolve one, so it never does:
# the dev-named contexts below stay gated). The names still serve stricter rules.
kube_servers = ["https://dev.example.com:6443"]
kube_contexts = ["dev*", "kind-*"]
terraform_workspaces = ["dev"]

[[rule]]
name = "dry-runs-pass"
tools = ["kubectl"]
subcommands = ["apply", "create*", "delete", "patch"]
flags = { "--dry-run" = ["client", "server"] }
action = "pass"

[[rule]]
name = "ctx-plugin"
tools = ["kubectl"]
subcommands = ["ctx"]
action = "pass"

[[rule]]
name = "dev-is-free"
tools = ["kubectl", "helm"]
environments = ["dev"]
action = "pass"

[[rule]]
name = "no-prod-drain"
tools = ["kubectl"]
subcommands = ["drain"]
environments = ["production"]
action = "deny"

[[rule]]
name = "plan-in-prod-gated"
tools = ["terraform", "tofu"]
subcommands = ["plan"]
environments = ["production"]
action = "gate"
"#;

const CUSTOM: &[Case] = &[
    ("kubectl", "apply --dry-run=client -f x", "", P),
    ("kubectl", "apply --dry-run=server -f x", "", P),
    ("kubectl", "apply --dry-run client -f x", "", G),
    ("kubectl", "apply --dry-run=none -f x", "", G),
    ("kubectl", "apply -f x", "", G),
    ("kubectl", "delete pod x --dry-run=server", "", P),
    (
        "kubectl",
        "create deployment x --image=y --dry-run=client",
        "",
        P,
    ),
    (
        "kubectl",
        "scale deploy x --replicas=1 --dry-run=client",
        "",
        G,
    ),
    // A context named like dev is only a name: it no longer loosens the gate.
    ("kubectl", "--context dev-1 delete pod x", "", G),
    ("kubectl", "--context kind-a apply -f x", "", G),
    ("kubectl", "--context prod delete pod x", "", G),
    ("kubectl", "--context prod drain node", "", D),
    ("kubectl", "--context dev drain node", "", G),
    ("kubectl", "-n kube-system drain node", "", D),
    ("kubectl", "--context prod-eu -n dev delete pod x", "", G),
    (
        "kubectl",
        "--context dev-1 --context prod delete pod x",
        "",
        G,
    ),
    ("kubectl", "ctx prod", "", P),
    ("kubectl", "ns x", "", G),
    ("kubectl", "--unknown ctx", "", G),
    (
        "kubectl",
        "delete pod x",
        "KUBECONFIG=/nonexistent:@KUBECONFIG_DEV@",
        G,
    ),
    (
        "kubectl",
        "delete pod x",
        "KUBECONFIG=@KUBECONFIG_PROD@:@KUBECONFIG_DEV@",
        G,
    ),
    (
        "kubectl",
        "--context dev-2 delete pod x",
        "KUBECONFIG=@KUBECONFIG_PROD@",
        G,
    ),
    ("helm", "--kube-context dev upgrade r c", "", G),
    ("helm", "--kube-context prod upgrade r c", "", G),
    ("helm", "upgrade r c", "HELM_KUBECONTEXT=dev", G),
    (
        "helm",
        "--kube-context prod upgrade r c",
        "HELM_KUBECONTEXT=dev",
        G,
    ),
    ("terraform", "plan", "TF_WORKSPACE=prod", G),
    ("terraform", "plan", "TF_WORKSPACE=dev", P),
    ("terraform", "plan", "", P),
    ("tofu", "plan", "TF_WORKSPACE=prod-eu", G),
];

#[test]
fn a_custom_policy_with_environments_and_flag_conditions() {
    let sb = sandbox();
    let policy = sb.policy("custom.toml", CUSTOM_POLICY);
    let dev = sb.path().join("dev.kubeconfig");
    let prod = sb.path().join("prod.kubeconfig");
    std::fs::write(
        &dev,
        "apiVersion: v1\nkind: Config\ncurrent-context: dev-1\n",
    )
    .unwrap();
    std::fs::write(
        &prod,
        "apiVersion: v1\nkind: Config\ncurrent-context: \"prod\"\n",
    )
    .unwrap();
    // Substitute the kubeconfig paths into the env column.
    let cases: Vec<Case> = CUSTOM
        .iter()
        .map(|&(t, l, e, w)| {
            let e = e
                .replace("@KUBECONFIG_DEV@", &dev.display().to_string())
                .replace("@KUBECONFIG_PROD@", &prod.display().to_string());
            (t, l, &*Box::leak(e.into_boxed_str()), w)
        })
        .collect();
    check(&sb, Some(&policy), &cases);
}

#[test]
fn unknown_subcommand_setting_and_builtin_rules_off() {
    let sb = sandbox();
    let deny = sb.policy(
        "deny.toml",
        "version = 1\n[defaults]\nunknown_subcommand = \"deny\"\n",
    );
    check(
        &sb,
        Some(&deny),
        &[
            ("kubectl", "foo", "", D),
            ("kubectl", "--weird get pods", "", D),
            ("helm", "diff upgrade x c", "", D),
            ("terraform", "frobnicate", "", D),
            ("kubectl", "get pods", "", P),
        ],
    );
    let pass = sb.policy(
        "pass.toml",
        "version = 1\n[defaults]\nunknown_subcommand = \"pass\"\n",
    );
    check(
        &sb,
        Some(&pass),
        &[
            ("kubectl", "foo", "", P),
            ("kubectl", "delete pod x", "", G),
        ],
    );
    let bare = sb.policy(
        "bare.toml",
        "version = 1\n[defaults]\nbuiltin_rules = false\n",
    );
    check(
        &sb,
        Some(&bare),
        &[
            ("kubectl", "get pods", "", G),
            ("terraform", "version", "", G),
        ],
    );
}

#[test]
fn there_are_at_least_200_cases() {
    let n = KUBECTL.len() + TERRAFORM.len() + HELM.len() + CUSTOM.len();
    assert!(n >= 200, "only {n} cases");
}
