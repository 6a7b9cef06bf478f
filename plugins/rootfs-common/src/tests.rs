//! Real mount tests. They need root: each forks a child that unshares its namespaces,
//! forks again (to be pid 1 of the new pid namespace), runs `prepare`'s plan through
//! `child::setup` and inspects its own view; findings come back through a pipe and the
//! parent asserts on them. Afterwards the host's mountinfo must not mention the test's
//! temp dir, and the temp dir is removed.

use std::ffi::{c_int, CString};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde_json::{json, Value};
use tong_abi::ChildError;
use tong_plugin_sdk::wire::RootfsRequest;

use crate::child;
use crate::plan::{build, Plan};

/// Forks one at a time: a pipe's write end inherited by another test's child would
/// delay that test's EOF.
static SERIAL: Mutex<()> = Mutex::new(());

const BUSYBOX: &str = "/bin/busybox";

/// Whether `test` can run here: root, and busybox to build a root filesystem from.
fn can_run(test: &str) -> bool {
    tong_testkit::require_root(test, "mounts and namespaces")
        && tong_testkit::require_tool(test, &[BUSYBOX], "busybox-static").is_some()
}

/// A temp dir holding `rootfs/` (busybox + sh) and host-only files next to it.
struct TestDir {
    base: PathBuf,
}

