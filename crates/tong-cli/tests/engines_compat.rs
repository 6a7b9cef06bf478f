//! What container engines (podman with conmon, containerd's runc shim) expect of a
//! runc-compatible runtime beyond the OCI lifecycle: each test pins one behaviour that
//! an engine scenario (ci/test-podman, ci/test-containerd) needed.

mod common;

use common::{config, process_alive, root_or_skip, unique_id, wait_until, Bundle, Tong};
use serde_json::{json, Value};

/// The JSON lines of a `--log-format json` file.
fn log_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// containerd and podman show the runtime's `--log` file, not its stderr: an argument
/// error (a flag this build lacks) must be there as a `"level":"error"` line too.
#[test]
fn argument_errors_reach_the_json_log() {
    let tong = Tong::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.json");
    let log_arg = log.to_str().unwrap();
    let out = tong.run(&[
        "--log",
        log_arg,
        "--log-format",
        "json",
        "create",
        "--no-such-flag",
        "x",
        "c1",
    ]);
    assert_eq!(out.status.code(), Some(2), "clap's usage exit code");
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["level"], "error");
    let msg = lines[0]["msg"].as_str().unwrap();
    assert!(msg.contains("'--no-such-flag'"), "{msg}");
    assert!(!msg.starts_with("error:") && !msg.contains('\n'), "{msg}");

    // `--log=FILE --log-format=json` spelling, and a multi-line clap message on one line.
    let flag = format!("--log={log_arg}");
    tong.fails(&[&flag, "--log-format=json", "kill"]);
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[1]["msg"],
        "the following required arguments were not provided: <ID>"
    );

    // Text format: runc's logrus text line.
    let text = dir.path().join("log.txt");
    tong.fails(&["--log", text.to_str().unwrap(), "delete", "--bogus", "x"]);
    let line = std::fs::read_to_string(&text).unwrap();
    assert!(
        line.starts_with("time=\"")
            && line.contains("level=error msg=\"unexpected argument '--bogus' found\""),
        "{line}"
    );
    // --help and --version are not errors and log nothing.
    let help = dir.path().join("help.json");
    tong.ok(&["--log", help.to_str().unwrap(), "--version"]);
    assert!(!help.exists());
}

/// podman denies every device (`{"allow": false, "access": "rwm"}`) and relies on the
/// runtime to allow the devices every container gets, as runc and crun do; it puts the
/// container in `/libpod_parent/libpod-<id>` with its cgroupfs manager.
#[test]
fn podman_device_rules_and_cgroups_path() {
    if !root_or_skip("podman_device_rules_and_cgroups_path") {
        return;
    }
    let tong = Tong::new();
    let id = unique_id("engines-devices");
    let cgroup = format!("/libpod_parent/libpod-{id}");
    let mut cfg = config(&[
        "sh",
        "-c",
        "echo x > /dev/null && head -c 4 /dev/urandom | wc -c && \
         mknod /dev/mem1 c 1 1 && (head -c 1 /dev/mem1 2>&1 || true) && \
         grep memory /proc/self/cgroup",
    ]);
    cfg["linux"]["cgroupsPath"] = json!(cgroup);
    cfg["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    let bundle = Bundle::new(&cfg);
    let out = tong.ok(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"4"), "default devices usable: {out}");
    assert!(
        out.contains("Operation not permitted"),
        "a device outside the defaults stays denied: {out}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.ends_with(&format!("memory:{cgroup}"))),
        "{out}"
    );
    let dir = std::path::Path::new("/sys/fs/cgroup/memory").join(&cgroup[1..]);
    assert!(!dir.exists(), "{} left behind", dir.display());
    tong.assert_clean(&id, Some(&bundle), None);
}

