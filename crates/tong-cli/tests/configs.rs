//! The configs real clients send (podman, containerd's ctr and CRI plugin, Docker) and
//! the default specs of `runc spec`, `runc spec --rootless` and `crun spec`, kept in
//! tests/fixtures/configs (README.md there says how each was captured). Each runs under runc and under tong on
//! the same bundle, and what the process sees must be the same: exit code, capability
//! sets and other /proc/self/status lines, ids, mount points with their flags, limits,
//! sysctls, and the cgroup values read back from the host while it runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{root_or_skip, rootfs, tong_bin, unique_id};
use serde_json::Value;

/// Where `@INIT@` (the `--init` binary docker-init or catatonit) points: a static init
/// that runs in the busybox root (the tini package, which ci/deps installs).
const INIT: &str = "/usr/bin/tini-static";

/// The probe: prints what the process sees, then waits until the test has read the
/// cgroup values (it creates /probe-go in the root) and exits 3.
const PROBE: &str = r#"
grep -E '^(Cap|NoNewPrivs|Seccomp:|Groups|Uid|Gid)' /proc/self/status
echo "id: $(id)"; echo "cwd: $(pwd)"; echo "hostname: $(hostname)"; echo "umask: $(umask)"
echo "oom_score_adj: $(cat /proc/self/oom_score_adj)"
grep -v '^Limit' /proc/self/limits | sed 's/  */ /g'
for s in $SYSCTLS; do echo "sysctl $s: $(cat /proc/sys/$s 2>&1)"; done
echo MOUNTINFO; cat /proc/self/mountinfo; echo END
sed 's/^/CGROUP /' /proc/self/cgroup
echo READY
while [ ! -e /probe-go ]; do sleep 0.05; done
exit 3
"#;

/// cgroup v1 files read back on the host, by controller.
const CGROUP_FILES: &[(&str, &[&str])] = &[
    (
        "memory",
        &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.swappiness",
            "memory.kmem.tcp.limit_in_bytes",
            "memory.oom_control",
        ],
    ),
    ("pids", &["pids.max"]),
    (
        "cpu",
        &["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"],
    ),
    ("cpuset", &["cpuset.cpus", "cpuset.mems"]),
    ("blkio", &["blkio.weight"]),
    ("devices", &["devices.list"]),
];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/configs")
}

/// Files that bind mounts of the fixtures name (`@FILE@/NAME`), with the content a
/// container expects there.
fn file_content(name: &str) -> &'static str {
    match name {
        "passwd" => "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n",
        "group" => "root:x:0:\nuser:x:1000:\n",
        "hosts" => "127.0.0.1 localhost\n",
        "hostname" => "probe\n",
        "resolv.conf" => "nameserver 127.0.0.1\n",
        _ => "",
    }
}

/// The fixture as a config for one run: placeholders substituted, the probe as the
/// process (after the init and its `--` when the fixture has one), no terminal.
fn prepare(text: &str, dir: &Path, cgroups_path: &str, sandbox_pid: u32, netns: &str) -> Value {
    let files = dir.join("files");
    let dirs = dir.join("dirs");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::create_dir_all(&dirs).unwrap();
    let text = text
        .replace("@ROOTFS@", dir.join("rootfs").to_str().unwrap())
        .replace("@CGROUPS_PATH@", cgroups_path)
        .replace("@INIT@", INIT)
        .replace("@FILE@", files.to_str().unwrap())
        .replace("@DIR@", dirs.to_str().unwrap())
        .replace("@SANDBOX_PID@", &sandbox_pid.to_string())
        .replace("@NETNS@", netns);
    let mut config: Value = serde_json::from_str(&text).unwrap();
    for m in config["mounts"].as_array().into_iter().flatten() {
        let source = Path::new(m["source"].as_str().unwrap_or(""));
        if let Ok(name) = source.strip_prefix(&files) {
            std::fs::write(source, file_content(name.to_str().unwrap())).unwrap();
        } else if source.starts_with(&dirs) {
            std::fs::create_dir_all(source).unwrap();
            std::fs::write(source.join("in-volume"), "x").unwrap();
        }
    }
    // A relative root (runc spec's "rootfs") is the bundle's.
    if config["root"]["path"] == "rootfs" {
        config["root"]["path"] = dir.join("rootfs").to_str().unwrap().into();
    }
    let process = &mut config["process"];
    process["terminal"] = false.into();
    let args: Vec<Value> = process["args"].as_array().cloned().unwrap_or_default();
    let mut new_args: Vec<Value> = match args.iter().position(|a| a == "--") {
        Some(i) => args[..=i].to_vec(),
        None => Vec::new(),
    };
    new_args.extend(["sh", "-c", PROBE].map(Value::from));
    process["args"] = new_args.into();
    let sysctls: Vec<String> = config["linux"]["sysctl"]
        .as_object()
        .map(|m| m.keys().map(|k| k.replace('.', "/")).collect())
        .unwrap_or_default();
    let env = config["process"]["env"].as_array_mut();
    let entry = Value::from(format!("SYSCTLS={}", sysctls.join(" ")));
    match env {
        Some(env) => env.push(entry),
        None => config["process"]["env"] = vec![Value::from("PATH=/bin"), entry].into(),
    }
    config
}

