//! Auto-approval and environment matching, attacked as an agent that wants its change through
//! would attack them. The server's policy is the docs' auto-approval example narrowed to creates
//! in dev (`dev-creates`: `changes = ["create"]`, no `subcommands`), with dev defined by the
//! fake API's exact URL. Each case holds what an attack pass found: the object stays untouched,
//! nothing is auto-approved, and the approver is shown the truth.

use std::path::Path;
use std::process::{Child, Stdio};

use serde_json::{json, Value};

use crate::support::gate::{finish, KubeGated};
use crate::support::kube::write_chart;
use crate::support::relay::{socket_of, Relay};
use crate::support::server::{create_body, TOKEN_A};
use crate::support::{code, run, stderr, stdout, tools};

/// A command: the tool, its argv, more environment.
type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

/// dev, reached at `url`, and its auto-approval of creates.
fn dev_creates(url: &str) -> String {
    format!(
        "[[environment]]\nname = \"dev\"\nrisk = \"low\"\nkube_servers = [\"{url}\"]\n\n[[rule]]\nname = \"dev-creates\"\nenvironments = [\"dev\"]\naction = \"auto_approve\"\nchanges = [\"create\"]\n"
    )
}

/// The world: the server's policy auto-approves creates in dev (the fake API); the shim's has
/// the same rule (an `auto_approve` rule must never make a harmless command wait).
async fn world() -> KubeGated {
    let k = KubeGated::naming_the_fake(dev_creates, dev_creates).await;
    k.fake
        .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}));
    k
}

/// Waits for `child`'s request and checks it is held for a human, not auto-approved.
async fn held(k: &KubeGated, child: Child) -> (Value, Child) {
    match k.pending_or_exit(child).await {
        Ok((req, child)) => {
            assert!(req["classification"].get("auto_approve").is_none(), "{req}");
            (req, child)
        }
        Err(out) => panic!(
            "the command was not held for a human (exit {}): {}",
            code(&out),
            stderr(&out)
        ),
    }
}

/// Rejects a held request; the shim must end with 80 (rejected), having run nothing.
async fn reject(k: &KubeGated, req: &Value, child: Child) {
    k.decide(req["id"].as_str().unwrap(), "reject", "no").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 80, "{}", stderr(&out));
}

/// The shim as `tool` with a kubeconfig and more environment.
fn spawn(
    k: &KubeGated,
    tool: &str,
    kubeconfig: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let kc = kubeconfig.display().to_string();
    let mut all = vec![("KUBECONFIG", kc.as_str())];
    all.extend_from_slice(env);
    k.spawn_with(tool, &k.sb.work, args, &all, Stdio::null())
}

/// The real helm, directly, with the world's kubeconfig; it must succeed.
fn helm_direct(k: &KubeGated, args: &[&str]) {
    let mut c = k.sb.direct("helm");
    c.args(args)
        .current_dir(&k.sb.work)
        .env("KUBECONFIG", &k.kubeconfig);
    let out = run(&mut c);
    assert_eq!(code(&out), 0, "helm {args:?}: {}", stderr(&out));
}

