//! The test-only fake Kubernetes API server (`support::kube`) against the real pinned kubectl
//! 1.35.2, helm 4.1.4 and helm 3.17.2, run directly (no shims): what the gate's kubectl and helm
//! tests rely on the fake for, checked by reading the fake's store and request log afterwards.
//!
//! Findings recorded here (and asserted, so a tool upgrade that changes them fails loudly):
//! - `kubectl diff` masks a Secret's `data` values by itself (`'***'`, `'*** (before)'`,
//!   `'*** (after)'`), but NOT the `kubectl.kubernetes.io/last-applied-configuration`
//!   annotation, which for a client-side-applied Secret holds its values (base64 for `data`,
//!   plain text for `stringData`) and shows up in the diff's context lines.
//! - `kubectl scale` GETs the deployment, then PATCHes `…/deployments/NAME/scale` with
//!   `application/merge-patch+json` `{"spec":{"replicas":N}}` (`?dryRun=All` with
//!   `--dry-run=server`). With `-o yaml` it prints the deployment as read BEFORE the scale.
//! - helm 4 creates with POST (`fieldManager=helm`) and upgrades with server-side apply
//!   (`application/apply-patch+yaml`); helm 3 upgrades with strategic-merge patches. Both store
//!   releases as protobuf Secrets. `upgrade --dry-run=server -o json` prints the would-be
//!   release (its `.manifest` is the new manifest) and sends no write at all, not even a
//!   dry-run one; helm 3 does the same with plain `--dry-run` (client mode).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::support::kube::FakeKube;
use crate::support::{code, run, stderr, stdout, tools, Sandbox};

const APP: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
type: Opaque
data:
  password: aHVudGVyMg==
";

/// A sandbox with the pinned kubectl (and `helm` when given), a fake API server and a
/// kubeconfig with the contexts `dev` (namespace `default`, current) and `prod` (`prod`).
struct World {
    sb: Sandbox,
    fake: FakeKube,
    kubeconfig: PathBuf,
}

impl World {
    fn new(helm: Option<PathBuf>) -> World {
        let sb = Sandbox::new();
        sb.add_real("kubectl", &tools::kubectl());
        if let Some(helm) = helm {
            sb.add_real("helm", &helm);
        }
        let fake = FakeKube::start_blocking();
        let kubeconfig = fake.kubeconfig(&sb.home, &[("dev", "default"), ("prod", "prod")]);
        World {
            sb,
            fake,
            kubeconfig,
        }
    }

    /// Writes `text` into the work dir; returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.sb.work.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The real tool, with this world's environment, `stdin` from a file when given.
    fn tool(&self, tool: &str, args: &[&str], stdin: Option<&Path>) -> Output {
        let home = &self.sb.home;
        let mut c = self.sb.direct(tool);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CONFIG_HOME", home.join("helm/config"))
            .env("HELM_CACHE_HOME", home.join("helm/cache"))
            .env("HELM_DATA_HOME", home.join("helm/data"))
            .env("HELM_DRIVER", "secret");
        if let Some(p) = stdin {
            c.stdin(Stdio::from(std::fs::File::open(p).unwrap()));
        }
        run(&mut c)
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.tool("kubectl", args, None)
    }

