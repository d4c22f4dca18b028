//! The approved run's command, as the writer builds it from a verified job and nothing else:
//! - the real tool from `[lockdown] path`, by its name;
//! - the run template with its placeholders filled: the sealed inputs the writer received and
//!   checked, and for kubectl and helm its own write kubeconfig, resolved with the real
//!   kubectl, cut down and sealed, which must reach the approved context, cluster server and
//!   namespace;
//! - an environment of its own: `PATH`, `HOME`, `[lockdown.writer] tool_env`, the write set of
//!   the request's environment (the server's matching, `policy::on_server::facts_of`), and the
//!   kube child settings (kuberc off, a private discovery cache); nothing from the agent;
//! - the working directory: an empty one of W's for kubectl and helm; the approved directory
//!   for terraform, whose data directory is W's own with the providers of
//!   `[lockdown.writer] terraform_providers` (never the runner's or the agent's);
//! - for helm install and upgrade, W renders the release itself first and runs only when the
//!   render is the approved one (its output, made with the write credentials, is never shown).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::verify::Verified;
use crate::policy::lockdown::Lockdown;
use crate::policy::{on_server, Context, Policy};
use crate::shim::sealed::Sealed;
use crate::tool::Tool;

/// What the writer runs with: its policy, and its home (credentials, data directories, caches).
pub(super) struct Writer<'a> {
    pub policy: &'a Policy,
    pub lockdown: &'a Lockdown,
    pub home: &'a Path,
}

/// The command, and what must stay open while it runs.
pub(super) struct Prepared {
    pub command: Command,
    pub keep: Option<Sealed>,
}

pub(super) fn command(
    w: &Writer<'_>,
    v: &Verified,
    stdio: [OwnedFd; 3],
) -> Result<Prepared, String> {
    let l = &w.lockdown;
    let real = find(&l.path, v.tool.name())?;
    let mut env = base_env(w, v)?;
    let inputs: Vec<String> = v.inputs.iter().map(Sealed::path).collect();
    let (kubeconfig, cwd) = match v.tool {
        Tool::Kubectl | Tool::Helm => {
            let (kc, dir) = kube(w, v, &mut env)?;
            (Some(kc), dir)
        }
        Tool::Terraform | Tool::Tofu => (None, terraform(w, v, &mut env)?),
    };
    let argv = super::bind::fill(
        &v.template,
        &inputs,
        kubeconfig.as_ref().map(Sealed::path).as_deref(),
    )?;
    if v.tool == Tool::Helm && matches!(path(v)?.as_str(), "install" | "upgrade") {
        check_render(v, &real, &argv, &env, &cwd)?;
    }
    let [stdin, stdout, stderr] = stdio;
    let mut c = Command::new(&real);
    c.arg0(v.tool.name())
        .args(&argv)
        .current_dir(&cwd)
        .env_clear()
        .envs(&env)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    Ok(Prepared {
        command: c,
        keep: kubeconfig,
    })
}

/// The first executable `name` in `dirs`.
fn find(dirs: &[PathBuf], name: &str) -> Result<PathBuf, String> {
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok())
        .ok_or_else(|| format!("no executable {name} in [lockdown] path"))
}

/// `PATH`, `HOME`, W's own settings and the write set of the request's environment.
fn base_env(w: &Writer<'_>, v: &Verified) -> Result<BTreeMap<String, String>, String> {
    let l = &w.lockdown;
    let mut path: Vec<PathBuf> = l.path.clone();
    path.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
    let path = std::env::join_paths(path).map_err(|e| e.to_string())?;
    let mut env = BTreeMap::new();
    env.insert("PATH".into(), path.to_string_lossy().into_owned());
    env.insert("HOME".into(), w.home.display().to_string());
    env.extend(l.writer.tool_env.clone());
    let args: Vec<OsString> = v.request.argv.iter().map(Into::into).collect();
    let inv = crate::argv::read(v.tool, &args, &|_| None).map_err(|e| e.to_string())?;
    let ctx = Context {
        cwd: Some(v.request.cwd.clone().into()),
        env: &|_| None,
        facts: Some(on_server::facts_of(v.tool, &v.request)),
        kube_server: &|| None,
    };
    let environment = w.policy.environment(v.tool, &inv, &ctx);
    if let Some(set) = l.credentials_for(environment.as_ref().map(|e| e.name.as_str())) {
        env.extend(set.write.clone());
    }
    Ok(env)
}

