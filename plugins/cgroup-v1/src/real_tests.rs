//! Real-kernel tests (`real_*`): root, the host's v1 hierarchies, real processes.
//! Translation-only tests live in `translate.rs` (`translation_*`).

use std::io::{Read as _, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;
use tong_cgroup_common::devices::DEFAULTS;
use tong_cgroup_common::dir::{keyed, read};
use tong_cgroup_common::mounts;
use tong_cgroup_common::testing::{self, ChildGuard, DestroyGuard};
use tong_plugin_sdk::wire::CgroupStats;
use tong_plugin_sdk::{CgroupPlugin, PluginInfo};

use crate::plugin::dirs_of;
use crate::CgroupV1;

/// Whether the real tests can run here; says why not.
fn setup(test: &str) -> bool {
    if !tong_testkit::require_root(test, "real cgroups") {
        return false;
    }
    if let Err(e) = CgroupV1::probe() {
        return tong_testkit::skip(test, format_args!("cgroup v1 not usable: {e}"));
    }
    println!("REAL-KERNEL {test}");
    true
}

fn dir_of(state: &[u8], controller: &str) -> PathBuf {
    dirs_of(state)
        .into_iter()
        .find(|(h, _)| h.split(',').any(|c| c == controller))
        .unwrap_or_else(|| panic!("no {controller} hierarchy"))
        .1
}

fn assert_all_gone(state: &[u8], id: &str) {
    for (h, d) in dirs_of(state) {
        assert!(!d.exists(), "{h}: {} must be gone", d.display());
    }
    assert_eq!(
        testing::find_dirs_named(&testing::all_cgroup_roots(), id),
        Vec::<PathBuf>::new()
    );
}

/// The hybrid cgroup2 directory gets hugetlb when v1 has no hugetlb hierarchy.
fn hugetlb_2mb_file(state: &[u8]) -> Option<PathBuf> {
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        return None;
    }
    let dirs = dirs_of(state);
    if let Some((_, d)) = dirs.iter().find(|(h, _)| h == "hugetlb") {
        return Some(d.join("hugetlb.2MB.limit_in_bytes"));
    }
    dirs.into_iter()
        .find(|(h, _)| h == "unified")
        .map(|(_, d)| d.join("hugetlb.2MB.max"))
}

fn unified_offers_hugetlb() -> bool {
    let all = mounts::read_mounts().unwrap();
    let v1_has = mounts::v1_hierarchies(&all)
        .iter()
        .any(|m| m.controllers.iter().any(|c| c == "hugetlb"));
    let v2_has = mounts::cgroup2_mount(&all)
        .and_then(|m| read(&m.mount_point.join("cgroup.controllers")).ok())
        .is_some_and(|c| c.split_whitespace().any(|c| c == "hugetlb"));
    (v1_has || v2_has) && Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists()
}

