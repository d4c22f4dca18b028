//! Nothing acts before approval: every helper the gate runs before the decision (target
//! resolution, renders, dry runs, listings) is read-only, whatever the agent's argv holds.
//!
//! The invariant is checked over a corpus of gated kubectl and helm command lines (every gated
//! subcommand, `--` in every position, `=` forms, flags after positionals, stdin and kustomize
//! sources, `--raw`, subresources): each is submitted (or refused) and rejected, and the fake
//! Kubernetes API must have seen only GETs and server-side dry runs. A handful is then approved,
//! to show that the same commands do write once a human said yes.

use std::process::Stdio;

use crate::support::gate::{finish, KubeGated};
use crate::support::kube::{write_chart, Request};
use crate::support::{code, stderr, tools};

/// A Deployment `web` with `replicas` replicas.
pub fn deployment(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n"
    )
}

/// The world the corpus runs in: prod (current context) holds Deployment `web`, ConfigMap `conf`
/// and a helm release `rel` of a tiny chart; the work dir holds manifests, a kustomization and
/// the chart.
async fn world() -> KubeGated {
    let k = KubeGated::new().await;
    k.sb.add_real("helm", &tools::helm4());
    let w = &k.sb.work;
    std::fs::write(w.join("web.yaml"), deployment("web", 1)).unwrap();
    std::fs::write(w.join("web2.yaml"), deployment("web", 2)).unwrap();
    std::fs::write(w.join("new.yaml"), deployment("fresh", 1)).unwrap();
    std::fs::write(
        w.join("cm.json"),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"raw-cm","namespace":"prod"},"data":{"a":"b"}}"#,
    )
    .unwrap();
    std::fs::write(
        w.join("web.json"),
        r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"prod"},"spec":{"replicas":9}}"#,
    )
    .unwrap();
    std::fs::create_dir_all(w.join("kust")).unwrap();
    std::fs::write(w.join("kust/web.yaml"), deployment("kweb", 1)).unwrap();
    std::fs::write(
        w.join("kust/kustomization.yaml"),
        "resources:\n- web.yaml\nnamePrefix: k-\n",
    )
    .unwrap();
    std::fs::create_dir_all(w.join("dir")).unwrap();
    std::fs::write(w.join("dir/a.yaml"), deployment("da", 1)).unwrap();
    std::fs::write(w.join("dir/b.yaml"), deployment("db", 1)).unwrap();
    std::fs::write(w.join("patch.json"), r#"{"spec":{"replicas":8}}"#).unwrap();
    std::fs::write(w.join("values.yaml"), "replicas: 4\n").unwrap();
    write_chart(&w.join("chart"), "nginx:1.27");
    let seed = |args: &[&str], tool: &str| {
        let mut c = k.sb.direct(tool);
        c.args(args)
            .current_dir(&k.sb.work)
            .env("KUBECONFIG", &k.kubeconfig);
        let out = crate::support::run(&mut c);
        assert_eq!(code(&out), 0, "{tool} {args:?}: {}", stderr(&out));
    };
    seed(&["apply", "-f", "web.yaml"], "kubectl");
    seed(
        &["create", "configmap", "conf", "--from-literal=a=b"],
        "kubectl",
    );
    seed(&["install", "rel", "./chart"], "helm");
    k
}

