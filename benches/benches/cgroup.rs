//! `cgroup`: create + apply limits + add a process + remove, per cgroup backend; and
//! placing a new process in its cgroup with CLONE_INTO_CGROUP (cgroup v2 + ns=clone3)
//! against writing `cgroup.procs` after the clone.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use serde_json::json;
use tong::plugins::{CgroupBackend, NamespaceBackend, Plugin};
use tong_benches::{plugin, require_root, spawn_to_exec, Sleeper};

/// Limits each backend can apply on this host: cgroup v1 has memory, pids and cpu; the
/// cgroup2 hierarchy may only offer hugetlb (then the 2 MB limit, if the page size
/// exists), or nothing.
fn resources(backend: &str) -> serde_json::Value {
    if backend == "v1" {
        return json!({
            "memory": {"limit": 134_217_728},
            "pids": {"limit": 64},
            "cpu": {"shares": 512}
        });
    }
    let controllers =
        std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").unwrap_or_default();
    let hugetlb = controllers.split_whitespace().any(|c| c == "hugetlb")
        && std::path::Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    if hugetlb {
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4_194_304}]})
    } else {
        json!({})
    }
}

fn request(id: &str, backend: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"id": id, "resources": resources(backend)})).expect("encode")
}

fn usable(cg: &Plugin) -> bool {
    match cg.probe() {
        Ok(()) => true,
        Err(why) => tong_testkit::skip(&format!("cgroup={}", cg.name), why),
    }
}

fn lifecycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("cgroup/lifecycle");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    let me = std::process::id();
    for backend in ["v1", "v2"] {
        let cg = plugin::<CgroupBackend>(backend);
        if !usable(&cg) {
            continue;
        }
        let mut n = 0u64;
        group.bench_function(BenchmarkId::new("create+limits+add+remove", backend), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let req = request(&format!("bench-cg-{me}-{n}"), backend);
                    let sleeper = Sleeper::start();
                    let start = Instant::now();
                    let state = cg.create(&req).expect("create");
                    cg.add_process(&state, sleeper.0).expect("add_process");
                    cg.destroy(&state).expect("destroy");
                    total += start.elapsed();
                    drop(sleeper);
                }
                total
            });
        });
    }
    group.finish();
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("cgroup/placement");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    let clone3 = plugin::<NamespaceBackend>("clone3");
    let me = std::process::id();
    for backend in ["v2", "v1"] {
        let cg = plugin::<CgroupBackend>(backend);
        if !usable(&cg) {
            continue;
        }
        let state = cg
            .create(&request(&format!("bench-place-{me}-{backend}"), backend))
            .expect("create");
        if backend == "v2" {
            let target = cg.clone_target(&state).expect("clone_target");
            if let Some(fd) = target {
                use std::os::fd::AsRawFd;
                group.bench_function(BenchmarkId::new("CLONE_INTO_CGROUP", backend), |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| spawn_to_exec(clone3, 0, fd.as_raw_fd(), Some(&mut |_| {})))
                            .sum()
                    });
                });
            }
        }
        group.bench_function(BenchmarkId::new("cgroup.procs", backend), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        spawn_to_exec(
                            clone3,
                            0,
                            -1,
                            Some(&mut |pid| cg.add_process(&state, pid).expect("add")),
                        )
                    })
                    .sum()
            });
        });
        cg.destroy(&state).expect("destroy");
    }
    group.finish();
}

fn main() {
    if !require_root("cgroup") {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    lifecycle(&mut c);
    placement(&mut c);
    c.final_summary();
}
