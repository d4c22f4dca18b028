//! helm's inputs on the gated path, read once into sealed snapshots: the chart (a directory
//! packaged with `helm package`, a local archive read, anything else pulled once with
//! `helm pull` and the agent's repository flags, which the run then no longer needs), the
//! values files, the `--set-file` files and `--kube-ca-file`; and the argv edited to name them.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::argv_edit::{render_flags, ArgvEdit};
use super::kube;
use super::sealed::Snapshots;
use crate::argv::Invocation;

/// Flags that say where a chart comes from: used once, by `helm pull`, and not by the run,
/// which reads the pulled snapshot.
pub const CHART_SOURCE: &[&str] = &[
    "--ca-file",
    "--cert-file",
    "--devel",
    "--insecure-skip-tls-verify",
    "--key-file",
    "--keyring",
    "--pass-credentials",
    "--password",
    "--plain-http",
    "--repo",
    "--username",
    "--verify",
    "--version",
];

/// What every helm child needs: the real helm, the private kube cache, the run directory.
pub struct Env<'a> {
    pub real: &'a Path,
    pub cache: &'a Path,
    pub run_dir: &'a Path,
}

impl Env<'_> {
    pub fn command(&self, args: &[String]) -> Command {
        command(self.real, args, self.cache)
    }
}

/// A helm command with the kube child environment.
pub fn command(real: &Path, args: &[String], cache: &Path) -> Command {
    let mut c = Command::new(real);
    c.args(args);
    kube::child_env(&mut c, Some(cache));
    c
}

/// The agent's inputs, sealed.
pub struct Inputs {
    pub sealed: Snapshots,
    /// Global flags naming snapshots (`--kube-ca-file=…`), for the helpers.
    pub global: Vec<String>,
}

impl Inputs {
    pub fn read(
        env: &Env<'_>,
        inv: &Invocation,
        path: &str,
        edit: &mut ArgvEdit<'_>,
    ) -> Result<Inputs, String> {
        let mut inputs = Inputs {
            sealed: Snapshots::default(),
            global: Vec::new(),
        };
        for (i, (name, value)) in inv.flags.iter().enumerate() {
            let Some(v) = value else { continue };
            match name.as_str() {
                "-f" | "--values" => {
                    if v == "-" || v.contains("://") {
                        return Err(format!(
                            "values from {v} cannot be read once and shown (pass a local file)"
                        ));
                    }
                    let s = inputs
                        .sealed
                        .seal(v, super::sealed::read_input(Path::new(v))?)?;
                    edit.drop_flag(i);
                    edit.insert(format!("--values={s}"));
                }
                "--set-file" => {
                    let mut parts = Vec::new();
                    for pair in v.split(',') {
                        let (key, file) = pair
                            .split_once('=')
                            .ok_or_else(|| format!("--set-file {pair:?} is not key=path"))?;
                        let s = inputs
                            .sealed
                            .seal(file, super::sealed::read_input(Path::new(file))?)?;
                        parts.push(format!("{key}={s}"));
                    }
                    edit.drop_flag(i);
                    edit.insert(format!("--set-file={}", parts.join(",")));
                }
                "--kube-ca-file" => {
                    let s = inputs
                        .sealed
                        .seal(v, super::sealed::read_input(Path::new(v))?)?;
                    edit.drop_flag(i);
                    let flag = format!("--kube-ca-file={s}");
                    edit.insert(flag.clone());
                    inputs.global.push(flag);
                }
                n if CHART_SOURCE.contains(&n) && matches!(path, "upgrade" | "install") => {
                    edit.drop_flag(i);
                }
                _ => {}
            }
        }
        // Boolean chart-source flags (`--verify`, `--devel`) have no value.
        if matches!(path, "upgrade" | "install") {
            for (i, (name, value)) in inv.flags.iter().enumerate() {
                if value.is_none() && CHART_SOURCE.contains(&name.as_str()) {
                    edit.drop_flag(i);
                }
            }
            if let Some(chart) = inv.positionals.get(1) {
                let bytes = chart_archive(env, inv, chart)?;
                let s = inputs.sealed.seal(&format!("chart {chart}"), bytes)?;
                edit.replace_positional(1, s);
            }
        }
        Ok(inputs)
    }
}

/// The chart as one archive: a directory packaged, a local archive read, anything else pulled
/// (with the agent's repository flags, and `--verify` if it asked).
fn chart_archive(env: &Env<'_>, inv: &Invocation, chart: &str) -> Result<Vec<u8>, String> {
    let local = Path::new(chart);
    let out = env.run_dir.join("chart");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let run = |args: Vec<String>, what: &str| -> Result<(), String> {
        let (status, _, err) = kube::run_helper(env.command(&args))?;
        if status != 0 {
            return Err(format!("helm {what} {chart} failed: {err}"));
        }
        Ok(())
    };
    let verify = inv.has_flag(&["--verify"]);
    let keyring: Vec<String> = render_flags(inv, |f| f == "--keyring");
    if !inv.has_flag(&["--repo"]) && local.exists() {
        super::sealed::check_input_path(local)?;
        if local.is_dir() {
            if verify {
                return Err("--verify needs a packaged chart, not a directory".into());
            }
            run(
                vec![
                    "package".into(),
                    chart.into(),
                    format!("--destination={}", out.display()),
                ],
                "package",
            )?;
        } else {
            if verify {
                let mut a = vec!["verify".to_string(), chart.to_string()];
                a.extend(keyring);
                run(a, "verify")?;
            }
            return super::sealed::read_input(local);
        }
    } else {
        let mut a = vec!["pull".to_string(), chart.to_string()];
        a.extend(render_flags(inv, |f| CHART_SOURCE.contains(&f)));
        a.extend(render_flags(inv, |f| {
            matches!(
                f,
                "--registry-config" | "--repository-config" | "--repository-cache"
            )
        }));
        a.push(format!("--destination={}", out.display()));
        run(a, "pull")?;
    }
    let archive: Vec<PathBuf> = std::fs::read_dir(&out)
        .map_err(|e| format!("{}: {e}", out.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tgz"))
        .collect();
    match archive.as_slice() {
        [one] => super::sealed::read_input(one),
        _ => Err(format!(
            "helm left {} chart archives for {chart}",
            archive.len()
        )),
    }
}