    /// kubectl that must succeed; returns its stdout.
    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert_eq!(code(&out), 0, "kubectl {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    /// helm that must succeed; returns its stdout.
    fn helm_ok(&self, args: &[&str]) -> String {
        let out = self.tool("helm", args, None);
        assert_eq!(code(&out), 0, "helm {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    fn deployment(&self, name: &str) -> Option<Value> {
        self.fake.get("apps/v1", "deployments", "default", name)
    }

    fn replicas(&self, name: &str) -> i64 {
        let d = self.deployment(name);
        let d = d.unwrap_or_else(|| panic!("deployment {name} is not stored"));
        d["spec"]["replicas"].as_i64().unwrap()
    }

    /// Requests since the `from`th whose method is not GET.
    fn writes_since(&self, from: usize) -> Vec<String> {
        let log = self.fake.requests();
        log[from..]
            .iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}?{} [{}]", r.method, r.path, r.query, r.content_type))
            .collect()
    }
}

#[test]
fn kubectl_apply_get_diff_and_server_dry_run() {
    let w = World::new(None);
    let app = w.file("app.yaml", APP);
    let out = w.kubectl_ok(&["apply", "-f", app.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    assert_eq!(w.replicas("web"), 1);
    let cm = w
        .fake
        .get("v1", "configmaps", "default", "settings")
        .unwrap();
    assert_eq!(cm["data"]["mode"], "fast");
    let secret = w.fake.get("v1", "secrets", "default", "creds").unwrap();
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    let meta = &w.deployment("web").unwrap()["metadata"];
    for field in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
        assert!(!meta[field].is_null(), "{field} missing: {meta}");
    }

    // get: by name (JSON), lists with short names and label selectors, and a NotFound.
    let live: Value =
        serde_json::from_str(&w.kubectl_ok(&["get", "deploy", "web", "-o", "json"])).unwrap();
    assert_eq!(live["spec"]["replicas"], 1);
    assert!(w.kubectl_ok(&["get", "cm"]).contains("settings"));
    assert!(w
        .kubectl_ok(&["get", "deploy", "-l", "app=web"])
        .contains("web"));
    let none = w.kubectl(&["get", "deploy", "-l", "app=nope"]);
    assert_eq!(code(&none), 0);
    assert!(
        stderr(&none).contains("No resources found"),
        "{}",
        stderr(&none)
    );
    let missing = w.kubectl(&["get", "deploy", "nope"]);
    assert_eq!(code(&missing), 1);
    assert!(
        stderr(&missing).contains("NotFound"),
        "{}",
        stderr(&missing)
    );

    // The other context writes into its own namespace.
    let cm_only = w.file("cm.yaml", APP.split("---\n").nth(1).unwrap());
    w.kubectl_ok(&[
        "--context",
        "prod",
        "apply",
        "-f",
        cm_only.to_str().unwrap(),
    ]);
    assert_eq!(w.fake.names("v1", "configmaps", "prod"), ["settings"]);

    // diff: no changes exits 0; changes exit 1, name the field, and store nothing.
    let rv = w.fake.resource_version();
    let same = w.kubectl(&["diff", "-f", app.to_str().unwrap()]);
    assert_eq!(code(&same), 0, "{}{}", stdout(&same), stderr(&same));
    let changed = APP
        .replace("replicas: 1", "replicas: 2")
        .replace("aHVudGVyMg==", "bmV3LXNlY3JldA==")
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  k: v\n";
    let app2 = w.file("app2.yaml", &changed);
    let log_at = w.fake.requests().len();
    let diff = w.kubectl(&["diff", "-f", app2.to_str().unwrap()]);
    let text = stdout(&diff);
    assert_eq!(code(&diff), 1, "{text}{}", stderr(&diff));
    assert!(
        text.contains("-  replicas: 1") && text.contains("+  replicas: 2"),
        "{text}"
    );
    assert!(
        text.contains("+  name: extra"),
        "a new object shows as added: {text}"
    );
    // kubectl masks Secret data values itself; the new value never appears...
    assert!(text.contains("password: '*** (before)'"), "{text}");
    assert!(text.contains("password: '*** (after)'"), "{text}");
    assert!(!text.contains("bmV3LXNlY3JldA=="), "{text}");
    // ...but the live last-applied annotation (with the old value) is not masked.
    let leak = "{\"apiVersion\":\"v1\",\"data\":{\"password\":\"aHVudGVyMg==\"}";
    let label = changed.replace("name: creds", "name: creds\n  labels: {a: b}");
    let label_diff =
        stdout(&w.kubectl(&["diff", "-f", w.file("app3.yaml", &label).to_str().unwrap()]));
    assert!(
        label_diff.contains(leak),
        "kubectl diff now masks the annotation too: {label_diff}"
    );
    let writes = w.writes_since(log_at);
    assert!(
        !writes.is_empty() && writes.iter().all(|r| r.contains("dryRun=All")),
        "{writes:#?}"
    );
    assert!(
        writes
            .iter()
            .any(|r| r.starts_with("POST") && r.contains("/configmaps?")),
        "a dry-run create for the new object: {writes:#?}"
    );
    assert_eq!(w.fake.resource_version(), rv, "diff stored something");

    // apply --dry-run=server reports the change and stores nothing.
    let out = w.kubectl_ok(&["apply", "--dry-run=server", "-f", app2.to_str().unwrap()]);
    assert!(
        out.contains("deployment.apps/web configured (server dry run)"),
        "{out}"
    );
    assert!(
        out.contains("configmap/extra created (server dry run)"),
        "{out}"
    );
    assert_eq!(
        w.fake.resource_version(),
        rv,
        "a server dry run stored something"
    );
    assert_eq!(w.replicas("web"), 1);
    assert_eq!(w.fake.names("v1", "configmaps", "default"), ["settings"]);

    // A real apply then changes what diff saw.
    w.kubectl_ok(&["apply", "-f", app2.to_str().unwrap()]);
    assert_eq!(w.replicas("web"), 2);
    assert_eq!(w.deployment("web").unwrap()["metadata"]["generation"], 2);
    assert_eq!(
        w.fake.names("v1", "configmaps", "default"),
        ["extra", "settings"]
    );
    let secret = w.fake.get("v1", "secrets", "default", "creds").unwrap();
    assert_eq!(secret["data"]["password"], "bmV3LXNlY3JldA==");
    assert!(w.fake.resource_version() > rv);
}

#[test]
fn kubectl_scale_label_annotate_patch() {
    let w = World::new(None);
    let app = w.file("app.yaml", APP);
    w.kubectl_ok(&["apply", "-f", app.to_str().unwrap()]);

    let log_at = w.fake.requests().len();
    let out = w.kubectl_ok(&["scale", "deploy", "web", "--replicas=3"]);
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    assert_eq!(w.replicas("web"), 3);
    let writes = w.writes_since(log_at);
    assert_eq!(
        writes,
        ["PATCH /apis/apps/v1/namespaces/default/deployments/web/scale? [application/merge-patch+json]"]
    );

    let rv = w.fake.resource_version();
    let log_at = w.fake.requests().len();
    let out = w.kubectl_ok(&[
        "scale",
        "deploy",
        "web",
        "--replicas=5",
        "--dry-run=server",
        "-o",
        "yaml",
    ]);
    assert!(out.contains("kind: Deployment"), "{out}");
    // kubectl prints the deployment as it read it before the (dry-run) scale.
    assert!(out.contains("replicas: 3"), "{out}");
    assert_eq!(w.replicas("web"), 3);
    assert_eq!(
        w.fake.resource_version(),
        rv,
        "a dry-run scale stored something"
    );
    let writes = w.writes_since(log_at);
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert!(writes[0].contains("/web/scale?dryRun=All"), "{writes:#?}");

    w.kubectl_ok(&["label", "deploy", "web", "tier=front"]);
    w.kubectl_ok(&["annotate", "cm", "settings", "owner=ops"]);
    let d = w.deployment("web").unwrap();
    assert_eq!(d["metadata"]["labels"]["tier"], "front");
    assert_eq!(d["metadata"]["labels"]["app"], "web");
    let cm = w
        .fake
        .get("v1", "configmaps", "default", "settings")
        .unwrap();
    assert_eq!(cm["metadata"]["annotations"]["owner"], "ops");

    // patch: merge, JSON patch, and strategic merge (a container merged by name).
    w.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":4}}"#,
    ]);
    assert_eq!(w.replicas("web"), 4);
    let ops = r#"[{"op":"replace","path":"/spec/replicas","value":6},{"op":"add","path":"/metadata/labels/x","value":"y"},{"op":"remove","path":"/metadata/labels/tier"}]"#;
    w.kubectl_ok(&["patch", "deploy", "web", "--type=json", "-p", ops]);
    let d = w.deployment("web").unwrap();
    assert_eq!(d["spec"]["replicas"], 6);
    assert_eq!(d["metadata"]["labels"]["x"], "y");
    assert!(d["metadata"]["labels"]["tier"].is_null(), "{d}");
    let image =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}"#;
    w.kubectl_ok(&["patch", "deploy", "web", "-p", image]);
    let c = &w.deployment("web").unwrap()["spec"]["template"]["spec"]["containers"];
    assert_eq!(c.as_array().unwrap().len(), 1, "{c}");
    assert_eq!(c[0]["image"], "nginx:2");
    assert_eq!(
        c[0]["ports"][0]["containerPort"], 80,
        "the rest of the container stays: {c}"
    );
    let bad = w.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/nope/x"}]"#,
    ]);
    assert_eq!(code(&bad), 1, "{}", stderr(&bad));
}