/// containerd's shim reads "container not running" in a failed kill as "process already
/// finished", and after the init of a container without its own pid namespace exits it
/// runs `kill --all ID 9` to kill what is left in the cgroup.
#[test]
fn kill_after_the_init_died() {
    if !root_or_skip("kill_after_the_init_died") {
        return;
    }
    let tong = Tong::new();
    let id = unique_id("engines-killall");
    // No pid namespace: the background sleep outlives the init.
    let mut cfg = config(&["sh", "-c", "sleep 1000 & exec sleep 1001"]);
    cfg["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]);
    let bundle = Bundle::new(&cfg);
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    tong.ok(&["start", &id]);
    let init = tong.state(&id)["pid"].as_i64().unwrap() as i32;
    let procs = std::path::Path::new("/sys/fs/cgroup/pids")
        .join(&id)
        .join("cgroup.procs");
    let pids = || -> Vec<i32> {
        std::fs::read_to_string(&procs)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    assert!(wait_until(10, || pids().len() == 2), "{:?}", pids());
    let orphan = pids().into_iter().find(|p| *p != init).unwrap();

    tong.ok(&["kill", &id, "9"]);
    assert!(wait_until(10, || tong.state(&id)["status"] == "stopped"));
    assert!(process_alive(orphan), "the orphan outlives the init");
    let err = tong.fails(&["kill", &id, "9"]);
    assert!(err.contains("container not running"), "{err}");

    tong.ok(&["kill", "--all", &id, "9"]);
    assert!(
        wait_until(10, || !process_alive(orphan)),
        "kill --all missed {orphan}"
    );
    // containerd deletes, then deletes with --force; the second finds nothing.
    tong.ok(&["delete", &id]);
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), Some(init));
}

/// podman with `cgroup_manager = "systemd"` (and CRI-O, the kubelet) writes the systemd
/// form `slice:prefix:name`; with no systemd, tong makes the directories systemd would.
#[test]
fn systemd_form_cgroups_path_on_cgroupfs() {
    if !root_or_skip("systemd_form_cgroups_path_on_cgroupfs") {
        return;
    }
    let tong = Tong::new();
    let id = unique_id("engines-slice");
    let mut cfg = config(&["grep", "pids", "/proc/self/cgroup"]);
    cfg["linux"]["cgroupsPath"] = json!(format!("machine.slice:libpod:{id}"));
    cfg["linux"]["resources"] = json!({"pids": {"limit": 50}});
    let bundle = Bundle::new(&cfg);
    let existed = std::path::Path::new("/sys/fs/cgroup/pids/machine.slice").exists();
    let out = tong.ok(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(
        out.trim_end().rsplit(':').next(),
        Some(format!("/machine.slice/libpod-{id}.scope").as_str()),
        "{out}"
    );
    let scope = format!("/sys/fs/cgroup/pids/machine.slice/libpod-{id}.scope");
    assert!(
        !std::path::Path::new(&scope).exists(),
        "{scope} left behind"
    );
    if !existed {
        assert!(
            !std::path::Path::new("/sys/fs/cgroup/pids/machine.slice").exists(),
            "the slice tong made is left behind"
        );
    }
    tong.assert_clean(&id, Some(&bundle), None);
}

/// `exec --detach` leaves the process to whoever reaps tong's orphans: containerd's shim
/// and conmon are subreapers and read its exit status from that wait. tong must not
/// reap it itself, even when it exits before tong does (ctr waited forever for an
/// `exec` of `sh -c 'exit 5'`).
#[test]
fn detached_exec_leaves_the_exit_status_to_the_subreaper() {
    if !root_or_skip("detached_exec_leaves_the_exit_status_to_the_subreaper") {
        return;
    }
    // SAFETY: prctl with an integer argument; this test process becomes the reaper of
    // orphans of its descendants, as a shim is.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    let tong = Tong::new();
    let id = unique_id("engines-execd");
    let bundle = Bundle::new(&config(&["sleep", "300"]));
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    tong.ok(&["start", &id]);
    let dir = tempfile::tempdir().unwrap();
    // Many rounds: reaping in tong was a race with tong's own exit.
    for round in 0..30 {
        let pid_file = dir.path().join(format!("exec{round}.pid"));
        tong.ok(&[
            "exec",
            "--detach",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
            "sh",
            "-c",
            "exit 5",
        ]);
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut status = 0;
        // SAFETY: waitpid on a pid that is now our child (tong exited; we are the
        // subreaper); status is a valid out pointer.
        let got = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        assert_eq!(
            got,
            pid,
            "round {round}: the exec'd process was not left to us: {}",
            std::io::Error::last_os_error()
        );
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 5);
    }
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}
