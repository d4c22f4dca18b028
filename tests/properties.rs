//! Property tests (proptest) of the pieces an agent's input reaches first: the argv readers,
//! the classification with the example policy, and the masking of Kubernetes Secrets.

use std::ffi::OsString;

use proptest::prelude::*;
use serde_json::{json, Value};

use hitl_gate::argv;
use hitl_gate::diff::kube::{objects_change, SecretValues};
use hitl_gate::policy::{self, Context, Verdict};
use hitl_gate::tool::Tool;

/// Words an agent might put on a command line: subcommands, flags in every spelling, values,
/// terminators and noise.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "delete",
            "get",
            "apply",
            "create",
            "run",
            "scale",
            "patch",
            "rollout",
            "restart",
            "upgrade",
            "install",
            "uninstall",
            "plan",
            "destroy",
            "state",
            "rm",
            "config",
            "view",
            "-n",
            "-nprod",
            "-n=prod",
            "--namespace",
            "--context",
            "--context=prod",
            "-f",
            "-",
            "-f=-",
            "-k",
            "--raw",
            "--raw=/x",
            "--dry-run",
            "--dry-run=server",
            "--dry-run=client",
            "-o",
            "json",
            "--",
            "-chdir=x",
            "-auto-approve",
            "-var",
            "a=b",
            "--kube-context",
            "--set",
            "--values",
            "-R",
            "-Rf",
            "--replicas=3",
            "pod",
            "deploy/web",
            "=",
            "-",
            "---",
        ])
        .prop_map(String::from),
        "[-=a-z0-9/.]{0,12}",
        any::<String>(),
    ]
}

fn argv() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(word(), 0..12)
}

fn os(args: &[String]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// The example policy, as shipped.
fn example() -> policy::Policy {
    policy::load::parse(include_str!("../policy.example.toml")).expect("the example parses")
}

/// A context that reads nothing from this machine: no environment, no kube server.
fn nowhere() -> Context<'static> {
    Context {
        cwd: Some("/nonexistent".into()),
        env: &|_| None,
        facts: None,
        kube_server: &|| None,
    }
}

fn classify(p: &policy::Policy, tool: Tool, args: &[String]) -> Option<Verdict> {
    let inv = argv::read(tool, &os(args), &|_| None).ok()?;
    Some(p.classify(tool, &inv, &nowhere()))
}

