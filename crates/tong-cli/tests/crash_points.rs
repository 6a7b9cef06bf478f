//! Crash safety: tong is killed (SIGKILL, nothing runs after it) at every named step of
//! create, start and delete, or the container's init is killed there. Afterwards
//! `delete --force` and a fresh create of the same id must succeed and the host must
//! hold nothing of the container: no state directory, cgroup, mount or process.
//!
//! The fault points exist only in builds with the `fault-injection` feature, and this
//! test is built only with it (`required-features`):
//! `tini -s -- cargo test -p tong-cli --features fault-injection --test crash_points`.

mod common;
mod rel;

use std::os::unix::process::ExitStatusExt;

use common::{root_or_skip, unique_id, Bundle, Tong};
use rel::{assert_gone, marked_bundle, recorded_pid, run_with};

/// `create` of the bundle, with the backends of `TONG_CRASH_BACKENDS` (e.g.
/// `rootfs=overlay,net=bridge`) to run the matrix over other plugins than the probed ones.
fn create_args<'a>(bundle: &'a Bundle, id: &'a str) -> Vec<&'a str> {
    static BACKENDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let backends = BACKENDS.get_or_init(|| {
        std::env::var("TONG_CRASH_BACKENDS")
            .unwrap_or_default()
            .split(',')
            .filter(|b| !b.is_empty())
            .map(str::to_string)
            .collect()
    });
    let mut args = vec!["create"];
    for b in backends {
        args.extend(["--backend", b.as_str()]);
    }
    args.extend(["--bundle", bundle.path().to_str().unwrap(), id]);
    args
}

/// `delete --force` succeeds and nothing of the container remains; then the same id
/// can be created again (and is cleaned up again).
fn recover_and_reuse(tong: &Tong, id: &str, bundle: &Bundle, step: &str) {
    let pid = recorded_pid(tong, id);
    tong.ok(&["delete", "--force", id]);
    assert_gone(tong, id, bundle, pid);
    tong.ok(&create_args(bundle, id));
    let pid = recorded_pid(tong, id);
    tong.ok(&["delete", "--force", id]);
    assert_gone(tong, id, bundle, pid);
    // Network backends with an address pool (net=bridge) keep it in the root: no
    // address may stay allocated to the container.
    for entry in std::fs::read_dir(tong.root.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".ipam-")
            && std::path::Path::new(&name)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            let pool = std::fs::read_to_string(entry.path()).unwrap_or_default();
            assert!(
                !pool.contains(&format!("\"{id}\"")),
                "after {step}: {name} still holds an address for {id}: {pool}"
            );
        }
    }
    assert!(
        rel::left_in_root(tong).is_empty(),
        "after {step}: left in the state root: {:?}",
        rel::left_in_root(tong)
    );
}

/// Runs `args` with `var=step` and checks tong was killed by SIGKILL there (which
/// proves the step is reached).
fn crash_at(tong: &Tong, step: &str, args: &[&str]) {
    let out = run_with(tong, args, &[("TONG_CRASH_AT", step)]);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "tong {args:?} with TONG_CRASH_AT={step} should die by SIGKILL, got {} ({})",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What has to exist before the command that is crashed: the phase of each step.
fn command_of(step: &str) -> &'static str {
    match step.split(':').next().unwrap() {
        "create" => "create",
        "start" => "start",
        _ => "delete",
    }
}

fn prepare(tong: &Tong, id: &str, bundle: &Bundle, command: &str) {
    match command {
        "create" => {}
        "start" => {
            tong.ok(&create_args(bundle, id));
        }
        _ => {
            tong.ok(&create_args(bundle, id));
            tong.ok(&["start", id]);
        }
    }
}

fn command_args<'a>(command: &str, bundle: &'a Bundle, id: &'a str) -> Vec<&'a str> {
    match command {
        "create" => create_args(bundle, id),
        "start" => vec!["start", id],
        _ => vec!["delete", "--force", id],
    }
}