/// Gated kubectl command lines. Each is gated by the built-in rules.
fn kubectl_corpus() -> Vec<Vec<&'static str>> {
    let lines: &[&[&str]] = &[
        // `--` hands the rest to a container, or just ends the flags.
        &["run", "x", "--image=busybox", "--", "sh", "-c", "echo hi"],
        &[
            "run",
            "x",
            "--image=busybox",
            "--restart=Never",
            "--",
            "sleep",
            "1",
        ],
        &["run", "x", "--image", "busybox", "--command", "--", "true"],
        &[
            "create",
            "deployment",
            "cd",
            "--image=nginx",
            "--",
            "sleep",
            "1",
        ],
        &["create", "job", "j", "--image=busybox", "--", "echo", "hi"],
        &[
            "create",
            "cronjob",
            "cj",
            "--image=busybox",
            "--schedule=* * * * *",
            "--",
            "date",
        ],
        &["scale", "--replicas=7", "--", "deploy", "web"],
        &["scale", "--replicas", "7", "deploy", "--", "web"],
        &["label", "--", "deploy", "web", "a=b"],
        &["label", "deploy", "web", "--", "a=b"],
        &["annotate", "deploy", "web", "--", "x=y"],
        &[
            "patch",
            "deploy",
            "web",
            "-p",
            r#"{"spec":{"replicas":5}}"#,
            "--",
        ],
        &[
            "patch",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":5}}"#,
            "--",
            "deploy",
            "web",
        ],
        &["set", "image", "deploy/web", "--", "web=nginx:2"],
        &["set", "env", "deploy/web", "--", "A=B"],
        &["delete", "--", "deploy", "web"],
        &["delete", "deploy", "--", "web"],
        &["taint", "nodes", "n1", "--", "k=v:NoSchedule"],
        &["expose", "deploy", "web", "--port=80", "--"],
        &["autoscale", "deploy", "web", "--max=3", "--"],
        &["rollout", "undo", "--", "deploy/web"],
        &["create", "configmap", "c2", "--from-literal=a=b", "--"],
        // --raw ignores --dry-run.
        &[
            "delete",
            "--raw",
            "/apis/apps/v1/namespaces/prod/deployments/web",
        ],
        &["delete", "--raw=/api/v1/namespaces/prod/configmaps/conf"],
        &[
            "delete",
            "--raw",
            "/apis/apps/v1/namespaces/prod/deployments/web",
            "--dry-run=server",
        ],
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/prod/configmaps",
            "-f",
            "cm.json",
        ],
        &[
            "replace",
            "--raw",
            "/apis/apps/v1/namespaces/prod/deployments/web",
            "-f",
            "web.json",
        ],
        &[
            "create",
            "--raw=/api/v1/namespaces/prod/configmaps",
            "--filename=cm.json",
        ],
        // `=` forms and global flags in every place.
        &["--context=prod", "delete", "deploy", "web"],
        &["delete", "deploy", "web", "--context=prod"],
        &["-n=prod", "delete", "cm", "conf"],
        &["--namespace=prod", "scale", "deploy", "web", "--replicas=3"],
        &["-nprod", "label", "deploy", "web", "c=d"],
        &["scale", "deploy/web", "--replicas=2", "--namespace", "prod"],
        &["-v=6", "delete", "cm", "conf"],
        &["--request-timeout=5s", "annotate", "deploy", "web", "k=v"],
        // Flags after positionals.
        &["scale", "deploy", "web", "--replicas", "3"],
        &["delete", "deploy", "web", "-n", "prod"],
        &["label", "deploy", "web", "a=b", "--overwrite"],
        &["annotate", "deploy", "web", "a=b", "--overwrite=true"],
        &["set", "image", "deploy/web", "web=nginx:3", "--all=false"],
        // Sources: files, directories, kustomize, stdin.
        &["apply", "-f", "web2.yaml"],
        &["apply", "--filename=web2.yaml"],
        &["apply", "-f=web2.yaml"],
        &["apply", "-f", "new.yaml", "--server-side"],
        &[
            "apply",
            "-f",
            "web2.yaml",
            "--server-side",
            "--force-conflicts",
        ],
        &["apply", "-f", "web2.yaml", "--field-manager=agent"],
        &["apply", "-f", "dir"],
        &["apply", "-R", "-f", "dir"],
        &["apply", "-Rf", "dir"],
        &["apply", "-k", "kust"],
        &["apply", "--kustomize=kust"],
        &["create", "-f", "new.yaml"],
        &["create", "-f", "new.yaml", "--save-config"],
        &["replace", "-f", "web2.yaml"],
        &["replace", "--force", "-f", "web2.yaml"],
        &["delete", "-f", "web.yaml"],
        &["delete", "-k", "kust"],
        &["delete", "-f", "dir"],
        &["apply", "-f", "web2.yaml", "--dry-run=none"],
        &["apply", "-f", "web2.yaml", "--", "extra"],
        &["apply", "-f", "-"],
        &["create", "-f", "-"],
        &["replace", "-f", "-"],
        &["delete", "-f", "-"],
        &["apply", "--filename", "-", "--server-side"],
        &["label", "-f", "web.yaml", "tier=x"],
        &["annotate", "-f", "web.yaml", "tier=x"],
        // Subresources.
        &[
            "patch",
            "deploy",
            "web",
            "--subresource=scale",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":4}}"#,
        ],
        &[
            "patch",
            "deploy",
            "web",
            "--subresource",
            "status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":4}}"#,
        ],
        &["scale", "deploy/web", "--replicas=6"],
        &[
            "scale",
            "--current-replicas=1",
            "--replicas=2",
            "deployment/web",
        ],
        // Every other gated subcommand.
        &["patch", "deploy", "web", "--patch-file", "patch.json"],
        &[
            "patch",
            "cm",
            "conf",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/data/a","value":"c"}]"#,
        ],
        &["delete", "deploy", "web", "--dry-run=none"],
        &["delete", "deploy", "web", "--cascade=orphan"],
        &["delete", "deploy", "--all"],
        &["delete", "cm", "-l", "app=x"],
        &["delete", "cm", "--field-selector", "metadata.name=conf"],
        &[
            "delete",
            "cm",
            "conf",
            "--now",
            "--grace-period=0",
            "--force",
        ],
        &["set", "resources", "deploy/web", "--limits=cpu=200m"],
        &["set", "selector", "deploy", "web", "app=web"],
        &["set", "serviceaccount", "deploy", "web", "sa"],
        &["rollout", "restart", "deploy", "web"],
        &["rollout", "pause", "deploy/web"],
        &["rollout", "resume", "deploy/web"],
        &["rollout", "undo", "deploy/web", "--to-revision=1"],
        &["create", "configmap", "c3", "--from-literal=a=b"],
        &[
            "create",
            "secret",
            "generic",
            "s1",
            "--from-literal=pw=hunter2",
        ],
        &["create", "namespace", "ns1"],
        &["create", "service", "clusterip", "svc1", "--tcp=80:80"],
        &["create", "serviceaccount", "sa1"],
        &[
            "expose",
            "deployment",
            "web",
            "--port=8080",
            "--name=web-svc",
        ],
        &["autoscale", "deployment", "web", "--min=1", "--max=4"],
        &["taint", "node", "n1", "k=v:NoSchedule"],
        &["cordon", "n1"],
        &["uncordon", "n1"],
        &["drain", "n1", "--ignore-daemonsets"],
        &["exec", "web-pod", "--", "rm", "-rf", "/data"],
        &["exec", "-i", "web-pod", "--", "sh"],
        &["cp", "web.yaml", "web-pod:/tmp/web.yaml"],
        &["attach", "web-pod"],
        &["port-forward", "web-pod", "8080:80"],
        &["proxy", "--port=0"],
        &["debug", "web-pod", "--image=busybox"],
        &["edit", "deploy", "web"],
        &["apply", "set-last-applied", "-f", "web2.yaml"],
        &[
            "apply",
            "set-last-applied",
            "-f",
            "web2.yaml",
            "--create-annotation",
        ],
        &["apply", "edit-last-applied", "deploy", "web"],
        &["auth", "reconcile", "-f", "web.yaml"],
        &["certificate", "approve", "csr-1"],
        &["certificate", "deny", "csr-1"],
        &["some-plugin", "do", "things"],
    ];
    lines.iter().map(|l| l.to_vec()).collect()
}

