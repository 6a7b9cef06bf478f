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
    rootfs: &'static str,
    /// The network backend of a new network namespace; `None`: no network namespace.
    net: Option<&'static str>,
    cgroup: &'static str,
}

const fn variant(
    name: &'static str,
    ns: &'static str,
    rootfs: &'static str,
    net: Option<&'static str>,
    cgroup: &'static str,
) -> Variant {
    Variant {
        name,
        ns,
        rootfs,
        net,
        cgroup,
    }
}

const VARIANTS: [Variant; 9] = [
    variant(
        "ns=clone3,rootfs=pivot,net=none,cgroup=v1",
        "clone3",
        "pivot",
        Some("none"),
        "v1",
    ),
    variant(
        "ns=fork,rootfs=pivot,net=none,cgroup=v1",
        "fork",
        "pivot",
        Some("none"),
        "v1",
    ),
    variant(
        "ns=clone3,rootfs=pivot,no-netns,cgroup=v1",
        "clone3",
        "pivot",
        None,
        "v1",
    ),
    variant(
        "ns=fork,rootfs=pivot,no-netns,cgroup=v1",
        "fork",
        "pivot",
        None,
        "v1",
    ),
    variant(
        "ns=clone3,rootfs=pivot,no-netns,cgroup=v2",
        "clone3",
        "pivot",
        None,
        "v2",
    ),
    variant(
        "ns=clone3,rootfs=chroot,net=none,cgroup=v1",
        "clone3",
        "chroot",
        Some("none"),
        "v1",
    ),
    variant(
        "ns=clone3,rootfs=overlay,net=none,cgroup=v1",
        "clone3",
        "overlay",
        Some("none"),
        "v1",
    ),
    variant(
        "ns=clone3,rootfs=pivot,net=bridge,cgroup=v1",
        "clone3",
        "pivot",
        Some("bridge"),
        "v1",
    ),
    variant(
        "ns=clone3,rootfs=pivot,net=cni,cgroup=v1",
        "clone3",
        "pivot",
        Some("cni"),
        "v1",
    ),
];

/// Where Debian's containernetworking-plugins live.
const CNI_BIN: &str = "/usr/lib/cni";

/// A CNI configuration (loopback + bridge with host-local addresses kept in `dir`) and
/// the annotations that point net-cni at it.
fn cni_annotations(dir: &Path) -> serde_json::Value {
    let net_d = dir.join("net.d");
    std::fs::create_dir_all(&net_d).expect("mkdir net.d");
    let list = serde_json::json!({"cniVersion": "1.0.0", "name": "tongbench", "plugins": [{
        "type": "bridge", "bridge": "tongbench0", "isGateway": true, "ipMasq": false,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.79.0.0/24"}]],
                 "routes": [{"dst": "0.0.0.0/0"}], "dataDir": dir.join("ipam")}
    }]});
    std::fs::write(net_d.join("10-tongbench.conflist"), list.to_string()).expect("conflist");
    let lo = serde_json::json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"});
    std::fs::write(net_d.join("99-loopback.conf"), lo.to_string()).expect("loopback conf");
    serde_json::json!({
        "tong.cni.confdir": net_d.display().to_string(),
        "tong.cni.networks": "lo,tongbench",
        "tong.cni.path": CNI_BIN,
    })
}

fn bundle_for(dir: &Path, v: &Variant, scratch: &Path) {
    make_bundle(dir);
    edit_config(dir, |config| {
        let linux = &mut config["linux"];
        if v.net.is_none() {
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
        if v.net == Some("cni") {
            config["annotations"] = cni_annotations(&scratch.join("cni"));
        }
    });
}

/// Bridges, veths, addresses and nftables rules of net=bridge and net=cni are made in
/// the caller's network namespace: the bench makes one of its own, so nothing it
/// creates reaches the host and all of it goes when the bench exits.
fn private_network_namespace() -> bool {
    // SAFETY: unshare(2) has no memory preconditions; the bench is single-threaded here.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return tong_testkit::skip(
            "setup net=bridge/net=cni",
            format_args!(
                "no private network namespace ({})",
                std::io::Error::last_os_error()
            ),
        );
    }
    // The namespace's loopback, for the bridge's gateway and port publishing.
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    up.is_ok_and(|s| s.success())
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
    let private_net = private_network_namespace();
    let have_cni = Path::new(CNI_BIN).join("bridge").exists();
    for (i, v) in VARIANTS.iter().enumerate() {
        if matches!(v.net, Some("bridge" | "cni")) && !private_net {
            continue;
        }
        if v.net == Some("cni") && !have_cni {
            tong_testkit::skip(
                &format!("setup {}", v.name),
                format_args!(
                    "no CNI plugins in {CNI_BIN} (apt-get install containernetworking-plugins)"
                ),
            );
            continue;
        }
        let bundle = scratch.path().join(format!("bundle{i}"));
        bundle_for(&bundle, v, scratch.path());
        let mut backends = BTreeMap::new();
        backends.insert(PluginKind::Namespace, v.ns.to_string());
        backends.insert(PluginKind::Rootfs, v.rootfs.to_string());
        backends.insert(PluginKind::Cgroup, v.cgroup.to_string());
        if let Some(net) = v.net {
            backends.insert(PluginKind::Network, net.to_string());
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
