//! A running container observed and changed: `update` moves live limits (read back on
//! the host, felt inside), `events --stats` follows a memory allocation, `ps` lists
//! what runs.

mod common;

use common::{config, root_or_skip, unique_id, Bundle, Tong};
use serde_json::{json, Value};

fn read_cgroup(file: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/{file}"))
        .unwrap()
        .trim()
        .to_string()
}

fn running(tong: &Tong, resources: Value) -> (Bundle, String) {
    let mut cfg = config(&["sleep", "600"]);
    cfg["linux"]["resources"] = resources;
    let bundle = Bundle::new(&cfg);
    let id = unique_id("update");
    tong.run_detached(&bundle, &id);
    (bundle, id)
}

const FORK_SIX: &str = "for i in 1 2 3 4 5 6; do sleep 1 & done; wait; echo forked-all";

#[test]
fn update_changes_live_limits() {
    if !root_or_skip("update_changes_live_limits") {
        return;
    }
    let tong = Tong::new();
    let (bundle, id) = running(
        &tong,
        json!({"memory": {"limit": 67_108_864}, "pids": {"limit": 50}}),
    );
    // Six background forks fit under 50 processes...
    assert!(tong
        .ok(&["exec", &id, "sh", "-c", FORK_SIX])
        .contains("forked-all"));
    // ...not under 4 (init, the exec'd shell and two more).
    tong.ok(&["update", "--pids-limit", "4", "--memory", "32m", &id]);
    assert_eq!(read_cgroup(&format!("pids/{id}/pids.max")), "4");
    assert_eq!(
        read_cgroup(&format!("memory/{id}/memory.limit_in_bytes")),
        "33554432"
    );
    let out = tong.run(&["exec", &id, "sh", "-c", FORK_SIX]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("can't fork"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --resources FILE, as podman calls it; the CPU flags.
    let file = bundle.path().join("resources.json");
    std::fs::write(&file, json!({"pids": {"limit": 40}}).to_string()).unwrap();
    tong.ok(&[
        "update",
        "--resources",
        file.to_str().unwrap(),
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        &id,
    ]);
    assert_eq!(read_cgroup(&format!("pids/{id}/pids.max")), "40");
    assert_eq!(read_cgroup(&format!("cpu/{id}/cpu.cfs_quota_us")), "20000");
    assert!(tong
        .ok(&["exec", &id, "sh", "-c", FORK_SIX])
        .contains("forked-all"));
    // --resources - reads stdin.
    std::fs::write(&file, json!({"memory": {"limit": 50_331_648}}).to_string()).unwrap();
    let status = tong
        .command(&["update", "--resources", "-", &id])
        .stdin(std::fs::File::open(&file).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        read_cgroup(&format!("memory/{id}/memory.limit_in_bytes")),
        "50331648"
    );
    // The new limit shows in the stats.
    let stats: Value = serde_json::from_str(tong.ok(&["events", "--stats", &id]).trim()).unwrap();
    assert_eq!(stats["data"]["pids"]["limit"], 40);
    assert_eq!(stats["data"]["memory"]["usage"]["limit"], 50_331_648);
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn update_refuses_bad_input() {
    if !root_or_skip("update_refuses_bad_input") {
        return;
    }
    let tong = Tong::new();
    let (bundle, id) = running(&tong, json!({"pids": {"limit": 50}}));
    let err = tong.fails(&["update", "--memory", "lots", &id]);
    assert!(err.contains("--memory \"lots\""), "{err}");
    let err = tong.fails(&["update", &id]);
    assert!(err.contains("nothing to change"), "{err}");
    let file = bundle.path().join("bad.json");
    std::fs::write(&file, "{\"pids\": ").unwrap();
    let err = tong.fails(&["update", "--resources", file.to_str().unwrap(), &id]);
    assert!(err.contains("invalid JSON"), "{err}");
    std::fs::write(&file, json!({"pids": {"limit": "many"}}).to_string()).unwrap();
    let err = tong.fails(&["update", "--resources", file.to_str().unwrap(), &id]);
    assert!(err.contains("linux.resources"), "{err}");
    let err = tong.fails(&["update", "--pids-limit", "3", "no-such-container"]);
    assert!(err.contains("does not exist"), "{err}");
    // Nothing was changed by the refused updates.
    assert_eq!(read_cgroup(&format!("pids/{id}/pids.max")), "50");
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn stats_follow_a_memory_allocation_and_ps_lists_what_runs() {
    if !root_or_skip("stats_follow_a_memory_allocation_and_ps_lists_what_runs") {
        return;
    }
    let tong = Tong::new();
    let (bundle, id) = running(&tong, json!({"memory": {"limit": 268_435_456}}));
    let usage = || -> u64 {
        let stats: Value =
            serde_json::from_str(tong.ok(&["events", "--stats", &id]).trim()).unwrap();
        assert_eq!(stats["type"], "stats");
        assert_eq!(stats["id"], id.as_str());
        stats["data"]["memory"]["usage"]["usage"].as_u64().unwrap()
    };
    let before = usage();
    // 32 MiB in the container's tmpfs stays charged to its memory cgroup.
    tong.ok(&[
        "exec",
        &id,
        "dd",
        "if=/dev/zero",
        "of=/dev/shm/fill",
        "bs=1M",
        "count=32",
    ]);
    let after = usage();
    assert!(
        after >= before + 30 * 1024 * 1024,
        "memory usage {before} -> {after} after writing 32 MiB"
    );
    // ps: the init and a detached exec, by host pid; the table shows their commands.
    let pid_file = bundle.path().join("sleeper.pid");
    tong.ok(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "321",
    ]);
    let sleeper: i64 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let init = tong.state(&id)["pid"].as_i64().unwrap();
    let pids: Vec<i64> = serde_json::from_str(&tong.ok(&["ps", "--format", "json", &id])).unwrap();
    let mut want = vec![init, sleeper];
    want.sort_unstable();
    assert_eq!(pids, want);
    let table = tong.ok(&["ps", &id]);
    assert!(table.contains("sleep 321"), "{table}");
    assert!(table.contains("sleep 600"), "{table}");
    // Interval mode prints one event per interval until the container is gone.
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut events = tong.command(&["events", "--interval", "100ms", &id]);
    events.stdout(out.reopen().unwrap());
    let mut child = scoped(events);
    assert!(common::wait_until(10, || {
        std::fs::read_to_string(out.path()).unwrap().lines().count() >= 3
    }));
    tong.ok(&["delete", "--force", &id]);
    let status = child.0.wait().unwrap();
    assert!(
        !status.success(),
        "events ends with an error once the container is gone"
    );
    for line in std::fs::read_to_string(out.path()).unwrap().lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["type"], "stats", "{line}");
        assert!(event["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0);
    }
    tong.assert_clean(&id, Some(&bundle), None);
}

/// A child process killed on drop.
struct Scoped(std::process::Child);

fn scoped(mut cmd: std::process::Command) -> Scoped {
    Scoped(cmd.stderr(std::process::Stdio::null()).spawn().unwrap())
}

impl Drop for Scoped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
