//! What root's tong trusts on disk, attacked for real by another local user (uid 65534):
//! the directories above a plugin (swapped while root loads), the state root (a forged
//! `state.json` with a hook) and the plugin priority cache (forged to switch backends).
//! See docs/security.md, "Trust: plugins, state root, cache".

mod common;

use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

/// The unprivileged attacker.
const ATTACKER: u32 = 65534;

fn compile(src: &str, out: &Path, args: &[&str]) {
    let c = out.with_extension("c");
    std::fs::write(&c, src).unwrap();
    let status = Command::new("cc")
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(&c)
        .status()
        .expect("cc (the C compiler) is needed for the trust tests");
    assert!(status.success(), "compiling {}", c.display());
}

fn mkdir(path: &Path, mode: u32, owner: u32) {
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    chown(path, Some(owner), Some(owner)).unwrap();
}

/// A directory under /tmp that everyone may enter (the attacker must reach its part).
fn open_tempdir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs `program args` as the attacker, in the background.
fn spawn_as_attacker(program: &Path, args: &[&Path]) -> std::process::Child {
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: between fork and exec the closure makes only async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(ATTACKER) != 0
                || libc::setuid(ATTACKER) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

const EVIL_PLUGIN: &str = r"
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void pwn(void) {
    int fd = open(MARKER, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) close(fd);
}
";

const SWAPPER: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/fs.h>
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    for (;;)
        if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE) != 0) {
            perror("renameat2");
            return 1;
        }
}
"#;

/// The attacker owns a directory on root's plugin path and swaps, in a loop, the plugin
/// directory below it between a good one (root's files) and one holding a library whose
/// constructor leaves a marker. Root lists the plugins and creates containers meanwhile;
/// the attacker's code must never run.
#[test]
fn a_swapped_plugin_directory_never_loads_the_attackers_library() {
    if !root_or_skip("a_swapped_plugin_directory_never_loads_the_attackers_library") {
        return;
    }
    let base = open_tempdir("tong-it-trust-");
    let attacker_dir = base.path().join("attacker");
    mkdir(&attacker_dir, 0o755, ATTACKER);
    let plugins = attacker_dir.join("plugins");
    let evil = attacker_dir.join("evil");
    let file = "libtong_plugin_net_swap.so";
    // The good directory and plugin are root's (a copy of net=none).
    mkdir(&plugins, 0o755, 0);
    std::fs::copy(
        tong_bin().with_file_name("libtong_plugin_net_none.so"),
        plugins.join(file),
    )
    .unwrap();
    // The attacker's directory and library.
    mkdir(&evil, 0o755, ATTACKER);
    let marker = base.path().join("marker");
    compile(
        EVIL_PLUGIN,
        &evil.join(file),
        &[
            "-shared",
            "-fPIC",
            &format!("-DMARKER=\"{}\"", marker.display()),
        ],
    );
    chown(evil.join(file), Some(ATTACKER), Some(ATTACKER)).unwrap();
    let swapper = base.path().join("swapper");
    compile(SWAPPER, &swapper, &[]);
    let mut swapping = spawn_as_attacker(&swapper, &[&plugins, &evil]);

    let mut tong = Tong::new();
    tong.env
        .push(("TONG_PLUGIN_PATH".into(), plugins.display().to_string()));
    let bundle = Bundle::new(&config(&["true"]));
    let mut last_listing = String::new();
    let mut attempts = 0;
    for i in 0..200 {
        attempts = i + 1;
        let out = tong.run(&["plugins"]);
        last_listing = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if i % 10 == 0 {
            let id = unique_id("trust-swap");
            let created = tong.run(&[
                "create",
                "--backend",
                "net=swap",
                "--bundle",
                bundle.path().to_str().unwrap(),
                &id,
            ]);
            if created.status.success() {
                tong.ok(&["delete", "--force", &id]);
            }
            tong.assert_clean(&id, Some(&bundle), None);
        }
        if marker.exists() {
            break;
        }
    }
    // SAFETY: kill and waitpid on the child we spawned.
    unsafe { libc::kill(swapping.id() as i32, libc::SIGKILL) };
    let _ = swapping.wait();
    assert!(
        !marker.exists(),
        "root ran the attacker's library after {attempts} tries"
    );
    // The attacker's directory in the chain is refused by name.
    let refusal = format!(
        "refusing plugin directory {}: it is owned by uid {ATTACKER}, neither root nor the caller",
        attacker_dir.display()
    );
    assert!(last_listing.contains(&refusal), "{last_listing}");
}

/// A container directory as an attacker would forge it: a created container with no
/// process and a poststop hook that leaves `marker`.
fn forge_container(dir: &Path, marker: &Path, owner: u32) {
    mkdir(dir, 0o700, owner);
    let id = dir.file_name().unwrap().to_str().unwrap();
    let record = json!({
        "id": id,
        "phase": "created",
        "pid": 0,
        "backends": {},
        "bundle": "/",
        "ociVersion": "1.0.2",
        "rootfs": "/",
        "created": "2026-01-01T00:00:00Z",
        "owner": owner,
        "hooks": {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}", marker.display())]}]}
    });
    let state = dir.join("state.json");
    std::fs::write(&state, serde_json::to_vec(&record).unwrap()).unwrap();
    chown(&state, Some(owner), Some(owner)).unwrap();
}