fn passes(v: &Option<Verdict>) -> bool {
    matches!(v, Some(Verdict::Pass(_)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever argv holds, the readers answer (an invocation or a read error), never panic.
    #[test]
    fn random_argv_never_panics(args in argv()) {
        for tool in hitl_gate::tool::ALL_TOOLS {
            let _ = argv::read(tool, &os(&args), &|_| None);
        }
    }

    /// Adding `--dry-run=…` anywhere before the terminator never turns a `--raw` kubectl
    /// command into a pass.
    #[test]
    fn dry_run_never_passes_a_raw_command(
        mut args in argv(),
        sub in prop::sample::select(vec!["delete", "create", "replace", "apply", "patch"]),
        path in "/[a-z/]{1,20}",
        value in prop::sample::select(vec!["server", "client", "all", "true"]),
        at in any::<prop::sample::Index>(),
    ) {
        let p = example();
        args.retain(|a| a != "--");
        args.insert(0, sub.to_string());
        args.push("--raw".into());
        args.push(path);
        let before = classify(&p, Tool::Kubectl, &args);
        prop_assume!(!passes(&before));
        let mut with = args.clone();
        with.insert(at.index(with.len() + 1).max(1), format!("--dry-run={value}"));
        // Still a --raw command as kubectl reads it (a value flag can swallow the word).
        let raw = |a: &[String]| {
            argv::read(Tool::Kubectl, &os(a), &|_| None).is_ok_and(|i| i.has_flag(&["--raw"]))
        };
        prop_assume!(raw(&args) && raw(&with));
        let after = classify(&p, Tool::Kubectl, &with);
        prop_assert!(!passes(&after), "{with:?} passed: {after:?}");
    }

    /// A gated command never becomes a pass when an unknown flag is put before the subcommand.
    #[test]
    fn an_unknown_flag_before_the_subcommand_never_passes_a_gated_command(
        tool in prop::sample::select(vec![Tool::Kubectl, Tool::Helm]),
        rest in prop::collection::vec("[a-z0-9/=.-]{1,10}", 0..5),
        flag in "--zz[a-z]{1,8}(=[a-z]{0,4})?",
    ) {
        let p = example();
        let sub = if tool == Tool::Kubectl { "delete" } else { "uninstall" };
        let mut args = vec![sub.to_string()];
        args.extend(rest);
        let v = classify(&p, tool, &args);
        prop_assume!(matches!(v, Some(Verdict::Gate(_))));
        let mut with = vec![flag.clone()];
        with.extend(args);
        prop_assert!(!passes(&classify(&p, tool, &with)), "{with:?}");
    }

    /// No Secret value (plain, base64, or base64 cut at its padding) survives in the shown diff
    /// or the change model, whatever changes between the live object and the new one.
    #[test]
    fn no_secret_value_survives_a_diff(
        live in secret(),
        new in secret(),
        in_list in any::<bool>(),
    ) {
        let (live_obj, live_values) = live;
        let (new_obj, new_values) = new;
        let wrap = |o: Value| if in_list { json!({"kind": "List", "items": [o]}) } else { o };
        let (b, a) = (hitl_gate::diff::kube::items(wrap(live_obj)), hitl_gate::diff::kube::items(wrap(new_obj)));
        let (text, set) = objects_change(&b, &a, true, false);
        let model = set.to_json().to_string();
        let mut redact = SecretValues::default();
        for o in b.iter().chain(&a) {
            redact.collect(o);
        }
        for v in live_values.iter().chain(&new_values) {
            let b64 = hitl_gate::hex::base64_encode(v.as_bytes());
            for needle in [v.as_str(), b64.as_str(), b64.trim_end_matches('=')] {
                prop_assert!(!text.contains(needle), "{needle:?} in {text}");
                prop_assert!(!model.contains(needle), "{needle:?} in {model}");
            }
            // The last line of defence catches each value in any text.
            let leaked = format!("x{v}y {b64}");
            let red = redact.redact(&leaked);
            prop_assert!(!red.contains(v.as_str()) && !red.contains(b64.trim_end_matches('=')), "{red}");
        }
    }
}

/// A Secret named `s` with random `data` (base64) and `stringData` (plain) values, a label, and
/// (sometimes) the last-applied annotation client-side apply leaves; and its values.
fn secret() -> impl Strategy<Value = (Value, Vec<String>)> {
    let value = "[A-Za-z0-9+/!@#%^&*(){}\\[\\] ]{6,24}";
    (
        prop::collection::btree_map("[a-z]{1,6}", value, 0..4),
        prop::collection::btree_map("[a-z]{1,6}", value, 0..3),
        "[a-z]{1,6}",
        any::<bool>(),
    )
        .prop_map(|(data, string_data, label, annotated)| {
            let mut s = json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "s", "namespace": "ns", "labels": {"tier": label}},
                "data": data.iter().map(|(k, v)| (k.clone(), json!(hitl_gate::hex::base64_encode(v.as_bytes())))).collect::<serde_json::Map<_, _>>(),
                "stringData": string_data});
            if annotated {
                let copy = s.to_string();
                s["metadata"]["annotations"] =
                    json!({"kubectl.kubernetes.io/last-applied-configuration": copy});
            }
            let values = data.into_values().chain(s["stringData"].as_object().unwrap().values().map(|v| v.as_str().unwrap().to_string())).collect();
            (s, values)
        })
}

/// The gated corpus of the auto-approval property: commands an agent sends for approval.
const GATED: &[(Tool, &str)] = &[
    (Tool::Kubectl, "delete deployment web"),
    (Tool::Kubectl, "apply -f x.yaml"),
    (Tool::Kubectl, "create configmap x --from-literal=a=1"),
    (Tool::Kubectl, "replace --force -f x.yaml"),
    (Tool::Kubectl, "rollout restart deploy/web"),
    (Tool::Kubectl, "exec web -- sh"),
    (Tool::Kubectl, "patch deploy web -p {}"),
    (Tool::Kubectl, "scale deploy web --replicas=3"),
    (Tool::Kubectl, "drain node-1"),
    (Tool::Kubectl, "ctx prod"),
    (Tool::Helm, "install r ./chart"),
    (Tool::Helm, "upgrade r ./chart"),
    (Tool::Helm, "uninstall a b"),
    (Tool::Helm, "myplugin run"),
    (Tool::Terraform, "apply"),
    (Tool::Terraform, "destroy"),
    (Tool::Terraform, "import a.b id"),
];

