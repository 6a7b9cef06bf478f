//! Real-kernel tests (`real_*`): root, the host's cgroup2 hierarchy, real processes.
//! Translation-only tests live in `translate.rs` (`translation_*`).
//!
//! On a hybrid host the cgroup2 hierarchy may offer only some controllers (here
//! `hugetlb`): memory/cpu/pids files are then covered by the translation tests only.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use serde_json::json;
use tong_cgroup_common::dir::{keyed, read};
use tong_cgroup_common::mounts;
use tong_cgroup_common::testing::{self, ChildGuard, DestroyGuard};
use tong_plugin_sdk::wire::CgroupStats;
use tong_plugin_sdk::{CgroupPlugin, PluginInfo};

use crate::CgroupV2;

/// The cgroup2 mount point, or why the real tests cannot run.
fn setup(test: &str) -> Option<PathBuf> {
    if !tong_testkit::require_root(test, "real cgroups") {
        return None;
    }
    let Some(m) = mounts::cgroup2_mount(&mounts::read_mounts().unwrap()) else {
        tong_testkit::skip(test, "no cgroup2 hierarchy mounted");
        return None;
    };
    println!("REAL-KERNEL {test}: cgroup2 at {}", m.mount_point.display());
    Some(m.mount_point)
}

fn state_dir(state: &[u8]) -> PathBuf {
    let v: serde_json::Value = serde_json::from_slice(state).unwrap();
    PathBuf::from(v["cgroup"]["dir"].as_str().unwrap())
}

