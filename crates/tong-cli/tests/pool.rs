//! The pool of ready-made network namespaces (docs/pools.md): fill, take on create,
//! refill after start, drain; a container never gets a namespace another one used; a
//! config with a new user namespace does not use the pool; nothing stays on the host.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{config, root_or_skip, unique_id, wait_until, Bundle, Tong};
use serde_json::Value;

fn status(tong: &Tong) -> (u64, u64) {
    let v: Value = serde_json::from_str(&tong.ok(&["pool", "status"])).unwrap();
    (
        v["netns_target"].as_u64().unwrap(),
        v["netns_ready"].as_u64().unwrap(),
    )
}

/// The namespace inodes of the ready entries.
fn ready_inodes(tong: &Tong) -> Vec<u64> {
    let ready = tong.root.path().join("-pool/netns/ready");
    std::fs::read_dir(ready)
        .unwrap()
        .flatten()
        .map(|e| std::fs::metadata(e.path().join("ns")).unwrap().ino())
        .collect()
}

fn netns_inode(pid: i32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino()
}

fn pid_of(tong: &Tong, id: &str) -> i32 {
    i32::try_from(tong.state(id)["pid"].as_i64().unwrap()).unwrap()
}

/// Nothing of the pool left: no mount under the root, no pool directory.
fn assert_pool_gone(tong: &Tong) {
    let root = tong.root.path().display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&root),
        "mounts left under {root}: {mountinfo}"
    );
    assert!(
        !tong.root.path().join("-pool").exists(),
        "pool directory left"
    );
}

#[test]
fn fill_take_refill_drain_and_never_reuse() {
    if !root_or_skip("fill_take_refill_drain_and_never_reuse") {
        return;
    }
    let tong = Tong::new();
    assert_eq!(status(&tong), (0, 0));
    tong.ok(&["pool", "fill", "2"]);
    assert_eq!(status(&tong), (2, 2));
    // The pool is not a container.
    assert_eq!(tong.ok(&["list", "-q"]).trim(), "");
    let pooled = ready_inodes(&tong);

    let bundle = Bundle::new(&config(&["sleep", "100"]));
    let first = unique_id("pool");
    tong.run_detached(&bundle, &first);
    let first_ns = netns_inode(pid_of(&tong, &first));
    assert!(pooled.contains(&first_ns), "{first_ns} not from {pooled:?}");
    // lo came up with the pooled namespace (IFF_UP|IFF_LOOPBACK).
    let flags = tong.ok(&["exec", &first, "cat", "/sys/class/net/lo/flags"]);
    assert_eq!(flags.trim(), "0x9");
    // Joined, the namespace is unmounted: it lives as long as the container.
    assert!(!tong.root.path().join(&first).join("pooled-netns").exists());
    // The detached refill tops the pool up with fresh namespaces.
    assert!(
        wait_until(10, || status(&tong) == (2, 2)),
        "not refilled: {:?}",
        status(&tong)
    );
    let refilled = ready_inodes(&tong);
    assert!(!refilled.contains(&first_ns), "a used namespace went back");

    let second = unique_id("pool");
    tong.run_detached(&bundle, &second);
    let second_ns = netns_inode(pid_of(&tong, &second));
    assert_ne!(first_ns, second_ns);
    assert!(refilled.contains(&second_ns) || pooled.contains(&second_ns));
    // ns=fork joins it too (after its fork, before the second clone).
    assert!(wait_until(10, || status(&tong).1 == 2));
    let before_fork = ready_inodes(&tong);
    let third = unique_id("pool");
    let path = bundle.path().to_str().unwrap();
    tong.ok(&[
        "run",
        "-d",
        "--backend",
        "ns=fork",
        "--bundle",
        path,
        &third,
    ]);
    assert!(before_fork.contains(&netns_inode(pid_of(&tong, &third))));
    for id in [&first, &second, &third] {
        tong.ok(&["delete", "--force", id]);
        tong.assert_clean(id, Some(&bundle), None);
    }
    assert!(wait_until(10, || status(&tong).1 == 2));
    let ready = ready_inodes(&tong);
    assert!(!ready.contains(&first_ns) && !ready.contains(&second_ns));

    assert_eq!(status(&tong), (2, 2));
    // A lower target destroys the surplus.
    tong.ok(&["pool", "fill", "1"]);
    assert_eq!(status(&tong), (1, 1));
    tong.ok(&["pool", "drain"]);
    assert_eq!(status(&tong), (0, 0));
    assert_pool_gone(&tong);
}

#[test]
fn a_new_user_namespace_does_not_take_from_the_pool() {
    if !root_or_skip("a_new_user_namespace_does_not_take_from_the_pool") {
        return;
    }
    let tong = Tong::new();
    tong.ok(&["pool", "fill", "1"]);
    let pooled = ready_inodes(&tong);
    let mut cfg = config(&["sleep", "100"]);
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "user"}));
    cfg["linux"]["uidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    cfg["linux"]["gidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    let bundle = Bundle::new(&cfg);
    let id = unique_id("pooluser");
    tong.run_detached(&bundle, &id);
    let ns = netns_inode(pid_of(&tong, &id));
    assert!(!pooled.contains(&ns));
    assert_eq!(ready_inodes(&tong), pooled, "the pool was touched");
    tong.ok(&["delete", "--force", &id]);
    tong.ok(&["pool", "drain"]);
    assert_pool_gone(&tong);
}

#[test]
fn a_pool_others_can_write_is_refused() {
    if !root_or_skip("a_pool_others_can_write_is_refused") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tong = Tong::new();
    tong.ok(&["pool", "fill", "1"]);
    let pool = tong.root.path().join("-pool");
    std::fs::set_permissions(&pool, std::fs::Permissions::from_mode(0o777)).unwrap();
    let bundle = Bundle::new(&config(&["true"]));
    let id = unique_id("poolperm");
    let err = tong.fails(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(err.contains("writable by group or others"), "{err}");
    tong.assert_clean(&id, Some(&bundle), None);
    assert!(tong
        .fails(&["pool", "drain"])
        .contains("refusing pool directory"));
    std::fs::set_permissions(&pool, std::fs::Permissions::from_mode(0o700)).unwrap();
    tong.ok(&["pool", "drain"]);
    assert_pool_gone(&tong);
}
