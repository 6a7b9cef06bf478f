//! Real-namespace tests: they need root and print SKIP otherwise. They run one at a time
//! (a process-wide lock) because they look at this process's children.

use std::ffi::{c_int, c_void};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

use tong_abi::{ChildError, NamespaceJoin, SpawnRequest, SpawnResult};
use tong_plugin_sdk::{NamespacePlugin, PluginInfo};

use super::{Fork, NEEDED};

static SERIAL: Mutex<()> = Mutex::new(());

fn is_root(test: &str) -> bool {
    tong_testkit::require_root(test, "namespaces")
}

/// What the test child does: optionally waits for a byte, then reports its pid and uid
/// as it sees them and exits with 7.
#[repr(C)]
struct TestChild {
    wait_fd: c_int,
    report_fd: c_int,
    /// Become root of the user namespace after the wait, as tong's child does.
    set_root: bool,
}

unsafe extern "C" fn test_main(arg: *mut c_void) -> c_int {
    // SAFETY: arg points at the parent's TestChild, alive in our copy of its memory.
    let ctx = unsafe { &*arg.cast::<TestChild>() };
    if ctx.wait_fd >= 0 {
        let mut byte = 0u8;
        // SAFETY: one byte into a local.
        if unsafe { libc::read(ctx.wait_fd, std::ptr::from_mut(&mut byte).cast(), 1) } != 1 {
            return 3;
        }
    }
    if ctx.set_root {
        // SAFETY: plain credential syscalls; raw, since glibc's wrappers wait for the
        // parent's other threads, which do not exist in this child.
        let ret = unsafe {
            libc::syscall(libc::SYS_setresgid, 0, 0, 0)
                | libc::syscall(libc::SYS_setresuid, 0, 0, 0)
        };
        if ret != 0 {
            return 4;
        }
    }
    // SAFETY: getpid/getuid have no preconditions.
    let ids = unsafe { [libc::getpid(), libc::getuid() as c_int] };
    // SAFETY: the test's pipe end, open in this child until it exits.
    let report = unsafe { std::os::fd::BorrowedFd::borrow_raw(ctx.report_fd) };
    tong_sys::write_all(report, &ids[0].to_ne_bytes());
    tong_sys::write_all(report, &ids[1].to_ne_bytes());
    7
}

unsafe extern "C" fn test_fail(_arg: *mut c_void, _err: *const ChildError) {}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 fills the array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2");
    // SAFETY: the kernel just gave us these descriptors.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn request(flags: c_int, joins: &[NamespaceJoin], ctx: &TestChild) -> SpawnRequest {
    SpawnRequest {
        struct_size: std::mem::size_of::<SpawnRequest>(),
        clone_flags: flags as u64,
        join: joins.as_ptr(),
        join_len: joins.len(),
        cgroup_fd: -1,
        child_main: test_main,
        child_arg: std::ptr::from_ref(ctx).cast_mut().cast(),
        child_fail: test_fail,
    }
}

/// Pids whose parent is this process.
fn my_children() -> Vec<i32> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the command name, which ends with the last ')'.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: i32 = rest.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == me {
            out.push(pid);
        }
    }
    out
}

/// Reads the child's (pid, uid) report.
fn read_ids(fd: &OwnedFd) -> (i32, i32) {
    let mut buf = [0u8; 8];
    assert_eq!(tong_sys::read_full(fd.as_fd(), &mut buf), 8, "child report");
    (
        i32::from_ne_bytes(buf[..4].try_into().unwrap()),
        i32::from_ne_bytes(buf[4..].try_into().unwrap()),
    )
}

/// Waits for the container through plain waitpid (it must be our child) and checks the
/// pidfd says it exited.
fn wait_child(res: &SpawnResult) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid on the child spawn returned.
    let r = unsafe { libc::waitpid(res.pid, &raw mut status, 0) };
    assert_eq!(r, res.pid, "the container process is the caller's child");
    assert!(res.pidfd >= 0, "a pidfd");
    // SAFETY: the pidfd spawn gave us, owned by the test from here.
    let pidfd = unsafe { OwnedFd::from_raw_fd(res.pidfd) };
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one live pollfd, no wait.
    let ready = unsafe { libc::poll(&raw mut pfd, 1, 0) };
    assert_eq!(ready, 1, "pidfd readable");
    assert!(libc::WIFEXITED(status), "status {status:#x}");
    libc::WEXITSTATUS(status)
}

