//! `child_setup`: the child-side time of the mount path alone, for the default configs
//! of `runc spec` and `tong spec` (the same mounts plus a cgroup namespace). Each
//! iteration forks a child that unshares a mount (and cgroup) namespace, then times
//! `child::setup` with the monotonic clock around the call only (no fork, exit or
//! namespace teardown) and sends the nanoseconds back through a pipe.

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use serde_json::Value;
use tong_abi::ChildError;
use tong_plugin_sdk::wire::RootfsRequest;
use tong_rootfs_common::{child, plan};

/// `runc spec` (runc 1.1.5, as tests/fixtures/configs holds it): mounts, masked and
/// read-only paths; `root.readonly` is true there.
const RUNC_SPEC: &str = include_str!("../../../tests/fixtures/configs/runc-spec.json");

fn request(rootfs: &Path, cgroup_namespace: bool) -> RootfsRequest {
    let spec: Value = serde_json::from_str(RUNC_SPEC).expect("runc-spec.json");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    RootfsRequest {
        id: "bench".into(),
        bundle: "/".into(),
        rootfs: rootfs.display().to_string(),
        readonly: spec["root"]["readonly"].as_bool().unwrap_or(false),
        mounts: spec["mounts"].as_array().cloned().unwrap_or_default(),
        masked_paths: strings(&spec["linux"]["maskedPaths"]),
        readonly_paths: strings(&spec["linux"]["readonlyPaths"]),
        cgroup_namespace,
        network_namespace: true,
        ..RootfsRequest::default()
    }
}

/// One child: unshare, time `setup`, report. Returns the child-side time.
fn run_once(plan: &plan::Plan, flags: c_int) -> Duration {
    let mut fds = [0; 2];
    // SAFETY: fds is an array of two ints for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only makes raw system calls and `setup` (no allocation).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let mut err = ChildError::default();
        let mut t0 = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut t1 = t0;
        // SAFETY: raw calls on live storage; the child exits with _exit.
        unsafe {
            if libc::unshare(flags) != 0 {
                libc::_exit(2);
            }
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut t0);
            let ok = child::setup(plan, &mut err).is_ok();
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut t1);
            if !ok {
                libc::write(
                    libc::STDERR_FILENO,
                    err.message.as_ptr().cast(),
                    err.len as usize,
                );
                libc::_exit(1);
            }
            let ns = (t1.tv_sec - t0.tv_sec) as u64 * 1_000_000_000 + t1.tv_nsec as u64
                - t0.tv_nsec as u64;
            libc::write(fds[1], (&raw const ns).cast(), 8);
            libc::_exit(0);
        }
    }
    // SAFETY: our write end, closed once.
    unsafe { libc::close(fds[1]) };
    let mut ns = 0u64;
    // SAFETY: reads at most 8 bytes into ns; fds[0] is ours.
    let n = unsafe { libc::read(fds[0], (&raw mut ns).cast(), 8) };
    let mut status = 0;
    // SAFETY: pid is our child; status is live.
    unsafe {
        libc::close(fds[0]);
        libc::waitpid(pid, &raw mut status, 0);
    }
    assert!(
        n == 8 && status == 0,
        "child_setup failed (status {status})"
    );
    Duration::from_nanos(ns)
}

fn bench(c: &mut Criterion) {
    if !tong_testkit::require_root("child_setup", "mounting") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tong-bench-mounts-{}", std::process::id()));
    let rootfs: PathBuf = dir.join("rootfs");
    for d in ["proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs");
    }
    let mut group = c.benchmark_group("child_setup");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(30);
    for (name, cgroupns) in [("runc-spec", false), ("tong-spec", true)] {
        let plan = plan::build(&request(&rootfs, cgroupns)).expect("plan");
        let flags = libc::CLONE_NEWNS | if cgroupns { libc::CLONE_NEWCGROUP } else { 0 };
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run_once(&plan, flags)).sum());
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
