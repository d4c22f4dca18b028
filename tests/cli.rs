//! `hitl-gate explain` and `hitl-gate doctor`, run as the built binary.

use std::os::unix::fs::symlink;

use crate::support::{bin, code, run, stderr, stdout, Sandbox};

#[test]
fn explain_prints_every_step_without_running_anything() {
    let sb = Sandbox::new();
    sb.script(&sb.real, "kubectl", "#!/bin/sh\ntouch \"$HOME/ran\"\n");
    let p = sb.policy(
        "p.toml",
        "version = 1\n[[environment]]\nname = \"production\"\nrisk = \"high\"\nkube_contexts = [\"prod\"]\n",
    );
    let out = run(sb.cli().env("HITL_GATE_POLICY", &p).args([
        "explain",
        "--",
        "kubectl",
        "--context",
        "prod",
        "-n",
        "web",
        "delete",
        "deploy",
        "api",
    ]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "tool:         kubectl",
        &format!("real binary:  {}", sb.real.join("kubectl").display()),
        "subcommand:   delete",
        "context=prod namespace=web",
        "environment:  production (risk High)",
        "rule:         builtin:kubectl-mutating",
        "verdict:      gate",
        &format!("policy:       {} (from $HITL_GATE_POLICY)", p.display()),
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(
        !sb.home.join("ran").exists(),
        "explain must not run the tool"
    );
}

#[test]
fn explain_prints_the_parsed_server_and_whether_the_target_is_exact() {
    let sb = Sandbox::new();
    sb.add_real("kubectl", &crate::support::tools::kubectl());
    let p = sb.policy(
        "p.toml",
        "version = 1\n[[environment]]\nname = \"dev\"\nrisk = \"low\"\nkube_servers = [\"https://dev.example.com:6443\"]\n",
    );
    let kubeconfig = |server: &str, extra: &str| {
        let k = sb.path().join("kc");
        std::fs::write(&k, format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n{extra}users:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n"
        )).unwrap();
        k
    };
    let explain = |kc: &std::path::Path| {
        let out = run(sb
            .cli()
            .env("HITL_GATE_POLICY", &p)
            .env("KUBECONFIG", kc)
            .args(["explain", "--", "kubectl", "delete", "deploy", "web"]));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        stdout(&out)
    };
    let text = explain(&kubeconfig("https://DEV.example.com", ""));
    assert!(
        text.contains(
            "server:       https://DEV.example.com (host dev.example.com, port 443; exact)"
        ),
        "{text}"
    );
    let text = explain(&kubeconfig(
        "https://dev.example.com:6443",
        "    proxy-url: http://127.0.0.1:3128\n",
    ));
    assert!(text.contains("port 6443; INEXACT: proxy-url"), "{text}");
    let text = explain(&kubeconfig(
        "https://dev.example.com:6443@10.0.0.9:6443",
        "",
    ));
    assert!(text.contains("cannot be read exactly; INEXACT"), "{text}");
}

#[test]
fn explain_json_is_machine_readable() {
    let sb = Sandbox::new();
    sb.fake_real("helm");
    let out = run(sb.cli().args([
        "explain",
        "--json",
        "--",
        "helm",
        "--kube-context",
        "stage",
        "upgrade",
        "web",
        "./chart",
        "-f",
        "-",
    ]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(v["tool"], "helm");
    assert_eq!(v["subcommand"], "upgrade");
    assert_eq!(v["verdict"], "gate");
    assert_eq!(v["rule"], "builtin:helm-mutating");
    assert_eq!(v["target"]["context"], "stage");
    assert_eq!(v["known_subcommand"], true);
    assert_eq!(v["real_binary"], sb.real.join("helm").display().to_string());

    // No real kubectl on this PATH (the machine's /usr/bin may have one).
    let out = run(sb
        .cli()
        .env(
            "PATH",
            format!("{}:{}", sb.shims.display(), sb.real.display()),
        )
        .args(["explain", "--json", "--", "kubectl", "get", "pods", "-n"]));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(v["verdict"], "refuse");
    assert!(
        v["argv_error"]
            .as_str()
            .unwrap()
            .contains("-n needs a value"),
        "{v}"
    );
    assert!(
        v["real_binary_error"]
            .as_str()
            .unwrap()
            .contains("real kubectl not found"),
        "{v}"
    );

    let out = run(sb.cli().args(["explain", "--", "vim", "x"]));
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("not a gated tool"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn doctor_passes_when_shims_come_first() {
    let sb = Sandbox::new();
    for t in ["terraform", "kubectl", "helm"] {
        sb.fake_real(t);
    }
    // tofu is not installed at all: no shim either (an installer would link only installed tools).
    std::fs::remove_file(sb.shims.join("tofu")).unwrap();
    let out = run(sb.cli().arg("doctor"));
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "ok   kubectl: shim {} → real {}",
            sb.shims.join("kubectl").display(),
            sb.real.join("kubectl").display()
        )),
        "{text}"
    );
    assert!(text.contains("note tofu: not installed here"), "{text}");
    assert!(text.contains("ok   policy: built-in rules"), "{text}");
}

#[test]
fn doctor_fails_when_a_real_tool_comes_first_or_is_missing_or_the_policy_is_bad() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    // The real dir before the shims: the agent would bypass the gate.
    let path = format!("{}:{}:/usr/bin:/bin", sb.real.display(), sb.shims.display());
    let out = run(sb.cli().env("PATH", &path).arg("doctor"));
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("FAIL kubectl: the first kubectl on PATH is"),
        "{}",
        stdout(&out)
    );

    // Shim present, no real helm anywhere.
    let out = run(sb.cli().arg("doctor"));
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("FAIL helm: real helm not found"),
        "{}",
        stdout(&out)
    );

    let p = sb.policy("bad.toml", "version = 1\nnonsense = 1\n");
    let out = run(sb.cli().env("HITL_GATE_POLICY", &p).arg("doctor"));
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("FAIL policy"), "{}", stdout(&out));
}

