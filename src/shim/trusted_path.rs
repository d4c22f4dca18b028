//! The `PATH` every kube child gets (the helpers that compute what the approver sees, and the
//! approved run): the agent's `PATH` cut down to the directories the agent's user cannot
//! change.
//!
//! kubectl and helm look programs up on `PATH` on their own: a kubeconfig's exec credential
//! plugin (`aws`, `gke-gcloud-auth-plugin`), helm's post-renderer when it is allowed. A program
//! of the agent's found there could answer the helper one way and the run another. So only
//! directories that are owned by root and writable by nobody else are kept, checked along the
//! whole canonical path: every ancestor must be owned by root and either not writable by group
//! or others, or sticky (`/tmp`: nobody else can rename or replace a root-owned entry in it).
//! Relative entries, and entries that do not exist, are dropped. The order is kept.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Group- or other-writable.
const WRITABLE_BY_OTHERS: u32 = 0o022;
/// The sticky bit: in such a directory only an entry's owner can rename or remove it.
const STICKY: u32 = 0o1000;

/// The entries of `path` that are trusted directories, joined again with `:`.
pub fn trusted_path(path: Option<&OsStr>) -> OsString {
    split(path).0
}

/// The entries of `path` left out, for a helper's error message: a credential plugin that is
/// "not found" is most likely in one of them.
pub fn left_out(path: Option<&OsStr>) -> Vec<PathBuf> {
    split(path).1
}

fn split(path: Option<&OsStr>) -> (OsString, Vec<PathBuf>) {
    let (mut kept, mut dropped) = (OsString::new(), Vec::new());
    for entry in std::env::split_paths(path.unwrap_or_default()) {
        if trusted_dir(&entry) {
            if !kept.is_empty() {
                kept.push(":");
            }
            kept.push(entry.as_os_str());
        } else {
            dropped.push(entry);
        }
    }
    (kept, dropped)
}

/// True for an absolute path to a directory owned by root and writable by nobody else, whose
/// ancestors are all owned by root and not writable by others unless sticky.
fn trusted_dir(dir: &Path) -> bool {
    if !dir.is_absolute() {
        return false;
    }
    let Ok(real) = dir.canonicalize() else {
        return false;
    };
    let Ok(meta) = real.metadata() else {
        return false;
    };
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & WRITABLE_BY_OTHERS != 0 {
        return false;
    }
    real.ancestors().skip(1).all(|a| {
        a.metadata().is_ok_and(|m| {
            m.uid() == 0 && (m.mode() & WRITABLE_BY_OTHERS == 0 || m.mode() & STICKY != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn mode(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn only_root_owned_directories_nobody_else_can_write_are_kept() {
        // Ownership decides, so this needs root, as the tests run in CI.
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates root-owned directories: run the tests as root"
        );
        // Under /tmp (root, sticky, world-writable): a root-owned entry there can be trusted.
        let t = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
        mode(t.path(), 0o755);
        let d = |name: &str, m: u32| {
            let p = t.path().join(name);
            std::fs::create_dir(&p).unwrap();
            mode(&p, m);
            p
        };
        let good = d("good", 0o755);
        let open = d("open", 0o777);
        let group = d("group", 0o775);
        let theirs = d("theirs", 0o755);
        nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let parent = d("parent", 0o777);
        let inner = parent.join("bin");
        std::fs::create_dir(&inner).unwrap();
        mode(&inner, 0o755);
        let link = t.path().join("link");
        symlink(&open, &link).unwrap();
        let gone = t.path().join("gone");

        let joined = std::env::join_paths([
            open.as_path(),
            good.as_path(),
            Path::new("relative/bin"),
            Path::new(""),
            group.as_path(),
            theirs.as_path(),
            inner.as_path(),
            link.as_path(),
            gone.as_path(),
            Path::new("/usr/bin"),
        ])
        .unwrap();
        let kept = trusted_path(Some(&joined));
        let want = format!("{}:/usr/bin", good.display());
        assert_eq!(kept.to_str().unwrap(), want);
        assert_eq!(left_out(Some(&joined)).len(), 8);
        assert_eq!(trusted_path(None), OsString::new());
    }
}
