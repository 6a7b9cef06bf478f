//! The device cgroup attack, on each cgroup backend: a container with CAP_MKNOD makes
//! device nodes and opens them. Only runc's default devices and what the config allows
//! may open; everything else fails with EPERM, live updates move the rules, and
//! nothing (cgroup, eBPF program) is left after delete.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{config, root_or_skip, unique_id, Bundle, Tong};
use serde_json::{json, Value};
use tong_cgroup_common::{bpf, mounts};

/// Makes each node (name, type, major, minor) in the container's /dev and opens it for
/// writing (kmsg refuses readers without CAP_SYSLOG, so a read would prove nothing).
const PROBE: &str = r#"
for spec in "kmsg c 1 11" "loop0 b 7 0" "kvm c 10 232" "null c 1 3"; do
  set -- $spec
  rm -f /dev/t-$1
  if ! out=$(mknod /dev/t-$1 $2 $3 $4 2>&1); then echo "$1: mknod: $out"; continue; fi
  if out=$( { : > /dev/t-$1; } 2>&1 ); then echo "$1: open"; else echo "$1: $out"; fi
  rm -f /dev/t-$1
done
"#;

const DENIED: &str = "Operation not permitted";

/// Runs [`PROBE`] in the container: device name to "open" or the error.
fn probe(tong: &Tong, id: &str) -> BTreeMap<String, String> {
    let out = tong.ok(&["exec", id, "sh", "-c", PROBE]);
    out.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[track_caller]
fn expect(seen: &BTreeMap<String, String>, open: &[&str], denied: &[&str]) {
    for dev in open {
        assert_eq!(
            seen.get(*dev).map(String::as_str),
            Some("open"),
            "{dev} must open: {seen:?}"
        );
    }
    for dev in denied {
        assert!(
            seen.get(*dev).is_some_and(|e| e.contains(DENIED)),
            "opening {dev} must fail with EPERM: {seen:?}"
        );
    }
}

/// How a test starts its containers.
#[derive(Clone, Copy)]
struct Backend {
    /// `--backend cgroup=NAME`.
    name: &'static str,
    /// Start tong where the v1 devices hierarchy is unmounted (a private mount
    /// namespace), so the v1 plugin has to fall back to the cgroup2 filter.
    hide_v1_devices: bool,
}

/// A running container with CAP_MKNOD (as Docker's default set has) and `resources`.
fn start(tong: &Tong, backend: Backend, resources: Value, test: &str) -> (Bundle, String) {
    let mut cfg = config(&["sleep", "600"]);
    let caps = json!(["CAP_MKNOD", "CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER"]);
    cfg["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps
    });
    cfg["linux"]["resources"] = resources;
    let bundle = Bundle::new(&cfg);
    let id = unique_id(test);
    let choice = format!("cgroup={}", backend.name);
    let args = [
        "run",
        "-d",
        "--backend",
        &choice,
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ];
    if !backend.hide_v1_devices {
        tong.ok(&args);
        return (bundle, id);
    }
    // Only create reads the mounts; later commands follow the recorded cgroups.
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("umount /sys/fs/cgroup/devices && exec \"$0\" \"$@\"")
        .arg(common::tong_bin())
        .arg("--root")
        .arg(tong.root.path())
        .args(args);
    let out = common::run_with_files(&mut cmd);
    assert!(
        out.status.success(),
        "run without the v1 devices hierarchy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (bundle, id)
}

fn update_devices(tong: &Tong, bundle: &Bundle, id: &str, devices: Value) {
    let file = bundle.path().join("devices.json");
    std::fs::write(&file, json!({ "devices": devices }).to_string()).unwrap();
    tong.ok(&["update", "--resources", file.to_str().unwrap(), id]);
}

/// Where the cgroup2 hierarchy is mounted, if it is.
fn unified() -> Option<PathBuf> {
    mounts::cgroup2_mount(&mounts::read_mounts().ok()?).map(|m| m.mount_point)
}

/// Rules a config may carry: kvm allowed; loop0 allowed and then denied again.
fn config_rules() -> Value {
    json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 232, "access": "rw"},
        {"allow": true, "type": "b", "major": 7, "minor": 0, "access": "rwm"},
        {"allow": false, "type": "b", "major": 7, "minor": 0, "access": "rwm"}
    ])
}