#[test]
fn kubectl_stdin_and_delete() {
    let w = World::new(None);
    let app = w.file("app.yaml", APP);
    let out = w.tool("kubectl", &["apply", "-f", "-"], Some(&app));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(w.replicas("web"), 1);
    assert_eq!(w.fake.names("v1", "secrets", "default"), ["creds"]);

    let rv = w.fake.resource_version();
    let out = w.kubectl_ok(&["delete", "deploy", "web", "--dry-run=server"]);
    assert!(out.contains("(server dry run)"), "{out}");
    assert!(w.deployment("web").is_some(), "a dry-run delete deleted");
    assert_eq!(w.fake.resource_version(), rv);

    let out = w.kubectl_ok(&["delete", "deploy", "web"]);
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    assert!(w.deployment("web").is_none());
    let gone = w.kubectl(&["delete", "deploy", "web"]);
    assert_eq!(code(&gone), 1);
    assert!(stderr(&gone).contains("not found"), "{}", stderr(&gone));

    let rest = w.file(
        "rest.yaml",
        &APP.split("---\n").skip(1).collect::<Vec<_>>().join("---\n"),
    );
    let out = w.kubectl_ok(&["delete", "-f", rest.to_str().unwrap()]);
    assert!(out.contains("configmap \"settings\" deleted"), "{out}");
    assert!(w.fake.names("v1", "configmaps", "default").is_empty());
    assert!(w.fake.names("v1", "secrets", "default").is_empty());

    // -f - for delete too.
    let out = w.tool("kubectl", &["apply", "-f", "-"], Some(&rest));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(w.fake.names("v1", "configmaps", "default"), ["settings"]);
    let out = w.tool("kubectl", &["delete", "-f", "-"], Some(&rest));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(w.fake.names("v1", "configmaps", "default").is_empty());
}