#[test]
fn kill_9_of_tong_at_every_step_leaves_nothing_after_delete_force() {
    if !root_or_skip("kill_9_of_tong_at_every_step_leaves_nothing_after_delete_force") {
        return;
    }
    let tong = Tong::new();
    for step in tong::fault::STEPS {
        let id = unique_id("crash");
        let bundle = marked_bundle(&id);
        let command = command_of(step);
        prepare(&tong, &id, &bundle, command);
        crash_at(&tong, step, &command_args(command, &bundle, &id));
        recover_and_reuse(&tong, &id, &bundle, step);
        println!("ok: kill -9 of tong at {step}");
    }
}

#[test]
fn the_init_dying_at_every_step_leaves_nothing_after_delete_force() {
    if !root_or_skip("the_init_dying_at_every_step_leaves_nothing_after_delete_force") {
        return;
    }
    let tong = Tong::new();
    let first_with_init = tong::fault::STEPS
        .iter()
        .position(|s| *s == "create:spawned")
        .unwrap();
    for step in &tong::fault::STEPS[first_with_init..] {
        let id = unique_id("initdies");
        let bundle = marked_bundle(&id);
        let command = command_of(step);
        prepare(&tong, &id, &bundle, command);
        let args = command_args(command, &bundle, &id);
        let out = run_with(&tong, &args, &[("TONG_KILL_INIT_AT", step)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code().is_some(),
            "tong {args:?} must not crash when the init dies at {step}: {}",
            out.status
        );
        if out.status.success() {
            if command != "delete" {
                // The init died after the step that could notice: the container is
                // simply stopped (once the kernel has delivered the SIGKILL).
                assert!(
                    common::wait_until(5, || tong.state(&id)["status"] == "stopped"),
                    "after {step}: {}",
                    tong.state(&id)
                );
            }
        } else {
            // A create that lost its init says so in one line and undoes everything.
            assert_eq!(command, "create", "{step}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{step}: one line: {err}");
            assert!(err.starts_with("tong: "), "{step}: {err}");
            tong.assert_clean(&id, Some(&bundle), None);
        }
        recover_and_reuse(&tong, &id, &bundle, step);
        println!("ok: init killed at {step}: {}", err.trim());
    }
}

/// No mount under the state root and no pool directory: the pool left nothing.
fn assert_no_pool_left(tong: &Tong, step: &str) {
    let root = tong.root.path().display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&root)).collect();
    assert!(left.is_empty(), "after {step}: mounts left: {left:?}");
    assert!(
        rel::left_in_root(tong).is_empty(),
        "after {step}: left in the state root: {:?}",
        rel::left_in_root(tong)
    );
}

fn pool_ready(tong: &Tong) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&tong.ok(&["pool", "status"])).unwrap();
    v["netns_ready"].as_u64().unwrap()
}

#[test]
fn kill_9_of_tong_at_every_pool_step_leaves_nothing() {
    if !root_or_skip("kill_9_of_tong_at_every_pool_step_leaves_nothing") {
        return;
    }
    let tong = Tong::new();
    // A fill killed with a namespace mounted but not published: the next fill destroys
    // it and makes a fresh one; so does a drain.
    for then_fill in [true, false] {
        crash_at(&tong, "pool:netns-mounted", &["pool", "fill", "1"]);
        assert_eq!(
            pool_ready(&tong),
            0,
            "a half-made namespace counted as ready"
        );
        if then_fill {
            tong.ok(&["pool", "fill"]);
            assert_eq!(pool_ready(&tong), 1);
        }
        tong.ok(&["pool", "drain"]);
        assert_no_pool_left(&tong, "pool:netns-mounted");
    }
    println!("ok: kill -9 of tong at pool:netns-mounted");
    // A create killed with a claimed namespace still mounted in the container's
    // directory: delete --force unmounts it, and the pool drains clean.
    let step = "create:pool-netns-claimed";
    tong.ok(&["pool", "fill", "2"]);
    let id = unique_id("crashpool");
    let bundle = marked_bundle(&id);
    crash_at(&tong, step, &create_args(&bundle, &id));
    assert_eq!(pool_ready(&tong), 1, "the claimed namespace is not ready");
    tong.ok(&["delete", "--force", &id]);
    assert_gone(&tong, &id, &bundle, None);
    tong.ok(&["pool", "drain"]);
    assert_no_pool_left(&tong, step);
    println!("ok: kill -9 of tong at {step}");
}