/// A process holding new namespaces (`unshare FLAG sleep`) for a config to join;
/// killed on drop.
struct NamespaceHolder(std::process::Child);

impl NamespaceHolder {
    fn new(flag: &str) -> NamespaceHolder {
        let child = Command::new("unshare")
            .args([flag, "sleep", "120"])
            .spawn()
            .unwrap();
        NamespaceHolder(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for NamespaceHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one runtime's process saw, as comparable lines.
struct Seen {
    lines: Vec<String>,
    raw: String,
}

/// mountinfo lines as "MOUNT point options fstype superoptions": no ids, devices,
/// sources or roots (they name this run's temporary directories).
fn mount_line(line: &str) -> String {
    let f: Vec<&str> = line.split(' ').collect();
    let dash = f.iter().position(|x| *x == "-").unwrap_or(f.len() - 1);
    let superopts = f.get(dash + 3).copied().unwrap_or("");
    format!("MOUNT {} {} {} {}", f[4], f[5], f[dash + 1], superopts)
}

/// A cgroup file's value on one line, or why it could not be read.
fn cgroup_value(path: &str, file: &str) -> String {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return format!("unreadable ({e})"),
    };
    let mut entries: Vec<&str> = text.lines().collect();
    // v1's device exceptions are a set: the order they were written in means nothing.
    if file == "devices.list" {
        entries.sort_unstable();
    }
    entries.join("; ")
}

/// Waits up to `limit` for `child` to exit, then kills it.
fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().unwrap()
}

/// A temporary bundle directory holding a copy of the busybox root as `rootfs`.
fn bundle_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(rootfs())
        .arg(dir.path().join("rootfs"))
        .status()
        .unwrap();
    assert!(copied.success());
    dir
}

