//! Cgroup limits from config.json, checked on the host and felt inside the container.

mod common;

use common::{config, root_or_skip, unique_id, Bundle, Tong};
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
        println!("SKIP the_v2_backend_runs_containers_on_the_unified_hierarchy: no cgroup2 mount");
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