impl TestDir {
    fn new(name: &str) -> TestDir {
        let base =
            std::env::temp_dir().join(format!("tong-rootfs-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let rootfs = base.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        std::fs::write(base.join("host-only-marker"), "host").unwrap();
        TestDir { base }
    }

    fn rootfs(&self) -> PathBuf {
        self.base.join("rootfs")
    }

    fn request(&self, mounts: Value) -> RootfsRequest {
        RootfsRequest {
            id: "test".into(),
            bundle: self.base.display().to_string(),
            state_dir: self.base.display().to_string(),
            rootfs: self.rootfs().display().to_string(),
            mounts: serde_json::from_value(mounts).unwrap(),
            network_namespace: true,
            ..RootfsRequest::default()
        }
    }

    /// Nothing may stay mounted on the host (the dir goes on drop, failure or not).
    fn finish(self) {
        let leaked = self.host_mounts();
        assert!(leaked.is_empty(), "mounts leaked on the host: {leaked:#?}");
    }

    /// Lines of the host's mountinfo that mention this dir.
    fn host_mounts(&self) -> Vec<String> {
        let base = self.base.display().to_string();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        info.lines()
            .filter(|l| l.contains(&base))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // Never delete through a leaked mount into whatever it shows.
        if self.host_mounts().is_empty() {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit ends the forked process without running the test harness's atexit
    // handlers or destructors.
    unsafe { libc::_exit(code) }
}

/// Writes to the test's pipe end, open in the forked processes until they exit.
fn write_all(fd: c_int, data: &[u8]) {
    // SAFETY: only called with the pipe made by run_container, never closed by the child.
    tong_sys::write_all(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, data);
}

/// Which of the first 1024 descriptors are open (plain fcntl probes, no /proc needed).
fn open_fds() -> Vec<c_int> {
    // SAFETY: F_GETFD on any number only reads that descriptor's flags.
    (0..1024)
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .collect()
}

/// The container side: set up, run the checks, then (optionally) exec busybox sh.
fn container_main(
    plan: &Plan,
    wfd: c_int,
    check: impl FnOnce() -> Vec<String>,
    script: Option<&CString>,
) -> ! {
    let fds_before = open_fds();
    let mut err = ChildError::default();
    if child::setup(plan, &mut err).is_err() {
        write_all(wfd, format!("SETUP_ERR: {}\n", err.describe()).as_bytes());
        exit_now(1);
    }
    write_all(wfd, b"SETUP_OK\n");
    if open_fds() != fds_before {
        write_all(wfd, b"FAIL: child_setup leaked file descriptors\n");
    }
    for failure in check() {
        write_all(wfd, format!("FAIL: {failure}\n").as_bytes());
    }
    write_all(wfd, b"CHECKS_DONE\n");
    if let Some(script) = script {
        let argv = [
            c"sh".as_ptr(),
            c"-c".as_ptr(),
            script.as_ptr(),
            std::ptr::null(),
        ];
        // SAFETY: wfd is open; argv is a NULL-terminated array of C strings.
        unsafe {
            libc::dup2(wfd, 1);
            libc::dup2(wfd, 2);
            libc::execv(c"/bin/sh".as_ptr(), argv.as_ptr());
        }
        write_all(wfd, b"FAIL: exec /bin/sh\n");
        exit_now(1);
    }
    exit_now(0);
}

/// Runs `plan` in fresh mount/pid/uts/ipc/net namespaces and returns what the
/// container reported.
fn run_container(plan: &Plan, check: impl FnOnce() -> Vec<String>, script: Option<&str>) -> String {
    let script = script.map(|s| CString::new(s).unwrap());
    let mut fds = [0; 2];
    // SAFETY: fds is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (rfd, wfd) = (fds[0], fds[1]);
    // SAFETY: the child only makes system calls and uses memory it owns (glibc keeps
    // malloc usable after fork), then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWNET;
        // SAFETY: unshare only changes this process's namespaces.
        if unsafe { libc::unshare(flags) } != 0 {
            write_all(wfd, b"SETUP_ERR: unshare failed\n");
            exit_now(1);
        }
        // SAFETY: as above; the grandchild is pid 1 of the new pid namespace.
        let inner = unsafe { libc::fork() };
        if inner == 0 {
            container_main(plan, wfd, check, script.as_ref());
        }
        let mut status = 0;
        // SAFETY: inner is our child; status is writable.
        unsafe { libc::waitpid(inner, &raw mut status, 0) };
        exit_now(0);
    }
    // SAFETY: wfd is ours to close in the parent.
    unsafe { libc::close(wfd) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::read(rfd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    let mut status = 0;
    // SAFETY: rfd is ours; pid is our child; status is writable.
    unsafe {
        libc::close(rfd);
        libc::waitpid(pid, &raw mut status, 0);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn assert_all_passed(out: &str) {
    assert!(out.contains("SETUP_OK"), "setup failed:\n{out}");
    assert!(out.contains("CHECKS_DONE"), "checks did not finish:\n{out}");
    assert!(!out.contains("FAIL"), "container checks failed:\n{out}");
}

/// Accumulates failed checks inside the container.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn ok(&mut self, cond: bool, what: impl Into<String>) {
        if !cond {
            self.0.push(what.into());
        }
    }

    /// Writing `path` must fail with `errno`.
    fn write_fails(&mut self, path: &str, errno: c_int) {
        match std::fs::write(path, "x") {
            Ok(()) => self.0.push(format!("writing {path} succeeded")),
            Err(e) if e.raw_os_error() == Some(errno) => {}
            Err(e) => self
                .0
                .push(format!("writing {path}: {e}, expected errno {errno}")),
        }
    }
}

/// `(mount point, fs type, mount options)` of every mount in our view.
fn mounts() -> Vec<(String, String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((
                (*f.get(4)?).to_string(),
                (*f.get(sep + 1)?).to_string(),
                (*f.get(5)?).to_string(),
            ))
        })
        .collect()
}

fn mount_at(mp: &str) -> Option<(String, String)> {
    mounts()
        .into_iter()
        .rev()
        .find(|(m, _, _)| m == mp)
        .map(|(_, t, o)| (t, o))
}

fn is_char_dev(path: &str, major: u32, minor: u32) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == libc::makedev(major, minor))
}

fn standard_mounts() -> Value {
    json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ])
}