#[test]
fn real_v1_lifecycle() {
    if !setup("real_v1_lifecycle") {
        return;
    }
    let id = testing::unique_id("tong-test-cgv1");
    let mut resources = json!({
        "memory": {"limit": 104_857_600, "swappiness": 0},
        "cpu": {"shares": 512, "quota": 50_000, "period": 100_000},
        "pids": {"limit": 20},
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    });
    let hugetlb = unified_offers_hugetlb();
    if hugetlb {
        resources["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4_194_304}]);
    }
    let req = json!({"id": id, "resources": resources});
    let state = CgroupV1::create(req.to_string().as_bytes()).unwrap();
    let _guard = DestroyGuard {
        state: state.clone(),
        destroy: CgroupV1::destroy,
    };

    // One directory per hierarchy, at its root as runc and crun place it.
    for (h, d) in dirs_of(&state) {
        assert!(d.is_dir(), "{h}: {}", d.display());
        let all = mounts::read_mounts().unwrap();
        let mut roots: Vec<PathBuf> = mounts::v1_hierarchies(&all)
            .into_iter()
            .map(|m| m.mount_point)
            .collect();
        // (the hybrid layout's cgroup2 mount holds the process too)
        roots.extend(mounts::cgroup2_mount(&all).map(|m| m.mount_point));
        assert!(
            roots.iter().any(|root| d == root.join(&id)),
            "{h}: {} is not <hierarchy root>/{id}",
            d.display()
        );
    }
    let mem = dir_of(&state, "memory");
    assert_eq!(
        read(&mem.join("memory.limit_in_bytes")).unwrap(),
        "104857600"
    );
    assert_eq!(
        read(&dir_of(&state, "pids").join("pids.max")).unwrap(),
        "20"
    );
    let cpu = dir_of(&state, "cpu");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")).unwrap(), "50000");
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")).unwrap(), "100000");
    assert_eq!(read(&cpu.join("cpu.shares")).unwrap(), "512");
    let devices = read(&dir_of(&state, "devices").join("devices.list")).unwrap();
    // Deny all, then c 1:3 and the devices every container gets (runc's list).
    let want: Vec<String> = ["c 1:3 rwm".to_owned()]
        .into_iter()
        .chain(DEFAULTS.iter().map(ToString::to_string))
        .collect();
    let mut got: Vec<&str> = devices.lines().collect();
    got.sort_unstable();
    let mut want_sorted: Vec<&str> = want.iter().map(String::as_str).collect();
    want_sorted.sort_unstable();
    want_sorted.dedup();
    assert_eq!(got, want_sorted);
    // cpuset got its parent's cpus/mems, so tasks can join.
    let cs = dir_of(&state, "cpuset");
    let root_cs = cs.parent().unwrap();
    assert_eq!(
        read(&cs.join("cpuset.cpus")).unwrap(),
        read(&root_cs.join("cpuset.cpus")).unwrap()
    );
    assert_eq!(
        read(&cs.join("cpuset.mems")).unwrap(),
        read(&root_cs.join("cpuset.mems")).unwrap()
    );
    if hugetlb {
        let f = hugetlb_2mb_file(&state).expect("a hugetlb file");
        println!("  hugetlb limit in {}", f.display());
        assert_eq!(read(&f).unwrap(), "4194304");
    } else {
        println!("  (no 2MB hugetlb here: limit part skipped)");
    }
    assert!(CgroupV1::clone_target(&state).unwrap().is_none());

    let mut child = ChildGuard::busy();
    let pid = child.pid();
    CgroupV1::add_process(&state, pid).unwrap();
    child.start();
    for (h, d) in dirs_of(&state) {
        assert_eq!(
            read(&d.join("cgroup.procs")).unwrap(),
            pid.to_string(),
            "{h}"
        );
    }
    assert_eq!(CgroupV1::pids(&state).unwrap(), [pid]);

    let freezer = dir_of(&state, "freezer").join("freezer.state");
    CgroupV1::set_frozen(&state, true).unwrap();
    assert_eq!(read(&freezer).unwrap(), "FROZEN");
    assert!(testing::is_stopped(pid), "a frozen process must not run");
    CgroupV1::set_frozen(&state, false).unwrap();
    assert_eq!(read(&freezer).unwrap(), "THAWED");
    assert!(!testing::is_stopped(pid), "a thawed busy loop must run");

    let stats: CgroupStats = serde_json::from_slice(&CgroupV1::stats(&state).unwrap()).unwrap();
    println!("  stats: {stats:?}");
    let m = stats.memory.expect("memory stats");
    assert!(m.usage > 0);
    assert_eq!(m.limit, Some(104_857_600));
    let p = stats.pids.expect("pids stats");
    assert_eq!((p.current, p.limit), (1, Some(20)));
    assert!(stats.cpu.expect("cpu stats").usage_total > 0);

    // Destroy while frozen: the kill must still land.
    CgroupV1::set_frozen(&state, true).unwrap();
    CgroupV1::destroy(&state).unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the process was killed"
    );
    assert_all_gone(&state, &id);
    CgroupV1::destroy(&state).expect("destroy is idempotent");
}