/// Gated helm command lines.
fn helm_corpus() -> Vec<Vec<&'static str>> {
    let lines: &[&[&str]] = &[
        &["upgrade", "rel", "./chart"],
        &["upgrade", "rel", "./chart", "--set", "replicas=3"],
        &[
            "upgrade",
            "rel",
            "./chart",
            "--set=replicas=3",
            "--set-string",
            "x=y",
        ],
        &["upgrade", "rel", "./chart", "-f", "values.yaml"],
        &["upgrade", "rel", "./chart", "--values=values.yaml"],
        &["upgrade", "--install", "rel", "./chart"],
        &["upgrade", "-i", "rel2", "./chart"],
        &["upgrade", "rel", "./chart", "--reuse-values"],
        &["upgrade", "rel", "./chart", "--reset-values", "--force"],
        &["upgrade", "rel", "./chart", "--wait", "--timeout", "1s"],
        &["upgrade", "rel", "./chart", "--atomic"],
        &["upgrade", "rel", "./chart", "--"],
        &["upgrade", "--", "rel", "./chart"],
        &["upgrade", "rel", "--", "./chart"],
        &["upgrade", "rel", "./chart", "--dry-run=none"],
        &["upgrade", "rel", "./chart", "-f", "-"],
        &["--kube-context", "prod", "upgrade", "rel", "./chart"],
        &["--namespace=prod", "upgrade", "rel", "./chart"],
        &["upgrade", "rel", "./chart", "-n", "prod"],
        &["install", "rel3", "./chart"],
        &[
            "install",
            "rel3",
            "./chart",
            "--create-namespace",
            "-n",
            "newns",
        ],
        &["install", "rel3", "./chart", "--set", "replicas=2", "--"],
        &["install", "--", "rel3", "./chart"],
        &["uninstall", "rel"],
        &["uninstall", "rel", "--keep-history"],
        &["uninstall", "--", "rel"],
        &["delete", "rel"],
        &["un", "rel"],
        &["rollback", "rel", "1"],
        &["rollback", "rel"],
        &["rollback", "--", "rel", "1"],
        &["test", "rel"],
        &["upgrade", "rel", "./chart", "--post-renderer", "./pr"],
    ];
    lines.iter().map(|l| l.to_vec()).collect()
}