#[test]
fn full_container() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_run("full_container") {
        return;
    }
    let t = TestDir::new("full");
    let rootfs = t.rootfs();
    // Host-side bind sources.
    std::fs::write(t.base.join("hostfile"), "from the host\n").unwrap();
    std::fs::create_dir(t.base.join("shared")).unwrap();
    // Image content to mask and to make read-only.
    std::fs::write(rootfs.join("etc/secret-file"), "secret").unwrap();
    std::fs::create_dir_all(rootfs.join("etc/secret-dir")).unwrap();
    std::fs::write(rootfs.join("etc/secret-dir/key"), "secret").unwrap();
    std::fs::create_dir_all(rootfs.join("etc/ro-dir")).unwrap();

    let mut mounts = standard_mounts();
    let extra = json!([
        {"destination": "/etc/hostfile", "type": "bind",
         "source": t.base.join("hostfile"), "options": ["rbind", "ro", "nosuid"]},
        {"destination": "/mnt/shared", "type": "none",
         "source": "shared", "options": ["bind", "rprivate"]},
    ]);
    mounts
        .as_array_mut()
        .unwrap()
        .extend(extra.as_array().unwrap().iter().cloned());
    let mut req = t.request(mounts);
    req.readonly = true;
    req.devices = vec![
        json!({"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
                              "fileMode": 0o600, "uid": 1000, "gid": 1001}),
    ];
    req.masked_paths = vec![
        "/proc/kcore".into(),
        "/proc/does-not-exist".into(),
        "/etc/secret-file".into(),
        "/etc/secret-dir".into(),
    ];
    req.readonly_paths = vec!["/proc/sys".into(), "/etc/ro-dir".into(), "/nope".into()];
    let plan = build(&req).unwrap();

    let marker = t.base.join("host-only-marker");
    let out = run_container(
        &plan,
        move || {
            let mut c = Checks::default();
            // SAFETY: getpid has no preconditions.
            c.ok(unsafe { libc::getpid() } == 1, "we are not pid 1");
            c.ok(!marker.exists(), "the host's files are visible: old root not gone");
            c.ok(Path::new("/bin/busybox").exists(), "/bin/busybox missing");
            for (mp, ty) in [
                ("/", ""),
                ("/proc", "proc"),
                ("/dev", "tmpfs"),
                ("/dev/pts", "devpts"),
                ("/dev/shm", "tmpfs"),
                ("/dev/mqueue", "mqueue"),
                ("/sys", "sysfs"),
            ] {
                match mount_at(mp) {
                    Some((t, _)) => c.ok(ty.is_empty() || t == ty, format!("{mp} is {t}")),
                    None => c.0.push(format!("nothing mounted on {mp}")),
                }
            }
            c.ok(
                mount_at("/sys").is_some_and(|(_, o)| o.split(',').any(|x| x == "ro")),
                "/sys is not read-only",
            );
            c.ok(
                mount_at("/sys/fs/cgroup").is_some(),
                "nothing on /sys/fs/cgroup",
            );
            c.ok(
                mount_at("/").is_some_and(|(_, o)| o.split(',').any(|x| x == "ro")),
                "/ is not read-only",
            );
            // /dev contents.
            for (dev, ma, mi) in [
                ("/dev/null", 1, 3),
                ("/dev/zero", 1, 5),
                ("/dev/full", 1, 7),
                ("/dev/random", 1, 8),
                ("/dev/urandom", 1, 9),
                ("/dev/tty", 5, 0),
            ] {
                c.ok(is_char_dev(dev, ma, mi), format!("{dev} is not char {ma}:{mi}"));
                c.ok(
                    std::fs::metadata(dev).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o666),
                    format!("{dev} mode is not 0666"),
                );
            }
            c.ok(std::fs::write("/dev/null", "x").is_ok(), "cannot write /dev/null");
            let mynull = std::fs::metadata("/dev/mynull");
            c.ok(
                is_char_dev("/dev/mynull", 1, 3)
                    && mynull.as_ref().is_ok_and(|m| {
                        m.permissions().mode() & 0o7777 == 0o600 && m.uid() == 1000 && m.gid() == 1001
                    }),
                format!("/dev/mynull wrong: {mynull:?}"),
            );
            for (link, target) in [
                ("/dev/ptmx", "pts/ptmx"),
                ("/dev/fd", "/proc/self/fd"),
                ("/dev/stdin", "/proc/self/fd/0"),
                ("/dev/stdout", "/proc/self/fd/1"),
                ("/dev/stderr", "/proc/self/fd/2"),
            ] {
                let got = std::fs::read_link(link);
                c.ok(
                    got.as_ref().is_ok_and(|p| p == Path::new(target)),
                    format!("{link} -> {got:?}, expected {target}"),
                );
            }
            c.ok(Path::new("/dev/pts/ptmx").exists(), "/dev/pts/ptmx missing");
            // Masked paths: empty and unwritable.
            c.ok(
                std::fs::read("/etc/secret-file").is_ok_and(|d| d.is_empty()),
                "/etc/secret-file still readable",
            );
            if Path::new("/proc/kcore").exists() {
                c.ok(is_char_dev("/proc/kcore", 1, 3), "/proc/kcore not masked");
            }
            c.ok(
                std::fs::read_dir("/etc/secret-dir").is_ok_and(|mut d| d.next().is_none()),
                "/etc/secret-dir not empty",
            );
            c.write_fails("/etc/secret-dir/new", libc::EROFS);
            // Read-only paths and root.
            c.write_fails("/proc/sys/kernel/hostname", libc::EROFS);
            c.write_fails("/etc/ro-dir/new", libc::EROFS);
            c.write_fails("/new-in-root", libc::EROFS);
            c.ok(
                std::fs::write("/dev/shm/scratch", "x").is_ok(),
                "/dev/shm not writable",
            );
            // Binds.
            c.ok(
                std::fs::read_to_string("/etc/hostfile").is_ok_and(|s| s == "from the host\n"),
                "/etc/hostfile does not show the host file",
            );
            c.write_fails("/etc/hostfile", libc::EROFS);
            c.ok(
                mount_at("/etc/hostfile").is_some_and(|(_, o)| o.contains("nosuid")),
                "/etc/hostfile not nosuid",
            );
            c.ok(
                std::fs::write("/mnt/shared/from-container", "hi").is_ok(),
                "/mnt/shared not writable",
            );
            c.0
        },
        Some("test -c /dev/null && echo x > /dev/null && ls /proc/self/ > /dev/null && echo BUSYBOX_OK"),
    );
    assert_all_passed(&out);
    assert!(out.contains("BUSYBOX_OK"), "busybox did not run:\n{out}");
    // The rw bind really was the host's directory.
    assert!(t.base.join("shared/from-container").exists());
    // The image kept what masking hid, and got only the mount points we created.
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/secret-file")).unwrap(),
        "secret"
    );
    assert!(
        std::fs::metadata(rootfs.join("etc/hostfile"))
            .unwrap()
            .len()
            == 0
    );
    t.finish();
}