#[test]
fn real_v2_lifecycle() {
    let Some(mount) = setup("real_v2_lifecycle") else {
        return;
    };
    let available = read(&mount.join("cgroup.controllers")).unwrap();
    let hugetlb = available.split_whitespace().any(|c| c == "hugetlb")
        && std::path::Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    let id = testing::unique_id("tong-test-cgv2");
    let resources = if hugetlb {
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4_194_304}]})
    } else {
        println!("  (hugetlb 2MB not offered here: limit part skipped)");
        json!({})
    };
    let req = json!({"id": id, "resources": resources});
    let state = CgroupV2::create(req.to_string().as_bytes()).unwrap();
    let _guard = DestroyGuard {
        state: state.clone(),
        destroy: CgroupV2::destroy,
    };
    let dir = state_dir(&state);
    assert_eq!(dir, mount.join(&id));
    assert!(dir.is_dir());
    if hugetlb {
        assert_eq!(read(&dir.join("hugetlb.2MB.max")).unwrap(), "4194304");
    }

    // clone_target is an fd of this very directory.
    let fd = CgroupV2::clone_target(&state)
        .unwrap()
        .expect("v2 offers a clone target");
    let fd_meta = std::fs::File::from(fd).metadata().unwrap();
    let dir_meta = std::fs::metadata(&dir).unwrap();
    assert!(fd_meta.is_dir());
    assert_eq!(
        (fd_meta.dev(), fd_meta.ino()),
        (dir_meta.dev(), dir_meta.ino())
    );

    let mut child = ChildGuard::busy();
    let pid = child.pid();
    CgroupV2::add_process(&state, pid).unwrap();
    child.start();
    let procs = read(&dir.join("cgroup.procs")).unwrap();
    assert_eq!(procs, pid.to_string());
    assert_eq!(CgroupV2::pids(&state).unwrap(), [pid]);

    CgroupV2::set_frozen(&state, true).unwrap();
    assert_eq!(
        keyed(&read(&dir.join("cgroup.events")).unwrap(), "frozen"),
        Some(1)
    );
    assert!(testing::is_stopped(pid), "a frozen process must not run");
    CgroupV2::set_frozen(&state, false).unwrap();
    assert_eq!(
        keyed(&read(&dir.join("cgroup.events")).unwrap(), "frozen"),
        Some(0)
    );
    assert!(!testing::is_stopped(pid), "a thawed busy loop must run");

    let stats: CgroupStats = serde_json::from_slice(&CgroupV2::stats(&state).unwrap()).unwrap();
    assert!(stats.cpu.expect("cpu.stat is always there").usage_total > 0);

    // Destroy while frozen: cgroup.kill must still get rid of it.
    CgroupV2::set_frozen(&state, true).unwrap();
    CgroupV2::destroy(&state).unwrap();
    assert!(!dir.exists(), "{} must be gone", dir.display());
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the process was killed"
    );
    CgroupV2::destroy(&state).expect("destroy is idempotent");
    assert_eq!(
        testing::find_dirs_named(&testing::all_cgroup_roots(), &id),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn real_v2_missing_controller_is_a_clear_error() {
    let Some(mount) = setup("real_v2_missing_controller_is_a_clear_error") else {
        return;
    };
    let available = read(&mount.join("cgroup.controllers")).unwrap();
    // A controller this hierarchy really lacks (on a hybrid host: memory, held by v1),
    // with resources that need it.
    let wanted = [
        ("memory", json!({"memory": {"limit": 100_000_000}})),
        ("pids", json!({"pids": {"limit": 10}})),
        ("cpu", json!({"cpu": {"shares": 512}})),
        ("io", json!({"blockIO": {"weight": 100}})),
    ];
    let Some((controller, resources)) = wanted
        .into_iter()
        .find(|(c, _)| !available.split_whitespace().any(|a| a == *c))
    else {
        tong_testkit::skip(
            "real_v2_missing_controller_is_a_clear_error",
            format_args!(
                "{} offers every controller (nothing to refuse)",
                mount.display()
            ),
        );
        return;
    };
    let id = testing::unique_id("tong-test-cgv2");
    let req = json!({"id": id, "resources": resources});
    let err = CgroupV2::create(req.to_string().as_bytes()).unwrap_err();
    let list = if available.is_empty() {
        "none".to_owned()
    } else {
        available.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let want = format!(
        "cgroup-v2: controller \"{controller}\" is not available in {} (available: {list})",
        mount.display()
    );
    assert_eq!(err.message, want);
    assert_eq!(err.status, tong_abi::STATUS_UNSUPPORTED);
    assert!(!mount.join(&id).exists());
    assert_eq!(
        testing::find_dirs_named(&testing::all_cgroup_roots(), &id),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn real_v2_rejects_bad_input_without_leaving_anything() {
    let Some(mount) = setup("real_v2_rejects_bad_input_without_leaving_anything") else {
        return;
    };
    let id = testing::unique_id("tong-test-cgv2");
    let req = json!({"id": id, "cgroupsPath": "/a/../b"});
    let err = CgroupV2::create(req.to_string().as_bytes()).unwrap_err();
    assert!(err.message.starts_with("cgroup-v2: cgroupsPath"), "{err}");
    // A bad unified entry fails after the mkdir: the directory must be removed again.
    let req = json!({"id": id, "resources": {"unified": {"cgroup.nonexistent": "1"}}});
    let err = CgroupV2::create(req.to_string().as_bytes()).unwrap_err();
    assert!(err.message.contains("cgroup.nonexistent"), "{err}");
    assert!(!mount.join(&id).exists());
}

#[test]
fn real_v2_descriptor_and_probe() {
    // Through the exported C entry point, as the host sees it.
    let desc = crate::tong_plugin_entry(tong_abi::ABI_MAJOR);
    assert!(!desc.is_null());
    // SAFETY: the entry point returns a pointer to a static descriptor.
    let desc = unsafe { &*desc };
    assert_eq!(desc.kind, tong_abi::PluginKind::Cgroup.as_raw());
    assert_eq!(desc.priority, 10);
    // SAFETY: name is a static NUL-terminated string.
    assert_eq!(unsafe { std::ffi::CStr::from_ptr(desc.name) }, c"v2");
    assert!(crate::tong_plugin_entry(tong_abi::ABI_MAJOR + 1).is_null());
    match CgroupV2::probe() {
        Ok(()) => println!("REAL-KERNEL real_v2_descriptor_and_probe: probe OK"),
        Err(e) => println!("probe says: {e}"),
    }
    if setup("real_v2_descriptor_and_probe").is_some() {
        CgroupV2::probe().expect("root with a cgroup2 mount can use v2");
    }
}

#[test]
fn real_v2_concurrent_create_destroy_share_the_parent() {
    let Some(_mount) = setup("real_v2_concurrent_create_destroy_share_the_parent") else {
        return;
    };
    // Siblings under `tong` (a relative cgroupsPath): one's destroy prunes the shared
    // parent while the other is creating in it (ENOENT retry) or still using it (EBUSY
    // ignored).
    let threads: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..25 {
                    let id = testing::unique_id("tong-test-cgv2");
                    let req = json!({"id": id, "cgroupsPath": id});
                    let state = CgroupV2::create(req.to_string().as_bytes()).unwrap();
                    let guard = DestroyGuard {
                        state,
                        destroy: CgroupV2::destroy,
                    };
                    assert!(state_dir(&guard.state).is_dir());
                    CgroupV2::destroy(&guard.state).unwrap();
                    assert!(!state_dir(&guard.state).exists());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Each iteration checked its own directory is gone, and no create hit an unretried ENOENT.
}
