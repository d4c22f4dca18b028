//! Process behaviour of the passthrough: same PID, signals, SIGPIPE, argv[0], environment,
//! and the multicall dispatch on argv[0].

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{code, run, run_within, stderr, stdout, Sandbox};

#[test]
fn passthrough_keeps_the_pid() {
    let sb = Sandbox::new();
    sb.script(&sb.real, "kubectl", "#!/bin/sh\necho $$\n");
    let mut cmd = sb.shim("kubectl");
    cmd.arg("version").stdout(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let spawned = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        stdout(&out).trim(),
        spawned.to_string(),
        "the tool must run in the shim's PID"
    );
}

#[test]
fn argv0_args_cwd_and_environment_reach_the_tool_untouched() {
    let sb = Sandbox::new();
    sb.script(
        &sb.real,
        "helm",
        "#!/bin/sh\necho \"argv0=$0\"; for a in \"$@\"; do echo \"arg=[$a]\"; done; echo \"cwd=$(pwd)\"; echo \"custom=$CUSTOM_VAR\"; echo \"depth=$HITL_GATE_DEPTH\"\n",
    );
    let odd = "two  spaces\tand\ttabs";
    let out = run(sb
        .shim("helm")
        .args(["version", odd, "", "--short"])
        .env("CUSTOM_VAR", "x y"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let real = sb.real.join("helm");
    let want = format!(
        "argv0={}\narg=[version]\narg=[{odd}]\narg=[]\narg=[--short]\ncwd={}\ncustom=x y\ndepth=1\n",
        real.display(),
        sb.work.display()
    );
    // A shell script sees its own path as $0 (the kernel passes the script path); what matters
    // is that the args, cwd and environment are byte-identical.
    assert_eq!(stdout(&out), want);
}

#[test]
fn argv0_is_what_the_agent_typed() {
    let sb = Sandbox::new();
    // A script cannot see its argv[0] (the kernel substitutes the script path), so the real
    // tool here is a tiny compiled program.
    let src = sb.path().join("argv0.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(int c, char **v) { puts(v[0]); return 0; }\n",
    )
    .unwrap();
    let out = run(std::process::Command::new("cc")
        .arg("-o")
        .arg(sb.real.join("kubectl"))
        .arg(&src));
    assert!(
        out.status.success(),
        "cc is needed for this test: {}",
        stderr(&out)
    );

    let out = run(sb.shim("kubectl").arg("version"));
    assert_eq!(stdout(&out), "kubectl\n", "{}", stderr(&out));
    let typed = sb.shims.join("kubectl");
    let out = run(sb.shim(typed.to_str().unwrap()).arg("version"));
    assert_eq!(stdout(&out), format!("{}\n", typed.display()));
}

#[test]
fn sigterm_ends_a_passthrough_like_the_real_tool() {
    let sb = Sandbox::new();
    sb.script(&sb.real, "terraform", "#!/bin/sh\nexec sleep 30\n");
    let measure = |mut cmd: std::process::Command| {
        let mut child = cmd.arg("version").spawn().unwrap();
        // Signal the tool itself, once it runs (in the shim's PID): not the shim starting up.
        let comm = format!("/proc/{}/comm", child.id());
        let start = std::time::Instant::now();
        while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the tool never started"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        child.wait().unwrap()
    };
    let direct = measure(sb.direct("terraform"));
    let shimmed = measure(sb.shim("terraform"));
    assert_eq!(direct.signal(), Some(15));
    assert_eq!(
        shimmed.signal(),
        direct.signal(),
        "the shim must die as the tool dies"
    );
}

#[test]
fn sigpipe_has_its_default_behaviour() {
    let sb = Sandbox::new();
    // `yes` dies of SIGPIPE when its reader goes away, unless SIGPIPE is ignored, in which case
    // it reports EPIPE and exits 1.
    sb.script(&sb.real, "kubectl", "#!/bin/sh\nexec yes\n");
    let status_of = |path: String| {
        let out = run(std::process::Command::new("bash")
            .env_clear()
            .env("PATH", path)
            .env("HITL_GATE_TEST_ROOT", &sb.root)
            .args([
                "-c",
                "kubectl version | head -1 >/dev/null; echo ${PIPESTATUS[0]}",
            ]));
        stdout(&out).trim().to_string()
    };
    let direct = status_of(format!("{}:/usr/bin:/bin", sb.real.display()));
    let shimmed = status_of(format!(
        "{}:{}:/usr/bin:/bin",
        sb.shims.display(),
        sb.real.display()
    ));
    assert_eq!(direct, "141");
    assert_eq!(
        shimmed, "141",
        "SIGPIPE must be at its default in the exec'd tool"
    );
}

#[test]
fn exit_codes_pass_through() {
    let sb = Sandbox::new();
    sb.script(
        &sb.real,
        "helm",
        "#!/bin/sh\necho out; echo err >&2; exit 42\n",
    );
    let out = run(sb.shim("helm").arg("version"));
    assert_eq!(code(&out), 42);
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
}

#[test]
fn an_unknown_program_name_lists_the_valid_ones() {
    let sb = Sandbox::new();
    let odd = sb.path().join("kubectl-foo");
    std::os::unix::fs::symlink(crate::support::bin(), &odd).unwrap();
    let out = run(&mut std::process::Command::new(&odd));
    assert_eq!(code(&out), 64);
    let err = stderr(&out);
    assert!(err.contains("\"kubectl-foo\""), "{err}");
    assert!(
        err.contains("terraform, tofu, kubectl, helm, hitl-gate"),
        "{err}"
    );
}

#[test]
fn a_gated_command_does_not_run_and_says_which_rule() {
    let sb = Sandbox::new();
    sb.script(&sb.real, "kubectl", "#!/bin/sh\ntouch \"$HOME/ran\"\n");
    let out = run_within(
        sb.shim("kubectl")
            .args(["--context", "prod", "delete", "deploy", "web"]),
        Duration::from_secs(5),
    );
    assert_eq!(code(&out), 83, "approval unavailable");
    assert!(!sb.home.join("ran").exists(), "the real tool must not run");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("kubectl --context prod delete deploy web"),
        "{err}"
    );
    assert!(err.contains("builtin:kubectl-mutating"), "{err}");
}

#[tokio::test]
async fn output_beyond_a_pipe_buffer_is_collected_whole() {
    // The test harness's `finish` reads the pipes while the shim runs; a tool that writes more
    // than a pipe holds (64 KiB) would otherwise block, and the test would time out.
    let sb = Sandbox::new();
    sb.script(
        &sb.real,
        "kubectl",
        "#!/bin/sh\nhead -c 1000000 /dev/zero\nhead -c 300000 /dev/zero >&2\n",
    );
    let mut cmd = sb.shim("kubectl");
    cmd.arg("version")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = crate::support::gate::finish(cmd.spawn().unwrap()).await;
    assert_eq!(code(&out), 0);
    assert_eq!(out.stdout.len(), 1_000_000);
    assert_eq!(out.stderr.len(), 300_000);
}
