//! `tong exec`: a process joins a running container's namespaces and cgroup.

mod common;

use common::{config, root_or_skip, unique_id, Bundle, Tong};
use serde_json::json;

fn running(tong: &Tong, args: &[&str]) -> (Bundle, String) {
    let bundle = Bundle::new(&config(args));
    let id = unique_id("exec");
    tong.run_detached(&bundle, &id);
    (bundle, id)
}

#[test]
fn an_exec_process_sees_the_container() {
    if !root_or_skip("an_exec_process_sees_the_container") {
        return;
    }
    let tong = Tong::new();
    let (bundle, id) = running(&tong, &["sh", "-c", "echo marker > /tmp/m; sleep 60"]);
    let init = tong.state(&id)["pid"].as_i64().unwrap();
    // The shell creates the file before it writes to it: wait for the content.
    assert!(common::wait_until(5, || std::fs::read_to_string(format!(
        "/proc/{init}/root/tmp/m"
    ))
    .is_ok_and(|m| m == "marker\n")));
    let script =
        "echo host=$(hostname); echo me=$$; cat /tmp/m; set -- /proc/[0-9]*; echo procs=$#; \
                  cat /proc/self/cgroup | grep memory; echo cwd=$(pwd); echo env=$EXTRA";
    let out = tong.ok(&[
        "exec",
        "--env",
        "EXTRA=yes",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        script,
    ]);
    assert!(out.contains("host=tong-test\n"), "{out}");
    assert!(out.contains("marker\n"), "the container's files: {out}");
    // Its own pid namespace numbering: init is 1, the exec'd shell something else.
    assert!(!out.contains("me=1\n"), "{out}");
    assert!(
        out.contains("procs=2\n"),
        "init and the exec'd shell: {out}"
    );
    assert!(out.contains(&format!("memory:/{id}")), "{out}");
    assert!(out.contains("cwd=/tmp\n"), "{out}");
    assert!(out.contains("env=yes\n"), "{out}");
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn exec_returns_the_process_status_and_255_on_its_own_errors() {
    if !root_or_skip("exec_returns_the_process_status_and_255_on_its_own_errors") {
        return;
    }
    let tong = Tong::new();
    let (bundle, id) = running(&tong, &["sleep", "60"]);
    assert_eq!(
        tong.run(&["exec", &id, "sh", "-c", "exit 7"]).status.code(),
        Some(7)
    );
    let out = tong.run(&["exec", &id, "no-such-program"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found in $PATH"));
    let out = tong.run(&["exec", "no-such-container", "true"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn exec_with_a_process_file_and_detach() {
    if !root_or_skip("exec_with_a_process_file_and_detach") {
        return;
    }
    let tong = Tong::new();
    let (bundle, id) = running(&tong, &["sleep", "60"]);
    let process = json!({
        "args": ["sh", "-c", "echo $GREETING > /tmp/from-exec; sleep 60"],
        "env": ["PATH=/bin", "GREETING=hi"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0}
    });
    let file = bundle.path().join("process.json");
    std::fs::write(&file, process.to_string()).unwrap();
    let pid_file = bundle.path().join("exec.pid");
    tong.ok(&[
        "exec",
        "--process",
        file.to_str().unwrap(),
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let init = tong.state(&id)["pid"].as_i64().unwrap();
    assert!(common::wait_until(5, || std::fs::read_to_string(format!(
        "/proc/{init}/root/tmp/from-exec"
    ))
    .is_ok_and(|s| s == "hi\n")));
    let pids: Vec<i32> = serde_json::from_str(&tong.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(
        pids.contains(&pid),
        "exec'd pid {pid} not in the container's cgroup: {pids:?}"
    );
    tong.ok(&["delete", "--force", &id]);
    assert!(
        !common::process_alive(pid),
        "exec'd process survived delete --force"
    );
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn exec_into_a_stopped_or_created_container_is_refused() {
    if !root_or_skip("exec_into_a_stopped_or_created_container_is_refused") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["sleep", "60"]));
    let id = unique_id("exec-state");
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let err = tong.fails(&["exec", &id, "true"]);
    assert!(err.contains("it is created, not running"), "{err}");
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn exec_shares_the_mounts_and_takes_user_and_groups() {
    if !root_or_skip("exec_shares_the_mounts_and_takes_user_and_groups") {
        return;
    }
    let tong = Tong::new();
    let (bundle, id) = running(&tong, &["sleep", "60"]);
    let init = tong.state(&id)["pid"].as_i64().unwrap();
    // The exec'd process's mount table is the init's, not the host's.
    let out = tong.ok(&["exec", &id, "cat", "/proc/self/mounts"]);
    let theirs = std::fs::read_to_string(format!("/proc/{init}/mounts")).unwrap();
    assert_eq!(out, theirs);
    let ours = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert_ne!(out, ours);
    // -u UID:GID and --additional-gids, as runc takes them.
    let out = tong.ok(&[
        "exec",
        "-u",
        "1000:1001",
        "--additional-gids",
        "5",
        "--additional-gids",
        "7",
        &id,
        "sh",
        "-c",
        "echo $(id -u) $(id -g) $(id -G)",
    ]);
    assert_eq!(out, "1000 1001 1001 5 7\n");
    // -u UID alone keeps the config's gid.
    assert_eq!(tong.ok(&["exec", "-u", "1000", &id, "id", "-g"]), "0\n");
    let err = tong.fails(&["exec", "-u", "me", &id, "true"]);
    assert!(err.contains("expected UID[:GID]"), "{err}");
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}