#[test]
fn user_namespace_devices_are_bind_mounted() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_run("user_namespace_devices_are_bind_mounted") {
        return;
    }
    let t = TestDir::new("userns-dev");
    let mut req = t.request(standard_mounts());
    // We do not create a user namespace here; the plan still binds the host's nodes.
    req.user_namespace = true;
    let plan = build(&req).unwrap();
    let out = run_container(
        &plan,
        || {
            let mut c = Checks::default();
            c.ok(
                is_char_dev("/dev/null", 1, 3),
                "/dev/null not the host's node",
            );
            c.ok(
                mount_at("/dev/null").is_some(),
                "/dev/null is not a bind mount",
            );
            c.ok(
                is_char_dev("/dev/zero", 1, 5),
                "/dev/zero not the host's node",
            );
            c.ok(
                std::fs::write("/dev/null", "x").is_ok(),
                "cannot write /dev/null",
            );
            c.0
        },
        None,
    );
    assert_all_passed(&out);
    t.finish();
}

#[test]
fn proc_on_a_symlink_to_host_root_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_run("proc_on_a_symlink_to_host_root_is_refused") {
        return;
    }
    let t = TestDir::new("proc-symlink");
    std::os::unix::fs::symlink("/", t.rootfs().join("proc")).unwrap();
    let plan = build(&t.request(standard_mounts())).unwrap();
    let out = run_container(&plan, Vec::new, None);
    assert!(
        out.contains("SETUP_ERR: mount /proc: the destination is or passes through a symlink"),
        "{out}"
    );
    // The symlink is still a symlink; nothing was created beside it.
    assert!(std::fs::symlink_metadata(t.rootfs().join("proc"))
        .unwrap()
        .file_type()
        .is_symlink());
    t.finish();
}