fn tong_with_root(root: &Path) -> impl Fn(&[&str]) -> (bool, String) + '_ {
    move |args: &[&str]| {
        let out = run_with_files(Command::new(tong_bin()).arg("--root").arg(root).args(args));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// A state root owned by another user holds a forged container whose poststop hook
/// would run as root on `delete`: refused, and the hook never runs.
#[test]
fn a_forged_state_in_a_foreign_root_runs_nothing() {
    if !root_or_skip("a_forged_state_in_a_foreign_root_runs_nothing") {
        return;
    }
    let base = open_tempdir("tong-it-trust-");
    let root = base.path().join("root");
    mkdir(&root, 0o700, ATTACKER);
    let marker = base.path().join("marker");
    let id = unique_id("trust-forged");
    forge_container(&root.join(&id), &marker, ATTACKER);
    let tong = tong_with_root(&root);
    let refusal = format!(
        "refusing state root {}: it is owned by uid {ATTACKER}, not the caller",
        root.display()
    );
    for args in [
        &["delete", &id][..],
        &["delete", "--force", &id],
        &["state", &id],
        &["list"],
    ] {
        let (ok, err) = tong(args);
        assert!(
            !marker.exists(),
            "{args:?}: the forged poststop hook ran as root"
        );
        assert!(!ok, "{args:?} accepted a foreign root");
        assert!(err.contains(&refusal), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    assert!(!marker.exists(), "the forged poststop hook ran as root");

    // Root's own root, but the container directory is the attacker's.
    let own_root = base.path().join("own-root");
    mkdir(&own_root, 0o711, 0);
    forge_container(&own_root.join(&id), &marker, ATTACKER);
    let (ok, err) = tong_with_root(&own_root)(&["delete", "--force", &id]);
    assert!(!ok, "a foreign container directory was accepted");
    assert!(
        err.contains(&format!(
            "refusing container directory {}: it is owned by uid {ATTACKER}, not the caller",
            own_root.join(&id).display()
        )),
        "{err}"
    );
    assert!(!marker.exists(), "the forged poststop hook ran as root");
}

/// A root that group or others may write is refused for every command, also when tong
/// would create a container in it; one that they may only read or enter is fine.
#[test]
fn a_writable_state_root_is_refused_and_a_readable_one_accepted() {
    if !root_or_skip("a_writable_state_root_is_refused_and_a_readable_one_accepted") {
        return;
    }
    let base = open_tempdir("tong-it-trust-");
    let bundle = Bundle::new(&config(&["true"]));
    let b = bundle.path().to_str().unwrap();
    for mode in [0o777, 0o1777, 0o770] {
        let root = base.path().join(format!("root-{mode:o}"));
        mkdir(&root, mode, 0);
        let tong = tong_with_root(&root);
        let id = unique_id("trust-writable");
        let refusal = format!(
            "refusing state root {}: it is writable by group or others (mode {mode:o})",
            root.display()
        );
        for args in [&["list"][..], &["create", "--bundle", b, &id]] {
            let (ok, err) = tong(args);
            assert!(!ok, "mode {mode:o}: {args:?} accepted");
            assert!(err.contains(&refusal), "{args:?}: {err}");
        }
        assert!(
            !root.join(&id).exists(),
            "mode {mode:o}: a container was made"
        );
        assert_no_cgroup(&id);
    }
    // As containerd and podman make their roots: root's, 0711 or 0755.
    for mode in [0o711, 0o755] {
        let root = base.path().join(format!("root-{mode:o}"));
        mkdir(&root, mode, 0);
        let tong = tong_with_root(&root);
        let id = unique_id("trust-readable");
        let (ok, err) = tong(&["run", "--bundle", b, &id]);
        assert!(ok, "mode {mode:o}: {err}");
        assert!(!root.join(&id).exists());
    }
    // A root that does not exist yet is made 0700.
    let fresh = base.path().join("fresh/root");
    let id = unique_id("trust-fresh");
    let (ok, err) = tong_with_root(&fresh)(&["create", "--bundle", b, &id]);
    assert!(ok, "{err}");
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    let (ok, err) = tong_with_root(&fresh)(&["delete", "--force", &id]);
    assert!(ok, "{err}");
}

/// Every plugin file tong would load by default, with the identity the priority cache
/// keys it by.
fn cache_entry(path: &Path, priority: u32) -> (PathBuf, serde_json::Value) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    (
        path.to_path_buf(),
        json!({"file": {"dev": m.dev(), "ino": m.ino(), "size": m.size(),
            "mtime_ns": ns(m.mtime(), m.mtime_nsec()), "ctime_ns": ns(m.ctime(), m.ctime_nsec())},
            "priority": priority}),
    )
}

/// A forged priority cache in the state root (the file earlier versions kept there)
/// must not change the backends chosen, and the last delete leaves the root as runc
/// does: empty.
#[test]
fn a_forged_plugin_cache_decides_nothing_and_the_root_is_left_empty() {
    if !root_or_skip("a_forged_plugin_cache_decides_nothing_and_the_root_is_left_empty") {
        return;
    }
    let tong = Tong::new();
    // Ranks cgroup=v2 (priority 10, usable here) above v1 (20), which probing picks.
    let forged: serde_json::Map<String, serde_json::Value> = [
        cache_entry(
            &tong_bin().with_file_name("libtong_plugin_cgroup_v2.so"),
            1000,
        ),
        cache_entry(&tong_bin().with_file_name("libtong_plugin_cgroup_v1.so"), 1),
    ]
    .into_iter()
    .map(|(p, v)| (p.display().to_string(), v))
    .collect();
    std::fs::write(
        tong.root.path().join(".plugin-cache.json"),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    let bundle = Bundle::new(&config(&["true"]));
    let id = unique_id("trust-cache");
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(tong.state(&id)["backends"]["cgroup"], "v1");
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);

    // A fresh root: create and delete leave nothing behind.
    let fresh = Tong::new();
    let id = unique_id("trust-cache");
    fresh.ok(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let left: Vec<_> = std::fs::read_dir(fresh.root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in the state root: {left:?}");
}