/// Writes to the API (not GETs, not server-side dry runs).
fn writes(log: &[Request]) -> Vec<String> {
    log.iter()
        .filter(|r| r.writes())
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect()
}

/// Runs one command line through the shim: it is submitted and rejected, or refused by the
/// shim itself. Returns what the fake API saw meanwhile.
async fn reject_one(k: &KubeGated, tool: &str, args: &[&str]) -> Vec<Request> {
    k.fake.take_requests();
    let kc = k.kubeconfig.display().to_string();
    let stdin = if args.contains(&"-") {
        Stdio::from(std::fs::File::open(k.sb.work.join("web2.yaml")).unwrap())
    } else {
        Stdio::null()
    };
    let child = k.spawn_with(tool, &k.sb.work, args, &[("KUBECONFIG", &kc)], stdin);
    match k.pending_or_exit(child).await {
        Ok((req, child)) => {
            k.decide(req["id"].as_str().unwrap(), "reject", "corpus")
                .await;
            let out = finish(child).await;
            assert_eq!(code(&out), 80, "{tool} {args:?}: {}", stderr(&out));
        }
        Err(out) => {
            // Refused before submitting: a documented refusal code, never the tool's own run.
            let c = code(&out);
            assert!(
                [83, 87, 88].contains(&c) || (1..=2).contains(&c),
                "{tool} {args:?} ended with {c} without a request: {}",
                stderr(&out)
            );
        }
    }
    k.fake.take_requests()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gated_command_line_writes_before_approval() {
    let k = world().await;
    let (kc, hc) = (kubectl_corpus(), helm_corpus());
    assert!(kc.len() + hc.len() >= 100, "{}", kc.len() + hc.len());
    let rv = k.fake.resource_version();
    let mut failures = Vec::new();
    for (tool, corpus) in [("kubectl", &kc), ("helm", &hc)] {
        for args in corpus {
            let w = writes(&reject_one(&k, tool, args).await);
            if !w.is_empty() {
                failures.push(format!("{tool} {args:?} wrote before approval: {w:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(k.fake.resource_version(), rv, "nothing was stored");
}