#[test]
fn dev_symlink_to_a_host_dir_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_run("dev_symlink_to_a_host_dir_is_refused") {
        return;
    }
    let t = TestDir::new("dev-symlink");
    let host_dir = t.base.join("hostside");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("host-marker"), "host").unwrap();
    std::os::unix::fs::symlink(&host_dir, t.rootfs().join("dev")).unwrap();
    let plan = build(&t.request(standard_mounts())).unwrap();
    let out = run_container(&plan, Vec::new, None);
    assert!(
        out.contains("SETUP_ERR: mount /dev: the destination is or passes through a symlink"),
        "{out}"
    );
    // The host directory is untouched: only its marker, no device nodes.
    let names: Vec<_> = std::fs::read_dir(&host_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("host-marker")]);
    t.finish();
}

#[test]
fn bind_through_an_absolute_symlink_lands_inside_the_rootfs() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_run("bind_through_an_absolute_symlink_lands_inside_the_rootfs") {
        return;
    }
    let t = TestDir::new("abs-symlink");
    // A host directory the symlink names; the same path exists inside the rootfs.
    let host_dir = t.base.join("hostside");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("host-marker"), "host").unwrap();
    let in_root = t.rootfs().join(host_dir.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&in_root).unwrap();
    std::os::unix::fs::symlink(&host_dir, t.rootfs().join("mnt")).unwrap();
    std::fs::write(t.base.join("src"), "bound").unwrap();

    let plan = build(&t.request(json!([
        {"destination": "/mnt/x", "type": "bind", "source": t.base.join("src"), "options": ["bind"]},
    ])))
    .unwrap();
    let host_dir_s = host_dir.display().to_string();
    let out = run_container(
        &plan,
        move || {
            let mut c = Checks::default();
            // In the container the symlink's target is the rootfs's copy of the path.
            c.ok(
                std::fs::read_to_string(Path::new(&host_dir_s).join("x"))
                    .is_ok_and(|s| s == "bound"),
                format!("{host_dir_s}/x (inside the rootfs) is not the bind"),
            );
            c.0
        },
        None,
    );
    assert_all_passed(&out);
    assert!(in_root.join("x").exists());
    let names: Vec<_> = std::fs::read_dir(&host_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("host-marker")]);
    t.finish();
}

#[test]
fn dotdot_chain_to_a_host_dir_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_run("dotdot_chain_to_a_host_dir_is_refused") {
        return;
    }
    let t = TestDir::new("dotdot");
    let host_dir = t.base.join("hostside2");
    std::fs::create_dir(&host_dir).unwrap();
    let chain = format!(
        "{}{}",
        "../".repeat(16),
        host_dir.strip_prefix("/").unwrap().display()
    );
    std::os::unix::fs::symlink(&chain, t.rootfs().join("mnt")).unwrap();
    let plan = build(&t.request(json!([
        {"destination": "/mnt/sub", "type": "tmpfs", "source": "tmpfs"},
    ])))
    .unwrap();
    let out = run_container(&plan, Vec::new, None);
    assert!(
        out.contains(
            "SETUP_ERR: mount /mnt/sub: open (a dangling symlink is in the way) in the rootfs"
        ),
        "{out}"
    );
    assert!(std::fs::read_dir(&host_dir).unwrap().next().is_none());
    t.finish();
}

