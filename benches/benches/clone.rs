//! `clone`: creating a container process, per namespace set and per namespace backend,
//! up to the moment the child has exec'd `/bin/true` (its close-on-exec pipe closes).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use tong::plugins::NamespaceBackend;
use tong_benches::{plugin, require_root, spawn_to_exec, NAMESPACE_SETS};

fn clone(c: &mut Criterion) {
    let mut group = c.benchmark_group("clone");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    for backend in ["clone3", "fork"] {
        let ns = plugin::<NamespaceBackend>(backend);
        for (set, flags) in NAMESPACE_SETS {
            group.bench_function(BenchmarkId::new(backend, set), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| spawn_to_exec(ns, flags, -1, None)).sum());
            });
        }
    }
    group.finish();
}

fn main() {
    if !require_root("clone") {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    clone(&mut c);
    c.final_summary();
}