fn addresses(req: &Value, action: &str) -> Vec<String> {
    req["diff"]["summary"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == action)
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_gate_cannot_compute_is_never_auto_approved() {
    let k = world().await;
    k.sb.add_real("helm", &tools::helm4());
    k.fake.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "dev"}, "data": {"a": "1"}}));
    let web = k.fake.put_deployment("dev", "web");
    std::fs::write(
        k.sb.work.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: dev\ndata:\n  a: \"2\"\n",
    )
    .unwrap();
    // A helm CLI plugin the agent put on HELM_PLUGINS.
    let plugins = k.sb.path().join("plugins");
    let marker = k.sb.path().join("plugin-ran");
    std::fs::create_dir_all(plugins.join("myplug")).unwrap();
    std::fs::write(
        plugins.join("myplug/plugin.yaml"),
        "name: myplug\nversion: 0.1.0\nusage: x\ndescription: x\ncommand: \"$HELM_PLUGIN_DIR/run.sh\"\n",
    )
    .unwrap();
    k.sb.script(
        &plugins.join("myplug"),
        "run.sh",
        &format!("#!/bin/sh\ntouch {}\n", marker.display()),
    );
    let plugins = plugins.display().to_string();
    let cases: [Case; 3] = [
        (
            "kubectl",
            vec!["--context", "dev", "replace", "--force", "-f", "cm.yaml"],
            vec![],
        ),
        (
            "kubectl",
            vec!["--context", "dev", "rollout", "restart", "deploy/web"],
            vec![],
        ),
        (
            "helm",
            vec!["--kube-context", "dev", "myplug"],
            vec![("HELM_PLUGINS", &plugins)],
        ),
    ];
    for (tool, args, env) in &cases {
        let (req, child) = held(&k, spawn(&k, tool, &k.kubeconfig, args, env)).await;
        let complete = req["changes"]["complete"].as_bool().unwrap();
        let updates = addresses(&req, "update");
        // Either the gate says it cannot tell, or it shows the change: never "nothing".
        assert!(!complete || !updates.is_empty(), "{tool} {args:?}: {req}");
        if !complete {
            assert!(req["changes"]["summary"]
                .as_str()
                .unwrap()
                .contains("changes unknown"));
            assert!(
                req["diff"]["text"].as_str().unwrap().contains("NOT KNOWN"),
                "{req}"
            );
        }
        reject(&k, &req, child).await;
    }
    assert_eq!(
        k.fake.get("v1", "configmaps", "dev", "cm").unwrap()["data"]["a"],
        "1"
    );
    assert_eq!(
        k.fake.get("apps/v1", "deployments", "dev", "web"),
        Some(web)
    );
    assert!(!marker.exists(), "the plugin ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_uninstall_shows_every_release_it_removes() {
    let k = world().await;
    k.sb.add_real("helm", &tools::helm4());
    let chart = k.sb.work.join("chart");
    write_chart(&chart, "nginx:1.27");
    for r in ["r13", "r14"] {
        helm_direct(&k, &["--kube-context", "dev", "install", r, "./chart"]);
    }
    let releases = |k: &KubeGated| k.fake.names("v1", "secrets", "dev").len();
    let before = releases(&k);
    // A missing first release used to hide the second.
    let args = [
        "--kube-context",
        "dev",
        "uninstall",
        "nope",
        "r14",
        "--ignore-not-found",
    ];
    let (req, child) = held(&k, spawn(&k, "helm", &k.kubeconfig, &args, &[])).await;
    let deletes = addresses(&req, "delete");
    assert!(deletes.iter().any(|a| a.contains("r14-web")), "{req}");
    reject(&k, &req, child).await;
    // A human is shown every release's objects.
    let args = ["--kube-context", "dev", "uninstall", "r13", "r14"];
    let (req, child) = held(&k, spawn(&k, "helm", &k.kubeconfig, &args, &[])).await;
    let deletes = addresses(&req, "delete");
    for r in ["r13-web", "r14-web"] {
        assert!(deletes.iter().any(|a| a.contains(r)), "{r}: {req}");
    }
    reject(&k, &req, child).await;
    assert_eq!(releases(&k), before, "no release was removed");
    assert!(k
        .fake
        .get("apps/v1", "deployments", "dev", "r14-web")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_is_shown_against_the_live_object_it_replaces() {
    let k = world().await;
    k.sb.add_real("helm", &tools::helm4());
    k.fake.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "dev"}, "data": {"mode": "live"}}));
    let chart = k.sb.work.join("hooked");
    write_chart(&chart, "nginx:1.27");
    std::fs::write(
        chart.join("templates/hook.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  annotations:\n    \"helm.sh/hook\": pre-install\n    \"helm.sh/hook-delete-policy\": before-hook-creation\ndata:\n  mode: hook\n",
    )
    .unwrap();
    let args = ["--kube-context", "dev", "install", "r1", "./hooked"];
    let (req, child) = held(&k, spawn(&k, "helm", &k.kubeconfig, &args, &[])).await;
    let replaced = addresses(&req, "replace");
    assert!(replaced.iter().any(|a| a.contains("settings")), "{req}");
    assert!(
        !addresses(&req, "create")
            .iter()
            .any(|a| a.contains("settings")),
        "{req}"
    );
    let text = req["diff"]["text"].as_str().unwrap();
    assert!(text.contains("live") && text.contains("hook"), "{text}");
    reject(&k, &req, child).await;
    let live = k.fake.get("v1", "configmaps", "dev", "settings").unwrap();
    assert_eq!(live["data"]["mode"], "live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_behind_a_proxy_is_inexact_and_never_auto_approved() {
    let k = world().await;
    let relay = Relay::start("127.0.0.1:0", socket_of(&k.fake.url));
    let proxied = k.sb.path().join("proxied.kubeconfig");
    std::fs::write(
        &proxied,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: dev\n  cluster:\n    server: {}\n    proxy-url: http://{}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: dev\n  context: {{cluster: dev, user: u, namespace: dev}}\ncurrent-context: dev\n",
            k.fake.url, relay.addr
        ),
    )
    .unwrap();
    let args = ["create", "configmap", "via-proxy", "--from-literal=a=1"];
    let (req, child) = held(&k, spawn(&k, "kubectl", &proxied, &args, &[])).await;
    assert!(relay.carried() > 0, "the helpers went through the proxy");
    assert_eq!(req["changes"]["complete"], true, "{req}");
    let inexact = req["environment"]["inexact"].to_string();
    assert!(inexact.contains("proxy-url"), "{req}");
    let out = run(k
        .sb
        .cli()
        .args(["show", req["id"].as_str().unwrap(), "--data-dir"])
        .arg(&k.srv.data));
    let shown = stdout(&out);
    assert!(
        shown.contains("runs as     kubectl create configmap via-proxy")
            && shown.contains("--kubeconfig=<pinned kubeconfig> --context=dev"),
        "{shown}"
    );
    assert!(
        stdout(&out).contains("target inexact: proxy-url"),
        "{}",
        stdout(&out)
    );
    reject(&k, &req, child).await;
    assert!(k.fake.get("v1", "configmaps", "dev", "via-proxy").is_none());
    // The same create without the proxy is auto-approved: the proxy was the only difference.
    let out = finish(spawn(
        &k,
        "kubectl",
        &k.kubeconfig,
        &[
            "--context",
            "dev",
            "create",
            "configmap",
            "direct",
            "--from-literal=a=1",
        ],
        &[],
    ))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("approved by policy:dev-creates"),
        "{}",
        stderr(&out)
    );
    assert!(k.fake.get("v1", "configmaps", "dev", "direct").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_url_with_userinfo_does_not_match_a_loopback_glob() {
    // The old example's shape: dev passes, and dev is "any port on 127.0.0.1".
    let pass = |_: &str| {
        "[[environment]]\nname = \"dev\"\nrisk = \"low\"\nkube_servers = [\"http://127.0.0.1:*\"]\n\n[[rule]]\nname = \"dev-is-free\"\ntools = [\"kubectl\", \"helm\"]\nenvironments = [\"dev\"]\naction = \"pass\"\n".to_string()
    };
    let k = KubeGated::naming_the_fake(|_| String::new(), pass).await;
    let web = k.fake.put_deployment("default", "web");
    // The agent's relay on another loopback address, to "production" (the fake).
    let relay = Relay::start("127.0.0.2:0", socket_of(&k.fake.url));
    let kc = k.sb.path().join("userinfo.kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:6443@{}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context: {{cluster: c, user: u, namespace: default}}\ncurrent-context: c\n",
            relay.addr
        ),
    )
    .unwrap();
    let (req, child) = held(
        &k,
        spawn(&k, "kubectl", &kc, &["delete", "deployment", "web"], &[]),
    )
    .await;
    assert!(
        req["environment"]["inexact"]
            .to_string()
            .contains("userinfo"),
        "{req}"
    );
    reject(&k, &req, child).await;
    assert_eq!(
        k.fake.get("apps/v1", "deployments", "default", "web"),
        Some(web)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_made_request_must_fit_its_own_command() {
    let k = world().await;
    let agent = k.srv.agent(TOKEN_A);
    let made = |argv: &[&str], summary: Value| {
        let mut body = create_body(argv);
        body["environment"] = json!({"kube_context": "dev", "cluster_server": k.fake.url,
            "namespace": "dev", "exact": true});
        body["diff"]["summary"] = summary;
        body
    };
    let creates = json!({"complete": true, "summary": "+1 ~0 -0", "counts": {"add": 1},
        "resources": [{"address": "ConfigMap dev/x", "action": "create"}]});
    // A delete that claims to create: not approved by policy.
    let (s, v) = agent
        .post(
            "/api/v1/requests",
            made(&["delete", "deployment", "web"], creates.clone()),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state"], "pending", "{v}");
    // Nor a create whose model says nothing (`create` always creates), nor an unknown one.
    for summary in [
        json!({"complete": true, "resources": []}),
        json!({"complete": false, "unknown": ["no diff"], "resources": [{"address": "a", "action": "create"}]}),
        json!({"resources": [{"address": "ConfigMap dev/x", "action": "create"}]}),
    ] {
        let (s, v) = agent
            .post(
                "/api/v1/requests",
                made(&["create", "configmap", "x"], summary),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["state"], "pending", "{v}");
    }
    // The same model under the command it fits is approved.
    let (_, v) = agent
        .post(
            "/api/v1/requests",
            made(&["create", "configmap", "x"], creates),
        )
        .await;
    assert_eq!(v["state"], "approved", "{v}");
    // The counts shown are the server's, whatever the client wrote beside the model.
    let lying = json!({"complete": true, "summary": "+0 ~0 -0", "counts": {"destroy": 0},
        "resources": [{"address": "Deployment dev/web", "action": "delete"}]});
    let (_, v) = agent
        .post(
            "/api/v1/requests",
            made(&["delete", "deployment", "web"], lying),
        )
        .await;
    assert_eq!(v["changes"]["summary"], "+0 ~0 -1", "{v}");
    let out = run(k
        .sb
        .cli()
        .args(["show", v["id"].as_str().unwrap(), "--data-dir"])
        .arg(&k.srv.data));
    assert!(stdout(&out).contains("+0 ~0 -1"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_approve_rule_never_makes_a_harmless_command_wait() {
    let k = world().await;
    k.sb.add_real("helm", &tools::helm4());
    for (tool, args) in [
        ("kubectl", &["--context", "dev", "get", "configmaps"][..]),
        ("helm", &["--kube-context", "dev", "list"][..]),
    ] {
        match k
            .pending_or_exit(spawn(&k, tool, &k.kubeconfig, args, &[]))
            .await
        {
            Err(out) => assert_eq!(code(&out), 0, "{tool} {args:?}: {}", stderr(&out)),
            Ok((req, _)) => panic!("{tool} {args:?} waited for a human: {req}"),
        }
    }
}

#[test]
fn the_example_policy_loosens_no_loopback_wildcard_port() {
    let text = include_str!("../../policy.example.toml");
    let v: toml::Value = toml::from_str(text).unwrap();
    let loosening: Vec<&str> = v["rule"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| matches!(r["action"].as_str(), Some("pass" | "auto_approve")))
        .flat_map(|r| {
            r.get("environments")
                .and_then(|e| e.as_array())
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|e| e.as_str().map(String::from))
        .map(|s| &*s.leak())
        .collect();
    for env in v["environment"].as_array().unwrap() {
        if !loosening.contains(&env["name"].as_str().unwrap()) {
            continue;
        }
        for p in env
            .get("kube_servers")
            .and_then(|k| k.as_array())
            .into_iter()
            .flatten()
        {
            let p = p.as_str().unwrap();
            let rest = p.split_once("://").map_or(p, |(_, r)| r);
            let (host, port) = rest
                .split('/')
                .next()
                .unwrap()
                .rsplit_once(':')
                .unwrap_or((rest, ""));
            let loopback = host.starts_with("127.") || host == "localhost" || host == "[::1]";
            assert!(
                !(loopback && port.contains(['*', '?'])),
                "{p}: a local relay matches it"
            );
        }
    }
}