fn path(v: &Verified) -> Result<String, String> {
    let args: Vec<OsString> = v.request.argv.iter().map(Into::into).collect();
    Ok(crate::argv::read(v.tool, &args, &|_| None)
        .map_err(|e| e.to_string())?
        .path_string())
}

/// A private directory of W's (0700), made when missing.
fn private_dir(p: PathBuf) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&p)
        .map_err(|e| format!("cannot create {}: {e}", p.display()))?;
    Ok(p)
}

/// kubectl and helm: W's write kubeconfig, pinned to the approved target; the kube child
/// settings. Returns the sealed kubeconfig and the (empty) working directory.
fn kube(
    w: &Writer<'_>,
    v: &Verified,
    env: &mut BTreeMap<String, String>,
) -> Result<(Sealed, PathBuf), String> {
    let cache = private_dir(w.home.join(".hitl-gate/kube-cache"))?;
    let work = private_dir(w.home.join(".hitl-gate/work"))?;
    let kc = env
        .get("KUBECONFIG")
        .cloned()
        .ok_or("no write kubeconfig: set KUBECONFIG in the write credential set or [lockdown.writer] tool_env")?;
    env.insert("KUBERC".into(), "off".into());
    env.insert("KUBECTL_KUBERC".into(), "false".into());
    env.insert("KUBECACHEDIR".into(), cache.display().to_string());
    let kubectl = find(&w.lockdown.path, "kubectl")?;
    let args: Vec<OsString> = v.request.argv.iter().map(Into::into).collect();
    let inv = crate::argv::read(v.tool, &args, &|_| None).map_err(|e| e.to_string())?;
    let r = crate::shim::kube::resolve_with(&kubectl, v.tool, &inv, Some(&cache), Some(&kc))?;
    let (now, then) = (&r.target, &v.request.environment);
    for (what, a, b) in [
        ("context", &now.kube_context, &then.kube_context),
        ("cluster server", &now.cluster_server, &then.cluster_server),
        ("namespace", &now.namespace, &then.namespace),
    ] {
        if a != b {
            return Err(format!(
                "the write credential reaches {what} {a:?}, the approved command {b:?}"
            ));
        }
    }
    if v.tool == Tool::Helm {
        if let Some(ns) = &then.namespace {
            env.insert("HELM_NAMESPACE".into(), ns.clone());
        }
    }
    Ok((r.kubeconfig, work))
}

/// terraform: W's own data directory for the approved configuration, its providers from
/// `[lockdown.writer] terraform_providers`. Returns the approved working directory.
fn terraform(
    w: &Writer<'_>,
    v: &Verified,
    env: &mut BTreeMap<String, String>,
) -> Result<PathBuf, String> {
    let providers = w.lockdown.writer.terraform_providers.as_ref().ok_or(
        "terraform in lockdown needs [lockdown.writer] terraform_providers: the providers an \
         approved plan runs with come from there",
    )?;
    let dir = v
        .request
        .environment
        .dir
        .clone()
        .unwrap_or_else(|| v.request.cwd.clone());
    let data = super::terraform::data_dir(w.home, Path::new(&dir))?;
    let link = data.join("providers");
    if std::fs::read_link(&link).ok().as_deref() != Some(providers.as_path()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(providers, &link)
            .map_err(|e| format!("cannot link {}: {e}", link.display()))?;
    }
    env.insert("TF_DATA_DIR".into(), data.display().to_string());
    env.insert("TF_IN_AUTOMATION".into(), "1".into());
    Ok(PathBuf::from(&v.request.cwd))
}

/// helm install and upgrade: W's own server-side dry run of the run must render the approved
/// manifest. Its output and errors are not shown: they were made with the write credentials.
fn check_render(
    v: &Verified,
    real: &Path,
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
) -> Result<(), String> {
    let approved = v
        .request
        .artifact_sha256
        .iter()
        .find(|h| !v.inputs.iter().any(|s| s.sha256() == h.as_str()))
        .ok_or("the approval covers no rendered manifest")?;
    let mut a = argv.to_vec();
    let at = a.iter().position(|x| x == "--").unwrap_or(a.len());
    a.splice(at..at, ["--dry-run=server", "-o", "json"].map(String::from));
    let mut c = Command::new(real);
    c.args(&a).current_dir(cwd).env_clear().envs(env);
    let render = crate::shim::helm_model::render(c)
        .map_err(|_| "the writer's own render of the release failed (its output is not shown)")?;
    if crate::hex::sha256(render.manifest.as_bytes()) != *approved {
        return Err(
            "the release renders differently with the write credentials than the approved render"
                .into(),
        );
    }
    Ok(())
}
