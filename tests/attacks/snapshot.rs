//! Every input the run reads must be the bytes the approver saw: inputs are read once into a
//! private snapshot, the diff is made from the snapshot and the run uses it. Non-regular files,
//! `/dev/*` and `/proc/*` are refused. The terraform plan is a sealed copy no process can change.

use std::process::Stdio;
use std::time::Duration;

use crate::support::gate::{finish, Gated, KubeGated};
use crate::support::{code, stderr, tools};

use super::act_before_approval::deployment;

fn replicas(k: &KubeGated, ns: &str, name: &str) -> Option<u64> {
    k.fake
        .get("apps/v1", "deployments", ns, name)
        .and_then(|d| d["spec"]["replicas"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kustomize_base_edited_while_pending_does_not_change_what_runs() {
    let k = KubeGated::new().await;
    let w = &k.sb.work;
    std::fs::create_dir_all(w.join("base")).unwrap();
    std::fs::create_dir_all(w.join("overlay")).unwrap();
    std::fs::write(w.join("base/web.yaml"), deployment("web", 2)).unwrap();
    std::fs::write(
        w.join("base/kustomization.yaml"),
        "resources:\n- web.yaml\n",
    )
    .unwrap();
    std::fs::write(
        w.join("overlay/kustomization.yaml"),
        "resources:\n- ../base\n",
    )
    .unwrap();
    let kc = k.kubeconfig.display().to_string();
    let mut child = k.spawn_with(
        "kubectl",
        w,
        &["apply", "-k", "overlay"],
        &[("KUBECONFIG", &kc)],
        Stdio::null(),
    );
    let req = k.pending(&mut child).await;
    assert!(
        req["diff"]["text"]
            .as_str()
            .unwrap()
            .contains("replicas: 2"),
        "{}",
        req["diff"]["text"]
    );
    std::fs::write(w.join("base/web.yaml"), deployment("web", 40)).unwrap();
    k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
    let out = finish(child).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        replicas(&k, "prod", "web"),
        Some(2),
        "the shown base ran, not the edit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_edited_while_pending_does_not_change_what_runs() {
    let k = KubeGated::new().await;
    let w = &k.sb.work;
    std::fs::create_dir_all(w.join("dir")).unwrap();
    std::fs::write(w.join("dir/web.yaml"), deployment("web", 3)).unwrap();
    let kc = k.kubeconfig.display().to_string();
    for args in [
        &["apply", "-f", "dir"][..],
        &["apply", "-f", "dir/web.yaml"],
    ] {
        std::fs::write(w.join("dir/web.yaml"), deployment("web", 3)).unwrap();
        let mut child = k.spawn_with("kubectl", w, args, &[("KUBECONFIG", &kc)], Stdio::null());
        let req = k.pending(&mut child).await;
        std::fs::write(w.join("dir/web.yaml"), deployment("web", 30)).unwrap();
        std::fs::write(w.join("dir/extra.yaml"), deployment("extra", 1)).unwrap();
        k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
        let out = finish(child).await;
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert_eq!(replicas(&k, "prod", "web"), Some(3), "{args:?}");
        assert_eq!(replicas(&k, "prod", "extra"), None, "{args:?}");
        std::fs::remove_file(w.join("dir/extra.yaml")).unwrap();
    }
}

/// A FIFO whose writer serves `a` to the first reader and `b` to every later one, until dropped.
struct Fifo {
    path: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Fifo {
    fn new(path: std::path::PathBuf, a: String, b: String) -> Fifo {
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                use std::os::unix::fs::OpenOptionsExt;
                // Non-blocking open fails while nobody reads; poll for a reader.
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(nix::libc::O_NONBLOCK)
                    .open(&p)
                {
                    Ok(mut f) => {
                        let text = if n == 0 { &a } else { &b };
                        let _ = std::io::Write::write_all(&mut f, text.as_bytes());
                        n += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Fifo { path, stop }
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_and_device_files_are_refused_as_inputs() {
    let k = KubeGated::new().await;
    let w = &k.sb.work;
    let fifo = Fifo::new(
        w.join("m.yaml"),
        deployment("web", 1),
        deployment("web", 50),
    );
    let kc = k.kubeconfig.display().to_string();
    let prod_kc = std::fs::read_to_string(&k.kubeconfig).unwrap();
    let kfifo = Fifo::new(
        w.join("kubeconfig.fifo"),
        prod_kc.clone(),
        prod_kc.replace("current-context: prod", "current-context: dev"),
    );
    let kfifo_path = kfifo.path.display().to_string();
    type Env<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Vec<&str>, Env)> = vec![
        (vec!["apply", "-f", "m.yaml"], vec![("KUBECONFIG", &kc)]),
        (vec!["apply", "-f", "/dev/stdin"], vec![("KUBECONFIG", &kc)]),
        (
            vec!["apply", "-f", "/proc/self/fd/0"],
            vec![("KUBECONFIG", &kc)],
        ),
        (
            vec!["delete", "deploy", "web"],
            vec![("KUBECONFIG", &kfifo_path)],
        ),
        (
            vec!["--kubeconfig", &kfifo_path, "delete", "deploy", "web"],
            vec![],
        ),
    ];
    for (args, env) in cases {
        let stdin = Stdio::from(std::fs::File::open(w.join("..").join("home/tf.rc")).unwrap());
        let child = k.spawn_with("kubectl", w, &args, &env, stdin);
        let out = match k.pending_or_exit(child).await {
            Ok((req, child)) => {
                k.decide(req["id"].as_str().unwrap(), "reject", "no").await;
                finish(child).await
            }
            Err(out) => out,
        };
        assert_eq!(code(&out), 87, "{args:?} {env:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a regular file")
                || stderr(&out).contains("/dev/")
                || stderr(&out).contains("/proc/"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    drop((fifo, kfifo));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_values_from_stdin_devices_or_urls_are_refused() {
    let k = KubeGated::new().await;
    k.sb.add_real("helm", &tools::helm4());
    crate::support::kube::write_chart(&k.sb.work.join("chart"), "nginx:1.27");
    let kc = k.kubeconfig.display().to_string();
    for args in [
        &["upgrade", "--install", "rel", "./chart", "-f", "/dev/stdin"][..],
        &[
            "upgrade",
            "--install",
            "rel",
            "./chart",
            "--values",
            "/proc/self/fd/0",
        ],
        &[
            "upgrade",
            "--install",
            "rel",
            "./chart",
            "-f",
            "https://example.com/v.yaml",
        ],
        &[
            "upgrade",
            "--install",
            "rel",
            "./chart",
            "--set-file",
            "replicas=/dev/stdin",
        ],
    ] {
        std::fs::write(k.sb.path().join("v.yaml"), "replicas: 9\n").unwrap();
        let stdin = Stdio::from(std::fs::File::open(k.sb.path().join("v.yaml")).unwrap());
        let child = k.spawn_with("helm", &k.sb.work, args, &[("KUBECONFIG", &kc)], stdin);
        let out = match k.pending_or_exit(child).await {
            Ok((req, child)) => {
                k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
                finish(child).await
            }
            Err(out) => out,
        };
        assert_eq!(code(&out), 87, "{args:?}: {}", stderr(&out));
        assert!(
            k.fake
                .get("apps/v1", "deployments", "prod", "rel-web")
                .is_none(),
            "{args:?} installed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_chart_edited_while_pending_does_not_change_what_runs() {
    for helm in [tools::helm4(), tools::helm3()] {
        let k = KubeGated::new().await;
        k.sb.add_real("helm", &helm);
        let chart = k.sb.work.join("chart");
        crate::support::kube::write_chart(&chart, "nginx:1.27");
        std::fs::write(k.sb.work.join("values.yaml"), "replicas: 2\n").unwrap();
        let kc = k.kubeconfig.display().to_string();
        let mut child = k.spawn_with(
            "helm",
            &k.sb.work,
            &[
                "upgrade",
                "--install",
                "rel",
                "./chart",
                "-f",
                "values.yaml",
            ],
            &[("KUBECONFIG", &kc)],
            Stdio::null(),
        );
        let req = k.pending(&mut child).await;
        assert!(
            req["diff"]["text"].as_str().unwrap().contains("nginx:1.27"),
            "{}",
            req["diff"]["text"]
        );
        crate::support::kube::write_chart(&chart, "evil:latest");
        std::fs::write(k.sb.work.join("values.yaml"), "replicas: 20\n").unwrap();
        k.decide(req["id"].as_str().unwrap(), "approve", "ok").await;
        let out = finish(child).await;
        assert_eq!(code(&out), 0, "{}: {}", helm.display(), stderr(&out));
        let d = k
            .fake
            .get("apps/v1", "deployments", "prod", "rel-web")
            .unwrap();
        assert_eq!(d["spec"]["replicas"], 2, "{d}");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27",
            "{d}"
        );
    }
}

/// The terraform plan the approval covers is a sealed in-memory copy: a process of the agent's
/// own user that finds it (in `/proc/<shim>/fd`) cannot write to it, and no plan file is left
/// where it could be swapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approved_plan_cannot_be_changed_by_the_agents_user() {
    let g = Gated::new("", "").await;
    g.sb.add_real("terraform", &tools::terraform_1_0());
    let dir = g.sb.work.join("tf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\", version = \"2.1.2\" }\n  }\n}\nresource \"null_resource\" \"a\" {}\n",
    )
    .unwrap();
    let mut init = g.sb.direct("terraform");
    init.args(["init", "-input=false", "-plugin-dir"])
        .arg(tools::provider_dir())
        .current_dir(&dir);
    assert_eq!(code(&crate::support::run(&mut init)), 0);
    let mut child = g.spawn_in("terraform", &dir, &["apply"], &[]);
    let req = g.pending(&mut child).await;
    let pid = child.id();
    let mut sealed = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if target.to_string_lossy().starts_with("/memfd:") {
            sealed += 1;
            let w = std::fs::OpenOptions::new().write(true).open(fd.path());
            let wrote = w.and_then(|mut f| std::io::Write::write_all(&mut f, b"PK swapped"));
            assert!(wrote.is_err(), "{} is writable", target.display());
        }
    }
    assert!(sealed >= 1, "no sealed plan among the shim's files");
    let run_dirs = g.tmp.join(format!("hitl-gate-{}", nix::unistd::getuid()));
    for entry in walk(&run_dirs) {
        assert!(
            !entry.ends_with(".tfplan"),
            "a plan file is on disk: {}",
            entry.display()
        );
    }
    g.decide(req["id"].as_str().unwrap(), "reject", "no").await;
    assert_eq!(code(&finish(child).await), 80);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
