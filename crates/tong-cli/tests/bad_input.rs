//! Bad input: each case gets a clear error naming the problem, a non-zero exit, and
//! leaves nothing on the host.

mod common;

use common::{config, root_or_skip, unique_id, Bundle, Tong};
use serde_json::json;

/// Asserts that `create` fails with `expected` in its message and leaves nothing.
fn create_fails(tong: &Tong, bundle: &std::path::Path, id: &str, expected: &str) {
    let err = tong.fails(&["create", "--bundle", bundle.to_str().unwrap(), id]);
    assert!(err.contains(expected), "expected {expected:?} in: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one-line error expected: {err}"
    );
    assert!(
        !tong.root.path().join(id).exists(),
        "state directory left for {id}"
    );
    common::assert_no_cgroup(id);
}

#[test]
fn missing_bundle_and_config() {
    let tong = Tong::new();
    create_fails(
        &tong,
        std::path::Path::new("/nonexistent/bundle"),
        "a",
        "bundle /nonexistent/bundle: No such file or directory",
    );
    let empty = tempfile::tempdir().unwrap();
    create_fails(&tong, empty.path(), "a", "has no config.json");
}

#[test]
fn invalid_json_names_line_and_column() {
    let tong = Tong::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        "{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": [\n",
    )
    .unwrap();
    create_fails(&tong, dir.path(), "a", "line 4 column");
    std::fs::write(dir.path().join("config.json"), "{\"ociVersion\": 1}").unwrap();
    create_fails(&tong, dir.path(), "a", "config.json");
}

#[test]
fn unsupported_oci_version() {
    let tong = Tong::new();
    let mut cfg = config(&["true"]);
    cfg["ociVersion"] = json!("2.0.0");
    let bundle = Bundle::new(&cfg);
    create_fails(
        &tong,
        bundle.path(),
        "a",
        "unsupported ociVersion \"2.0.0\"",
    );
}

#[test]
fn missing_rootfs_and_process() {
    let tong = Tong::new();
    let mut cfg = config(&["true"]);
    cfg["root"]["path"] = json!("/nonexistent/rootfs");
    let bundle = Bundle::new(&cfg);
    create_fails(
        &tong,
        bundle.path(),
        "a",
        "root.path /nonexistent/rootfs does not exist",
    );
    let mut cfg = config(&["true"]);
    cfg["process"]["args"] = json!([]);
    let bundle = Bundle::new(&cfg);
    create_fails(&tong, bundle.path(), "a", "process.args is empty");
}

#[test]
fn invalid_container_ids() {
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["true"]));
    let long = "x".repeat(1025);
    for (id, why) in [
        ("", "empty"),
        ("/", "'/'"),
        ("..", "relative"),
        (long.as_str(), "1024"),
        ("a\u{1}b", "control"),
    ] {
        let err = tong.fails(&[
            "create",
            "--bundle",
            bundle.path().to_str().unwrap(),
            "--",
            id,
        ]);
        assert!(
            err.contains("invalid container id") && err.contains(why),
            "{id:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_dir(tong.root.path()).map_or(0, Iterator::count),
        0
    );
}

#[test]
fn unknown_ids_are_reported_by_every_command() {
    let tong = Tong::new();
    for cmd in ["state", "start", "kill", "delete", "pause", "resume", "ps"] {
        let err = tong.fails(&[cmd, "no-such-container"]);
        assert!(
            err.contains("container \"no-such-container\" does not exist"),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn duplicate_id_leaves_the_first_container_alone() {
    if !root_or_skip("duplicate_id_leaves_the_first_container_alone") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["sleep", "30"]));
    let id = unique_id("dup");
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let pid = tong.state(&id)["pid"].clone();
    let err = tong.fails(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(
        err.contains(&format!("container \"{id}\" already exists")),
        "{err}"
    );
    assert_eq!(tong.state(&id)["status"], "created");
    assert_eq!(tong.state(&id)["pid"], pid);
    tong.ok(&["delete", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn start_twice_and_kill_after_exit_are_state_errors() {
    if !root_or_skip("start_twice_and_kill_after_exit_are_state_errors") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["sleep", "30"]));
    let id = unique_id("states");
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    tong.ok(&["start", &id]);
    let err = tong.fails(&["start", &id]);
    assert!(err.contains("it is running, not created"), "{err}");
    tong.ok(&["kill", &id, "KILL"]);
    assert!(common::wait_until(5, || tong.state(&id)["status"] == "stopped"));
    let err = tong.fails(&["kill", &id]);
    assert!(
        err.contains("container not running (it is stopped)"),
        "{err}"
    );
    let err = tong.fails(&["start", &id]);
    assert!(err.contains("it is stopped, not created"), "{err}");
    tong.ok(&["delete", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn a_missing_executable_fails_create_with_runc_wording() {
    if !root_or_skip("a_missing_executable_fails_create_with_runc_wording") {
        return;
    }
    let tong = Tong::new();
    let id = unique_id("noexec");
    let bundle = Bundle::new(&config(&["no-such-program", "arg"]));
    create_fails(
        &tong,
        bundle.path(),
        &id,
        "exec: \"no-such-program\": executable file not found in $PATH",
    );
    let bundle = Bundle::new(&config(&["/bin/no-such-program"]));
    create_fails(&tong, bundle.path(), &id, "no such file or directory");
    // `run` reports it too, instead of a silent exit 127.
    let err = tong.fails(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(err.contains("no such file or directory"), "{err}");
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn a_failing_mount_undoes_the_whole_create() {
    if !root_or_skip("a_failing_mount_undoes_the_whole_create") {
        return;
    }
    let tong = Tong::new();
    let mut cfg = config(&["true"]);
    cfg["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=not-a-size"]
    }));
    cfg["linux"]["resources"] = json!({"pids": {"limit": 10}});
    let bundle = Bundle::new(&cfg);
    let id = unique_id("mountfail");
    // The cgroup and the process exist by the time the mount fails in the child.
    create_fails(&tong, bundle.path(), &id, "/scratch");
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn an_invalid_limit_undoes_the_whole_create() {
    if !root_or_skip("an_invalid_limit_undoes_the_whole_create") {
        return;
    }
    let tong = Tong::new();
    let mut cfg = config(&["true"]);
    cfg["linux"]["resources"] = json!({"cpu": {"cpus": "999999"}});
    let bundle = Bundle::new(&cfg);
    let id = unique_id("badlimit");
    create_fails(&tong, bundle.path(), &id, "cpuset.cpus");
    tong.assert_clean(&id, Some(&bundle), None);
}

/// (A user namespace without mappings is not bad input: tong maps the caller's ids, as
/// crun does; security.rs `invalid_mappings_are_refused_and_undone` covers it.)
#[test]
fn user_namespace_with_an_empty_mapping_is_refused() {
    if !root_or_skip("user_namespace_with_an_empty_mapping_is_refused") {
        return;
    }
    let tong = Tong::new();
    let mut cfg = config(&["true"]);
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100_000, "size": 0}]);
    let bundle = Bundle::new(&cfg);
    let id = unique_id("userns");
    create_fails(
        &tong,
        bundle.path(),
        &id,
        "invalid linux.uidMappings: entry 0 has size 0",
    );
    tong.assert_clean(&id, Some(&bundle), None);
}