/// The eBPF programs attached to a container's cgroup2 directory.
fn programs(unified: &Path, id: &str) -> Vec<u32> {
    let dir = std::fs::File::open(unified.join(id)).unwrap();
    bpf::attached(&dir.into()).unwrap()
}

/// The whole attack on one backend. `unified`: where the container's device programs
/// are (v2), to check update and delete.
fn attack(backend: Backend, test: &str, unified: Option<&Path>) {
    let tong = Tong::new();

    // An empty list (what `tong spec` used to write) still denies all but the defaults.
    let (bundle, id) = start(&tong, backend, json!({"devices": []}), test);
    expect(&probe(&tong, &id), &["null"], &["kmsg", "loop0", "kvm"]);
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);

    // The config's rules in order: kvm opens; loop0's deny after its allow wins.
    let (bundle, id) = start(&tong, backend, json!({"devices": config_rules()}), test);
    expect(&probe(&tong, &id), &["null", "kvm"], &["kmsg", "loop0"]);
    let before = unified.map(|u| programs(u, &id));

    // Live update: access taken away (kvm), then given (kmsg, write only).
    update_devices(&tong, &bundle, &id, json!([]));
    expect(&probe(&tong, &id), &["null"], &["kmsg", "loop0", "kvm"]);
    update_devices(
        &tong,
        &bundle,
        &id,
        json!([{"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}]),
    );
    expect(&probe(&tong, &id), &["null", "kmsg"], &["loop0", "kvm"]);
    // An update without `devices` leaves the rules alone.
    let file = bundle.path().join("hugetlb.json");
    let hugetlb = json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4_194_304}]});
    std::fs::write(&file, hugetlb.to_string()).unwrap();
    tong.ok(&["update", "--resources", file.to_str().unwrap(), &id]);
    expect(&probe(&tong, &id), &["null", "kmsg"], &["loop0", "kvm"]);

    let mut seen = Vec::new();
    if let (Some(unified), Some(before)) = (unified, before) {
        let now = programs(unified, &id);
        assert_eq!(before.len(), 1, "one device program after create");
        assert_eq!(now.len(), 1, "updates replace the program: {now:?}");
        assert_ne!(before, now);
        seen.extend(before);
        seen.extend(now);
    }
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
    // The programs go with the cgroup (the kernel frees them once it is released).
    for prog in seen {
        assert!(
            common::wait_until(10, || bpf::program_by_id(prog).unwrap().is_none()),
            "device program {prog} of {id} still loaded after delete"
        );
    }
}

#[test]
fn devices_are_denied_by_default_on_cgroup_v1() {
    if !root_or_skip("devices_are_denied_by_default_on_cgroup_v1") {
        return;
    }
    if !std::path::Path::new("/sys/fs/cgroup/devices/devices.list").exists() {
        tong_testkit::skip(
            "devices_are_denied_by_default_on_cgroup_v1",
            "no v1 devices hierarchy",
        );
        return;
    }
    let v1 = Backend {
        name: "v1",
        hide_v1_devices: false,
    };
    attack(v1, "devices-v1", None);
}

#[test]
fn devices_are_denied_by_default_on_cgroup_v2() {
    if !root_or_skip("devices_are_denied_by_default_on_cgroup_v2") {
        return;
    }
    let Some(unified) = unified() else {
        tong_testkit::skip(
            "devices_are_denied_by_default_on_cgroup_v2",
            "no cgroup2 mount",
        );
        return;
    };
    let v2 = Backend {
        name: "v2",
        hide_v1_devices: false,
    };
    attack(v2, "devices-v2", Some(&unified));
}

/// On a hybrid host without a v1 devices hierarchy, the v1 backend puts the cgroup2
/// filter on the container's cgroup2 directory.
#[test]
fn devices_are_denied_by_the_v1_backend_without_a_devices_hierarchy() {
    let test = "devices_are_denied_by_the_v1_backend_without_a_devices_hierarchy";
    if !root_or_skip(test) {
        return;
    }
    let (Some(unified), true) = (
        unified(),
        std::path::Path::new("/sys/fs/cgroup/devices").is_dir(),
    ) else {
        tong_testkit::skip(
            test,
            "needs a hybrid host (v1 devices hierarchy and cgroup2)",
        );
        return;
    };
    let v1 = Backend {
        name: "v1",
        hide_v1_devices: true,
    };
    attack(v1, "devices-v1bpf", Some(&unified));
}