fn ns_inode(pid: i32, ns: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .ino()
}

#[test]
fn descriptor_and_probe() {
    // SAFETY: the exported entry returns our static descriptor.
    let desc = unsafe { &*super::tong_plugin_entry(tong_abi::ABI_MAJOR) };
    // SAFETY: descriptor strings are static and NUL-terminated.
    let name = unsafe { std::ffi::CStr::from_ptr(desc.name) };
    assert_eq!(name, c"fork");
    assert_eq!(desc.kind, tong_abi::PluginKind::Namespace.as_raw());
    assert!(desc.priority < 20, "below ns=clone3");
    assert!(super::tong_plugin_entry(tong_abi::ABI_MAJOR + 1).is_null());
    // This host has every namespace type: the probe agrees with /proc.
    assert!(NEEDED
        .iter()
        .all(|ns| std::path::Path::new("/proc/self/ns").join(ns).exists()));
    Fork::probe().unwrap();
}

#[test]
fn the_probe_names_the_namespaces_the_kernel_lacks() {
    let dir = std::env::temp_dir().join(format!("tong-ns-fork-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for ns in ["mnt", "uts", "ipc"] {
        std::fs::write(dir.join(ns), "").unwrap();
    }
    let err = super::probe_namespaces(&dir).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(err.status, tong_abi::STATUS_UNSUPPORTED);
    assert!(err.message.contains("has no pid, net ("), "{}", err.message);
    assert!(super::probe_namespaces(std::path::Path::new("/proc/self/ns")).is_ok());
}

#[test]
fn no_namespaces_single_fork() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (rd, wr) = pipe();
    let ctx = TestChild {
        wait_fd: -1,
        report_fd: wr.as_raw_fd(),
        set_root: false,
    };
    // SAFETY: a valid request; the child only runs test_main.
    let res = unsafe { Fork::spawn(&request(0, &[], &ctx)) }.unwrap();
    assert_eq!(res.in_cgroup, 0);
    assert_eq!(my_children(), vec![res.pid]);
    let (pid, _) = read_ids(&rd);
    assert_eq!(pid, res.pid);
    assert_eq!(wait_child(&res), 7);
}

#[test]
fn pid_namespace_grandchild_is_our_child() {
    if !is_root("pid_namespace_grandchild_is_our_child") {
        return;
    }
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (rd, wr) = pipe();
    let (go_rd, go_wr) = pipe();
    let ctx = TestChild {
        wait_fd: go_rd.as_raw_fd(),
        report_fd: wr.as_raw_fd(),
        set_root: false,
    };
    let flags = libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP;
    // SAFETY: a valid request; the child only runs test_main.
    let res = unsafe { Fork::spawn(&request(flags, &[], &ctx)) }.unwrap();
    // The intermediate is reaped already: the container is our only child.
    assert_eq!(my_children(), vec![res.pid]);
    for ns in ["pid_for_children", "mnt", "uts", "ipc", "net", "cgroup"] {
        let theirs = if ns == "pid_for_children" {
            ns_inode(res.pid, "pid")
        } else {
            ns_inode(res.pid, ns)
        };
        // SAFETY: getpid has no preconditions.
        let mine = ns_inode(unsafe { libc::getpid() }, ns);
        assert_ne!(theirs, mine, "{ns} namespace is new");
    }
    tong_sys::write_all(go_wr.as_fd(), b"g");
    let (pid, uid) = read_ids(&rd);
    assert_eq!(pid, 1, "pid 1 of its pid namespace");
    assert_eq!(uid, 0);
    assert_eq!(wait_child(&res), 7);
    assert!(my_children().is_empty());
}

