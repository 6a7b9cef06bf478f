//! `setup`: a whole `/bin/true` container through the library API — create → start →
//! exit → delete, as `tong::Runtime::run` does without detaching — per namespace, rootfs,
//! network and cgroup backend that exists.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use tong::{CreateOptions, PluginKind, Runtime};
use tong_benches::{edit_config, make_bundle, plugin_dir, require_root, TempDir};

struct Variant {
    name: &'static str,
    ns: &'static str,
    cgroup: &'static str,
    /// A new network namespace, set up by net=none; else none at all.
    netns: bool,
}

const VARIANTS: [Variant; 5] = [
    Variant {
        name: "ns=clone3,rootfs=pivot,net=none,cgroup=v1",
        ns: "clone3",
        cgroup: "v1",
        netns: true,
    },
    Variant {
        name: "ns=fork,rootfs=pivot,net=none,cgroup=v1",
        ns: "fork",
        cgroup: "v1",
        netns: true,
    },
    Variant {
        name: "ns=clone3,rootfs=pivot,no-netns,cgroup=v1",
        ns: "clone3",
        cgroup: "v1",
        netns: false,
    },
    Variant {
        name: "ns=fork,rootfs=pivot,no-netns,cgroup=v1",
        ns: "fork",
        cgroup: "v1",
        netns: false,
    },
    Variant {
        name: "ns=clone3,rootfs=pivot,no-netns,cgroup=v2",
        ns: "clone3",
        cgroup: "v2",
        netns: false,
    },
];

fn bundle_for(dir: &Path, v: &Variant) {
    make_bundle(dir);
    edit_config(dir, |config| {
        let linux = &mut config["linux"];
        if !v.netns {
            if let Some(list) = linux["namespaces"].as_array_mut() {
                list.retain(|ns| ns["type"] != "network");
            }
        }
        if v.cgroup == "v2" {
            // The cgroup2 hierarchy here may offer no memory or pids controller.
            if let Some(linux) = linux.as_object_mut() {
                linux.remove("resources");
            }
        }
    });
}

fn setup(c: &mut Criterion) {
    let mut group = c.benchmark_group("setup");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(30);
    let scratch = TempDir::new("tong-bench-setup");
    let runtime = Runtime::new(
        scratch.path().join("state"),
        tong::plugins::PluginHost::with_dirs(vec![plugin_dir()]),
    );
    for (i, v) in VARIANTS.iter().enumerate() {
        let bundle = scratch.path().join(format!("bundle{i}"));
        bundle_for(&bundle, v);
        let mut backends = BTreeMap::new();
        backends.insert(PluginKind::Namespace, v.ns.to_string());
        backends.insert(PluginKind::Rootfs, "pivot".to_string());
        backends.insert(PluginKind::Cgroup, v.cgroup.to_string());
        if v.netns {
            backends.insert(PluginKind::Network, "none".to_string());
        }
        let opts = CreateOptions {
            backends,
            ..CreateOptions::default()
        };
        let mut n = 0u64;
        group.bench_function(BenchmarkId::new("run /bin/true", v.name), |b| {
            b.iter(|| {
                n += 1;
                let id = format!("bench-{}-{n}", std::process::id());
                let code = runtime
                    .run(&id, &bundle, &opts, false, false)
                    .unwrap_or_else(|e| panic!("{}: {e}", v.name));
                assert_eq!(code, 0);
            });
        });
    }
    group.finish();
}

fn main() {
    if !require_root("setup") {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    setup(&mut c);
    c.final_summary();
}
