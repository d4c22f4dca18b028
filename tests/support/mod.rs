//! The test harness: a sandbox per test (shims dir, real-tools dir, HOME, a fake filesystem
//! root for the system policy), commands with a controlled environment, and a run-with-timeout
//! helper. The pinned real tools are found through [`tools`]. Every process a sandbox's
//! commands start leads its own process group and is killed when the sandbox is dropped, also
//! when the test panics (`procs.rs`); servers' clocks are moved, not waited for (`clock.rs`).

#![allow(dead_code)]

pub mod browser;
pub mod clock;
pub mod gate;
pub mod kube;
pub mod oidc;
pub mod postgres;
pub mod procs;
pub mod relay;
pub mod server;
pub mod tools;

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hitl-gate"))
}

/// The tool names the shim answers to.
pub const TOOL_NAMES: [&str; 4] = ["terraform", "tofu", "kubectl", "helm"];

/// One test's private world.
pub struct Sandbox {
    /// Marks every process started from this sandbox's commands; dropped first, it kills them
    /// before the temp dir goes.
    pub owner: procs::Owner,
    pub dir: tempfile::TempDir,
    /// Symlinks named after the tools, pointing at the binary under test.
    pub shims: PathBuf,
    /// Where the real (or fake) tools live.
    pub real: PathBuf,
    pub home: PathBuf,
    /// Stands in for `/` when the shim looks for `etc/hitl-gate/policy.toml`.
    pub root: PathBuf,
    /// The working directory commands start in.
    pub work: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = dir.path().to_path_buf();
        let sb = Sandbox {
            owner: procs::Owner::new(),
            shims: base.join("shims"),
            real: base.join("real"),
            home: base.join("home"),
            root: base.join("root"),
            work: base.join("work"),
            dir,
        };
        for d in [&sb.shims, &sb.real, &sb.home, &sb.root, &sb.work] {
            std::fs::create_dir_all(d).unwrap();
        }
        for name in TOOL_NAMES {
            symlink(bin(), sb.shims.join(name)).unwrap();
        }
        std::fs::write(sb.home.join("tf.rc"), "").unwrap();
        sb
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Links a real binary into the real-tools dir under `name`.
    pub fn add_real(&self, name: &str, target: &Path) {
        symlink(target, self.real.join(name)).unwrap();
    }

    /// Writes an executable script into `dir` under `name`.
    pub fn script(&self, dir: &Path, name: &str, body: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// A fake real tool that prints `RAN <argv0> <args...>` and exits 0.
    pub fn fake_real(&self, name: &str) -> PathBuf {
        self.script(
            &self.real.clone(),
            name,
            "#!/bin/sh\nprintf 'RAN %s' \"$0\"; for a in \"$@\"; do printf ' [%s]' \"$a\"; done; echo\n",
        )
    }

    /// Writes a policy file (mode 0600) and returns its path.
    pub fn policy(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    /// The environment every command starts from: nothing inherited but what the tools need.
    fn base(&self, program: &OsStr, path: String) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", path)
            .env("HOME", &self.home)
            .env("HITL_GATE_TEST_ROOT", &self.root)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_CLI_CONFIG_FILE", self.home.join("tf.rc"))
            .env("TF_IN_AUTOMATION", "1")
            .env("LANG", "C.UTF-8")
            .current_dir(&self.work)
            .stdin(Stdio::null());
        self.owner.mark(&mut c);
        c
    }

    /// A command run through the shims (shims first on PATH).
    pub fn shim(&self, tool: &str) -> Command {
        let path = format!(
            "{}:{}:/usr/bin:/bin",
            self.shims.display(),
            self.real.display()
        );
        self.base(OsStr::new(tool), path)
    }

    /// The same command run directly on the real tool (no shims on PATH).
    pub fn direct(&self, tool: &str) -> Command {
        let path = format!("{}:/usr/bin:/bin", self.real.display());
        self.base(OsStr::new(tool), path)
    }

    /// `hitl-gate` itself, with the sandbox environment.
    pub fn cli(&self) -> Command {
        let path = format!(
            "{}:{}:/usr/bin:/bin",
            self.shims.display(),
            self.real.display()
        );
        self.base(bin().as_os_str(), path)
    }
}

/// Runs a command to completion (in a process group of its own), failing the test if it takes
/// longer than `limit`.
pub fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(procs::keep_marker(cmd), 0);
    let child = cmd.spawn().expect("spawn");
    wait_within(child, limit, &format!("{cmd:?}"))
}

/// Waits for `child` and collects its piped output, failing the test (with the stderr so far)
/// if it takes longer than `limit`. The pipes are read while the child runs, so a child that
/// writes more than a pipe holds (64 KiB) does not stall. When `child` leads a process group,
/// what is left of the group once it ended (or timed out) is killed.
pub fn wait_within(mut child: Child, limit: Duration, what: &str) -> Output {
    fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        if procs::end_group_after(&child) {
            break child.wait().expect("wait");
        }
        if start.elapsed() > limit {
            procs::kill_group(&mut child);
            let stderr = stderr.join().unwrap();
            panic!(
                "{what} did not finish within {limit:?}; stderr so far: {}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs a command with a generous 60 s limit.
pub fn run(cmd: &mut Command) -> Output {
    run_within(cmd, Duration::from_secs(60))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code, with a readable failure if the process died by a signal.
pub fn code(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {:?}; stderr: {}", o.status, stderr(o)))
}

/// A throwaway CA and a server certificate for `127.0.0.1` signed by it, made with openssl in
/// `dir`: (certificate, key, CA certificate), all PEM.
pub fn test_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    test_certificate_for(dir, "IP:127.0.0.1")
}

/// [`test_certificate`] for the subject alternative name `san` (`IP:…` or `DNS:…`).
pub fn test_certificate_for(dir: &Path, san: &str) -> (PathBuf, PathBuf, PathBuf) {
    let script = format!(
        r#"set -e
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=test-server -keyout k.pem -out c.csr
        printf 'subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
        openssl x509 -req -in c.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext -out c.pem"#
    );
    std::fs::create_dir_all(dir).unwrap();
    let out = run(Command::new("bash").args(["-c", &script]).current_dir(dir));
    assert!(
        out.status.success(),
        "openssl is needed to make a test certificate (apt-get install openssl): {}",
        stderr(&out)
    );
    (dir.join("c.pem"), dir.join("k.pem"), dir.join("ca.pem"))
}