/// Runs the fixture under `runtime` (a path to runc or tong) and collects what the
/// process saw, the cgroup values and the exit code.
fn run_under(runtime: &Path, fixture: &str, label: &str) -> Seen {
    let id = unique_id(&format!("cfg-{label}"));
    let dir = bundle_dir("tong-it-cfg-");
    let state = dir.path().join("state");
    let text = std::fs::read_to_string(fixtures_dir().join(fixture)).unwrap();
    // A CRI container joins the namespaces of its pod's sandbox: a process with its own
    // ipc namespace stands in for it (the sandbox shares the host's uts and network).
    let sandbox = text
        .contains("@SANDBOX_PID@")
        .then(|| NamespaceHolder::new("--ipc"));
    // podman joins the network namespace netavark made: a fresh one (only lo) here.
    let netns = text
        .contains("@NETNS@")
        .then(|| NamespaceHolder::new("--net"));
    let config = prepare(
        &text,
        dir.path(),
        &format!("/{id}"),
        sandbox.as_ref().map_or(0, NamespaceHolder::pid),
        &netns
            .as_ref()
            .map(|h| format!("/proc/{}/ns/net", h.pid()))
            .unwrap_or_default(),
    );
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(runtime)
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(dir.path())
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let read_out = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut exited = None;
    while exited.is_none() && !read_out().contains("\nREADY\n") && Instant::now() < deadline {
        exited = child.try_wait().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut lines = Vec::new();
    let cgroup_of = |controller: &str| -> Option<String> {
        read_out().lines().find_map(|l| {
            let rest = l.strip_prefix("CGROUP ")?;
            let mut parts = rest.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            names
                .split(',')
                .any(|n| n == controller)
                .then(|| path.to_string())
        })
    };
    if exited.is_none() {
        for (controller, files) in CGROUP_FILES {
            let Some(path) = cgroup_of(controller) else {
                lines.push(format!("cgroup {controller}: not joined"));
                continue;
            };
            for file in *files {
                let host = format!("/sys/fs/cgroup/{controller}{path}/{file}");
                let value = cgroup_value(&host, file);
                lines.push(format!("cgroup {file}: {value}"));
            }
        }
        std::fs::write(dir.path().join("rootfs/probe-go"), "").unwrap();
    }
    let status = exited.unwrap_or_else(|| wait_exit(&mut child, Duration::from_secs(30)));
    let _ = Command::new(runtime)
        .arg("--root")
        .arg(&state)
        .args(["delete", "--force", &id])
        .stderr(Stdio::null())
        .status();
    lines.push(format!("exit code: {:?}", status.code()));
    let raw = read_out();
    let mut in_mounts = false;
    for l in raw.lines() {
        match l {
            "MOUNTINFO" => in_mounts = true,
            "END" => in_mounts = false,
            _ if in_mounts => lines.push(mount_line(l)),
            _ if l.starts_with("CGROUP ") || l == "READY" => {}
            _ => lines.push(l.to_string()),
        }
    }
    drop((sandbox, netns));
    common::assert_no_cgroup(&id);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let bundle = dir.path().to_str().unwrap();
    assert!(
        !mountinfo.contains(bundle),
        "{}: a mount of {bundle} is left",
        runtime.display()
    );
    Seen { lines, raw }
}

/// Runs `fixture` under runc and tong and asserts the process saw the same.
fn same_as_runc(fixture: &str) {
    let test = fixture.trim_end_matches(".json");
    if !root_or_skip(test) {
        return;
    }
    let Some(runc) = which("runc") else {
        tong_testkit::skip(test, "runc is not installed (apt-get install runc)");
        return;
    };
    let text = std::fs::read_to_string(fixtures_dir().join(fixture)).unwrap();
    if text.contains("@INIT@") && !Path::new(INIT).exists() {
        tong_testkit::skip(
            test,
            format_args!("{INIT} is missing (apt-get install tini)"),
        );
        return;
    }
    let label = test.replace('-', "");
    let under_runc = run_under(&runc, fixture, &format!("runc-{label}"));
    assert!(
        under_runc.lines.iter().any(|l| l == "exit code: Some(3)"),
        "{fixture} does not run under runc on this host:\n{}",
        under_runc.raw
    );
    let mut under_tong = run_under(&tong_bin(), fixture, &format!("tong-{label}"));
    let mut under_runc = under_runc;
    let read_only = cgroup_mount_read_only(&text);
    under_runc.lines = under_runc
        .lines
        .into_iter()
        .map(|l| runc_cgroup_root_as_asked(l, read_only))
        .collect();
    // tong warns about what it cannot apply (ambient capabilities runc drops silently).
    under_tong
        .lines
        .retain(|l| !is_hybrid_unified_mount(l) && !l.starts_with("tong: warning: "));
    let only_runc: Vec<&String> = under_runc
        .lines
        .iter()
        .filter(|l| !under_tong.lines.contains(l))
        .collect();
    let only_tong: Vec<&String> = under_tong
        .lines
        .iter()
        .filter(|l| !under_runc.lines.contains(l))
        .collect();
    let order = under_runc
        .lines
        .iter()
        .zip(&under_tong.lines)
        .find(|(a, b)| a != b);
    assert!(
        only_runc.is_empty() && only_tong.is_empty() && under_runc.lines == under_tong.lines,
        "{fixture}: the process sees something else under tong than under runc\n\
         only under runc: {only_runc:#?}\nonly under tong: {only_tong:#?}\n\
         first line in another place: {order:?}\n\
         tong's output:\n{}",
        under_tong.raw
    );
}

/// The two differences tong keeps on purpose (docs/compatibility.md, "Configs real
/// clients send"). runc 1.1.5 on a v1 host leaves the `/sys/fs/cgroup` tmpfs writable
/// although the config's mount says `ro` (its own code means to remount it read-only);
/// tong gives what the config asks. So runc's line is compared as the config asks.
/// Only the tmpfs runc mounted from the config (it carries the config's `nosuid`) is
/// meant: a config that binds the host's `/sys` (the rootless spec) also shows the
/// host's own `/sys/fs/cgroup` tmpfs beneath it, the same under both runtimes.
fn runc_cgroup_root_as_asked(line: String, asked_read_only: bool) -> String {
    if asked_read_only
        && line.starts_with("MOUNT /sys/fs/cgroup rw,nosuid,")
        && line.contains(" tmpfs rw,")
    {
        return line
            .replacen("/sys/fs/cgroup rw,", "/sys/fs/cgroup ro,", 1)
            .replacen(" tmpfs rw,", " tmpfs ro,", 1);
    }
    line
}

/// On a hybrid host tong also mounts the cgroup2 hierarchy at `/sys/fs/cgroup/unified`
/// (the container's own cgroup2 directory, read-only), which its v2 backend and the
/// hugetlb controller need; runc shows none there. tong's mount carries the config's
/// flags (`nosuid`); the host's own (bound in with `/sys` by the rootless spec) has none
/// and is the same under both runtimes.
fn is_hybrid_unified_mount(line: &str) -> bool {
    line.starts_with("MOUNT /sys/fs/cgroup/unified ")
        && line.contains(",nosuid,")
        && line.contains(" cgroup2 ")
}

/// Whether the config's `cgroup` mount at /sys/fs/cgroup asks for `ro` (a privileged
/// container's asks for `rw`).
fn cgroup_mount_read_only(config_text: &str) -> bool {
    let config: Value = serde_json::from_str(config_text).unwrap();
    config["mounts"].as_array().into_iter().flatten().any(|m| {
        m["destination"] == "/sys/fs/cgroup"
            && m["options"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o == "ro"))
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[test]
fn runc_spec() {
    same_as_runc("runc-spec.json");
}

#[test]
fn runc_spec_rootless() {
    same_as_runc("runc-spec-rootless.json");
}

#[test]
fn crun_spec() {
    same_as_runc("crun-spec.json");
}

#[test]
fn podman_default() {
    same_as_runc("podman-default.json");
}

#[test]
fn podman_options() {
    same_as_runc("podman-options.json");
}

#[test]
fn podman_privileged() {
    same_as_runc("podman-privileged.json");
}

#[test]
fn podman_network() {
    same_as_runc("podman-network.json");
}

#[test]
fn ctr_default() {
    same_as_runc("ctr-default.json");
}

#[test]
fn ctr_options() {
    same_as_runc("ctr-options.json");
}

#[test]
fn cri_sandbox() {
    same_as_runc("cri-sandbox.json");
}

#[test]
fn cri_container() {
    same_as_runc("cri-container.json");
}

#[test]
fn docker_default() {
    same_as_runc("docker-default.json");
}

#[test]
fn docker_options() {
    same_as_runc("docker-options.json");
}

/// What `runc spec --rootless` is for: an unprivileged user runs the bundle, mapped to
/// root in its own user namespace. Both runtimes run it as uid 65534 and the process
/// must see the same ids, capabilities, user namespace map, hostname and mounts.
#[test]
fn runc_spec_rootless_as_an_unprivileged_user() {
    same_as_runc_unprivileged("runc-spec-rootless.json");
}

/// `crun spec --rootless` gives no id maps: crun maps the caller's own ids to root, and so
/// does tong. crun refuses this host's cgroup layout, so the reference is runc with that
/// same map written into the config (runc refuses a user namespace without maps).
#[test]
fn crun_spec_rootless_as_an_unprivileged_user() {
    same_as_runc_unprivileged("crun-spec-rootless.json");
}

/// Runs `fixture` as uid 65534 under runc and tong and asserts the process saw the same.
fn same_as_runc_unprivileged(fixture: &str) {
    let test = format!(
        "{}_as_an_unprivileged_user",
        fixture.trim_end_matches(".json")
    );
    if !root_or_skip(&test) {
        return;
    }
    let Some(runc) = which("runc") else {
        tong_testkit::skip(&test, "runc is not installed (apt-get install runc)");
        return;
    };
    const USER: u32 = 65534;
    const ROOTLESS_PROBE: &str = "grep -E '^(Cap|NoNewPrivs|Uid|Gid)' /proc/self/status; \
        echo \"id: $(id)\"; echo \"hostname: $(hostname)\"; cat /proc/self/uid_map; \
        echo MOUNTINFO; cat /proc/self/mountinfo; echo END; exit 3";
    let run_as_user = |runtime: &Path, label: &str| -> Vec<String> {
        let dir = bundle_dir("tong-it-rootless-");
        let text = std::fs::read_to_string(fixtures_dir().join(fixture)).unwrap();
        let mut config: Value = serde_json::from_str(&text).unwrap();
        config["root"]["path"] = dir.path().join("rootfs").to_str().unwrap().into();
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = serde_json::json!(["sh", "-c", ROOTLESS_PROBE]);
        let own_id = serde_json::json!([{"containerID": 0, "hostID": USER, "size": 1}]);
        for map in ["uidMappings", "gidMappings"] {
            if config["linux"][map].is_array() {
                config["linux"][map][0]["hostID"] = USER.into();
            } else if label == "runc" {
                config["linux"][map] = own_id.clone();
            }
        }
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        let runtime_dir = dir.path().join("xdg");
        std::fs::create_dir(&runtime_dir).unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let owned = Command::new("chown")
            .args(["-R", &format!("{USER}:{USER}")])
            .arg(dir.path().join("rootfs"))
            .arg(&runtime_dir)
            .arg(dir.path().join("config.json"))
            .status()
            .unwrap();
        assert!(owned.success());
        std::fs::set_permissions(
            &runtime_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let out = Command::new("setpriv")
            .args(["--reuid", &USER.to_string(), "--regid", &USER.to_string()])
            .arg("--clear-groups")
            .arg("env")
            .arg(format!("XDG_RUNTIME_DIR={}", runtime_dir.display()))
            .arg(runtime)
            .arg("--root")
            .arg(runtime_dir.join("state"))
            .args(["run", "--bundle"])
            .arg(dir.path())
            .arg(unique_id(&format!("rootless-{label}")))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{fixture} under {label} as uid {USER} did not run\n{stdout}{stderr}"
        );
        let mut in_mounts = false;
        let mut lines = Vec::new();
        for l in stdout.lines() {
            match l {
                "MOUNTINFO" => in_mounts = true,
                "END" => in_mounts = false,
                _ if in_mounts => lines.push(mount_line(l)),
                _ => lines.push(l.to_string()),
            }
        }
        lines
    };
    // The same two differences tong keeps on purpose as in `same_as_runc`.
    let read_only =
        cgroup_mount_read_only(&std::fs::read_to_string(fixtures_dir().join(fixture)).unwrap());
    let under_runc: Vec<String> = run_as_user(&runc, "runc")
        .into_iter()
        .map(|l| runc_cgroup_root_as_asked(l, read_only))
        .collect();
    let mut under_tong = run_as_user(&tong_bin(), "tong");
    under_tong.retain(|l| !is_hybrid_unified_mount(l));
    assert!(
        under_runc.iter().any(|l| l.starts_with("CapEff:")),
        "the probe printed no capabilities under runc: {under_runc:#?}"
    );
    assert_eq!(
        under_runc, under_tong,
        "{fixture} as uid {USER}: the process sees something else under tong than under runc"
    );
}