/// A policy where deletes in dev pass and anything else in dev is auto-approved, when the server
/// can tell.
fn loose() -> policy::Policy {
    policy::load::parse(
        "version = 1\n[[environment]]\nname = \"dev\"\nrisk = \"low\"\nkube_servers = [\"https://dev.example.com:6443\"]\nterraform_backends = [\"local\"]\n\n[[rule]]\nname = \"dev-auto\"\nenvironments = [\"dev\"]\naction = \"auto_approve\"\nchanges = [\"create\", \"update\", \"delete\", \"replace\", \"read\", \"import\", \"move\", \"drift\", \"output\"]\n\n[[rule]]\nname = \"dev-free\"\nsubcommands = [\"delete\", \"destroy\"]\nenvironments = [\"dev\"]\naction = \"pass\"\n",
    )
    .expect("the property's policy parses")
}

fn action() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "create", "update", "delete", "replace", "read", "no-op", "import", "move", "drift",
            "output", "explode",
        ])
        .prop_map(|a| json!(a)),
        Just(json!({"unknown": "forget"})),
        Just(Value::Null),
    ]
}

/// A change model as a request may carry it: complete or not (or silent about it).
fn model() -> impl Strategy<Value = (Value, bool)> {
    (
        prop::collection::vec(action(), 0..4),
        prop::sample::select(vec![Some(true), Some(false), None]),
        prop::bool::ANY,
    )
        .prop_map(|(actions, complete, why)| {
            let resources: Vec<Value> = actions
                .into_iter()
                .enumerate()
                .map(|(i, a)| json!({"address": format!("r{i}"), "action": a}))
                .collect();
            let mut m = json!({"resources": resources});
            if let Some(c) = complete {
                m["complete"] = json!(c);
            }
            if why {
                m["unknown"] = json!(["a lookup failed"]);
            }
            let known = complete == Some(true) && !why;
            (m, known)
        })
}

/// A target as a request may report it: dev's URL in odd spellings, exact or not.
fn target() -> impl Strategy<Value = (Value, bool)> {
    (
        prop::sample::select(vec![
            "https://dev.example.com:6443",
            "https://DEV.example.com:6443",
            "https://dev.example.com:6443@prod.example.com:6443",
            "https://dev.example.com.:6443",
            "dev.example.com:6443",
        ]),
        prop::sample::select(vec![Some(true), Some(false), None]),
        prop::bool::ANY,
    )
        .prop_map(|(server, exact, why)| {
            let mut t = json!({"kube_context": "dev", "cluster_server": server,
                "terraform_backend": "local", "namespace": "dev"});
            if let Some(e) = exact {
                t["exact"] = json!(e);
            }
            if why {
                t["inexact"] = json!(["HTTPS_PROXY is set"]);
            }
            (t, exact == Some(true) && !why)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whenever the change model is unknown or the target inexact, the server never
    /// auto-approves and no pass rule applies, whatever the command, the model's actions or the
    /// target's spelling.
    #[test]
    fn unknown_or_inexact_never_loosens_the_gate(
        cmd in prop::sample::select(GATED.to_vec()),
        (summary, known) in model(),
        (environment, exact) in target(),
    ) {
        let (tool, line) = cmd;
        // A server spelling kubectl would read as another host, or not at all, is never exact
        // for a kube command, whatever the request claims.
        let server = environment["cluster_server"].as_str().unwrap();
        let clean = tool.is_terraform_like()
            || (server.starts_with("https://") && !server.contains('@') && !server.contains(".:"));
        let exact = exact && clean;
        prop_assume!(!known || !exact);
        let req: hitl_gate::api::CreateRequest = serde_json::from_value(json!({
            "tool": tool.name(),
            "argv": line.split_whitespace().collect::<Vec<_>>(),
            "cwd": "/work", "host": "h", "environment": environment,
            "diff": {"text": "", "summary": summary}, "nonce": "00",
        })).unwrap();
        let v = policy::on_server::judge(&loose(), tool, &req, "agent-a", None);
        prop_assert!(v.rule != "dev-auto", "auto-approved: {v:?} for {req:?}");
        prop_assert!(v.rule != "dev-free" || exact, "passed: {v:?} for {req:?}");
    }
}
