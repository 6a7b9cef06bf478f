//! OCI hooks: each one appends a line to a log (its name, the hostname it sees and the
//! state JSON it got on stdin), so the test checks the order, the namespaces they ran
//! in and the state; failing hooks must leave nothing behind.

mod common;

use std::path::{Path, PathBuf};

use common::{config, root_or_skip, unique_id, wait_until, Bundle, Tong};
use serde_json::{json, Value};

/// A directory holding the hook script and the log; bind-mounted into the container at
/// /hooks so hooks running in the container's mount namespace can reach both.
struct HookDir {
    dir: tempfile::TempDir,
}

const SCRIPT: &str = "#!/bin/sh\n\
    # $1: hook name, $2: log file\n\
    state=$(cat)\n\
    echo \"$1 $(hostname) $state\" >> \"$2\"\n";

impl HookDir {
    fn new() -> HookDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("tong-it-hooks-")
            .tempdir()
            .unwrap();
        let script = dir.path().join("hook.sh");
        std::fs::write(&script, SCRIPT).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        HookDir { dir }
    }

    /// A `#!/bin/sh` script with `body`, executable.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn host_hook(&self, name: &str) -> Value {
        json!({
            "path": self.path("hook.sh"),
            "args": ["hook.sh", name, self.path("log")],
            "env": ["PATH=/bin:/usr/bin"]
        })
    }

    /// A hook whose log is reached through the bind mount (it runs in the container).
    fn container_hook(name: &str, path: &Path) -> Value {
        json!({
            "path": path,
            "args": ["hook.sh", name, "/hooks/log"],
            "env": ["PATH=/bin"]
        })
    }

    /// The log, one (name, hostname, state) per line.
    fn log(&self) -> Vec<(String, String, Value)> {
        std::fs::read_to_string(self.path("log"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let mut parts = line.splitn(3, ' ');
                let name = parts.next().unwrap().to_string();
                let host = parts.next().unwrap().to_string();
                let state = serde_json::from_str(parts.next().unwrap()).unwrap();
                (name, host, state)
            })
            .collect()
    }
}

fn config_with_hooks(args: &[&str], dir: &HookDir, hooks: Value) -> Value {
    let mut cfg = config(args);
    cfg["hooks"] = hooks;
    cfg["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/hooks", "type": "bind", "source": dir.dir.path(),
        "options": ["rbind", "rw"]
    }));
    cfg
}

#[test]
fn hooks_run_in_order_with_the_state_and_in_the_right_namespaces() {
    if !root_or_skip("hooks_run_in_order_with_the_state_and_in_the_right_namespaces") {
        return;
    }
    let tong = Tong::new();
    let dir = HookDir::new();
    let hooks = json!({
        "prestart": [dir.host_hook("prestart")],
        "createRuntime": [dir.host_hook("createRuntime")],
        // Path from the runtime's view, run in the container's namespaces.
        "createContainer": [HookDir::container_hook("createContainer", &dir.path("hook.sh"))],
        // Path from the container's view.
        "startContainer": [HookDir::container_hook("startContainer", Path::new("/hooks/hook.sh"))],
        "poststart": [dir.host_hook("poststart")],
        "poststop": [dir.host_hook("poststop")]
    });
    let bundle = Bundle::new(&config_with_hooks(&["sleep", "60"], &dir, hooks));
    let id = unique_id("hooks");
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let names = |log: &[(String, String, Value)]| -> Vec<String> {
        log.iter().map(|l| l.0.clone()).collect()
    };
    assert_eq!(
        names(&dir.log()),
        ["prestart", "createRuntime", "createContainer"]
    );
    let pid = tong.state(&id)["pid"].as_i64().unwrap();
    tong.ok(&["start", &id]);
    assert_eq!(
        names(&dir.log()),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart"
        ]
    );
    tong.ok(&["delete", "--force", &id]);
    let log = dir.log();
    assert_eq!(
        names(&log),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
    let host = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for (name, hostname, state) in &log {
        assert_eq!(state["id"], id.as_str(), "{name}: {state}");
        assert_eq!(state["ociVersion"], "1.0.2", "{name}: {state}");
        assert_eq!(state["bundle"], bundle.path().to_str().unwrap(), "{name}");
        // The pid as seen from where the hook runs; a stopped container has none.
        let want_pid = match name.as_str() {
            "createContainer" | "startContainer" => json!(1),
            "poststop" => Value::Null,
            _ => json!(pid),
        };
        assert_eq!(state["pid"], want_pid, "{name}: {state}");
        let (want_status, in_container) = match name.as_str() {
            "prestart" | "createRuntime" => ("creating", false),
            "createContainer" => ("creating", true),
            "startContainer" => ("created", true),
            "poststart" => ("running", false),
            _ => ("stopped", false),
        };
        assert_eq!(state["status"], want_status, "{name}: {state}");
        let want_host = if in_container { "tong-test" } else { &host };
        assert_eq!(hostname, want_host, "{name} ran in the wrong uts namespace");
    }
    tong.assert_clean(&id, Some(&bundle), Some(pid as i32));
}