#[test]
fn child_errors_name_the_failing_mount() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_run("child_errors_name_the_failing_mount") {
        return;
    }
    let t = TestDir::new("bad-data");
    let plan = build(&t.request(json!([
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=bogus"]},
    ])))
    .unwrap();
    let out = run_container(&plan, Vec::new, None);
    assert!(
        out.contains("SETUP_ERR: mount tmpfs on /scratch: Invalid argument"),
        "{out}"
    );
    t.finish();
}

#[test]
fn shared_propagation_and_writable_root() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_run("shared_propagation_and_writable_root") {
        return;
    }
    let t = TestDir::new("rshared");
    let mut req = t.request(standard_mounts());
    req.rootfs_propagation = Some("rshared".into());
    let plan = build(&req).unwrap();
    let out = run_container(
        &plan,
        || {
            let mut c = Checks::default();
            c.ok(std::fs::write("/tmp/rw", "x").is_ok(), "/tmp not writable");
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let root = info.lines().find(|l| l.split(' ').nth(4) == Some("/"));
            c.ok(
                root.is_some_and(|l| l.contains("shared:")),
                format!("/ is not shared: {root:?}"),
            );
            c.0
        },
        None,
    );
    assert_all_passed(&out);
    assert!(t.rootfs().join("tmp/rw").exists());
    t.finish();
}

