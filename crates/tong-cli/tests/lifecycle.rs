//! End to end through the `tong` binary: every lifecycle command and state transition,
//! `run` exit codes, and isolation seen from inside the container. Each test checks the
//! host afterwards.

mod common;

use common::{config, root_or_skip, unique_id, wait_until, Bundle, Tong};
use serde_json::json;

#[test]
fn create_start_kill_delete_walks_every_state() {
    if !root_or_skip("create_start_kill_delete_walks_every_state") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["sleep", "60"]));
    let id = unique_id("walk");
    let pid_file = bundle.path().join("pid");
    tong.ok(&[
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);

    let state = tong.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["bundle"], bundle.path().to_str().unwrap());
    assert_eq!(state["ociVersion"], "1.0.2");
    let pid = state["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    // Before start the process has not exec'd: it is still tong's child code.
    assert_ne!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "sleep"
    );

    let listed = tong.ok(&["list", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(tong.ok(&["list"]).contains(&id));

    tong.ok(&["start", &id]);
    assert_eq!(tong.state(&id)["status"], "running");
    assert!(wait_until(5, || std::fs::read_to_string(format!(
        "/proc/{pid}/comm"
    ))
    .is_ok_and(|c| c.trim() == "sleep")));

    let err = tong.fails(&["delete", &id]);
    assert!(err.contains("running"), "{err}");

    tong.ok(&["kill", &id, "KILL"]);
    assert!(wait_until(5, || tong.state(&id)["status"] == "stopped"));
    assert_eq!(tong.state(&id)["pid"], 0);
    tong.ok(&["delete", &id]);
    tong.assert_clean(&id, Some(&bundle), Some(pid));
}

#[test]
fn kill_takes_names_numbers_and_all() {
    if !root_or_skip("kill_takes_names_numbers_and_all") {
        return;
    }
    let tong = Tong::new();
    // sh traps TERM and USR1 so we can see delivery by name and by number.
    let script = "trap 'echo got-term > /tmp/t' TERM; trap 'echo got-usr1 > /tmp/u' USR1; \
                  sleep 100 & sleep 100 & while true; do sleep 0.05; done";
    let bundle = Bundle::new(&config(&["sh", "-c", script]));
    let id = unique_id("kill");
    tong.run_detached(&bundle, &id);
    let pid = tong.state(&id)["pid"].as_i64().unwrap() as i32;
    let root = format!("/proc/{pid}/root/tmp");
    tong.ok(&["kill", &id, "SIGUSR1"]);
    assert!(wait_until(5, || std::path::Path::new(&format!("{root}/u")).exists()));
    tong.ok(&["kill", &id, "15"]);
    assert!(wait_until(5, || std::path::Path::new(&format!("{root}/t")).exists()));
    assert!(tong
        .fails(&["kill", &id, "NOPE"])
        .contains("unknown signal"));

    let pids: Vec<i32> = serde_json::from_str(&tong.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(pids.len() >= 3, "expected sh and two sleeps, got {pids:?}");
    tong.ok(&["kill", "--all", &id, "KILL"]);
    assert!(wait_until(5, || pids
        .iter()
        .all(|p| !common::process_alive(*p))));
    assert!(wait_until(5, || tong.state(&id)["status"] == "stopped"));
    let err = tong.fails(&["kill", &id, "KILL"]);
    assert!(err.contains("stopped"), "{err}");
    tong.ok(&["delete", &id]);
    tong.assert_clean(&id, Some(&bundle), Some(pid));
}

#[test]
fn run_exits_with_the_container_code() {
    if !root_or_skip("run_exits_with_the_container_code") {
        return;
    }
    let tong = Tong::new();
    for (args, code) in [
        (vec!["true"], 0),
        (vec!["sh", "-c", "exit 3"], 3),
        (vec!["false"], 1),
    ] {
        let bundle = Bundle::new(&config(&args));
        let id = unique_id("code");
        let out = tong.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tong.assert_clean(&id, Some(&bundle), None);
    }
}

#[test]
fn run_reports_128_plus_signal_when_killed() {
    if !root_or_skip("run_reports_128_plus_signal_when_killed") {
        return;
    }
    let tong = Tong::new();
    // By name, and a realtime signal by number (sent and collected as a plain number).
    // Without a pid namespace for the latter: as pid 1, sleep would ignore it.
    let realtime = libc::SIGRTMIN() + 6;
    for (signal, number) in [("KILL".to_string(), 9), (realtime.to_string(), realtime)] {
        let mut cfg = config(&["sleep", "60"]);
        if number != 9 {
            cfg["linux"]["namespaces"] =
                json!([{"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]);
        }
        let bundle = Bundle::new(&cfg);
        let id = unique_id("sig");
        let child = tong
            .command(&["run", "--bundle", bundle.path().to_str().unwrap(), &id])
            .spawn()
            .unwrap();
        let mut child = scopeguard(child);
        assert!(wait_until(10, || tong
            .run(&["state", &id])
            .status
            .success()
            && tong.state(&id)["status"] == "running"));
        let pid = tong.state(&id)["pid"].as_i64().unwrap() as i32;
        tong.ok(&["kill", &id, &signal]);
        let status = child.0.wait().unwrap();
        assert_eq!(status.code(), Some(128 + number), "killed by {signal}");
        tong.assert_clean(&id, Some(&bundle), Some(pid));
    }
}

/// Kills the child on drop (only the process this test started).
struct Guard(std::process::Child);
fn scopeguard(child: std::process::Child) -> Guard {
    Guard(child)
}
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_forwards_sigterm_to_the_container() {
    if !root_or_skip("run_forwards_sigterm_to_the_container") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; while true; do sleep 0.05; done",
    ]));
    let id = unique_id("fwd");
    let mut child = scopeguard(
        tong.command(&["run", "--bundle", bundle.path().to_str().unwrap(), &id])
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(10, || tong
        .run(&["state", &id])
        .status
        .success()
        && tong.state(&id)["status"] == "running"));
    std::thread::sleep(std::time::Duration::from_millis(100));
    // SAFETY: kill(2) of the tong process this test started.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert_eq!(child.0.wait().unwrap().code(), Some(42));
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn isolation_seen_from_inside() {
    if !root_or_skip("isolation_seen_from_inside") {
        return;
    }
    let tong = Tong::new();
    // Globs, not pipes: sh expands them itself, so it is the only process inside.
    let script = "echo pid=$$; set -- /proc/[0-9]*; echo procs=$#; echo host=$(hostname); \
                  cd /sys/class/net; set -- *; echo nets=$*; read flags < lo/flags; echo lo=$flags; \
                  echo mounts; cat /proc/self/mountinfo";
    let bundle = Bundle::new(&config(&["sh", "-c", script]));
    let id = unique_id("iso");
    let out = tong.ok(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(
        out.contains("procs=1\n"),
        "only the container's own process expected: {out}"
    );
    assert!(out.contains("host=tong-test\n"), "{out}");
    assert!(out.contains("nets=lo\n"), "only lo expected: {out}");
    let flags = out.lines().find_map(|l| l.strip_prefix("lo=")).unwrap();
    let flags = i64::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap();
    assert!(flags & libc::IFF_UP as i64 != 0, "lo is not up: {flags:#x}");
    let mounts = out.split("mounts\n").nth(1).unwrap();
    let roots: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    for expected in ["/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"] {
        assert!(
            roots.contains(&expected),
            "{expected} not mounted inside: {roots:?}"
        );
    }
    // The host's own mounts (this repository, /work) are not visible inside.
    assert!(
        !roots.iter().any(|r| r.starts_with("/work")),
        "host mounts leak into the container: {mounts}"
    );
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn host_network_is_kept_without_a_network_namespace() {
    if !root_or_skip("host_network_is_kept_without_a_network_namespace") {
        return;
    }
    let tong = Tong::new();
    let mut cfg = config(&["sh", "-c", "ls /sys/class/net | wc -l"]);
    cfg["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]);
    // sysfs of the host's network namespace cannot be mounted read-write without netns
    // ownership; bind the host's instead.
    cfg["mounts"][4] = json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "ro"]});
    let bundle = Bundle::new(&cfg);
    let id = unique_id("hostnet");
    let out = tong.ok(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let host_links = std::fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(out.trim(), host_links.to_string());
    let state_backends = tong.root.path().join(&id);
    assert!(!state_backends.exists());
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn pause_and_resume_freeze_the_container() {
    if !root_or_skip("pause_and_resume_freeze_the_container") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["sh", "-c", "while true; do :; done"]));
    let id = unique_id("pause");
    tong.run_detached(&bundle, &id);
    let pid = tong.state(&id)["pid"].as_i64().unwrap() as i32;
    tong.ok(&["pause", &id]);
    assert_eq!(tong.state(&id)["status"], "paused");
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = cpu();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(cpu(), before, "a paused container used CPU");
    assert!(tong.fails(&["pause", &id]).contains("paused"));
    tong.ok(&["resume", &id]);
    assert_eq!(tong.state(&id)["status"], "running");
    assert!(
        wait_until(5, || cpu() > before),
        "a resumed container did not run"
    );
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), Some(pid));
}

#[test]
fn delete_force_removes_a_running_container() {
    if !root_or_skip("delete_force_removes_a_running_container") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["sh", "-c", "sleep 100 & sleep 100"]));
    let id = unique_id("force");
    tong.run_detached(&bundle, &id);
    let pids: Vec<i32> = serde_json::from_str(&tong.ok(&["ps", "--format", "json", &id])).unwrap();
    tong.ok(&["delete", "--force", &id]);
    for pid in &pids {
        assert!(
            !common::process_alive(*pid),
            "pid {pid} of the container survived delete --force"
        );
    }
    tong.assert_clean(&id, Some(&bundle), None);
    // Deleting what is gone is fine with --force, an error without.
    tong.ok(&["delete", "--force", &id]);
    assert!(tong.fails(&["delete", &id]).contains("does not exist"));
}