fn create_fails_cleanly(tong: &Tong, hooks: Value, dir: &HookDir) -> String {
    let bundle = Bundle::new(&config_with_hooks(&["sleep", "60"], dir, hooks));
    let id = unique_id("hook-fail");
    let err = tong.fails(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    tong.assert_clean(&id, Some(&bundle), None);
    err
}

#[test]
fn failing_hooks_are_clear_errors_and_undo_everything() {
    if !root_or_skip("failing_hooks_are_clear_errors_and_undo_everything") {
        return;
    }
    let tong = Tong::new();
    let dir = HookDir::new();
    let err = create_fails_cleanly(
        &tong,
        json!({"prestart": [{"path": "/nonexistent/hook"}]}),
        &dir,
    );
    assert!(err.contains("hooks.prestart[0] /nonexistent/hook"), "{err}");
    assert!(err.contains("No such file"), "{err}");

    let err = create_fails_cleanly(
        &tong,
        json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}),
        &dir,
    );
    assert!(
        err.contains("createRuntime hook /bin/sh: exited with status 3"),
        "{err}"
    );

    // A hook that outlives its timeout is killed, and create undone.
    let pid_file = dir.path("hook.pid");
    let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
    let err = create_fails_cleanly(
        &tong,
        json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": 1}]}),
        &dir,
    );
    assert!(err.contains("timed out after 1s"), "{err}");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!common::process_alive(pid), "the timed-out hook still runs");

    // In the container's namespaces too (scripts: their #! interpreter is the
    // container's busybox sh there).
    let fail = dir.script("fail.sh", "exit 4");
    let err = create_fails_cleanly(&tong, json!({"createContainer": [{"path": fail}]}), &dir);
    assert!(
        err.contains("createContainer hook") && err.contains("exited with status 4"),
        "{err}"
    );
    let slow = dir.script("slow.sh", "sleep 30");
    let err = create_fails_cleanly(
        &tong,
        json!({"createContainer": [{"path": slow, "timeout": 1}]}),
        &dir,
    );
    assert!(
        err.contains("createContainer hook") && err.contains("timed out after 1s"),
        "{err}"
    );
    // A host program that needs the host's loader cannot run in the container's mount
    // namespace: said so.
    let err = create_fails_cleanly(
        &tong,
        json!({"createContainer": [{"path": "/bin/true"}]}),
        &dir,
    );
    assert!(err.contains("could not be executed"), "{err}");

    // A relative path or a zero timeout is refused before anything is made.
    let err = create_fails_cleanly(&tong, json!({"poststop": [{"path": "hook"}]}), &dir);
    assert!(err.contains("must be absolute"), "{err}");
}

