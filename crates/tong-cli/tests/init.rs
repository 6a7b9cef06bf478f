//! Init mode for system containers: tong's minimal init is pid 1, reaps orphans and
//! forwards signals to the program.

mod common;

use common::{config, root_or_skip, unique_id, Bundle, Tong};

/// (state letter, parent pid) of a host process.
fn stat_of(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Children of `parent` on the host: (live, zombie).
fn children(parent: i32) -> (usize, usize) {
    let mut counts = (0, 0);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        match stat_of(pid) {
            Some(('Z', p)) if p == parent => counts.1 += 1,
            Some((_, p)) if p == parent => counts.0 += 1,
            _ => {}
        }
    }
    counts
}

const ORPHANS: &str = "for i in $(seq 100); do (sleep 0.2 &); done; echo spawned > /tmp/spawned; \
                       sleep 600";

#[test]
fn init_reaps_100_orphans_and_stops_on_sigterm() {
    if !root_or_skip("init_reaps_100_orphans_and_stops_on_sigterm") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["sh", "-c", ORPHANS]));
    let id = unique_id("init");
    tong.ok(&[
        "run",
        "-d",
        "--init",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    let init = tong.state(&id)["pid"].as_i64().unwrap() as i32;
    assert!(common::wait_until(20, || std::path::Path::new(&format!(
        "/proc/{init}/root/tmp/spawned"
    ))
    .exists()));
    // Every orphaned sleep was reparented to the init and, once exited, reaped: only
    // the program is left, no zombie.
    assert!(
        common::wait_until(20, || children(init) == (1, 0)),
        "children of the init (live, zombie): {:?}",
        children(init)
    );
    // Pid 1 in the container is tong's init; the program is another process.
    let out = tong.ok(&["exec", &id, "sh", "-c", "cat /proc/1/comm; echo ppid=$PPID"]);
    assert!(out.starts_with("tong-init\n"), "pid 1 inside: {out}");
    let pids: Vec<i32> = serde_json::from_str(&tong.ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(pids.len(), 2, "init and the program: {pids:?}");
    // SIGTERM to the container goes to the program; the init then exits with its status.
    tong.ok(&["kill", &id, "TERM"]);
    assert!(
        common::wait_until(10, || tong.state(&id)["status"] == "stopped"),
        "the container did not stop on SIGTERM"
    );
    tong.ok(&["delete", &id]);
    tong.assert_clean(&id, Some(&bundle), Some(init));
}

#[test]
fn init_by_annotation_exits_with_the_program_status() {
    if !root_or_skip("init_by_annotation_exits_with_the_program_status") {
        return;
    }
    let tong = Tong::new();
    let mut cfg = config(&["sh", "-c", "(sleep 0.1 &); sleep 0.3; exit 3"]);
    cfg["annotations"] = serde_json::json!({"tong.init": "true"});
    let bundle = Bundle::new(&cfg);
    let id = unique_id("init-ann");
    let out = tong.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tong.assert_clean(&id, Some(&bundle), None);
    // A program that cannot be found is still a clear error, not a silent 127.
    let bundle = Bundle::new(&config(&["no-such-program"]));
    let err = tong.fails(&[
        "run",
        "--init",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert!(err.contains("executable file not found"), "{err}");
    tong.assert_clean(&id, Some(&bundle), None);
}
