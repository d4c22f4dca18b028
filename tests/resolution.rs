//! Finding the real binary: PATH order, self-detection, recursion and the not-found error.
//! Every case must end within 2 s, enforced here.

use std::os::unix::fs::symlink;
use std::time::Duration;

use crate::support::{bin, code, run_within, stderr, stdout, Sandbox};

const LIMIT: Duration = Duration::from_secs(2);

#[test]
fn shims_dir_twice_on_path_still_finds_the_real_tool() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    let path = format!(
        "{s}:{s}:{}:/usr/bin:/bin",
        sb.real.display(),
        s = sb.shims.display()
    );
    let out = run_within(sb.shim("kubectl").env("PATH", path).arg("version"), LIMIT);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("RAN "), "{}", stdout(&out));
}

#[test]
fn another_build_reached_through_a_hitl_gate_symlink_is_skipped() {
    let sb = Sandbox::new();
    sb.fake_real("helm");
    // A second build: a copy of the binary named hitl-gate, with its own shim symlinks.
    let other = sb.path().join("other");
    std::fs::create_dir_all(other.join("shims")).unwrap();
    std::fs::copy(bin(), other.join("hitl-gate")).unwrap();
    symlink("../hitl-gate", other.join("shims/helm")).unwrap();
    let path = format!(
        "{}:{}:{}:/usr/bin:/bin",
        sb.shims.display(),
        other.join("shims").display(),
        sb.real.display()
    );
    let out = run_within(sb.shim("helm").env("PATH", path).arg("version"), LIMIT);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("RAN "));
}

#[test]
fn plain_copies_of_the_binary_are_skipped_and_the_real_tool_found() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    let (a, b) = (sb.path().join("a"), sb.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::copy(bin(), d.join("kubectl")).unwrap();
    }
    let path = format!(
        "{}:{}:{}:/usr/bin:/bin",
        a.display(),
        b.display(),
        sb.real.display()
    );
    let out = run_within(sb.shim("kubectl").env("PATH", path).arg("version"), LIMIT);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("RAN "), "{}", stdout(&out));
}

#[test]
fn two_different_builds_copied_in_stop_at_the_depth_guard() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    let (a, b) = (sb.path().join("a"), sb.path().join("b"));
    for (d, extra) in [(&a, &b"build a"[..]), (&b, &b"build b, longer"[..])] {
        std::fs::create_dir_all(d).unwrap();
        // Bytes appended to an ELF file do not change what it runs, but make it another build.
        let mut bytes = std::fs::read(bin()).unwrap();
        bytes.extend_from_slice(extra);
        std::fs::write(d.join("kubectl"), bytes).unwrap();
        std::fs::set_permissions(
            d.join("kubectl"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let path = format!(
        "{}:{}:{}:/usr/bin:/bin",
        a.display(),
        b.display(),
        sb.real.display()
    );
    let out = run_within(sb.shim("kubectl").env("PATH", path).arg("version"), LIMIT);
    assert_eq!(code(&out), 86, "recursion: {}", stderr(&out));
    assert!(stderr(&out).contains("HITL_GATE_DEPTH"), "{}", stderr(&out));
}

#[test]
fn a_symlink_loop_on_path_is_skipped() {
    let sb = Sandbox::new();
    sb.fake_real("terraform");
    let looped = sb.path().join("loop");
    std::fs::create_dir_all(&looped).unwrap();
    symlink("terraform", looped.join("terraform")).unwrap();
    let path = format!(
        "{}:{}:{}:/usr/bin:/bin",
        sb.shims.display(),
        looped.display(),
        sb.real.display()
    );
    let out = run_within(sb.shim("terraform").env("PATH", path).arg("version"), LIMIT);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("RAN "));
}

#[test]
fn a_relative_path_entry_is_ignored() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    sb.script(&sb.work.join("evil"), "kubectl", "#!/bin/sh\necho EVIL\n");
    let path = format!(
        "{}:evil:{}:/usr/bin:/bin",
        sb.shims.display(),
        sb.real.display()
    );
    let out = run_within(sb.shim("kubectl").env("PATH", path).arg("version"), LIMIT);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("RAN "), "{}", stdout(&out));
}

#[test]
fn not_found_exits_127_naming_the_tool_and_the_path() {
    let sb = Sandbox::new();
    let path = format!("{}:{}:/nonexistent", sb.shims.display(), sb.real.display());
    let out = run_within(sb.shim("helm").env("PATH", path).arg("version"), LIMIT);
    assert_eq!(code(&out), 127);
    let err = stderr(&out);
    assert!(err.contains("real helm not found"), "{err}");
    assert!(err.contains(&sb.real.display().to_string()), "{err}");
    assert!(err.contains("/nonexistent"), "{err}");
}

#[test]
fn a_non_executable_file_is_not_a_candidate() {
    let sb = Sandbox::new();
    let dir = sb.path().join("noexec");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kubectl"), "#!/bin/sh\necho NOEXEC\n").unwrap();
    sb.fake_real("kubectl");
    let path = format!(
        "{}:{}:{}",
        sb.shims.display(),
        dir.display(),
        sb.real.display()
    );
    let out = run_within(sb.shim("kubectl").env("PATH", path).arg("version"), LIMIT);
    assert!(stdout(&out).starts_with("RAN "), "{}", stdout(&out));
}

#[test]
fn real_path_from_the_policy_wins_and_must_not_be_the_shim() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    let elsewhere = sb.script(&sb.path().join("opt"), "kubectl", "#!/bin/sh\necho OPT\n");
    let p = sb.policy(
        "p.toml",
        &format!(
            "version = 1\n[tools.kubectl]\nreal_path = {:?}\n",
            elsewhere.display().to_string()
        ),
    );
    let out = run_within(
        sb.shim("kubectl")
            .env("HITL_GATE_POLICY", &p)
            .arg("version"),
        LIMIT,
    );
    assert_eq!(stdout(&out), "OPT\n", "{}", stderr(&out));

    let p = sb.policy(
        "q.toml",
        &format!(
            "version = 1\n[tools.kubectl]\nreal_path = {:?}\n",
            sb.shims.join("kubectl").display().to_string()
        ),
    );
    let out = run_within(
        sb.shim("kubectl")
            .env("HITL_GATE_POLICY", &p)
            .arg("version"),
        LIMIT,
    );
    assert_eq!(code(&out), 86, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is hitl-gate itself"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_garbage_depth_counter_only_makes_it_stricter() {
    let sb = Sandbox::new();
    sb.fake_real("kubectl");
    let out = run_within(
        sb.shim("kubectl")
            .env("HITL_GATE_DEPTH", "-5")
            .arg("version"),
        LIMIT,
    );
    assert_eq!(code(&out), 86);
    let out = run_within(
        sb.shim("kubectl")
            .env("HITL_GATE_DEPTH", "0")
            .arg("version"),
        LIMIT,
    );
    assert_eq!(code(&out), 0);
}
