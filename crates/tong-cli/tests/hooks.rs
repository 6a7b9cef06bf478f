//! OCI hooks: each one appends a line to a log (its name, the hostname it sees and the
//! state JSON it got on stdin), so the test checks the order, the namespaces they ran
//! in and the state; failing hooks must leave nothing behind.

mod common;

use std::path::{Path, PathBuf};

use common::{config, root_or_skip, unique_id, Bundle, Tong};
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
        assert_eq!(state["pid"], pid, "{name}: {state}");
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