#[test]
fn a_failing_start_container_hook_stops_run_and_poststart_only_warns() {
    if !root_or_skip("a_failing_start_container_hook_stops_run_and_poststart_only_warns") {
        return;
    }
    let tong = Tong::new();
    let dir = HookDir::new();
    let bundle = Bundle::new(&config_with_hooks(
        &["true"],
        &dir,
        json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 5"]}]}),
    ));
    let id = unique_id("hook-start");
    let err = tong.fails(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(
        err.contains("startContainer hook /bin/sh: exited with status 5"),
        "{err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);

    let bundle = Bundle::new(&config_with_hooks(
        &["sleep", "60"],
        &dir,
        json!({
            "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 6"]}],
            "poststop": [{"path": "/nonexistent/poststop"}]
        }),
    ));
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let out = tong.run(&["start", &id]);
    assert!(
        out.status.success(),
        "poststart failure must not fail start"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: poststart hook /bin/sh: exited with status 6"),
        "{stderr}"
    );
    assert_eq!(tong.state(&id)["status"], "running");
    let out = tong.run(&["delete", "--force", &id]);
    assert!(
        out.status.success(),
        "poststop failure must not fail delete"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: hooks.poststop[0]"));
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn features_list_exactly_the_hooks_tested_here() {
    let tong = Tong::new();
    let features: Value = serde_json::from_str(&tong.ok(&["features"])).unwrap();
    assert_eq!(
        features["hooks"],
        json!([
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ])
    );
    assert!(features["annotations"]["tong.init"].is_string());
}

const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Every hook kind dumps its stdin; the same bundle runs under runc and tong, and each
/// hook's state has the same status, pid (as seen from the hook's pid namespace),
/// bundle and annotations. One deliberate difference: runc 1.1 says `created` to
/// poststart hooks, which run after the program was exec'd; tong says `running`.
#[test]
fn every_hooks_state_matches_runcs() {
    let test = "every_hooks_state_matches_runcs";
    if !root_or_skip(test) {
        return;
    }
    let dir = HookDir::new();
    // createContainer runs in the container's mount namespace: under runc before the
    // pivot (the host path is there), under tong after it (the /hooks bind mount is).
    let log = dir.path("log");
    let script = dir.script(
        "dump.sh",
        "log=$2; [ -d \"${log%/*}\" ] || log=/hooks/log\necho \"$1 x $(cat)\" >> \"$log\"",
    );
    let hook = |name: &str, path: &Path| json!({"path": path, "args": ["dump.sh", name, log]});
    let hooks = json!({
        "prestart": [hook("prestart", &script)],
        "createRuntime": [hook("createRuntime", &script)],
        "createContainer": [hook("createContainer", &script)],
        "startContainer": [hook("startContainer", Path::new("/hooks/dump.sh"))],
        "poststart": [hook("poststart", &script)],
        "poststop": [hook("poststop", &script)]
    });
    // The process outlives the poststart hooks (`true` may be gone before they read the
    // state, which then says, truthfully, stopped).
    let mut cfg = config_with_hooks(&["sleep", "1"], &dir, hooks);
    cfg["annotations"] = json!({"org.example.hooks": "compared"});
    let bundle = Bundle::new(&cfg);
    let id = unique_id("hooks-runc");
    // The fields the spec defines, with the pid reduced to where it points.
    let states = |runtime: &str, pid: Option<i64>| -> Vec<(String, Value)> {
        let states: Vec<(String, Value)> = dir
            .log()
            .into_iter()
            .map(|(name, _, state)| {
                let pid = match state["pid"].as_i64() {
                    None => json!("none"),
                    Some(1) => json!(1),
                    Some(p) if pid.is_none_or(|want| want == p) => json!("container's"),
                    Some(p) => json!(format!("unexpected {p}")),
                };
                let fields = json!({
                    "id": state["id"] == json!(id), "status": state["status"], "pid": pid,
                    "bundle": state["bundle"], "annotations": state["annotations"]
                });
                (name, fields)
            })
            .collect();
        println!("{runtime}: {states:?}");
        let _ = std::fs::remove_file(dir.path("log"));
        states
    };
    let Some(reference) = common::runc_run_id(test, bundle.path(), &id) else {
        return;
    };
    assert!(
        reference.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let mut runc = states("runc", None);
    let tong = Tong::new();
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let pid = tong.state(&id)["pid"].as_i64();
    tong.ok(&["start", &id]);
    assert!(wait_until(10, || tong.state(&id)["status"] == "stopped"));
    tong.ok(&["delete", &id]);
    let ours = states("tong", pid);
    for (name, fields) in &mut runc {
        if name == "poststart" {
            assert_eq!(fields["status"], "created", "runc 1.1's poststart status");
            fields["status"] = json!("running");
        }
    }
    // runc 1.1 may run poststart before startContainer (before the exec); the order is
    // checked by the tests above, the states here.
    runc.sort_by_key(|(name, _)| KINDS.iter().position(|k| *k == name.as_str()));
    assert_eq!(
        ours, runc,
        "tong's hook states (left) differ from runc's (right)"
    );
    tong.assert_clean(&id, Some(&bundle), None);
}

/// A failing poststart or poststop hook is a warning, and the hooks after it still run.
#[test]
fn hooks_after_a_failing_poststart_or_poststop_hook_still_run() {
    if !root_or_skip("hooks_after_a_failing_poststart_or_poststop_hook_still_run") {
        return;
    }
    let tong = Tong::new();
    let dir = HookDir::new();
    let fail = json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]});
    let missing = json!({"path": "/nonexistent/hook"});
    let hooks = json!({
        "poststart": [fail, dir.host_hook("poststart-1"), missing, dir.host_hook("poststart-3")],
        "poststop": [missing, dir.host_hook("poststop-1"), fail, dir.host_hook("poststop-3")]
    });
    let bundle = Bundle::new(&config_with_hooks(&["sleep", "60"], &dir, hooks));
    let id = unique_id("hooks-warn");
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let out = tong.run(&["start", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("poststart hook /bin/sh: exited with status 3"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hooks.poststart[2] /nonexistent/hook"),
        "{stderr}"
    );
    let out = tong.run(&["delete", "--force", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("hooks.poststop[0] /nonexistent/hook"),
        "{stderr}"
    );
    assert!(
        stderr.contains("poststop hook /bin/sh: exited with status 3"),
        "{stderr}"
    );
    let names: Vec<String> = dir.log().into_iter().map(|l| l.0).collect();
    assert_eq!(
        names,
        ["poststart-1", "poststart-3", "poststop-1", "poststop-3"]
    );
    tong.assert_clean(&id, Some(&bundle), None);
}

/// poststart hooks run once the program has been exec'd. The hook checks what the
/// kernel changes at exec: the executable of the state's pid is busybox (the container's
/// program), not tong (its process before the exec). A file the program writes would
/// not do: after the exec the program and the hook run concurrently, so a correct
/// runtime could still run the hook before the program's first write. 50 times, half
/// by `run -d`, half by `create` + `start`. Without `start`'s wait for the exec, every
/// create + start round fails (checked once by removing it).
#[test]
fn poststart_hooks_always_run_after_the_exec() {
    if !root_or_skip("poststart_hooks_always_run_after_the_exec") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let tong = Tong::new();
    let dir = HookDir::new();
    let busybox = std::fs::metadata(common::rootfs().join("bin/busybox")).unwrap();
    let check = dir.script(
        "check.sh",
        &format!(
            "pid=$(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/')\n\
             exe=$(stat -L -c %d:%i /proc/$pid/exe)\n\
             [ \"$exe\" = {}:{} ] && echo ok >> {log} || echo \"pid $pid: exe $exe\" >> {log}",
            busybox.dev(),
            busybox.ino(),
            log = dir.path("order").display()
        ),
    );
    // A slow startContainer hook holds the process before its exec: a runtime that
    // did not wait for the exec would run poststart meanwhile.
    let hooks = json!({
        "startContainer": [{"path": "/bin/sleep", "args": ["sleep", "0.2"]}],
        "poststart": [{"path": check, "env": ["PATH=/bin:/usr/bin"]}]
    });
    // The program outlives the hook: a `delete --force` ends it.
    let bundle = Bundle::new(&config_with_hooks(&["sleep", "60"], &dir, hooks));
    let path = bundle.path().to_str().unwrap();
    for round in 0..50 {
        let id = unique_id("hooks-order");
        if round % 2 == 0 {
            tong.ok(&["run", "-d", "--bundle", path, &id]);
        } else {
            tong.ok(&["create", "--bundle", path, &id]);
            tong.ok(&["start", &id]);
        }
        tong.ok(&["delete", "--force", &id]);
        tong.assert_clean(&id, Some(&bundle), None);
    }
    let results = std::fs::read_to_string(dir.path("order")).unwrap();
    let bad: Vec<&str> = results.lines().filter(|l| *l != "ok").collect();
    assert_eq!(results.lines().count(), 50, "{results}");
    assert!(bad.is_empty(), "poststart ran before the exec: {bad:?}");
}