/// Plants the tree tmpcopyup must copy under `dir`: files with their own modes and a
/// non-root owner, a subdirectory, symlinks (one relative, two hostile), a FIFO and a
/// device node.
fn plant_copyup_tree(dir: &Path) {
    use std::os::unix::fs::{chown, symlink};
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    std::fs::write(dir.join("file"), "file data\n").unwrap();
    std::fs::set_permissions(dir.join("file"), std::fs::Permissions::from_mode(0o640)).unwrap();
    chown(dir.join("file"), Some(1234), Some(5678)).unwrap();
    std::fs::write(dir.join("sub/deeper/big"), vec![7u8; 300_000]).unwrap();
    std::fs::set_permissions(
        dir.join("sub/deeper/big"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::set_permissions(dir.join("sub"), std::fs::Permissions::from_mode(0o711)).unwrap();
    chown(dir.join("sub"), Some(42), Some(43)).unwrap();
    symlink("sub/deeper/big", dir.join("rel-link")).unwrap();
    std::os::unix::fs::lchown(dir.join("rel-link"), Some(7), Some(8)).unwrap();
    symlink("/", dir.join("to-root")).unwrap();
    symlink("../../../../../../../..", dir.join("up")).unwrap();
    let fifo = CString::new(dir.join("fifo").as_os_str().as_encoded_bytes()).unwrap();
    let null = CString::new(dir.join("null").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: NUL-terminated paths; results checked.
    unsafe {
        assert_eq!(libc::mknod(fifo.as_ptr(), libc::S_IFIFO | 0o620, 0), 0);
        assert_eq!(
            libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)),
            0
        );
    }
    std::fs::set_permissions(dir.join("fifo"), std::fs::Permissions::from_mode(0o620)).unwrap();
    // Give the file an old mtime, to see it copied.
    let f = std::fs::File::options()
        .write(true)
        .open(dir.join("file"))
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
        .unwrap();
}

#[test]
fn tmpcopyup_copies_the_directory_into_the_tmpfs() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_run("tmpcopyup_copies_the_directory_into_the_tmpfs") {
        return;
    }
    let t = TestDir::new("tmpcopyup");
    let data = t.rootfs().join("data");
    plant_copyup_tree(&data);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o751)).unwrap();
    std::os::unix::fs::chown(&data, Some(99), Some(98)).unwrap();
    std::fs::create_dir_all(t.rootfs().join("ro/sub")).unwrap();
    std::fs::write(t.rootfs().join("ro/sub/f"), "read-only copy").unwrap();
    std::fs::create_dir_all(t.rootfs().join("plain")).unwrap();
    std::fs::write(t.rootfs().join("plain/hidden"), "x").unwrap();
    let mut mounts = standard_mounts();
    mounts.as_array_mut().unwrap().extend([
        json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "tmpcopyup"]}),
        json!({"destination": "/ro", "type": "tmpfs", "source": "tmpfs",
               "options": ["ro", "tmpcopyup", "mode=700"]}),
        json!({"destination": "/plain", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/fresh", "type": "tmpfs", "source": "tmpfs",
               "options": ["tmpcopyup"]}),
    ]);
    let plan = build(&t.request(mounts)).unwrap();
    let out = run_container(
        &plan,
        || {
            let mut c = Checks::default();
            c.ok(
                mount_at("/data").is_some_and(|(t, o)| t == "tmpfs" && o.contains("nosuid")),
                format!("/data is not a nosuid tmpfs: {:?}", mount_at("/data")),
            );
            let meta = |p: &str| std::fs::symlink_metadata(p);
            let is = |p: &str, mode: u32, uid: u32, gid: u32| {
                meta(p).is_ok_and(|m| {
                    m.permissions().mode() & 0o7777 == mode && m.uid() == uid && m.gid() == gid
                })
            };
            c.ok(
                is("/data", 0o751, 99, 98),
                format!("/data root: {:?}", meta("/data")),
            );
            c.ok(
                std::fs::read_to_string("/data/file").is_ok_and(|s| s == "file data\n"),
                "/data/file content",
            );
            c.ok(
                is("/data/file", 0o640, 1234, 5678),
                format!("/data/file: {:?}", meta("/data/file")),
            );
            c.ok(
                meta("/data/file").is_ok_and(|m| m.mtime() == 1_000_000_000),
                "/data/file mtime not copied",
            );
            c.ok(
                is("/data/sub", 0o711, 42, 43),
                format!("/data/sub: {:?}", meta("/data/sub")),
            );
            c.ok(
                std::fs::read("/data/sub/deeper/big").is_ok_and(|d| d == vec![7u8; 300_000]),
                "/data/sub/deeper/big content",
            );
            c.ok(
                is("/data/sub/deeper/big", 0o4755, 0, 0),
                "/data/sub/deeper/big lost its setuid mode",
            );
            for (link, target, uid) in [
                ("/data/rel-link", "sub/deeper/big", 7),
                ("/data/to-root", "/", 0),
                ("/data/up", "../../../../../../../..", 0),
            ] {
                c.ok(
                    std::fs::read_link(link).is_ok_and(|p| p == Path::new(target))
                        && meta(link).is_ok_and(|m| m.uid() == uid),
                    format!("{link}: {:?} {:?}", std::fs::read_link(link), meta(link)),
                );
            }
            c.ok(
                meta("/data/fifo").is_ok_and(|m| {
                    m.file_type().is_fifo() && m.permissions().mode() & 0o7777 == 0o620
                }),
                "/data/fifo",
            );
            c.ok(is_char_dev("/data/null", 1, 3), "/data/null");
            // Writes go to the tmpfs.
            c.ok(std::fs::write("/data/new", "n").is_ok(), "write /data/new");
            c.ok(
                std::fs::remove_file("/data/file").is_ok(),
                "remove /data/file",
            );
            // ro: filled, then read-only; mode= wins over the directory's.
            c.ok(
                std::fs::read_to_string("/ro/sub/f").is_ok_and(|s| s == "read-only copy"),
                "/ro/sub/f content",
            );
            c.write_fails("/ro/new", libc::EROFS);
            c.ok(
                meta("/ro").is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o700),
                "/ro mode is not mode=700",
            );
            // Without tmpcopyup the tmpfs is empty.
            c.ok(
                std::fs::read_dir("/plain").is_ok_and(|mut d| d.next().is_none()),
                "/plain is not empty",
            );
            // A directory tong creates has nothing to copy: the tmpfs keeps its 1777.
            c.ok(
                meta("/fresh").is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o1777),
                format!("/fresh: {:?}", meta("/fresh")),
            );
            c.0
        },
        None,
    );
    assert_all_passed(&out);
    // The image is unchanged.
    assert_eq!(
        std::fs::read_to_string(data.join("file")).unwrap(),
        "file data\n"
    );
    assert!(!data.join("new").exists());
    t.finish();
}