#[test]
fn user_namespace_maps_written_after_spawn() {
    if !is_root("user_namespace_maps_written_after_spawn") {
        return;
    }
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (rd, wr) = pipe();
    let (go_rd, go_wr) = pipe();
    let ctx = TestChild {
        wait_fd: go_rd.as_raw_fd(),
        report_fd: wr.as_raw_fd(),
        set_root: true,
    };
    let flags = libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNS;
    // SAFETY: a valid request; the child only runs test_main.
    let res = unsafe { Fork::spawn(&request(flags, &[], &ctx)) }.unwrap();
    // As the host does after spawn: map container root to host uid/gid 1000.
    std::fs::write(format!("/proc/{}/uid_map", res.pid), "0 1000 1\n").unwrap();
    std::fs::write(format!("/proc/{}/setgroups", res.pid), "deny").unwrap();
    std::fs::write(format!("/proc/{}/gid_map", res.pid), "0 1000 1\n").unwrap();
    tong_sys::write_all(go_wr.as_fd(), b"g");
    let (pid, uid) = read_ids(&rd);
    assert_eq!((pid, uid), (1, 0), "pid 1 and root inside");
    let status = std::fs::read_to_string(format!("/proc/{}/status", res.pid)).unwrap();
    let host_uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(host_uid, "1000", "maps written by the host apply");
    assert_eq!(wait_child(&res), 7);
}

#[test]
fn joins_namespaces_by_fd() {
    if !is_root("joins_namespaces_by_fd") {
        return;
    }
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let pid_ns = std::fs::File::open("/proc/self/ns/pid").unwrap();
    let net_ns = std::fs::File::open("/proc/self/ns/net").unwrap();
    let joins = [
        NamespaceJoin {
            fd: net_ns.as_raw_fd(),
            nstype: libc::CLONE_NEWNET,
        },
        NamespaceJoin {
            fd: pid_ns.as_raw_fd(),
            nstype: libc::CLONE_NEWPID,
        },
    ];
    let (rd, wr) = pipe();
    let ctx = TestChild {
        wait_fd: -1,
        report_fd: wr.as_raw_fd(),
        set_root: false,
    };
    // A joined pid namespace takes the second fork too.
    // SAFETY: a valid request; the child only runs test_main.
    let res = unsafe { Fork::spawn(&request(libc::CLONE_NEWUTS, &joins, &ctx)) }.unwrap();
    let (pid, _) = read_ids(&rd);
    assert_eq!(pid, res.pid, "joined our own pid namespace");
    assert_eq!(wait_child(&res), 7);
    assert!(my_children().is_empty());
}

#[test]
fn setns_failure_is_reported_and_reaped() {
    if !is_root("setns_failure_is_reported_and_reaped") {
        return;
    }
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // A pid namespace fd passed as a network namespace: setns refuses it.
    let pid_ns = std::fs::File::open("/proc/self/ns/pid").unwrap();
    let joins = [NamespaceJoin {
        fd: pid_ns.as_raw_fd(),
        nstype: libc::CLONE_NEWNET,
    }];
    let (_rd, wr) = pipe();
    let ctx = TestChild {
        wait_fd: -1,
        report_fd: wr.as_raw_fd(),
        set_root: false,
    };
    // SAFETY: a valid request; the child fails before test_main.
    let err = unsafe { Fork::spawn(&request(libc::CLONE_NEWPID, &joins, &ctx)) }.unwrap_err();
    assert_eq!(err.status, tong_abi::STATUS_OS);
    assert!(
        err.message.contains("setns into the network namespace"),
        "{}",
        err.message
    );
    assert!(my_children().is_empty(), "the failed child is reaped");
}

#[test]
fn refuses_creating_and_joining_a_pid_namespace() {
    let pid_ns = std::fs::File::open("/proc/self/ns/pid").unwrap();
    let joins = [NamespaceJoin {
        fd: pid_ns.as_raw_fd(),
        nstype: libc::CLONE_NEWPID,
    }];
    let ctx = TestChild {
        wait_fd: -1,
        report_fd: -1,
        set_root: false,
    };
    // SAFETY: refused before any fork.
    let err = unsafe { Fork::spawn(&request(libc::CLONE_NEWPID, &joins, &ctx)) }.unwrap_err();
    assert_eq!(err.status, tong_abi::STATUS_INVALID);
}