#[test]
fn real_v1_pids_limit_stops_forks() {
    if !setup("real_v1_pids_limit_stops_forks") {
        return;
    }
    let id = testing::unique_id("tong-test-cgv1");
    let req = json!({"id": id, "resources": {"pids": {"limit": 5}}});
    let state = CgroupV1::create(req.to_string().as_bytes()).unwrap();
    let _guard = DestroyGuard {
        state: state.clone(),
        destroy: CgroupV1::destroy,
    };

    // The shell waits for a line on stdin, so it forks only once inside the cgroup.
    let script = "read go; i=0; while [ $i -lt 20 ]; do sleep 1 & i=$((i+1)); done; wait";
    let child = Command::new("/bin/sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    CgroupV1::add_process(&state, child.pid()).unwrap();
    child.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.0.wait().unwrap();
    println!("  shell: {status}, stderr: {}", stderr.trim());
    let events = read(&dir_of(&state, "pids").join("pids.events")).unwrap();
    assert!(
        keyed(&events, "max").unwrap_or(0) > 0,
        "pids.events: {events}"
    );
    assert!(
        !status.success() || stderr.contains("fork"),
        "the shell noticed: {stderr}"
    );

    CgroupV1::destroy(&state).unwrap();
    assert_all_gone(&state, &id);
}

#[test]
fn real_v1_failure_part_way_leaves_nothing() {
    if !setup("real_v1_failure_part_way_leaves_nothing") {
        return;
    }
    let id = testing::unique_id("tong-test-cgv1");
    // Translation accepts it; the kernel refuses it after every mkdir.
    let req =
        json!({"id": id, "resources": {"memory": {"limit": 104_857_600}, "cpu": {"cpus": "999"}}});
    let err = CgroupV1::create(req.to_string().as_bytes()).unwrap_err();
    println!("  error: {err}");
    let cpuset = mounts::v1_hierarchies(&mounts::read_mounts().unwrap())
        .into_iter()
        .find(|m| m.controllers.iter().any(|c| c == "cpuset"))
        .unwrap()
        .mount_point;
    let want = format!(
        "cgroup-v1: write 999 to {}: ",
        cpuset.join(&id).join("cpuset.cpus").display()
    );
    assert!(err.message.starts_with(&want), "{err}");
    assert_eq!(
        testing::find_dirs_named(&testing::all_cgroup_roots(), &id),
        Vec::<PathBuf>::new()
    );

    // Nonsense values: refused before anything is created.
    let req = json!({"id": id, "resources": {"memory": {"limit": -5}}});
    let err = CgroupV1::create(req.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.status, tong_abi::STATUS_INVALID);
    assert!(
        err.message
            .starts_with("cgroup-v1: memory.limit = -5 is invalid"),
        "{err}"
    );
    let req = json!({"id": id, "cgroupsPath": "../../etc"});
    let err = CgroupV1::create(req.to_string().as_bytes()).unwrap_err();
    assert!(err.message.contains("must not contain \"..\""), "{err}");
    assert_eq!(
        testing::find_dirs_named(&testing::all_cgroup_roots(), &id),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn real_v1_cgroups_path_forms() {
    if !setup("real_v1_cgroups_path_forms") {
        return;
    }
    let id = testing::unique_id("tong-test-cgv1");
    // systemd form, converted as crun does without systemd.
    let slice = format!("{id}.slice");
    let req = json!({"id": id, "cgroupsPath": format!("{slice}:tong:{id}")});
    let state = CgroupV1::create(req.to_string().as_bytes()).unwrap();
    let _guard = DestroyGuard {
        state: state.clone(),
        destroy: CgroupV1::destroy,
    };
    let mem = dir_of(&state, "memory");
    assert!(
        mem.ends_with(format!("{slice}/tong-{id}.scope")),
        "{}",
        mem.display()
    );
    assert!(mem.is_dir());
    CgroupV1::destroy(&state).unwrap();
    // The slice directory was made by us, so it goes too.
    assert!(!mem.parent().unwrap().exists());
    assert_eq!(
        testing::find_dirs_named(&testing::all_cgroup_roots(), &slice),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn real_v1_descriptor_and_probe() {
    let desc = crate::tong_plugin_entry(tong_abi::ABI_MAJOR);
    assert!(!desc.is_null());
    // SAFETY: the entry point returns a pointer to a static descriptor.
    let desc = unsafe { &*desc };
    assert_eq!(desc.kind, tong_abi::PluginKind::Cgroup.as_raw());
    assert_eq!(desc.priority, 20);
    // SAFETY: name is a static NUL-terminated string.
    assert_eq!(unsafe { std::ffi::CStr::from_ptr(desc.name) }, c"v1");
    match CgroupV1::probe() {
        Ok(()) => println!("REAL-KERNEL real_v1_descriptor_and_probe: probe OK"),
        Err(e) => println!("real_v1_descriptor_and_probe: probe says: {e}"),
    }
}