#[test]
fn tmpcopyup_refuses_a_tree_deeper_than_the_limit() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_run("tmpcopyup_refuses_a_tree_deeper_than_the_limit") {
        return;
    }
    let t = TestDir::new("tmpcopyup-deep");
    let mut deep = t.rootfs().join("deep");
    for _ in 0..=crate::copyup::MAX_DEPTH {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    let plan = build(&t.request(json!([
        {"destination": "/deep", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]},
    ])))
    .unwrap();
    let out = run_container(&plan, Vec::new, None);
    assert!(
        out.contains(
            "SETUP_ERR: tmpcopyup on /deep: more than 64 directory levels below the mount point at /deep/d/d/d"
        ),
        "{out}"
    );
    t.finish();
}

/// Masked directories share one tmpfs; one listed below an earlier masked directory
/// (covered by it, so the shared tmpfs is out of reach by its path) still leaves every
/// later directory masked. Without a /dev/null in the container, directories are still
/// masked with a tmpfs.
#[test]
fn masked_directories_share_a_tmpfs_and_none_is_skipped() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_run("masked_directories_share_a_tmpfs_and_none_is_skipped") {
        return;
    }
    for with_dev in [true, false] {
        let t = TestDir::new(if with_dev { "mask-dev" } else { "mask-nodev" });
        let rootfs = t.rootfs();
        for dir in ["etc/a/b", "etc/c", "etc/d"] {
            std::fs::create_dir_all(rootfs.join(dir)).unwrap();
            std::fs::write(rootfs.join(dir).join("key"), "secret").unwrap();
        }
        std::fs::write(rootfs.join("etc/f"), "secret").unwrap();
        let mounts = if with_dev {
            standard_mounts()
        } else {
            json!([{"destination": "/proc", "type": "proc", "source": "proc"}])
        };
        let mut req = t.request(mounts);
        req.masked_paths = [
            "/etc/a/b",
            "/etc/a",
            "/etc/c",
            "/etc/missing",
            "/etc/f",
            "/etc/d",
        ]
        .map(String::from)
        .to_vec();
        let plan = build(&req).unwrap();
        let out = run_container(
            &plan,
            move || {
                let mut c = Checks::default();
                for dir in ["/etc/a", "/etc/c", "/etc/d"] {
                    c.ok(
                        std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none()),
                        format!("{dir} not empty (dev: {with_dev})"),
                    );
                    c.ok(
                        mount_at(dir).is_some_and(|(t, o)| t == "tmpfs" && o.starts_with("ro")),
                        format!(
                            "{dir} is not a read-only tmpfs (dev: {with_dev}): {:?}",
                            mount_at(dir)
                        ),
                    );
                    c.write_fails(&format!("{dir}/new"), libc::EROFS);
                }
                if with_dev {
                    c.ok(
                        is_char_dev("/etc/f", 1, 3),
                        "/etc/f not covered by /dev/null",
                    );
                } else {
                    // No /dev/null to bind: the file stays as it was, as before.
                    c.ok(mount_at("/etc/f").is_none(), "/etc/f got a mount");
                }
                c.0
            },
            None,
        );
        assert_all_passed(&out);
        assert!(rootfs.join("etc/c/key").exists());
        t.finish();
    }
}
