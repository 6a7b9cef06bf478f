//! Shared helpers of the end-to-end tests: a busybox root filesystem, bundles, a private
//! state root per test, the `tong` binary, and checks that nothing is left on the host.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{json, Value};

/// The `tong` binary under test; its plugins sit beside it (cargo build --workspace).
pub fn tong_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tong"))
}

/// True when the tests may touch namespaces, cgroups and mounts; otherwise skips the
/// caller through the test kit (a failure under `TONG_REQUIRE_ROOT=1`).
pub fn root_or_skip(test: &str) -> bool {
    if !tong_testkit::require_root(test, "namespaces, cgroups, mounts") {
        return false;
    }
    let plugins = tong_bin().with_file_name("libtong_plugin_rootfs_pivot.so");
    assert!(
        plugins.exists(),
        "{} is missing: run `cargo build --workspace` before the tests (ci/test does)",
        plugins.display()
    );
    true
}

/// A busybox root filesystem shared by the tests (read-only use), kept in cargo's
/// target tmp dir and built once.
pub fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-rootfs");
        if dir.join("bin/sh").exists() {
            return dir;
        }
        let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        for sub in ["bin", "dev", "proc", "sys", "tmp", "etc", "root", "run"] {
            std::fs::create_dir_all(tmp.join(sub)).unwrap();
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox not found: apt-get install busybox-static");
        std::fs::copy(busybox, tmp.join("bin/busybox")).unwrap();
        let list = Command::new(busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let _ = std::os::unix::fs::symlink("busybox", tmp.join("bin").join(applet));
        }
        std::fs::write(
            tmp.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(tmp.join("etc/group"), "root:x:0:\n").unwrap();
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another test binary built it first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        dir
    })
}

/// A default config like `runc spec`'s, running `args` with busybox.
pub fn config(args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/"
        },
        "root": {"path": rootfs(), "readonly": false},
        "hostname": "tong-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
        }
    })
}

/// A bundle directory holding one config.json; removed on drop.
pub struct Bundle {
    pub dir: tempfile::TempDir,
}

impl Bundle {
    pub fn new(config: &Value) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("tong-it-bundle-")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(config).unwrap(),
        )
        .unwrap();
        Bundle { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A private state root for one test, with helpers to call tong on it. On drop it
/// force-deletes whatever the test left and removes the root.
pub struct Tong {
    pub root: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Tong {
    pub fn new() -> Tong {
        Tong {
            root: tempfile::Builder::new()
                .prefix("tong-it-state-")
                .tempdir()
                .unwrap(),
            env: Vec::new(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(tong_bin());
        cmd.arg("--root").arg(self.root.path()).args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs tong and returns its output. Output goes through files, not pipes: a
    /// created container inherits tong's stdout and stderr and would hold a pipe open.
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_files(&mut self.command(args))
    }

    /// `tong run -d` of the bundle as container `id`, asserting success.
    pub fn run_detached(&self, bundle: &Bundle, id: &str) {
        self.ok(&["run", "-d", "--bundle", bundle.path().to_str().unwrap(), id]);
    }

    /// Runs tong and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tong {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs tong, asserts failure, and returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "tong {args:?} should fail but succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    /// Asserts that nothing of container `id` remains: state directory, cgroup
    /// directories, mounts of its bundle, its process.
    pub fn assert_clean(&self, id: &str, bundle: Option<&Bundle>, pid: Option<i32>) {
        assert!(
            !self.root.path().join(id).exists(),
            "state directory of {id} left behind"
        );
        assert_no_cgroup(id);
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        if let Some(b) = bundle {
            let p = b.path().display().to_string();
            assert!(!mountinfo.contains(&p), "mount of {p} left behind");
        }
        let rootfs = rootfs().display().to_string();
        assert!(
            !mountinfo.contains(&rootfs),
            "mount of {rootfs} left behind"
        );
        if let Some(pid) = pid {
            assert!(!process_alive(pid), "container process {pid} left behind");
        }
    }
}

impl Drop for Tong {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.root.path()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if id == "-pool" {
                    // The network namespace pool (docs/pools.md), not a container.
                    let _ = self.run(&["pool", "drain"]);
                } else {
                    let _ = self.run(&["delete", "--force", &id]);
                }
            }
        }
    }
}

/// Runs `cmd` with stdout and stderr going to files, not pipes: a created container
/// inherits them and would hold a pipe open.
pub fn run_with_files(cmd: &mut Command) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .expect("run command");
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

/// Asserts no cgroup directory named after `id` exists in any hierarchy.
pub fn assert_no_cgroup(id: &str) {
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = hierarchy.path().join(id);
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
}

/// Whether `pid` is a live (non-zombie) process.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            !matches!(state, Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}

/// A unique container id for a test. It starts with `tong-` so that a cgroup a failed
/// test leaves at a hierarchy's root (`/sys/fs/cgroup/<controller>/<id>`) is caught by
/// `ci/check-host`.
pub fn unique_id(test: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let prefix = if test.starts_with("tong") {
        ""
    } else {
        "tong-"
    };
    format!(
        "{prefix}{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits up to `secs` for `cond`.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cond()
}

/// Runs `bundle` to completion with `runc run` (its own temporary --root), as the
/// reference a compatibility test compares tong with; None (after printing SKIP) when
/// runc is not installed.
pub fn runc_run(test: &str, bundle: &Path) -> Option<Output> {
    runc_run_id(test, bundle, &unique_id(test))
}

/// [`runc_run`] as container `id`.
pub fn runc_run_id(test: &str, bundle: &Path, id: &str) -> Option<Output> {
    let Some(runc) = peer_runtime("runc") else {
        tong_testkit::skip(test, "runc is not installed (apt-get install runc)");
        return None;
    };
    let root = tempfile::Builder::new()
        .prefix("tong-it-runc-")
        .tempdir()
        .unwrap();
    let out = run_with_files(
        Command::new(&runc)
            .arg("--root")
            .arg(root.path())
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id),
    );
    // runc deletes what it ran; this only catches a container left by a failed run.
    let _ = run_with_files(
        Command::new(&runc)
            .arg("--root")
            .arg(root.path())
            .args(["delete", "--force", id]),
    );
    Some(out)
}

/// The path of a peer runtime (runc, crun) on PATH.
pub fn peer_runtime(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}