#[test]
fn features_and_spec_follow_runc() {
    let tong = Tong::new();
    let features: serde_json::Value = serde_json::from_str(&tong.ok(&["features"])).unwrap();
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert!(features["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("pid")));
    let dir = tempfile::tempdir().unwrap();
    tong.ok(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert!(spec["ociVersion"].as_str().unwrap().starts_with("1."));
    assert_eq!(spec["root"]["path"], "rootfs");
    assert_eq!(spec["process"]["terminal"], true, "as runc spec");
    assert_eq!(spec["hostname"], "tong");
    // Every device denied (the runtime adds its defaults), as runc spec writes it.
    let deny_all = json!([{"allow": false, "access": "rwm"}]);
    assert_eq!(spec["linux"]["resources"]["devices"], deny_all);
    assert!(tong
        .fails(&["spec", "--bundle", dir.path().to_str().unwrap()])
        .contains("already exists"));
    // The same entries as the installed runc's.
    let runc_dir = tempfile::tempdir().unwrap();
    match std::process::Command::new("runc")
        .arg("spec")
        .current_dir(runc_dir.path())
        .status()
    {
        Ok(s) if s.success() => {
            let runc: serde_json::Value = serde_json::from_slice(
                &std::fs::read(runc_dir.path().join("config.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(runc["linux"]["resources"]["devices"], deny_all);
        }
        _ => {
            tong_testkit::skip(
                "features_and_spec_follow_runc (runc part)",
                "runc spec did not run",
            );
        }
    }
}
