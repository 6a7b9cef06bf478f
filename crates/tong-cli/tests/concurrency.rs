//! Concurrency: many clients at once lose nothing. Fifty containers made, started and
//! deleted in parallel; two creates of one id (exactly one wins); kill, delete and state
//! racing on one container (its state is never seen corrupt); `list` with 1,000
//! containers present. Timing is measured by ci/bench-list, never asserted here.

mod common;
mod rel;

use std::sync::{Arc, Barrier};

use common::{root_or_skip, unique_id, Tong};
use rel::{assert_gone, marked_bundle, recorded_pid};

#[test]
fn fifty_parallel_lifecycles_leave_nothing() {
    if !root_or_skip("fifty_parallel_lifecycles_leave_nothing") {
        return;
    }
    let tong = Arc::new(Tong::new());
    let barrier = Arc::new(Barrier::new(50));
    let workers: Vec<_> = (0..50)
        .map(|_| {
            let (tong, barrier) = (tong.clone(), barrier.clone());
            std::thread::spawn(move || {
                let id = unique_id("par");
                let bundle = marked_bundle(&id);
                barrier.wait();
                tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
                tong.ok(&["start", &id]);
                let state = tong.state(&id);
                assert_eq!(state["status"], "running", "{id}: {state}");
                let pid = recorded_pid(&tong, &id);
                tong.ok(&["kill", &id, "KILL"]);
                assert!(common::wait_until(10, || tong.state(&id)["status"] == "stopped"));
                tong.ok(&["delete", &id]);
                (id, bundle, pid)
            })
        })
        .collect();
    for w in workers {
        let (id, bundle, pid) = w.join().expect("a worker failed");
        assert_gone(&tong, &id, &bundle, pid);
    }
    assert_eq!(rel::left_in_root(&tong), Vec::<std::ffi::OsString>::new());
}

#[test]
fn two_creates_of_one_id_exactly_one_wins() {
    if !root_or_skip("two_creates_of_one_id_exactly_one_wins") {
        return;
    }
    let tong = Arc::new(Tong::new());
    for _ in 0..10 {
        let id = unique_id("twin");
        let bundle = Arc::new(marked_bundle(&id));
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (tong, barrier, bundle, id) =
                    (tong.clone(), barrier.clone(), bundle.clone(), id.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    tong.run(&["create", "--bundle", bundle.path().to_str().unwrap(), &id])
                })
            })
            .collect();
        let outs: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(winners, 1, "exactly one create of {id} wins: {outs:?}");
        let loser = outs.iter().find(|o| !o.status.success()).unwrap();
        let err = String::from_utf8_lossy(&loser.stderr);
        assert_eq!(
            err.trim(),
            format!("tong: container {id:?} already exists"),
            "the loser says why"
        );
        // The winner's container is whole and works.
        assert_eq!(tong.state(&id)["status"], "created");
        tong.ok(&["start", &id]);
        assert_eq!(tong.state(&id)["status"], "running");
        let pid = recorded_pid(&tong, &id);
        tong.ok(&["delete", "--force", &id]);
        assert_gone(&tong, &id, &bundle, pid);
    }
}

#[test]
fn racing_kill_delete_and_state_never_see_a_corrupt_state() {
    if !root_or_skip("racing_kill_delete_and_state_never_see_a_corrupt_state") {
        return;
    }
    let tong = Arc::new(Tong::new());
    for round in 0..5 {
        let id = unique_id("race");
        let bundle = marked_bundle(&id);
        tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
        tong.ok(&["start", &id]);
        let pid = recorded_pid(&tong, &id);
        let barrier = Arc::new(Barrier::new(8));
        let clients: Vec<_> = (0..8)
            .map(|n| {
                let (tong, barrier, id) = (tong.clone(), barrier.clone(), id.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut seen = Vec::new();
                    for _ in 0..10 {
                        let args: Vec<&str> = match (n + round) % 4 {
                            0 => vec!["kill", &id, "TERM"],
                            1 => vec!["delete", "--force", &id],
                            2 => vec!["list", "--format", "json"],
                            _ => vec!["state", &id],
                        };
                        let out = tong.run(&args);
                        seen.push((args.join(" "), out));
                    }
                    seen
                })
            })
            .collect();
        for c in clients {
            for (cmd, out) in c.join().unwrap() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    !stderr.contains("corrupt") && !stderr.contains("state file"),
                    "{cmd}: {stderr}"
                );
                if out.status.success() {
                    if cmd.starts_with("state") {
                        let v: serde_json::Value = serde_json::from_str(&stdout)
                            .unwrap_or_else(|e| panic!("{cmd}: bad JSON {e}: {stdout}"));
                        assert_eq!(v["id"], id.as_str());
                    }
                    if cmd.starts_with("list") {
                        let _: serde_json::Value = serde_json::from_str(&stdout)
                            .unwrap_or_else(|e| panic!("{cmd}: bad JSON {e}: {stdout}"));
                    }
                } else {
                    // The only acceptable failures: the container is gone or stopped.
                    assert!(
                        stderr.contains("does not exist") || stderr.contains("not running"),
                        "{cmd}: {stderr}"
                    );
                }
            }
        }
        tong.ok(&["delete", "--force", &id]);
        assert_gone(&tong, &id, &bundle, pid);
    }
}

/// 1,000 containers made cheaply and honestly: one real created container, and 999
/// copies of its state record under other ids (all naming the one real process, which
/// is what `list` reads). `list` must show every one, with its id and status.
#[test]
fn list_is_correct_with_a_thousand_containers() {
    if !root_or_skip("list_is_correct_with_a_thousand_containers") {
        return;
    }
    let tong = Tong::new();
    let id = unique_id("many");
    let bundle = marked_bundle(&id);
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let pid = recorded_pid(&tong, &id);
    let dir = tong.root.path().join(&id);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    let copies: Vec<String> = (1..1000).map(|n| format!("{id}-copy{n:04}")).collect();
    for copy in &copies {
        let d = tong.root.path().join(copy);
        std::fs::create_dir(&d).unwrap();
        let mut r = record.clone();
        r["id"] = copy.as_str().into();
        std::fs::write(d.join("state.json"), serde_json::to_vec(&r).unwrap()).unwrap();
        // The fifo is what makes a container "created" rather than "running".
        nix::unistd::mkfifo(
            &d.join("exec.fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
    }
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&tong.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list.len(), 1000);
    let mut want: Vec<String> = copies.clone();
    want.push(id.clone());
    want.sort();
    let got: Vec<&str> = list.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(got, want);
    for c in &list {
        assert_eq!(c["status"], "created", "{c}");
        assert_eq!(c["pid"].as_i64().map(|p| p as i32), pid, "{c}");
    }
    let text = tong.ok(&["list"]);
    assert_eq!(
        text.lines().count(),
        1001,
        "a header and one line per container"
    );
    // The copies share the real container's cgroup and process: remove them as files.
    for copy in &copies {
        std::fs::remove_dir_all(tong.root.path().join(copy)).unwrap();
    }
    tong.ok(&["delete", "--force", &id]);
    assert_gone(&tong, &id, &bundle, pid);
}