/// A tiny chart: one deployment whose replicas come from the values.
fn chart(w: &World) -> String {
    let dir = w.sb.work.join("chart");
    crate::support::kube::write_chart(&dir, "nginx:1.27");
    dir.display().to_string()
}

/// The release's Secret for revision `n`, with its labels checked.
fn release(w: &World, n: u32, status: &str) -> Value {
    let name = format!("sh.helm.release.v1.rel.v{n}");
    let s = w.fake.get("v1", "secrets", "default", &name);
    let s = s.unwrap_or_else(|| panic!("no release secret {name}"));
    let labels = &s["metadata"]["labels"];
    assert_eq!(labels["owner"], "helm", "{s}");
    assert_eq!(labels["name"], "rel", "{s}");
    assert_eq!(labels["version"], n.to_string(), "{s}");
    assert_eq!(labels["status"], status, "{s}");
    assert!(
        s["data"]["release"].as_str().is_some_and(|r| r.len() > 100),
        "{s}"
    );
    s
}

/// install, upgrade (whose object writes use `upgrade_patch`), history, get manifest, the
/// `dry_runs` flags with `-o json`, rollback and uninstall.
fn helm_lifecycle(helm: PathBuf, upgrade_patch: &str, dry_runs: &[&str]) {
    let w = World::new(Some(helm));
    let chart = chart(&w);
    let out = w.helm_ok(&["install", "rel", &chart, "-n", "default"]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert_eq!(w.replicas("rel-web"), 1);
    release(&w, 1, "deployed");
    let protobuf = w.fake.requests().iter().any(|r| {
        r.method == "POST" && r.path.ends_with("/secrets") && r.content_type.contains("protobuf")
    });
    assert!(protobuf, "helm stored its release some other way");

    let log_at = w.fake.requests().len();
    w.helm_ok(&[
        "upgrade",
        "rel",
        &chart,
        "-n",
        "default",
        "--set",
        "replicas=3",
    ]);
    let writes = w.writes_since(log_at);
    let patched = writes
        .iter()
        .any(|r| r.starts_with("PATCH") && r.ends_with(&format!("[{upgrade_patch}]")));
    assert!(patched, "{writes:#?}");
    assert_eq!(w.replicas("rel-web"), 3);
    release(&w, 1, "superseded");
    release(&w, 2, "deployed");
    let history: Value =
        serde_json::from_str(&w.helm_ok(&["history", "rel", "-n", "default", "-o", "json"]))
            .unwrap();
    let revisions: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["revision"])
        .collect();
    assert_eq!(revisions, [1, 2], "{history}");
    let manifest = w.helm_ok(&["get", "manifest", "rel", "-n", "default"]);
    assert!(
        manifest.contains("name: rel-web") && manifest.contains("replicas: 3"),
        "{manifest}"
    );

    for dry in dry_runs {
        let rv = w.fake.resource_version();
        let log_at = w.fake.requests().len();
        let args = [
            "upgrade",
            "rel",
            &chart,
            "-n",
            "default",
            "--set",
            "replicas=7",
            dry,
            "-o",
            "json",
        ];
        let out: Value = serde_json::from_str(&w.helm_ok(&args)).expect("helm printed JSON");
        let new = out["manifest"].as_str().unwrap();
        assert!(
            new.contains("replicas: 7") && new.contains("name: rel-web"),
            "{dry}: {out}"
        );
        assert_eq!(out["version"], 3, "{dry}: {out}");
        assert_eq!(w.writes_since(log_at), Vec::<String>::new(), "{dry} wrote");
        assert_eq!(w.fake.resource_version(), rv, "{dry} stored something");
        assert_eq!(w.replicas("rel-web"), 3);
    }

    let out = w.helm_ok(&["rollback", "rel", "1", "-n", "default"]);
    assert!(out.contains("Rollback was a success"), "{out}");
    assert_eq!(w.replicas("rel-web"), 1);
    release(&w, 2, "superseded");
    release(&w, 3, "deployed");

    let out = w.helm_ok(&["uninstall", "rel", "-n", "default"]);
    assert!(out.contains("release \"rel\" uninstalled"), "{out}");
    assert!(w.deployment("rel-web").is_none());
    assert!(w.fake.names("v1", "secrets", "default").is_empty());
}

#[test]
fn helm_4_install_upgrade_dry_run_rollback_uninstall() {
    helm_lifecycle(
        tools::helm4(),
        "application/apply-patch+yaml",
        &["--dry-run=server"],
    );
}

#[test]
fn helm_3_install_upgrade_dry_run_rollback_uninstall() {
    let smp = "application/strategic-merge-patch+json";
    helm_lifecycle(tools::helm3(), smp, &["--dry-run=server", "--dry-run"]);
}
