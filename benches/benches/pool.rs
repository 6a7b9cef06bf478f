//! `pool`: the network namespace pool (docs/pools.md), pooled against unpooled.
//!
//! - `clone`: the container process (pid, mnt, uts, ipc and net namespaces) until it
//!   has exec'd `/bin/true`, the network namespace made by the clone (`unpooled`) or
//!   joined with setns from a ready one (`pooled`; made before the timed part, as the
//!   refill after the previous start would have);
//! - `run`: a whole `/bin/true` container (create → start → exit → delete, as
//!   `tong::Runtime::run` without detaching) with net=none, unpooled or with one ready
//!   namespace in the pool before each iteration (made outside the timed part).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion};
use tong::plugins::NamespaceBackend;
use tong::{CreateOptions, PluginKind, Runtime};
use tong_abi::NamespaceJoin;
use tong_benches::{
    make_bundle, plugin, plugin_dir, require_root, spawn_joining_to_exec, TempDir, NAMESPACE_SETS,
};

/// A fresh network namespace, made on a thread of its own (unshare moves only the
/// calling thread), held by an open file.
fn fresh_netns() -> File {
    std::thread::spawn(|| {
        // SAFETY: unshare(2) of this thread's network namespace; no memory involved.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        File::open("/proc/thread-self/ns/net").expect("open the new netns")
    })
    .join()
    .expect("netns thread")
}

fn clone(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool/clone");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    let ns = plugin::<NamespaceBackend>("clone3");
    let (_, with_net) = NAMESPACE_SETS[2];
    for pooled in [false, true] {
        let name = if pooled { "pooled" } else { "unpooled" };
        group.bench_function(BenchmarkId::new("pid+mnt+uts+ipc+net", name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if pooled {
                        let netns = fresh_netns();
                        let join = [NamespaceJoin {
                            fd: netns.as_raw_fd(),
                            nstype: libc::CLONE_NEWNET,
                        }];
                        let flags = with_net & !libc::CLONE_NEWNET;
                        total += spawn_joining_to_exec(ns, flags, &join, -1, None);
                    } else {
                        total += spawn_joining_to_exec(ns, with_net, &[], -1, None);
                    }
                }
                total
            });
        });
    }
    group.finish();
}

fn run(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool/run");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(30);
    let scratch = TempDir::new("tong-bench-pool");
    let runtime = Runtime::new(
        scratch.path().join("state"),
        tong::plugins::PluginHost::with_dirs(vec![plugin_dir()]),
    );
    let bundle = scratch.path().join("bundle");
    make_bundle(&bundle);
    let mut backends = BTreeMap::new();
    for (kind, name) in [
        (PluginKind::Namespace, "clone3"),
        (PluginKind::Rootfs, "pivot"),
        (PluginKind::Network, "none"),
        (PluginKind::Cgroup, "v1"),
    ] {
        backends.insert(kind, name.to_string());
    }
    let opts = CreateOptions {
        backends,
        ..CreateOptions::default()
    };
    let mut n = 0u64;
    for pooled in [false, true] {
        let name = if pooled { "pooled" } else { "unpooled" };
        group.bench_function(BenchmarkId::new("run /bin/true, net=none", name), |b| {
            b.iter_batched(
                || {
                    if pooled {
                        runtime.pool_fill(Some(1), true).expect("pool fill");
                    }
                },
                |()| {
                    n += 1;
                    let id = format!("bench-pool-{}-{n}", std::process::id());
                    let code = runtime
                        .run(&id, &bundle, &opts, false, false)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(code, 0);
                },
                BatchSize::PerIteration,
            );
        });
    }
    runtime.pool_drain().expect("pool drain");
    group.finish();
}

fn main() {
    if !require_root("pool") {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    clone(&mut c);
    run(&mut c);
    c.final_summary();
}