#[test]
fn doctor_recognises_a_shim_symlinked_from_elsewhere() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    let other = sb.path().join("opt-shims");
    std::fs::create_dir_all(&other).unwrap();
    symlink(bin(), other.join("kubectl")).unwrap();
    let path = format!("{}:{}:/usr/bin:/bin", other.display(), sb.real.display());
    let out = run(sb.cli().env("PATH", &path).arg("doctor"));
    assert!(
        stdout(&out).contains("ok   kubectl: shim"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_example_policy_is_valid() {
    let sb = Sandbox::new();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/policy.example.toml");
    let p = sb.policy("example.toml", &std::fs::read_to_string(example).unwrap());
    let out = run(sb.cli().env("HITL_GATE_POLICY", &p).args([
        "explain",
        "--json",
        "--",
        "kubectl",
        "--context",
        "prod-eu",
        "drain",
        "node1",
    ]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["rule"], "never-drain-production");
}

#[test]
fn the_example_lockdown_section_loads_when_uncommented() {
    let example = include_str!("../policy.example.toml");
    let start = example
        .find("# [lockdown]\n")
        .expect("the example documents [lockdown]");
    let block: String = example[start..]
        .lines()
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    assert!(block.contains("[lockdown.credentials.default]"), "{block}");
    let policy = hitl_gate::policy::load::parse(&format!("version = 1\n{block}"))
        .unwrap_or_else(|e| panic!("{e}\n{block}"));
    let l = policy.lockdown().expect("[lockdown]");
    let set = l
        .credentials_for(Some("production"))
        .expect("the default set");
    assert_ne!(set.read["KUBECONFIG"], set.write["KUBECONFIG"]);
    assert_ne!(l.writer.user, l.runner_user);
}
