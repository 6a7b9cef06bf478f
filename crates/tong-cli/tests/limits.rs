//! Cgroup limits from config.json, checked on the host and felt inside the container.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{config, root_or_skip, run_with_files, unique_id, Bundle, Tong};
use serde_json::json;

#[test]
fn memory_and_pids_limits_are_applied_on_the_v1_host() {
    if !root_or_skip("memory_and_pids_limits_are_applied_on_the_v1_host") {
        return;
    }
    let tong = Tong::new();
    let mut cfg = config(&["sh", "-c", "cat /proc/self/cgroup; sleep 30"]);
    cfg["linux"]["resources"] = json!({
        "memory": {"limit": 67_108_864},
        "pids": {"limit": 20},
        "cpu": {"quota": 50_000, "period": 100_000}
    });
    let bundle = Bundle::new(&cfg);
    let id = unique_id("limits");
    tong.run_detached(&bundle, &id);
    assert_eq!(tong.state(&id)["backends"]["cgroup"], "v1");
    let pid = tong.state(&id)["pid"].as_i64().unwrap();
    let read = |f: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{f}"))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        read(&format!("memory/{id}/memory.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(read(&format!("pids/{id}/pids.max")), "20");
    assert_eq!(read(&format!("cpu/{id}/cpu.cfs_quota_us")), "50000");
    for controller in ["memory", "pids", "cpu", "freezer"] {
        let procs = read(&format!("{controller}/{id}/cgroup.procs"));
        assert!(
            procs.lines().any(|p| p == pid.to_string()),
            "{controller}: {procs}"
        );
    }
    // The process was in its cgroup before it ran user code: its own view says so.
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.contains(&format!("memory:/{id}")), "{own}");
    let stats: serde_json::Value =
        serde_json::from_str(tong.ok(&["events", "--stats", &id]).trim()).unwrap();
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["data"]["pids"]["limit"], 20);
    assert!(stats["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0);
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn a_fork_loop_hits_the_pids_limit() {
    if !root_or_skip("a_fork_loop_hits_the_pids_limit") {
        return;
    }
    let tong = Tong::new();
    // 30 background sleeps against a limit of 8: the shell must fail to fork.
    let script = "i=0; while [ $i -lt 30 ]; do sleep 2 & i=$((i+1)); done; echo spawned";
    let mut cfg = config(&["sh", "-c", script]);
    cfg["linux"]["resources"] = json!({"pids": {"limit": 8}});
    let bundle = Bundle::new(&cfg);
    let id = unique_id("forkloop");
    let out = tong.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("can't fork") || stderr.contains("Resource temporarily unavailable"),
        "no fork failure: {stderr}"
    );
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn the_v2_backend_runs_containers_on_the_unified_hierarchy() {
    if !root_or_skip("the_v2_backend_runs_containers_on_the_unified_hierarchy") {
        return;
    }
    let unified = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|p| {
            std::path::Path::new(p).join("cgroup.procs").exists()
                && std::path::Path::new(p).join("cgroup.controllers").exists()
        });
    let Some(unified) = unified else {
        tong_testkit::skip(
            "the_v2_backend_runs_containers_on_the_unified_hierarchy",
            "no cgroup2 mount",
        );
        return;
    };
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["sleep", "30"]));
    let id = unique_id("v2");
    tong.ok(&[
        "run",
        "-d",
        "--backend",
        "cgroup=v2",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    let pid = tong.state(&id)["pid"].as_i64().unwrap();
    let procs = std::fs::read_to_string(format!("{unified}/{id}/cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), pid.to_string());
    tong.ok(&["pause", &id]);
    let events = std::fs::read_to_string(format!("{unified}/{id}/cgroup.events")).unwrap();
    assert!(events.contains("frozen 1"), "{events}");
    tong.ok(&["resume", &id]);
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

/// runc, to compare with; `None` (saying why `test` skips) where it is not installed.
fn runc_or_skip(test: &str) -> Option<&'static Path> {
    tong_testkit::require_tool(test, &["/usr/sbin/runc", "/usr/bin/runc"], "runc")
}

/// A shell prologue for `unshare --mount --propagation private`: stacks a copy of `/` on
/// itself and unmounts the cgroup2 mount its caller sees. The caller keeps its root in
/// the old tree, so mountinfo still lists the stacked copy's cgroup2 mount, at a path
/// the caller cannot reach.
const STACKED_ROOT: &str = "mount --rbind / / && umount /sys/fs/cgroup/unified && exec \"$@\"";

/// Runs `program args` after [`STACKED_ROOT`] in a private mount namespace.
fn in_stacked_root(program: &Path, args: &[&str]) -> Output {
    run_with_files(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .args([STACKED_ROOT, "-"])
            .arg(program)
            .args(args),
    )
}

#[test]
fn cgroup_mounts_hidden_under_a_stacked_root_are_not_taken() {
    let test = "cgroup_mounts_hidden_under_a_stacked_root_are_not_taken";
    if !root_or_skip(test) {
        return;
    }
    let unified = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup/unified ") && l.contains(" - cgroup2 "));
    let Some(runc) = runc_or_skip(test) else {
        return;
    };
    if !unified {
        tong_testkit::skip(test, "no hybrid cgroup2 mount at /sys/fs/cgroup/unified");
        return;
    }
    let mut cfg = config(&[
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; ls /sys/fs/cgroup",
    ]);
    cfg["mounts"].as_array_mut().unwrap().push(json!(
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "ro"]}
    ));
    cfg["linux"]["resources"] = json!({"memory": {"limit": 67_108_864}, "pids": {"limit": 20}});
    let bundle = Bundle::new(&cfg);
    let bundle_path = bundle.path().to_str().unwrap();

    let tong = Tong::new();
    let id = unique_id("stacked-root");
    let root = tong.root.path().to_str().unwrap();
    let ours = in_stacked_root(
        &common::tong_bin(),
        &["--root", root, "run", "--bundle", bundle_path, &id],
    );
    let runc_root = tempfile::tempdir().unwrap();
    let runc_id = unique_id("stacked-root-runc");
    let theirs = in_stacked_root(
        runc,
        &[
            "--root",
            runc_root.path().to_str().unwrap(),
            "run",
            "--bundle",
            bundle_path,
            &runc_id,
        ],
    );
    let show = |o: &Output| {
        format!(
            "{}: {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(theirs.status.success(), "runc: {}", show(&theirs));
    assert!(ours.status.success(), "tong: {}", show(&ours));
    assert_eq!(
        ours.stdout,
        theirs.stdout,
        "tong: {}\nrunc: {}",
        show(&ours),
        show(&theirs)
    );
    assert!(String::from_utf8_lossy(&ours.stdout).starts_with("67108864\n20\n"));
    tong.assert_clean(&id, Some(&bundle), None);
    common::assert_no_cgroup(&runc_id);
}

/// The host directory of controller `controller`'s cgroup of process `pid`.
fn cgroup_dir_of(pid: i64, controller: &str) -> String {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    // Lines: "4:memory:/path" (the path may hold ':').
    let path = own
        .lines()
        .filter_map(|l| l.split_once(':')?.1.split_once(':'))
        .find(|(list, _)| list.split(',').any(|c| c == controller))
        .map_or_else(
            || panic!("{pid} has no {controller} cgroup: {own}"),
            |(_, p)| p,
        );
    format!("/sys/fs/cgroup/{controller}{path}")
}

/// Runs `bundle` detached with `runtime` (tong or runc), reads `files` (controller,
/// file) from its cgroups, and deletes it. Returns the values and the run's stderr.
fn read_back(
    runtime: &Path,
    state_root: &Path,
    bundle: &Bundle,
    id: &str,
    files: &[(&str, &str)],
) -> (Vec<String>, String) {
    let root = state_root.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = run_with_files(Command::new(runtime).args(["--root", root]).args(args));
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            runtime.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let started = run(&["run", "-d", "--bundle", bundle.path().to_str().unwrap(), id]);
    let state: serde_json::Value = serde_json::from_slice(&run(&["state", id]).stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let values = files
        .iter()
        .map(|(controller, file)| {
            let path = format!("{}/{file}", cgroup_dir_of(pid, controller));
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| format!("{path}: {e}"))
                .trim()
                .to_owned()
        })
        .collect();
    run(&["delete", "--force", id]);
    (
        values,
        String::from_utf8_lossy(&started.stderr).into_owned(),
    )
}

#[test]
fn v1_resources_read_back_as_under_runc() {
    let test = "v1_resources_read_back_as_under_runc";
    if !root_or_skip(test) {
        return;
    }
    let Some(runc) = runc_or_skip(test) else {
        return;
    };
    if !Path::new("/sys/fs/cgroup/memory/memory.use_hierarchy").exists() {
        tong_testkit::skip(test, "no cgroup v1 memory hierarchy");
        return;
    }
    let mut cfg = config(&["sleep", "30"]);
    cfg["linux"]["resources"] = json!({
        "memory": {"limit": 67_108_864, "reservation": 33_554_432, "swappiness": 10,
            "disableOOMKiller": true, "useHierarchy": true, "kernel": 33_554_432,
            "kernelTCP": 16_777_216},
        "cpu": {"shares": 512, "quota": 50_000, "period": 100_000, "realtimePeriod": 500_000,
            "realtimeRuntime": 1000, "cpus": "0", "mems": "0", "idle": 0},
        "pids": {"limit": 42}
    });
    let bundle = Bundle::new(&cfg);
    let files = [
        ("memory", "memory.limit_in_bytes"),
        ("memory", "memory.soft_limit_in_bytes"),
        ("memory", "memory.swappiness"),
        ("memory", "memory.oom_control"),
        ("memory", "memory.use_hierarchy"),
        ("memory", "memory.kmem.limit_in_bytes"),
        ("cpu", "cpu.shares"),
        ("cpu", "cpu.cfs_quota_us"),
        ("cpu", "cpu.cfs_period_us"),
        ("cpu", "cpu.rt_period_us"),
        ("cpu", "cpu.rt_runtime_us"),
        ("cpu", "cpu.idle"),
        ("cpuset", "cpuset.cpus"),
        ("cpuset", "cpuset.mems"),
        ("pids", "pids.max"),
        // runc 1.1 ignores kernelTCP (with a warning); crun and tong write it.
        ("memory", "memory.kmem.tcp.limit_in_bytes"),
    ];
    let tong = Tong::new();
    let id = unique_id("readback");
    let (mut ours, warnings) =
        read_back(&common::tong_bin(), tong.root.path(), &bundle, &id, &files);
    let runc_root = tempfile::tempdir().unwrap();
    let runc_id = unique_id("readback-runc");
    let (mut theirs, _) = read_back(runc, runc_root.path(), &bundle, &runc_id, &files);
    let (our_tcp, their_tcp) = (ours.pop().unwrap(), theirs.pop().unwrap());
    assert_eq!(ours, theirs, "tong vs runc for {files:?}");
    assert_eq!(ours[0], "67108864");
    assert_eq!(ours[14], "42");
    if Path::new("/sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes").exists() {
        assert_eq!(our_tcp, "16777216", "runc gave {their_tcp}");
    } else {
        assert!(warnings.contains("memory.kernelTCP"), "{warnings}");
    }
    // Linux 6 keeps memory.kmem.limit_in_bytes unlimited whatever is written: said so.
    if ours[5] == "9223372036854771712" {
        assert!(
            warnings.contains("linux.resources.memory.kernel ="),
            "{warnings}"
        );
    }
    tong.assert_clean(&id, Some(&bundle), None);
    common::assert_no_cgroup(&runc_id);
}

#[test]
fn the_v2_backend_warns_about_each_field_cgroup2_lacks() {
    let test = "the_v2_backend_warns_about_each_field_cgroup2_lacks";
    if !root_or_skip(test) {
        return;
    }
    let Some(unified) = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("{p}/cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "hugetlb"))
        })
    else {
        tong_testkit::skip(test, "no cgroup2 mount offering hugetlb");
        return;
    };
    let mut cfg = config(&["sleep", "30"]);
    cfg["linux"]["resources"] = json!({
        "memory": {"kernel": 1_048_576, "kernelTCP": 1_048_576, "swappiness": 10,
            "disableOOMKiller": true, "useHierarchy": false},
        "cpu": {"realtimePeriod": 1_000_000, "realtimeRuntime": 1000},
        "blockIO": {"leafWeight": 100},
        "network": {"classID": 1_048_577, "priorities": [{"name": "lo", "priority": 1}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4_194_304}]
    });
    let bundle = Bundle::new(&cfg);
    let tong = Tong::new();
    let id = unique_id("v2-warns");
    let log = bundle.path().join("tong-log.json");
    let out = tong.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "run",
        "-d",
        "--backend",
        "cgroup=v2",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The plugin's warnings go through the engine's log: also in the --log file (the
    // ABI 1.2 warning sink), where engines such as podman and containerd read them.
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let logged_warnings: Vec<String> = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["level"] == "warning")
        .filter_map(|l| l["msg"].as_str().map(str::to_string))
        .collect();
    for field in [
        "memory.kernel",
        "memory.kernelTCP",
        "memory.swappiness",
        "memory.disableOOMKiller",
        "memory.useHierarchy",
        "cpu.realtimeRuntime",
        "cpu.realtimePeriod",
        "blockIO.leafWeight",
        "network.classID",
        "network.priorities",
    ] {
        let line = format!("tong: warning: linux.resources.{field} is not applied: cgroup v2");
        assert_eq!(stderr.matches(&line).count(), 1, "{field}: {stderr}");
        let message = format!("linux.resources.{field} is not applied: cgroup v2");
        assert_eq!(
            logged_warnings
                .iter()
                .filter(|m| m.starts_with(&message))
                .count(),
            1,
            "{field} in the --log file: {logged}"
        );
    }
    // What cgroup2 has is applied.
    let max = std::fs::read_to_string(format!("{unified}/{id}/hugetlb.2MB.max")).unwrap();
    assert_eq!(max.trim(), "4194304");
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn update_writes_kernel_tcp_and_realtime_on_v1() {
    let test = "update_writes_kernel_tcp_and_realtime_on_v1";
    if !root_or_skip(test) {
        return;
    }
    let tcp = Path::new("/sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes");
    let rt = Path::new("/sys/fs/cgroup/cpu/cpu.rt_period_us");
    if !tcp.exists() || !rt.exists() {
        tong_testkit::skip(test, "this kernel has no memory.kmem.tcp or cpu.rt files");
        return;
    }
    let tong = Tong::new();
    let mut cfg = config(&["sleep", "30"]);
    cfg["linux"]["resources"] = json!({"memory": {"limit": 67_108_864}});
    let bundle = Bundle::new(&cfg);
    let id = unique_id("update-tcp");
    tong.run_detached(&bundle, &id);
    let file = bundle.path().join("resources.json");
    let resources = json!({"memory": {"kernelTCP": 8_388_608},
        "cpu": {"realtimePeriod": 400_000, "realtimeRuntime": 2000}});
    std::fs::write(&file, resources.to_string()).unwrap();
    tong.ok(&["update", "--resources", file.to_str().unwrap(), &id]);
    let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).unwrap();
    let tcp_now = read(&format!("memory/{id}/memory.kmem.tcp.limit_in_bytes"));
    assert_eq!(tcp_now.trim(), "8388608");
    assert_eq!(read(&format!("cpu/{id}/cpu.rt_period_us")).trim(), "400000");
    assert_eq!(read(&format!("cpu/{id}/cpu.rt_runtime_us")).trim(), "2000");
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}
